//! Every change of keys, policy and slots: applied to a copy of the key ring, sealed,
//! written atomically under the lock and logged; on error nothing changed.

use std::io;

use jiff::Timestamp;

use super::{Keystore, now};
use crate::audit::{AuditEvent, AuditLog, AuditOp};
use crate::error::ChangeError;
use crate::format::{PasswordSlot, RawSlot};
use crate::fsx::{self, WriteError};
use crate::kdf::{KdfLimits, KdfParams};
use crate::lock::{self, Lock};
use crate::model::{
    DueKey, Entry, FILE_AUTHORITY, FILE_ENCRYPTION_HYBRID, FILE_ENCRYPTION_P256, KeyInfo, Purpose,
    RotationPolicy,
};
use crate::password::Password;
use crate::ring::{KeyRing, SlotInfo};
use crate::secret::Secret32;
use crate::slot::{self, Credentials, KeyFile, NewSlot, Rewrap, UnlockPolicy};

/// What a rekey did with the unlock slots.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RekeyReport {
    /// The slots re-wrapped under the new master key (the current one first).
    pub kept: Vec<u32>,
    /// The slots dropped: their passwords no longer open the keystore.
    pub dropped: Vec<SlotInfo>,
    /// Why each dropped slot was dropped (its id, one line), in the header's order.
    pub reasons: Vec<(u32, String)>,
}

impl Keystore {
    /// Applies `apply` to a copy of the key ring, writes it and logs `event`. On any error
    /// the keystore (file and memory) is as before, and a `failed` line is logged.
    pub(crate) fn change<T>(
        &mut self,
        event: AuditEvent,
        apply: impl FnOnce(&mut KeyRing, &mut AuditEvent) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let lock = lock::acquire(&self.layout)?;
        let log = self.audit_log();
        let mut event = event;
        let result = self.change_locked(&lock, &mut event, apply);
        if let Err(e) = &result {
            let _ = log.record(&event.failed(e));
        }
        result
    }

    fn change_locked<T>(
        &mut self,
        _lock: &Lock,
        event: &mut AuditEvent,
        apply: impl FnOnce(&mut KeyRing, &mut AuditEvent) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        self.reload()?;
        let path = self.layout.keystore();
        let io = |source| ChangeError::Io {
            path: path.clone(),
            source,
        };
        let mut draft = self.ring.clone();
        let value = apply(&mut draft, event)?;
        draft.header.generation = draft.header.generation.wrapping_add(1);
        // The line is sealed with the new keystore's key; after a rekey the head still
        // is with the old one.
        let mut log = AuditLog::keyed(&self.layout, draft.master(), draft.generation());
        if !draft.master().same_as(self.ring.master()) {
            log = log.previously(self.ring.master());
        }
        let line = log.prepare(event).map_err(|source| ChangeError::Io {
            path: self.layout.audit_log(),
            source,
        })?;
        draft.body.audit_anchor = Some(line.text.clone());
        let bytes = draft.seal().map_err(|p| io(io::Error::other(p)))?;
        match fsx::write_private_atomic(&path, &self.layout.temp(), &bytes) {
            Ok(()) => {}
            Err(WriteError::BeforeRename(e)) => return Err(io(e)),
            Err(WriteError::AfterRename(source)) => {
                // The new keystore is in place: adopt it, but say it may not be durable.
                self.ring = draft;
                let _ = log.append(&line);
                return Err(ChangeError::Unsynced { path, source });
            }
        }
        self.ring = draft;
        // If this append is lost, opening the keystore re-appends the line.
        let _ = log.append(&line);
        Ok(value)
    }

    /// Makes sure the keystore has a file-authority root: a keystore created before roots
    /// existed gets version 1 now (one write, logged). Returns whether one was added.
    ///
    /// # Errors
    ///
    /// Lock or I/O errors; nothing changed.
    pub fn ensure_file_authority(&mut self) -> Result<bool, ChangeError> {
        self.reload()?;
        if self.ring.has_file_authority() {
            return Ok(false);
        }
        self.change(
            AuditEvent::new(AuditOp::Rotate).with_key(FILE_AUTHORITY, Some(1)),
            |ring, event| {
                if ring.has_file_authority() {
                    return Ok(false);
                }
                ring.add_file_authority(now());
                event.set_detail("created: the keystore had no file-authority root".to_owned());
                Ok(true)
            },
        )
    }

    /// Adds the hybrid file-encryption key (`file-encryption-hybrid` v1) if the keystore
    /// has none (made before hybrid keys existed). Returns whether it was added.
    ///
    /// # Errors
    ///
    /// Lock or I/O errors; nothing changed.
    pub fn ensure_hybrid_file_key(&mut self) -> Result<bool, ChangeError> {
        self.ensure_file_key(Purpose::HybridFileEncryption)
    }

    /// Adds version 1 of the file-encryption key of `purpose` (`file-encryption-hybrid`,
    /// or `file-encryption-p256` for the fips profile) if the keystore has none. Returns
    /// whether it was added; another purpose adds nothing.
    ///
    /// # Errors
    ///
    /// Lock or I/O errors; nothing changed.
    pub fn ensure_file_key(&mut self, purpose: Purpose) -> Result<bool, ChangeError> {
        let name = match purpose {
            Purpose::HybridFileEncryption => FILE_ENCRYPTION_HYBRID,
            Purpose::P256FileEncryption => FILE_ENCRYPTION_P256,
            _ => return Ok(false),
        };
        self.reload()?;
        if self.ring.has_key(name, purpose) {
            return Ok(false);
        }
        self.change(
            AuditEvent::new(AuditOp::Rotate).with_key(name, Some(1)),
            |ring, event| {
                if ring.has_key(name, purpose) {
                    return Ok(false);
                }
                ring.add_key(name, purpose, now());
                event.set_detail(format!(
                    "created: the keystore had no {} file-encryption key",
                    purpose.algorithm()
                ));
                Ok(true)
            },
        )
    }

    /// Rotates `name`: a new active version; the old one becomes deprecated and still
    /// decrypts. Returns the new version.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NoSuchKey`], [`ChangeError::NoActiveVersion`], lock or I/O errors.
    pub fn rotate(&mut self, name: &str) -> Result<KeyInfo, ChangeError> {
        self.change(
            AuditEvent::new(AuditOp::Rotate).with_key(name, None),
            |ring, event| {
                let new = ring.rotate(name, now())?;
                event.set_version(new.version);
                if let Some(old) = new.predecessor {
                    event.set_detail(format!("v{old} -> v{}", new.version));
                }
                Ok(new)
            },
        )
    }

    /// Applies the rotation policy at `now`: returns the active versions that are due and,
    /// if the policy is automatic, rotates them (one write). The node calls this at start
    /// and daily. Nothing is written when nothing is due or rotation is manual.
    ///
    /// # Errors
    ///
    /// Lock or I/O errors; nothing changed.
    pub fn rotate_due(&mut self, now: Timestamp) -> Result<Vec<DueKey>, ChangeError> {
        self.reload()?;
        let due = self.ring.due(now);
        if due.is_empty() || !self.ring.policy().auto() {
            return Ok(due);
        }
        self.change(AuditEvent::new(AuditOp::Rotate), |ring, event| {
            let due = ring.rotate_due(now)?;
            let list: Vec<String> = due
                .iter()
                .map(|d| {
                    format!(
                        "{} v{} -> v{} ({})",
                        d.name,
                        d.version,
                        d.rotated_to.unwrap_or(0),
                        d.reason.as_str()
                    )
                })
                .collect();
            event.set_detail(format!("automatic: {}", list.join(", ")));
            Ok(due)
        })
    }

    /// Marks a version compromised: it never encrypts again and decrypts only on explicit
    /// override. Revoking the active version first rotates to a new one, which is
    /// returned.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NoSuchKey`], [`ChangeError::NoSuchVersion`],
    /// [`ChangeError::AlreadyRevoked`], [`ChangeError::AlreadyDestroyed`],
    /// [`ChangeError::BadReason`], lock or I/O errors.
    pub fn revoke(
        &mut self,
        name: &str,
        version: u32,
        reason: &str,
    ) -> Result<Option<KeyInfo>, ChangeError> {
        self.change(
            AuditEvent::new(AuditOp::Revoke).with_key(name, Some(version)),
            |ring, event| {
                let replacement = ring.revoke(name, version, reason, now())?;
                let mut detail = format!("reason: {}", reason.trim());
                if let Some(new) = &replacement {
                    detail.push_str(&format!("; replaced by v{}", new.version));
                }
                event.set_detail(detail);
                Ok(replacement)
            },
        )
    }

    /// Erases the secret of a version (deprecated or revoked; never the active one).
    /// `still_needed` says whether anything the caller knows of (files whose envelopes
    /// name this key) still needs it; then the call is refused unless `force`.
    ///
    /// # Errors
    ///
    /// [`ChangeError::DestroyActive`], [`ChangeError::StillNeeded`],
    /// [`ChangeError::AlreadyDestroyed`], [`ChangeError::NoSuchKey`],
    /// [`ChangeError::NoSuchVersion`], lock or I/O errors.
    pub fn destroy(
        &mut self,
        name: &str,
        version: u32,
        still_needed: bool,
        force: bool,
    ) -> Result<(), ChangeError> {
        self.change(
            AuditEvent::new(AuditOp::Destroy).with_key(name, Some(version)),
            |ring, event| {
                ring.destroy(name, version, still_needed, force, now())?;
                if force && still_needed {
                    event.set_detail("forced while still needed");
                }
                Ok(())
            },
        )
    }

    /// Sets the rotation policy.
    ///
    /// # Errors
    ///
    /// [`ChangeError::BadPolicy`], lock or I/O errors.
    pub fn set_policy(&mut self, policy: RotationPolicy) -> Result<(), ChangeError> {
        self.change(
            AuditEvent::new(AuditOp::Policy).with_detail(format!(
                "interval {} days, max age {} days, auto {}",
                policy.interval_days(),
                policy.max_age_days(),
                if policy.auto() { "on" } else { "off" }
            )),
            |ring, _| ring.set_policy(policy),
        )
    }

    /// Changes the password of the slot this session unlocked with (the master key and
    /// every key stay as they are). `kdf` sets new Argon2id parameters; `None` keeps the
    /// slot's.
    ///
    /// # Errors
    ///
    /// An empty password, KDF parameters out of bounds, lock or I/O errors.
    pub fn change_password(
        &mut self,
        new: &Password,
        kdf: Option<KdfParams>,
    ) -> Result<(), ChangeError> {
        new.check_new()?;
        let id = self.ring.unlocked_slot();
        let kdf = match kdf {
            Some(kdf) => kdf,
            None => self.slot_kdf(id)?,
        };
        kdf.check(&KdfLimits::DEFAULT)?;
        // The slow part, before taking the lock.
        let slot = PasswordSlot::seal(self.ring.master(), new, kdf)?;
        self.change(
            AuditEvent::new(AuditOp::Passwd).with_detail(format!("slot {id}, {kdf}")),
            |ring, _| ring.replace_unlocked_slot(&slot),
        )
    }

    fn slot_kdf(&self, id: u32) -> Result<KdfParams, ChangeError> {
        self.ring
            .slots()
            .into_iter()
            .find(|s| s.id == id)
            .and_then(|s| match s.kind {
                crate::ring::SlotKind::Password(kdf) => Some(kdf),
                _ => None,
            })
            .ok_or(ChangeError::NoSuchSlot { id })
    }

    /// Adds a password slot that unlocks the same master key; returns its id.
    ///
    /// # Errors
    ///
    /// An empty password, too many slots, a label over 128 bytes, KDF parameters out of
    /// bounds, lock or I/O errors.
    pub fn add_password_slot(
        &mut self,
        password: &Password,
        kdf: KdfParams,
        label: &str,
    ) -> Result<u32, ChangeError> {
        let new = NewSlot::Password {
            password: password.duplicate(),
            kdf,
        };
        self.add_slot(&new, label).map(|(id, _)| id)
    }

    /// Adds a slot whose wrapping key is in hardware: a PKCS#11 token (the key labelled
    /// `key_label` is made in the token if it has none) or the TPM. As
    /// [`Keystore::add_slot`].
    ///
    /// # Errors
    ///
    /// As [`Keystore::add_slot`].
    pub fn add_hardware_slot(
        &mut self,
        new: &NewSlot,
        label: &str,
    ) -> Result<(u32, bool), ChangeError> {
        self.add_slot(new, label)
    }

    /// Adds an unlock slot of any kind (see [`NewSlot`]) that opens the same master key.
    /// Returns its id and, for a slot in a PKCS#11 token, whether the token's key was
    /// made. A PIN is never stored. The slow part (Argon2id, the token, the TPM) happens
    /// before the lock is taken; a new hardware slot is opened once before it is written.
    ///
    /// # Errors
    ///
    /// [`ChangeError::SlotBackend`] (the module, token, PIN or TPM failed; one line),
    /// [`ChangeError::UnlockPolicy`] (the policy does not allow the kind), an empty or
    /// weak password, KDF parameters out of bounds, too many slots, a label over 128
    /// bytes, lock or I/O errors; nothing changed.
    pub fn add_slot(&mut self, new: &NewSlot, label: &str) -> Result<(u32, bool), ChangeError> {
        let event = AuditEvent::new(AuditOp::SlotAdd);
        let sealed = match self
            .check_policy_allows(new)
            .and_then(|()| slot::seal_new(self.ring.master(), new))
        {
            Ok(sealed) => sealed,
            Err(e) => {
                // Refused before the lock: logged here (a change logs its own failure).
                let _ = self.log(&event.failed(&format!("{} slot: {e}", new.kind_name())));
                return Err(e);
            }
        };
        let (kind, made) = (sealed.kind, sealed.key_made);
        let detail = sealed.detail;
        self.change(event.with_detail(detail.clone()), |ring, event| {
            let id = ring.add_slot(kind, sealed.data, label, now())?;
            event.set_detail(format!("slot {id} ({label:?}), {detail}"));
            Ok((id, made))
        })
    }

    /// Refuses, before any slow or hardware work, a new slot of a kind the unlock policy
    /// does not allow.
    pub(super) fn check_policy_allows(&self, new: &NewSlot) -> Result<(), ChangeError> {
        match self.ring.unlock_policy() {
            Some(policy) if !new.allowed_by(Some(policy)) => Err(ChangeError::UnlockPolicy {
                problem: format!(
                    "the unlock policy allows only {} slots; a {} slot would open nothing",
                    policy.names().join(", "),
                    new.kind_name()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Sets the unlock policy (the slot kinds that may unlock), or removes it with `None`.
    /// A keystore with a policy is written as format version 2, which older builds refuse.
    ///
    /// # Errors
    ///
    /// [`ChangeError::UnlockPolicy`] while a slot of a kind the policy does not allow
    /// exists; lock or I/O errors.
    pub fn set_unlock_policy(&mut self, policy: Option<UnlockPolicy>) -> Result<(), ChangeError> {
        let detail = policy.as_ref().map_or_else(
            || "unlock: any slot kind".to_owned(),
            |p| format!("unlock: {}", p.names().join(", ")),
        );
        self.change(
            AuditEvent::new(AuditOp::Policy).with_detail(detail),
            |ring, _| ring.set_unlock_policy(policy),
        )
    }

    /// Adds a slot that needs `password` *and* `key_file` (both mixed into its key).
    ///
    /// # Errors
    ///
    /// As [`Keystore::add_slot`].
    pub fn add_composite_slot(
        &mut self,
        password: &Password,
        key_file: &KeyFile,
        kdf: KdfParams,
        label: &str,
    ) -> Result<u32, ChangeError> {
        let new = NewSlot::PasswordKeyFile {
            password: password.duplicate(),
            key_file: key_file.duplicate(),
            kdf,
        };
        self.add_slot(&new, label).map(|(id, _)| id)
    }

    /// Removes an unlock slot. The last slot and the slot this session unlocked with are
    /// refused.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NoSuchSlot`], [`ChangeError::LastSlot`],
    /// [`ChangeError::CurrentSlot`], lock or I/O errors.
    pub fn remove_slot(&mut self, id: u32) -> Result<(), ChangeError> {
        let what = self
            .ring
            .slots()
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| format!("slot {id} ({}, {:?})", s.kind.name(), s.label))
            .unwrap_or_else(|| format!("slot {id}"));
        self.change(
            AuditEvent::new(AuditOp::SlotRemove).with_detail(what),
            |ring, _| ring.remove_slot(id),
        )
    }

    /// Replaces the master key by a new random one, re-wrapping with `password` the
    /// slots it opens (the one this session unlocked with among them) and with each of
    /// `keep` the others it opens; every other slot is dropped. As
    /// [`Keystore::rekey_with`] with a password only (hardware slots are dropped).
    ///
    /// # Errors
    ///
    /// As [`Keystore::rekey_with`].
    pub fn rekey(
        &mut self,
        password: &Password,
        keep: &[Password],
    ) -> Result<RekeyReport, ChangeError> {
        self.rekey_with(&Credentials::password(password.duplicate()), keep)
    }

    /// Replaces the master key by a new random one: the body is sealed under it and
    /// every slot whose credentials are at hand is re-wrapped to it, keeping its id,
    /// kind, label and parameters: password slots opened by the credentials' password or
    /// one of `keep`, password+keyfile slots by one of them and the key file, PKCS#11 and
    /// TPM slots through their hardware (each opened first), password+hardware slots by
    /// both. Every other slot is dropped, with the reason in the report (a slot wraps the
    /// old master key, which no longer opens anything new). Escrow shares and network
    /// copies made before open only the keystore as it was. Costs one Argon2id
    /// derivation per password slot tried and per slot sealed; the hardware work happens
    /// before the lock is taken.
    ///
    /// # Errors
    ///
    /// [`ChangeError::RekeyPassword`] (the slot this session unlocked with cannot be
    /// re-wrapped with the credentials, or a password to keep opens no slot); KDF, lock or
    /// I/O errors; nothing changed.
    pub fn rekey_with(
        &mut self,
        credentials: &Credentials,
        keep: &[Password],
    ) -> Result<RekeyReport, ChangeError> {
        let current = self.ring.unlocked_slot();
        let master = Secret32::random();
        let mut passwords: Vec<&Password> = credentials.password.iter().collect();
        let first_keep = passwords.len();
        passwords.extend(keep);
        let mut used = vec![false; passwords.len()];
        let mut sealed = Vec::new();
        let mut reasons = Vec::new();
        // The current slot first: if it cannot be re-wrapped, no hardware is touched.
        let mut raws: Vec<RawSlot> = self.ring.raw_slots().to_vec();
        raws.sort_by_key(|raw| raw.id != current);
        for raw in &raws {
            match slot::rewrap(raw, self.ring.master(), &master, credentials, &passwords)? {
                Rewrap::Done { data, password } => {
                    if let Some(i) = password {
                        used[i] = true;
                    }
                    sealed.push(RawSlot {
                        id: raw.id,
                        kind: raw.kind,
                        data,
                    });
                }
                Rewrap::Dropped(why) if raw.id == current => {
                    return Err(ChangeError::RekeyPassword(format!(
                        "slot {current}, the one this session unlocked with, cannot be re-wrapped: {why}; nothing changed"
                    )));
                }
                Rewrap::Dropped(why) => reasons.push((raw.id, why)),
            }
        }
        if let Some(n) = used.iter().skip(first_keep).position(|used| !used) {
            return Err(ChangeError::RekeyPassword(format!(
                "password {} to keep opens no slot; nothing changed",
                n + 1
            )));
        }
        let kept: Vec<u32> = sealed.iter().map(|raw| raw.id).collect();
        // The header keeps its order.
        sealed.sort_by_key(|raw| raws.iter().position(|r| r.id == raw.id));
        let dropped: Vec<SlotInfo> = self
            .ring
            .slots()
            .into_iter()
            .filter(|s| !kept.contains(&s.id))
            .collect();
        let detail = format!(
            "new master key; slot(s) {kept:?} re-wrapped, {} dropped; escrow sets and network copies made before are revoked",
            if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons
                    .iter()
                    .map(|(id, why)| format!("slot {id} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        self.change(
            AuditEvent::new(AuditOp::Rekey).with_detail(detail),
            |ring, _| {
                ring.rekey(master, sealed);
                Ok(())
            },
        )?;
        Ok(RekeyReport {
            kept,
            dropped,
            reasons,
        })
    }

    /// Adds imported entries in one write (used by the legacy import).
    pub(super) fn import_entries(
        &mut self,
        entries: Vec<Entry>,
        detail: String,
    ) -> Result<(), ChangeError> {
        self.change(
            AuditEvent::new(AuditOp::ImportLegacy).with_detail(detail),
            |ring, _| {
                ring.add_entries(entries);
                Ok(())
            },
        )
    }
}
