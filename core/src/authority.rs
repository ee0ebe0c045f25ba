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
use k256::ecdsa::Signature;
use k256::ecdsa::hazmat::SignPrimitive;
use k256::elliptic_curve::ops::MulByGenerator;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{AffinePoint, FieldBytes, NonZeroScalar, ProjectivePoint};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

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
///
/// Held as libsecp256k1's key: signatures are checked with libsecp256k1 (about 25 µs
/// against k256's 65-70 µs on the benchmark machine; every holder checks each envelope it
/// is sent), while signing stays on k256 (ARCHITECTURE.md, "Why these crates replace the
/// named ones").
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthorityPublic(secp256k1::PublicKey);

impl AuthorityPublic {
    /// Parses a compressed SEC1 key (33 bytes, tag 0x02 or 0x03: one encoding per key).
    ///
    /// # Errors
    /// [`AuthorityError::BadPublicKey`] unless the bytes are a compressed point of the curve.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AuthorityError> {
        if bytes.len() != AUTHORITY_KEY_LEN || !matches!(bytes[0], 0x02 | 0x03) {
            return Err(AuthorityError::BadPublicKey);
        }
        let key = secp256k1::PublicKey::from_slice(bytes)
            .map(Self)
            .map_err(|_| AuthorityError::BadPublicKey)?;
        if key.to_bytes()[..] != *bytes {
            return Err(AuthorityError::BadPublicKey);
        }
        Ok(key)
    }

    /// The compressed SEC1 form (33 bytes).
    pub fn to_bytes(&self) -> [u8; AUTHORITY_KEY_LEN] {
        self.0.serialize()
    }

    /// Whether `signature` (64 bytes, r then s, big-endian) is this key's ECDSA signature
    /// of SHA-256(`message`), as k256's `Signer` makes them. A high-S signature (the
    /// malleated copy of a valid one) does not verify, nor does an r or s of zero or not
    /// below the group order.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = secp256k1::ecdsa::Signature::from_compact(signature) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(message).into();
        signature
            .verify(secp256k1::Message::from_digest(digest), &self.0)
            .is_ok()
    }

    /// The same key from k256's form: its uncompressed encoding, which libsecp256k1 parses
    /// without a square root.
    fn from_affine(point: &AffinePoint) -> Result<Self, AuthorityError> {
        secp256k1::PublicKey::from_slice(point.to_encoded_point(false).as_bytes())
            .map(Self)
            .map_err(|_| AuthorityError::BadPublicKey)
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
/// Its scalar is zeroized on drop (set to one, as k256's `SigningKey` does); `Debug`
/// prints `AuthorityKey(..)`.
///
/// Held as the bare scalar, not a k256 `SigningKey`: that type computes its verifying key
/// with k256's general point multiplication (55 us on the benchmark machine), where the
/// generator's precomputed tables take 30 us, and a put derives one key per file.
/// Signatures are the ones `SigningKey` makes (RFC 6979 with SHA-256, low S): the same
/// primitive, pinned by a test against `SigningKey`.
#[derive(Clone)]
pub struct AuthorityKey {
    secret: NonZeroScalar,
    public: AuthorityPublic,
    salt: AuthoritySalt,
}

impl Drop for AuthorityKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl ZeroizeOnDrop for AuthorityKey {}

impl AuthorityKey {
    /// Derives the signing key of the file with `salt` from `root`.
    ///
    /// # Errors
    /// [`AuthorityError::InvalidScalar`] if the derived bytes are not a valid secp256k1
    /// scalar (zero or not below the group order: probability about 2^-128).
    pub fn derive(root: &AuthorityRoot, salt: &AuthoritySalt) -> Result<Self, AuthorityError> {
        let hkdf = Hkdf::<Sha256>::new(Some(salt.as_bytes()), root.0.as_slice());
        let mut okm = Zeroizing::new(FieldBytes::default());
        hkdf.expand(HKDF_INFO, okm.as_mut_slice())
            .map_err(|_| AuthorityError::InvalidScalar)?;
        // Zero, or not below the group order: refused, as `SigningKey::from_slice` does.
        let secret: Option<NonZeroScalar> = NonZeroScalar::from_repr(*okm).into();
        let secret = secret.ok_or(AuthorityError::InvalidScalar)?;
        let point = ProjectivePoint::mul_by_generator(secret.as_ref()).to_affine();
        let public = AuthorityPublic::from_affine(&point)?;
        Ok(Self {
            secret,
            public,
            salt: *salt,
        })
    }

    /// The ECDSA signature of SHA-256(`message`), as k256's `SigningKey::sign` makes it:
    /// RFC 6979's deterministic nonce, s in the lower half.
    ///
    /// # Errors
    /// [`AuthorityError::Signing`] if the nonce gives r or s zero (probability about
    /// 2^-256; `SigningKey::sign` panics there).
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Signature, AuthorityError> {
        // For a 256-bit curve and a 256-bit digest, bits2field is the digest itself.
        let digest: FieldBytes = Sha256::digest(message);
        let (signature, _) = self
            .secret
            .as_ref()
            .try_sign_prehashed_rfc6979::<Sha256>(&digest, &[])
            .map_err(|_| AuthorityError::Signing)?;
        Ok(signature)
    }

    /// The verifying key.
    pub fn public(&self) -> AuthorityPublic {
        self.public
    }

    /// What the file's manifest commits to.
    pub fn file_authority(&self) -> FileAuthority {
        FileAuthority {
            key: self.public(),
            salt: self.salt,
        }
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
    use k256::ecdsa::SigningKey;

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
        assert_eq!(
            key.public().to_bytes()[..],
            *expected.verifying_key().to_encoded_point(true).as_bytes()
        );
        assert_eq!(format!("{key:?}"), "AuthorityKey(..)");
        assert_eq!(
            format!("{:?}", AuthorityRoot::from_bytes(&[1; 32])),
            "AuthorityRoot(..)"
        );
        Ok(())
    }

    /// The group order n of secp256k1, big-endian.
    const ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36,
        0x41, 0x41,
    ];

    /// n - s for a big-endian s below n: the other s of the same signature.
    fn negate_s(signature: &[u8; 64]) -> [u8; 64] {
        let mut out = *signature;
        let mut borrow = 0u16;
        for i in (0..32).rev() {
            let (a, b) = (u16::from(ORDER[i]), u16::from(signature[32 + i]) + borrow);
            out[32 + i] = a.wrapping_sub(b) as u8;
            borrow = u16::from(a < b);
        }
        out
    }

    /// What the k256 check before libsecp256k1 accepted: a signature k256 verifies whose
    /// s is in the lower half (`normalize_s` leaves it alone).
    fn k256_accepts(key: &AuthorityKey, message: &[u8], signature: &[u8]) -> bool {
        use k256::ecdsa::signature::Verifier;
        let Ok(sig) = k256::ecdsa::Signature::from_slice(signature) else {
            return false;
        };
        let Ok(verifying) = k256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public().to_bytes())
        else {
            return false;
        };
        sig.normalize_s().is_none() && verifying.verify(message, &sig).is_ok()
    }

    proptest::proptest! {
        #[test]
        fn libsecp256k1_accepts_exactly_the_signatures_k256_did(
            root in proptest::array::uniform32(proptest::num::u8::ANY),
            salt in proptest::array::uniform32(proptest::num::u8::ANY),
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            flip in 0usize..64 * 8,
        ) {
            let key = AuthorityKey::derive(&AuthorityRoot::from_bytes(&root), &AuthoritySalt::from_bytes(salt))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let signature = key.sign(&message)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let signature: [u8; 64] = signature.to_bytes().into();
            let public = key.public();
            // The signature k256 makes (low S), its malleated twin (high S), a bit flipped,
            // another message, r or s zero, s not below the order, a wrong length.
            let mut flipped = signature;
            flipped[flip / 8] ^= 1 << (flip % 8);
            let mut zero_r = signature;
            zero_r[..32].fill(0);
            let mut zero_s = signature;
            zero_s[32..].fill(0);
            let mut s_order = signature;
            s_order[32..].copy_from_slice(&ORDER);
            let cases: [(&[u8], &[u8]); 8] = [
                (&message, &signature),
                (&message, &negate_s(&signature)),
                (&message, &flipped),
                (b"another message", &signature),
                (&message, &zero_r),
                (&message, &zero_s),
                (&message, &s_order),
                (&message, &signature[..63]),
            ];
            for (i, (message, signature)) in cases.into_iter().enumerate() {
                proptest::prop_assert_eq!(
                    public.verifies(message, signature),
                    k256_accepts(&key, message, signature),
                    "case {}", i
                );
            }
            proptest::prop_assert!(public.verifies(&message, &signature));
            // The twin is the same signature with the other s: normalized back to low S it
            // verifies; as it is, it is refused.
            let mut twin = secp256k1::ecdsa::Signature::from_compact(&negate_s(&signature))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert!(!public.verifies(&message, &twin.serialize_compact()));
            twin.normalize_s();
            proptest::prop_assert_eq!(twin.serialize_compact(), signature);
            proptest::prop_assert_eq!(AuthorityPublic::from_bytes(&public.to_bytes()), Ok(public));
        }
    }

    proptest::proptest! {
        /// The key and signatures are the ones k256's `SigningKey` (what this type held
        /// before) makes from the same scalar: the same public key, the same bytes signed.
        #[test]
        fn keys_and_signatures_are_k256_signing_keys(
            root in proptest::array::uniform32(proptest::num::u8::ANY),
            salt in proptest::array::uniform32(proptest::num::u8::ANY),
            message in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            use k256::ecdsa::signature::Signer;
            let fail = |e: &dyn std::fmt::Display| proptest::test_runner::TestCaseError::fail(e.to_string());
            let key = AuthorityKey::derive(&AuthorityRoot::from_bytes(&root), &AuthoritySalt::from_bytes(salt))
                .map_err(|e| fail(&e))?;
            let hkdf = Hkdf::<Sha256>::new(Some(&salt), &root);
            let mut okm = [0u8; 32];
            hkdf.expand(HKDF_INFO, &mut okm).map_err(|e| fail(&e))?;
            let expected = SigningKey::from_slice(&okm).map_err(|e| fail(&e))?;
            let public = expected.verifying_key().to_encoded_point(true);
            proptest::prop_assert_eq!(&key.public().to_bytes()[..], public.as_bytes());
            let signature: k256::ecdsa::Signature = expected.sign(&message);
            proptest::prop_assert_eq!(key.sign(&message).map_err(|e| fail(&e))?, signature);
        }
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
