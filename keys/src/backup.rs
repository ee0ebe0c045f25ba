//! Backup bundles: every key version (but destroyed ones), the policy and an opaque
//! catalog section (the node's list of files, encoded by the caller), sealed under a
//! backup password of their own or with ECIES to a recipient's secp256k1 public key (see
//! `docs/keystore.md`, "Backup bundles").
//!
//! ```text
//! v2 (written):
//! bundle = magic "DMBACKUP" (8) | version 0x02 (1) | seal kind (1) | seal header
//!          | nonce (12) | AES-256-GCM(K, nonce, aad = every byte before, plain) | BLAKE3(all before) (32)
//! kind 0x01, password:  m_kib u32 | t u32 | p u32 | salt (32);   K = Argon2id(backup password, salt, m, t, p)
//! kind 0x02, recipient: recipient key id (32) | ECIES(recipient public key, K) (129);   K = 32 random bytes
//! plain  = postcard(Manifest) | postcard(Content)
//! Manifest { format_version: u8, created: i64, key_count: u32, content_blake3: [u8; 32] }
//! Content  { created: i64, policy: RotationPolicy, entries: Vec<Entry>, catalog: Vec<u8> }
//!
//! v1 (still read): magic | 0x01 | m_kib | t | p | salt | nonce | AES-256-GCM(...) | BLAKE3,
//!          password only, Content without the catalog.
//! ```
//!
//! The unkeyed BLAKE3 trailer tells a damaged or truncated file (integrity) from a wrong
//! password or key (authentication), which AES-GCM alone cannot.

use aes_gcm::aead::Aead;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use datamesh_core::KeyId;
use datamesh_core::ecies::{self, PublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KdfError;
use crate::kdf::{self, KdfLimits, KdfParams, SALT_LEN};
use crate::model::{Body, Entry, KeyStatus, RotationPolicy, SlotMeta};
use crate::password::Password;
use crate::ring::KeyRing;
use crate::secret::Secret32;

/// First bytes of every backup bundle.
const MAGIC: [u8; 8] = *b"DMBACKUP";
/// The bundle format version this build writes (it also reads version 1).
pub const BACKUP_VERSION: u8 = 2;
const V1: u8 = 1;
const KIND_PASSWORD: u8 = 0x01;
const KIND_RECIPIENT: u8 = 0x02;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TRAILER_LEN: usize = 32;
const KDF_LEN: usize = 12;
/// ECIES of a 32-byte key: 65-byte ephemeral key, 16-byte nonce, 32 bytes, 16-byte tag.
const WRAPPED_LEN: usize = 32 + 97;
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
        "backup bundle format version {version} is not supported (this build reads 1 and 2); use a newer datamesh"
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
    /// The bundle is sealed to a public key none of the given keys matches.
    #[error(
        "the backup bundle is sealed to the key with id {key_id}, which this keystore does not hold; open it with the recipient's home (`keys export-public` there prints its key)"
    )]
    WrongRecipient {
        /// The key id (hex) the bundle names.
        key_id: String,
    },
    /// A password was given for a bundle sealed to a key, or the other way round.
    #[error("{0}")]
    WrongSealKind(&'static str),
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

/// How a new bundle is sealed.
#[derive(Debug, Clone, Copy)]
pub enum BackupSeal<'a> {
    /// Under a backup password (Argon2id with these parameters).
    Password {
        /// The backup password.
        password: &'a Password,
        /// Its Argon2id parameters.
        kdf: KdfParams,
    },
    /// With ECIES to a recipient's secp256k1 public key.
    Recipient(&'a PublicKey),
}

/// What opens a bundle.
#[derive(Debug, Clone, Copy)]
pub enum BackupKey<'a> {
    /// The backup password of a password-sealed bundle.
    Password(&'a Password),
    /// The recipient's key ring: its file-encryption keys (every live version) are tried.
    Recipient(&'a KeyRing),
}

/// How an opened bundle was sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedWith {
    /// A backup password.
    Password,
    /// ECIES to the key with this key id (hex).
    Recipient(String),
}

/// An opened and fully checked bundle (what `verify` reports, and what `restore` uses).
#[derive(Debug)]
pub struct OpenedBackup {
    /// Its manifest.
    pub manifest: Manifest,
    /// How it was sealed.
    pub sealed_with: SealedWith,
    /// The catalog section as the bundle's maker gave it (empty in version 1 bundles).
    pub catalog: Vec<u8>,
    pub(crate) content: Content,
}

/// What a bundle holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Content {
    pub(crate) created: i64,
    pub(crate) policy: RotationPolicy,
    pub(crate) entries: Vec<Entry>,
    pub(crate) catalog: Vec<u8>,
}

/// Version 1 content (no catalog).
#[derive(Deserialize)]
struct ContentV1 {
    created: i64,
    policy: RotationPolicy,
    entries: Vec<Entry>,
}

/// Seals `entries` (destroyed ones are left out), `policy` and `catalog`.
pub(crate) fn seal(
    entries: &[Entry],
    policy: RotationPolicy,
    catalog: &[u8],
    how: BackupSeal<'_>,
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
        catalog: catalog.to_vec(),
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

    let mut out = Vec::with_capacity(256 + plain.len() + TAG_LEN + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(BACKUP_VERSION);
    let key = match how {
        BackupSeal::Password { password, kdf } => {
            let mut salt = [0u8; SALT_LEN];
            OsRng.fill_bytes(&mut salt);
            out.push(KIND_PASSWORD);
            out.extend_from_slice(&kdf.memory_kib().to_be_bytes());
            out.extend_from_slice(&kdf.iterations().to_be_bytes());
            out.extend_from_slice(&kdf.parallelism().to_be_bytes());
            out.extend_from_slice(&salt);
            kdf::derive_kek(password, &salt, kdf, &KdfLimits::DEFAULT)?
        }
        BackupSeal::Recipient(recipient) => {
            let key = Secret32::random();
            out.push(KIND_RECIPIENT);
            out.extend_from_slice(KeyId::of(recipient).as_bytes());
            let wrapped = ecies::encrypt(recipient, key.expose());
            debug_assert_eq!(wrapped.len(), WRAPPED_LEN);
            out.extend_from_slice(&wrapped);
            key
        }
    };
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let sealed = Aes256Gcm::new(GenericArray::from_slice(key.expose()))
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

fn damaged(problem: &str) -> BackupError {
    BackupError::Damaged {
        problem: problem.to_owned(),
    }
}

/// Opens a bundle: magic, version, checksum, then the key (KDF limits first for a
/// password), then the manifest and every keystore check on the entries.
pub(crate) fn open(
    bytes: &[u8],
    key: BackupKey<'_>,
    limits: &KdfLimits,
) -> Result<OpenedBackup, BackupError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(BackupError::NotABackup);
    }
    let version = match bytes.get(MAGIC.len()) {
        Some(&v @ (V1 | BACKUP_VERSION)) => v,
        Some(&version) => return Err(BackupError::UnsupportedVersion { version }),
        None => return Err(damaged("truncated")),
    };
    if bytes.len() < MAGIC.len() + 2 + TAG_LEN + TRAILER_LEN {
        return Err(damaged("truncated"));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if blake3::hash(body) != blake3::Hash::from_bytes(trailer.try_into().unwrap_or([0; 32])) {
        return Err(damaged("checksum mismatch"));
    }
    // The seal: its header length and what it names.
    let (kind, seal_at) = if version == V1 {
        (KIND_PASSWORD, MAGIC.len() + 1)
    } else {
        (body[MAGIC.len() + 1], MAGIC.len() + 2)
    };
    let seal_len = match kind {
        KIND_PASSWORD => KDF_LEN + SALT_LEN,
        KIND_RECIPIENT => 32 + WRAPPED_LEN,
        _ => return Err(damaged("unknown seal kind")),
    };
    let header_len = seal_at + seal_len + NONCE_LEN;
    if body.len() < header_len + TAG_LEN {
        return Err(damaged("truncated"));
    }
    let (header, sealed) = body.split_at(header_len);
    let seal_header = &header[seal_at..seal_at + seal_len];
    let nonce = &header[seal_at + seal_len..];
    let (aead_key, sealed_with) = match (kind, key) {
        (KIND_PASSWORD, BackupKey::Password(password)) => {
            let kdf = KdfParams::unchecked(
                be32(seal_header, 0),
                be32(seal_header, 4),
                be32(seal_header, 8),
            );
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(&seal_header[KDF_LEN..]);
            (
                kdf::derive_kek(password, &salt, kdf, limits)?,
                SealedWith::Password,
            )
        }
        (KIND_RECIPIENT, BackupKey::Recipient(ring)) => {
            let key_id = &seal_header[..32];
            let wrapped = &seal_header[32..];
            let hex = data_encoding::HEXLOWER.encode(key_id);
            let opened = ring
                .decryption_keys(false)
                .into_iter()
                .filter(|(_, secret)| KeyId::of(&secret.public_key()).as_bytes()[..] == *key_id)
                .find_map(|(_, secret)| ecies::decrypt(&secret, wrapped).ok());
            let Some(opened) = opened.filter(|k| k.len() == 32) else {
                return Err(BackupError::WrongRecipient { key_id: hex });
            };
            let mut raw = [0u8; 32];
            raw.copy_from_slice(&opened);
            let key = Secret32::copy_from(&raw);
            zeroize::Zeroize::zeroize(&mut raw);
            (key, SealedWith::Recipient(hex))
        }
        (KIND_PASSWORD, BackupKey::Recipient(_)) => {
            return Err(BackupError::WrongSealKind(
                "this backup bundle is sealed with a backup password, not to a public key: give --backup-password-file (or type it)",
            ));
        }
        _ => {
            return Err(BackupError::WrongSealKind(
                "this backup bundle is sealed to a public key: open it with the recipient's home (--identity-home DIR)",
            ));
        }
    };
    let plain = Zeroizing::new(
        Aes256Gcm::new(GenericArray::from_slice(aead_key.expose()))
            .decrypt(
                GenericArray::from_slice(nonce),
                aes_gcm::aead::Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| match &sealed_with {
                SealedWith::Password => BackupError::WrongPassword,
                // The key id matched and ECIES opened the key: only a forged bundle gets here.
                SealedWith::Recipient(_) => damaged("the content does not authenticate"),
            })?,
    );
    let (manifest, content_bytes) = postcard::take_from_bytes::<Manifest>(&plain)
        .map_err(|_| damaged("the manifest does not decode"))?;
    if manifest.format_version != version {
        return Err(damaged("the manifest's version differs from the header's"));
    }
    if blake3::hash(content_bytes) != blake3::Hash::from_bytes(manifest.content_blake3) {
        return Err(damaged(
            "the content does not match the manifest's checksum",
        ));
    }
    let content: Content = if version == V1 {
        let v1: ContentV1 = postcard::from_bytes(content_bytes)
            .map_err(|_| damaged("the content does not decode"))?;
        Content {
            created: v1.created,
            policy: v1.policy,
            entries: v1.entries,
            catalog: Vec::new(),
        }
    } else {
        postcard::from_bytes(content_bytes).map_err(|_| damaged("the content does not decode"))?
    };
    if usize::try_from(manifest.key_count).ok() != Some(content.entries.len()) {
        return Err(damaged("the key count does not match the manifest"));
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
        catalog: content.catalog,
    };
    Ok(OpenedBackup {
        manifest,
        sealed_with,
        catalog: content.catalog.clone(),
        content,
    })
}

/// Whether a bundle is sealed to a public key (read from its header; nothing checked).
#[must_use]
pub fn is_sealed_to_key(bytes: &[u8]) -> bool {
    bytes.get(..MAGIC.len()) == Some(&MAGIC[..])
        && bytes.get(MAGIC.len()) == Some(&BACKUP_VERSION)
        && bytes.get(MAGIC.len() + 1) == Some(&KIND_RECIPIENT)
}
