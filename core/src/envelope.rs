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
//! `"datamesh key envelope v2\0" || version || body`.

use k256::ecdsa::Signature;
use k256::ecdsa::signature::{Signer, Verifier};
use serde::{Deserialize, Serialize};

use crate::aead::{DataKey, KEY_LEN};
use crate::authority::{AuthorityKey, AuthorityPublic};
use crate::ecies::{self, PublicKey, SecretKey};
use crate::error::EnvelopeError;
use crate::ids::{FileId, KeyId};

/// The envelope format this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 2;
/// Most recipients one envelope may name.
pub const MAX_RECIPIENTS: usize = 256;
const SIGNATURE_LEN: usize = 64;
const MAX_WRAPPED_LEN: usize = 256;
const SIGNING_CONTEXT: &[u8] = b"datamesh key envelope v2\0";

/// A data key wrapped (ECIES) to one recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Whose key opens it.
    pub recipient: KeyId,
    /// ECIES ciphertext of the 32-byte data key.
    pub ciphertext: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct EnvelopeBody {
    file_id: FileId,
    sequence: u64,
    wrapped: Vec<WrappedKey>,
}

/// A signed list of wrapped data keys for one file.
///
/// [`KeyEnvelope::from_bytes`] checks only the structure: whether the signature is the
/// file owner's needs the file's authority key, from its manifest
/// ([`KeyEnvelope::verify`], or [`KeyEnvelope::from_verified_bytes`] for both at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEnvelope {
    body: EnvelopeBody,
    signature: [u8; SIGNATURE_LEN],
}

impl KeyEnvelope {
    /// Wraps `key` to every recipient (duplicates removed) and signs with the file's
    /// authority key.
    ///
    /// # Errors
    /// [`EnvelopeError::Malformed`] with no recipients or more than [`MAX_RECIPIENTS`].
    pub fn seal(
        file_id: FileId,
        sequence: u64,
        key: &DataKey,
        recipients: &[PublicKey],
        authority: &AuthorityKey,
    ) -> Result<Self, EnvelopeError> {
        let mut wrapped: Vec<WrappedKey> = Vec::with_capacity(recipients.len());
        for pk in recipients {
            let recipient = KeyId::of(pk);
            if wrapped.iter().any(|w| w.recipient == recipient) {
                continue;
            }
            wrapped.push(WrappedKey {
                recipient,
                ciphertext: ecies::encrypt(pk, key.to_bytes().as_slice()),
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
        let signature: Signature = authority.signing_key().sign(&signed_message(&body));
        Ok(Self {
            body,
            signature: signature.to_bytes().into(),
        })
    }

    /// Parses an envelope from untrusted bytes and checks its structure (not whose
    /// signature it carries: see [`KeyEnvelope::verify`]).
    ///
    /// # Errors
    /// [`EnvelopeError::UnsupportedVersion`] or [`EnvelopeError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(EnvelopeError::Malformed("empty"))?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: version,
                supported: ENVELOPE_VERSION,
            });
        }
        let (body, sig): (EnvelopeBody, _) = postcard::take_from_bytes(rest)
            .map_err(|_| EnvelopeError::Malformed("undecodable body"))?;
        let signature: [u8; SIGNATURE_LEN] = sig
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("bad signature length"))?;
        if body.wrapped.is_empty() || body.wrapped.len() > MAX_RECIPIENTS {
            return Err(EnvelopeError::Malformed("recipient count out of range"));
        }
        if body
            .wrapped
            .iter()
            .any(|w| w.ciphertext.len() > MAX_WRAPPED_LEN)
        {
            return Err(EnvelopeError::Malformed("wrapped key too long"));
        }
        let envelope = Self { body, signature };
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

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![ENVELOPE_VERSION];
        if let Ok(body) = postcard::to_stdvec(&self.body) {
            out.extend_from_slice(&body);
        }
        out.extend_from_slice(&self.signature);
        out
    }

    /// Checks the signature against the file's authority key (from its manifest). A
    /// high-S signature (a malleated copy of a valid one) is refused.
    ///
    /// # Errors
    /// [`EnvelopeError::BadSignature`].
    pub fn verify(&self, authority: &AuthorityPublic) -> Result<(), EnvelopeError> {
        let sig =
            Signature::from_slice(&self.signature).map_err(|_| EnvelopeError::BadSignature)?;
        if sig.normalize_s().is_some() {
            return Err(EnvelopeError::BadSignature);
        }
        authority
            .verifying_key()
            .verify(&signed_message(&self.body), &sig)
            .map_err(|_| EnvelopeError::BadSignature)
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

    /// Whether `key` is one of the recipients.
    pub fn is_recipient(&self, key: &PublicKey) -> bool {
        let id = KeyId::of(key);
        self.body.wrapped.iter().any(|w| w.recipient == id)
    }

    /// Unwraps the data key with the first of `secrets` that is a recipient.
    ///
    /// # Errors
    /// [`EnvelopeError::NoWrappedKey`] if none is; [`EnvelopeError::BadWrappedKey`] if the
    /// wrapped key addressed to one of them does not open.
    pub fn open<'a>(
        &self,
        secrets: impl IntoIterator<Item = &'a SecretKey>,
    ) -> Result<DataKey, EnvelopeError> {
        let mut tried = 0;
        for secret in secrets {
            tried += 1;
            let id = KeyId::of(&secret.public_key());
            let Some(wrap) = self.body.wrapped.iter().find(|w| w.recipient == id) else {
                continue;
            };
            let plain =
                ecies::decrypt(secret, &wrap.ciphertext).map_err(EnvelopeError::BadWrappedKey)?;
            let bytes: &[u8; KEY_LEN] = plain
                .as_slice()
                .try_into()
                .map_err(|_| EnvelopeError::Malformed("wrapped key has the wrong length"))?;
            return Ok(DataKey::from_bytes(bytes));
        }
        Err(EnvelopeError::NoWrappedKey { tried })
    }
}

fn signed_message(body: &EnvelopeBody) -> Vec<u8> {
    let mut msg = SIGNING_CONTEXT.to_vec();
    msg.push(ENVELOPE_VERSION);
    if let Ok(encoded) = postcard::to_stdvec(body) {
        msg.extend_from_slice(&encoded);
    }
    msg
}
