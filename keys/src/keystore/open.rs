//! Creating a keystore and unlocking it with a password; failed unlocks are logged and,
//! after a few in a row, answered ever more slowly.

use std::io;
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::{Keystore, format_error, now, read_keystore};
use crate::audit::head::{self, AuditKey, HeadFile};
use crate::audit::{self, AuditEvent, AuditLog, AuditOp, Outcome};
use crate::error::{CreateError, OpenError};
use crate::fsx::{self, WriteError};
use crate::kdf::{KdfLimits, KdfParams};
use crate::layout::Layout;
use crate::lock;
use crate::password::Password;
use crate::ring::{KeyRing, UnsealError};
use crate::slot::Credentials;

/// Failed unlocks in a row before the answer is delayed and a warning is logged.
const FAILURES_BEFORE_DELAY: u64 = 3;
/// The longest delay after repeated failed unlocks.
const MAX_DELAY: Duration = Duration::from_secs(30);
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
    pub(super) fn create_with(
        home: &Path,
        password: &Password,
        kdf: KdfParams,
        event: AuditEvent,
        make: impl FnOnce(&Password, KdfParams) -> Result<KeyRing, CreateError>,
    ) -> Result<Self, CreateError> {
        password.check_new()?;
        kdf.check(&KdfLimits::DEFAULT)?;
        Self::create_from(home, event, || make(password, kdf))
    }

    /// Creates the keystore of `home` from the key ring `make` builds (its slots
    /// already sealed); `event` is its first audit line.
    pub(super) fn create_from(
        home: &Path,
        event: AuditEvent,
        make: impl FnOnce() -> Result<KeyRing, CreateError>,
    ) -> Result<Self, CreateError> {
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
        let mut ring = make()?;
        // A new keystore starts its own head (a head left by a former keystore is not
        // this one's).
        let log = AuditLog::keyed(&layout, ring.master(), ring.generation()).fresh();
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

    /// Opens and unlocks the keystore of `home` with whatever `credentials` offer: a
    /// password, a key file, a PKCS#11 token, the TPM (see [`Credentials`]); the first
    /// slot that opens wins.
    ///
    /// # Errors
    ///
    /// As [`Keystore::open_with_limits`], and [`OpenError::SlotFailed`] (a hardware
    /// slot failed: the message names the cause), [`OpenError::NothingToTry`].
    pub fn open_with(home: &Path, credentials: &Credentials) -> Result<Self, OpenError> {
        Self::unlock(home, credentials, &KdfLimits::DEFAULT, false)
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
        Self::unlock(
            home,
            &Credentials::password(password.duplicate()),
            limits,
            false,
        )
    }

    /// Opens and unlocks; with `accept_rollback`, an older keystore than the newest the
    /// head records, or a head sealed by another key, is taken as it is.
    pub(super) fn unlock(
        home: &Path,
        credentials: &Credentials,
        limits: &KdfLimits,
        accept_rollback: bool,
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
        let log = AuditLog::new(audit_log);
        match KeyRing::unseal(&bytes, credentials, limits) {
            Ok(ring) => {
                let id = ring.unlocked_slot();
                let kind = ring
                    .slots()
                    .into_iter()
                    .find(|s| s.id == id)
                    .map_or("unknown", |s| s.kind.name());
                let event =
                    AuditEvent::new(AuditOp::Unlock).with_detail(format!("slot {id} ({kind})"));
                Self::adopt(layout, ring, accept_rollback, Some(&event))
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
            Err(UnsealError::Slots(problem)) => {
                failed_unlock(&layout, &log, &problem);
                Err(OpenError::SlotFailed {
                    home: home.to_owned(),
                    problem,
                })
            }
            Err(UnsealError::NothingToTry(needs)) => Err(OpenError::NothingToTry {
                home: home.to_owned(),
                needs,
            }),
            Err(UnsealError::Format(problem)) => {
                failed_unlock(&layout, &log, &problem.describe());
                Err(format_error(&keystore, problem))
            }
        }
    }
}

impl Keystore {
    /// Takes an unlocked key ring into use, under the lock: refuses a keystore older than
    /// the newest the audit head records, or a head sealed with another key (unless
    /// `accept_rollback`); checks the log against the head (tampering found is recorded in
    /// every later head); re-appends the anchor if a crash lost it; logs `event`.
    pub(super) fn adopt(
        layout: Layout,
        ring: KeyRing,
        accept_rollback: bool,
        event: Option<&AuditEvent>,
    ) -> Result<Self, OpenError> {
        let _lock = lock::acquire(&layout)?;
        let log_io = |source| OpenError::Io {
            path: layout.audit_log(),
            source,
        };
        // The file was read before the lock: follow a writer that came in between.
        let mut ring = ring;
        if Self::generation(layout.home())? != ring.generation() {
            let path = layout.keystore();
            ring = ring
                .reload(&read_keystore(&path)?)
                .map_err(|e| format_error(&path, e))?;
        }
        let head = HeadFile::read(&layout.audit_head()).map_err(log_io)?;
        let log = AuditLog::keyed(&layout, ring.master(), ring.generation());
        // Half a line left by a crash during an append is cut first.
        log.drop_torn_tail().map_err(log_io)?;
        let log = if accept_rollback {
            log.fresh()
        } else {
            if ring.generation() < head.generation() {
                return Err(OpenError::RolledBack {
                    path: layout.keystore(),
                    found: ring.generation(),
                    newest: head.generation(),
                });
            }
            let bytes = log.read().map_err(log_io)?;
            // A missing head is a first use only while no line is sealed (an upgrade).
            let foreign = match &head {
                HeadFile::Missing => audit::lines(&bytes).any(head::has_mac),
                _ => !head.authentic(&AuditKey::of(ring.master())),
            };
            if foreign {
                return Err(OpenError::ForeignHead {
                    path: layout.audit_head(),
                });
            }
            let anchor = ring.body.audit_anchor.as_deref();
            if let Some(seq) = log.later_change(&bytes, anchor) {
                return Err(OpenError::Superseded {
                    path: layout.keystore(),
                    seq,
                });
            }
            let broken = log.check_head(&bytes).map_err(log_io)?.err();
            // Re-append the anchor only where a crash can have lost it: after the line
            // the head seals. A log cut back before the head is evidence, not a crash.
            if let (None, Some(anchor)) = (&broken, anchor) {
                let anchor_seq = audit::anchor_seq(Some(anchor));
                let sealed = match &head {
                    HeadFile::Found(found, _) => found.seq,
                    _ => 0,
                };
                if anchor_seq > sealed {
                    log.repair(anchor).map_err(log_io)?;
                }
            }
            log.with_broken(broken)
        };
        if let Some(event) = event {
            log.record(event).map_err(log_io)?;
        }
        Ok(Self { layout, ring })
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
