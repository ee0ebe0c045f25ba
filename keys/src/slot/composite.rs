//! The composite slot (kind 4): a password *and* a key file, both mixed into the slot key
//! (as KeePassXC's composite key), so that neither opens it alone.
//!
//! ```text
//! data = m_kib u32 | t u32 | p u32 | salt (32) | nonce (12) | wrapped master key (32 + 16)
//! kek  = BLAKE3 derive_key("datamesh keystore composite slot v1",
//!            Argon2id(password NFKD, salt, m, t, p) (32) | key file digest (32))
//! key file digest = BLAKE3 derive_key("datamesh key file v1", the file's bytes)
//! wrapped = AES-256-GCM(kek, nonce, aad = "datamesh keystore slot v1" | 0x04 | m | t | p | salt, master key)
//! ```

use rand_core::{OsRng, RngCore};

use super::{KeyFile, NONCE_LEN, SLOT_AAD_LABEL, SLOT_COMPOSITE, SlotReader, WRAPPED_LEN};
use crate::error::KdfError;
use crate::kdf::{self, KdfLimits, KdfParams, SALT_LEN};
use crate::password::Password;
use crate::secret::Secret32;

const KEK_CONTEXT: &str = "datamesh keystore composite slot v1";

/// A composite slot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CompositeSlot {
    pub(crate) kdf: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

impl CompositeSlot {
    const LEN: usize = 12 + SALT_LEN + NONCE_LEN + WRAPPED_LEN;

    pub(crate) fn seal(
        master: &Secret32,
        password: &Password,
        key_file: &KeyFile,
        kdf: KdfParams,
    ) -> Result<Self, KdfError> {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let kek = kek(password, key_file, &salt, kdf, &KdfLimits::DEFAULT)?;
        let (nonce, wrapped) = super::wrap(&kek, &aad(kdf, &salt), master);
        Ok(Self {
            kdf,
            salt,
            nonce,
            wrapped,
        })
    }

    /// The master key if both factors are the ones sealed with; `Ok(None)` otherwise.
    pub(crate) fn open(
        &self,
        password: &Password,
        key_file: &KeyFile,
        limits: &KdfLimits,
    ) -> Result<Option<Secret32>, KdfError> {
        let kek = kek(password, key_file, &self.salt, self.kdf, limits)?;
        Ok(super::unwrap(
            &kek,
            &aad(self.kdf, &self.salt),
            &self.nonce,
            &self.wrapped,
        ))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.kdf.memory_kib().to_be_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_be_bytes());
        out.extend_from_slice(&self.kdf.parallelism().to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
        out
    }

    /// Parses slot data; the KDF parameters are checked by [`Self::open`].
    pub(crate) fn decode(data: &[u8]) -> Result<Self, String> {
        let mut reader = SlotReader::new(data);
        let (m, t, p) = (reader.u32()?, reader.u32()?, reader.u32()?);
        let slot = Self {
            kdf: KdfParams::unchecked(m, t, p),
            salt: reader.array()?,
            nonce: reader.array()?,
            wrapped: reader.array()?,
        };
        reader.finish()?;
        Ok(slot)
    }
}

fn kek(
    password: &Password,
    key_file: &KeyFile,
    salt: &[u8; SALT_LEN],
    kdf: KdfParams,
    limits: &KdfLimits,
) -> Result<Secret32, KdfError> {
    let stretched = kdf::derive_kek(password, salt, kdf, limits)?;
    Ok(Secret32::init_with(|out| {
        let mut hasher = blake3::Hasher::new_derive_key(KEK_CONTEXT);
        hasher.update(stretched.expose());
        hasher.update(key_file.digest().expose());
        *out = *hasher.finalize().as_bytes();
    }))
}

fn aad(kdf: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SLOT_AAD_LABEL.len() + 13 + SALT_LEN);
    aad.extend_from_slice(SLOT_AAD_LABEL);
    aad.push(SLOT_COMPOSITE);
    aad.extend_from_slice(&kdf.memory_kib().to_be_bytes());
    aad.extend_from_slice(&kdf.iterations().to_be_bytes());
    aad.extend_from_slice(&kdf.parallelism().to_be_bytes());
    aad.extend_from_slice(salt);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_both_factors() -> Result<(), Box<dyn std::error::Error>> {
        let kdf = KdfParams::new(8, 1, 1)?;
        let master = Secret32::random();
        let password = Password::new("correct horse battery staple")?;
        let key_file = KeyFile::from_bytes(&[1; 32]);
        let slot = CompositeSlot::seal(&master, &password, &key_file, kdf)?;
        let slot = CompositeSlot::decode(&slot.encode())?;
        let limits = KdfLimits::DEFAULT;
        let opened = slot.open(&password, &key_file, &limits)?;
        assert!(opened.is_some_and(|m| m.same_as(&master)));
        let other_file = KeyFile::from_bytes(&[2; 32]);
        assert!(slot.open(&password, &other_file, &limits)?.is_none());
        let other_password = Password::new("correct horse battery stapler")?;
        assert!(slot.open(&other_password, &key_file, &limits)?.is_none());
        assert!(CompositeSlot::decode(&slot.encode()[1..]).is_err());
        Ok(())
    }
}
