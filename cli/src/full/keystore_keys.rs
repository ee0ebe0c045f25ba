//! The node's keys come from its keystore ([`datamesh_keys::Keystore`]), re-read when
//! another process (`datamesh keys rotate`, `passwd`, ...) changed it, so key changes
//! take effect without a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use datamesh_keys::{AuditEvent, AuditOp, ChangeError, KeyRing, Keystore, OpenError};
use datamesh_node::{FileKeys, KeyProvider, KeyProviderError, Unlocked};
use tracing::{info, warn};

/// A [`KeyProvider`] over an unlocked keystore.
#[derive(Debug)]
pub(crate) struct KeystoreKeys {
    keystore: Mutex<Keystore>,
    /// Whether the rekey warning was logged (once).
    rekeyed: AtomicBool,
    /// The live keys built for a keystore generation: handed out again while the
    /// keystore (re-read first at every call) is still at that generation. Building them
    /// expands every hybrid key's ML-KEM half from its seed, about a tenth of the node's
    /// CPU for a small put or get. Any write (a rotation, a revocation, here or by
    /// another process) raises the generation, so a change is never missed. The keys
    /// with revoked versions (an explicit override, logged each time) are never kept.
    live: Mutex<Option<(BuiltFor, Arc<FileKeys>)>>,
}

/// What a set of live keys was built for: the keystore's generation, and whether the
/// recipient policy asks for a P-256 key (`p256-only`).
type BuiltFor = (u64, bool);

impl KeystoreKeys {
    /// Wraps an unlocked keystore.
    pub(crate) fn new(keystore: Keystore) -> Self {
        Self {
            keystore: Mutex::new(keystore),
            rekeyed: AtomicBool::new(false),
            live: Mutex::new(None),
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
    fn keys(&self, allow_revoked: bool) -> Result<Arc<FileKeys>, KeyProviderError> {
        let mut keystore = self.keystore.lock().unwrap_or_else(|p| p.into_inner());
        match keystore.reload() {
            Ok(true) => info!("keystore changed on disk; reloaded"),
            Ok(false) => {}
            // Rekeyed by `datamesh keys rekey`: the keys held are still this home's (a
            // rekey changes no key), but later changes cannot be followed until a
            // restart unlocks the new master key.
            Err(OpenError::Rekeyed { .. }) => {
                if !self.rekeyed.swap(true, Ordering::Relaxed) {
                    warn!("the keystore was rekeyed; restart the node to follow later key changes");
                }
            }
            // An older keystore put back (RolledBack) or a damaged one: refused, never
            // adopted, so a revoked key cannot come back.
            Err(e) => return Err(KeyProviderError::new(e)),
        }
        let p256_only =
            crate::security::current().recipients == datamesh_core::RecipientPolicy::P256Only;
        // The keys built for this generation of the keystore (under this policy) hold every
        // key the checks below would add: nothing is derived again. Deriving the active
        // hybrid key only to see that there is one (its ML-KEM expansion and its EC public
        // key) cost about 3% of the gateway's CPU per get (benches/PROFILE.md).
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if !allow_revoked
            && let Some((built, keys)) = live.as_ref()
            && *built == (KeyRing::generation(&keystore), p256_only)
        {
            return Ok(Arc::clone(keys));
        }
        if keystore.authority_roots(false).is_empty()
            && keystore
                .ensure_file_authority()
                .map_err(KeyProviderError::new)?
        {
            info!("keystore had no file-authority root; created one");
        }
        if keystore.active_hybrid_key().is_none()
            && keystore
                .ensure_hybrid_file_key()
                .map_err(KeyProviderError::new)?
        {
            info!("keystore had no hybrid file-encryption key; created one");
        }
        if p256_only
            && keystore
                .ensure_file_key(datamesh_keys::Purpose::P256FileEncryption)
                .map_err(KeyProviderError::new)?
        {
            info!("keystore had no P-256 file-encryption key (fips profile); created one");
        }
        // +1 at every write of the keystore, here or by another process.
        // The generation after the checks (one that added a key wrote a new one).
        let generation = (KeyRing::generation(&keystore), p256_only);
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
        // Per kind, the active key first (new files are wrapped to it), then the others.
        let mut secrets = keystore.file_secrets(allow_revoked);
        secrets.sort_by_key(|(info, _)| info.status != datamesh_keys::KeyStatus::Active);
        let (mut hybrid, mut p256) = (Vec::new(), Vec::new());
        for (_, key) in secrets {
            match key {
                datamesh_core::FileSecret::Hybrid(key) => hybrid.push(key),
                datamesh_core::FileSecret::P256(key) => p256.push(key),
                datamesh_core::FileSecret::Classical(_) => {}
            }
        }
        let authority = keystore
            .authority_roots(false)
            .into_iter()
            .map(|(_, root)| root)
            .collect();
        let keys = Arc::new(FileKeys {
            active,
            decrypt,
            hybrid,
            p256,
            authority,
            unlocked: Unlocked::default(),
        });
        if !allow_revoked {
            *live = Some((generation, Arc::clone(&keys)));
        }
        Ok(keys)
    }
}

impl KeyProvider for KeystoreKeys {
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        self.keys(false)
    }

    fn file_keys_with_revoked(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        self.keys(true)
    }
}

#[cfg(test)]
mod tests {
    use datamesh_keys::{FILE_ENCRYPTION, KdfParams, Layout, Password};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn home() -> Result<(tempfile::TempDir, Password, Keystore), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let password = Password::new("the node's passphrase 41")?;
        let keystore = Keystore::create(dir.path(), &password, KdfParams::new(8, 1, 1)?)?;
        Ok((dir, password, keystore))
    }

    #[test]
    fn the_node_refuses_an_old_keystore_put_back_under_it() -> TestResult {
        let (dir, password, keystore) = home()?;
        let path = Layout::new(dir.path()).keystore();
        let before_revoke = std::fs::read(&path)?;
        let node = KeystoreKeys::new(keystore);
        let mut cli = Keystore::open(dir.path(), &password)?;
        let (v1, _) = cli.active_file_key()?;
        cli.revoke(FILE_ENCRYPTION, v1, "laptop stolen")?;
        // The node follows the revocation: v1 no longer decrypts.
        assert_eq!(node.file_keys()?.decrypt.len(), 1);
        std::fs::write(&path, &before_revoke)?;
        let refused = node
            .file_keys()
            .err()
            .ok_or("the old keystore was adopted")?;
        assert!(refused.to_string().contains("older"), "{refused}");
        Ok(())
    }

    #[test]
    fn the_keys_are_built_once_per_keystore_generation_and_follow_every_change() -> TestResult {
        let (dir, password, keystore) = home()?;
        let node = KeystoreKeys::new(keystore);
        let first = node.file_keys()?;
        assert!(
            Arc::ptr_eq(&first, &node.file_keys()?),
            "rebuilt unchanged keys"
        );
        // The keys with revoked versions are built anew at every call, never kept.
        let revoked = node.file_keys_with_revoked()?;
        assert!(!Arc::ptr_eq(&first, &revoked));
        assert!(!Arc::ptr_eq(&revoked, &node.file_keys_with_revoked()?));
        assert!(Arc::ptr_eq(&first, &node.file_keys()?));
        // Another process rotates, then revokes: each change is followed at once.
        let mut cli = Keystore::open(dir.path(), &password)?;
        let (v1, _) = cli.active_file_key()?;
        cli.rotate(FILE_ENCRYPTION)?;
        let rotated = node.file_keys()?;
        assert!(!Arc::ptr_eq(&first, &rotated));
        assert_ne!(rotated.active.public_key(), first.active.public_key());
        assert_eq!(rotated.decrypt.len(), 2);
        cli.revoke(FILE_ENCRYPTION, v1, "laptop stolen")?;
        let after = node.file_keys()?;
        assert_eq!(after.decrypt.len(), 1, "a revoked key still decrypts");
        assert!(Arc::ptr_eq(&after, &node.file_keys()?));
        Ok(())
    }

    #[test]
    fn the_node_keeps_its_keys_after_a_rekey_by_the_cli() -> TestResult {
        let (dir, password, keystore) = home()?;
        let node = KeystoreKeys::new(keystore);
        let before = node.file_keys()?.active.public_key();
        let mut cli = Keystore::open(dir.path(), &password)?;
        cli.rekey(&password, &[])?;
        assert_eq!(node.file_keys()?.active.public_key(), before);
        Ok(())
    }
}
