//! The node's keys come from its keystore ([`datamesh_keys::Keystore`]), re-read when
//! another process (`datamesh keys rotate`, `passwd`, ...) changed it, so key changes
//! take effect without a restart.

use std::sync::Mutex;

use datamesh_keys::{AuditEvent, AuditOp, ChangeError, Keystore};
use datamesh_node::{FileKeys, KeyProvider, KeyProviderError};
use tracing::{info, warn};

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

impl KeystoreKeys {
    /// The active key and the decryption keys, revoked versions included if asked.
    fn keys(&self, allow_revoked: bool) -> Result<FileKeys, KeyProviderError> {
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
        let all = keystore.decryption_keys(allow_revoked);
        if allow_revoked {
            let revoked: Vec<String> = all
                .iter()
                .filter(|(info, _)| info.status == datamesh_keys::KeyStatus::Revoked)
                .map(|(info, _)| format!("{} v{}", info.name, info.version))
                .collect();
            if !revoked.is_empty() {
                // Never silent: the override is written where the keys' history is.
                let detail = format!(
                    "revoked keys released to the node for one operation (explicit override): {}",
                    revoked.join(", ")
                );
                warn!("{detail}");
                if let Err(e) =
                    keystore.log(&AuditEvent::new(AuditOp::Incident).with_detail(detail))
                {
                    return Err(KeyProviderError::new(format!(
                        "revoked keys are released only when the audit log records it, and it cannot be written: {e}"
                    )));
                }
            }
        }
        let decrypt = all.into_iter().map(|(_, key)| key).collect();
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

impl KeyProvider for KeystoreKeys {
    fn file_keys(&self) -> Result<FileKeys, KeyProviderError> {
        self.keys(false)
    }

    fn file_keys_with_revoked(&self) -> Result<FileKeys, KeyProviderError> {
        self.keys(true)
    }
}
