//! Where the keystore's files live in a DataMesh home.

use std::path::{Path, PathBuf};

/// The keystore's folder inside the home (mode 0700).
pub const KEYS_DIR: &str = "keys";
/// The sealed keystore inside [`KEYS_DIR`] (mode 0600).
pub const KEYSTORE_FILE: &str = "keystore";
/// The audit log inside [`KEYS_DIR`] (mode 0600).
pub const AUDIT_FILE: &str = "audit.log";
/// The advisory lock file inside [`KEYS_DIR`] (mode 0600).
pub const LOCK_FILE: &str = "lock";
const TEMP_FILE: &str = "keystore.tmp";
/// The audit head: the last sealed audit line and the newest generation seen.
pub const AUDIT_HEAD_FILE: &str = "audit.head";
const HEAD_TEMP_FILE: &str = "audit.head.tmp";
const AUDIT_TEMP_FILE: &str = "audit.log.tmp";

/// The paths of a home's keystore files.
///
/// ```
/// use datamesh_keys::Layout;
/// let layout = Layout::new("/home/me/.local/share/datamesh");
/// assert!(layout.keystore().ends_with("keys/keystore"));
/// assert!(layout.audit_log().ends_with("keys/audit.log"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    home: PathBuf,
}

impl Layout {
    /// The layout of the home folder `home`.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    /// The home folder.
    #[must_use]
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// `<home>/keys`.
    #[must_use]
    pub fn keys_dir(&self) -> PathBuf {
        self.home.join(KEYS_DIR)
    }

    /// `<home>/keys/keystore`.
    #[must_use]
    pub fn keystore(&self) -> PathBuf {
        self.keys_dir().join(KEYSTORE_FILE)
    }

    /// `<home>/keys/audit.log`.
    #[must_use]
    pub fn audit_log(&self) -> PathBuf {
        self.keys_dir().join(AUDIT_FILE)
    }

    /// `<home>/keys/lock`.
    #[must_use]
    pub fn lock_file(&self) -> PathBuf {
        self.keys_dir().join(LOCK_FILE)
    }

    /// `<home>/keys/keystore.tmp`, the next keystore while it is being written.
    pub(crate) fn temp(&self) -> PathBuf {
        self.keys_dir().join(TEMP_FILE)
    }

    /// `<home>/keys/audit.head`: the audit log's sealed head (see `docs/keystore.md`).
    #[must_use]
    pub fn audit_head(&self) -> PathBuf {
        self.keys_dir().join(AUDIT_HEAD_FILE)
    }

    /// `<home>/keys/audit.head.tmp`, while the head is replaced.
    pub(crate) fn head_temp(&self) -> PathBuf {
        self.keys_dir().join(HEAD_TEMP_FILE)
    }

    /// `<home>/keys/audit.log.tmp`, while a lost anchor is put back in front of the
    /// failed unlocks logged after it was lost.
    pub(crate) fn audit_temp(&self) -> PathBuf {
        self.keys_dir().join(AUDIT_TEMP_FILE)
    }
}
