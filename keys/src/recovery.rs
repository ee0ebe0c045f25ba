//! The machine-is-gone path of escrow (see `docs/keystore.md`, "Recovery without the
//! machine"): a secp256k1 *recovery key* derived from the master key, and the *network
//! copy*, a container of the sealed keystore and a catalog section, authenticated under
//! the master key. The node stores the copy as an ordinary file whose data key is also
//! wrapped to the recovery key, so that K shares (the master key, hence the recovery key)
//! are enough to fetch and open it.
//!
//! ```text
//! recovery key = first valid secp256k1 scalar of
//!                HKDF-SHA256(salt = "datamesh recovery key v1", ikm = master key,
//!                            info = "datamesh escrow recovery secp256k1" | counter u8, 32 bytes)
//! copy   = magic "DMRECOV\0" (8) | version 0x01 | keystore length u32 BE | sealed keystore
//!          | catalog length u32 BE | catalog | mac (32)
//! mac    = BLAKE3 keyed (key = BLAKE3 derive_key("datamesh recovery copy v1 mac", master key)),
//!          over every byte before it
//! ```

use datamesh_core::ecies::SecretKey;
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::Secret32;

const HKDF_SALT: &[u8] = b"datamesh recovery key v1";
const HKDF_INFO: &[u8] = b"datamesh escrow recovery secp256k1";
const MAC_CONTEXT: &str = "datamesh recovery copy v1 mac";
const MAGIC: [u8; 8] = *b"DMRECOV\0";
const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// The largest network copy read (the keystore's own limit plus a catalog).
pub const MAX_COPY_LEN: u64 = 64 << 20;

/// Why a network copy cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyError {
    /// Not a network copy (nor a keystore file).
    #[error("not a DataMesh keystore network copy nor a keystore file")]
    NotACopy,
    /// A newer container version.
    #[error("keystore network copy version {0} is not supported (this build reads 1)")]
    UnsupportedVersion(u8),
    /// Truncated or lengths out of bounds.
    #[error("the keystore network copy is truncated or malformed")]
    Malformed,
    /// The MAC does not hold: another keystore's copy, or altered.
    #[error(
        "the keystore network copy does not belong to these shares' master key, or was altered"
    )]
    Mac,
}

/// The recovery key of a master key.
pub(crate) fn recovery_key(master: &Secret32) -> SecretKey {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), master.expose());
    for counter in 0..=u8::MAX {
        let mut okm = Zeroizing::new([0u8; 32]);
        let mut info = HKDF_INFO.to_vec();
        info.push(counter);
        if hk.expand(&info, &mut okm[..]).is_ok()
            && let Ok(key) = SecretKey::from_bytes(&okm)
        {
            return key;
        }
    }
    // 256 scalars in a row at or above the group order (probability ~2^-32768) or zero:
    // unreachable in practice; a fixed fallback keeps the function total.
    let mut fallback = Zeroizing::new(*blake3::hash(master.expose()).as_bytes());
    fallback[0] &= 0x7f;
    fallback[31] |= 1;
    SecretKey::from_bytes(&fallback).unwrap_or_else(|_| SecretKey::generate())
}

fn mac(master: &Secret32, bytes: &[u8]) -> [u8; MAC_LEN] {
    let mut key = Zeroizing::new(blake3::derive_key(MAC_CONTEXT, master.expose()));
    let out = *blake3::keyed_hash(&key, bytes).as_bytes();
    zeroize::Zeroize::zeroize(&mut key[..]);
    out
}

/// Builds the network copy of a sealed keystore and a catalog section.
pub(crate) fn seal_copy(master: &Secret32, keystore: &[u8], catalog: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 1 + 8 + keystore.len() + catalog.len() + MAC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(
        &u32::try_from(keystore.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(keystore);
    out.extend_from_slice(
        &u32::try_from(catalog.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(catalog);
    let tag = mac(master, &out);
    out.extend_from_slice(&tag);
    out
}

/// Whether `bytes` look like a network copy (by magic).
pub(crate) fn is_copy(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Checks a network copy against `master`; returns (sealed keystore, catalog).
pub(crate) fn open_copy<'a>(
    master: &Secret32,
    bytes: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), CopyError> {
    if !is_copy(bytes) {
        return Err(CopyError::NotACopy);
    }
    match bytes.get(MAGIC.len()) {
        Some(&VERSION) => {}
        Some(&v) => return Err(CopyError::UnsupportedVersion(v)),
        None => return Err(CopyError::Malformed),
    }
    if bytes.len() < MAGIC.len() + 1 + 8 + MAC_LEN {
        return Err(CopyError::Malformed);
    }
    let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    if !bool::from(mac(master, body).ct_eq(tag)) {
        return Err(CopyError::Mac);
    }
    let mut at = MAGIC.len() + 1;
    let take = |at: &mut usize| -> Result<&'a [u8], CopyError> {
        let len_bytes = body.get(*at..*at + 4).ok_or(CopyError::Malformed)?;
        let len = usize::try_from(u32::from_be_bytes(
            len_bytes.try_into().map_err(|_| CopyError::Malformed)?,
        ))
        .map_err(|_| CopyError::Malformed)?;
        let part = body
            .get(*at + 4..*at + 4 + len)
            .ok_or(CopyError::Malformed)?;
        *at += 4 + len;
        Ok(part)
    };
    let keystore = take(&mut at)?;
    let catalog = take(&mut at)?;
    if at != body.len() {
        return Err(CopyError::Malformed);
    }
    Ok((keystore, catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_key_is_stable_and_depends_on_the_master_key() {
        let a = Secret32::copy_from(&[7u8; 32]);
        let b = Secret32::copy_from(&[8u8; 32]);
        assert_eq!(recovery_key(&a).public_key(), recovery_key(&a).public_key());
        assert_ne!(recovery_key(&a).public_key(), recovery_key(&b).public_key());
        // Frozen: the derivation must never change, or old network copies stop opening.
        assert_eq!(
            recovery_key(&a).public_key().to_string(),
            FROZEN_PUBLIC_KEY_OF_SEVENS
        );
        assert_ne!(&recovery_key(&a).to_bytes()[..], &a.expose()[..]);
    }

    /// Checked independently (Python: hmac/hashlib HKDF-SHA256 and textbook secp256k1
    /// point multiplication) when it was frozen.
    const FROZEN_PUBLIC_KEY_OF_SEVENS: &str =
        "0395e46034ce9aefaa9feb719b0955dbf198cbb9f05ce20c06c398b5ae6aeed465";

    #[test]
    fn copies_round_trip_and_refuse_tampering() {
        let master = Secret32::copy_from(&[1u8; 32]);
        let copy = seal_copy(&master, b"DMKEYST\0keystore", b"catalog");
        assert_eq!(
            open_copy(&master, &copy),
            Ok((&b"DMKEYST\0keystore"[..], &b"catalog"[..]))
        );
        for i in 0..copy.len() {
            let mut bad = copy.clone();
            bad[i] ^= 1;
            assert!(open_copy(&master, &bad).is_err(), "byte {i}");
        }
        for len in 0..copy.len() {
            assert!(open_copy(&master, &copy[..len]).is_err(), "len {len}");
        }
        let other = Secret32::copy_from(&[2u8; 32]);
        assert_eq!(open_copy(&other, &copy), Err(CopyError::Mac));
        assert_eq!(open_copy(&master, b"DMKEYST\0"), Err(CopyError::NotACopy));
    }
}
