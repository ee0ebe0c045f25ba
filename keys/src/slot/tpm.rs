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

use super::{NONCE_LEN, SlotReader, WRAPPED_LEN, put_blob};
use crate::secret::Secret32;

/// The highest PCR index a slot may name (PC Client TPMs have 24).
pub const MAX_PCR: u8 = 23;
/// The longest public or private blob accepted.
const MAX_BLOB: usize = 512;

/// A TPM slot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TpmSlot {
    /// The slot kind in the associated data (not stored: [`super::SLOT_TPM`], or the kind
    /// of the password+tpm slot this one is the hardware half of).
    kind: u8,
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

    /// A TPM slot's data.
    pub(crate) fn decode(data: &[u8]) -> Result<Self, String> {
        Self::decode_as(super::SLOT_TPM, data)
    }

    /// Slot data whose associated data names `kind`.
    pub(crate) fn decode_as(kind: u8, data: &[u8]) -> Result<Self, String> {
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
            kind,
            pcr_mask,
            public,
            private,
            nonce: reader.array()?,
            wrapped: reader.array()?,
        };
        reader.finish()?;
        Ok(slot)
    }

    #[cfg(feature = "tpm")]
    fn aad(kind: u8, pcr_mask: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(super::SLOT_AAD_LABEL.len() + 5);
        aad.extend_from_slice(super::SLOT_AAD_LABEL);
        aad.push(kind);
        aad.extend_from_slice(&pcr_mask.to_be_bytes());
        aad
    }

    /// Makes a slot key, seals it to the TPM at `tcti` (bound to `pcrs`), wraps `master`.
    #[cfg(feature = "tpm")]
    pub(crate) fn seal(
        kind: u8,
        master: &Secret32,
        tcti: &str,
        pcrs: &[u8],
    ) -> Result<Self, String> {
        let mut pcr_mask = 0u32;
        if pcrs.len() > esapi::MAX_PCRS {
            return Err(format!(
                "a TPM slot is bound to at most {} PCRs",
                esapi::MAX_PCRS
            ));
        }
        for pcr in pcrs {
            if *pcr > MAX_PCR {
                return Err(format!("PCR {pcr} does not exist (0 to {MAX_PCR})"));
            }
            pcr_mask |= 1 << pcr;
        }
        let slot_key = Secret32::random();
        let (public, private) = esapi::seal(tcti, pcr_mask, &slot_key)?;
        let (nonce, wrapped) = super::wrap(&slot_key, &Self::aad(kind, pcr_mask), master);
        let slot = Self {
            kind,
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
    pub(crate) fn seal(
        _kind: u8,
        _master: &Secret32,
        _tcti: &str,
        _pcrs: &[u8],
    ) -> Result<Self, String> {
        Err(NO_TPM.into())
    }

    /// Unseals the slot key in the TPM at `tcti` and unwraps the master key.
    pub(crate) fn open(&self, tcti: &str) -> Result<Secret32, String> {
        #[cfg(feature = "tpm")]
        {
            let slot_key = esapi::unseal(tcti, self.pcr_mask, &self.public, &self.private)?;
            super::unwrap(
                &slot_key,
                &Self::aad(self.kind, self.pcr_mask),
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
    //! The TPM commands, through `tss-esapi` (libtss2's ESAPI). Every object and session
    //! loaded is flushed before returning, also on errors: without a resource manager
    //! (swtpm, a TPM used directly) the TPM's few object slots would fill up.

    use core::str::FromStr;

    use sha2::{Digest as _, Sha256};
    use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
    use tss_esapi::constants::SessionType;
    use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
    use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
    use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
    use tss_esapi::interface_types::ecc::EccCurve;
    use tss_esapi::interface_types::resource_handles::Hierarchy;
    use tss_esapi::interface_types::session_handles::PolicySession;
    use tss_esapi::structures::{
        Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
        Private, Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
        SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
    };
    use tss_esapi::tcti_ldr::TctiNameConf;
    use tss_esapi::traits::{Marshall, UnMarshall};
    use tss_esapi::{Context, Error as TssError};

    use super::MAX_PCR;
    use crate::secret::{SECRET_LEN, Secret32};

    /// The most PCRs one `TPM2_PCR_Read` returns, and so the most a slot may name.
    pub(super) const MAX_PCRS: usize = 8;

    fn context(tcti: &str) -> Result<Context, String> {
        let conf = TctiNameConf::from_str(tcti)
            .map_err(|e| format!("\"{tcti}\" is not a TPM (TCTI) name: {e}"))?;
        Context::new(conf).map_err(|_| {
            format!("the TPM at {tcti} is not reachable (is it there and running? see --tpm-tcti)")
        })
    }

    fn describe(what: &str, e: &TssError) -> String {
        if let TssError::Tss2Error(rc) = e {
            match rc.kind() {
                Some(Tss2ResponseCodeKind::Integrity) => {
                    return "this slot was sealed by another TPM (was the keystore copied from another machine?)".into();
                }
                Some(Tss2ResponseCodeKind::PolicyFail) => {
                    return "the PCRs this slot is bound to changed since it was sealed (TPM policy mismatch)".into();
                }
                Some(Tss2ResponseCodeKind::ObjectMemory) => {
                    return "the TPM has no free object slot (objects of crashed processes fill it; use the kernel's resource manager, device:/dev/tpmrm0)".into();
                }
                _ => {}
            }
        }
        format!("the TPM failed to {what}: {e}")
    }

    /// The storage primary of the owner hierarchy: ECC P-256, AES-128-CFB, made from the
    /// same template every time (so the same key on the same TPM).
    fn primary_template() -> Result<Public, TssError> {
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_user_with_auth(true)
            .with_decrypt(true)
            .with_restricted(true)
            .with_no_da(true)
            .build()?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new_restricted_decryption_key(
                    SymmetricDefinitionObject::AES_128_CFB,
                    EccCurve::NistP256,
                )
                .build()?,
            )
            .with_ecc_unique_identifier(EccPoint::default())
            .build()
    }

    fn pcr_selection(pcr_mask: u32) -> Result<PcrSelectionList, TssError> {
        let slots: Vec<PcrSlot> = (0..=MAX_PCR)
            .filter(|i| pcr_mask & (1 << i) != 0)
            .map(|i| PcrSlot::try_from(1u32 << i))
            .collect::<Result<_, _>>()?;
        PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
    }

    /// Runs `work` with the primary loaded; flushes it afterwards.
    fn with_primary<T>(
        ctx: &mut Context,
        work: impl FnOnce(&mut Context, KeyHandle) -> Result<T, String>,
    ) -> Result<T, String> {
        let template = primary_template().map_err(|e| describe("describe a key", &e))?;
        let primary = ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(|e| describe("make its storage key", &e))?
            .key_handle;
        let result = work(ctx, primary);
        let _ = ctx.flush_context(ObjectHandle::from(primary));
        result
    }

    /// The policy digest of "these PCRs hold their current values".
    fn pcr_policy_digest(
        ctx: &mut Context,
        selection: &PcrSelectionList,
    ) -> Result<Digest, String> {
        let (_, read, digests) = ctx
            .execute_without_session(|ctx| ctx.pcr_read(selection.clone()))
            .map_err(|e| describe("read the PCRs", &e))?;
        if read != *selection {
            return Err(format!(
                "the TPM returned other PCRs than asked for (at most {MAX_PCRS} at a time)"
            ));
        }
        let mut hasher = Sha256::new();
        for digest in digests.value() {
            hasher.update(digest.value());
        }
        let pcr_digest = Digest::try_from(hasher.finalize().to_vec())
            .map_err(|e| describe("hash the PCRs", &e))?;
        let session = start_policy_session(ctx, SessionType::Trial)?;
        let result = ctx
            .policy_pcr(session, pcr_digest, selection.clone())
            .and_then(|()| ctx.policy_get_digest(session))
            .map_err(|e| describe("compute the PCR policy", &e));
        let _ = ctx.flush_context(ObjectHandle::from(SessionHandle::from(session)));
        result
    }

    fn start_policy_session(ctx: &mut Context, kind: SessionType) -> Result<PolicySession, String> {
        let session = ctx
            .execute_without_session(|ctx| {
                ctx.start_auth_session(
                    None,
                    None,
                    None,
                    kind,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
            })
            .map_err(|e| describe("start a session", &e))?
            .ok_or_else(|| "the TPM started no session".to_owned())?;
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_decrypt(true)
            .with_encrypt(true)
            .build();
        ctx.tr_sess_set_attributes(session, attributes, mask)
            .map_err(|e| describe("set up a session", &e))?;
        PolicySession::try_from(session).map_err(|e| describe("start a policy session", &e))
    }

    /// Seals `slot_key` under the owner hierarchy's storage primary; returns the sealed
    /// object's public and private parts, marshalled.
    pub(super) fn seal(
        tcti: &str,
        pcr_mask: u32,
        slot_key: &Secret32,
    ) -> Result<(Vec<u8>, Vec<u8>), String> {
        if pcr_mask.count_ones() as usize > MAX_PCRS {
            return Err(format!("a TPM slot is bound to at most {MAX_PCRS} PCRs"));
        }
        let mut ctx = context(tcti)?;
        let policy = if pcr_mask == 0 {
            None
        } else {
            let selection = pcr_selection(pcr_mask).map_err(|e| describe("select the PCRs", &e))?;
            Some(pcr_policy_digest(&mut ctx, &selection)?)
        };
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_no_da(true)
            .with_user_with_auth(policy.is_none())
            .build()
            .map_err(|e| describe("describe the sealed object", &e))?;
        let public = PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::KeyedHash)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_auth_policy(policy.unwrap_or_default())
            .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
            .with_keyed_hash_unique_identifier(Digest::default())
            .build()
            .map_err(|e| describe("describe the sealed object", &e))?;
        let data = SensitiveData::try_from(slot_key.expose().to_vec())
            .map_err(|e| describe("take the slot key", &e))?;
        with_primary(&mut ctx, |ctx, primary| {
            let created = ctx
                .execute_with_nullauth_session(|ctx| {
                    ctx.create(primary, public, None, Some(data), None, None)
                })
                .map_err(|e| describe("seal the slot key", &e))?;
            let public = created
                .out_public
                .marshall()
                .map_err(|e| describe("marshal the sealed object", &e))?;
            Ok((public, created.out_private.value().to_vec()))
        })
    }

    /// Loads the sealed object under the storage primary and unseals the slot key
    /// (through a PCR policy session when the slot has PCRs).
    pub(super) fn unseal(
        tcti: &str,
        pcr_mask: u32,
        public: &[u8],
        private: &[u8],
    ) -> Result<Secret32, String> {
        let public = Public::unmarshall(public).map_err(|e| describe("read the slot", &e))?;
        let private =
            Private::try_from(private.to_vec()).map_err(|e| describe("read the slot", &e))?;
        let mut ctx = context(tcti)?;
        with_primary(&mut ctx, |ctx, primary| {
            let object = ctx
                .execute_with_nullauth_session(|ctx| ctx.load(primary, private, public))
                .map_err(|e| describe("load the slot's object", &e))?;
            let result = if pcr_mask == 0 {
                ctx.execute_with_nullauth_session(|ctx| ctx.unseal(object.into()))
                    .map_err(|e| describe("unseal the slot key", &e))
            } else {
                unseal_with_policy(ctx, pcr_mask, object)
            };
            let _ = ctx.flush_context(ObjectHandle::from(object));
            let data = zeroize::Zeroizing::new(result?.value().to_vec());
            let bytes: &[u8; SECRET_LEN] = data
                .as_slice()
                .try_into()
                .map_err(|_| "the TPM unsealed a key of the wrong length".to_owned())?;
            Ok(Secret32::copy_from(bytes))
        })
    }

    fn unseal_with_policy(
        ctx: &mut Context,
        pcr_mask: u32,
        object: KeyHandle,
    ) -> Result<SensitiveData, String> {
        let selection = pcr_selection(pcr_mask).map_err(|e| describe("select the PCRs", &e))?;
        let session = start_policy_session(ctx, SessionType::Policy)?;
        let result = ctx
            .policy_pcr(session, Digest::default(), selection)
            .map_err(|e| describe("check the PCRs", &e))
            .and_then(|()| {
                ctx.execute_with_session(Some(session.into()), |ctx| ctx.unseal(object.into()))
                    .map_err(|e| describe("unseal the slot key", &e))
            });
        let _ = ctx.flush_context(ObjectHandle::from(SessionHandle::from(session)));
        result
    }
}
