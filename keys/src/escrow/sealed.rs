//! Shares sealed to a contact: the share's bytes encrypted with ECIES to the contact's
//! secp256k1 public key, named by its key id, in the text form with its own prefix.
//!
//! ```text
//! sealed = "dm-sealed-share1-" + base32 of: contact key id (32) | ECIES(contact public key, share)
//! ```

use datamesh_core::KeyId;
use datamesh_core::ecies::{self, PublicKey, SecretKey};

use super::error::ShareError;
use super::share::Share;
use super::text::{SEALED_SHARE_PREFIX, decode_text, grouped};

impl Share {
    /// This share sealed with ECIES to a contact's secp256k1 public key, as text
    /// (`dm-sealed-share1-` and base32 in groups of 5).
    #[must_use]
    pub fn seal_to(&self, contact: &PublicKey) -> String {
        let mut raw = KeyId::of(contact).as_bytes().to_vec();
        raw.extend_from_slice(&ecies::encrypt(contact, &self.to_bytes()));
        grouped(
            SEALED_SHARE_PREFIX,
            &data_encoding::BASE32_NOPAD.encode(&raw),
        )
        .to_string()
    }

    /// Opens a sealed share with the contact's file-encryption keys: every one of `keys`
    /// whose key id the share names is tried (`KeyRing::open_sealed_share` passes the
    /// live versions of a keystore's keys).
    ///
    /// # Errors
    ///
    /// [`ShareError::Malformed`] (not a sealed share, mistyped), [`ShareError::NotForThisKey`],
    /// [`ShareError::Checksum`] when it does not decrypt (damaged), then as
    /// [`Share::from_bytes`].
    pub fn open_sealed(text: &str, keys: &[SecretKey]) -> Result<Self, ShareError> {
        let raw = decode_text(text, SEALED_SHARE_PREFIX)?;
        if raw.len() < 32 + 97 {
            return Err(ShareError::Malformed {
                problem: "a sealed share too short to hold a share".into(),
            });
        }
        let (key_id, sealed) = raw.split_at(32);
        let mut candidates = keys
            .iter()
            .filter(|secret| KeyId::of(&secret.public_key()).as_bytes()[..] == *key_id)
            .peekable();
        if candidates.peek().is_none() {
            return Err(ShareError::NotForThisKey {
                key_id: data_encoding::HEXLOWER.encode(key_id),
            });
        }
        let plain = candidates
            .find_map(|secret| ecies::decrypt(secret, sealed).ok())
            .ok_or(ShareError::Checksum)?;
        Self::from_bytes(&plain)
    }
}
