//! Key envelopes: a file's data key wrapped to each recipient, signed by the file's
//! authority key.
//!
//! The envelope lives beside the manifest, not inside it, so rotation and sharing publish
//! a new envelope (higher sequence number) without touching the file id or any shard.
//! Only the owner can make an envelope that verifies: it is signed with the file's
//! authority key ([`crate::AuthorityKey`]), derived from the owner's root secret, whose
//! verifying key the manifest commits to. The envelope names no owner: two files'
//! envelopes do not show that they have one. A forged envelope cannot grant access
//! either: it cannot contain the right data key without the owner's keys, and a wrong
//! key fails the metadata's and first segment's authentication.
//!
//! Wire form: version byte || postcard([`EnvelopeBody`]) || 64-byte ECDSA signature
//! (secp256k1, SHA-256, RFC 6979, low-S) by the file's authority key over
//! `"datamesh key envelope v<version>\0" || version || body`. Version 3 added each wrapped
//! key's kind (classical or hybrid); version 4 is version 3's layout with at least one
//! P-256 recipient (kind 2), so that a build that predates P-256 refuses it by its version
//! byte rather than by a body it cannot decode; an envelope without a P-256 recipient is
//! still written as version 3. Version 2 envelopes (classical only) are still read.

use serde::{Deserialize, Serialize};

use crate::aead::{DataKey, KEY_LEN};
use crate::authority::{AuthorityKey, AuthorityPublic};
use crate::ecies::PublicKey;
use crate::error::EnvelopeError;
use crate::hybrid::HYBRID_OVERHEAD;
use crate::ids::{FileId, KeyId};
use crate::p256_ecies::P256_OVERHEAD;
use crate::recipient::{Encapsulation, Recipient, RecipientKind, UnwrapKey};
use crate::wire::MAX_ENVELOPE_LEN;

/// The envelope format this build writes when no recipient is P-256 (version 3: classical
/// and hybrid recipients). Version 2 (classical recipients only) is still read.
pub const ENVELOPE_VERSION: u8 = 3;
/// The envelope format this build writes when a recipient is P-256 (version 3's layout,
/// kind 2 allowed).
pub const ENVELOPE_VERSION_P256: u8 = 4;
/// The older envelope format this build still reads.
pub const ENVELOPE_VERSION_V2: u8 = 2;
/// Most recipients one envelope may name.
pub const MAX_RECIPIENTS: usize = 256;
const SIGNATURE_LEN: usize = 64;
const MAX_CLASSICAL_WRAPPED_LEN: usize = 256;
const HYBRID_WRAPPED_LEN: usize = HYBRID_OVERHEAD + KEY_LEN;
const P256_WRAPPED_LEN: usize = P256_OVERHEAD + KEY_LEN;

/// A data key wrapped to one recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Whose key opens it.
    pub recipient: KeyId,
    /// How it is wrapped (version 3; always classical in a version 2 envelope).
    pub kind: RecipientKind,
    /// ECIES ciphertext (classical) or hybrid wrap of the 32-byte data key.
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EnvelopeBody {
    file_id: FileId,
    sequence: u64,
    wrapped: Vec<WrappedKey>,
}

/// Version 2 wire form of a wrapped key (no kind: ECIES only).
#[derive(Serialize, Deserialize)]
struct WrappedKeyV2 {
    recipient: KeyId,
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeBodyV2 {
    file_id: FileId,
    sequence: u64,
    wrapped: Vec<WrappedKeyV2>,
}

/// A signed list of wrapped data keys for one file.
///
/// [`KeyEnvelope::from_bytes`] checks only the structure: whether the signature is the
/// file owner's needs the file's authority key, from its manifest
/// ([`KeyEnvelope::verify`], or [`KeyEnvelope::from_verified_bytes`] for both at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEnvelope {
    version: u8,
    body: EnvelopeBody,
    signature: [u8; SIGNATURE_LEN],
}

impl KeyEnvelope {
    /// Wraps `key` to every classical recipient (duplicates removed) and signs with the
    /// file's authority key. See [`KeyEnvelope::seal_to`] for recipients of any kind.
    ///
    /// # Errors
    /// As [`KeyEnvelope::seal_to`].
    pub fn seal(
        file_id: FileId,
        sequence: u64,
        key: &DataKey,
        recipients: &[PublicKey],
        authority: &AuthorityKey,
    ) -> Result<Self, EnvelopeError> {
        let recipients: Vec<Recipient> = recipients.iter().copied().map(Recipient::from).collect();
        Self::seal_to(file_id, sequence, key, &recipients, authority)
    }

    /// Wraps `key` to every recipient, of any kind (duplicates removed), and signs with the
    /// file's authority key (format version 4 if a recipient is P-256, else 3).
    ///
    /// # Errors
    /// [`EnvelopeError::Malformed`] with no recipients, more than [`MAX_RECIPIENTS`], or an
    /// envelope larger than the wire's 64 KiB limit (about 50 hybrid recipients).
    pub fn seal_to(
        file_id: FileId,
        sequence: u64,
        key: &DataKey,
        recipients: &[Recipient],
        authority: &AuthorityKey,
    ) -> Result<Self, EnvelopeError> {
        Self::seal_to_with(file_id, sequence, key, recipients, authority, Vec::new())
    }

    /// [`Self::seal_to`], wrapping to a recipient with one of `ready` made for it
    /// ([`Recipient::encapsulate`], each used at most once) where there is one, and with a
    /// fresh key agreement where not. The envelope is the same either way.
    ///
    /// # Errors
    /// As [`Self::seal_to`].
    pub fn seal_to_with(
        file_id: FileId,
        sequence: u64,
        key: &DataKey,
        recipients: &[Recipient],
        authority: &AuthorityKey,
        mut ready: Vec<Encapsulation>,
    ) -> Result<Self, EnvelopeError> {
        let mut wrapped: Vec<WrappedKey> = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let id = recipient.key_id();
            if wrapped.iter().any(|w| w.recipient == id) {
                continue;
            }
            let ciphertext = match ready.iter().position(|e| e.recipient() == id) {
                Some(at) => ready.swap_remove(at).wrap(key.to_bytes().as_slice()),
                None => Some(recipient.wrap(key.to_bytes().as_slice())),
            };
            wrapped.push(WrappedKey {
                recipient: id,
                kind: recipient.kind(),
                ciphertext: ciphertext
                    .ok_or(EnvelopeError::Malformed("a data key too long to wrap"))?,
            });
        }
        if wrapped.is_empty() || wrapped.len() > MAX_RECIPIENTS {
            return Err(EnvelopeError::Malformed("recipient count out of range"));
        }
        let body = EnvelopeBody {
            file_id,
            sequence,
            wrapped,
        };
        let version = version_for(&body);
        let message = signed_message(version, &body);
        let signature = authority
            .sign(&message)
            .map_err(|_| EnvelopeError::Signing)?;
        let envelope = Self {
            version,
            body,
            signature: signature.to_bytes().into(),
        };
        if envelope.to_bytes().len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::Malformed(
                "too many recipients: the envelope exceeds 64 KiB",
            ));
        }
        Ok(envelope)
    }

    /// Parses an envelope (version 3, or version 2) from untrusted bytes and checks its
    /// structure (not whose signature it carries: see [`KeyEnvelope::verify`]).
    ///
    /// # Errors
    /// [`EnvelopeError::UnsupportedVersion`] or [`EnvelopeError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(EnvelopeError::Malformed("empty"))?;
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::Malformed("longer than 64 KiB"));
        }
        let undecodable = |_| EnvelopeError::Malformed("undecodable body");
        let (body, sig) = match version {
            ENVELOPE_VERSION | ENVELOPE_VERSION_P256 => {
                postcard::take_from_bytes::<EnvelopeBody>(rest).map_err(undecodable)?
            }
            ENVELOPE_VERSION_V2 => {
                let (v2, sig) =
                    postcard::take_from_bytes::<EnvelopeBodyV2>(rest).map_err(undecodable)?;
                (v2.into(), sig)
            }
            _ => {
                return Err(EnvelopeError::UnsupportedVersion {
                    found: version,
                    supported: ENVELOPE_VERSION_P256,
                });
            }
        };
        let signature: [u8; SIGNATURE_LEN] = sig
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("bad signature length"))?;
        if body.wrapped.is_empty() || body.wrapped.len() > MAX_RECIPIENTS {
            return Err(EnvelopeError::Malformed("recipient count out of range"));
        }
        if body.wrapped.iter().any(|w| match w.kind {
            RecipientKind::Classical => w.ciphertext.len() > MAX_CLASSICAL_WRAPPED_LEN,
            RecipientKind::Hybrid => w.ciphertext.len() != HYBRID_WRAPPED_LEN,
            RecipientKind::P256 => w.ciphertext.len() != P256_WRAPPED_LEN,
        }) {
            return Err(EnvelopeError::Malformed("wrapped key of the wrong length"));
        }
        // One version per body: 4 exactly when a recipient is P-256 (a version 2 body
        // cannot name one).
        if version != ENVELOPE_VERSION_V2 && version != version_for(&body) {
            return Err(EnvelopeError::Malformed(
                "version 4 exactly when a recipient is P-256",
            ));
        }
        let envelope = Self {
            version,
            body,
            signature,
        };
        if envelope.to_bytes() != bytes {
            return Err(EnvelopeError::Malformed("non-canonical encoding"));
        }
        Ok(envelope)
    }

    /// Parses an envelope and verifies it against the file's authority key.
    ///
    /// # Errors
    /// As [`KeyEnvelope::from_bytes`] and [`KeyEnvelope::verify`].
    pub fn from_verified_bytes(
        bytes: &[u8],
        authority: &AuthorityPublic,
    ) -> Result<Self, EnvelopeError> {
        let envelope = Self::from_bytes(bytes)?;
        envelope.verify(authority)?;
        Ok(envelope)
    }

    /// The wire form (in the version it was made or read in).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.version];
        out.extend_from_slice(&encode_body(self.version, &self.body));
        out.extend_from_slice(&self.signature);
        out
    }

    /// The format version: 4 with a P-256 recipient, else 3; 2 for an envelope read in
    /// the old format.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Checks the signature against the file's authority key (from its manifest). A
    /// high-S signature (a malleated copy of a valid one) is refused.
    ///
    /// # Errors
    /// [`EnvelopeError::BadSignature`].
    pub fn verify(&self, authority: &AuthorityPublic) -> Result<(), EnvelopeError> {
        if authority.verifies(&signed_message(self.version, &self.body), &self.signature) {
            Ok(())
        } else {
            Err(EnvelopeError::BadSignature)
        }
    }

    /// The file this envelope is for.
    pub fn file_id(&self) -> FileId {
        self.body.file_id
    }

    /// Sequence number: a newer envelope for the same file has a higher one.
    pub fn sequence(&self) -> u64 {
        self.body.sequence
    }

    /// The wrapped keys.
    pub fn wrapped(&self) -> &[WrappedKey] {
        &self.body.wrapped
    }

    /// Whether the classical `key` is one of the recipients.
    pub fn is_recipient(&self, key: &PublicKey) -> bool {
        self.names(&KeyId::of(key))
    }

    /// Whether the key with this id is one of the recipients.
    pub fn names(&self, id: &KeyId) -> bool {
        self.body.wrapped.iter().any(|w| w.recipient == *id)
    }

    /// Unwraps the data key with the first of `secrets` that is a recipient (classical
    /// [`crate::ecies::SecretKey`]s, [`crate::HybridSecretKey`]s or [`crate::FileSecret`]s).
    ///
    /// # Errors
    /// [`EnvelopeError::NoWrappedKey`] if none is; [`EnvelopeError::BadWrappedKey`] or
    /// [`EnvelopeError::BadHybridWrappedKey`] if the wrapped key addressed to one of them
    /// does not open.
    pub fn open<'a, S>(
        &self,
        secrets: impl IntoIterator<Item = &'a S>,
    ) -> Result<DataKey, EnvelopeError>
    where
        S: UnwrapKey + ?Sized + 'a,
    {
        let mut tried = 0;
        for secret in secrets {
            tried += 1;
            let id = secret.key_id();
            let Some(wrap) = self.body.wrapped.iter().find(|w| w.recipient == id) else {
                continue;
            };
            let plain = secret.unwrap_key(wrap.kind, &wrap.ciphertext)?;
            let bytes: &[u8; KEY_LEN] = plain
                .as_slice()
                .try_into()
                .map_err(|_| EnvelopeError::Malformed("wrapped key has the wrong length"))?;
            return Ok(DataKey::from_bytes(bytes));
        }
        Err(EnvelopeError::NoWrappedKey { tried })
    }
}

impl From<EnvelopeBodyV2> for EnvelopeBody {
    fn from(v2: EnvelopeBodyV2) -> Self {
        Self {
            file_id: v2.file_id,
            sequence: v2.sequence,
            wrapped: v2
                .wrapped
                .into_iter()
                .map(|w| WrappedKey {
                    recipient: w.recipient,
                    kind: RecipientKind::Classical,
                    ciphertext: w.ciphertext,
                })
                .collect(),
        }
    }
}

/// The version a body is written in: 4 if it names a P-256 recipient, else 3.
fn version_for(body: &EnvelopeBody) -> u8 {
    if body.wrapped.iter().any(|w| w.kind == RecipientKind::P256) {
        ENVELOPE_VERSION_P256
    } else {
        ENVELOPE_VERSION
    }
}

/// The postcard body in `version`'s layout (a version 2 body has only classical keys: it
/// was read that way).
fn encode_body(version: u8, body: &EnvelopeBody) -> Vec<u8> {
    let encoded = if version == ENVELOPE_VERSION_V2 {
        postcard::to_stdvec(&EnvelopeBodyV2 {
            file_id: body.file_id,
            sequence: body.sequence,
            wrapped: body
                .wrapped
                .iter()
                .map(|w| WrappedKeyV2 {
                    recipient: w.recipient,
                    ciphertext: w.ciphertext.clone(),
                })
                .collect(),
        })
    } else {
        postcard::to_stdvec(body)
    };
    encoded.unwrap_or_default()
}

/// `"datamesh key envelope v<version>\0" || version || body`.
fn signed_message(version: u8, body: &EnvelopeBody) -> Vec<u8> {
    let mut msg = format!("datamesh key envelope v{version}\0").into_bytes();
    msg.push(version);
    msg.extend_from_slice(&encode_body(version, body));
    msg
}
