//! Shards this node holds for others, in the `shards` column family of the node database.
//!
//! Shards are keyed by their id and verified against it on the way in and on the way
//! out: a shard that does not hash to its id is refused on receipt and reported as
//! corrupt on read, never served. Every write is synced before it is acknowledged.

use std::sync::{Arc, Mutex};

use datamesh_core::ShardId;
use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::db::{CF_META, CF_OWNERS, CF_SHARDS, DbError, cf};

const USED_BYTES_KEY: &[u8] = b"used_bytes";
const SHARD_COUNT_KEY: &[u8] = b"shard_count";

/// Store settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    max_bytes: u64,
}

impl StoreConfig {
    /// Shards are refused once they would take more than `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self { max_bytes }
    }

    /// The storage quota in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

/// A shard store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The bytes offered do not hash to the id they were offered under.
    #[error("shard {id} does not match its id")]
    Mismatch {
        /// The id claimed.
        id: ShardId,
    },
    /// Storing would exceed the quota.
    #[error("storage full: {used} of {max} bytes used, {needed} more needed")]
    QuotaExceeded {
        /// Bytes in use.
        used: u64,
        /// Quota.
        max: u64,
        /// Size of the refused shard.
        needed: u64,
    },
    /// A stored shard no longer matches its id (bit rot, a torn write, tampering).
    #[error("stored shard {id} is corrupt")]
    Corrupt {
        /// The shard's id.
        id: ShardId,
    },
    /// RocksDB failed (disk full, permissions, corruption of its own files).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The shard is gone.
    Deleted,
    /// This owner's claim is gone; others stored the same shard and it stays.
    StillShared,
    /// The caller never stored this shard: nothing changed.
    NotOwner,
    /// Not held here.
    NotHeld,
}

/// Whether a put stored new bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The shard is new here.
    Stored,
    /// The shard was already here (same id, hence same bytes): nothing changed.
    AlreadyHeld,
}

/// Shards on disk, verified by id, under a quota.
#[derive(Debug)]
pub struct ShardStore {
    db: Arc<DB>,
    config: StoreConfig,
    /// Serialises the read-modify-write of the byte counter with the shard write.
    write_lock: Mutex<()>,
}

impl ShardStore {
    /// The shard store of a database opened with [`crate::db::open`].
    pub fn new(db: Arc<DB>, config: StoreConfig) -> Self {
        Self {
            db,
            config,
            write_lock: Mutex::new(()),
        }
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        Ok(cf(&self.db, name)?)
    }

    fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        let raw = self.db.get_pinned_cf(self.cf(CF_META)?, key)?;
        Ok(raw
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Bytes of shard data held.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a read failure.
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        self.counter(USED_BYTES_KEY)
    }

    /// Number of shards held.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a read failure.
    pub fn shard_count(&self) -> Result<u64, StoreError> {
        self.counter(SHARD_COUNT_KEY)
    }

    /// The configured quota.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Verifies `bytes` against `id` and stores them durably for `owner` (an opaque
    /// name of who stored it, e.g. a peer id; only owners may delete). The write is
    /// synced before this returns, so an acknowledged shard survives a crash.
    ///
    /// # Errors
    /// [`StoreError::Mismatch`], [`StoreError::QuotaExceeded`] or [`StoreError::Db`].
    pub fn put(&self, id: &ShardId, bytes: &[u8], owner: &[u8]) -> Result<PutOutcome, StoreError> {
        if ShardId::of(bytes) != *id {
            return Err(StoreError::Mismatch { id: *id });
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let shards = self.cf(CF_SHARDS)?;
        let owner_key = owner_key(id, owner);
        if self.db.get_pinned_cf(shards, id.as_bytes())?.is_some() {
            self.db.put_cf(self.cf(CF_OWNERS)?, owner_key, [])?;
            return Ok(PutOutcome::AlreadyHeld);
        }
        let used = self.used_bytes()?;
        let needed = bytes.len() as u64;
        if used.saturating_add(needed) > self.config.max_bytes {
            return Err(StoreError::QuotaExceeded {
                used,
                max: self.config.max_bytes,
                needed,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(shards, id.as_bytes(), bytes);
        batch.put_cf(self.cf(CF_OWNERS)?, owner_key, []);
        batch.put_cf(
            self.cf(CF_META)?,
            USED_BYTES_KEY,
            (used + needed).to_be_bytes(),
        );
        batch.put_cf(
            self.cf(CF_META)?,
            SHARD_COUNT_KEY,
            (self.shard_count()? + 1).to_be_bytes(),
        );
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        Ok(PutOutcome::Stored)
    }

    /// Reads a shard and verifies it against its id.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the stored bytes no longer match; [`StoreError::Db`].
    pub fn get(&self, id: &ShardId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(bytes) = self.db.get_pinned_cf(self.cf(CF_SHARDS)?, id.as_bytes())? else {
            return Ok(None);
        };
        if ShardId::of(&bytes) != *id {
            return Err(StoreError::Corrupt { id: *id });
        }
        Ok(Some(bytes.to_vec()))
    }

    /// Whether the shard is held (without reading or verifying it).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn has(&self, id: &ShardId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_SHARDS)?, id.as_bytes())?
            .is_some())
    }

    /// Withdraws `owner`'s claim on a shard and deletes it when no owner is left.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn delete(&self, id: &ShardId, owner: &[u8]) -> Result<DeleteOutcome, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let shards = self.cf(CF_SHARDS)?;
        let owners = self.cf(CF_OWNERS)?;
        let Some(len) = self
            .db
            .get_pinned_cf(shards, id.as_bytes())?
            .map(|v| v.len() as u64)
        else {
            return Ok(DeleteOutcome::NotHeld);
        };
        let key = owner_key(id, owner);
        if self.db.get_pinned_cf(owners, &key)?.is_none() {
            return Ok(DeleteOutcome::NotOwner);
        }
        let shared = self
            .db
            .prefix_iterator_cf(owners, id.as_bytes())
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(id.as_bytes()))
            .any(|(k, _)| k[..] != key[..]);
        let mut batch = WriteBatch::default();
        batch.delete_cf(owners, &key);
        if !shared {
            self.drop_shard(&mut batch, id, len)?;
        }
        self.write_synced(batch)?;
        Ok(if shared {
            DeleteOutcome::StillShared
        } else {
            DeleteOutcome::Deleted
        })
    }

    /// Deletes a stored copy that no longer matches its id, whoever stored it: a corrupt
    /// copy is useless to every owner, and keeping it would let `has` keep claiming it.
    /// Returns whether a corrupt copy was removed (an intact one is never touched).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn remove_corrupt(&self, id: &ShardId) -> Result<bool, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let owners = self.cf(CF_OWNERS)?;
        let Some(len) = self
            .db
            .get_pinned_cf(self.cf(CF_SHARDS)?, id.as_bytes())?
            .filter(|bytes| ShardId::of(bytes) != *id)
            .map(|bytes| bytes.len() as u64)
        else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        for (key, _) in self
            .db
            .prefix_iterator_cf(owners, id.as_bytes())
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(id.as_bytes()))
        {
            batch.delete_cf(owners, key);
        }
        self.drop_shard(&mut batch, id, len)?;
        self.write_synced(batch)?;
        Ok(true)
    }

    /// Adds to `batch` the removal of a shard of `len` bytes and its share of the
    /// counters. The caller holds the write lock.
    fn drop_shard(&self, batch: &mut WriteBatch, id: &ShardId, len: u64) -> Result<(), StoreError> {
        batch.delete_cf(self.cf(CF_SHARDS)?, id.as_bytes());
        batch.put_cf(
            self.cf(CF_META)?,
            USED_BYTES_KEY,
            self.used_bytes()?.saturating_sub(len).to_be_bytes(),
        );
        batch.put_cf(
            self.cf(CF_META)?,
            SHARD_COUNT_KEY,
            self.shard_count()?.saturating_sub(1).to_be_bytes(),
        );
        Ok(())
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        Ok(())
    }

    /// Test-only fault injection: flips bits of a stored shard in place (same length, so
    /// the quota is unchanged), as bit rot would. Returns whether the shard was held.
    /// Reachable only through the debug API, which exists only when the node was started
    /// with test faults enabled.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn corrupt_for_test(&self, id: &ShardId) -> Result<bool, StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let shards = self.cf(CF_SHARDS)?;
        let Some(mut bytes) = self.db.get_cf(shards, id.as_bytes())? else {
            return Ok(false);
        };
        if bytes.is_empty() {
            bytes.push(0xa5);
        } else {
            let middle = bytes.len() / 2;
            bytes[0] ^= 0x01;
            bytes[middle] ^= 0x80;
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.db.put_cf_opt(shards, id.as_bytes(), bytes, &sync)?;
        Ok(true)
    }

    /// Flushes every memtable of the database to disk (on shutdown).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn flush(&self) -> Result<(), StoreError> {
        crate::db::flush_all(&self.db)?;
        Ok(())
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Db(DbError::Rocks(e))
    }
}

fn owner_key(id: &ShardId, owner: &[u8]) -> Vec<u8> {
    let mut key = id.as_bytes().to_vec();
    key.extend_from_slice(owner);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn shard(n: usize, seed: u8) -> (ShardId, Vec<u8>) {
        let bytes: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        (ShardId::of(&bytes), bytes)
    }

    #[test]
    fn shards_round_trip_and_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (small, small_bytes) = shard(100, 3);
        let (big, big_bytes) = shard(300_000, 5);
        {
            let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 30));
            assert_eq!(store.put(&small, &small_bytes, b"a")?, PutOutcome::Stored);
            assert_eq!(store.put(&big, &big_bytes, b"a")?, PutOutcome::Stored);
            assert_eq!(store.put(&big, &big_bytes, b"b")?, PutOutcome::AlreadyHeld);
            assert_eq!(store.used_bytes()?, 300_100);
            assert_eq!(store.shard_count()?, 2);
            store.flush()?;
        }
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 30));
        assert_eq!(store.get(&small)?, Some(small_bytes));
        assert_eq!(store.get(&big)?, Some(big_bytes));
        assert!(store.has(&big)?);
        assert_eq!(store.delete(&big, b"stranger")?, DeleteOutcome::NotOwner);
        assert_eq!(store.delete(&big, b"a")?, DeleteOutcome::StillShared);
        assert!(store.has(&big)?);
        assert_eq!(store.delete(&big, b"a")?, DeleteOutcome::NotOwner);
        assert_eq!(store.delete(&big, b"b")?, DeleteOutcome::Deleted);
        assert_eq!(store.delete(&big, b"b")?, DeleteOutcome::NotHeld);
        assert_eq!(store.get(&big)?, None);
        assert_eq!(store.used_bytes()?, 100);
        Ok(())
    }

    #[test]
    fn a_shard_that_does_not_match_its_id_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 20));
        let (id, mut bytes) = shard(1000, 7);
        bytes[10] ^= 1;
        assert!(matches!(
            store.put(&id, &bytes, b"a"),
            Err(StoreError::Mismatch { .. })
        ));
        assert!(!store.has(&id)?);
        assert_eq!(store.used_bytes()?, 0);
        Ok(())
    }

    #[test]
    fn a_corrupt_copy_is_not_served_and_anyone_may_remove_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 20));
        let (id, bytes) = shard(1000, 9);
        let (other, other_bytes) = shard(500, 11);
        store.put(&id, &bytes, b"a")?;
        store.put(&id, &bytes, b"b")?;
        store.put(&other, &other_bytes, b"a")?;
        // An intact copy is never removed this way.
        assert!(!store.remove_corrupt(&id)?);
        assert!(store.corrupt_for_test(&id)?);
        assert!(!store.corrupt_for_test(&ShardId::of(b"not held"))?);
        assert!(matches!(store.get(&id), Err(StoreError::Corrupt { .. })));
        assert!(store.has(&id)?);
        assert!(store.remove_corrupt(&id)?);
        assert!(!store.has(&id)?);
        assert_eq!(store.delete(&id, b"a")?, DeleteOutcome::NotHeld);
        assert_eq!((store.used_bytes()?, store.shard_count()?), (500, 1));
        // Stored again, it is a fresh shard with a fresh owner list.
        assert_eq!(store.put(&id, &bytes, b"c")?, PutOutcome::Stored);
        assert_eq!(store.delete(&id, b"a")?, DeleteOutcome::NotOwner);
        assert_eq!(store.get(&other)?, Some(other_bytes));
        Ok(())
    }

    #[test]
    fn a_full_store_refuses_with_the_numbers() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1500));
        let (a, a_bytes) = shard(1000, 1);
        let (b, b_bytes) = shard(1000, 2);
        store.put(&a, &a_bytes, b"a")?;
        let err = store.put(&b, &b_bytes, b"a").err();
        assert!(
            matches!(
                err,
                Some(StoreError::QuotaExceeded {
                    used: 1000,
                    max: 1500,
                    needed: 1000
                })
            ),
            "{err:?}"
        );
        // Still serves what it has.
        assert_eq!(store.get(&a)?, Some(a_bytes));
        Ok(())
    }
}
