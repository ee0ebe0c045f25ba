//! Backup bundles: every key version (but destroyed ones), the policy and an opaque
//! catalog section (the node's list of files, encoded by the caller), sealed under a
//! backup password of their own or with ECIES to a recipient's secp256k1 public key (see
//! `docs/keystore.md`, "Backup bundles").
//!
//! ```text
//! v3 (written):
//! bundle = magic "DMBACKUP" (8) | version 0x03 (1) | seal kind (1) | seal header
//!          | nonce (12) | AES-256-GCM(K, nonce, aad = every byte before, plain) | BLAKE3(all before) (32)
//! kind 0x01, password:  m_kib u32 | t u32 | p u32 | salt (32);   K = Argon2id(backup password, salt, m, t, p)
//! kind 0x02, recipient: recipient key id (32) | ECIES(recipient public key, K) (129);   K = 32 random bytes
//! plain  = postcard(Manifest) | postcard(Content) | signer (32) | signature (64)
//! Manifest { format_version: u8, created: i64, key_count: u32, content_blake3: [u8; 32] }
//! Content  { created: i64, policy: RotationPolicy, entries: Vec<Entry>, catalog: Vec<u8> }
//! signature = ed25519(the source's active node identity,
//!             "datamesh backup v3 signature" | every byte before the ciphertext | manifest | content)
//!
//! v2 (still read, unsigned): the same with version 0x02 and no signer or signature.
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
/// The bundle format version this build writes (it also reads versions 1 and 2, which
/// are unsigned).
pub const BACKUP_VERSION: u8 = 3;
const V1: u8 = 1;
const V2: u8 = 2;
const SIGNATURE_CONTEXT: &[u8] = b"datamesh backup v3 signature";
const SIGNER_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;
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
        "backup bundle format version {version} is not supported (this build reads 1 to 3); use a newer datamesh"
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
    /// The signature does not verify: the bundle was forged or altered by someone who
    /// could seal it (the recipient's public key is enough for that).
    #[error("the backup bundle's signature does not verify: it was forged or altered; refusing it")]
    BadSignature,
    /// The bundle is signed, but not by the key the user said it must come from.
    #[error(
        "the backup bundle is signed by node identity {found}, not by {expected} (--from): refusing it"
    )]
    WrongSigner {
        /// The signer's public key (hex).
        found: String,
        /// The key given with `--from` (hex).
        expected: String,
    },
    /// The bundle carries no signature (made by an older datamesh).
    #[error("{0}")]
    Unsigned(&'static str),
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

/// Whose bundle a restore accepts.
#[derive(Debug, Clone, Copy)]
pub enum TrustedSigner<'a> {
    /// Only a bundle signed by this ed25519 public key (the source home's node
    /// identity, as `datamesh keys export-public node-identity` prints it).
    Key(&'a [u8; 32]),
    /// Whatever key signed it (trust on first use, confirmed by the user). An unsigned
    /// bundle of an older version passes only if sealed with a backup password.
    FirstUse,
}

/// An opened and fully checked bundle (what `verify` reports, and what `restore` uses).
#[derive(Debug)]
pub struct OpenedBackup {
    /// Its manifest.
    pub manifest: Manifest,
    /// How it was sealed.
    pub sealed_with: SealedWith,
    /// The ed25519 public key (the source's node identity) whose signature was verified;
    /// `None` for an unsigned bundle of version 1 or 2.
    pub signer: Option<[u8; 32]>,
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

impl OpenedBackup {
    /// The signer as lowercase hex, if the bundle is signed.
    #[must_use]
    pub fn signer_hex(&self) -> Option<String> {
        self.signer.map(|k| data_encoding::HEXLOWER.encode(&k))
    }

    /// Checks the signer against what the user trusts.
    ///
    /// # Errors
    ///
    /// [`BackupError::WrongSigner`]; [`BackupError::Unsigned`] for an unsigned bundle
    /// (accepted only on first use and when sealed with a backup password).
    pub fn check_signer(&self, trust: TrustedSigner<'_>) -> Result<(), BackupError> {
        match (trust, &self.signer, &self.sealed_with) {
            (TrustedSigner::Key(expected), Some(found), _) => {
                if found == expected {
                    Ok(())
                } else {
                    Err(BackupError::WrongSigner {
                        found: data_encoding::HEXLOWER.encode(found),
                        expected: data_encoding::HEXLOWER.encode(expected),
                    })
                }
            }
            (TrustedSigner::FirstUse, Some(_), _)
            | (TrustedSigner::FirstUse, None, SealedWith::Password) => Ok(()),
            (TrustedSigner::Key(_), None, SealedWith::Password) => Err(BackupError::Unsigned(
                "this backup bundle is unsigned (made by an older datamesh): only --trust-on-first-use restores it",
            )),
            (_, None, _) => Err(BackupError::Unsigned(
                "this backup bundle is sealed to a public key but unsigned: anyone with that public key could have made it; refusing it",
            )),
        }
    }
}

/// postcard of `value` in a zeroizing buffer of exactly its size (serialising twice, the
/// first time only to count), so no reallocation leaves a copy of a secret behind.
fn encode_zeroizing<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let encode = |e: postcard::Error| BackupError::Encode(e.to_string());
    let len = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_err(encode)?;
    let mut out = Zeroizing::new(vec![0u8; len]);
    let used = postcard::to_slice(value, &mut out[..])
        .map_err(encode)?
        .len();
    out.truncate(used);
    Ok(out)
}

/// The message a v3 signature covers.
fn signed_message(header: &[u8], manifest_and_content: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut message = Zeroizing::new(Vec::with_capacity(
        SIGNATURE_CONTEXT.len() + header.len() + manifest_and_content.len(),
    ));
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(header);
    message.extend_from_slice(manifest_and_content);
    message
}

/// Seals `entries` (destroyed ones are left out), `policy` and `catalog`, signed with
/// `signer` (the source's node identity).
pub(crate) fn seal(
    entries: &[Entry],
    policy: RotationPolicy,
    catalog: &[u8],
    how: BackupSeal<'_>,
    signer: &ed25519_dalek::SigningKey,
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
    let content_bytes = encode_zeroizing(&content)?;
    let manifest = Manifest {
        format_version: BACKUP_VERSION,
        created: now,
        key_count: u32::try_from(content.entries.len()).unwrap_or(u32::MAX),
        content_blake3: *blake3::hash(&content_bytes).as_bytes(),
    };
    let manifest_bytes = encode_zeroizing(&manifest)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(
        manifest_bytes.len() + content_bytes.len() + SIGNER_LEN + SIGNATURE_LEN,
    ));
    plain.extend_from_slice(&manifest_bytes);
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
    let signature = ed25519_dalek::Signer::sign(signer, &signed_message(&out, &plain));
    plain.extend_from_slice(signer.verifying_key().as_bytes());
    plain.extend_from_slice(&signature.to_bytes());
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
        Some(&v @ (V1 | V2 | BACKUP_VERSION)) => v,
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
    let (signed, signer) = if version == BACKUP_VERSION {
        let Some(split) = plain.len().checked_sub(SIGNER_LEN + SIGNATURE_LEN) else {
            return Err(damaged("no signature"));
        };
        let (signed, tail) = plain.split_at(split);
        let (signer, signature) = tail.split_at(SIGNER_LEN);
        let mut key = [0u8; SIGNER_LEN];
        key.copy_from_slice(signer);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(signature);
        let verifying =
            ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| BackupError::BadSignature)?;
        verifying
            .verify_strict(
                &signed_message(header, signed),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .map_err(|_| BackupError::BadSignature)?;
        (signed, Some(key))
    } else {
        (&plain[..], None)
    };
    let (manifest, content_bytes) = postcard::take_from_bytes::<Manifest>(signed)
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
    // The signer is the node identity the bundle carries: the source signed its own keys.
    if let Some(signer) = &signer {
        let own = body.entries.iter().any(|e| {
            e.purpose == crate::model::Purpose::NodeIdentity && e.public_key == signer[..]
        });
        if !own {
            return Err(damaged(
                "the bundle is signed by a key that is not one of its node identities",
            ));
        }
    }
    let content = Content {
        created: body.created,
        policy: body.policy,
        entries: body.entries,
        catalog: content.catalog,
    };
    Ok(OpenedBackup {
        manifest,
        sealed_with,
        signer,
        catalog: content.catalog.clone(),
        content,
    })
}

/// Whether a bundle is sealed to a public key (read from its header; nothing checked).
#[must_use]
pub fn is_sealed_to_key(bytes: &[u8]) -> bool {
    bytes.get(..MAGIC.len()) == Some(&MAGIC[..])
        && matches!(bytes.get(MAGIC.len()), Some(&(V2 | BACKUP_VERSION)))
        && bytes.get(MAGIC.len() + 1) == Some(&KIND_RECIPIENT)
}
