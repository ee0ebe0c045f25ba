//! The exit codes of the errors only the full program's commands meet (the keystore's,
//! an in-process node's fetch, a testnet's); the table and every other error are the
//! library's (`datamesh_cli::exit`).

use datamesh_cli::exit::Code;
use datamesh_keys::{
    AuditError, BackupError, ChangeError, CreateError, EscrowError, ImportError, OpenError,
    PasswordError, ShareError,
};
use datamesh_node::files::GetError;

use crate::password::PasswordProblem;

/// Makes [`classify`] part of every exit code this process reports.
pub(crate) fn classify_keystore_errors() {
    datamesh_cli::exit::classify_more(classify);
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
    if err.is::<datamesh_keys::CopyError>() {
        return Some(Code::Integrity);
    }
    if let Some(e) = err.downcast_ref::<GetError>() {
        return Some(get(e));
    }
    if let Some(e) = err.downcast_ref::<datamesh_testnet::Error>() {
        return Some(testnet(e));
    }
    if err.is::<crate::cmd::testnet::DemoMismatch>() {
        return Some(Code::Integrity);
    }
    None
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
