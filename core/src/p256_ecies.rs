//! ECIES on NIST P-256: the file-encryption recipient of the FIPS-minded profile.
//!
//! Only algorithms of NIST's lists: one-pass ECC CDH on P-256 (SP 800-56A), HKDF-SHA256
//! as the two-step key derivation (SP 800-56C), AES-256-GCM (SP 800-38D). Code: RustCrypto's
//! `p256` (which shares `elliptic-curve` with `k256`), `hkdf`, `aes-gcm`.
//!
//! ```text
//! secret   = 32 bytes, a P-256 scalar (the keystore secret of a `file-encryption-p256` key)
//! R        = the recipient's public key, compressed SEC1 (33)
//! wrap(plaintext):
//!   e        = a fresh random scalar, E = e*G, SEC1 uncompressed (65)
//!   Z        = x-coordinate of e*R (32)
//!   key      = HKDF-SHA256(salt = "datamesh p256 ecies v1", ikm = Z, info = E || R), 32 bytes
//!   wrapped  = E (65) || AES-256-GCM(key, nonce = 12 zero bytes, no aad, plaintext) || tag (16)
//! ```
//!
//! `key` is fresh for every wrap (fresh `e`), so the fixed nonce is used once per key.
//! A 32-byte data key wraps to 113 bytes.
//!
//! Text form of a public key (a "P-256 recipient"): `dmp256v1` followed by the lowercase
//! base32hex (no padding) of `R (33) || checksum (4)`, checksum the first 4 bytes of
//! `BLAKE3-derive_key("datamesh p256 recipient checksum v1", R)`: 68 characters.

use core::fmt;
use core::str::FromStr;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::ids::KeyId;
use crate::recipient::{CheckedText, TextError};

/// Bytes of a P-256 public key (compressed SEC1).
pub const P256_PUBLIC_LEN: usize = 33;
/// Bytes a P-256 wrap adds to its plaintext (65 + 16 = 81).
pub const P256_OVERHEAD: usize = EPHEMERAL_LEN + GCM_TAG_LEN;
/// Prefix of a P-256 recipient's text form.
pub const P256_RECIPIENT_PREFIX: &str = "dmp256v1";

const EPHEMERAL_LEN: usize = 65;
const GCM_TAG_LEN: usize = 16;
const HKDF_SALT: &[u8] = b"datamesh p256 ecies v1";
const KEY_ID_CONTEXT: &str = "datamesh p256 key id v1";
const TEXT: CheckedText = CheckedText {
    prefix: P256_RECIPIENT_PREFIX,
    checksum_context: "datamesh p256 recipient checksum v1",
    len: P256_PUBLIC_LEN,
};

/// Errors of P-256 key parsing and unwrapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum P256Error {
    /// The bytes are not a compressed P-256 point.
    #[error("invalid P-256 public key")]
    InvalidPublicKey,
    /// The bytes are not a P-256 scalar (zero, or not below the group order).
    #[error("invalid P-256 secret key")]
    InvalidSecretKey,
    /// The text is not a P-256 recipient.
    #[error("not a P-256 recipient: {0}")]
    BadText(&'static str),
    /// The text's checksum does not match: a typo.
    #[error("P-256 recipient checksum does not match: the text is mistyped or truncated")]
    Checksum,
    /// The wrapped bytes are shorter than the fixed overhead.
    #[error("P-256 wrapped key truncated: {len} bytes, need at least {min}")]
    Truncated {
        /// Length given.
        len: usize,
        /// The 81-byte overhead.
        min: usize,
    },
    /// Opaque failure: wrong key, or the wrapped bytes were tampered with.
    #[error("P-256 unwrap failed: wrong key or tampered ciphertext")]
    DecryptionFailed,
}

impl From<TextError> for P256Error {
    fn from(e: TextError) -> Self {
        match e {
            TextError::Prefix => Self::BadText("it does not start with dmp256v1"),
            TextError::Checksum => Self::Checksum,
        }
    }
}

/// A P-256 recipient's public key. Text form (`Display` / `FromStr`): `dmp256v1...`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct P256PublicKey(p256::PublicKey);

impl P256PublicKey {
    /// Parses the 33-byte compressed SEC1 form (the only form accepted: one encoding per
    /// key).
    ///
    /// # Errors
    /// [`P256Error::InvalidPublicKey`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, P256Error> {
        if bytes.len() != P256_PUBLIC_LEN || !matches!(bytes.first(), Some(0x02 | 0x03)) {
            return Err(P256Error::InvalidPublicKey);
        }
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| P256Error::InvalidPublicKey)
    }

    /// The compressed SEC1 form (33 bytes).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; P256_PUBLIC_LEN] {
        let mut out = [0u8; P256_PUBLIC_LEN];
        // A `p256::PublicKey` is never the identity, so its compressed form is always 33
        // bytes; the `if let` only keeps this free of any panic path.
        if let Some(bytes) = self.0.to_encoded_point(true).as_bytes().first_chunk() {
            out = *bytes;
        }
        out
    }

    /// The id key envelopes name this recipient by:
    /// `BLAKE3-derive_key("datamesh p256 key id v1", compressed key (33))`.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        KeyId::from_bytes(blake3::derive_key(KEY_ID_CONTEXT, &self.to_bytes()))
    }
}

impl fmt::Debug for P256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P256PublicKey({})", self.key_id().short())
    }
}

impl fmt::Display for P256PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&TEXT.encode(&self.to_bytes()))
    }
}

impl FromStr for P256PublicKey {
    type Err = P256Error;

    /// Parses `dmp256v1...`; surrounding whitespace and upper case are accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(&TEXT.decode(s)?)
    }
}

/// A P-256 recipient's secret. Zeroized on drop (by `p256`); `Debug` prints
/// `P256SecretKey(..)`.
#[derive(Clone)]
pub struct P256SecretKey(p256::SecretKey);

impl P256SecretKey {
    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        Self(p256::SecretKey::random(&mut OsRng))
    }

    /// The key of a 32-byte big-endian scalar (the keystore's secret).
    ///
    /// # Errors
    /// [`P256Error::InvalidSecretKey`] for zero or a value not below the group order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, P256Error> {
        p256::SecretKey::from_slice(bytes)
            .map(Self)
            .map_err(|_| P256Error::InvalidSecretKey)
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> P256PublicKey {
        P256PublicKey(self.0.public_key())
    }
}

impl fmt::Debug for P256SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256SecretKey(..)")
    }
}

/// Wraps `plaintext` (a data key) to `recipient` with a fresh ephemeral key. The result is
/// `plaintext.len() + 81` bytes.
///
/// # Panics
/// Only for a plaintext above AES-GCM's limit (64 GiB), never for a data key.
#[must_use]
pub fn wrap(recipient: &P256PublicKey, plaintext: &[u8]) -> Vec<u8> {
    match encapsulate(recipient).and_then(|agreed| seal_agreed(&agreed, plaintext)) {
        Some(out) => out,
        None => panic!(
            "P-256 wrap: plaintext of {} bytes exceeds the AES-GCM limit",
            plaintext.len()
        ),
    }
}

/// [`wrap`] with a given ephemeral key, so tests can reproduce frozen vectors. Never reuse
/// one outside tests.
#[cfg(test)]
pub(crate) fn wrap_with(
    recipient: &P256PublicKey,
    plaintext: &[u8],
    ephemeral: &p256::SecretKey,
) -> Option<Vec<u8>> {
    let agreed = encapsulate_with(recipient, ephemeral)?;
    seal_agreed(&agreed, plaintext)
}

/// The key agreement of a wrap to one recipient, made before the plaintext is known: the
/// ephemeral key `E` and the derived key, zeroized on drop. It seals one plaintext
/// ([`seal_agreed`], a fixed nonce): never use it twice.
pub(crate) struct P256Agreed {
    e: [u8; EPHEMERAL_LEN],
    key: Zeroizing<[u8; 32]>,
}

/// [`P256Agreed`] with a fresh ephemeral key.
pub(crate) fn encapsulate(recipient: &P256PublicKey) -> Option<P256Agreed> {
    encapsulate_with(recipient, &p256::SecretKey::random(&mut OsRng))
}

fn encapsulate_with(recipient: &P256PublicKey, ephemeral: &p256::SecretKey) -> Option<P256Agreed> {
    let e = ephemeral.public_key().to_encoded_point(false);
    let e: [u8; EPHEMERAL_LEN] = e.as_bytes().try_into().ok()?;
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), recipient.0.as_affine());
    let key = derive_key(shared.raw_secret_bytes(), &e, recipient)?;
    Some(P256Agreed { e, key })
}

/// The wrapped bytes of [`wrap`], `E || body || tag`, under the key of `agreed`. `None`
/// only above AES-GCM's limit.
pub(crate) fn seal_agreed(agreed: &P256Agreed, plaintext: &[u8]) -> Option<Vec<u8>> {
    let mut body = Zeroizing::new(plaintext.to_vec());
    let tag = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(agreed.key.as_slice()))
        .encrypt_in_place_detached(Nonce::from_slice(&[0u8; 12]), &[], body.as_mut_slice())
        .ok()?;
    let mut out = Vec::with_capacity(P256_OVERHEAD.checked_add(plaintext.len())?);
    out.extend_from_slice(&agreed.e);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Some(out)
}

/// Opens bytes made by [`wrap`].
///
/// # Errors
/// [`P256Error::Truncated`] below the 81-byte overhead; [`P256Error::DecryptionFailed`] for
/// a wrong key, an ephemeral key that is not an uncompressed P-256 point, or any change.
pub fn unwrap(secret: &P256SecretKey, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, P256Error> {
    let truncated = P256Error::Truncated {
        len: wrapped.len(),
        min: P256_OVERHEAD,
    };
    let (e, rest) = wrapped
        .split_first_chunk::<EPHEMERAL_LEN>()
        .ok_or(truncated.clone())?;
    let body_len = rest.len().checked_sub(GCM_TAG_LEN).ok_or(truncated)?;
    let (body, tag) = rest.split_at(body_len);
    if e[0] != 0x04 {
        return Err(P256Error::DecryptionFailed);
    }
    let ephemeral = p256::PublicKey::from_sec1_bytes(e).map_err(|_| P256Error::DecryptionFailed)?;
    let shared = p256::ecdh::diffie_hellman(secret.0.to_nonzero_scalar(), ephemeral.as_affine());
    let key = derive_key(shared.raw_secret_bytes(), e, &secret.public_key())
        .ok_or(P256Error::DecryptionFailed)?;
    let mut plaintext = Zeroizing::new(body.to_vec());
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_slice()))
        .decrypt_in_place_detached(
            Nonce::from_slice(&[0u8; 12]),
            &[],
            plaintext.as_mut_slice(),
            aes_gcm::Tag::from_slice(tag),
        )
        .map_err(|_| P256Error::DecryptionFailed)?;
    Ok(plaintext)
}

/// HKDF-SHA256(salt = label, ikm = Z, info = E || R).
fn derive_key(
    z: &[u8],
    e: &[u8; EPHEMERAL_LEN],
    recipient: &P256PublicKey,
) -> Option<Zeroizing<[u8; 32]>> {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), z);
    let mut info = [0u8; EPHEMERAL_LEN + P256_PUBLIC_LEN];
    info[..EPHEMERAL_LEN].copy_from_slice(e);
    info[EPHEMERAL_LEN..].copy_from_slice(&recipient.to_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf.expand(&info, key.as_mut_slice()).ok()?;
    Some(key)
}

#[cfg(test)]
#[path = "p256_tests.rs"]
mod tests;
