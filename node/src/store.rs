//! Shards this node holds for others, in the `shards` column family of the node database.
//!
//! Shards are keyed by their id and verified against it on the way in and on the way
//! out: a shard that does not hash to its id is refused on receipt and reported as
//! corrupt on read, never served. Every write is synced before it is acknowledged;
//! concurrent puts are synced together (RocksDB group commit), not one after another, and
//! the shards of one batch are written unsynced and then made durable by one sync of the
//! log ([`Durability::Deferred`], [`ShardStore::sync`]) before any is acknowledged.
//!
//! Every shard has a small row in `shard_info` (its length, and whether a read found it
//! corrupt), written and deleted in the same atomic batch as its bytes. Whatever a peer
//! can ask without fetching (`has`, `delete`, a put of a shard already held, binding a
//! claim to a file) is answered from that row and the claim rows, never by reading shard
//! bytes: with BlobDB, even a point lookup of a shard reads its whole value. Only
//! [`ShardStore::get`] and the removal of a copy a read already found corrupt read shard
//! bytes ([`ShardStore::value_bytes_read`] counts them).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use datamesh_core::{FileId, ShardId};
use rocksdb::{DB, ReadOptions, ReadTier, WriteBatch, WriteOptions};

use crate::db::{CF_META, CF_OWNERS, CF_SHARD_INFO, CF_SHARDS, DbError, cf};

const USED_BYTES_KEY: &[u8] = b"used_bytes";
const SHARD_COUNT_KEY: &[u8] = b"shard_count";
/// Room in a shard's write batch beyond its bytes and owner key: the batch header, the
/// other rows and each row's tag and lengths (under 200 bytes).
const BATCH_ROWS_SIZE: usize = 256;
/// Ids [`ShardStore::has_each`] looks up in one batch: a `Has` may name up to
/// [`datamesh_core::wire::MAX_IDS`], and each id of a batch holds a pinned result until
/// the batch is done.
const HAS_BATCH: usize = 1024;

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

/// What binding a claim to a file found ([`ShardStore::bind_claim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// The claim is bound to this file (now, or already).
    Bound,
    /// The caller holds no claim on this shard here.
    NoClaim,
    /// The caller's claim is bound to another file.
    OtherFile,
}

/// When a shard's write is made durable ([`ShardStore::put_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Synced before the put returns.
    Synced,
    /// Only once the caller's [`ShardStore::sync`] after it returns: for a batch of shards
    /// acknowledged together, after one synced write instead of one each.
    Deferred,
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
///
/// Puts do not hold a lock across their synced write, so the writes of concurrent Store
/// requests are synced together by RocksDB's group commit. The quota stays exact: a put
/// reserves its bytes in the `Ledger` (under a short lock) before writing and gives
/// them back if the write fails; the persisted counters change by merge deltas in the
/// same atomic batch as the shard, so they need no read-modify-write.
#[derive(Debug)]
pub struct ShardStore {
    db: Arc<DB>,
    config: StoreConfig,
    /// Loaded on first use. Held only for checks and bookkeeping, and by the rare
    /// deletes across their write (so no put claims a shard that is being deleted).
    ledger: Mutex<Option<Ledger>>,
    /// Signalled when a put's write ends (for a put of the same id waiting on it).
    written: Condvar,
    /// Bytes of shard values read from the database since the store was opened.
    value_bytes_read: AtomicU64,
    /// Synced writes and syncs since the store was opened.
    syncs: AtomicU64,
}

/// A shard's `shard_info` row: its length (what the quota counted) and whether a read
/// found it corrupt. 9 bytes: length (u64 BE), state (0 as stored, 1 found corrupt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShardInfo {
    len: u64,
    corrupt: bool,
}

impl ShardInfo {
    fn to_bytes(self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[..8].copy_from_slice(&self.len.to_be_bytes());
        out[8] = u8::from(self.corrupt);
        out
    }

    /// A row of another length reads as a corrupt shard of length 0: it is still held
    /// (`has`), never served, and any peer may have it removed.
    fn from_bytes(bytes: &[u8]) -> Self {
        match <[u8; 9]>::try_from(bytes) {
            Ok(b) => Self {
                len: u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                corrupt: b[8] != 0,
            },
            Err(_) => Self {
                len: 0,
                corrupt: true,
            },
        }
    }
}

/// Bytes in use, counting the puts being written; the ids being written; the corrupt
/// copies being read again before their removal.
#[derive(Debug)]
struct Ledger {
    used: u64,
    writing: HashSet<ShardId>,
    removing: HashSet<ShardId>,
}

type LedgerGuard<'a> = MutexGuard<'a, Option<Ledger>>;

impl ShardStore {
    /// The shard store of a database opened with [`crate::db::open`].
    pub fn new(db: Arc<DB>, config: StoreConfig) -> Self {
        Self {
            db,
            config,
            ledger: Mutex::new(None),
            written: Condvar::new(),
            value_bytes_read: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// Synced writes and syncs this store made since it was opened, each a flush of the
    /// disk's cache: what a request costs the disk beside its bytes.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Bytes of shard values read from the database since the store was opened: what
    /// fetches (and the removal of corrupt copies) cost in reads. Requests answered from
    /// the small rows (`has`, `delete`, ...) never add to it.
    pub fn value_bytes_read(&self) -> u64 {
        self.value_bytes_read.load(Ordering::Relaxed)
    }

    /// Reads a shard's bytes, counted in [`Self::value_bytes_read`].
    fn read_value(&self, id: &ShardId) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, StoreError> {
        let value = self.db.get_pinned_cf(self.cf(CF_SHARDS)?, id.as_bytes())?;
        if let Some(v) = &value {
            self.value_bytes_read
                .fetch_add(v.len() as u64, Ordering::Relaxed);
        }
        Ok(value)
    }

    /// A shard's info row: a point lookup of 9 bytes, never of the shard's bytes.
    fn info(&self, id: &ShardId) -> Result<Option<ShardInfo>, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_SHARD_INFO)?, id.as_bytes())?
            .map(|v| ShardInfo::from_bytes(&v)))
    }

    /// Records that a read found the shard corrupt, if it is still held (under the lock,
    /// so that a concurrent delete does not leave an info row without a shard).
    fn mark_corrupt(&self, id: &ShardId) -> Result<(), StoreError> {
        let _guard = self.lock();
        if let Some(info) = self.info(id)?.filter(|i| !i.corrupt) {
            let marked = ShardInfo {
                corrupt: true,
                ..info
            };
            self.db
                .put_cf(self.cf(CF_SHARD_INFO)?, id.as_bytes(), marked.to_bytes())?;
        }
        Ok(())
    }

    fn lock(&self) -> LedgerGuard<'_> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ledger under `guard`, loaded from the persisted counter on first use.
    fn ledger<'a>(&self, guard: &'a mut LedgerGuard<'_>) -> Result<&'a mut Ledger, StoreError> {
        let ledger = match guard.take() {
            Some(ledger) => ledger,
            None => Ledger {
                used: self.used_bytes()?,
                writing: HashSet::new(),
                removing: HashSet::new(),
            },
        };
        Ok(guard.insert(ledger))
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
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

    /// Ids of every shard held, in id order.
    ///
    /// # Errors
    /// [`StoreError::Db`] on a read failure.
    pub fn ids(&self) -> Result<Vec<ShardId>, StoreError> {
        let info = self.cf(CF_SHARD_INFO)?;
        let mut ids = Vec::new();
        for item in self.db.iterator_cf(info, rocksdb::IteratorMode::Start) {
            let (key, _) = item?;
            if let Ok(bytes) = <[u8; 32]>::try_from(&key[..]) {
                ids.push(ShardId::from_bytes(bytes));
            }
        }
        Ok(ids)
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
        self.put_for(id, bytes, owner, None)
    }

    /// [`Self::put`], `owner`'s claim bound to `file` if given (a repair's store, so the
    /// owner's removal of the file drops the claim, `Self::release_for_file`). A claim of
    /// `owner` already there and not bound is bound; one bound to another file stays so.
    ///
    /// # Errors
    /// As [`Self::put`].
    pub fn put_for(
        &self,
        id: &ShardId,
        bytes: &[u8],
        owner: &[u8],
        file: Option<&FileId>,
    ) -> Result<PutOutcome, StoreError> {
        self.put_with(id, bytes, owner, file, Durability::Synced)
    }

    /// Makes every write before it durable (syncs the write-ahead log): what
    /// [`Self::put_with`] wrote with [`Durability::Deferred`] is then as safe as a synced
    /// write.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn sync(&self) -> Result<(), StoreError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// [`Self::put_for`], its write made durable now or by the caller's [`Self::sync`].
    ///
    /// # Errors
    /// As [`Self::put`].
    pub fn put_with(
        &self,
        id: &ShardId,
        bytes: &[u8],
        owner: &[u8],
        file: Option<&FileId>,
        durability: Durability,
    ) -> Result<PutOutcome, StoreError> {
        if ShardId::of(bytes) != *id {
            return Err(StoreError::Mismatch { id: *id });
        }
        let shards = self.cf(CF_SHARDS)?;
        let info = self.cf(CF_SHARD_INFO)?;
        let owners = self.cf(CF_OWNERS)?;
        let meta = self.cf(CF_META)?;
        let owner_key = owner_key(id, owner);
        let binding: &[u8] = file.map_or(&[], |f| f.as_bytes());
        let needed = bytes.len() as u64;
        {
            let mut guard = self.lock();
            // The same shard from another owner, being written now: wait for that write
            // to end (it is bounded by the disk), then look again.
            while self.ledger(&mut guard)?.writing.contains(id) {
                guard = self.written.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            if self.info(id)?.is_some() {
                // Under the lock: a delete cannot drop the shard between the check and
                // this claim. A claim already bound keeps its file binding.
                let held = self.db.get_pinned_cf(owners, &owner_key)?;
                if held.is_none_or(|bound| bound.is_empty() && !binding.is_empty()) {
                    self.db.put_cf(owners, owner_key, binding)?;
                }
                return Ok(PutOutcome::AlreadyHeld);
            }
            let ledger = self.ledger(&mut guard)?;
            if ledger.used.saturating_add(needed) > self.config.max_bytes {
                return Err(StoreError::QuotaExceeded {
                    used: ledger.used,
                    max: self.config.max_bytes,
                    needed,
                });
            }
            ledger.used += needed;
            ledger.writing.insert(*id);
        }
        // Sized up front: grown by doubling, the batch would copy the shard again at each
        // step (benches/PROFILE.md).
        let mut batch =
            WriteBatch::with_capacity_bytes(bytes.len() + owner_key.len() + BATCH_ROWS_SIZE);
        batch.put_cf(shards, id.as_bytes(), bytes);
        let row = ShardInfo {
            len: needed,
            corrupt: false,
        };
        batch.put_cf(info, id.as_bytes(), row.to_bytes());
        batch.put_cf(owners, owner_key, binding);
        batch.merge_cf(meta, USED_BYTES_KEY, needed.to_be_bytes());
        batch.merge_cf(meta, SHARD_COUNT_KEY, 1u64.to_be_bytes());
        let written = self.write(batch, durability);
        {
            let mut guard = self.lock();
            if let Some(ledger) = guard.as_mut() {
                ledger.writing.remove(id);
                if written.is_err() {
                    ledger.used = ledger.used.saturating_sub(needed);
                }
            }
        }
        self.written.notify_all();
        written.map(|()| PutOutcome::Stored)
    }

    /// Writes `batch`, which replaces a value of `old_len` bytes that is not a shard (a key
    /// envelope) with one of `new_len` bytes, counting the difference against the quota
    /// like shard bytes, in the same write, made durable as `durability` says. The caller
    /// serialises replacements of one value.
    ///
    /// # Errors
    /// [`StoreError::QuotaExceeded`] if the growth does not fit; [`StoreError::Db`].
    pub fn write_counted(
        &self,
        mut batch: WriteBatch,
        old_len: u64,
        new_len: u64,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        let grows = new_len.saturating_sub(old_len);
        if grows > 0 {
            let mut guard = self.lock();
            let ledger = self.ledger(&mut guard)?;
            if ledger.used.saturating_add(grows) > self.config.max_bytes {
                return Err(StoreError::QuotaExceeded {
                    used: ledger.used,
                    max: self.config.max_bytes,
                    needed: grows,
                });
            }
            ledger.used += grows;
        }
        batch.merge_cf(
            meta,
            USED_BYTES_KEY,
            new_len.wrapping_sub(old_len).to_be_bytes(),
        );
        let written = self.write(batch, durability);
        let mut guard = self.lock();
        if let Some(ledger) = guard.as_mut() {
            match (&written, grows > 0) {
                (Err(_), true) => ledger.used = ledger.used.saturating_sub(grows),
                (Ok(()), false) => {
                    ledger.used = ledger.used.saturating_sub(old_len - new_len);
                }
                _ => {}
            }
        }
        written
    }

    /// A shard of at most `max_len` bytes read from memory only (the memtables and
    /// RocksDB's caches) and verified against its id, as [`Self::get`] does. `None` when
    /// the read would go to the disk (a shard flushed to a blob file), for a larger shard,
    /// and for anything but an intact copy: the caller then reads it with [`Self::get`],
    /// which also marks a corrupt copy. Cheap enough for a task that must not block.
    pub fn get_from_memory(&self, id: &ShardId, max_len: usize) -> Option<Vec<u8>> {
        let mut options = ReadOptions::default();
        options.set_read_tier(ReadTier::BlockCache);
        let cf = self.cf(CF_SHARDS).ok()?;
        let value = self
            .db
            .get_pinned_cf_opt(cf, id.as_bytes(), &options)
            .ok()??;
        if value.len() > max_len || ShardId::of(&value) != *id {
            return None;
        }
        self.value_bytes_read
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        Some(value.to_vec())
    }

    /// Reads a shard and verifies it against its id. A copy found corrupt is marked so,
    /// which lets any peer have it removed ([`Self::remove_corrupt`]).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the stored bytes no longer match (or are missing while
    /// the shard's info row says it is held); [`StoreError::Db`].
    pub fn get(&self, id: &ShardId) -> Result<Option<Vec<u8>>, StoreError> {
        let intact = match self.read_value(id)? {
            Some(bytes) if ShardId::of(&bytes) == *id => return Ok(Some(bytes.to_vec())),
            Some(_) => false,
            None => self.info(id)?.is_none(),
        };
        if intact {
            return Ok(None);
        }
        self.mark_corrupt(id)?;
        Err(StoreError::Corrupt { id: *id })
    }

    /// Whether the shard is held: one point lookup of its info row, without reading or
    /// verifying the shard (a copy held but corrupt is still held; a fetch says it is
    /// corrupt).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn has(&self, id: &ShardId) -> Result<bool, StoreError> {
        Ok(self.info(id)?.is_some())
    }

    /// [`Self::has`] for each of `ids`, in their order: RocksDB's batched lookup, a
    /// batch of at most [`HAS_BATCH`] ids at a time. A `Has` of a 256-stripe file asks a
    /// holder about 256 ids; one point lookup each took a quarter of a holder's CPU while
    /// such files were opened (benches/PROFILE.md, session 31).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn has_each(&self, ids: &[ShardId]) -> Result<Vec<bool>, StoreError> {
        let info = self.cf(CF_SHARD_INFO)?;
        let mut held = Vec::with_capacity(ids.len());
        for batch in ids.chunks(HAS_BATCH) {
            // Bytewise order, as RocksDB's comparator: said when true (a get's `Has` asks
            // in that order), else RocksDB sorts the batch itself.
            let sorted = batch.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes());
            let keys = batch.iter().map(ShardId::as_bytes);
            for found in self.db.batched_multi_get_cf(info, keys, sorted) {
                held.push(found?.is_some());
            }
        }
        Ok(held)
    }

    /// Whether a read found the held copy corrupt (one point lookup, no read of bytes).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn found_corrupt(&self, id: &ShardId) -> Result<bool, StoreError> {
        Ok(self.info(id)?.is_some_and(|i| i.corrupt))
    }

    /// Withdraws `owner`'s claim on a shard and deletes it when no owner is left. A
    /// caller without a claim costs two point lookups of small rows: no lock, no read of
    /// the shard. With a claim, the store-wide lock is held for a few small lookups and
    /// the synced write, never for a read or a hash of the shard.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn delete(&self, id: &ShardId, owner: &[u8]) -> Result<DeleteOutcome, StoreError> {
        let owners = self.cf(CF_OWNERS)?;
        let key = owner_key(id, owner);
        if self.db.get_pinned_cf(owners, &key)?.is_none() {
            return Ok(if self.has(id)? {
                DeleteOutcome::NotOwner
            } else {
                DeleteOutcome::NotHeld
            });
        }
        let mut guard = self.lock();
        let Some(info) = self.info(id)? else {
            return Ok(DeleteOutcome::NotHeld);
        };
        if self.db.get_pinned_cf(owners, &key)?.is_none() {
            return Ok(DeleteOutcome::NotOwner);
        }
        // Stops at the first other owner: one or two keys read.
        let shared = self
            .db
            .prefix_iterator_cf(owners, id.as_bytes())
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(id.as_bytes()))
            .any(|(k, _)| k[..] != key[..]);
        let mut batch = WriteBatch::default();
        batch.delete_cf(owners, &key);
        if !shared {
            self.drop_shard(&mut batch, id, info.len)?;
        }
        self.write_synced(batch)?;
        if !shared {
            let ledger = self.ledger(&mut guard)?;
            ledger.used = ledger.used.saturating_sub(info.len);
        }
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
    /// Budgeted: only a copy a read already found corrupt ([`Self::get`] marks it) is
    /// read and hashed again here, outside the store-wide lock, by one removal at a time;
    /// any other copy, or the same one while it is being read, costs a point lookup. A
    /// copy found intact after all loses its mark, so a peer cannot make the node read a
    /// shard more than once per corruption a read found.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn remove_corrupt(&self, id: &ShardId) -> Result<bool, StoreError> {
        if !self.found_corrupt(id)? {
            return Ok(false);
        }
        {
            // One removal at a time reads a given copy: others asking meanwhile get no.
            let mut guard = self.lock();
            if !self.found_corrupt(id)? || !self.ledger(&mut guard)?.removing.insert(*id) {
                return Ok(false);
            }
        }
        let intact = self
            .read_value(id)
            .map(|v| v.is_some_and(|bytes| ShardId::of(&bytes) == *id));
        let mut guard = self.lock();
        self.ledger(&mut guard)?.removing.remove(id);
        // Still the copy marked when the read began (a delete and a fresh put meanwhile
        // would have left an unmarked row).
        let Some(info) = self.info(id)?.filter(|i| i.corrupt) else {
            return Ok(false);
        };
        if intact? {
            // Marked by a read that raced a delete and a fresh put: clear the mark.
            let row = ShardInfo {
                corrupt: false,
                ..info
            };
            self.db
                .put_cf(self.cf(CF_SHARD_INFO)?, id.as_bytes(), row.to_bytes())?;
            return Ok(false);
        }
        let owners = self.cf(CF_OWNERS)?;
        let mut batch = WriteBatch::default();
        for (key, _) in self
            .db
            .prefix_iterator_cf(owners, id.as_bytes())
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(id.as_bytes()))
        {
            batch.delete_cf(owners, key);
        }
        self.drop_shard(&mut batch, id, info.len)?;
        self.write_synced(batch)?;
        let ledger = self.ledger(&mut guard)?;
        ledger.used = ledger.used.saturating_sub(info.len);
        Ok(true)
    }

    /// Binds `owner`'s claim on a shard to `file` (the file the owner says the shard
    /// belongs to), unless it is bound to another file already. A claim backs the
    /// announcement of one file only, so a peer gets no more announcements out of this
    /// node than shards it stored here. Point lookups and one small write.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn bind_claim(
        &self,
        id: &ShardId,
        owner: &[u8],
        file: &FileId,
    ) -> Result<BindOutcome, StoreError> {
        let owners = self.cf(CF_OWNERS)?;
        let key = owner_key(id, owner);
        // Under the lock: a delete cannot drop the claim between the check and the write.
        let _guard = self.lock();
        let Some(bound) = self.db.get_pinned_cf(owners, &key)? else {
            return Ok(BindOutcome::NoClaim);
        };
        if bound[..] == file.as_bytes()[..] {
            return Ok(BindOutcome::Bound);
        }
        if !bound.is_empty() {
            return Ok(BindOutcome::OtherFile);
        }
        drop(bound);
        self.db.put_cf(owners, &key, file.as_bytes())?;
        Ok(BindOutcome::Bound)
    }

    /// Whether `owner` has a claim on the blob `id` (it stored it, or renewed it under
    /// the file owner's signed order). One small lookup, no lock.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn has_claim(&self, id: &ShardId, owner: &[u8]) -> Result<bool, StoreError> {
        let owners = self.cf(CF_OWNERS)?;
        Ok(self
            .db
            .get_pinned_cf(owners, owner_key(id, owner))?
            .is_some())
    }

    /// Gives `owner` a claim on a blob held (as a put of the same bytes would, without
    /// the bytes); returns whether the blob is held. A claim already there keeps its file
    /// binding. Under the store-wide lock: two small lookups, at most one small write.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn claim_held(&self, id: &ShardId, owner: &[u8]) -> Result<bool, StoreError> {
        let owners = self.cf(CF_OWNERS)?;
        let key = owner_key(id, owner);
        let _guard = self.lock();
        if self.info(id)?.is_none() {
            return Ok(false);
        }
        if self.db.get_pinned_cf(owners, &key)?.is_none() {
            self.db.put_cf(owners, key, [])?;
        }
        Ok(true)
    }

    /// The owner's removal of `file` (its signature checked by the caller): drops, on one
    /// blob, `claimant`'s claim and every claim bound to `file`, and the blob itself when
    /// no claim is left (its bytes given back to the quota). Claims bound to another file,
    /// and unbound claims of other peers, stay: a removal signed for one file cannot take
    /// a shard another file still claims. Under the store-wide lock: the blob's claim rows
    /// read (one per peer that stored it), one synced write; never a read of the blob.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn release_for_file(
        &self,
        id: &ShardId,
        claimant: &[u8],
        file: &FileId,
    ) -> Result<DeleteOutcome, StoreError> {
        self.release(id, |key, bound| {
            key[id.as_bytes().len()..] == *claimant || bound == file.as_bytes()
        })
    }

    /// The owner's removal of `file` on its manifest blob (the blob whose id is the file
    /// id): every claim goes, whoever made it and whether bound or not. Nobody can make
    /// another blob under that id, and the removal was checked against its bytes, so no
    /// other file is concerned. As [`Self::release_for_file`] otherwise.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn release_manifest(&self, file: &FileId) -> Result<DeleteOutcome, StoreError> {
        self.release(&ShardId::from_bytes(*file.as_bytes()), |_, _| true)
    }

    /// Drops the claims on `id` that `drop(claim key, binding)` picks, and the blob when
    /// no claim is left.
    fn release(
        &self,
        id: &ShardId,
        drop: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Result<DeleteOutcome, StoreError> {
        let owners = self.cf(CF_OWNERS)?;
        let mut guard = self.lock();
        let Some(info) = self.info(id)? else {
            return Ok(DeleteOutcome::NotHeld);
        };
        let mut batch = WriteBatch::default();
        let (mut dropped, mut left) = (0usize, 0usize);
        for (key, bound) in self
            .db
            .prefix_iterator_cf(owners, id.as_bytes())
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(id.as_bytes()))
        {
            if drop(&key, &bound) {
                batch.delete_cf(owners, key);
                dropped += 1;
            } else {
                left += 1;
            }
        }
        if dropped == 0 {
            return Ok(DeleteOutcome::NotOwner);
        }
        if left == 0 {
            self.drop_shard(&mut batch, id, info.len)?;
        }
        self.write_synced(batch)?;
        if left > 0 {
            return Ok(DeleteOutcome::StillShared);
        }
        let ledger = self.ledger(&mut guard)?;
        ledger.used = ledger.used.saturating_sub(info.len);
        Ok(DeleteOutcome::Deleted)
    }

    /// Adds to `batch` the removal of a shard of `len` bytes and its share of the
    /// counters. The caller holds the ledger's lock.
    fn drop_shard(&self, batch: &mut WriteBatch, id: &ShardId, len: u64) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        batch.delete_cf(self.cf(CF_SHARDS)?, id.as_bytes());
        batch.delete_cf(self.cf(CF_SHARD_INFO)?, id.as_bytes());
        batch.merge_cf(meta, USED_BYTES_KEY, len.wrapping_neg().to_be_bytes());
        batch.merge_cf(meta, SHARD_COUNT_KEY, 1u64.wrapping_neg().to_be_bytes());
        Ok(())
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StoreError> {
        match durability {
            Durability::Synced => self.write_synced(batch),
            Durability::Deferred => self.db.write(batch).map_err(StoreError::from),
        }
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
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
        let _guard = self.lock();
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
    fn shards_written_unsynced_and_then_synced_survive_reopen_with_their_accounting() -> TestResult
    {
        let dir = tempfile::tempdir()?;
        let shards: Vec<_> = (1..=4).map(|seed| shard(50_000, seed)).collect();
        {
            let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(150_000));
            for (id, bytes) in &shards[..3] {
                assert_eq!(
                    store.put_with(id, bytes, b"a", None, Durability::Deferred)?,
                    PutOutcome::Stored
                );
            }
            // The quota holds for unsynced writes as for synced ones.
            let (id, bytes) = &shards[3];
            assert!(matches!(
                store.put_with(id, bytes, b"a", None, Durability::Deferred),
                Err(StoreError::QuotaExceeded { .. })
            ));
            assert!(matches!(
                store.put_with(&shards[0].0, &shards[1].1, b"a", None, Durability::Deferred),
                Err(StoreError::Mismatch { .. })
            ));
            store.sync()?;
        }
        // Reopened from the log alone (no flush): every synced shard is there.
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(150_000));
        for (id, bytes) in &shards[..3] {
            assert_eq!(store.get(id)?.as_deref(), Some(&bytes[..]));
        }
        assert_eq!(store.used_bytes()?, 150_000);
        assert_eq!(store.shard_count()?, 3);
        assert_eq!(store.delete(&shards[0].0, b"a")?, DeleteOutcome::Deleted);
        Ok(())
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
        let mut both = vec![small, big];
        both.sort_by_key(|id| *id.as_bytes());
        assert_eq!(store.ids()?, both);
        assert_eq!(store.delete(&big, b"stranger")?, DeleteOutcome::NotOwner);
        assert_eq!(store.delete(&big, b"a")?, DeleteOutcome::StillShared);
        assert!(store.has(&big)?);
        assert_eq!(store.delete(&big, b"a")?, DeleteOutcome::NotOwner);
        assert_eq!(store.delete(&big, b"b")?, DeleteOutcome::Deleted);
        assert_eq!(store.delete(&big, b"b")?, DeleteOutcome::NotHeld);
        assert_eq!(store.get(&big)?, None);
        assert_eq!(store.used_bytes()?, 100);
        assert_eq!(store.ids()?, vec![small]);
        Ok(())
    }

    #[test]
    fn batched_lookups_answer_as_one_lookup_each() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 30));
        // Held ids in table files (flushed) and in the memtable, beside absent ones, more
        // than one batch of them, asked in bytewise order and in another.
        let held: Vec<ShardId> = (0..1_500u32)
            .map(|i| {
                let bytes = i.to_le_bytes().repeat(16);
                let id = ShardId::of(&bytes);
                store.put(&id, &bytes, b"a").map(|_| id)
            })
            .collect::<Result<_, _>>()?;
        store.flush()?;
        let late = shard(3_000, 13);
        store.put(&late.0, &late.1, b"a")?;
        let mut asked: Vec<ShardId> = held.iter().step_by(2).copied().collect();
        asked.push(late.0);
        asked.extend((0..1_400u32).map(|i| ShardId::of(&i.to_be_bytes())));
        let one_each = |ids: &[ShardId]| -> Result<Vec<bool>, StoreError> {
            ids.iter().map(|id| store.has(id)).collect()
        };
        assert!(asked.len() > 2 * HAS_BATCH);
        let expected = one_each(&asked)?;
        assert_eq!(expected.iter().filter(|h| **h).count(), 751);
        assert_eq!(store.has_each(&asked)?, expected);
        asked.sort_unstable_by_key(|id| *id.as_bytes());
        assert_eq!(store.has_each(&asked)?, one_each(&asked)?);
        asked.reverse();
        assert_eq!(store.has_each(&asked)?, one_each(&asked)?);
        assert_eq!(store.has_each(&[])?, Vec::<bool>::new());
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
    fn a_small_shard_is_read_from_memory_until_it_is_flushed_and_nothing_else_is() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 30));
        let limit = 64 * 1024;
        let (small, small_bytes) = shard(10_000, 3);
        let (big, big_bytes) = shard(100_000, 4);
        let (spoilt, spoilt_bytes) = shard(1000, 5);
        for (id, bytes) in [
            (&small, &small_bytes),
            (&big, &big_bytes),
            (&spoilt, &spoilt_bytes),
        ] {
            store.put(id, bytes, b"a")?;
        }
        assert_eq!(
            store.get_from_memory(&small, limit),
            Some(small_bytes.clone())
        );
        // Past the size asked for, not held, or not matching its id: left to `get`, which
        // marks the corrupt copy.
        assert_eq!(store.get_from_memory(&big, limit), None);
        assert_eq!(
            store.get_from_memory(&big, big_bytes.len()),
            Some(big_bytes)
        );
        assert_eq!(
            store.get_from_memory(&ShardId::of(b"not held"), limit),
            None
        );
        assert!(store.corrupt_for_test(&spoilt)?);
        assert_eq!(store.get_from_memory(&spoilt, limit), None);
        assert!(matches!(
            store.get(&spoilt),
            Err(StoreError::Corrupt { .. })
        ));
        // Flushed into a blob file, the shard is on the disk only: not read here.
        store.flush()?;
        assert_eq!(store.get_from_memory(&small, limit), None);
        assert_eq!(store.get(&small)?, Some(small_bytes));
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

    #[test]
    fn parallel_puts_never_exceed_the_quota_and_keep_exact_counters() -> TestResult {
        let dir = tempfile::tempdir()?;
        // Room for 25 shards of 1000 bytes (and a half): 80 offered at once.
        let quota = 25_500;
        let (threads, per_thread) = (8usize, 10usize);
        {
            let store = Arc::new(ShardStore::new(
                crate::db::open(dir.path())?,
                StoreConfig::new(quota),
            ));
            let results: Vec<Result<PutOutcome, StoreError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let store = Arc::clone(&store);
                        scope.spawn(move || {
                            (0..per_thread)
                                .map(|i| {
                                    let mut bytes = vec![0u8; 1000];
                                    bytes[..8]
                                        .copy_from_slice(&((t * 1000 + i) as u64).to_be_bytes());
                                    store.put(&ShardId::of(&bytes), &bytes, b"owner")
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            assert_eq!(results.len(), threads * per_thread);
            let stored = results
                .iter()
                .filter(|r| matches!(r, Ok(PutOutcome::Stored)))
                .count();
            let refused = results
                .iter()
                .filter(|r| matches!(r, Err(StoreError::QuotaExceeded { .. })))
                .count();
            // Every shard is the same size, so the quota admits exactly 25, whatever the
            // interleaving; each refusal saw at most the quota in use.
            assert_eq!((stored, refused), (25, threads * per_thread - 25));
            for r in &results {
                if let Err(StoreError::QuotaExceeded { used, max, needed }) = r {
                    assert!(*used <= *max && used + needed > *max, "{r:?}");
                }
            }
            assert_eq!(store.used_bytes()?, 25_000);
            assert_eq!(store.shard_count()?, 25);
        }
        // The counters persisted with the shards, exactly.
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(quota));
        assert_eq!((store.used_bytes()?, store.shard_count()?), (25_000, 25));
        let (extra, extra_bytes) = shard(500, 13);
        assert_eq!(store.put(&extra, &extra_bytes, b"o")?, PutOutcome::Stored);
        let (more, more_bytes) = shard(1, 17);
        assert!(matches!(
            store.put(&more, &more_bytes, b"o"),
            Err(StoreError::QuotaExceeded { used: 25_500, .. })
        ));
        assert_eq!(store.delete(&extra, b"o")?, DeleteOutcome::Deleted);
        assert_eq!((store.used_bytes()?, store.shard_count()?), (25_000, 25));
        assert_eq!(store.put(&more, &more_bytes, b"o")?, PutOutcome::Stored);
        Ok(())
    }

    #[test]
    fn the_same_shard_put_at_once_by_many_owners_is_stored_and_counted_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(ShardStore::new(
            crate::db::open(dir.path())?,
            StoreConfig::new(1 << 20),
        ));
        let (id, bytes) = shard(200_000, 3);
        let owners: Vec<Vec<u8>> = (0..6u8).map(|o| vec![b'p', o]).collect();
        let results: Vec<Result<PutOutcome, StoreError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = owners
                .iter()
                .map(|owner| {
                    let (store, bytes) = (Arc::clone(&store), &bytes);
                    scope.spawn(move || store.put(&id, bytes, owner))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StoreError::Mismatch {
                            id: ShardId::of(b""),
                        })
                    })
                })
                .collect()
        });
        let stored = results
            .iter()
            .filter(|r| matches!(r, Ok(PutOutcome::Stored)))
            .count();
        let held = results
            .iter()
            .filter(|r| matches!(r, Ok(PutOutcome::AlreadyHeld)))
            .count();
        assert_eq!((stored, held), (1, owners.len() - 1), "{results:?}");
        assert_eq!((store.used_bytes()?, store.shard_count()?), (200_000, 1));
        // Every owner's claim was recorded: the shard goes with the last one.
        for owner in &owners[1..] {
            assert_eq!(store.delete(&id, owner)?, DeleteOutcome::StillShared);
        }
        assert_eq!(store.delete(&id, &owners[0])?, DeleteOutcome::Deleted);
        assert_eq!((store.used_bytes()?, store.shard_count()?), (0, 0));
        Ok(())
    }

    #[test]
    fn has_delete_and_a_repeated_put_never_read_shard_bytes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 30));
        let (big, big_bytes) = shard(4 << 20, 3);
        store.put(&big, &big_bytes, b"owner")?;
        store.flush()?; // into a blob file, where a lookup of the value reads it all
        for _ in 0..1000 {
            assert!(store.has(&big)?);
        }
        assert!(!store.has(&ShardId::of(b"absent"))?);
        assert_eq!(store.delete(&big, b"stranger")?, DeleteOutcome::NotOwner);
        assert!(!store.remove_corrupt(&big)?);
        assert_eq!(
            store.put(&big, &big_bytes, b"other")?,
            PutOutcome::AlreadyHeld
        );
        let file = FileId::of_manifest(b"m");
        assert_eq!(store.bind_claim(&big, b"owner", &file)?, BindOutcome::Bound);
        assert_eq!(store.ids()?, vec![big]);
        assert_eq!(store.value_bytes_read(), 0);
        // A fetch reads it (once), and so does nothing else.
        assert_eq!(store.get(&big)?.map(|b| b.len()), Some(4 << 20));
        assert_eq!(store.value_bytes_read(), 4 << 20);
        assert_eq!(store.delete(&big, b"other")?, DeleteOutcome::StillShared);
        assert_eq!(store.delete(&big, b"owner")?, DeleteOutcome::Deleted);
        assert_eq!(store.value_bytes_read(), 4 << 20);
        assert_eq!((store.used_bytes()?, store.shard_count()?), (0, 0));
        assert!(!store.has(&big)?);
        Ok(())
    }

    #[test]
    fn only_a_copy_a_read_found_corrupt_is_read_again_to_remove_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 30));
        let (id, bytes) = shard(1 << 20, 5);
        store.put(&id, &bytes, b"a")?;
        assert!(store.corrupt_for_test(&id)?);
        // Corrupt, but no read found it so yet: a request to remove it costs nothing and
        // removes nothing, however often it comes.
        for _ in 0..100 {
            assert!(!store.remove_corrupt(&id)?);
        }
        assert_eq!(store.value_bytes_read(), 0);
        assert!(matches!(store.get(&id), Err(StoreError::Corrupt { .. })));
        assert!(store.found_corrupt(&id)?);
        assert_eq!(store.value_bytes_read(), 1 << 20);
        // Removed after one more read; then it is gone and costs nothing again.
        assert!(store.remove_corrupt(&id)?);
        assert!(!store.remove_corrupt(&id)?);
        assert_eq!(store.value_bytes_read(), 2 << 20);
        assert!(!store.has(&id)?);
        assert_eq!((store.used_bytes()?, store.shard_count()?), (0, 0));
        Ok(())
    }

    #[test]
    fn a_mark_on_an_intact_copy_is_cleared_not_obeyed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 20));
        let (id, bytes) = shard(1000, 7);
        store.put(&id, &bytes, b"a")?;
        // As a read racing a delete and a fresh put of the same bytes would leave it.
        store.db.put_cf(
            store.cf(CF_SHARD_INFO)?,
            id.as_bytes(),
            ShardInfo {
                len: 1000,
                corrupt: true,
            }
            .to_bytes(),
        )?;
        assert!(!store.remove_corrupt(&id)?);
        assert!(!store.found_corrupt(&id)?);
        assert_eq!(store.get(&id)?, Some(bytes));
        Ok(())
    }

    #[test]
    fn a_claim_backs_the_announcement_of_one_file_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::new(crate::db::open(dir.path())?, StoreConfig::new(1 << 20));
        let (id, bytes) = shard(100, 9);
        let (f1, f2) = (FileId::of_manifest(b"1"), FileId::of_manifest(b"2"));
        assert_eq!(store.bind_claim(&id, b"a", &f1)?, BindOutcome::NoClaim);
        store.put(&id, &bytes, b"a")?;
        assert_eq!(store.bind_claim(&id, b"b", &f1)?, BindOutcome::NoClaim);
        assert_eq!(store.bind_claim(&id, b"a", &f1)?, BindOutcome::Bound);
        assert_eq!(store.bind_claim(&id, b"a", &f1)?, BindOutcome::Bound);
        assert_eq!(store.bind_claim(&id, b"a", &f2)?, BindOutcome::OtherFile);
        // Storing the shard again does not free the claim for another file.
        assert_eq!(store.put(&id, &bytes, b"a")?, PutOutcome::AlreadyHeld);
        assert_eq!(store.bind_claim(&id, b"a", &f2)?, BindOutcome::OtherFile);
        // Once the claim is gone, so is what it backed.
        assert_eq!(store.delete(&id, b"a")?, DeleteOutcome::Deleted);
        assert_eq!(store.bind_claim(&id, b"a", &f1)?, BindOutcome::NoClaim);
        Ok(())
    }
}
