//! The composite slots: a password *and* a second factor, both mixed into the slot key
//! (as KeePassXC's composite key), so that neither opens it alone.
//!
//! Kind 4, password+keyfile:
//!
//! ```text
//! data = m_kib u32 | t u32 | p u32 | salt (32) | nonce (12) | wrapped master key (32 + 16)
//! kek  = BLAKE3 derive_key("datamesh keystore composite slot v1",
//!            Argon2id(password NFKD, salt, m, t, p) (32) | key file digest (32))
//! key file digest = BLAKE3 derive_key("datamesh key file v1", the file's bytes)
//! wrapped = AES-256-GCM(kek, nonce, aad = "datamesh keystore slot v1" | 0x04 | m | t | p | salt, master key)
//! ```
//!
//! Kinds 5 (password+pkcs11) and 6 (password+tpm): a random 32-byte *factor* sealed by
//! the hardware exactly as a PKCS#11 (kind 2) or TPM (kind 3) slot seals a master key,
//! but with this slot's kind in its associated data; the factor never leaves memory
//! unsealed.
//!
//! ```text
//! data = m_kib u32 | t u32 | p u32 | salt (32) | nonce (12) | wrapped master key (48)
//!        | hardware (u16 length | the data of a kind 2 or kind 3 slot, wrapping the factor)
//! kek  = BLAKE3 derive_key("datamesh keystore password+hardware slot v1",
//!            kind (1) | Argon2id(password NFKD, salt, m, t, p) (32) | factor (32))
//! wrapped = AES-256-GCM(kek, nonce, aad = "datamesh keystore slot v1" | kind | m | t | p | salt, master key)
//! ```

use rand_core::{OsRng, RngCore};

use super::pkcs11::Pkcs11Slot;
use super::tpm::TpmSlot;
use super::{
    Credentials, KeyFile, NONCE_LEN, SLOT_AAD_LABEL, SLOT_COMPOSITE, SLOT_PASSWORD_PKCS11,
    SLOT_PASSWORD_TPM, SlotReader, WRAPPED_LEN, put_blob,
};
use crate::error::KdfError;
use crate::kdf::{self, KdfLimits, KdfParams, SALT_LEN};
use crate::password::Password;
use crate::secret::Secret32;

const KEK_CONTEXT: &str = "datamesh keystore composite slot v1";
const HARDWARE_KEK_CONTEXT: &str = "datamesh keystore password+hardware slot v1";

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
    aad_of(SLOT_COMPOSITE, kdf, salt)
}

fn aad_of(kind: u8, kdf: KdfParams, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SLOT_AAD_LABEL.len() + 13 + SALT_LEN);
    aad.extend_from_slice(SLOT_AAD_LABEL);
    aad.push(kind);
    aad.extend_from_slice(&kdf.memory_kib().to_be_bytes());
    aad.extend_from_slice(&kdf.iterations().to_be_bytes());
    aad.extend_from_slice(&kdf.parallelism().to_be_bytes());
    aad.extend_from_slice(salt);
    aad
}

/// The hardware half of a password+hardware slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HardwareHalf {
    Pkcs11(Pkcs11Slot),
    Tpm(TpmSlot),
}

/// A password+pkcs11 (kind 5) or password+tpm (kind 6) slot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PasswordHardwareSlot {
    kind: u8,
    pub(crate) kdf: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
    pub(crate) hardware: HardwareHalf,
}

impl PasswordHardwareSlot {
    /// Seals `master` under `password` and a new factor that `seal_factor` seals in the
    /// hardware (given this slot's kind for its associated data).
    pub(crate) fn seal(
        kind: u8,
        master: &Secret32,
        password: &Password,
        kdf: KdfParams,
        seal_factor: impl FnOnce(u8, &Secret32) -> Result<HardwareHalf, String>,
    ) -> Result<Self, String> {
        let factor = Secret32::random();
        let hardware = seal_factor(kind, &factor)?;
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        let kek = hardware_kek(kind, password, &factor, &salt, kdf, &KdfLimits::DEFAULT)
            .map_err(|e| e.to_string())?;
        let (nonce, wrapped) = super::wrap(&kek, &aad_of(kind, kdf, &salt), master);
        Ok(Self {
            kind,
            kdf,
            salt,
            nonce,
            wrapped,
            hardware,
        })
    }

    /// The master key: `Err` when the hardware fails (one line), `Ok(Ok(None))` when the
    /// password is not the one sealed with, `Ok(Err(_))` when the KDF refuses.
    pub(crate) fn open(
        &self,
        password: &Password,
        credentials: &Credentials,
        limits: &KdfLimits,
    ) -> Result<Result<Option<Secret32>, KdfError>, String> {
        let factor = match &self.hardware {
            HardwareHalf::Pkcs11(slot) => slot.open(credentials.pin.as_ref())?,
            HardwareHalf::Tpm(slot) => slot.open(credentials.tcti())?,
        };
        let kek = match hardware_kek(self.kind, password, &factor, &self.salt, self.kdf, limits) {
            Ok(kek) => kek,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(super::unwrap(
            &kek,
            &aad_of(self.kind, self.kdf, &self.salt),
            &self.nonce,
            &self.wrapped,
        )))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let hardware = match &self.hardware {
            HardwareHalf::Pkcs11(slot) => slot.encode(),
            HardwareHalf::Tpm(slot) => slot.encode(),
        };
        let mut out = Vec::with_capacity(CompositeSlot::LEN + 2 + hardware.len());
        out.extend_from_slice(&self.kdf.memory_kib().to_be_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_be_bytes());
        out.extend_from_slice(&self.kdf.parallelism().to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
        put_blob(&mut out, &hardware);
        out
    }

    /// Parses the data of a slot of `kind` (5 or 6); the KDF parameters are checked by
    /// [`Self::open`].
    pub(crate) fn decode(kind: u8, data: &[u8]) -> Result<Self, String> {
        let mut reader = SlotReader::new(data);
        let (m, t, p) = (reader.u32()?, reader.u32()?, reader.u32()?);
        let kdf = KdfParams::unchecked(m, t, p);
        let salt = reader.array()?;
        let nonce = reader.array()?;
        let wrapped = reader.array()?;
        let inner = reader.blob()?;
        reader.finish()?;
        let hardware = match kind {
            SLOT_PASSWORD_PKCS11 => HardwareHalf::Pkcs11(Pkcs11Slot::decode_as(kind, inner)?),
            SLOT_PASSWORD_TPM => HardwareHalf::Tpm(TpmSlot::decode_as(kind, inner)?),
            _ => return Err(format!("slot kind {kind} is not password+hardware")),
        };
        Ok(Self {
            kind,
            kdf,
            salt,
            nonce,
            wrapped,
            hardware,
        })
    }
}

fn hardware_kek(
    kind: u8,
    password: &Password,
    factor: &Secret32,
    salt: &[u8; SALT_LEN],
    kdf: KdfParams,
    limits: &KdfLimits,
) -> Result<Secret32, KdfError> {
    let stretched = kdf::derive_kek(password, salt, kdf, limits)?;
    Ok(Secret32::init_with(|out| {
        let mut hasher = blake3::Hasher::new_derive_key(HARDWARE_KEK_CONTEXT);
        hasher.update(&[kind]);
        hasher.update(stretched.expose());
        hasher.update(factor.expose());
        *out = *hasher.finalize().as_bytes();
    }))
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

    #[test]
    fn password_hardware_slot_data_round_trips_and_bad_data_is_refused() -> Result<(), String> {
        let pkcs11 = [
            &[0, 4][..],
            b"/lib",
            &[4],
            b"node",
            &[3],
            b"key",
            &[7; NONCE_LEN],
            &[9; WRAPPED_LEN],
        ]
        .concat();
        let mut data = [8u32.to_be_bytes(), 1u32.to_be_bytes(), 1u32.to_be_bytes()].concat();
        data.extend_from_slice(&[1; SALT_LEN]);
        data.extend_from_slice(&[2; NONCE_LEN]);
        data.extend_from_slice(&[3; WRAPPED_LEN]);
        put_blob(&mut data, &pkcs11);
        let slot = PasswordHardwareSlot::decode(SLOT_PASSWORD_PKCS11, &data)?;
        assert_eq!(slot.encode(), data);
        assert!(matches!(slot.hardware, HardwareHalf::Pkcs11(_)));
        // The same bytes are not a password+tpm slot, nor of another kind.
        assert!(PasswordHardwareSlot::decode(SLOT_PASSWORD_TPM, &data).is_err());
        assert!(PasswordHardwareSlot::decode(SLOT_COMPOSITE, &data).is_err());
        for cut in 0..data.len() {
            assert!(
                PasswordHardwareSlot::decode(SLOT_PASSWORD_PKCS11, &data[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        Ok(())
    }
}
