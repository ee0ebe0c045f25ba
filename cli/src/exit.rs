//! Errors -> one line on stderr and an exit code.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | usage error, or any other failure (I/O, permissions, lock busy, ...) |
//! | 2 | authentication: wrong, missing, mismatched or weak password; no key opens the file; too few escrow shares; a bundle or share sealed to another key |
//! | 3 | not found: no keystore in the home, no such key, version, slot or file |
//! | 4 | network: node not running, peer unreachable, not enough shards or peers |
//! | 5 | integrity: keystore, audit log, bundle, share or network copy damaged or tampered with (an old keystore put back, a cut audit log, a bundle not signed by --from); a stripe unrecoverable |

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

use datamesh_api::{ClientError, ErrorKind};

/// Exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Usage or other failure.
    Failure = 1,
    /// Wrong or unusable password.
    Auth = 2,
    /// Something named does not exist.
    NotFound = 3,
    /// Network, or not enough shards (used by the node commands).
    Network = 4,
    /// Damaged or tampered data.
    Integrity = 5,
}

/// Prints `error: ...` as one line and returns its exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    let message = format!("{err:#}").replace(['\n', '\r'], " ");
    let _ = writeln!(io::stderr().lock(), "error: {message}");
    ExitCode::from(code_of(err) as u8)
}

/// A clap error: help and version go to stdout with code 0; usage errors are one line
/// (clap's first) with a pointer to `--help`, code 1.
pub fn clap_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(io::stdout().lock(), "{}", err.render());
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(io::stderr().lock(), "{}", err.render());
            ExitCode::from(Code::Failure as u8)
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments");
            let _ = writeln!(
                io::stderr().lock(),
                "{} (see `datamesh --help`)",
                first.trim_end()
            );
            ExitCode::from(Code::Failure as u8)
        }
    }
}

/// The exit code of the first error in the chain that has a specific one.
pub fn code_of(err: &anyhow::Error) -> Code {
    let more = MORE.get();
    err.chain()
        .find_map(|e| classify(e).or_else(|| more.and_then(|more| more(e))))
        .unwrap_or(Code::Failure)
}

/// Gives errors of types this library does not know (the keystore's, a testnet's) their
/// exit codes: the full program's, set before it runs a command.
pub type Classify = fn(&(dyn std::error::Error + 'static)) -> Option<Code>;

static MORE: OnceLock<Classify> = OnceLock::new();

/// Sets the [`Classify`] of the errors this library does not know (once per process).
pub fn classify_more(more: Classify) {
    let _ = MORE.set(more);
}

fn classify(err: &(dyn std::error::Error + 'static)) -> Option<Code> {
    if err.is::<crate::cmd::files::NodeNotRunning>() {
        return Some(Code::Network);
    }
    if let Some(e) = err.downcast_ref::<ClientError>() {
        return Some(client(e));
    }
    None
}

fn client(err: &ClientError) -> Code {
    match err {
        ClientError::Unreachable { .. } | ClientError::Interrupted(_) => Code::Network,
        ClientError::Api { kind, .. } => match kind {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::NoKey | ErrorKind::Unauthorized => Code::Auth,
            ErrorKind::Integrity => Code::Integrity,
            ErrorKind::InsufficientShards | ErrorKind::NotEnoughPeers | ErrorKind::Network => {
                Code::Network
            }
            _ => Code::Failure,
        },
        _ => Code::Failure,
    }
}
