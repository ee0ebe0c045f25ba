//! The catalog snapshot: this node's list of files as a backup bundle or the keystore's
//! network copy carries it (the keys crate holds it as an opaque, authenticated section),
//! read from a stopped node's database and written back into a restored one.
//!
//! ```text
//! { "version": 1, "source": "database" | "api" | "none",
//!   "files": [ { "entry": CatalogEntry, "manifest": hex or null, "placement": Placement or null } ] }
//! ```
//!
//! A snapshot read from the database has every file's manifest and placement hint; one
//! built from a running node's API (by the CLI, with [`SnapshotFile::entry_only`]) has
//! the entries only, and the node fetches the manifests from the network at `get`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datamesh_core::{FileId, Manifest};
use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogEntry, CatalogError, Placement};
use crate::db::DbError;

/// The snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A catalog snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    /// Where the files were read from.
    pub source: SnapshotSource,
    /// The files.
    pub files: Vec<SnapshotFile>,
}

/// Where a snapshot's files were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotSource {
    /// A stopped node's database: entries, manifests and placement hints.
    Database,
    /// A running node's API: entries only (ids, names, sizes, times).
    Api,
    /// No node ever ran in this home: no files.
    None,
}

impl SnapshotSource {
    /// The name written in the snapshot (`database`, `api`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Api => "api",
            Self::None => "none",
        }
    }
}

/// One file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Its catalog entry.
    pub entry: CatalogEntry,
    /// Its manifest, lowercase hex, if known.
    pub manifest: Option<String>,
    /// Where its shards were placed, if known.
    pub placement: Option<Placement>,
}

impl SnapshotFile {
    /// A file known by its entry only (its manifest is fetched at `get`).
    pub fn entry_only(entry: CatalogEntry) -> Self {
        Self {
            entry,
            manifest: None,
            placement: None,
        }
    }
}

/// A snapshot could not be read, decoded or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes are not a snapshot.
    #[error("the catalog section does not decode")]
    Decode(#[source] serde_json::Error),
    /// A snapshot of another format version.
    #[error(
        "catalog snapshot version {found} is not supported (this build reads {SNAPSHOT_VERSION}); use a newer datamesh"
    )]
    Version {
        /// The version found.
        found: u32,
    },
    /// The node database could not be opened or flushed.
    #[error("cannot open the node database {}", dir.display())]
    Open {
        /// The database folder.
        dir: PathBuf,
        /// Why.
        source: DbError,
    },
    /// Reading or writing the catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Snapshot {
    /// A snapshot of `files` read from `source`.
    pub fn new(source: SnapshotSource, files: Vec<SnapshotFile>) -> Self {
        Self {
            version: SNAPSHOT_VERSION,
            source,
            files,
        }
    }

    /// The encoded snapshot (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain structs of strings and numbers: serialising into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a snapshot; an empty section is a snapshot of no files.
    ///
    /// # Errors
    /// [`SnapshotError::Decode`], [`SnapshotError::Version`].
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.is_empty() {
            return Ok(Self::new(SnapshotSource::None, Vec::new()));
        }
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = serde_json::from_slice(bytes).map_err(SnapshotError::Decode)?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        serde_json::from_slice(bytes).map_err(SnapshotError::Decode)
    }
}

fn open(dir: &Path) -> Result<Arc<rocksdb::DB>, SnapshotError> {
    crate::db::open(dir).map_err(|source| SnapshotError::Open {
        dir: dir.to_owned(),
        source,
    })
}

/// Reads the catalog of the (stopped) node whose database is in `db_dir`: every entry
/// with its manifest and placement hint.
///
/// # Errors
/// [`SnapshotError::Open`] (e.g. the node runs and holds the lock),
/// [`SnapshotError::Catalog`].
pub fn read(db_dir: &Path) -> Result<Snapshot, SnapshotError> {
    let catalog = Catalog::new(open(db_dir)?);
    let mut files = Vec::new();
    for entry in catalog.list()? {
        let manifest = catalog
            .manifest(&entry.id)?
            .map(|m| data_encoding::HEXLOWER.encode(&m.to_bytes()));
        let placement = catalog.placement(&entry.id)?;
        files.push(SnapshotFile {
            entry,
            manifest,
            placement,
        });
    }
    Ok(Snapshot::new(SnapshotSource::Database, files))
}

/// Writes `snapshot` into the database in `db_dir` (created); returns how many files.
/// Files whose manifest is in the snapshot (and hashes to their id) get it and their
/// placement; the others get their catalog entry, and the node fetches the manifest from
/// the network at `get`. The database is flushed before this returns.
///
/// # Errors
/// [`SnapshotError::Open`], [`SnapshotError::Catalog`].
pub fn restore(db_dir: &Path, snapshot: &Snapshot) -> Result<usize, SnapshotError> {
    let db = open(db_dir)?;
    let catalog = Catalog::new(Arc::clone(&db));
    for file in &snapshot.files {
        let manifest = file
            .manifest
            .as_deref()
            .and_then(|hex| data_encoding::HEXLOWER.decode(hex.as_bytes()).ok())
            .filter(|bytes| FileId::of_manifest(bytes) == file.entry.id)
            .and_then(|bytes| Manifest::from_bytes(&bytes).ok());
        match manifest {
            Some(manifest) => catalog.add(
                &file.entry,
                &manifest,
                &file.placement.clone().unwrap_or_default(),
            )?,
            None => catalog.update(&file.entry)?,
        }
    }
    crate::db::flush_all(&db).map_err(|source| SnapshotError::Open {
        dir: db_dir.to_owned(),
        source,
    })?;
    Ok(snapshot.files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn the_snapshot_format_is_frozen_and_versioned() -> TestResult {
        let entry = CatalogEntry {
            id: FileId::of_manifest(b"m"),
            name: "a".into(),
            size: 1,
            stripes: 1,
            created: 2,
            shared_with: Vec::new(),
            envelope_sequence: 0,
        };
        let snapshot = Snapshot::new(SnapshotSource::Api, vec![SnapshotFile::entry_only(entry)]);
        let json: serde_json::Value = serde_json::from_slice(&snapshot.to_bytes())?;
        assert_eq!(json["version"], 1);
        assert_eq!(json["source"], "api");
        assert!(json["files"][0]["manifest"].is_null());
        assert_eq!(Snapshot::decode(&snapshot.to_bytes())?, snapshot);
        assert!(Snapshot::decode(b"")?.files.is_empty());
        let newer = br#"{"version":2,"source":"api","files":[],"more":1}"#;
        assert!(matches!(
            Snapshot::decode(newer),
            Err(SnapshotError::Version { found: 2 })
        ));
        assert!(matches!(
            Snapshot::decode(b"{"),
            Err(SnapshotError::Decode(_))
        ));
        Ok(())
    }

    #[test]
    fn a_snapshot_read_from_a_database_restores_into_another() -> TestResult {
        let (from, to) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let mut encoder =
            datamesh_core::Encoder::new(&b"hello"[..], datamesh_core::EncodeOptions::new("h"));
        for stripe in encoder.by_ref() {
            stripe?;
        }
        let authority = datamesh_core::AuthorityKey::derive(
            &datamesh_core::AuthorityRoot::from_bytes(&[1; 32]),
            &datamesh_core::AuthoritySalt::random(),
        )?;
        let file = encoder.finish(authority.file_authority())?;
        let entry = CatalogEntry {
            id: file.file_id,
            name: "h".into(),
            size: 5,
            stripes: 1,
            created: 7,
            shared_with: Vec::new(),
            envelope_sequence: 1,
        };
        {
            let catalog = Catalog::new(crate::db::open(from.path())?);
            catalog.add(&entry, &file.manifest, &Placement::default())?;
        }
        let snapshot = read(from.path())?;
        assert_eq!(snapshot.source, SnapshotSource::Database);
        assert_eq!(snapshot.files.len(), 1);
        let decoded = Snapshot::decode(&snapshot.to_bytes())?;
        assert_eq!(restore(to.path(), &decoded)?, 1);
        let catalog = Catalog::new(crate::db::open(to.path())?);
        assert_eq!(catalog.list()?, vec![entry]);
        assert_eq!(catalog.manifest(&file.file_id)?, Some(file.manifest));
        Ok(())
    }
}
