//! Following other processes: the generation counter, read without a password, and
//! reloading the file with the master key held in memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{Keystore, format_error, read_keystore};
use crate::audit::head::HeadFile;
use crate::audit::{AuditEvent, AuditOp};
use crate::error::{ChangeError, OpenError};
use crate::format::{self, FIXED_HEADER_LEN, FormatError};
use crate::kdf::KdfLimits;
use crate::layout::Layout;
use crate::password::Password;

impl Keystore {
    /// The generation counter of the keystore of `home`, read from the fixed header (the
    /// first 18 bytes) without a password: it grows by one at every change. A running node
    /// compares it with [`KeyRing::generation`](crate::KeyRing::generation) of its open keystore (say once a minute)
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
    /// A keystore older than the one this process holds, or than the newest the audit
    /// head records, is refused: an old copy put back (say, from before a `revoke`) is
    /// never adopted. The way out for a deliberate restore is
    /// [`Keystore::open_accepting_rollback`].
    ///
    /// # Errors
    ///
    /// [`OpenError::RolledBack`]; [`OpenError::Rekeyed`] if the file is newer but no
    /// longer opens with this master key (unlock it again with the password);
    /// [`OpenError::Corrupt`] if it no longer opens otherwise; I/O.
    pub fn reload(&mut self) -> Result<bool, OpenError> {
        let path = self.layout.keystore();
        let found = Self::generation(self.layout.home())?;
        let ours = self.ring.generation();
        if found == ours {
            return Ok(false);
        }
        let head = HeadFile::read(&self.layout.audit_head()).map_err(|source| OpenError::Io {
            path: self.layout.audit_head(),
            source,
        })?;
        let newest = ours.max(head.generation());
        if found < newest {
            return Err(OpenError::RolledBack {
                path,
                found,
                newest,
            });
        }
        let bytes = read_keystore(&path)?;
        self.ring = self.ring.reload(&bytes).map_err(|e| match e {
            FormatError::Authentication => OpenError::Rekeyed { path: path.clone() },
            other => format_error(&path, other),
        })?;
        Ok(true)
    }

    /// The way out for a deliberate restore of an older keystore file: unlocks it even
    /// though the audit head records a newer generation (or is sealed with another key,
    /// as after a rekey), then writes it back with a generation above every one seen and
    /// a new head, logged as `accept-rollback`. A running node that holds the newer
    /// keystore follows it (the generation moved forward) if the master key is the same,
    /// and asks for a restart otherwise.
    ///
    /// # Errors
    ///
    /// As [`Keystore::open`] (wrong password, damaged file, ...), lock or I/O errors.
    pub fn open_accepting_rollback(home: &Path, password: &Password) -> Result<Self, ChangeError> {
        let layout = Layout::new(home);
        let head = HeadFile::read(&layout.audit_head()).map_err(|source| OpenError::Io {
            path: layout.audit_head(),
            source,
        })?;
        let newest = head.generation();
        let mut keystore = Self::unlock(
            home,
            &crate::slot::Credentials::password(password.duplicate()),
            &KdfLimits::DEFAULT,
            true,
        )?;
        let found = keystore.ring.generation();
        keystore.change(
            AuditEvent::new(AuditOp::AcceptRollback).with_detail(format!(
                "keystore generation {found} accepted; the newest seen was {newest}"
            )),
            |ring, _| {
                ring.header.generation = ring.header.generation.max(newest);
                Ok(())
            },
        )?;
        Ok(keystore)
    }
}
