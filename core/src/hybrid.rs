//! Hybrid post-quantum key wrapping: ML-KEM-768 (FIPS 203) combined with the secp256k1
//! ECIES key agreement, so a wrapped data key opens only with both halves of the
//! recipient's secret.
//!
//! A combiner in the style of X-Wing and age's hybrid recipients: each half is a KEM, and
//! the wrapping key hashes both shared secrets together with both ciphertexts and both
//! public keys, under a label of its own:
//!
//! ```text
//! seed (32, the keystore secret)
//!   ec scalar = HKDF-SHA256(ikm = seed, salt none, info = "datamesh hybrid secp256k1 v1"), 32 bytes
//!   ML-KEM-768 seed (d || z) = HKDF-SHA256(ikm = seed, salt none, info = "datamesh hybrid ml-kem-768 v1"), 64 bytes
//! public key (1217) = ec public key, compressed SEC1 (33) || ML-KEM-768 encapsulation key (1184)
//!
//! wrap(plaintext):
//!   E, ss_ec  = ECIES agreement: E = e*G uncompressed (65), ss_ec = HKDF-SHA256(E || e*R)  (ecies.rs)
//!   ct_pq, ss_pq = ML-KEM-768.Encaps(ek)                      (1088, 32)
//!   key = SHA-256("datamesh hybrid kem v1\0" || ss_pq || ss_ec || ct_pq || E || ek || ec pk)
//!   wrapped = E (65) || ct_pq (1088) || AES-256-GCM(key, nonce = 12 zero bytes, no aad, plaintext) || tag (16)
//! ```
//!
//! Every input to the hash has a fixed length, so the concatenation is unambiguous. The key
//! is fresh for every wrap (fresh `e` and fresh ML-KEM randomness), so the fixed nonce is
//! used once per key. Breaking one half (a quantum computer against secp256k1, or a flaw
//! in ML-KEM) leaves the other's shared secret unknown, and with it the key.
//!
//! Text form of a public key (a "hybrid recipient"): `dmpq1` followed by the lowercase
//! base32hex (no padding) of `public key (1217) || checksum (4)`, checksum the first 4
//! bytes of `BLAKE3-derive_key("datamesh hybrid recipient checksum v1", public key)`.

use core::fmt;
use core::str::FromStr;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hkdf::Hkdf;
use libcrux_ml_kem::mlkem768::{self, MlKem768Ciphertext, MlKem768PrivateKey, MlKem768PublicKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::ecies::{self, EPHEMERAL_KEY_LEN};
use crate::ids::KeyId;
use crate::recipient::{CheckedText, TextError};

/// Bytes of a hybrid secret (the seed both halves are derived from).
pub const HYBRID_SEED_LEN: usize = 32;
/// Bytes of the secp256k1 half of a public key (compressed SEC1).
pub const EC_PUBLIC_LEN: usize = 33;
/// Bytes of the ML-KEM-768 encapsulation key.
pub const MLKEM_PUBLIC_LEN: usize = 1184;
/// Bytes of the ML-KEM-768 ciphertext.
pub const MLKEM_CIPHERTEXT_LEN: usize = 1088;
/// Bytes of a hybrid public key.
pub const HYBRID_PUBLIC_LEN: usize = EC_PUBLIC_LEN + MLKEM_PUBLIC_LEN;
/// Bytes a hybrid wrap adds to its plaintext (65 + 1088 + 16 = 1169).
pub const HYBRID_OVERHEAD: usize = EPHEMERAL_KEY_LEN + MLKEM_CIPHERTEXT_LEN + GCM_TAG_LEN;
/// Prefix of a hybrid recipient's text form.
pub const HYBRID_RECIPIENT_PREFIX: &str = "dmpq1";

const GCM_TAG_LEN: usize = 16;
const COMBINER_LABEL: &[u8] = b"datamesh hybrid kem v1\0";
const EC_INFO: &[u8] = b"datamesh hybrid secp256k1 v1";
const MLKEM_INFO: &[u8] = b"datamesh hybrid ml-kem-768 v1";
const KEY_ID_CONTEXT: &str = "datamesh hybrid key id v1";
const TEXT: CheckedText = CheckedText {
    prefix: HYBRID_RECIPIENT_PREFIX,
    checksum_context: "datamesh hybrid recipient checksum v1",
    len: HYBRID_PUBLIC_LEN,
};

/// Errors of hybrid key parsing and unwrapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// The bytes are not a hybrid public key (wrong length, or a half is invalid).
    #[error("invalid hybrid public key")]
    InvalidPublicKey,
    /// The text is not a hybrid recipient (`dmpq1...`).
    #[error("not a hybrid recipient: {0}")]
    BadText(&'static str),
    /// The text's checksum does not match: a typo.
    #[error("hybrid recipient checksum does not match: the text is mistyped or truncated")]
    Checksum,
    /// The seed derives an invalid secp256k1 scalar (probability about 2^-128).
    #[error("the hybrid seed derives an invalid secp256k1 key: use another seed")]
    InvalidSeed,
    /// The wrapped bytes are shorter than the fixed overhead.
    #[error("hybrid wrapped key truncated: {len} bytes, need at least {min}")]
    Truncated {
        /// Length given.
        len: usize,
        /// The 1169-byte overhead.
        min: usize,
    },
    /// Opaque failure: wrong key (either half), or the wrapped bytes were tampered with.
    #[error("hybrid unwrap failed: wrong key or tampered ciphertext")]
    DecryptionFailed,
}

/// A hybrid recipient's public key: secp256k1 and ML-KEM-768.
///
/// Text form (`Display` / `FromStr`): `dmpq1...` with a checksum (module documentation).
#[derive(Clone)]
pub struct HybridPublicKey {
    ec: ecies::PublicKey,
    /// The ML-KEM-768 encapsulation key, checked as FIPS 203 asks when parsed.
    pq_bytes: Box<[u8; MLKEM_PUBLIC_LEN]>,
}

impl HybridPublicKey {
    /// Parses the 1217-byte binary form.
    ///
    /// # Errors
    /// [`HybridError::InvalidPublicKey`] for another length, an invalid secp256k1 point, or
    /// an encapsulation key that fails FIPS 203's modulus check.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HybridError> {
        if bytes.len() != HYBRID_PUBLIC_LEN {
            return Err(HybridError::InvalidPublicKey);
        }
        let (ec, pq) = bytes.split_at(EC_PUBLIC_LEN);
        let ec_bytes = ec;
        let ec =
            ecies::PublicKey::from_sec1_bytes(ec).map_err(|_| HybridError::InvalidPublicKey)?;
        // One encoding per key: compressed (0x02/0x03) only, not SEC1's compact 0x05 form.
        if ec.to_compressed()[..] != *ec_bytes {
            return Err(HybridError::InvalidPublicKey);
        }
        let pq_bytes: [u8; MLKEM_PUBLIC_LEN] =
            pq.try_into().map_err(|_| HybridError::InvalidPublicKey)?;
        // FIPS 203, section 7.2: every coefficient of the key below the modulus.
        if !mlkem768::validate_public_key(&MlKem768PublicKey::from(&pq_bytes)) {
            return Err(HybridError::InvalidPublicKey);
        }
        Ok(Self {
            ec,
            pq_bytes: Box::new(pq_bytes),
        })
    }

    /// The binary form: compressed secp256k1 key (33) || ML-KEM-768 encapsulation key (1184).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HYBRID_PUBLIC_LEN);
        out.extend_from_slice(&self.ec.to_compressed());
        out.extend_from_slice(self.pq_bytes.as_slice());
        out
    }

    /// The secp256k1 half.
    #[must_use]
    pub fn ec_public(&self) -> &ecies::PublicKey {
        &self.ec
    }

    /// The id key envelopes name this recipient by:
    /// `BLAKE3-derive_key("datamesh hybrid key id v1", public key (1217))`.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        KeyId::from_bytes(blake3::derive_key(KEY_ID_CONTEXT, &self.to_bytes()))
    }
}

impl PartialEq for HybridPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.ec == other.ec && self.pq_bytes == other.pq_bytes
    }
}

impl Eq for HybridPublicKey {}

impl fmt::Debug for HybridPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HybridPublicKey({})", self.key_id().short())
    }
}

impl fmt::Display for HybridPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&TEXT.encode(&self.to_bytes()))
    }
}

impl FromStr for HybridPublicKey {
    type Err = HybridError;

    /// Parses `dmpq1...`; surrounding whitespace and upper case are accepted. A text whose
    /// checksum does not match is [`HybridError::Checksum`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = TEXT.decode(s).map_err(|e| match e {
            TextError::Prefix => HybridError::BadText("it does not start with dmpq1"),
            TextError::Checksum => HybridError::Checksum,
        })?;
        Self::from_bytes(&key)
    }
}

/// A hybrid recipient's secret: a 32-byte seed and the two keys derived from it.
///
/// Zeroized on drop (the seed and the ML-KEM half here, the secp256k1 half by `k256`);
/// `Debug` prints `HybridSecretKey(..)`.
pub struct HybridSecretKey {
    seed: Zeroizing<[u8; HYBRID_SEED_LEN]>,
    ec: ecies::SecretKey,
    pq: MlKemSecret,
    public: HybridPublicKey,
}

/// The ML-KEM-768 half of a hybrid secret: FIPS 203's expanded decapsulation key (2400
/// bytes), zeroized on drop. `libcrux-ml-kem` does the arithmetic (formally verified;
/// AVX2 where the CPU has it, chosen at run time): 20 us per encapsulation or
/// decapsulation here, where RustCrypto's `ml-kem` 0.3 took 80 and 106, with the same
/// bytes (ARCHITECTURE.md, benches/PROFILE.md session 30).
struct MlKemSecret(Box<MlKem768PrivateKey>);

impl MlKemSecret {
    /// FIPS 203's `ML-KEM.KeyGen_internal(d, z)`, `seed` = d || z: the secret and the
    /// encapsulation key.
    fn from_seed(seed: &[u8; 64]) -> (Self, [u8; MLKEM_PUBLIC_LEN]) {
        let (mut private, public) = mlkem768::generate_key_pair(*seed).into_parts();
        let secret = Self(Box::new(private.clone()));
        private[0..].zeroize();
        (secret, *public.as_slice())
    }

    /// FIPS 203's `ML-KEM.Decaps`: the shared secret, or for a ciphertext not made for
    /// this key, the implicit rejection's pseudo-random one.
    fn decapsulate(&self, ciphertext: &[u8; MLKEM_CIPHERTEXT_LEN]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(mlkem768::decapsulate(
            &self.0,
            &MlKem768Ciphertext::from(ciphertext),
        ))
    }
}

impl Drop for MlKemSecret {
    fn drop(&mut self) {
        self.0[0..].zeroize();
    }
}

impl HybridSecretKey {
    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        loop {
            let mut seed = Zeroizing::new([0u8; HYBRID_SEED_LEN]);
            OsRng.fill_bytes(seed.as_mut_slice());
            if let Ok(key) = Self::from_seed(&seed) {
                return key;
            }
        }
    }

    /// Derives both halves from the seed (the keystore's secret).
    ///
    /// # Errors
    /// [`HybridError::InvalidSeed`] if the derived secp256k1 scalar is zero or not below
    /// the group order (probability about 2^-128).
    pub fn from_seed(seed: &[u8; HYBRID_SEED_LEN]) -> Result<Self, HybridError> {
        let hkdf = Hkdf::<Sha256>::new(None, seed);
        let mut ec_bytes = Zeroizing::new([0u8; 32]);
        hkdf.expand(EC_INFO, ec_bytes.as_mut_slice())
            .map_err(|_| HybridError::InvalidSeed)?;
        let ec = ecies::SecretKey::from_bytes(&ec_bytes).map_err(|_| HybridError::InvalidSeed)?;
        let mut pq_seed = Zeroizing::new([0u8; 64]);
        hkdf.expand(MLKEM_INFO, pq_seed.as_mut_slice())
            .map_err(|_| HybridError::InvalidSeed)?;
        let (pq, pq_bytes) = MlKemSecret::from_seed(&pq_seed);
        let public = HybridPublicKey {
            ec: ec.public_key(),
            pq_bytes: Box::new(pq_bytes),
        };
        Ok(Self {
            seed: Zeroizing::new(*seed),
            ec,
            pq,
            public,
        })
    }

    /// The seed (to store in the keystore).
    #[must_use]
    pub fn to_seed(&self) -> Zeroizing<[u8; HYBRID_SEED_LEN]> {
        self.seed.clone()
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> HybridPublicKey {
        self.public.clone()
    }
}

impl fmt::Debug for HybridSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HybridSecretKey(..)")
    }
}

/// Wraps `plaintext` (a data key) to `recipient` with fresh randomness for both halves.
///
/// The result is `plaintext.len() + 1169` bytes.
///
/// # Panics
/// Only if the operating system's random number generator fails.
#[must_use]
pub fn wrap(recipient: &HybridPublicKey, plaintext: &[u8]) -> Vec<u8> {
    match encapsulate(recipient).and_then(|agreed| seal_agreed(&agreed, plaintext)) {
        Some(out) => out,
        None => panic!(
            "hybrid wrap: plaintext of {} bytes exceeds the AES-GCM limit",
            plaintext.len()
        ),
    }
}

/// [`wrap`] with given randomness (the ECIES ephemeral key and ML-KEM's `m`), so tests
/// can reproduce frozen vectors. Never reuse either outside tests.
#[cfg(test)]
pub(crate) fn wrap_with(
    recipient: &HybridPublicKey,
    plaintext: &[u8],
    ephemeral: &k256::SecretKey,
    m: &[u8; 32],
) -> Option<Vec<u8>> {
    let agreed = encapsulate_with(recipient, ephemeral, m)?;
    seal_agreed(&agreed, plaintext)
}

/// Both halves' encapsulation to one recipient, made before the plaintext is known: the
/// ephemeral ECIES key `E`, the ML-KEM ciphertext, and the combined key, zeroized on
/// drop. It seals one plaintext ([`seal_agreed`], a fixed nonce): never use it twice.
pub(crate) struct HybridAgreed {
    ephemeral_pk: [u8; EPHEMERAL_KEY_LEN],
    ct_pq: Box<[u8; MLKEM_CIPHERTEXT_LEN]>,
    key: Zeroizing<[u8; 32]>,
}

/// [`HybridAgreed`] with fresh randomness for both halves.
pub(crate) fn encapsulate(recipient: &HybridPublicKey) -> Option<HybridAgreed> {
    let ephemeral = k256::SecretKey::random(&mut OsRng);
    let mut m = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(m.as_mut_slice());
    encapsulate_with(recipient, &ephemeral, &m)
}

fn encapsulate_with(
    recipient: &HybridPublicKey,
    ephemeral: &k256::SecretKey,
    m: &[u8; 32],
) -> Option<HybridAgreed> {
    let (ephemeral_pk, ss_ec) = ecies::agree_encapsulate(&recipient.ec, ephemeral)?;
    // FIPS 203's `ML-KEM.Encaps_internal(ek, m)`.
    let public = MlKem768PublicKey::from(recipient.pq_bytes.as_ref());
    let (ct_pq, ss_pq) = mlkem768::encapsulate(&public, *m);
    let ss_pq = Zeroizing::new(ss_pq);
    let ct_pq: [u8; MLKEM_CIPHERTEXT_LEN] = *ct_pq.as_slice();
    let key = combine(ss_pq.as_slice(), &ss_ec, &ct_pq, &ephemeral_pk, recipient);
    Some(HybridAgreed {
        ephemeral_pk,
        ct_pq: Box::new(ct_pq),
        key,
    })
}

/// The wrapped bytes of [`wrap`], `E || ML-KEM ciphertext || body || tag`, under the key
/// of `agreed`. `None` only above AES-GCM's limit.
pub(crate) fn seal_agreed(agreed: &HybridAgreed, plaintext: &[u8]) -> Option<Vec<u8>> {
    let mut body = Zeroizing::new(plaintext.to_vec());
    let tag = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(agreed.key.as_slice()))
        .encrypt_in_place_detached(Nonce::from_slice(&[0u8; 12]), &[], body.as_mut_slice())
        .ok()?;
    let mut out = Vec::with_capacity(HYBRID_OVERHEAD.checked_add(plaintext.len())?);
    out.extend_from_slice(&agreed.ephemeral_pk);
    out.extend_from_slice(agreed.ct_pq.as_slice());
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Some(out)
}

/// Opens bytes made by [`wrap`].
///
/// # Errors
/// [`HybridError::Truncated`] below the 1169-byte overhead; [`HybridError::DecryptionFailed`]
/// for a wrong key (either half) or any change to the bytes.
pub fn unwrap(secret: &HybridSecretKey, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, HybridError> {
    let (ephemeral_pk, rest) =
        wrapped
            .split_first_chunk::<EPHEMERAL_KEY_LEN>()
            .ok_or(HybridError::Truncated {
                len: wrapped.len(),
                min: HYBRID_OVERHEAD,
            })?;
    let (ct_pq, rest) =
        rest.split_first_chunk::<MLKEM_CIPHERTEXT_LEN>()
            .ok_or(HybridError::Truncated {
                len: wrapped.len(),
                min: HYBRID_OVERHEAD,
            })?;
    let body_len = rest
        .len()
        .checked_sub(GCM_TAG_LEN)
        .ok_or(HybridError::Truncated {
            len: wrapped.len(),
            min: HYBRID_OVERHEAD,
        })?;
    let (body, tag) = rest.split_at(body_len);

    let ss_ec =
        ecies::agree_decapsulate(&secret.ec, ephemeral_pk).ok_or(HybridError::DecryptionFailed)?;
    let ss_pq = secret.pq.decapsulate(ct_pq);
    let key = combine(
        ss_pq.as_slice(),
        &ss_ec,
        ct_pq,
        ephemeral_pk,
        &secret.public,
    );

    let mut plaintext = Zeroizing::new(body.to_vec());
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.as_slice()))
        .decrypt_in_place_detached(
            Nonce::from_slice(&[0u8; 12]),
            &[],
            plaintext.as_mut_slice(),
            aes_gcm::Tag::from_slice(tag),
        )
        .map_err(|_| HybridError::DecryptionFailed)?;
    Ok(plaintext)
}

/// The combiner: SHA-256 over the label, both shared secrets, both ciphertexts and both
/// public keys (all of fixed length).
fn combine(
    ss_pq: &[u8],
    ss_ec: &[u8; 32],
    ct_pq: &[u8; MLKEM_CIPHERTEXT_LEN],
    ct_ec: &[u8; EPHEMERAL_KEY_LEN],
    recipient: &HybridPublicKey,
) -> Zeroizing<[u8; 32]> {
    let mut hash = Sha256::new();
    hash.update(COMBINER_LABEL);
    hash.update(ss_pq);
    hash.update(ss_ec);
    hash.update(ct_pq);
    hash.update(ct_ec);
    hash.update(recipient.pq_bytes.as_slice());
    hash.update(recipient.ec.to_compressed());
    Zeroizing::new(hash.finalize().into())
}

#[cfg(test)]
#[path = "hybrid_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "mlkem_kat.rs"]
mod mlkem_kat;
