//! Per-file authority: who may replace a file's key envelope, without naming the owner.
//!
//! ```
//! # fn main() -> Result<(), datamesh_core::AuthorityError> {
//! use datamesh_core::{AuthorityKey, AuthorityRoot, AuthoritySalt};
//!
//! let root = AuthorityRoot::from_bytes(&[7; 32]); // from the owner's keystore
//! let salt = AuthoritySalt::random(); // fresh for every file
//! let key = AuthorityKey::derive(&root, &salt)?;
//! // The manifest commits to `key.public()` and `salt`; the same root and salt give the
//! // same key again, so the owner can sign a later envelope for the file.
//! assert_eq!(AuthorityKey::derive(&root, &salt)?.public(), key.public());
//! # Ok(()) }
//! ```
//!
//! The owner's keystore holds one 32-byte random root secret. For each file a fresh
//! 32-byte salt is drawn and the file's ECDSA (secp256k1) signing key is derived as
//! `HKDF-SHA256(ikm = root, salt = salt, info = "datamesh file authority v2")`, the 32
//! output bytes taken as the scalar. The manifest commits to the verifying key and the
//! salt ([`FileAuthority`]); a holder checks an envelope's signature against the manifest
//! it holds. Without the root, the keys and salts of two files have nothing in common, so
//! they do not link one owner's files. Recipients a file is shared with never learn the
//! root: they can read the file, not replace its envelope.

use std::fmt;

use hkdf::Hkdf;
use k256::ecdsa::{SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::AuthorityError;

/// Bytes of an authority root secret.
pub const AUTHORITY_ROOT_LEN: usize = 32;
/// Bytes of a per-file salt.
pub const AUTHORITY_SALT_LEN: usize = 32;
/// Bytes of a compressed SEC1 verifying key.
pub const AUTHORITY_KEY_LEN: usize = 33;
const HKDF_INFO: &[u8] = b"datamesh file authority v2";
const FINGERPRINT_CONTEXT: &str = "datamesh file authority root fingerprint v2";

/// The owner's authority root secret: 32 random bytes kept in the keystore.
///
/// Zeroized on drop; `Debug` prints `AuthorityRoot(..)`; no `Display`, no `Serialize`.
#[derive(Clone, ZeroizeOnDrop)]
pub struct AuthorityRoot(Zeroizing<[u8; AUTHORITY_ROOT_LEN]>);

impl AuthorityRoot {
    /// Wraps root bytes read from the keystore.
    pub fn from_bytes(bytes: &[u8; AUTHORITY_ROOT_LEN]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// A public fingerprint of the root (a keyed BLAKE3 derivation): names the root in
    /// key listings without revealing it or any file's key.
    pub fn fingerprint(&self) -> [u8; 32] {
        blake3::derive_key(FINGERPRINT_CONTEXT, self.0.as_slice())
    }
}

impl fmt::Debug for AuthorityRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorityRoot(..)")
    }
}

/// A file's public salt: random, drawn once per file, committed in its manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuthoritySalt([u8; AUTHORITY_SALT_LEN]);

impl AuthoritySalt {
    /// A fresh random salt from the operating system's RNG.
    pub fn random() -> Self {
        let mut salt = [0u8; AUTHORITY_SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        Self(salt)
    }

    /// Wraps salt bytes (from a manifest).
    pub fn from_bytes(bytes: [u8; AUTHORITY_SALT_LEN]) -> Self {
        Self(bytes)
    }

    /// The salt bytes.
    pub fn as_bytes(&self) -> &[u8; AUTHORITY_SALT_LEN] {
        &self.0
    }
}

/// A file's authority verifying key (secp256k1), as committed in its manifest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthorityPublic(VerifyingKey);

impl AuthorityPublic {
    /// Parses a compressed SEC1 key (33 bytes, tag 0x02 or 0x03: one encoding per key).
    ///
    /// # Errors
    /// [`AuthorityError::BadPublicKey`] unless the bytes are a compressed point of the curve.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuthorityError> {
        if bytes.len() != AUTHORITY_KEY_LEN || !matches!(bytes[0], 0x02 | 0x03) {
            return Err(AuthorityError::BadPublicKey);
        }
        let key = VerifyingKey::from_sec1_bytes(bytes)
            .map(Self)
            .map_err(|_| AuthorityError::BadPublicKey)?;
        if key.to_bytes()[..] != *bytes {
            return Err(AuthorityError::BadPublicKey);
        }
        Ok(key)
    }

    /// The compressed SEC1 form (33 bytes).
    pub fn to_bytes(&self) -> [u8; AUTHORITY_KEY_LEN] {
        let point = self.0.to_encoded_point(true);
        let mut out = [0u8; AUTHORITY_KEY_LEN];
        out.copy_from_slice(point.as_bytes());
        out
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for AuthorityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        write!(
            f,
            "AuthorityPublic({})",
            data_encoding::HEXLOWER.encode(&bytes[..8])
        )
    }
}

/// What a manifest commits to: the file's authority verifying key and the salt it was
/// derived with (so the owner can find which root derives it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileAuthority {
    /// Verifies the file's key envelopes.
    pub key: AuthorityPublic,
    /// The per-file salt.
    pub salt: AuthoritySalt,
}

/// A file's authority signing key, derived from the owner's root and the file's salt.
///
/// Its scalar is zeroized on drop (k256's `SigningKey` does so); `Debug` prints
/// `AuthorityKey(..)`.
#[derive(Clone)]
pub struct AuthorityKey {
    signing: SigningKey,
    salt: AuthoritySalt,
}

impl AuthorityKey {
    /// Derives the signing key of the file with `salt` from `root`.
    ///
    /// # Errors
    /// [`AuthorityError::InvalidScalar`] if the derived bytes are not a valid secp256k1
    /// scalar (zero or not below the group order: probability about 2^-128).
    pub fn derive(root: &AuthorityRoot, salt: &AuthoritySalt) -> Result<Self, AuthorityError> {
        let hkdf = Hkdf::<Sha256>::new(Some(salt.as_bytes()), root.0.as_slice());
        let mut okm = Zeroizing::new([0u8; 32]);
        hkdf.expand(HKDF_INFO, okm.as_mut_slice())
            .map_err(|_| AuthorityError::InvalidScalar)?;
        let signing =
            SigningKey::from_slice(okm.as_slice()).map_err(|_| AuthorityError::InvalidScalar)?;
        Ok(Self {
            signing,
            salt: *salt,
        })
    }

    /// The verifying key.
    pub fn public(&self) -> AuthorityPublic {
        AuthorityPublic(*self.signing.verifying_key())
    }

    /// What the file's manifest commits to.
    pub fn file_authority(&self) -> FileAuthority {
        FileAuthority {
            key: self.public(),
            salt: self.salt,
        }
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorityKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn the_same_root_and_salt_derive_the_same_key() -> TestResult {
        let root = AuthorityRoot::from_bytes(&[1; 32]);
        let salt = AuthoritySalt::from_bytes([2; 32]);
        let a = AuthorityKey::derive(&root, &salt)?;
        let b = AuthorityKey::derive(&root.clone(), &salt)?;
        assert_eq!(a.public(), b.public());
        assert_eq!(a.file_authority(), b.file_authority());
        assert_eq!(
            AuthorityPublic::from_bytes(&a.public().to_bytes())?,
            a.public()
        );
        Ok(())
    }

    #[test]
    fn different_salts_or_roots_give_unrelated_keys() -> TestResult {
        let root = AuthorityRoot::from_bytes(&[1; 32]);
        let other_root = AuthorityRoot::from_bytes(&[3; 32]);
        let (s1, s2) = (AuthoritySalt::random(), AuthoritySalt::random());
        assert_ne!(s1, s2);
        let k1 = AuthorityKey::derive(&root, &s1)?.public().to_bytes();
        let k2 = AuthorityKey::derive(&root, &s2)?.public().to_bytes();
        let k3 = AuthorityKey::derive(&other_root, &s1)?.public().to_bytes();
        assert_ne!(k1, k2);
        assert_ne!(k1, k3);
        // Nothing of the root shows in what a manifest publishes: not its bytes, not its
        // fingerprint.
        for public in [k1, k2] {
            assert!(!public.windows(32).any(|w| w == [1; 32]));
            assert!(!public.windows(32).any(|w| w == root.fingerprint()));
        }
        Ok(())
    }

    #[test]
    fn a_known_answer_pins_the_derivation() -> TestResult {
        // HKDF-SHA256(ikm = 32 x 0x08, salt = 32 x 0x0a, info = "datamesh file authority
        // v2") taken as a secp256k1 scalar (the frozen vector's key,
        // core/tests/data/format_v2.json); computed here with the primitives directly too.
        let key = AuthorityKey::derive(
            &AuthorityRoot::from_bytes(&[8; 32]),
            &AuthoritySalt::from_bytes([10; 32]),
        )?;
        assert_eq!(
            data_encoding::HEXLOWER.encode(&key.public().to_bytes()),
            "03889f231a52806ab5b0dc5cd472c35f1b01839ebf078d22849c917258e2ebcf6b"
        );
        let hkdf = Hkdf::<Sha256>::new(Some(&[10; 32]), &[8; 32]);
        let mut okm = [0u8; 32];
        hkdf.expand(b"datamesh file authority v2", &mut okm)
            .map_err(|e| e.to_string())?;
        let expected = SigningKey::from_slice(&okm)?;
        assert_eq!(key.public().0, *expected.verifying_key());
        assert_eq!(format!("{key:?}"), "AuthorityKey(..)");
        assert_eq!(
            format!("{:?}", AuthorityRoot::from_bytes(&[1; 32])),
            "AuthorityRoot(..)"
        );
        Ok(())
    }

    #[test]
    fn bad_public_keys_are_refused() {
        for bytes in [&[][..], &[2; 32], &[2; 34], &[5; 33], &[0; 33]] {
            assert_eq!(
                AuthorityPublic::from_bytes(bytes),
                Err(AuthorityError::BadPublicKey)
            );
        }
    }
}
