//! Who a data key can be wrapped to: a classical (secp256k1 ECIES) or a hybrid
//! (ML-KEM-768 + secp256k1) recipient, the secrets that unwrap them, and the policy that
//! says which kinds a node may wrap to.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ecies::{self, PublicKey, SecretKey};
use crate::error::EnvelopeError;
use crate::hybrid::{self, HYBRID_RECIPIENT_PREFIX, HybridError, HybridPublicKey, HybridSecretKey};
use crate::ids::KeyId;

/// How a data key is wrapped to one recipient. The serde derive is the envelope's
/// encoding (postcard variant index): append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecipientKind {
    /// ECIES on secp256k1 (index 0).
    Classical,
    /// ML-KEM-768 + secp256k1 ECIES, combined (index 1).
    Hybrid,
}

impl RecipientKind {
    /// `classical` or `hybrid`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::Hybrid => "hybrid",
        }
    }

    /// The algorithms that protect a data key wrapped this way.
    #[must_use]
    pub fn algorithms(&self) -> &'static str {
        match self {
            Self::Classical => "ecies-secp256k1",
            Self::Hybrid => "ml-kem-768+ecies-secp256k1",
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
}

impl Recipient {
    /// The id key envelopes name it by.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        match self {
            Self::Classical(pk) => KeyId::of(pk),
            Self::Hybrid(pk) => pk.key_id(),
        }
    }

    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> RecipientKind {
        match self {
            Self::Classical(_) => RecipientKind::Classical,
            Self::Hybrid(_) => RecipientKind::Hybrid,
        }
    }

    /// Wraps `plaintext` to this recipient (fresh randomness).
    #[must_use]
    pub fn wrap(&self, plaintext: &[u8]) -> Vec<u8> {
        match self {
            Self::Classical(pk) => ecies::encrypt(pk, plaintext),
            Self::Hybrid(pk) => hybrid::wrap(pk, plaintext),
        }
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

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Classical(pk) => pk.fmt(f),
            Self::Hybrid(pk) => pk.fmt(f),
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
    /// Neither a hybrid recipient nor a secp256k1 public key.
    #[error(
        "not a recipient: expected a hybrid recipient (dmpq1...) or a secp256k1 public key (66 hex characters)"
    )]
    Unknown,
}

impl FromStr for Recipient {
    type Err = RecipientError;

    /// A hybrid recipient (`dmpq1...`, checksum checked) or a secp256k1 public key (66 hex).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() >= HYBRID_RECIPIENT_PREFIX.len()
            && s[..HYBRID_RECIPIENT_PREFIX.len()].eq_ignore_ascii_case(HYBRID_RECIPIENT_PREFIX)
        {
            return Ok(Self::Hybrid(s.parse()?));
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
            RecipientKind::Hybrid => Err(EnvelopeError::BadHybridWrappedKey(
                HybridError::DecryptionFailed,
            )),
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
            RecipientKind::Classical => Err(EnvelopeError::BadWrappedKey(
                ecies::EciesError::DecryptionFailed,
            )),
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
}

impl FileSecret {
    /// Its public key, as a recipient.
    #[must_use]
    pub fn recipient(&self) -> Recipient {
        match self {
            Self::Classical(sk) => Recipient::Classical(sk.public_key()),
            Self::Hybrid(sk) => Recipient::Hybrid(sk.public_key()),
        }
    }
}

impl UnwrapKey for FileSecret {
    fn key_id(&self) -> KeyId {
        match self {
            Self::Classical(sk) => sk.key_id(),
            Self::Hybrid(sk) => sk.key_id(),
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
}

impl RecipientPolicy {
    /// `classical`, `hybrid` or `pq-required`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Classical => "classical",
            Self::Hybrid => "hybrid",
            Self::PqRequired => "pq-required",
        }
    }

    /// The kind the owner's own key should be for new files.
    #[must_use]
    pub fn owner_kind(&self) -> RecipientKind {
        match self {
            Self::Classical => RecipientKind::Classical,
            Self::Hybrid | Self::PqRequired => RecipientKind::Hybrid,
        }
    }

    /// Checks that every recipient may be wrapped to.
    ///
    /// # Errors
    /// [`PolicyError::ClassicalRecipient`] under `pq-required` for the first classical one.
    pub fn check(&self, recipients: &[Recipient]) -> Result<(), PolicyError> {
        if *self == Self::PqRequired
            && let Some(r) = recipients
                .iter()
                .find(|r| r.kind() == RecipientKind::Classical)
        {
            return Err(PolicyError::ClassicalRecipient {
                key_id: r.key_id().short(),
            });
        }
        Ok(())
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
    /// Not one of the three policy names.
    #[error("unknown recipient policy: expected classical, hybrid or pq-required")]
    UnknownPolicy,
}
