//! Backup bundles: every key version (but destroyed ones) and the policy, sealed under a
//! backup password of their own (see `docs/keystore.md`, "Backup bundles").
//!
//! ```text
//! bundle = magic "DMBACKUP" (8) | version 0x01 (1) | m_kib u32 | t u32 | p u32 | salt (32)
//!          | nonce (12) | AES-256-GCM(KEK, nonce, aad = the 69 bytes before, plain) | BLAKE3(all before) (32)
//! KEK    = Argon2id(backup password, salt, m, t, p)
//! plain  = postcard(Manifest) | postcard(Content)
//! Manifest { format_version: u8, created: i64, key_count: u32, content_blake3: [u8; 32] }
//! Content  { created: i64, policy: RotationPolicy, entries: Vec<Entry> }
//! ```
//!
//! The unkeyed BLAKE3 trailer tells a damaged or truncated file (integrity) from a wrong
//! password (authentication), which AES-GCM alone cannot.

use aes_gcm::aead::Aead;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KdfError;
use crate::kdf::{self, KdfLimits, KdfParams, SALT_LEN};
use crate::model::{Body, Entry, KeyStatus, RotationPolicy, SlotMeta};
use crate::password::Password;

/// First bytes of every backup bundle.
const MAGIC: [u8; 8] = *b"DMBACKUP";
/// The only bundle format version this build reads and writes.
pub const BACKUP_VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 12 + SALT_LEN + NONCE_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TRAILER_LEN: usize = 32;
/// A bundle larger than this is refused before it is read (16 MiB, as the keystore).
pub const MAX_BACKUP_LEN: u64 = 16 << 20;

/// Why a bundle cannot be made or opened. Nothing is written when opening fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Not a bundle at all.
    #[error("not a DataMesh backup bundle (bad magic)")]
    NotABackup,
    /// A bundle of a newer (or unknown) format.
    #[error(
        "backup bundle format version {version} is not supported (this build reads 1); use a newer datamesh"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// Truncated, or a byte changed: the checksum over the file fails.
    #[error("the backup bundle is damaged or truncated ({problem})")]
    Damaged {
        /// What is wrong.
        problem: String,
    },
    /// The file is intact but the password does not open it.
    #[error("wrong backup password")]
    WrongPassword,
    /// The KDF parameters of the bundle are refused, or the KDF failed.
    #[error(transparent)]
    Kdf(#[from] KdfError),
    /// The backup password is unusable (empty, too long).
    #[error(transparent)]
    Password(#[from] crate::error::PasswordError),
    /// Writing the restored keystore failed (a keystore exists, a weak password, I/O).
    #[error(transparent)]
    Create(#[from] crate::error::CreateError),
    /// Cannot encode the content, or cannot log the backup.
    #[error("cannot encode the backup: {0}")]
    Encode(String),
}

/// The authenticated manifest of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The bundle format version (equal to the header's).
    pub format_version: u8,
    /// When the bundle was made (unix seconds).
    pub created: i64,
    /// How many key versions it holds.
    pub key_count: u32,
    /// BLAKE3 of the encoded content.
    pub content_blake3: [u8; 32],
}

/// What a bundle holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Content {
    pub(crate) created: i64,
    pub(crate) policy: RotationPolicy,
    pub(crate) entries: Vec<Entry>,
}

/// Seals `entries` (destroyed ones are left out) and `policy` under `password`.
pub(crate) fn seal(
    entries: &[Entry],
    policy: RotationPolicy,
    password: &Password,
    kdf: KdfParams,
    now: i64,
) -> Result<Vec<u8>, BackupError> {
    let content = Content {
        created: now,
        policy,
        entries: entries
            .iter()
            .filter(|e| e.status != KeyStatus::Destroyed)
            .cloned()
            .collect(),
    };
    let content_bytes = Zeroizing::new(
        postcard::to_allocvec(&content).map_err(|e| BackupError::Encode(e.to_string()))?,
    );
    let manifest = Manifest {
        format_version: BACKUP_VERSION,
        created: now,
        key_count: u32::try_from(content.entries.len()).unwrap_or(u32::MAX),
        content_blake3: *blake3::hash(&content_bytes).as_bytes(),
    };
    let mut plain = Zeroizing::new(
        postcard::to_allocvec(&manifest).map_err(|e| BackupError::Encode(e.to_string()))?,
    );
    plain.reserve_exact(content_bytes.len());
    plain.extend_from_slice(&content_bytes);

    let mut salt = [0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let kek = kdf::derive_kek(password, &salt, kdf, &KdfLimits::DEFAULT)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(BACKUP_VERSION);
    out.extend_from_slice(&kdf.memory_kib().to_be_bytes());
    out.extend_from_slice(&kdf.iterations().to_be_bytes());
    out.extend_from_slice(&kdf.parallelism().to_be_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let sealed = Aes256Gcm::new(GenericArray::from_slice(kek.expose()))
        .encrypt(
            GenericArray::from_slice(&nonce),
            aes_gcm::aead::Payload {
                msg: &plain,
                aad: &out,
            },
        )
        .map_err(|_| BackupError::Encode("the backup is too large to seal".into()))?;
    out.extend_from_slice(&sealed);
    let trailer = blake3::hash(&out);
    out.extend_from_slice(trailer.as_bytes());
    Ok(out)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

/// Opens a bundle: magic, version, checksum, KDF limits, then the password.
pub(crate) fn open(
    bytes: &[u8],
    password: &Password,
    limits: &KdfLimits,
) -> Result<(Manifest, Content), BackupError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(BackupError::NotABackup);
    }
    match bytes.get(MAGIC.len()) {
        Some(&BACKUP_VERSION) => {}
        Some(&version) => return Err(BackupError::UnsupportedVersion { version }),
        None => {
            return Err(BackupError::Damaged {
                problem: "truncated".into(),
            });
        }
    }
    if bytes.len() < HEADER_LEN + TAG_LEN + TRAILER_LEN {
        return Err(BackupError::Damaged {
            problem: "truncated".into(),
        });
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if blake3::hash(body) != blake3::Hash::from_bytes(trailer.try_into().unwrap_or([0; 32])) {
        return Err(BackupError::Damaged {
            problem: "checksum mismatch".into(),
        });
    }
    let (header, sealed) = body.split_at(HEADER_LEN);
    let kdf = KdfParams::unchecked(be32(header, 9), be32(header, 13), be32(header, 17));
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&header[21..21 + SALT_LEN]);
    let nonce = &header[21 + SALT_LEN..];
    let kek = kdf::derive_kek(password, &salt, kdf, limits)?;
    let plain = Zeroizing::new(
        Aes256Gcm::new(GenericArray::from_slice(kek.expose()))
            .decrypt(
                GenericArray::from_slice(nonce),
                aes_gcm::aead::Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| BackupError::WrongPassword)?,
    );
    let malformed = |what: &str| BackupError::Damaged {
        problem: what.to_owned(),
    };
    let (manifest, content_bytes) = postcard::take_from_bytes::<Manifest>(&plain)
        .map_err(|_| malformed("the manifest does not decode"))?;
    if manifest.format_version != BACKUP_VERSION {
        return Err(malformed(
            "the manifest's version differs from the header's",
        ));
    }
    if blake3::hash(content_bytes) != blake3::Hash::from_bytes(manifest.content_blake3) {
        return Err(malformed(
            "the content does not match the manifest's checksum",
        ));
    }
    let content: Content = postcard::from_bytes(content_bytes)
        .map_err(|_| malformed("the content does not decode"))?;
    if usize::try_from(manifest.key_count).ok() != Some(content.entries.len()) {
        return Err(malformed("the key count does not match the manifest"));
    }
    // The checks every keystore body passes (one active key of each kind, public keys
    // matching secrets, ...), so that `verify` refuses what `restore` would.
    let body = Body {
        created: content.created,
        next_slot_id: 2,
        slots: vec![SlotMeta {
            id: 1,
            label: String::new(),
            created: content.created,
        }],
        policy: content.policy,
        entries: content.entries,
        audit_anchor: None,
    };
    body.validate(&[1])
        .map_err(|problem| BackupError::Damaged { problem })?;
    let content = Content {
        created: body.created,
        policy: body.policy,
        entries: body.entries,
    };
    Ok((manifest, content))
}
