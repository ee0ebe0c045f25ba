//! `keys import-legacy DIR`: the old DataMesh layout kept each secp256k1 secret key in
//! plaintext as `NAME.key` (32 bytes), with optional `NAME.info` JSON (public key,
//! timestamps). Import seals them as `legacy-NAME` (purpose file-encryption, version 1,
//! status deprecated: they decrypt old files and never encrypt new ones), and only once
//! the new keystore is durable overwrites and removes the plaintext originals.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use datamesh_core::ecies::PublicKey;
use jiff::Timestamp;

use super::Keystore;
use crate::error::ImportError;
use crate::fsx;
use crate::model::{Entry, KeyInfo, KeyStatus, Purpose, valid_name};
use crate::secret::{SECRET_LEN, Secret32};

const MAX_INFO_LEN: u64 = 64 * 1024;

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The entries added.
    pub imported: Vec<KeyInfo>,
    /// Files whose key was already in the keystore (an earlier import): not added again.
    pub already_present: Vec<PathBuf>,
    /// The plaintext files overwritten and removed.
    pub removed: Vec<PathBuf>,
}

struct Candidate {
    key_file: PathBuf,
    info_file: Option<PathBuf>,
    entry: Option<Entry>,
}

impl Keystore {
    /// Imports every `NAME.key` of `dir` (see the module docs). All or nothing: one bad
    /// file and nothing is imported or removed.
    ///
    /// # Errors
    ///
    /// [`ImportError::NothingToImport`], [`ImportError::BadKey`], [`ImportError::Io`],
    /// [`ImportError::Change`] (nothing removed), [`ImportError::Cleanup`] (imported, but
    /// a plaintext file is left).
    pub fn import_legacy(&mut self, dir: &Path) -> Result<ImportReport, ImportError> {
        let now = Timestamp::now().as_second();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ImportError::Io { path, source }
        };
        let mut key_files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(dir))?;
        key_files.retain(|p| p.extension().is_some_and(|e| e == "key") && p.is_file());
        key_files.sort();
        if key_files.is_empty() {
            return Err(ImportError::NothingToImport {
                dir: dir.to_owned(),
            });
        }
        let mut candidates = Vec::with_capacity(key_files.len());
        for key_file in key_files {
            candidates.push(self.candidate(key_file, now)?);
        }
        let new: Vec<Entry> = candidates.iter().filter_map(|c| c.entry.clone()).collect();
        let imported: Vec<KeyInfo> = new.iter().map(Entry::info).collect();
        if !new.is_empty() {
            let names: Vec<&str> = imported.iter().map(|i| i.name.as_str()).collect();
            let detail = format!("{} from {}", names.join(", "), dir.display());
            self.import_entries(new, detail)?;
        }
        let mut report = ImportReport {
            imported,
            already_present: Vec::new(),
            removed: Vec::new(),
        };
        for candidate in candidates {
            if candidate.entry.is_none() {
                report.already_present.push(candidate.key_file.clone());
            }
            let files = std::iter::once(candidate.key_file).chain(candidate.info_file);
            for path in files {
                fsx::scrub_and_remove(&path).map_err(|source| ImportError::Cleanup {
                    path: path.clone(),
                    source,
                })?;
                report.removed.push(path);
            }
        }
        Ok(report)
    }

    fn candidate(&self, key_file: PathBuf, now: i64) -> Result<Candidate, ImportError> {
        let bad = |problem: String| ImportError::BadKey {
            path: key_file.clone(),
            problem,
        };
        let stem = key_file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let name = format!("legacy-{stem}");
        if !valid_name(&name) {
            return Err(bad(format!(
                "{name:?} is not a valid key name (letters, digits, '.', '_', '-'; at most 64)"
            )));
        }
        let mut file = File::open(&key_file).map_err(|source| ImportError::Io {
            path: key_file.clone(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len != SECRET_LEN as u64 {
            return Err(bad(format!("it is {len} bytes; a legacy key is 32 bytes")));
        }
        let mut read = Ok(());
        let secret = Secret32::init_with(|bytes| read = file.read_exact(bytes));
        read.map_err(|source| ImportError::Io {
            path: key_file.clone(),
            source,
        })?;
        let purpose = Purpose::FileEncryption;
        let public_key = purpose
            .public_key(&secret)
            .ok_or_else(|| bad("not a valid secp256k1 secret key".into()))?;
        let info_path = key_file.with_extension("info");
        let info_file = info_path.is_file().then_some(info_path);
        let created = match &info_file {
            Some(path) => check_info(path, &public_key).map_err(bad)?,
            None => None,
        };
        let entry = if self.has_public_key(&public_key) {
            None
        } else if self.keys().iter().any(|k| k.name == name) {
            return Err(bad(format!("a different key named {name} already exists")));
        } else {
            Some(Entry {
                name,
                purpose,
                version: 1,
                status: KeyStatus::Deprecated,
                created: created.unwrap_or(now),
                activated: None,
                deprecated: Some(now),
                expires: None,
                revoked: None,
                revoke_reason: None,
                destroyed: None,
                predecessor: None,
                successor: None,
                public_key,
                secret: Some(secret),
            })
        };
        Ok(Candidate {
            key_file,
            info_file,
            entry,
        })
    }
}

/// Checks a `.info` file against the key; returns its creation time if it has one.
fn check_info(path: &Path, public_key: &[u8]) -> Result<Option<i64>, String> {
    let bytes = fsx::read_bounded(path, MAX_INFO_LEN).map_err(|e| format!("its .info: {e}"))?;
    let info: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("its .info is not JSON: {e}"))?;
    let field = |names: &[&str]| names.iter().find_map(|n| info.get(*n).cloned());
    if let Some(serde_json::Value::String(hex)) = field(&["public_key", "publicKey", "public"]) {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.trim().as_bytes())
            .map_err(|_| "its .info public key is not hex".to_owned())?;
        let stated = PublicKey::from_sec1_bytes(&bytes)
            .map_err(|_| "its .info public key is not a secp256k1 key".to_owned())?;
        if stated.to_compressed().as_slice() != public_key {
            return Err("its .info names another public key".into());
        }
    }
    let created = match field(&["created", "created_at"]) {
        Some(serde_json::Value::String(text)) => {
            text.parse::<Timestamp>().ok().map(|t| t.as_second())
        }
        Some(serde_json::Value::Number(n)) => {
            n.as_i64().filter(|s| Timestamp::from_second(*s).is_ok())
        }
        _ => None,
    };
    Ok(created)
}
