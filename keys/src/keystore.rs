//! The keystore on disk: create, open, change (atomically, under the lock, audited).
//!
//! [`Keystore`] is a [`KeyRing`] with its home. Its operations are grouped by what they
//! do, one file each: `open` (create and unlock, the failed-unlock delay), `follow`
//! (the generation counter and reloading other processes' changes), `change` (every
//! change of keys, policy and slots, written atomically under the lock), `audit`
//! (logging and verifying the audit log), `backup` (bundles), `escrow` (split, verify,
//! recover a forgotten password) and `recovery` (the network copy and rebuilding a lost
//! machine), `legacy` (importing old plaintext keys). This file holds the type and the
//! helpers they share; they build on it, it does not use them.

use core::ops::Deref;
use std::io;
use std::path::Path;

use jiff::Timestamp;

use crate::audit::AuditLog;
use crate::error::OpenError;
use crate::format::{FormatError, MAX_KEYSTORE_LEN};
use crate::fsx;
use crate::layout::Layout;
use crate::ring::KeyRing;

mod audit;
mod backup;
mod change;
pub use change::RekeyReport;
mod escrow;
mod follow;
pub(crate) mod legacy;
mod open;
mod recovery;

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
    /// The home's file layout.
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The audit log, sealed with this keystore's key.
    fn audit_log(&self) -> AuditLog {
        AuditLog::keyed(&self.layout, self.ring.master(), self.ring.generation())
    }
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
