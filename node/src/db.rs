//! The node's one RocksDB database and its column families.
//!
//! | column family   | key                         | value                                  |
//! |-----------------|-----------------------------|----------------------------------------|
//! | `shards`        | shard id (32)               | shard bytes (BlobDB for large values)  |
//! | `shard_info`    | shard id (32)               | length (u64 BE) + state (1: 0 as stored, 1 a read found it corrupt), written with the shard |
//! | `meta`          | name                        | counters (`used_bytes`, `shard_count`: u64 BE, changed by merges adding a delta) |
//! | `owners`        | shard id (32) + peer id     | who stored a shard (may delete it): empty, or the file id (32) the claim was bound to by an `Announce` |
//! | `kad_records`   | record key                  | Kademlia value record                  |
//! | `kad_providers` | record key, provider peer id | Kademlia provider record              |
//! | `catalog`       | file id (32)                | this node's own files (name, size, time) |
//! | `files`         | kind (1) + file id (32)     | manifests, key envelopes, placement hints |
//! | `leases`        | `k` + blob id + peer id; `x` + expiry + blob id + peer id | a claim's lease expiry (u64 BE); the expiry index (empty) (`crate::lease`) |

use std::path::Path;
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, Options};

pub(crate) const CF_SHARDS: &str = "shards";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_OWNERS: &str = "owners";
pub(crate) const CF_KAD_RECORDS: &str = "kad_records";
pub(crate) const CF_KAD_PROVIDERS: &str = "kad_providers";
pub(crate) const CF_CATALOG: &str = "catalog";
pub(crate) const CF_FILES: &str = "files";
pub(crate) const CF_SHARD_INFO: &str = "shard_info";
pub(crate) const CF_LEASES: &str = "leases";

/// Every column family, `shards` first (it alone has blob files), then `meta` (the only
/// one with a merge operator).
const ALL_CFS: [&str; 9] = [
    CF_SHARDS,
    CF_META,
    CF_OWNERS,
    CF_KAD_RECORDS,
    CF_KAD_PROVIDERS,
    CF_CATALOG,
    CF_FILES,
    CF_SHARD_INFO,
    CF_LEASES,
];

/// Values at least this large go to BlobDB blob files, so compaction does not rewrite
/// shard bytes again and again.
const MIN_BLOB_SIZE: u64 = 4096;

/// Memtable size of the `shards` column family. Shard bytes stay in the memtable until a
/// flush moves them to a blob file, so RocksDB's default (64 MiB, and a second one while
/// the first flushes) made a storage node's peak RSS grow by about 50 MiB during a large
/// put. The WAL keeps every acknowledged shard durable whatever this size; a smaller
/// memtable only means more, smaller flushes (each its own blob file).
const SHARDS_WRITE_BUFFER: usize = 8 << 20;

/// The write-ahead logs' total size past which RocksDB flushes the column families that
/// still need the oldest log, so that it can go. All column families write to the same
/// log, and a log is kept until each of them has flushed what it wrote there; the small
/// ones (claims, leases, records, with RocksDB's 64 MiB memtables) take hours to fill, so
/// with RocksDB's default (four times all memtables, about 4 GiB here) every shard byte
/// stayed in the logs too: 150 MiB of logs beside 132 MiB of blob files on a storage
/// node after a 256 MiB put, outside its quota, and all replayed when the node restarted
/// after a crash. Twice the shard memtables' size (the active one and one being
/// flushed), so a shard flush is not made to wait for the small ones.
const MAX_TOTAL_WAL: u64 = 4 * SHARDS_WRITE_BUFFER as u64;

/// Log files RocksDB keeps, once no column family needs them, to write the next logs
/// into instead of creating new files: their blocks are allocated and their pages in the
/// page cache, so a write is a copy into cached pages and a sync need not journal a new
/// file size.
const WAL_FILES_RECYCLED: usize = 2;

/// Bytes a compaction reads ahead in each of its input files. RocksDB's default (2 MiB,
/// and reads past the page cache need a buffer of their own) held 10.5 MiB of a
/// gateway's heap at the peak of a 256 MiB put: a compaction of the `shards` column
/// family reading five table files at once (heaptrack, benches/PROFILE.md). Those tables
/// hold keys, blob references and the shards under [`MIN_BLOB_SIZE`]; the larger shards'
/// bytes are in blob files, which a compaction does not read.
const COMPACTION_READAHEAD: usize = 256 << 10;

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// RocksDB failed (disk full, permissions, another process holds the lock, corruption).
    #[error("database: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The database was not opened by [`open`] (a column family is missing).
    #[error("database: column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// The blocking task running a database operation panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
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
    // Flushes and compactions write their files (the blob files holding shard bytes
    // among them) past the page cache. A shard's bytes were otherwise copied into the
    // page cache twice, once for the WAL and once for the blob file: up to a third of a
    // storage node's CPU in a large put where the page cache grows (benches/PROFILE.md).
    // The WAL is written and synced as before, so an acknowledged shard is as durable.
    // Reads go past it too: a holder reads a shard once per get of its file, so cached
    // shard bytes were only a copy more and a page cache that grew by the size of every
    // file fetched, until the machine reclaimed it while later gets ran (gets of 1 GiB
    // fell from about 440 to about 220 MB/s; benches/PROFILE.md). The table files' own
    // blocks (keys, claims, records) stay cached in RocksDB's block cache.
    let direct = direct_io_works(dir);
    db_opts.set_use_direct_io_for_flush_and_compaction(direct);
    db_opts.set_use_direct_reads(direct);
    db_opts.set_compaction_readahead_size(COMPACTION_READAHEAD);
    // The logs stay bounded, and the space of those no longer needed is written again
    // (`MAX_TOTAL_WAL`, `WAL_FILES_RECYCLED`). Every acknowledged write is in a synced log
    // as before. RocksDB allows recycling with its default recovery mode (point in
    // time), and refuses it only for writes with the WAL disabled, which no write here
    // is.
    db_opts.set_max_total_wal_size(MAX_TOTAL_WAL);
    db_opts.set_recycle_log_file_num(WAL_FILES_RECYCLED);
    let mut shard_opts = family_options();
    shard_opts.set_enable_blob_files(true);
    shard_opts.set_min_blob_size(MIN_BLOB_SIZE);
    shard_opts.set_write_buffer_size(SHARDS_WRITE_BUFFER);
    let mut meta_opts = family_options();
    meta_opts.set_merge_operator_associative("datamesh_add_u64", add_u64);
    let mut cfs = vec![
        ColumnFamilyDescriptor::new(CF_SHARDS, shard_opts),
        ColumnFamilyDescriptor::new(CF_META, meta_opts),
    ];
    for name in &ALL_CFS[2..] {
        cfs.push(ColumnFamilyDescriptor::new(*name, family_options()));
    }
    Ok(Arc::new(DB::open_cf_descriptors(&db_opts, dir, cfs)?))
}

/// Options every column family starts from: RocksDB's defaults, and a bloom filter of
/// [`BLOOM_BITS_PER_KEY`] in each table file.
fn family_options() -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    opts
}

/// Bits per key of the table files' bloom filters (about 1% false positives).
///
/// A store looks up keys that are not there: a new shard's info row, a claim's lease, a
/// file's envelope and authority rows. Without a filter, each such lookup read a block
/// of every table file whose key range covers it (random ids: nearly all), past the page
/// cache (direct reads). With 3 million rows in `shard_info`, an absent key cost 51-56 us
/// and 2.6 KB read from the disk (benches/PROFILE.md, session 29). The filters cost about
/// 1.25 bytes per key, held with the open table files.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Whether files in `dir` can be opened with `O_DIRECT`. ext4, XFS, btrfs and (since
/// Linux 6.6) tmpfs can; where a file system refuses it, RocksDB would fail every flush
/// and stop taking writes. Creates `dir` if it is missing, as opening the database would.
fn direct_io_works(dir: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(DIRECT_IO_PROBE);
    // A probe left by a crash between the open and the removal below.
    let _ = std::fs::remove_file(&probe);
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC;
    let works = rustix::fs::open(&probe, flags, Mode::RUSR | Mode::WUSR).is_ok();
    let _ = std::fs::remove_file(&probe);
    works
}

/// The file [`direct_io_works`] creates and removes.
const DIRECT_IO_PROBE: &str = "direct-io-probe";

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
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily, DbError> {
    db.cf_handle(name).ok_or(DbError::MissingColumnFamily(name))
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

#[cfg(test)]
mod tests {
    use super::*;
    use datamesh_core::ShardId;

    use crate::store::{ShardStore, StoreConfig};

    const FLUSH_DIRECT: &str = "use_direct_io_for_flush_and_compaction";
    const READ_DIRECT: &str = "use_direct_reads";

    /// The value RocksDB recorded for `option` in the newest options file of the
    /// database in `dir` (its first mention).
    fn recorded(dir: &Path, option: &str) -> Result<String, Box<dyn std::error::Error>> {
        let text = options_file(dir)?;
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(option)?.strip_prefix('='))
            .ok_or("option not recorded")?;
        Ok(line.to_owned())
    }

    /// The newest options file RocksDB wrote for the database in `dir`.
    fn options_file(dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
        let mut newest = None;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix("OPTIONS-") {
                let n: u64 = n.parse()?;
                if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                    newest = Some((n, name));
                }
            }
        }
        let (_, name) = newest.ok_or("no options file")?;
        Ok(std::fs::read_to_string(dir.join(name))?)
    }

    #[test]
    fn every_column_familys_tables_have_a_bloom_filter() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        drop(open(dir.path())?);
        // RocksDB records the policy's name, not its bits per key.
        let text = options_file(dir.path())?;
        for name in ALL_CFS {
            let section = format!("[TableOptions/BlockBasedTable \"{name}\"]");
            let policy = text
                .split(&section)
                .nth(1)
                .and_then(|rest| rest.split("\n[").next())
                .and_then(|body| {
                    body.lines()
                        .find_map(|l| l.trim().strip_prefix("filter_policy="))
                })
                .ok_or(format!("no filter policy recorded for {name}"))?;
            assert_eq!(policy, "bloomfilter", "{name}");
        }
        Ok(())
    }

    /// Stores shard number `i`, `len` bytes (different for each `i`); its id.
    fn store_shard(
        store: &ShardStore,
        i: u64,
        len: usize,
    ) -> Result<ShardId, Box<dyn std::error::Error>> {
        let mut bytes = vec![(i % 251) as u8; len];
        bytes[..8].copy_from_slice(&i.to_be_bytes());
        let id = ShardId::of(&bytes);
        store.put(&id, &bytes, b"o")?;
        Ok(id)
    }

    /// Opens the database in `dir` again: it holds exactly the shards `ids`, each whole.
    fn reopened_holds(dir: &Path, ids: &[ShardId]) -> Result<(), Box<dyn std::error::Error>> {
        let store = ShardStore::new(open(dir)?, StoreConfig::new(1 << 40));
        for id in ids {
            assert!(store.get(id)?.is_some_and(|b| ShardId::of(&b) == *id));
        }
        assert_eq!(store.shard_count()?, ids.len() as u64);
        Ok(())
    }

    /// Writes shards, flushes them into blob files, reopens and reads them back.
    fn shards_survive_a_flush_and_reopen(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let db = open(dir)?;
        let store = ShardStore::new(Arc::clone(&db), StoreConfig::new(1 << 30));
        let ids = (0..8u64)
            .map(|i| store_shard(&store, i, 100_000))
            .collect::<Result<Vec<_>, _>>()?;
        flush_all(&db)?;
        drop(store);
        drop(db);
        reopened_holds(dir, &ids)
    }

    #[test]
    fn flushes_and_reads_bypass_the_page_cache_where_the_file_system_allows_it()
    -> Result<(), Box<dyn std::error::Error>> {
        // The temporary directory is on the machine's disk (ext4 here and in CI). The
        // shards are read back from their blob files after the reopen: with `O_DIRECT`.
        let dir = tempfile::tempdir()?;
        shards_survive_a_flush_and_reopen(dir.path())?;
        assert_eq!(recorded(dir.path(), FLUSH_DIRECT)?, "true");
        assert_eq!(recorded(dir.path(), READ_DIRECT)?, "true");
        assert!(!dir.path().join(DIRECT_IO_PROBE).exists());
        Ok(())
    }

    #[test]
    fn a_compaction_reads_ahead_256_kib_per_file_not_rocksdbs_2_mib()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        drop(open(dir.path())?);
        assert_eq!(
            recorded(dir.path(), "compaction_readahead_size")?,
            COMPACTION_READAHEAD.to_string()
        );
        Ok(())
    }

    #[test]
    fn where_the_probe_fails_flushes_and_reads_go_through_the_page_cache()
    -> Result<(), Box<dyn std::error::Error>> {
        // Every local file system of this machine takes O_DIRECT (tmpfs too, since Linux
        // 6.6), so the probe is made to fail: a directory stands where it would create
        // its file.
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join(DIRECT_IO_PROBE))?;
        assert!(!direct_io_works(dir.path()));
        shards_survive_a_flush_and_reopen(dir.path())?;
        assert_eq!(recorded(dir.path(), FLUSH_DIRECT)?, "false");
        assert_eq!(recorded(dir.path(), READ_DIRECT)?, "false");
        Ok(())
    }

    #[test]
    fn the_shard_memtables_stay_small_during_a_large_write()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = open(dir.path())?;
        let store = ShardStore::new(Arc::clone(&db), StoreConfig::new(1 << 40));
        let shards = cf(&db, CF_SHARDS)?;
        let mut ids = Vec::new();
        let mut peak = 0u64;
        // 40 MiB of 256 KiB shards: with RocksDB's default 64 MiB memtable it would all
        // sit in memory.
        for i in 0..160u64 {
            ids.push(store_shard(&store, i, 256 * 1024)?);
            let size = db
                .property_int_value_cf(shards, "rocksdb.cur-size-all-mem-tables")?
                .unwrap_or(0);
            peak = peak.max(size);
        }
        // The active memtable and at most one being flushed (RocksDB stalls writes
        // rather than exceed max_write_buffer_number = 2), plus one shard of slack: far
        // below the 40 MiB written.
        let bound = 2 * 8 * 1024 * 1024 + 1024 * 1024;

        assert!(
            peak <= bound,
            "memtables reached {peak} bytes (bound {bound})"
        );
        drop(store);
        drop(db);
        reopened_holds(dir.path(), &ids)
    }

    /// The bytes of the write-ahead log files in `dir` (the live ones and those kept to
    /// be written again).
    /// The bytes of the write-ahead logs in `dir`. RocksDB deletes and renames (recycles)
    /// logs on its own threads meanwhile: a log listed and gone before its size was read
    /// means the listing is taken again (a CI run failed on one such log).
    fn log_bytes(dir: &Path) -> Result<u64, Box<dyn std::error::Error>> {
        let mut tries = 0;
        'listing: loop {
            tries += 1;
            let mut total = 0;
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                if !entry.file_name().to_string_lossy().ends_with(".log") {
                    continue;
                }
                match entry.metadata() {
                    Ok(meta) => total += meta.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => {
                        continue 'listing;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(total);
        }
    }

    #[test]
    fn the_logs_stay_bounded_during_a_large_write_and_every_shard_survives_a_crash()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = open(dir.path())?;
        let store = ShardStore::new(Arc::clone(&db), StoreConfig::new(1 << 40));
        let lease_like = cf(&db, CF_LEASES)?;
        let mut ids = Vec::new();
        let mut peak = 0;
        // 96 MiB of 256 KiB shards, each with a small row in another column family (as a
        // put's lease is): that row alone kept every log alive before.
        for i in 0..384u64 {
            let id = store_shard(&store, i, 256 * 1024)?;
            db.put_cf(lease_like, id.as_bytes(), i.to_be_bytes())?;
            ids.push(id);
            peak = peak.max(log_bytes(dir.path())?);
        }
        // The live logs up to the limit, the one being written, the recycled ones: each
        // log holds about one shard memtable (8 MiB), plus slack for the shard that
        // switched it.
        let per_log = SHARDS_WRITE_BUFFER as u64 + (1 << 20);
        let bound = MAX_TOTAL_WAL + (WAL_FILES_RECYCLED as u64 + 2) * per_log;
        assert!(
            peak <= bound,
            "the logs reached {peak} bytes (bound {bound}, 96 MiB written)"
        );
        // Closed without a flush, as a crash leaves it: what the logs and files hold
        // is every shard.
        drop(store);
        drop(db);
        reopened_holds(dir.path(), &ids)
    }

    /// A measurement, not a check (benches/PROFILE.md, session 29): the time and the disk
    /// bytes of a lookup of an absent key in `shard_info` after `PROBE_ROWS` rows (default
    /// 400,000), in a database under `PROBE_DIR` (a real disk: direct reads). Run by hand:
    /// `PROBE_ROWS=3000000 PROBE_DIR=/var/tmp cargo test --release -p datamesh-node --lib
    /// -- --ignored absent_key_lookups_probe --nocapture`.
    #[test]
    #[ignore = "a measurement, run by hand"]
    #[expect(clippy::print_stderr, reason = "prints its figures")]
    fn absent_key_lookups_probe() -> Result<(), Box<dyn std::error::Error>> {
        use rand_core::{OsRng, RngCore};
        use rocksdb::WriteBatch;
        let base = std::env::var("PROBE_DIR")?;
        let dir = tempfile::tempdir_in(base)?;
        let db = open(dir.path())?;
        let info = cf(&db, CF_SHARD_INFO)?;
        let rows: usize = std::env::var("PROBE_ROWS").map_or(Ok(400_000), |v| v.parse())?;
        let mut key = [0u8; 32];
        for chunk in 0..rows / 1000 {
            let mut batch = WriteBatch::default();
            for _ in 0..1000 {
                OsRng.fill_bytes(&mut key);
                batch.put_cf(info, key, [7u8; 12]);
            }
            db.write(batch)?;
            if chunk % 40 == 39 {
                db.flush_cf(info)?;
            }
        }
        db.flush_cf(info)?;
        std::thread::sleep(std::time::Duration::from_secs(3));
        let files = db.property_value_cf(info, "rocksdb.num-files-at-level0")?;
        let l1 = db.property_value_cf(info, "rocksdb.num-files-at-level1")?;
        let io = |f: &str| -> Result<u64, Box<dyn std::error::Error>> {
            let text = std::fs::read_to_string("/proc/self/io")?;
            Ok(text
                .lines()
                .find_map(|l| l.strip_prefix(f))
                .ok_or("no io")?
                .trim()
                .parse()?)
        };
        for round in 0..3 {
            let (read0, t) = (io("read_bytes:")?, std::time::Instant::now());
            let n = 50_000;
            for _ in 0..n {
                OsRng.fill_bytes(&mut key);
                assert!(db.get_pinned_cf(info, key)?.is_none());
            }
            let took = t.elapsed().as_secs_f64() / n as f64 * 1e6;
            let read = io("read_bytes:")? - read0;
            eprintln!(
                "round {round}: {rows} rows, L0 {files:?} L1 {l1:?}: {took:.2} us per absent lookup, {:.0} bytes read from disk per lookup",
                read as f64 / n as f64
            );
        }
        Ok(())
    }
}
