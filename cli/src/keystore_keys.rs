//! The node's keys come from its keystore ([`datamesh_keys::Keystore`]), re-read when
//! another process (`datamesh keys rotate`, `passwd`, ...) changed it, so key changes
//! take effect without a restart.

use std::sync::Mutex;

use datamesh_keys::{ChangeError, Keystore};
use datamesh_node::{FileKeys, KeyProvider, KeyProviderError};
use tracing::info;

/// A [`KeyProvider`] over an unlocked keystore.
#[derive(Debug)]
pub(crate) struct KeystoreKeys {
    keystore: Mutex<Keystore>,
}

impl KeystoreKeys {
    /// Wraps an unlocked keystore.
    pub(crate) fn new(keystore: Keystore) -> Self {
        Self {
            keystore: Mutex::new(keystore),
        }
    }

    /// Rotates the keys the policy marks due. Returns what was rotated, for the log.
    ///
    /// # Errors
    /// [`ChangeError`] if the keystore cannot be changed.
    pub(crate) fn rotate_due(&self) -> Result<Vec<String>, ChangeError> {
        let mut keystore = self.keystore.lock().unwrap_or_else(|p| p.into_inner());
        let due = keystore.rotate_due(datamesh_keys::Timestamp::now())?;
        Ok(due
            .iter()
            .filter_map(|d| {
                d.rotated_to
                    .map(|to| format!("{} v{} -> v{to} ({:?})", d.name, d.version, d.reason))
            })
            .collect())
    }
}

impl KeyProvider for KeystoreKeys {
    fn file_keys(&self) -> Result<FileKeys, KeyProviderError> {
        let mut keystore = self.keystore.lock().unwrap_or_else(|p| p.into_inner());
        if keystore.reload().map_err(KeyProviderError::new)? {
            info!("keystore changed on disk; reloaded");
        }
        if keystore.authority_roots(false).is_empty()
            && keystore
                .ensure_file_authority()
                .map_err(KeyProviderError::new)?
        {
            info!("keystore had no file-authority root; created one");
        }
        let (_, active) = keystore.active_file_key().map_err(KeyProviderError::new)?;
        let decrypt = keystore
            .decryption_keys(false)
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        let authority = keystore
            .authority_roots(false)
            .into_iter()
            .map(|(_, root)| root)
            .collect();
        Ok(FileKeys {
            active,
            decrypt,
            authority,
        })
    }
}
