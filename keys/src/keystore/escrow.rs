//! Shamir escrow of the keystore's master key: split, the drill (verify) and the
//! forgotten-password recovery (the shares are `crate::escrow`'s).

use std::path::Path;

use super::{Keystore, format_error, now, read_keystore};
use crate::audit::{AuditEvent, AuditLog, AuditOp, Outcome};
use crate::error::{ChangeError, OpenError};
use crate::escrow::{self, EscrowError, SetId, Share};
use crate::format::FormatError;
use crate::fsx;
use crate::kdf::KdfParams;
use crate::layout::Layout;
use crate::lock;
use crate::password::Password;
use crate::ring::KeyRing;
use crate::slot::{self, NewSlot};

/// Shamir escrow of the master key (see `docs/keystore.md`, "Escrow").
impl Keystore {
    /// Splits the master key into `shares` shares of a new set, any `threshold` of which
    /// recover it (2 <= threshold <= shares <= 255). Nothing in the keystore changes; the
    /// split is logged with its set id.
    ///
    /// # Errors
    ///
    /// [`crate::ShareError::BadThreshold`]; logging errors.
    pub fn escrow_split(&self, threshold: u8, shares: u8) -> Result<Vec<Share>, EscrowError> {
        self.escrow_split_with_copy(threshold, shares, None)
    }

    /// As [`Keystore::escrow_split`], and every share carries `network_copy`, the file
    /// id (32 bytes) under which [`Keystore::network_copy`] was stored in the network.
    ///
    /// # Errors
    ///
    /// [`crate::ShareError::BadThreshold`]; logging errors.
    pub fn escrow_split_with_copy(
        &self,
        threshold: u8,
        shares: u8,
        network_copy: Option<[u8; 32]>,
    ) -> Result<Vec<Share>, EscrowError> {
        let result = escrow::split(self.ring.master(), threshold, shares, now(), network_copy);
        let event = AuditEvent::new(AuditOp::Escrow);
        let event = match &result {
            Ok(list) => event.with_detail(format!(
                "split: set {}, {threshold} of {shares}{}",
                list.first()
                    .map(Share::set)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                if network_copy.is_some() {
                    ", with a network copy of the keystore"
                } else {
                    ""
                }
            )),
            Err(e) => event
                .with_outcome(Outcome::Failed)
                .with_detail(format!("split: {e}")),
        };
        self.log(&event)?;
        Ok(result?)
    }

    /// The escrow drill: checks that `shares` combine to this keystore's master key.
    /// Changes nothing but the audit log (one `escrow` line, ok or failed).
    ///
    /// # Errors
    ///
    /// [`EscrowError::Share`] (too few, damaged, mixed sets, wrong share),
    /// [`EscrowError::WrongKeystore`]; logging errors.
    pub fn escrow_verify(&self, shares: &[Share]) -> Result<SetId, EscrowError> {
        let result =
            escrow::combine(shares)
                .map_err(EscrowError::from)
                .and_then(|(master, set)| {
                    if bool::from(subtle::ConstantTimeEq::ct_eq(
                        &master.expose()[..],
                        &self.ring.master().expose()[..],
                    )) {
                        Ok(set)
                    } else {
                        Err(EscrowError::WrongKeystore {
                            set: set.to_string(),
                            home: self.layout.home().to_owned(),
                        })
                    }
                });
        let event = AuditEvent::new(AuditOp::Escrow);
        let event = match &result {
            Ok(set) => event.with_detail(format!(
                "verify: set {set}, {} share(s) combine",
                shares.len()
            )),
            Err(e) => event
                .with_outcome(Outcome::Failed)
                .with_detail(format!("verify: {e}")),
        };
        self.log(&event)?;
        result
    }

    /// The forgotten-password case: rebuilds the master key from escrow shares, checks
    /// that it opens the keystore of `home`, and adds a password slot (labelled
    /// `recovered`) for `new_password`. As [`Keystore::recover_with`].
    ///
    /// # Errors
    ///
    /// As [`Keystore::recover_with`].
    pub fn recover(
        home: &Path,
        shares: &[Share],
        new_password: &Password,
        kdf: KdfParams,
    ) -> Result<Self, EscrowError> {
        let new = NewSlot::Password {
            password: new_password.duplicate(),
            kdf,
        };
        Self::recover_with(home, shares, &new)
    }

    /// The forgotten-password (or lost-token) case: rebuilds the master key from escrow
    /// shares, checks that it opens the keystore of `home`, and adds the slot `new`
    /// (labelled `recovered`) in one logged write: a password slot, or, under an unlock
    /// policy that forbids password-only unlock, a slot of a kind it allows (a password
    /// and a key file, a PKCS#11 token, the TPM). The returned keystore counts as
    /// unlocked with the new slot.
    ///
    /// # Errors
    ///
    /// [`EscrowError::Share`], [`EscrowError::WrongKeystore`], [`EscrowError::Open`]
    /// (no keystore, permissions, damaged file), [`EscrowError::Change`] (the unlock
    /// policy does not allow the new slot's kind, a weak or empty password, KDF
    /// parameters, the token or TPM failed, too many slots, I/O); nothing changed.
    pub fn recover_with(home: &Path, shares: &[Share], new: &NewSlot) -> Result<Self, EscrowError> {
        let layout = Layout::new(home);
        let keystore = layout.keystore();
        if !keystore.exists() {
            return Err(OpenError::NotInitialised {
                home: home.to_owned(),
            }
            .into());
        }
        fsx::check_private(&layout.keys_dir(), true)?;
        fsx::check_private(&keystore, false)?;
        if layout.audit_log().exists() {
            fsx::check_private(&layout.audit_log(), false)?;
        }
        let log = AuditLog::new(layout.audit_log());
        let fail = |e: EscrowError| {
            if let Ok(_lock) = lock::acquire(&layout) {
                let _ = log.record(
                    &AuditEvent::new(AuditOp::Recover)
                        .with_outcome(Outcome::Failed)
                        .with_detail(e.to_string()),
                );
            }
            e
        };
        let (master, set) = escrow::combine(shares).map_err(|e| fail(e.into()))?;
        let bytes = read_keystore(&keystore)?;
        let ring = match KeyRing::unseal_with_master(&bytes, master) {
            Ok(ring) => ring,
            Err(FormatError::Authentication) => {
                return Err(fail(EscrowError::WrongKeystore {
                    set: set.to_string(),
                    home: home.to_owned(),
                }));
            }
            Err(other) => return Err(format_error(&keystore, other).into()),
        };
        let mut recovered = Self::adopt(Layout::new(home), ring, false, None)?;
        recovered
            .check_policy_allows(new)
            .map_err(|e| fail(recovery_refused(e).into()))?;
        // The slow part (Argon2id, the token, the TPM), before taking the lock.
        let sealed = slot::seal_new(recovered.ring.master(), new).map_err(|e| fail(e.into()))?;
        let k = shares.first().map_or(0, Share::threshold);
        let detail = sealed.detail;
        recovered.change(AuditEvent::new(AuditOp::Recover), |ring, event| {
            let id = ring.add_slot(sealed.kind, sealed.data, "recovered", now())?;
            ring.set_unlocked_slot(id);
            event.set_detail(format!(
                "escrow set {set}, {} share(s) of a {k}-of-n set; new slot {id}, {detail}",
                shares.len()
            ));
            Ok(())
        })?;
        Ok(recovered)
    }
}

/// A recovery refused by the unlock policy says which kinds of slot it can add instead.
pub(super) fn recovery_refused(e: ChangeError) -> ChangeError {
    match e {
        ChangeError::UnlockPolicy { problem } => ChangeError::UnlockPolicy {
            problem: format!(
                "{problem}: recover with a slot it allows (--new-key-file F, --pkcs11 MODULE --token LABEL, --tpm, or one of them --with-password)"
            ),
        },
        other => other,
    }
}
