//! The DataMesh keystore: the node's own secrets — its libp2p identity (ed25519) and its
//! file-encryption key (secp256k1, for ECIES) — sealed on disk, versioned, rotated on a
//! policy, and audited.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use datamesh_keys::{KdfParams, Keystore, Password};
//! # let dir = tempfile::tempdir()?;
//! # let home = dir.path();
//! let password = Password::new("correct horse battery staple")?;
//! # let kdf = KdfParams::new(8, 1, 1)?; // tests only: the default is m=64 MiB t=3 p=4
//! let mut keystore = Keystore::create(home, &password, kdf)?;
//!
//! let seed = keystore.node_identity_seed(); // -> libp2p ed25519 keypair
//! let (v1, _key) = keystore.active_file_key()?; // new files are wrapped to this key
//! keystore.rotate("file-encryption")?;
//! let (v2, _key) = keystore.active_file_key()?;
//! assert_eq!((v1, v2), (1, 2));
//! assert_eq!(keystore.decryption_keys(false).len(), 2); // v1 still decrypts
//!
//! let reopened = Keystore::open(home, &password)?;
//! assert_eq!(reopened.node_identity_seed(), seed);
//! assert_eq!(Keystore::generation(home)?, reopened.generation());
//! # Ok(()) }
//! ```
//!
//! Gotchas first:
//!
//! - The default KDF parameters (Argon2id m=64 MiB, t=3, p=4) make every unlock cost
//!   about a third of a second of one core; keep the [`Keystore`] open in long-running
//!   processes and follow other processes' changes with [`Keystore::reload`].
//! - Opening refuses a `keys/` folder or file that group or others can access, and says
//!   which `chmod` fixes it.
//! - Nothing is in the clear on disk but the header (magic, version, generation, slots
//!   with their KDF parameters): names, public keys and timestamps are sealed too.
//! - Secrets live in zeroizing types and are only handed out by
//!   [`KeyRing::node_identity_seed`], [`KeyRing::active_file_key`],
//!   [`KeyRing::decryption_keys`], [`Keystore::recovery_key`] (from escrow shares) and as
//!   escrow [`Share`]s ([`Keystore::escrow_split`], [`Share::open_sealed`]); bundles,
//!   network copies and sealed shares carry them sealed. No type of this crate prints one.
//!
//! Layout of a home: [`Layout`]. File format: `docs/keystore.md`.

mod audit;
mod backup;
mod error;
mod escrow;
mod format;
pub mod fsx;
mod kdf;
mod keystore;
mod layout;
mod lock;
mod model;
mod password;
mod process;
mod recovery;
mod ring;
mod secret;
mod slot;

pub use audit::{
    AuditEvent, AuditOp, AuditRecord, AuditReport, AuditSummary, OpCounts, Outcome, report,
    verify_chain,
};
pub use backup::{
    BACKUP_VERSION, BackupError, BackupKey, BackupSeal, MAX_BACKUP_LEN, Manifest, OpenedBackup,
    SealedWith, TrustedSigner, is_sealed_to_key,
};
pub use error::{
    AuditError, ChangeError, CreateError, ImportError, KdfError, LockError, OpenError,
    PasswordError, PermissionError,
};
pub use escrow::{
    EscrowError, SEALED_SHARE_PREFIX, SET_ID_LEN, SHARE_LEN, SHARE_LEN_WITH_COPY, SHARE_PREFIX,
    SHARE_VERSION, SHARE_VERSION_WITH_COPY, SetId, Share, ShareError,
};
pub use jiff::Timestamp;
pub use kdf::{KdfAlgorithm, KdfLimits, KdfParams, SALT_LEN};
pub use keystore::Keystore;
pub use keystore::RekeyReport;
pub use keystore::legacy::ImportReport;
pub use layout::{AUDIT_FILE, AUDIT_HEAD_FILE, KEYS_DIR, KEYSTORE_FILE, LOCK_FILE, Layout};
pub use model::{
    DueKey, DueReason, FILE_AUTHORITY, FILE_ENCRYPTION, FILE_ENCRYPTION_HYBRID,
    FILE_ENCRYPTION_P256, KeyInfo, KeyStatus, MAX_LABEL_LEN, MAX_NAME_LEN, MAX_REASON_LEN,
    NODE_IDENTITY, Purpose, RotationPolicy,
};
pub use password::{MAX_PASSWORD_LEN, MIN_STRONG_SCORE, Password, Strength};
pub use process::harden_process;
pub use recovery::{CopyError, MAX_COPY_LEN};
pub use ring::{KeyRing, SlotInfo, SlotKind};
pub use slot::pkcs11::DEFAULT_KEY_LABEL;
pub use slot::tpm::MAX_PCR;
pub use slot::{
    Credentials, DEFAULT_TPM_TCTI, KeyFile, MAX_KEY_FILE_LEN, NewSlot, POLICY_RECORD, Pin,
    SlotChoice, UnlockPolicy, reencode_record,
};

#[cfg(test)]
mod tests;
