//! The node's one RocksDB database and its column families.
//!
//! | column family   | key                         | value                                  |
//! |-----------------|-----------------------------|----------------------------------------|
//! | `shards`        | shard id (32)               | shard bytes (BlobDB for large values)  |
//! | `meta`          | name                        | counters (`used_bytes`, `shard_count`: u64 BE, changed by merges adding a delta) |
//! | `owners`        | shard id (32) + peer id     | empty: who stored a shard (may delete it) |
//! | `kad_records`   | record key                  | Kademlia value record                  |
//! | `kad_providers` | record key, provider peer id | Kademlia provider record              |
//! | `catalog`       | file id (32)                | this node's own files (name, size, time) |
//! | `files`         | kind (1) + file id (32)     | manifests, key envelopes, placement hints |

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

pub(crate) const CF_SHARDS: &str = "shards";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_OWNERS: &str = "owners";
pub(crate) const CF_KAD_RECORDS: &str = "kad_records";
pub(crate) const CF_KAD_PROVIDERS: &str = "kad_providers";
pub(crate) const CF_CATALOG: &str = "catalog";
pub(crate) const CF_FILES: &str = "files";

/// Every column family, `shards` first (it alone has blob files), then `meta` (the only
/// one with a merge operator).
const ALL_CFS: [&str; 7] = [
    CF_SHARDS,
    CF_META,
    CF_OWNERS,
    CF_KAD_RECORDS,
    CF_KAD_PROVIDERS,
    CF_CATALOG,
    CF_FILES,
];

/// Values at least this large go to BlobDB blob files, so compaction does not rewrite
/// shard bytes again and again.
const MIN_BLOB_SIZE: u64 = 4096;

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// RocksDB failed (disk full, permissions, another process holds the lock, corruption).
    #[error("database: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The database was not opened by [`open`] (a column family is missing).
    #[error("database: column family {0} is missing")]
    MissingColumnFamily(String),
    /// A blocking database task failed.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Opens (creating if needed) the node database in `dir` with every column family.
///
/// # Errors
/// [`DbError::Rocks`] if the directory cannot be opened (permissions, another process
/// holding its lock, corruption).
pub fn open(dir: &Path) -> Result<Arc<DB>, DbError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    let mut shard_opts = Options::default();
    shard_opts.set_enable_blob_files(true);
    shard_opts.set_min_blob_size(MIN_BLOB_SIZE);
    let mut meta_opts = Options::default();
    meta_opts.set_merge_operator_associative("datamesh_add_u64", add_u64);
    let mut cfs = vec![
        ColumnFamilyDescriptor::new(CF_SHARDS, shard_opts),
        ColumnFamilyDescriptor::new(CF_META, meta_opts),
    ];
    for name in &ALL_CFS[2..] {
        cfs.push(ColumnFamilyDescriptor::new(*name, Options::default()));
    }
    Ok(Arc::new(DB::open_cf_descriptors(&db_opts, dir, cfs)?))
}

/// The merge operator of the `meta` counters: each value and operand is a `u64`, big
/// endian; a merge adds the operands to the value modulo 2^64, so a delta of `-n` is
/// written as `(-n as i64) as u64`. Concurrent writers change a counter in the same
/// atomic batch as the data it counts, without a read-modify-write. A value that is
/// not 8 bytes long counts as 0.
pub(crate) fn add_u64(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let read = |v: &[u8]| <[u8; 8]>::try_from(v).map_or(0, u64::from_be_bytes);
    let total = operands
        .iter()
        .fold(existing.map_or(0, read), |sum, v| sum.wrapping_add(read(v)));
    Some(total.to_be_bytes().to_vec())
}

/// The handle of a column family that [`open`] created.
///
/// # Errors
/// [`DbError::MissingColumnFamily`] only if the database was opened some other way.
pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily, DbError> {
    db.cf_handle(name)
        .ok_or_else(|| DbError::MissingColumnFamily(name.to_string()))
}

/// Flushes every column family's memtable to disk (on shutdown; the WAL already makes
/// synced writes durable, this makes the next start fast).
///
/// # Errors
/// [`DbError`] (e.g. the disk is full).
pub fn flush_all(db: &DB) -> Result<(), DbError> {
    for name in ALL_CFS {
        db.flush_cf(cf(db, name)?)?;
    }
    Ok(())
}
