//! `datamesh-full`: every `datamesh` command in its own process: the API commands
//! through the crate's library (`lib.rs`, which is all `datamesh` links), and the ones that
//! open the keystore, run a node or a testnet from the modules beside this file. A user
//! types `datamesh`, which hands these commands here (`exec.rs`).

mod allocator;
mod cmd;
mod config;
mod exit;
mod home;
mod keystore_keys;
mod password;
mod security;
mod testnet_ui;
mod view;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use datamesh_cli::{ApiCommand, Context, GlobalArgs, output};

/// An encrypted, erasure-coded peer-to-peer store.
#[derive(Debug, Parser)]
#[command(
    name = "datamesh",
    bin_name = "datamesh",
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

/// Every command: the API commands (which `datamesh` runs itself) and the others.
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
    #[command(flatten)]
    Api(ApiCommand),
    /// Test-only fault injection (needs a node started with DATAMESH_TEST_FAULTS=1).
    #[command(hide = true)]
    Debug(cmd::debug::DebugArgs),
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

fn main() -> ExitCode {
    exit::classify_keystore_errors();
    let (cli, hardened) = match datamesh_cli::parse::<Cli>() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    // The algorithm policy ([security] and its environment overrides), once per process.
    let setup = |home: &std::path::Path| security::init(home).map(drop);
    datamesh_cli::run(cli.global, hardened, setup, |ctx| {
        match cli.command {
            Command::Init(args) => cmd::init::run(ctx, args),
            Command::Keys(args) => cmd::keys::run(ctx, args),
            Command::Node(args) => cmd::node::run(ctx, args),
            Command::Api(command) => datamesh_cli::run_api(ctx, command),
            Command::Debug(args) => cmd::debug::run(ctx, args),
            Command::Completions { shell } => {
                use clap::CommandFactory;
                // Into a buffer first: the generator panics on a write error (a closed pipe).
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "datamesh", &mut script);
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &script);
                Ok(())
            }
            Command::Testnet(args) => cmd::testnet::run(ctx, args),
        }
    })
}
