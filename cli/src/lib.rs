//! The `datamesh` command line, as two programs built from this crate.
//!
//! - `datamesh` (`main.rs`, [`client_main`]) runs the commands that only talk to a running
//!   node's API ([`ApiCommand`]: put, get, check, share, rm, ls, status, peers) in its own
//!   process, and hands every other command line (init, keys, node, testnet, completions,
//!   `--help` and `--version` on their own) to `datamesh-full`, the program beside it, by
//!   `exec` (`exec.rs`): same process, arguments, environment and exit code. This library
//!   is all `datamesh` links: no RocksDB, TPM library, keystore or libp2p, which a
//!   process maps and relocates at every start whether it uses them or not.
//! - `datamesh-full` (`full/main.rs`) runs every command: the API commands through this
//!   library, the others from its own modules (`full/`).
//!
//! stdout carries only results (an id, a table, JSON); messages, prompts and errors go
//! to stderr. Errors are one line; the exit code says what kind (see `exit.rs`).
//!
//! To add a command: a module in `cmd/` (API) or `full/cmd/` (any other) with an `Args`
//! struct and a `run(&Context, args)` function, a variant in [`ApiCommand`] or the full
//! program's `Command`, and a line in its dispatch.

pub mod cmd;
mod exec;
pub mod exit;
pub mod home;
pub mod output;
mod resume;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::output::Output;

/// The command line of an API command, as `datamesh` parses it (the full program's
/// parses the same flags and commands, and the others).
#[derive(Debug, Parser)]
#[command(
    name = "datamesh",
    bin_name = "datamesh",
    version,
    propagate_version = true
)]
struct ClientCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: ApiCommand,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The DataMesh home folder [default: $DATAMESH_HOME, else the platform data folder
    /// + /datamesh].
    #[arg(long, global = true, env = "DATAMESH_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print no messages, only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more details (timings, parameters); repeat for more.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

/// The commands that only talk to a running node's API: what `datamesh` runs in its own
/// process.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Store a file; prints its id.
    Put(cmd::transfer::PutArgs),
    /// Fetch a file by id.
    Get(cmd::transfer::GetArgs),
    /// Check a stored file's health: healthy shards per stripe on distinct live peers;
    /// --verify fetches and hashes every copy, --repair rebuilds and re-places shards.
    Check(cmd::check::CheckArgs),
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
}

/// What every command gets: the home folder and the output settings.
#[derive(Debug)]
pub struct Context {
    /// The home folder.
    pub home: PathBuf,
    /// Where results and messages go, and how.
    pub out: Output,
}

/// `datamesh`: an [`ApiCommand`] runs here; any other command line is handed to
/// `datamesh-full`.
pub fn client_main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let api = command_word(&args)
        .and_then(OsStr::to_str)
        .is_some_and(ApiCommand::has_subcommand);
    if !api {
        return exit::report(&exec::full());
    }
    let (cli, hardened) = match parse::<ClientCli>() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    run(
        cli.global,
        hardened,
        |_| Ok(()),
        |ctx| run_api(ctx, cli.command),
    )
}

/// The command's name in a command line (without the program's name): the first word
/// that is neither a global flag nor the value of `--home`. `None` when there is none, or
/// a word comes first that only the full program knows (`--help`, `--version`, ...).
fn command_word(args: &[OsString]) -> Option<&OsStr> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let Some(text) = word.to_str() else {
            return Some(word);
        };
        match text {
            "--home" => {
                words.next();
            }
            "--json" | "--quiet" | "--verbose" => {}
            _ if text.starts_with("--home=") => {}
            // `-q`, `-v`, `-vv`, `-qv`, ...
            _ if text.len() > 1
                && text.starts_with('-')
                && text[1..].chars().all(|c| c == 'q' || c == 'v') => {}
            _ if text.starts_with('-') => return None,
            _ => return Some(word),
        }
    }
    None
}

/// The command line, parsed as `C` after the process is hardened (a clap error is
/// answered here), and whether the hardening worked.
///
/// # Errors
/// The exit code of a clap error (usage, `--help`, `--version`), once it is printed.
pub fn parse<C: Parser>() -> Result<(C, std::io::Result<()>), ExitCode> {
    // First thing: no core dumps of a process that holds keys (or the API token).
    let hardened = datamesh_keys::harden_process();
    let cli = C::try_parse().map_err(|e| exit::clap_error(&e))?;
    Ok((cli, hardened))
}

/// Runs `command` with the context every command gets (the home, after `setup` ran on
/// it, and the output the global flags ask for); its error is printed as one line and
/// becomes the exit code.
pub fn run(
    global: GlobalArgs,
    hardened: std::io::Result<()>,
    setup: impl FnOnce(&Path) -> anyhow::Result<()>,
    command: impl FnOnce(&Context) -> anyhow::Result<()>,
) -> ExitCode {
    let out = Output::new(global.json, global.quiet, global.verbose);
    if let Err(e) = hardened {
        out.warn(format_args!("cannot disable core dumps: {e}"));
    }
    let home = match home::resolve(global.home) {
        Ok(home) => home,
        Err(e) => return exit::report(&e),
    };
    if let Err(e) = setup(&home) {
        return exit::report(&e);
    }
    match command(&Context { home, out }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit::report(&e),
    }
}

/// Runs an API command.
///
/// # Errors
/// The command's, for [`exit::report`].
pub fn run_api(ctx: &Context, command: ApiCommand) -> anyhow::Result<()> {
    match command {
        ApiCommand::Put(args) => cmd::transfer::put(ctx, args),
        ApiCommand::Get(args) => cmd::transfer::get(ctx, args),
        ApiCommand::Share(args) => cmd::files::share(ctx, args),
        ApiCommand::Check(args) => cmd::check::run(ctx, args),
        ApiCommand::Rm(args) => cmd::rm::run(ctx, args),
        ApiCommand::Ls(args) => cmd::tree::ls(ctx, args),
        ApiCommand::Status => cmd::files::status(ctx),
        ApiCommand::Peers => cmd::files::peers(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(line: &[&str]) -> Option<String> {
        let args: Vec<OsString> = line.iter().map(OsString::from).collect();
        command_word(&args).map(|w| w.to_string_lossy().into_owned())
    }

    #[test]
    fn the_command_word_is_found_past_the_global_flags() {
        assert_eq!(word(&["put", "f"]).as_deref(), Some("put"));
        assert_eq!(word(&["--home", "put", "ls"]).as_deref(), Some("ls"));
        assert_eq!(
            word(&["--home=x", "-qv", "--json", "get", "id"]).as_deref(),
            Some("get")
        );
        assert_eq!(
            word(&["-vv", "--quiet", "--verbose", "node", "run"]).as_deref(),
            Some("node")
        );
        assert_eq!(word(&["--help"]), None);
        assert_eq!(word(&["--version", "put"]), None);
        assert_eq!(word(&["-h", "put"]), None);
        assert_eq!(word(&["--home"]), None);
        assert_eq!(word(&[]), None);
    }

    #[test]
    fn only_api_commands_run_in_the_client() {
        for name in [
            "put", "get", "check", "share", "rm", "ls", "status", "peers",
        ] {
            assert!(ApiCommand::has_subcommand(name), "{name}");
        }
        for name in [
            "init",
            "keys",
            "node",
            "testnet",
            "debug",
            "completions",
            "help",
        ] {
            assert!(!ApiCommand::has_subcommand(name), "{name}");
        }
    }
}
