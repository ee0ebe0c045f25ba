//! Who a data key can be wrapped to: a classical (secp256k1 ECIES), a hybrid
//! (ML-KEM-768 + secp256k1) or a P-256 (ECIES on NIST P-256, the FIPS-minded profile)
//! recipient, the secrets that unwrap them, the policy that says which kinds a node may
//! wrap to, and the checksummed text form of the recipients that have one.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ecies::{self, PublicKey, SecretKey};
use crate::error::EnvelopeError;
use crate::hybrid::{self, HYBRID_RECIPIENT_PREFIX, HybridError, HybridPublicKey, HybridSecretKey};
use crate::ids::KeyId;
use crate::p256_ecies::{self, P256_RECIPIENT_PREFIX, P256Error, P256PublicKey, P256SecretKey};

/// The text form of a public key with a checksum: `prefix` then the lowercase base32hex
/// (RFC 4648 §7, no padding) of `key (len) || checksum (4)`, checksum the first 4 bytes
/// of `BLAKE3-derive_key(checksum_context, key)`. One definition for every recipient kind
/// that has such a form (hybrid `dmpq1`, P-256 `dmp256v1`).
pub(crate) struct CheckedText {
    pub(crate) prefix: &'static str,
    pub(crate) checksum_context: &'static str,
    pub(crate) len: usize,
}

/// Why a checked text did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextError {
    /// It does not start with the prefix.
    Prefix,
    /// Not base32hex, the wrong length, or a checksum that does not match: a typo.
    Checksum,
}

const CHECKSUM_LEN: usize = 4;

impl CheckedText {
    fn checksum(&self, key: &[u8]) -> [u8; CHECKSUM_LEN] {
        let full = blake3::derive_key(self.checksum_context, key);
        let mut out = [0u8; CHECKSUM_LEN];
        out.copy_from_slice(&full[..CHECKSUM_LEN]);
        out
    }

    /// The text of `key`.
    pub(crate) fn encode(&self, key: &[u8]) -> String {
        let mut raw = key.to_vec();
        raw.extend_from_slice(&self.checksum(key));
        let mut out = self.prefix.to_owned();
        out.push_str(&data_encoding::BASE32_DNSSEC.encode(&raw));
        out
    }

    /// The key bytes of a text (surrounding whitespace and upper case accepted), checksum
    /// checked; not yet checked to be a valid key.
    pub(crate) fn decode(&self, text: &str) -> Result<Vec<u8>, TextError> {
        let text = text.trim().to_ascii_lowercase();
        let body = text.strip_prefix(self.prefix).ok_or(TextError::Prefix)?;
        let mut raw = data_encoding::BASE32_DNSSEC
            .decode(body.as_bytes())
            .map_err(|_| TextError::Checksum)?;
        if raw.len() != self.len + CHECKSUM_LEN {
            return Err(TextError::Checksum);
        }
        let checksum = raw.split_off(self.len);
        if self.checksum(&raw)[..] != checksum[..] {
            return Err(TextError::Checksum);
        }
        Ok(raw)
    }
}

/// How a data key is wrapped to one recipient. The serde derive is the envelope's
/// encoding (postcard variant index): append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecipientKind {
    /// ECIES on secp256k1 (index 0).
    Classical,
    /// ML-KEM-768 + secp256k1 ECIES, combined (index 1).
    Hybrid,
    /// ECIES on NIST P-256 (index 2; only in envelopes of version 4).
    P256,
}

impl RecipientKind {
    /// `classical` or `hybrid`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::Hybrid => "hybrid",
            Self::P256 => "p256",
        }
    }

    /// The algorithms that protect a data key wrapped this way.
    #[must_use]
    pub fn algorithms(&self) -> &'static str {
        match self {
            Self::Classical => "ecies-secp256k1",
            Self::Hybrid => "ml-kem-768+ecies-secp256k1",
            Self::P256 => "ecies-p256",
        }
    }

    /// Whether a quantum computer that breaks secp256k1 still cannot unwrap it.
    #[must_use]
    pub fn is_post_quantum(&self) -> bool {
        matches!(self, Self::Hybrid)
    }
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key a data key can be wrapped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A secp256k1 key (66 hex characters).
    Classical(PublicKey),
    /// A hybrid key (`dmpq1...`).
    Hybrid(HybridPublicKey),
    /// A NIST P-256 key (`dmp256v1...`).
    P256(P256PublicKey),
}

impl Recipient {
    /// The id key envelopes name it by.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        match self {
            Self::Classical(pk) => KeyId::of(pk),
            Self::Hybrid(pk) => pk.key_id(),
            Self::P256(pk) => pk.key_id(),
        }
    }

    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> RecipientKind {
        match self {
            Self::Classical(_) => RecipientKind::Classical,
            Self::Hybrid(_) => RecipientKind::Hybrid,
            Self::P256(_) => RecipientKind::P256,
        }
    }

    /// Wraps `plaintext` to this recipient (fresh randomness).
    #[must_use]
    pub fn wrap(&self, plaintext: &[u8]) -> Vec<u8> {
        match self {
            Self::Classical(pk) => ecies::encrypt(pk, plaintext),
            Self::Hybrid(pk) => hybrid::wrap(pk, plaintext),
            Self::P256(pk) => p256_ecies::wrap(pk, plaintext),
        }
    }

    /// The key agreement of a wrap to this recipient (fresh randomness), made before the
    /// plaintext is known: [`Encapsulation::wrap`] then gives the bytes [`Self::wrap`]
    /// would. This is the costly part of a wrap (the elliptic-curve multiplications and
    /// ML-KEM's encapsulation), which a node makes ahead of its puts. `None` never
    /// happens for a key that parsed.
    #[must_use]
    pub fn encapsulate(&self) -> Option<Encapsulation> {
        let agreed = match self {
            Self::Classical(pk) => {
                let ephemeral = k256::SecretKey::random(&mut rand_core::OsRng);
                let (ephemeral_pk, key) = ecies::agree_encapsulate(pk, &ephemeral)?;
                Agreed::Classical { ephemeral_pk, key }
            }
            Self::Hybrid(pk) => Agreed::Hybrid(hybrid::encapsulate(pk)?),
            Self::P256(pk) => Agreed::P256(p256_ecies::encapsulate(pk)?),
        };
        Some(Encapsulation {
            recipient: self.key_id(),
            agreed,
        })
    }
}

/// A wrap's key agreement with one recipient, made by [`Recipient::encapsulate`] before
/// the data key it will wrap. Its key is zeroized on drop and seals one plaintext:
/// [`Self::wrap`] takes it by value. `Debug` names the recipient only.
pub struct Encapsulation {
    recipient: KeyId,
    agreed: Agreed,
}

enum Agreed {
    Classical {
        ephemeral_pk: [u8; ecies::EPHEMERAL_KEY_LEN],
        key: Zeroizing<[u8; 32]>,
    },
    Hybrid(hybrid::HybridAgreed),
    P256(p256_ecies::P256Agreed),
}

impl Encapsulation {
    /// The id of the recipient it was made for.
    #[must_use]
    pub fn recipient(&self) -> KeyId {
        self.recipient
    }

    /// `plaintext` wrapped to the recipient: the bytes (and format) of [`Recipient::wrap`].
    /// `None` only above AES-GCM's limit (64 GiB).
    #[must_use]
    pub fn wrap(self, plaintext: &[u8]) -> Option<Vec<u8>> {
        match &self.agreed {
            Agreed::Classical { ephemeral_pk, key } => {
                ecies::seal_agreed(ephemeral_pk, key, &ecies::random_nonce(), plaintext)
            }
            Agreed::Hybrid(agreed) => hybrid::seal_agreed(agreed, plaintext),
            Agreed::P256(agreed) => p256_ecies::seal_agreed(agreed, plaintext),
        }
    }
}

impl fmt::Debug for Encapsulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encapsulation({})", self.recipient.short())
    }
}

impl From<PublicKey> for Recipient {
    fn from(pk: PublicKey) -> Self {
        Self::Classical(pk)
    }
}

impl From<HybridPublicKey> for Recipient {
    fn from(pk: HybridPublicKey) -> Self {
        Self::Hybrid(pk)
    }
}

impl From<P256PublicKey> for Recipient {
    fn from(pk: P256PublicKey) -> Self {
        Self::P256(pk)
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Classical(pk) => pk.fmt(f),
            Self::Hybrid(pk) => pk.fmt(f),
            Self::P256(pk) => pk.fmt(f),
        }
    }
}

/// Why a recipient text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecipientError {
    /// A `dmpq1...` text that is not a valid hybrid recipient.
    #[error(transparent)]
    Hybrid(#[from] HybridError),
    /// A `dmp256v1...` text that is not a valid P-256 recipient.
    #[error(transparent)]
    P256(#[from] P256Error),
    /// Neither a hybrid nor a P-256 recipient nor a secp256k1 public key.
    #[error(
        "not a recipient: expected a hybrid recipient (dmpq1...), a P-256 recipient (dmp256v1...) or a secp256k1 public key (66 hex characters)"
    )]
    Unknown,
}

impl FromStr for Recipient {
    type Err = RecipientError;

    /// A hybrid recipient (`dmpq1...`), a P-256 recipient (`dmp256v1...`), checksums
    /// checked, or a secp256k1 public key (66 hex).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let starts = |prefix: &str| {
            s.get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        };
        if starts(HYBRID_RECIPIENT_PREFIX) {
            return Ok(Self::Hybrid(s.parse()?));
        }
        if starts(P256_RECIPIENT_PREFIX) {
            return Ok(Self::P256(s.parse()?));
        }
        s.parse::<PublicKey>()
            .map(Self::Classical)
            .map_err(|_| RecipientError::Unknown)
    }
}

/// A secret that unwraps data keys wrapped to its public key.
pub trait UnwrapKey {
    /// The id of its public key.
    fn key_id(&self) -> KeyId;
    /// Unwraps `wrapped`, which an envelope says is of `kind`.
    ///
    /// # Errors
    /// [`EnvelopeError::BadWrappedKey`] or [`EnvelopeError::BadHybridWrappedKey`].
    fn unwrap_key(
        &self,
        kind: RecipientKind,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError>;
}

/// What a key of another kind reports for a wrapped key of `kind`: that kind's opaque
/// decryption failure.
fn wrong_kind(kind: RecipientKind) -> EnvelopeError {
    match kind {
        RecipientKind::Classical => {
            EnvelopeError::BadWrappedKey(ecies::EciesError::DecryptionFailed)
        }
        RecipientKind::Hybrid => EnvelopeError::BadHybridWrappedKey(HybridError::DecryptionFailed),
        RecipientKind::P256 => EnvelopeError::BadP256WrappedKey(P256Error::DecryptionFailed),
    }
}

impl UnwrapKey for SecretKey {
    fn key_id(&self) -> KeyId {
        KeyId::of(&self.public_key())
    }

    fn unwrap_key(
        &self,
        kind: RecipientKind,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        match kind {
            RecipientKind::Classical => {
                ecies::decrypt(self, wrapped).map_err(EnvelopeError::BadWrappedKey)
            }
            other => Err(wrong_kind(other)),
        }
    }
}

impl UnwrapKey for HybridSecretKey {
    fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    fn unwrap_key(
        &self,
        kind: RecipientKind,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        match kind {
            RecipientKind::Hybrid => {
                hybrid::unwrap(self, wrapped).map_err(EnvelopeError::BadHybridWrappedKey)
            }
            other => Err(wrong_kind(other)),
        }
    }
}

impl UnwrapKey for P256SecretKey {
    fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    fn unwrap_key(
        &self,
        kind: RecipientKind,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        match kind {
            RecipientKind::P256 => {
                p256_ecies::unwrap(self, wrapped).map_err(EnvelopeError::BadP256WrappedKey)
            }
            other => Err(wrong_kind(other)),
        }
    }
}

/// A file-encryption secret of either kind (what a keystore holds).
#[derive(Debug)]
pub enum FileSecret {
    /// A secp256k1 key.
    Classical(SecretKey),
    /// A hybrid key.
    Hybrid(HybridSecretKey),
    /// A NIST P-256 key.
    P256(P256SecretKey),
}

impl FileSecret {
    /// Its public key, as a recipient.
    #[must_use]
    pub fn recipient(&self) -> Recipient {
        match self {
            Self::Classical(sk) => Recipient::Classical(sk.public_key()),
            Self::Hybrid(sk) => Recipient::Hybrid(sk.public_key()),
            Self::P256(sk) => Recipient::P256(sk.public_key()),
        }
    }
}

impl UnwrapKey for FileSecret {
    fn key_id(&self) -> KeyId {
        match self {
            Self::Classical(sk) => sk.key_id(),
            Self::Hybrid(sk) => sk.key_id(),
            Self::P256(sk) => sk.key_id(),
        }
    }

    fn unwrap_key(
        &self,
        kind: RecipientKind,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        match self {
            Self::Classical(sk) => sk.unwrap_key(kind, wrapped),
            Self::Hybrid(sk) => sk.unwrap_key(kind, wrapped),
            Self::P256(sk) => sk.unwrap_key(kind, wrapped),
        }
    }
}

/// Which recipient kinds a node creates and accepts (the `[security]` policy's
/// `recipients`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecipientPolicy {
    /// New files wrap to the owner's classical key; any recipient is accepted.
    Classical,
    /// New files wrap to the owner's hybrid key; classical recipients are still accepted
    /// when named (the default).
    #[default]
    Hybrid,
    /// Only hybrid recipients: wrapping to a classical-only recipient is refused.
    PqRequired,
    /// The FIPS-minded profile: new files wrap to the owner's P-256 key, and only P-256
    /// recipients are accepted (secp256k1 is on no NIST list, and a hybrid recipient's
    /// secp256k1 half would make its wrap depend on it).
    P256Only,
}

impl RecipientPolicy {
    /// `classical`, `hybrid` or `pq-required`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::Hybrid => "hybrid",
            Self::PqRequired => "pq-required",
            Self::P256Only => "p256-only",
        }
    }

    /// The kind the owner's own key should be for new files.
    #[must_use]
    pub fn owner_kind(&self) -> RecipientKind {
        match self {
            Self::Classical => RecipientKind::Classical,
            Self::Hybrid | Self::PqRequired => RecipientKind::Hybrid,
            Self::P256Only => RecipientKind::P256,
        }
    }

    /// Whether a recipient of `kind` may be wrapped to.
    #[must_use]
    pub fn allows(&self, kind: RecipientKind) -> bool {
        match self {
            Self::Classical | Self::Hybrid => true,
            Self::PqRequired => kind.is_post_quantum(),
            Self::P256Only => kind == RecipientKind::P256,
        }
    }

    /// Checks that every recipient may be wrapped to.
    ///
    /// # Errors
    /// [`PolicyError::ClassicalRecipient`] under `pq-required` for the first classical-only
    /// one (secp256k1 or P-256); [`PolicyError::NotP256Recipient`] under `p256-only` for
    /// the first that is not P-256.
    pub fn check(&self, recipients: &[Recipient]) -> Result<(), PolicyError> {
        let Some(r) = recipients.iter().find(|r| !self.allows(r.kind())) else {
            return Ok(());
        };
        let key_id = r.key_id().short();
        Err(match self {
            Self::P256Only => PolicyError::NotP256Recipient {
                key_id,
                kind: r.kind(),
            },
            _ => PolicyError::ClassicalRecipient { key_id },
        })
    }
}

impl fmt::Display for RecipientPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecipientPolicy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "classical" => Ok(Self::Classical),
            "hybrid" => Ok(Self::Hybrid),
            "pq-required" => Ok(Self::PqRequired),
            "p256-only" => Ok(Self::P256Only),
            _ => Err(PolicyError::UnknownPolicy),
        }
    }
}

/// A wrap the recipient policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `pq-required` and a classical-only recipient.
    #[error(
        "security policy pq-required refuses classical-only recipient {key_id}: its data key could be unwrapped by a future quantum computer; give its hybrid recipient (dmpq1...) instead"
    )]
    ClassicalRecipient {
        /// Short id of the refused recipient.
        key_id: String,
    },
    /// `pq-required` and the owner's keystore has no hybrid key to wrap new files to.
    #[error(
        "security policy pq-required needs a hybrid file-encryption key and the keystore has none; run the node once with recipients = \"hybrid\" to create it"
    )]
    NoHybridKey,
    /// `p256-only` (the fips profile) and a recipient of another kind.
    #[error(
        "security policy p256-only (profile fips) refuses {kind} recipient {key_id}: only NIST P-256 recipients (dmp256v1...) are allowed"
    )]
    NotP256Recipient {
        /// Short id of the refused recipient.
        key_id: String,
        /// Its kind.
        kind: RecipientKind,
    },
    /// `p256-only` and the owner's keystore has no P-256 key to wrap new files to.
    #[error(
        "security policy p256-only (profile fips) needs a P-256 file-encryption key and the keystore has none; start the node once under the fips profile to create it"
    )]
    NoP256Key,
    /// Not one of the policy names.
    #[error("unknown recipient policy: expected classical, hybrid, pq-required or p256-only")]
    UnknownPolicy,
}
