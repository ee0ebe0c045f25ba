//! Recovery without the machine: the recovery key and the network copy of a keystore,
//! and rebuilding a lost home from escrow shares and a copy (the container is
//! `crate::recovery`'s).

use std::io;
use std::path::Path;

use super::{Keystore, format_error, now, read_keystore};
use crate::audit::{AuditEvent, AuditOp};
use crate::error::{ChangeError, CreateError, OpenError};
use crate::escrow::{self, EscrowError, Share};
use crate::format::FormatError;
use crate::kdf::KdfParams;
use crate::layout::Layout;
use crate::password::Password;
use crate::recovery;
use crate::ring::KeyRing;
use crate::slot::{self, NewSlot};

/// Recovery without the machine (see `docs/keystore.md`, "Recovery without the machine").
impl Keystore {
    /// The public half of the recovery key derived from the master key: the network copy
    /// of the keystore is wrapped to it, so that escrow shares alone can open it.
    #[must_use]
    pub fn recovery_public_key(&self) -> datamesh_core::ecies::PublicKey {
        recovery::recovery_key(self.ring.master()).public_key()
    }

    /// The network copy: the sealed keystore file as it is on disk now and the caller's
    /// opaque `catalog` section, authenticated under the master key.
    ///
    /// # Errors
    ///
    /// [`OpenError::Io`] if the keystore file cannot be read.
    pub fn network_copy(&self, catalog: &[u8]) -> Result<Vec<u8>, OpenError> {
        let bytes = read_keystore(&self.layout.keystore())?;
        Ok(recovery::seal_copy(self.ring.master(), &bytes, catalog))
    }

    /// The recovery key of the master key that `shares` combine to (checked against
    /// the set's commitment): what opens the network copy.
    ///
    /// # Errors
    ///
    /// As combining shares: too few, damaged, mixed sets, wrong share.
    pub fn recovery_key(
        shares: &[Share],
    ) -> Result<datamesh_core::ecies::SecretKey, crate::ShareError> {
        let (master, _) = escrow::combine(shares)?;
        Ok(recovery::recovery_key(&master))
    }

    /// The machine is gone: rebuilds the master key from `shares` and writes the
    /// keystore of `source` into the new `home` with a password slot for
    /// `new_password`. As [`Keystore::recover_into_with`].
    ///
    /// # Errors
    ///
    /// As [`Keystore::recover_into_with`].
    pub fn recover_into(
        home: &Path,
        shares: &[Share],
        source: &[u8],
        new_password: &Password,
        kdf: KdfParams,
    ) -> Result<(Self, Option<Vec<u8>>), EscrowError> {
        let new = NewSlot::Password {
            password: new_password.duplicate(),
            kdf,
        };
        Self::recover_into_with(home, shares, source, &new)
    }

    /// The machine is gone: rebuilds the master key from `shares`, checks `source` (a
    /// network copy made by [`Keystore::network_copy`], or a copy of the sealed keystore
    /// file) against it, and writes the keystore into the new `home` with the slot `new`
    /// (labelled `recovered`; under an unlock policy, of a kind it allows), logged as
    /// `recover` in a new audit log. The master key and every key stay as they were, so
    /// the shares stay valid. Returns the keystore and the catalog section of a network
    /// copy.
    ///
    /// Everything is checked before anything is written.
    ///
    /// # Errors
    ///
    /// [`EscrowError::Share`], [`EscrowError::Copy`] (the network copy is not of these
    /// shares' keystore, or damaged), [`EscrowError::WrongKeystore`],
    /// [`EscrowError::Open`] (the keystore file is damaged), [`EscrowError::Change`] (the
    /// unlock policy does not allow the new slot's kind; the token or TPM failed),
    /// [`EscrowError::Create`] (a keystore exists in `home`, a weak password, I/O).
    pub fn recover_into_with(
        home: &Path,
        shares: &[Share],
        source: &[u8],
        new: &NewSlot,
    ) -> Result<(Self, Option<Vec<u8>>), EscrowError> {
        if Layout::new(home).keystore().exists() {
            return Err(CreateError::AlreadyExists {
                home: home.to_owned(),
            }
            .into());
        }
        let (master, set) = escrow::combine(shares)?;
        let (keystore, catalog, from) = if recovery::is_copy(source) {
            let (keystore, catalog) = recovery::open_copy(&master, source)?;
            (keystore, Some(catalog.to_vec()), "the network copy")
        } else {
            (source, None, "a keystore file")
        };
        let label = Path::new("(recovered keystore)");
        let mut ring = match KeyRing::unseal_with_master(keystore, master.clone()) {
            Ok(ring) => ring,
            Err(FormatError::Authentication) => {
                return Err(EscrowError::WrongKeystore {
                    set: set.to_string(),
                    home: home.to_owned(),
                });
            }
            Err(other) => return Err(format_error(label, other).into()),
        };
        if !new.allowed_by(ring.unlock_policy()) {
            let names = ring
                .unlock_policy()
                .map(|p| p.names().join(", "))
                .unwrap_or_default();
            return Err(super::escrow::recovery_refused(ChangeError::UnlockPolicy {
                problem: format!(
                    "the unlock policy allows only {names} slots; a {} slot would open nothing",
                    new.kind_name()
                ),
            })
            .into());
        }
        // The slow part, before anything is written.
        let sealed = slot::seal_new(&master, new)?;
        let id = ring
            .add_slot(sealed.kind, sealed.data, "recovered", now())
            .map_err(|e| CreateError::Io {
                path: home.to_owned(),
                source: io::Error::other(e.to_string()),
            })?;
        ring.set_unlocked_slot(id);
        ring.header.generation = ring.header.generation.wrapping_add(1);
        let k = shares.first().map_or(0, Share::threshold);
        let event = AuditEvent::new(AuditOp::Recover).with_detail(format!(
            "escrow set {set}, {} share(s) of a {k}-of-n set, keystore from {from}; new slot {id}, {}",
            shares.len(),
            sealed.detail
        ));
        let keystore = Self::create_from(home, event, || Ok(ring))?;
        Ok((keystore, catalog))
    }
}
