//! One error enum per keystore operation. Messages are lowercase, say what happened and,
//! where the user can act, what to do. None of them ever carries a secret or a password.
//! The errors of escrow, backup bundles and the network copy live beside their code
//! (`escrow/error.rs`, `backup.rs`, `recovery.rs`).

use std::io;
use std::path::PathBuf;

/// A password that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// A new password was empty.
    #[error("the password is empty; choose a non-empty password")]
    Empty,
    /// The password is longer than `MAX_PASSWORD_LEN`.
    #[error("the password is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// Length given, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The password bytes are not UTF-8.
    #[error("the password is not valid UTF-8 text")]
    NotUtf8,
}

/// Argon2id parameters that are refused, or a failure of the KDF itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KdfError {
    /// A parameter is above the limit the reader accepts (checked before any allocation).
    #[error(
        "{kdf} {param} = {value} exceeds the limit of {max}; the keystore asks for more work than this reader allows"
    )]
    AboveLimit {
        /// `argon2id` or `pbkdf2-sha256`.
        kdf: &'static str,
        /// `memory_kib`, `iterations` or `parallelism`.
        param: &'static str,
        /// The value asked for.
        value: u32,
        /// The limit.
        max: u32,
    },
    /// A parameter is below Argon2's minimum, or PBKDF2's iterations below the floor
    /// every reader enforces.
    #[error("{kdf} {param} = {value} is below the minimum of {min}")]
    BelowMinimum {
        /// `argon2id` or `pbkdf2-sha256`.
        kdf: &'static str,
        /// `memory_kib`, `iterations` or `parallelism`.
        param: &'static str,
        /// The value asked for.
        value: u32,
        /// The minimum.
        min: u32,
    },
    /// The argon2 implementation refused its input.
    #[error("argon2id failed: {0}")]
    Argon2(argon2::Error),
    /// AES-GCM refused to wrap the master key (cannot happen for 32 bytes).
    #[error("cannot wrap the master key")]
    Wrap,
}

/// A file or folder of the keystore that group or others can access, or that is not ours.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// Group or other permission bits are set.
    #[error(
        "{path} is accessible by group or others (mode {mode:03o}); run `chmod {fix:o} {path}` to fix it"
    )]
    TooOpen {
        /// The file or folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode to set (600 for files, 700 for folders).
        fix: u32,
    },
    /// Owned by another user.
    #[error("{path} is owned by uid {owner}, not by you (uid {me}); refusing to use it")]
    NotOwner {
        /// The file or folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current user.
        me: u32,
    },
    /// A symbolic link or other special file where a regular file or folder is expected.
    #[error("{path} is not a regular {expected}; refusing to use it")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// `file` or `folder`.
        expected: &'static str,
    },
}

/// Opening (reading and unlocking) a keystore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No keystore in this home.
    #[error("no keystore in {home}; run `datamesh init` first (or pass --home)")]
    NotInitialised {
        /// The home folder.
        home: PathBuf,
    },
    /// The password opens no slot.
    #[error("wrong password for the keystore in {home}")]
    WrongPassword {
        /// The home folder.
        home: PathBuf,
    },
    /// Loose permissions or wrong owner.
    #[error(transparent)]
    Permission(#[from] PermissionError),
    /// The file is not a DataMesh keystore, is damaged or was tampered with.
    #[error("the keystore {path} is damaged or was tampered with: {problem}")]
    Corrupt {
        /// The keystore file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A keystore format this build does not know.
    #[error(
        "the keystore {path} has format version {version}; this build reads versions 1 and 2 only (upgrade datamesh)"
    )]
    UnsupportedVersion {
        /// The keystore file.
        path: PathBuf,
        /// The version byte found.
        version: u8,
    },
    /// The slot's KDF parameters are refused.
    #[error("cannot unlock {path}: {source}")]
    Kdf {
        /// The keystore file.
        path: PathBuf,
        /// What is wrong with the parameters.
        source: KdfError,
    },
    /// Another process holds the keystore lock for too long.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The keystore is older than the newest this home (or this process) has seen: a
    /// copy put back over a newer one.
    #[error(
        "the keystore {path} is older (generation {found}) than the newest this home has seen (generation {newest}): an old copy was put back; if you restored it on purpose, run `datamesh keys accept-rollback`"
    )]
    RolledBack {
        /// The keystore file.
        path: PathBuf,
        /// Its generation.
        found: u64,
        /// The newest generation seen.
        newest: u64,
    },
    /// The audit head does not authenticate under this keystore's key: the head was
    /// edited or removed, or the keystore replaced by another (e.g. a copy from before a
    /// rekey).
    #[error(
        "the audit head {path} is missing or does not authenticate with this keystore's key: the keystore or the head was replaced; if you restored an older keystore on purpose, run `datamesh keys accept-rollback`"
    )]
    ForeignHead {
        /// The head file.
        path: PathBuf,
    },
    /// The audit log records (sealed) a key change after the last one this keystore
    /// holds: an old copy was put back (with an old head).
    #[error(
        "the keystore {path} is older than its audit log (line {seq} records a later key change): an old copy was put back; if you restored it on purpose, run `datamesh keys accept-rollback`"
    )]
    Superseded {
        /// The keystore file.
        path: PathBuf,
        /// The line of the later change.
        seq: u64,
    },
    /// The keystore was rekeyed by another process: it no longer opens with the master
    /// key this process holds.
    #[error(
        "the keystore {path} was rekeyed by another process; restart to unlock it with the password"
    )]
    Rekeyed {
        /// The keystore file.
        path: PathBuf,
    },
    /// An I/O error.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Every slot tried failed, some for a reason other than a wrong secret (a missing
    /// PKCS#11 module, a wrong PIN, an absent token, no TPM, a PCR policy mismatch).
    #[error("cannot unlock the keystore in {home}: {problem}")]
    SlotFailed {
        /// The home folder.
        home: PathBuf,
        /// Each slot tried and why it failed, in one line.
        problem: String,
    },
    /// Nothing given can open any slot (no password, no key file, hardware not allowed).
    #[error("nothing given opens a slot of the keystore in {home}: {needs}")]
    NothingToTry {
        /// The home folder.
        home: PathBuf,
        /// What each slot needs.
        needs: String,
    },
}

/// The keystore lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process kept the lock past the timeout.
    #[error(
        "the keystore in {home} is busy: another datamesh process holds {path}; try again when it is done"
    )]
    Busy {
        /// The home folder.
        home: PathBuf,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Creating a keystore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// There is already a keystore in this home.
    #[error("a keystore already exists in {home}; refusing to overwrite it")]
    AlreadyExists {
        /// The home folder.
        home: PathBuf,
    },
    /// The password cannot be used.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The KDF failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// The lock could not be taken.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// An I/O error.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A change to an open keystore (rotate, revoke, destroy, policy, password, slots) failed.
/// Nothing was changed on disk unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// No key of this name.
    #[error("no key named {name:?}; `datamesh keys list` shows the names")]
    NoSuchKey {
        /// The name asked for.
        name: String,
    },
    /// No such version of the key.
    #[error("key {name:?} has no version {version}")]
    NoSuchVersion {
        /// The name.
        name: String,
        /// The version asked for.
        version: u32,
    },
    /// The key has no active version (e.g. an imported legacy key).
    #[error("key {name:?} has no active version to rotate (imported legacy keys only decrypt)")]
    NoActiveVersion {
        /// The name.
        name: String,
    },
    /// Destroying the active version is refused.
    #[error(
        "version {version} of {name:?} is the active one; rotate {name} first, then destroy it"
    )]
    DestroyActive {
        /// The name.
        name: String,
        /// The version.
        version: u32,
    },
    /// The version may still be needed and `force` was not given.
    #[error(
        "version {version} of {name:?} may still be needed to decrypt files; re-wrap them to a newer version first, or force it (`datamesh keys destroy --force`)"
    )]
    StillNeeded {
        /// The name.
        name: String,
        /// The version.
        version: u32,
    },
    /// The version is already destroyed.
    #[error("version {version} of {name:?} is already destroyed")]
    AlreadyDestroyed {
        /// The name.
        name: String,
        /// The version.
        version: u32,
    },
    /// The version is already revoked.
    #[error("version {version} of {name:?} is already revoked")]
    AlreadyRevoked {
        /// The name.
        name: String,
        /// The version.
        version: u32,
    },
    /// A revocation needs a reason.
    #[error("a revocation needs a non-empty reason of at most {max} bytes")]
    BadReason {
        /// The limit.
        max: usize,
    },
    /// A label that is too long.
    #[error("a slot label is at most {max} bytes")]
    BadLabel {
        /// The limit.
        max: usize,
    },
    /// Invalid rotation policy values.
    #[error("invalid rotation policy: {problem}")]
    BadPolicy {
        /// What is wrong.
        problem: String,
    },
    /// No slot with this id.
    #[error("no unlock slot {id}; `datamesh keys slot list` shows them")]
    NoSuchSlot {
        /// The id asked for.
        id: u32,
    },
    /// Removing the last slot would lock everyone out.
    #[error("slot {id} is the last unlock slot; add another one first")]
    LastSlot {
        /// The slot.
        id: u32,
    },
    /// `rekey` was given a password that does not open the slot this session unlocked
    /// with, or a password to keep that opens no other slot.
    #[error("{0}")]
    RekeyPassword(String),
    /// Removing the slot this session unlocked with is refused (as restic does).
    #[error(
        "slot {id} is the one you unlocked with; unlock with another slot's password to remove it"
    )]
    CurrentSlot {
        /// The slot.
        id: u32,
    },
    /// A hardware slot could not be made (module, token, PIN, TPM).
    #[error("cannot add the slot: {problem}")]
    SlotBackend {
        /// What went wrong, in one line.
        problem: String,
    },
    /// The unlock policy refuses the change.
    #[error("{problem}")]
    UnlockPolicy {
        /// Why, in one line.
        problem: String,
    },
    /// A key file could not be used.
    #[error("{problem}")]
    KeyFile {
        /// What went wrong, in one line.
        problem: String,
    },
    /// Too many slots.
    #[error("the keystore already has {max} unlock slots")]
    TooManySlots {
        /// The limit.
        max: usize,
    },
    /// The new password cannot be used.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The KDF failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// Another process changed the keystore in a way this session cannot follow.
    #[error(transparent)]
    Reload(#[from] OpenError),
    /// The lock could not be taken.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The new keystore is in place but its folder could not be synced: the change may be
    /// lost if the machine loses power now.
    #[error(
        "the keystore {path} was replaced but its folder could not be synced ({source}); the change may not survive a power failure"
    )]
    Unsynced {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The new keystore could not be written; the old one is still in place.
    #[error("cannot write the keystore {path}: {source}; the previous keystore is unchanged")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Importing legacy plaintext keys failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// No `NAME.key` file in the folder.
    #[error("no legacy NAME.key files in {dir}")]
    NothingToImport {
        /// The folder.
        dir: PathBuf,
    },
    /// A legacy key file is unusable; nothing was imported or removed.
    #[error("cannot import {path}: {problem}; nothing was imported or removed")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Reading the folder failed; nothing was imported or removed.
    #[error("cannot read {path}: {source}; nothing was imported or removed")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Sealing the keys into the keystore failed; nothing was removed.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The keys are sealed, but a plaintext original could not be erased.
    #[error("the keys are imported, but {path} could not be erased ({source}); remove it by hand")]
    Cleanup {
        /// The plaintext file left behind.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The audit log is broken, or cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A line does not parse, does not chain to the previous line, or is out of sequence.
    #[error("audit log {path} is broken at line {line}: {problem}")]
    Broken {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The last key change recorded in the sealed keystore is not in the log.
    #[error(
        "audit log {path} lacks the line of the last key change (seq {seq}) that the keystore records: lines were removed or edited"
    )]
    AnchorMissing {
        /// The log file.
        path: PathBuf,
        /// The sequence number of the missing line.
        seq: u64,
    },
    /// The audit head (`keys/audit.head`, sealed under the keystore's key) and the log
    /// disagree: lines it seals were cut or edited, lines were added without the key, or
    /// the head was removed or forged.
    #[error("audit log {path} was tampered with: {problem}")]
    Tampered {
        /// The log file.
        path: PathBuf,
        /// What was found.
        problem: String,
    },
    /// The log cannot be read.
    #[error("cannot read the audit log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The lock could not be taken.
    #[error(transparent)]
    Locked(#[from] LockError),
}
