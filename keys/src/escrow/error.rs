//! The errors of escrow: [`ShareError`] for the shares themselves (making, parsing,
//! combining), [`EscrowError`] for the keystore operations built on them (split, verify,
//! recover). Messages never carry a share or the key.

use std::path::PathBuf;

use crate::error::{AuditError, ChangeError, CreateError, OpenError};
use crate::recovery::CopyError;

/// Why shares cannot be made or combined. Messages never carry a share or the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShareError {
    /// K or N out of bounds.
    #[error("invalid threshold {threshold} of {shares}: need 2 <= threshold <= shares <= 255")]
    BadThreshold {
        /// K.
        threshold: u8,
        /// N.
        shares: u8,
    },
    /// The text is not a share (no prefix, bad characters, wrong length).
    #[error("not an escrow share: {problem}")]
    Malformed {
        /// What is wrong.
        problem: String,
    },
    /// Another share format version.
    #[error("escrow share format version {version} is not supported (this build reads 1)")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// The checksum does not match: the share was mistyped or damaged.
    #[error("the share's checksum does not match: it was mistyped or damaged")]
    Checksum,
    /// Fewer than K shares.
    #[error("{have} share(s) given, {need} needed to recover the key")]
    NotEnoughShares {
        /// Distinct shares given.
        have: usize,
        /// K.
        need: u8,
    },
    /// The same index twice.
    #[error("share {index} was given twice; give {need} different shares")]
    DuplicateIndex {
        /// The index.
        index: u8,
        /// K.
        need: u8,
    },
    /// Shares of different sets (a split was redone).
    #[error(
        "the shares come from different escrow sets ({first} and {other}); use shares of one set only"
    )]
    MixedSets {
        /// The first set id (hex).
        first: String,
        /// Another set id (hex).
        other: String,
    },
    /// Same set id, but the shares disagree on K, N, date or commitment.
    #[error("the shares of set {set} disagree on their parameters: one is forged or damaged")]
    Inconsistent {
        /// The set id (hex).
        set: String,
    },
    /// The combined key does not match the set's commitment.
    #[error("the shares do not combine to the key of set {set}: one of them is wrong or damaged")]
    Commitment {
        /// The set id (hex).
        set: String,
    },
    /// A sealed share was given where a plain one is needed.
    #[error(
        "this share is sealed to a contact's key: the contact opens it with `datamesh keys escrow open-share FILE` in their own home"
    )]
    Sealed,
    /// A sealed share for a key this keystore does not hold.
    #[error(
        "this share is sealed to the key with id {key_id}, which this keystore does not hold: open it in that contact's home"
    )]
    NotForThisKey {
        /// The key id (hex) the share names.
        key_id: String,
    },
}

/// Why an escrow operation (split, verify, recover) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowError {
    /// The shares themselves: damaged, too few, of different sets, inconsistent.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// The shares combine (their commitment holds) but not to this keystore's master key.
    #[error(
        "the shares of escrow set {set} are valid but belong to another keystore than the one in {home}"
    )]
    WrongKeystore {
        /// The set id (hex).
        set: String,
        /// The home.
        home: PathBuf,
    },
    /// Opening the keystore failed (missing, permissions, damaged).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Writing the new password slot failed; nothing changed.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// Logging the operation failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The network copy of the keystore does not open with the shares' master key.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// Writing the recovered keystore into a new home failed (a keystore exists there, a
    /// weak password, I/O); nothing was written.
    #[error(transparent)]
    Create(#[from] CreateError),
}
