//! The keystore on disk: create, open, change (atomically, under the lock, audited).

use core::ops::Deref;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::thread;
use std::time::Duration;

use jiff::Timestamp;

use crate::audit::{self, AuditEvent, AuditLog, AuditOp, AuditSummary, Outcome};
use crate::backup::{self, BackupError, BackupKey, BackupSeal, OpenedBackup, SealedWith};
use crate::error::{AuditError, ChangeError, CreateError, EscrowError, OpenError};
use crate::escrow::{self, SetId, Share};
use crate::format::{self, FIXED_HEADER_LEN, FormatError, MAX_KEYSTORE_LEN, PasswordSlot};
use crate::fsx::{self, WriteError};
use crate::kdf::{KdfLimits, KdfParams};
use crate::layout::Layout;
use crate::lock::{self, Lock};
use crate::model::{DueKey, Entry, KeyInfo, RotationPolicy};
use crate::password::Password;
use crate::recovery;
use crate::ring::{KeyRing, UnsealError};

/// Failed unlocks in a row before the answer is delayed and a warning is logged.
const FAILURES_BEFORE_DELAY: u64 = 3;
/// The longest delay after repeated failed unlocks.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// An unlocked keystore in a DataMesh home.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use datamesh_keys::{KdfParams, Keystore, Password};
/// let home = std::path::Path::new("/tmp/datamesh-home");
/// let password = Password::new("correct horse battery staple")?;
/// let mut keystore = Keystore::create(home, &password, KdfParams::default())?;
/// let (version, secret) = keystore.active_file_key()?;
/// keystore.rotate("file-encryption")?; // v2 is active, v1 still decrypts
/// assert_eq!(keystore.decryption_keys(false).len(), 2);
/// # let _ = (version, secret); Ok(()) }
/// ```
///
/// Reading methods come from [`KeyRing`] (through `Deref`). Every change takes the
/// keystore lock, first follows any change another process made, writes a new sealed
/// file atomically and appends one audit line; on error nothing changed, on disk or in
/// memory. A long-running process notices changes made by others cheaply with
/// [`Keystore::generation`] and follows them with [`Keystore::reload`] (no password).
pub struct Keystore {
    layout: Layout,
    ring: KeyRing,
}

impl core::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keystore")
            .field("home", &self.layout.home())
            .field("ring", &self.ring)
            .finish()
    }
}

impl Deref for Keystore {
    type Target = KeyRing;

    fn deref(&self) -> &KeyRing {
        &self.ring
    }
}

fn now() -> i64 {
    Timestamp::now().as_second()
}

impl Keystore {
    /// Creates the keystore of `home` (making `home` and `home/keys` as needed, 0700)
    /// with one password slot and two keys: `node-identity` (ed25519) and
    /// `file-encryption` (secp256k1), both version 1.
    ///
    /// # Errors
    ///
    /// [`CreateError::AlreadyExists`] if there is a keystore; an empty password; KDF
    /// parameters out of bounds; I/O.
    pub fn create(home: &Path, password: &Password, kdf: KdfParams) -> Result<Self, CreateError> {
        Self::create_with(
            home,
            password,
            kdf,
            AuditEvent::new(AuditOp::Init).with_detail(format!("slot 1, {kdf}")),
            |password, kdf| Ok(KeyRing::new(password, kdf, now())?),
        )
    }

    /// Creates the keystore of `home` from the key ring `make` builds (a new one, or one
    /// restored from a backup); `event` is its first audit line.
    fn create_with(
        home: &Path,
        password: &Password,
        kdf: KdfParams,
        event: AuditEvent,
        make: impl FnOnce(&Password, KdfParams) -> Result<KeyRing, CreateError>,
    ) -> Result<Self, CreateError> {
        password.check_new()?;
        kdf.check(&KdfLimits::DEFAULT)?;
        let layout = Layout::new(home);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CreateError::Io { path, source }
        };
        fsx::ensure_dir(home).map_err(io(home))?;
        let keys_dir = layout.keys_dir();
        fsx::create_private_dir(&keys_dir).map_err(io(&keys_dir))?;
        let _lock = lock::acquire(&layout)?;
        let keystore = layout.keystore();
        if keystore.exists() {
            return Err(CreateError::AlreadyExists {
                home: home.to_owned(),
            });
        }
        let mut ring = make(password, kdf)?;
        let log = AuditLog::new(layout.audit_log());
        let line = log.prepare(&event).map_err(io(&layout.audit_log()))?;
        ring.body.audit_anchor = Some(line.text.clone());
        let bytes = ring
            .seal()
            .map_err(|problem| io(&keystore)(io::Error::other(problem)))?;
        fsx::write_private_atomic(&keystore, &layout.temp(), &bytes).map_err(|e| match e {
            WriteError::BeforeRename(e) | WriteError::AfterRename(e) => io(&keystore)(e),
        })?;
        // If this append is lost, opening the keystore re-appends the line.
        let _ = log.append(&line);
        Ok(Self { layout, ring })
    }

    /// Opens and unlocks the keystore of `home` with the default [`KdfLimits`].
    ///
    /// # Errors
    ///
    /// See [`Keystore::open_with_limits`].
    pub fn open(home: &Path, password: &Password) -> Result<Self, OpenError> {
        Self::open_with_limits(home, password, &KdfLimits::DEFAULT)
    }

    /// Opens and unlocks the keystore of `home`. Refuses files and folders that group or
    /// others can access; logs the attempt; after three failed attempts in a row, logs a
    /// warning and answers ever more slowly (1 s, 2 s, 4 s, ... up to 30 s).
    ///
    /// # Errors
    ///
    /// [`OpenError::NotInitialised`], [`OpenError::WrongPassword`],
    /// [`OpenError::Permission`], [`OpenError::Corrupt`] (damaged or tampered),
    /// [`OpenError::UnsupportedVersion`], [`OpenError::Kdf`] (parameters above
    /// `limits`), [`OpenError::Locked`], [`OpenError::Io`].
    pub fn open_with_limits(
        home: &Path,
        password: &Password,
        limits: &KdfLimits,
    ) -> Result<Self, OpenError> {
        let layout = Layout::new(home);
        let (keys_dir, keystore, audit_log) =
            (layout.keys_dir(), layout.keystore(), layout.audit_log());
        if !keystore.exists() {
            return Err(OpenError::NotInitialised {
                home: home.to_owned(),
            });
        }
        fsx::check_private(&keys_dir, true)?;
        fsx::check_private(&keystore, false)?;
        if audit_log.exists() {
            fsx::check_private(&audit_log, false)?;
        }
        let bytes = read_keystore(&keystore)?;
        let log = AuditLog::new(audit_log.clone());
        let log_io = |source| OpenError::Io {
            path: audit_log.clone(),
            source,
        };
        match KeyRing::unseal(&bytes, password, limits) {
            Ok(ring) => {
                let _lock = lock::acquire(&layout)?;
                if let Some(anchor) = &ring.body.audit_anchor {
                    log.repair(anchor).map_err(log_io)?;
                }
                log.record(
                    &AuditEvent::new(AuditOp::Unlock)
                        .with_detail(format!("slot {}", ring.unlocked_slot())),
                )
                .map_err(log_io)?;
                Ok(Self { layout, ring })
            }
            Err(UnsealError::WrongPassword) => {
                failed_unlock(&layout, &log, "wrong password");
                Err(OpenError::WrongPassword {
                    home: home.to_owned(),
                })
            }
            Err(UnsealError::Kdf(source)) => Err(OpenError::Kdf {
                path: keystore,
                source,
            }),
            Err(UnsealError::Format(problem)) => {
                failed_unlock(&layout, &log, &problem.describe());
                Err(format_error(&keystore, problem))
            }
        }
    }

    /// The generation counter of the keystore of `home`, read from the first 17 bytes of
    /// the file without a password: it grows by one at every change. A running node
    /// compares it with [`KeyRing::generation`] of its open keystore (say once a minute)
    /// and calls [`Keystore::reload`] when they differ.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotInitialised`], [`OpenError::Corrupt`] or
    /// [`OpenError::UnsupportedVersion`], [`OpenError::Io`].
    pub fn generation(home: &Path) -> Result<u64, OpenError> {
        let layout = Layout::new(home);
        let path = layout.keystore();
        let mut prefix = [0u8; FIXED_HEADER_LEN];
        let read = File::open(&path).and_then(|mut f| f.read_exact(&mut prefix));
        match read {
            Ok(()) => format::read_generation(&prefix).map_err(|e| format_error(&path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OpenError::NotInitialised {
                home: home.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(format_error(
                &path,
                FormatError::Malformed("truncated header".into()),
            )),
            Err(source) => Err(OpenError::Io { path, source }),
        }
    }

    /// Follows changes another process made (rotation, policy, slots): re-reads the file
    /// with the master key held in memory. Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`OpenError::Corrupt`] if the file no longer opens with this master key, or I/O.
    pub fn reload(&mut self) -> Result<bool, OpenError> {
        let path = self.layout.keystore();
        if Self::generation(self.layout.home())? == self.ring.generation() {
            return Ok(false);
        }
        let bytes = read_keystore(&path)?;
        self.ring = self
            .ring
            .reload(&bytes)
            .map_err(|e| format_error(&path, e))?;
        Ok(true)
    }

    /// The home's file layout.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Applies `apply` to a copy of the key ring, writes it and logs `event`. On any error
    /// the keystore (file and memory) is as before, and a `failed` line is logged.
    fn change<T>(
        &mut self,
        event: AuditEvent,
        apply: impl FnOnce(&mut KeyRing, &mut AuditEvent) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let lock = lock::acquire(&self.layout)?;
        let log = AuditLog::new(self.layout.audit_log());
        let mut event = event;
        let result = self.change_locked(&lock, &log, &mut event, apply);
        if let Err(e) = &result {
            let _ = log.record(&event.failed(e));
        }
        result
    }

    fn change_locked<T>(
        &mut self,
        _lock: &Lock,
        log: &AuditLog,
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
                crate::ring::SlotKind::Unknown(_) => None,
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
        password.check_new()?;
        kdf.check(&KdfLimits::DEFAULT)?;
        let slot = PasswordSlot::seal(self.ring.master(), password, kdf)?;
        self.change(
            AuditEvent::new(AuditOp::SlotAdd).with_detail(kdf.to_string()),
            |ring, event| {
                let id = ring.add_slot(&slot, label, now())?;
                event.set_detail(format!("slot {id}, {kdf}"));
                Ok(id)
            },
        )
    }

    /// Removes an unlock slot. The last slot and the slot this session unlocked with are
    /// refused.
    ///
    /// # Errors
    ///
    /// [`ChangeError::NoSuchSlot`], [`ChangeError::LastSlot`],
    /// [`ChangeError::CurrentSlot`], lock or I/O errors.
    pub fn remove_slot(&mut self, id: u32) -> Result<(), ChangeError> {
        self.change(
            AuditEvent::new(AuditOp::SlotRemove).with_detail(format!("slot {id}")),
            |ring, _| ring.remove_slot(id),
        )
    }

    /// Adds imported entries in one write (used by the legacy import).
    pub(crate) fn import_entries(
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

    /// Appends an event to the audit log (for operations that change no key, such as
    /// `export-public`, or that other modules perform, such as backups).
    ///
    /// # Errors
    ///
    /// Lock or I/O errors.
    pub fn log(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let _lock = lock::acquire(&self.layout)?;
        let path = self.layout.audit_log();
        AuditLog::new(path.clone())
            .record(event)
            .map_err(|source| AuditError::Io { path, source })
    }

    /// Verifies the audit log: its chain, and that the line of the keystore's last change
    /// (sealed in the keystore as its anchor) is in it unchanged. Logs the verification.
    ///
    /// # Errors
    ///
    /// [`AuditError::Broken`] or [`AuditError::AnchorMissing`]; I/O.
    pub fn verify_audit(&mut self) -> Result<AuditSummary, AuditError> {
        let path = self.layout.audit_log();
        if let Err(e) = self.reload() {
            return Err(AuditError::Io {
                path: self.layout.keystore(),
                source: io::Error::other(e.to_string()),
            });
        }
        let result = audit::verify_with_anchor(&path, self.ring.body.audit_anchor.as_deref());
        let event = match &result {
            Ok(summary) => AuditEvent::new(AuditOp::AuditVerify)
                .with_detail(format!("{} lines intact", summary.lines)),
            Err(e) => AuditEvent::new(AuditOp::AuditVerify)
                .with_outcome(Outcome::Failed)
                .with_detail(e.to_string()),
        };
        self.log(&event)?;
        result
    }
}

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
        let bytes = backup::seal(
            &self.ring.body.entries,
            self.ring.policy(),
            catalog,
            seal,
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
    /// ([`Keystore::verify_backup`]): the bundle's keys and policy under a new master
    /// key and one password slot for `new_password`.
    ///
    /// # Errors
    ///
    /// [`BackupError::Create`] (a keystore exists, a weak password, I/O).
    pub fn restore(
        home: &Path,
        opened: OpenedBackup,
        new_password: &Password,
        kdf: KdfParams,
    ) -> Result<Self, BackupError> {
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
            "{} key version(s) from a bundle made at {} ({}); slot 1, {kdf}",
            manifest.key_count,
            Timestamp::from_second(manifest.created)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            match sealed_with {
                SealedWith::Password => "backup password".to_owned(),
                SealedWith::Recipient(id) =>
                    format!("sealed to key id {}", &id[..16.min(id.len())]),
            }
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
}

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
    /// `recovered`) for `new_password`, in one logged write. The returned keystore counts
    /// as unlocked with the new slot.
    ///
    /// # Errors
    ///
    /// [`EscrowError::Share`], [`EscrowError::WrongKeystore`], [`EscrowError::Open`]
    /// (no keystore, permissions, damaged file), [`EscrowError::Change`] (a weak or
    /// empty password, KDF parameters, too many slots, I/O); nothing changed.
    pub fn recover(
        home: &Path,
        shares: &[Share],
        new_password: &Password,
        kdf: KdfParams,
    ) -> Result<Self, EscrowError> {
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
        new_password.check_new().map_err(ChangeError::from)?;
        kdf.check(&KdfLimits::DEFAULT).map_err(ChangeError::from)?;
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
        if let Some(anchor) = &ring.body.audit_anchor {
            let _lock = lock::acquire(&layout).map_err(OpenError::from)?;
            log.repair(anchor).map_err(|source| OpenError::Io {
                path: layout.audit_log(),
                source,
            })?;
        }
        // The slow part, before taking the lock.
        let slot =
            PasswordSlot::seal(ring.master(), new_password, kdf).map_err(ChangeError::from)?;
        let mut recovered = Self { layout, ring };
        let k = shares.first().map_or(0, Share::threshold);
        recovered.change(AuditEvent::new(AuditOp::Recover), |ring, event| {
            let id = ring.add_slot(&slot, "recovered", now())?;
            ring.set_unlocked_slot(id);
            event.set_detail(format!(
                "escrow set {set}, {} share(s) of a {k}-of-n set; new password slot {id}, {kdf}",
                shares.len()
            ));
            Ok(())
        })?;
        Ok(recovered)
    }
}

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
            .add_slot(&slot, "recovered", now())
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

/// Logs a failed unlock; after repeated failures, a warning and a growing delay.
fn failed_unlock(layout: &Layout, log: &AuditLog, why: &str) {
    let failures = match lock::acquire(layout) {
        Ok(_lock) => {
            let failures = log.consecutive_failed_unlocks().unwrap_or(0) + 1;
            let failed = AuditEvent::new(AuditOp::Unlock)
                .with_outcome(Outcome::Failed)
                .with_detail(why);
            let _ = log.record(&failed);
            if failures >= FAILURES_BEFORE_DELAY {
                let warning = AuditEvent::new(AuditOp::Unlock)
                    .with_outcome(Outcome::Warning)
                    .with_detail(format!(
                        "{failures} failed unlocks in a row; answering after {} s",
                        delay(failures).as_secs()
                    ));
                let _ = log.record(&warning);
            }
            failures
        }
        Err(_) => 1,
    };
    thread::sleep(delay(failures));
}

/// 0 for the first two failures in a row, then 1 s, 2 s, 4 s, ... up to 30 s.
fn delay(failures: u64) -> Duration {
    if failures < FAILURES_BEFORE_DELAY {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(failures - FAILURES_BEFORE_DELAY)
        .unwrap_or(u32::MAX)
        .min(5);
    Duration::from_secs(1u64 << exponent).min(MAX_DELAY)
}

fn read_keystore(path: &Path) -> Result<Vec<u8>, OpenError> {
    fsx::read_bounded(path, MAX_KEYSTORE_LEN).map_err(|source| {
        if source.kind() == io::ErrorKind::InvalidData {
            OpenError::Corrupt {
                path: path.to_owned(),
                problem: source.to_string(),
            }
        } else {
            OpenError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn format_error(path: &Path, problem: FormatError) -> OpenError {
    match problem {
        FormatError::Version(version) => OpenError::UnsupportedVersion {
            path: path.to_owned(),
            version,
        },
        other => OpenError::Corrupt {
            path: path.to_owned(),
            problem: other.describe(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(delay(1), Duration::ZERO);
        assert_eq!(delay(2), Duration::ZERO);
        assert_eq!(delay(3), Duration::from_secs(1));
        assert_eq!(delay(4), Duration::from_secs(2));
        assert_eq!(delay(7), Duration::from_secs(16));
        assert_eq!(delay(8), Duration::from_secs(30));
        assert_eq!(delay(u64::MAX), Duration::from_secs(30));
    }
}
