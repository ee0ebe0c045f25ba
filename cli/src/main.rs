//! `datamesh`: the command-line front end of DataMesh.
//!
//! stdout carries only results (an id, a table, JSON); messages, prompts and errors go
//! to stderr. Errors are one line; the exit code says what kind (see `exit.rs`).
//!
//! To add a command: a module in `cmd/` with an `Args` struct and a `run(&Context, args)`
//! function, a variant in [`Command`], and a line in `main`'s dispatch.

mod cmd;
mod config;
mod exit;
mod home;
mod keystore_keys;
mod output;
mod password;
mod resume;
mod security;
mod testnet_ui;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::output::Output;

/// An encrypted, erasure-coded peer-to-peer store.
#[derive(Debug, Parser)]
#[command(
    name = "datamesh",
    version,
    propagate_version = true,
    after_help = "Examples:\n  datamesh init\n  datamesh node run\n  id=$(datamesh put photo.jpg) && datamesh get $id -o copy.jpg\n  datamesh keys list --json"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The DataMesh home folder [default: $DATAMESH_HOME, else the platform data folder
    /// + /datamesh].
    #[arg(long, global = true, env = "DATAMESH_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Print no messages, only results and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print more details (timings, parameters); repeat for more.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a home: the sealed keystore (node identity + file-encryption key), a
    /// default config.toml and an API token.
    #[command(after_help = "Example:\n  datamesh --home ./node-a init --password-file ./node-a.pw")]
    Init(cmd::init::InitArgs),
    /// Inspect and manage the keystore: list, rotate, revoke, destroy, passwords, audit.
    Keys(cmd::keys::KeysArgs),
    /// Run the node.
    Node(cmd::node::NodeArgs),
    /// Store a file; prints its id.
    Put(cmd::transfer::PutArgs),
    /// Fetch a file by id.
    Get(cmd::transfer::GetArgs),
    /// Check a stored file's health: healthy shards per stripe on distinct live peers;
    /// --verify fetches and hashes every copy, --repair rebuilds and re-places shards.
    Check(cmd::check::CheckArgs),
    /// Test-only fault injection (needs a node started with DATAMESH_TEST_FAULTS=1).
    #[command(hide = true)]
    Debug(cmd::debug::DebugArgs),
    /// Give other public keys access to a stored file (re-wraps its data key only).
    Share(cmd::files::ShareArgs),
    /// Remove one of this node's files from the network (owner only): its holders drop
    /// it and give the space back; `ls` forgets it.
    #[command(after_help = "Example:\n  datamesh rm dm1...")]
    Rm(cmd::rm::RmArgs),
    /// List the files this node has stored, or a stored folder's entries.
    #[command(after_help = "Examples:\n  datamesh ls --json\n  datamesh ls dm1…(a folder's id)")]
    Ls(cmd::tree::LsArgs),
    /// The node's peer id, addresses, peers and storage.
    #[command(after_help = "Example:\n  datamesh status --json")]
    Status,
    /// The peers in the node's routing table.
    #[command(after_help = "Example:\n  datamesh peers")]
    Peers,
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  datamesh completions bash > ~/.local/share/bash-completion/completions/datamesh\n  datamesh completions zsh > ~/.zfunc/_datamesh"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// A local testnet of real node processes: up, status, kill, stop, start, down,
    /// destroy, demo.
    #[command(
        after_help = "Examples:\n  datamesh testnet demo\n  datamesh testnet up --nodes 8\n  datamesh testnet kill 3"
    )]
    Testnet(cmd::testnet::TestnetArgs),
}

/// What every command gets: the home folder and the output settings.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) home: PathBuf,
    pub(crate) out: Output,
}

fn main() -> ExitCode {
    // First thing: no core dumps of a process that holds keys.
    let hardened = datamesh_keys::harden_process();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::clap_error(&e),
    };
    let out = Output::new(cli.global.json, cli.global.quiet, cli.global.verbose);
    if let Err(e) = hardened {
        out.warn(format_args!("cannot disable core dumps: {e}"));
    }
    let home = match home::resolve(cli.global.home) {
        Ok(home) => home,
        Err(e) => return exit::report(&e),
    };
    // The algorithm policy ([security] and its environment overrides), once per process.
    if let Err(e) = security::init(&home) {
        return exit::report(&e);
    }
    let ctx = Context { home, out };
    let result = match cli.command {
        Command::Init(args) => cmd::init::run(&ctx, args),
        Command::Keys(args) => cmd::keys::run(&ctx, args),
        Command::Node(args) => cmd::node::run(&ctx, args),
        Command::Put(args) => cmd::transfer::put(&ctx, args),
        Command::Get(args) => cmd::transfer::get(&ctx, args),
        Command::Share(args) => cmd::files::share(&ctx, args),
        Command::Check(args) => cmd::check::run(&ctx, args),
        Command::Debug(args) => cmd::debug::run(&ctx, args),
        Command::Rm(args) => cmd::rm::run(&ctx, args),
        Command::Ls(args) => cmd::tree::ls(&ctx, args),
        Command::Status => cmd::files::status(&ctx),
        Command::Peers => cmd::files::peers(&ctx),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into a buffer first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "datamesh", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
            Ok(())
        }
        Command::Testnet(args) => cmd::testnet::run(&ctx, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}
