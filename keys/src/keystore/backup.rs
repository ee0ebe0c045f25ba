//! Backup bundles of a keystore's keys, and restoring one into a new home (the format is
//! `crate::backup`'s).

use std::io;
use std::path::Path;

use jiff::Timestamp;

use super::{Keystore, now};
use crate::audit::{AuditEvent, AuditOp};
use crate::backup::{
    self, BackupError, BackupKey, BackupSeal, OpenedBackup, SealedWith, TrustedSigner,
};
use crate::error::CreateError;
use crate::kdf::{KdfLimits, KdfParams};
use crate::layout::Layout;
use crate::password::Password;
use crate::ring::KeyRing;
use crate::secret::Secret32;
use crate::slot::{self, NewSlot, UnlockPolicy};

/// Backup bundles (see `docs/keystore.md`, "Backup bundles").
impl Keystore {
    /// A backup bundle of every key version but destroyed ones, the policy and the
    /// caller's opaque `catalog` section, sealed as `seal` says (a backup password, with
    /// Argon2id and AES-256-GCM; or ECIES to a recipient's public key). Logged as
    /// `backup`.
    ///
    /// # Errors
    ///
    /// A weak or empty password, KDF parameters out of bounds; logging errors.
    pub fn backup(&self, seal: BackupSeal<'_>, catalog: &[u8]) -> Result<Vec<u8>, BackupError> {
        let how = match seal {
            BackupSeal::Password { password, kdf } => {
                password.check_new()?;
                kdf.check(&KdfLimits::DEFAULT)?;
                format!("backup password, {kdf}")
            }
            BackupSeal::Recipient(key) => {
                format!("sealed to key id {}", datamesh_core::KeyId::of(key).short())
            }
        };
        let signer = ed25519_dalek::SigningKey::from_bytes(&self.ring.node_identity_seed());
        let bytes = backup::seal(
            &self.ring.body.entries,
            self.ring.policy(),
            catalog,
            seal,
            &signer,
            now(),
        )?;
        let kept = self
            .ring
            .body
            .entries
            .iter()
            .filter(|e| e.status != crate::model::KeyStatus::Destroyed)
            .count();
        self.log(&AuditEvent::new(AuditOp::Backup).with_detail(format!(
            "{kept} key version(s), catalog {} bytes, {} bytes, {how}",
            catalog.len(),
            bytes.len()
        )))
        .map_err(|e| BackupError::Encode(e.to_string()))?;
        Ok(bytes)
    }

    /// Opens and checks a bundle without restoring it (checksum, key, manifest, every
    /// keystore check on the keys).
    ///
    /// # Errors
    ///
    /// See [`BackupError`].
    pub fn verify_backup(bytes: &[u8], key: BackupKey<'_>) -> Result<OpenedBackup, BackupError> {
        backup::open(bytes, key, &KdfLimits::DEFAULT)
    }

    /// Builds the keystore of a new `home` from an opened bundle
    /// ([`Keystore::verify_backup`]) signed by a key `trust` accepts: the bundle's keys
    /// and policy under a new master key and one password slot for `new_password`.
    ///
    /// # Errors
    ///
    /// [`BackupError::WrongSigner`], [`BackupError::Unsigned`] (see
    /// [`OpenedBackup::check_signer`]); [`BackupError::Create`] (a keystore exists, a
    /// weak password, I/O).
    pub fn restore(
        home: &Path,
        opened: OpenedBackup,
        trust: TrustedSigner<'_>,
        new_password: &Password,
        kdf: KdfParams,
    ) -> Result<Self, BackupError> {
        opened.check_signer(trust)?;
        let signer = opened.signer_hex();
        if Layout::new(home).keystore().exists() {
            return Err(CreateError::AlreadyExists {
                home: home.to_owned(),
            }
            .into());
        }
        let OpenedBackup {
            manifest,
            sealed_with,
            content,
            ..
        } = opened;
        let event = AuditEvent::new(AuditOp::Restore).with_detail(format!(
            "{} key version(s) from a bundle made at {} ({}, signed by {}); slot 1, {kdf}",
            manifest.key_count,
            Timestamp::from_second(manifest.created)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            match sealed_with {
                SealedWith::Password => "backup password".to_owned(),
                SealedWith::Recipient(id) =>
                    format!("sealed to key id {}", &id[..16.min(id.len())]),
            },
            signer.as_deref().unwrap_or("nobody (unsigned)")
        ));
        Ok(Self::create_with(
            home,
            new_password,
            kdf,
            event,
            |password, kdf| {
                KeyRing::from_backup(password, kdf, now(), content.policy, content.entries).map_err(
                    |problem| CreateError::Io {
                        path: home.to_owned(),
                        source: io::Error::other(problem),
                    },
                )
            },
        )?)
    }

    /// As [`Keystore::restore`], with the first slot of any kind (`new`: a password, a
    /// password and a key file, a PKCS#11 token, the TPM, ...) and, with `unlock_policy`,
    /// the slot kinds that may unlock sealed in at once (a bundle carries keys, not
    /// slots or a policy): a home restored under a policy that forbids password-only
    /// unlock never has a password slot. The slot is labelled `restored`.
    ///
    /// # Errors
    ///
    /// As [`Keystore::restore`]; [`BackupError::Create`] also when the policy does not
    /// allow the new slot's kind, or the token or TPM failed.
    pub fn restore_with(
        home: &Path,
        opened: OpenedBackup,
        trust: TrustedSigner<'_>,
        new: &NewSlot,
        unlock_policy: Option<UnlockPolicy>,
    ) -> Result<Self, BackupError> {
        opened.check_signer(trust)?;
        let signer = opened.signer_hex();
        let create = |problem: String| CreateError::Io {
            path: home.to_owned(),
            source: io::Error::other(problem),
        };
        if Layout::new(home).keystore().exists() {
            return Err(CreateError::AlreadyExists {
                home: home.to_owned(),
            }
            .into());
        }
        if !new.allowed_by(unlock_policy.as_ref()) {
            return Err(create(format!(
                "the unlock policy asked for allows only {} slots, not a {} slot",
                unlock_policy
                    .as_ref()
                    .map(|p| p.names().join(", "))
                    .unwrap_or_default(),
                new.kind_name()
            ))
            .into());
        }
        let OpenedBackup {
            manifest, content, ..
        } = opened;
        let master = Secret32::random();
        let sealed = slot::seal_new(&master, new).map_err(|e| create(e.to_string()))?;
        let event = AuditEvent::new(AuditOp::Restore).with_detail(format!(
            "{} key version(s) from a bundle made at {} (signed by {}); slot 1, {}{}",
            manifest.key_count,
            Timestamp::from_second(manifest.created)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            signer.as_deref().unwrap_or("nobody (unsigned)"),
            sealed.detail,
            unlock_policy
                .as_ref()
                .map(|p| format!("; unlock: {}", p.names().join(", ")))
                .unwrap_or_default()
        ));
        let mut ring =
            KeyRing::with_first_slot(master, sealed.kind, sealed.data, "restored", now())
                .restored(content.policy, content.entries)
                .map_err(create)?;
        ring.set_unlock_policy(unlock_policy)
            .map_err(|e| create(e.to_string()))?;
        Ok(Self::create_from(home, event, || Ok(ring))?)
    }
}
