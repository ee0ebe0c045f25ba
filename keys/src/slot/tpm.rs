//! The TPM 2.0 slot (kind 3): a random 32-byte slot key sealed in a TPM data object
//! under a primary storage key of the owner hierarchy (made again, identically, from a
//! fixed template at every use: nothing stays in the TPM), optionally under a policy on
//! SHA-256 PCRs; the slot key wraps the master key with AES-256-GCM.
//!
//! ```text
//! data = pcr mask u32 (bit i: SHA-256 PCR i) | public (u16 length | TPM2B_PUBLIC body, marshalled)
//!        | private (u16 length | TPM2B_PRIVATE body) | nonce (12) | wrapped master key (48)
//! aad  = "datamesh keystore slot v1" | 0x03 | pcr mask
//! ```
//!
//! The private blob is encrypted by the TPM's storage key, which never leaves that TPM:
//! a copy of the keystore does not open through this slot on another machine (another
//! TPM answers "integrity check failed"). The operations need the `tpm` feature.

use super::{NONCE_LEN, SLOT_AAD_LABEL, SLOT_TPM, SlotReader, WRAPPED_LEN, put_blob};
use crate::secret::Secret32;

/// The highest PCR index a slot may name (PC Client TPMs have 24).
pub const MAX_PCR: u8 = 23;
/// The longest public or private blob accepted.
const MAX_BLOB: usize = 512;

/// A TPM slot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TpmSlot {
    pcr_mask: u32,
    public: Vec<u8>,
    private: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

impl TpmSlot {
    /// The PCR indexes, ascending.
    pub(crate) fn pcrs(&self) -> Vec<u8> {
        (0..=MAX_PCR)
            .filter(|i| self.pcr_mask & (1 << i) != 0)
            .collect()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            8 + self.public.len() + self.private.len() + NONCE_LEN + WRAPPED_LEN,
        );
        out.extend_from_slice(&self.pcr_mask.to_be_bytes());
        put_blob(&mut out, &self.public);
        put_blob(&mut out, &self.private);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.wrapped);
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Self, String> {
        let mut reader = SlotReader::new(data);
        let pcr_mask = reader.u32()?;
        if pcr_mask >> (MAX_PCR + 1) != 0 {
            return Err(format!("a TPM slot names a PCR above {MAX_PCR}"));
        }
        let public = reader.blob()?.to_vec();
        let private = reader.blob()?.to_vec();
        if public.is_empty()
            || private.is_empty()
            || public.len() > MAX_BLOB
            || private.len() > MAX_BLOB
        {
            return Err("a TPM slot with a bad object".into());
        }
        let slot = Self {
            pcr_mask,
            public,
            private,
            nonce: reader.array()?,
            wrapped: reader.array()?,
        };
        reader.finish()?;
        Ok(slot)
    }

    fn aad(pcr_mask: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SLOT_AAD_LABEL.len() + 5);
        aad.extend_from_slice(SLOT_AAD_LABEL);
        aad.push(SLOT_TPM);
        aad.extend_from_slice(&pcr_mask.to_be_bytes());
        aad
    }

    /// Makes a slot key, seals it to the TPM at `tcti` (bound to `pcrs`), wraps `master`.
    #[cfg(feature = "tpm")]
    pub(crate) fn seal(master: &Secret32, tcti: &str, pcrs: &[u8]) -> Result<Self, String> {
        let mut pcr_mask = 0u32;
        for pcr in pcrs {
            if *pcr > MAX_PCR {
                return Err(format!("PCR {pcr} does not exist (0 to {MAX_PCR})"));
            }
            pcr_mask |= 1 << pcr;
        }
        let slot_key = Secret32::random();
        let (public, private) = esapi::seal(tcti, pcr_mask, &slot_key)?;
        let (nonce, wrapped) = super::wrap(&slot_key, &Self::aad(pcr_mask), master);
        let slot = Self {
            pcr_mask,
            public,
            private,
            nonce,
            wrapped,
        };
        // Check it opens before it is written.
        slot.open(tcti)
            .map_err(|e| format!("the new slot does not open: {e}"))?;
        Ok(slot)
    }

    /// Without the `tpm` feature there is no TPM backend.
    #[cfg(not(feature = "tpm"))]
    pub(crate) fn seal(_master: &Secret32, _tcti: &str, _pcrs: &[u8]) -> Result<Self, String> {
        Err(NO_TPM.into())
    }

    /// Unseals the slot key in the TPM at `tcti` and unwraps the master key.
    pub(crate) fn open(&self, tcti: &str) -> Result<Secret32, String> {
        #[cfg(feature = "tpm")]
        {
            let slot_key = esapi::unseal(tcti, self.pcr_mask, &self.public, &self.private)?;
            super::unwrap(
                &slot_key,
                &Self::aad(self.pcr_mask),
                &self.nonce,
                &self.wrapped,
            )
            .ok_or_else(|| "the key the TPM unsealed does not open this slot".to_owned())
        }
        #[cfg(not(feature = "tpm"))]
        {
            let _ = tcti;
            Err(NO_TPM.into())
        }
    }
}

#[cfg(not(feature = "tpm"))]
const NO_TPM: &str = "this build of datamesh has no TPM support (built without the `tpm` feature)";

#[cfg(feature = "tpm")]
mod esapi {
    //! The TPM commands, through `tss-esapi` (libtss2's ESAPI).

    pub(super) fn seal(
        _tcti: &str,
        _pcr_mask: u32,
        _slot_key: &crate::secret::Secret32,
    ) -> Result<(Vec<u8>, Vec<u8>), String> {
        Err("not yet".into())
    }

    pub(super) fn unseal(
        _tcti: &str,
        _pcr_mask: u32,
        _public: &[u8],
        _private: &[u8],
    ) -> Result<crate::secret::Secret32, String> {
        Err("not yet".into())
    }
}
