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

use datamesh_api::{ClientError, ErrorKind};
use datamesh_keys::{
    AuditError, BackupError, ChangeError, CreateError, EscrowError, ImportError, OpenError,
    PasswordError, ShareError,
};
use datamesh_node::files::GetError;

use crate::password::PasswordProblem;

/// Exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Code {
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
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let message = format!("{err:#}").replace(['\n', '\r'], " ");
    let _ = writeln!(io::stderr().lock(), "error: {message}");
    ExitCode::from(code_of(err) as u8)
}

/// A clap error: help and version go to stdout with code 0; usage errors are one line
/// (clap's first) with a pointer to `--help`, code 1.
pub(crate) fn clap_error(err: &clap::Error) -> ExitCode {
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
pub(crate) fn code_of(err: &anyhow::Error) -> Code {
    err.chain().find_map(classify).unwrap_or(Code::Failure)
}

fn classify(err: &(dyn std::error::Error + 'static)) -> Option<Code> {
    if let Some(e) = err.downcast_ref::<OpenError>() {
        return Some(open(e));
    }
    if let Some(e) = err.downcast_ref::<ChangeError>() {
        return Some(change(e));
    }
    if let Some(e) = err.downcast_ref::<CreateError>() {
        return Some(match e {
            CreateError::Password(_) => Code::Auth,
            _ => Code::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<ImportError>() {
        return Some(match e {
            ImportError::NothingToImport { .. } => Code::NotFound,
            ImportError::Change(e) => change(e),
            _ => Code::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<AuditError>() {
        return Some(match e {
            AuditError::Broken { .. }
            | AuditError::AnchorMissing { .. }
            | AuditError::Tampered { .. } => Code::Integrity,
            _ => Code::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<EscrowError>() {
        return Some(match e {
            EscrowError::Share(e) => share(e),
            EscrowError::WrongKeystore { .. } => Code::Auth,
            EscrowError::Open(e) => open(e),
            EscrowError::Change(e) => change(e),
            EscrowError::Copy(_) => Code::Integrity,
            EscrowError::Create(CreateError::Password(_)) => Code::Auth,
            _ => Code::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<BackupError>() {
        return Some(match e {
            BackupError::WrongPassword | BackupError::WrongRecipient { .. } => Code::Auth,
            BackupError::NotABackup
            | BackupError::Damaged { .. }
            | BackupError::UnsupportedVersion { .. }
            | BackupError::Kdf(_)
            | BackupError::BadSignature
            | BackupError::WrongSigner { .. }
            | BackupError::Unsigned(_) => Code::Integrity,
            BackupError::Password(_) | BackupError::Create(CreateError::Password(_)) => Code::Auth,
            _ => Code::Failure,
        });
    }
    if let Some(e) = err.downcast_ref::<ShareError>() {
        return Some(share(e));
    }
    if err.is::<PasswordError>() || err.is::<PasswordProblem>() {
        return Some(Code::Auth);
    }
    if err.is::<crate::cmd::files::NodeNotRunning>() {
        return Some(Code::Network);
    }
    if err.is::<datamesh_keys::CopyError>() {
        return Some(Code::Integrity);
    }
    if let Some(e) = err.downcast_ref::<GetError>() {
        return Some(get(e));
    }
    if let Some(e) = err.downcast_ref::<ClientError>() {
        return Some(client(e));
    }
    if let Some(e) = err.downcast_ref::<datamesh_testnet::Error>() {
        return Some(testnet(e));
    }
    if err.is::<crate::cmd::testnet::DemoMismatch>() {
        return Some(Code::Integrity);
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

/// A fetch by an in-process node (the ephemeral node of `keys escrow recover`).
fn get(err: &GetError) -> Code {
    match err {
        GetError::NotFound(_) => Code::NotFound,
        GetError::NoKey(_) => Code::Auth,
        GetError::Decode(_) => Code::Integrity,
        GetError::InsufficientShards { .. } | GetError::Network(_) => Code::Network,
        _ => Code::Failure,
    }
}

fn testnet(err: &datamesh_testnet::Error) -> Code {
    use datamesh_testnet::Error;
    match err {
        Error::NoSuchNode { .. } | Error::NoNodes(_) => Code::NotFound,
        Error::NotRunning { .. } | Error::Exited { .. } | Error::Timeout { .. } => Code::Network,
        _ => Code::Failure,
    }
}

/// Too few shares or shares of another keystore: authentication (like a wrong password);
/// a damaged, forged or mismatched share: integrity; mixed sets or a repeated share: usage.
fn share(err: &ShareError) -> Code {
    match err {
        ShareError::NotEnoughShares { .. } | ShareError::NotForThisKey { .. } => Code::Auth,
        ShareError::Malformed { .. }
        | ShareError::Checksum
        | ShareError::Inconsistent { .. }
        | ShareError::Commitment { .. }
        | ShareError::UnsupportedVersion { .. } => Code::Integrity,
        _ => Code::Failure,
    }
}

fn open(err: &OpenError) -> Code {
    match err {
        OpenError::WrongPassword { .. } => Code::Auth,
        OpenError::NotInitialised { .. } => Code::NotFound,
        OpenError::Corrupt { .. }
        | OpenError::Kdf { .. }
        | OpenError::RolledBack { .. }
        | OpenError::ForeignHead { .. }
        | OpenError::Superseded { .. } => Code::Integrity,
        _ => Code::Failure,
    }
}

fn change(err: &ChangeError) -> Code {
    match err {
        ChangeError::NoSuchKey { .. }
        | ChangeError::NoSuchVersion { .. }
        | ChangeError::NoSuchSlot { .. } => Code::NotFound,
        ChangeError::Password(_) | ChangeError::RekeyPassword(_) => Code::Auth,
        ChangeError::Reload(e) => open(e),
        _ => Code::Failure,
    }
}
