//! Recovery without the machine: the recovery key and the network copy of a keystore,
//! and rebuilding a lost home from escrow shares and a copy (the container is
//! `crate::recovery`'s).

use std::io;
use std::path::Path;

use super::{Keystore, format_error, now, read_keystore};
use crate::audit::{AuditEvent, AuditOp};
use crate::error::{CreateError, OpenError};
use crate::escrow::{self, EscrowError, Share};
use crate::format::{FormatError, PasswordSlot, SLOT_PASSWORD};
use crate::kdf::{KdfLimits, KdfParams};
use crate::layout::Layout;
use crate::password::Password;
use crate::recovery;
use crate::ring::KeyRing;

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

    /// The machine is gone: rebuilds the master key from `shares`, checks `source` (a
    /// network copy made by [`Keystore::network_copy`], or a copy of the sealed keystore
    /// file) against it, and writes the keystore into the new `home` with a password
    /// slot (labelled `recovered`) for `new_password`, logged as `recover` in a new
    /// audit log. The master key and every key stay as they were, so the shares stay
    /// valid. Returns the keystore and the catalog section of a network copy.
    ///
    /// Everything is checked before anything is written.
    ///
    /// # Errors
    ///
    /// [`EscrowError::Share`], [`EscrowError::Copy`] (the network copy is not of these
    /// shares' keystore, or damaged), [`EscrowError::WrongKeystore`],
    /// [`EscrowError::Open`] (the keystore file is damaged), [`EscrowError::Create`] (a
    /// keystore exists in `home`, a weak password, I/O).
    pub fn recover_into(
        home: &Path,
        shares: &[Share],
        source: &[u8],
        new_password: &Password,
        kdf: KdfParams,
    ) -> Result<(Self, Option<Vec<u8>>), EscrowError> {
        if Layout::new(home).keystore().exists() {
            return Err(CreateError::AlreadyExists {
                home: home.to_owned(),
            }
            .into());
        }
        new_password.check_new().map_err(CreateError::from)?;
        kdf.check(&KdfLimits::DEFAULT).map_err(CreateError::from)?;
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
        // The slow part, before anything is written.
        let slot = PasswordSlot::seal(&master, new_password, kdf).map_err(CreateError::from)?;
        let id = ring
            .add_slot(SLOT_PASSWORD, slot.encode(), "recovered", now())
            .map_err(|e| CreateError::Io {
                path: home.to_owned(),
                source: io::Error::other(e.to_string()),
            })?;
        ring.set_unlocked_slot(id);
        ring.header.generation = ring.header.generation.wrapping_add(1);
        let k = shares.first().map_or(0, Share::threshold);
        let event = AuditEvent::new(AuditOp::Recover).with_detail(format!(
            "escrow set {set}, {} share(s) of a {k}-of-n set, keystore from {from}; new password slot {id}, {kdf}",
            shares.len()
        ));
        let keystore = Self::create_with(home, new_password, kdf, event, |_, _| Ok(ring))?;
        Ok((keystore, catalog))
    }
}
