//! The node's Kademlia value records and provider records, kept in RocksDB so that they
//! survive a restart: [`PersistentStore`], a [`RecordStore`] for `kad::Behaviour`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use datamesh_node::records::{PersistentStore, PersistentStoreConfig};
//! use libp2p::{StreamProtocol, identity::Keypair, kad};
//!
//! let db = datamesh_node::db::open(std::path::Path::new("/var/lib/datamesh/db"))?;
//! let local_id = Keypair::generate_ed25519().public().to_peer_id();
//! let store = PersistentStore::new(local_id, db, PersistentStoreConfig::default())?;
//! let config = kad::Config::new(StreamProtocol::new("/datamesh/kad/1.0.0"));
//! let kademlia = kad::Behaviour::with_config(local_id, store, config);
//! # let _ = kademlia;
//! # Ok(()) }
//! ```
//!
//! # Gotchas
//! - **Writes are not fsynced.** Every mutation goes to RocksDB's WAL with a plain write
//!   (no `fsync`), so a crash of the machine (not just of the process) may lose the last
//!   few. That is deliberate: records and provider records are soft state that Kademlia
//!   republishes (the publisher re-puts its records, providers re-announce), so losing a
//!   few is cheaper than syncing on the swarm's thread for each of them.
//! - **Writes happen on the caller's thread.** `kad::Behaviour` calls the store from the
//!   swarm task; an unsynced write is a memtable insert plus a WAL append (microseconds),
//!   but a RocksDB write stall would stall the swarm with it.
//! - **A failed write is logged, not returned**: [`RecordStore`]'s error type has no I/O
//!   variant. The in-memory view stays authoritative for the running process; what could
//!   not be written is simply absent (or, for a failed delete, present again until it
//!   expires) after the next restart.
//! - **Everything is also held in memory** (reads never touch the disk): the worst case
//!   is about `max_records × max_value_bytes` of values (4 GiB with the defaults; the
//!   node sets 4,096 × 16 KiB) plus `max_remote_providers` provider records of other
//!   peers (each at most [`MAX_ADDRESSES_PER_RECORD`] addresses of [`MAX_ADDRESS_LEN`]
//!   bytes: about 0.5 KiB, 64 MiB with the defaults) plus this node's own.
//! - **Other peers' providers per key are first come, first kept**, as in libp2p-kad's
//!   own `MemoryStore` since 0.46.1 (Sybil resistance: peers grinding ids close to a key
//!   cannot evict honest providers): a new provider is ignored while the key is full,
//!   until one is removed or expires.
//! - **Other peers cannot crowd out this node's own records**: one peer has at most
//!   `max_records_per_provider` records here, all of them at most `max_remote_providers`
//!   on at most `max_provided_keys` keys, while this node's own records have a capacity
//!   of their own (`max_local_provided`) and always get a place in a key's list, full or
//!   not (they are the ones the node must re-announce).
//! - **Expiry is honoured**: an expired record is never stored or returned; expired
//!   records of other peers are purged when a limit is reached (at most every
//!   [`PURGE_EVERY`]), and at load.
//!
//! # Rows
//! Both column families are owned by this module (see [`crate::db`]). Values start with a
//! format version byte (`1`) followed by a postcard-encoded private row struct;
//! expiries are stored as absolute wall-clock times (unix milliseconds) and converted
//! back to the monotonic clock at load, where expired rows are dropped.
//!
//! | column family   | key                                                   | value                                              |
//! |-----------------|-------------------------------------------------------|----------------------------------------------------|
//! | `kad_records`   | record key                                            | `1`, postcard(value, publisher peer id, expiry)    |
//! | `kad_providers` | u32 BE length of record key, record key, provider id  | `1`, postcard(expiry, provider's multiaddrs)       |
//!
//! A row that does not decode (or names an invalid peer id or address) is skipped with a
//! warning and deleted at load; it never panics and never fails the load. Rows beyond the
//! configured limits (after the limits were lowered) are dropped and deleted too.
//!
//! # Parts
//! - this file: [`PersistentStore`], the in-memory view and the [`RecordStore`] rules;
//! - `config.rs`: [`PersistentStoreConfig`], the limits;
//! - `rows.rs`: the row formats, the write-through half (`Rows`) and the load;
//! - `clock.rs`: expiries between the monotonic and the wall clock.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, hash_map, hash_set};
use std::fmt;
use std::iter;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::store::{self, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use rocksdb::{DB, WriteBatch};
use tracing::{debug, warn};

use crate::db::DbError;

mod clock;
mod config;
mod rows;

use clock::Clock;
pub use config::{
    DEFAULT_MAX_LOCAL_PROVIDED, DEFAULT_MAX_PROVIDED_KEYS, DEFAULT_MAX_RECORDS,
    DEFAULT_MAX_RECORDS_PER_PROVIDER, DEFAULT_MAX_REMOTE_PROVIDERS, DEFAULT_MAX_VALUE_BYTES,
    MAX_ADDRESS_LEN, MAX_ADDRESSES_PER_RECORD, PersistentStoreConfig,
};
use rows::{Rows, delete_provider_row, load_providers, load_records};

/// Expired records of other peers are purged at most this often (a purge scans them all).
pub const PURGE_EVERY: Duration = Duration::from_secs(30);

/// A Kademlia [`RecordStore`] with `MemoryStore`'s semantics whose contents survive a
/// restart: an in-memory cache serves every read; every mutation is written through to
/// the `kad_records` / `kad_providers` column families (unsynced, see the
/// [module docs](self)), and [`PersistentStore::new`] loads them back.
pub struct PersistentStore {
    local_id: PeerId,
    config: PersistentStoreConfig,
    rows: Rows,
    records: HashMap<RecordKey, Record>,
    /// Per key: in insertion order (after a reload, this node's own first, then in row
    /// order); never empty.
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    /// The records of `providers` whose provider is the local peer; kept in sync with it.
    provided: HashSet<ProviderRecord>,
    /// Counts of the records of other peers in `providers`.
    remote: RemoteCounts,
    /// When expired records were last purged.
    last_purge: Option<Instant>,
}

/// How many provider records of other peers are held: in all, keys with any, per peer.
#[derive(Debug, Default)]
struct RemoteCounts {
    records: usize,
    keys: usize,
    per_provider: HashMap<PeerId, usize>,
}

/// What happened to a provider record offered to the store.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Kept (new, or replacing the same provider's record for the key).
    Kept,
    /// Not kept, not an error (a full key, a peer with too many records).
    Ignored,
}

impl fmt::Debug for PersistentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentStore")
            .field("local_id", &self.local_id)
            .field("config", &self.config)
            .field("records", &self.records.len())
            .field("provider_keys", &self.providers.len())
            .field("provided", &self.provided.len())
            .finish_non_exhaustive()
    }
}

impl PersistentStore {
    /// Loads the store of `local_id` from a database opened with [`crate::db::open`],
    /// dropping (and deleting) expired, corrupt and over-limit rows.
    ///
    /// # Errors
    /// [`DbError::Rocks`] if reading or deleting rows fails,
    /// [`DbError::MissingColumnFamily`] if `db` was not opened by [`crate::db::open`].
    /// A row that does not decode is not an error (it is logged and deleted).
    pub fn new(
        local_id: PeerId,
        db: Arc<DB>,
        config: PersistentStoreConfig,
    ) -> Result<Self, DbError> {
        let clock = Clock::now();
        let mut doomed = WriteBatch::default();
        let records = load_records(&db, &config, &clock, &mut doomed)?;
        let mut loaded = load_providers(&db, &clock, &mut doomed)?;
        let mut store = Self {
            local_id,
            config,
            rows: Rows {
                db: Arc::clone(&db),
            },
            records,
            providers: HashMap::new(),
            provided: HashSet::new(),
            remote: RemoteCounts::default(),
            last_purge: None,
        };
        // The limits, in case they were lowered since the rows were written: this node's
        // own records first (they are the ones it must re-announce).
        loaded.sort_by_key(|p| p.provider != local_id);
        let mut excess = 0;
        for record in loaded {
            if !matches!(store.admit(record.clone()), Ok(Admission::Kept)) {
                excess += 1;
                delete_provider_row(&db, &record, &mut doomed)?;
            }
        }
        if excess > 0 {
            warn!(
                rows = excess,
                "dropping kad provider records beyond the configured limits"
            );
        }
        if !doomed.is_empty() {
            debug!(rows = doomed.len(), "deleting dropped kad rows");
            db.write(doomed)?;
        }
        debug!(
            records = store.records.len(),
            provider_keys = store.providers.len(),
            provided = store.provided.len(),
            "loaded kad record store"
        );
        Ok(store)
    }

    /// Puts `record` in the in-memory view if the limits allow (no row is written).
    ///
    /// # Errors
    /// `MaxProvidedKeys` when this node's own records, other peers' records or their
    /// keys are at their limit.
    fn admit(&mut self, record: ProviderRecord) -> store::Result<Admission> {
        let local = record.provider == self.local_id;
        let list = self.providers.get_mut(&record.key);
        let same = list
            .as_ref()
            .and_then(|l| l.iter().position(|p| p.provider == record.provider));
        if let (Some(list), Some(i)) = (list, same) {
            // In-place update of an existing provider record (same place).
            if local {
                self.provided.replace(record.clone());
            }
            list[i] = record;
            return Ok(Admission::Kept);
        }
        let theirs = self.providers.get(&record.key).map_or(0, |l| {
            l.iter().filter(|p| p.provider != self.local_id).count()
        });
        let config = &self.config;
        if local {
            if self.provided.len() >= config.max_local_provided {
                return Err(store::Error::MaxProvidedKeys);
            }
            // Always a place, full key or not.
            self.provided.insert(record.clone());
        } else {
            let remote = &mut self.remote;
            if remote.records >= config.max_remote_providers
                || (theirs == 0 && remote.keys >= config.max_provided_keys)
            {
                return Err(store::Error::MaxProvidedKeys);
            }
            let of_provider = remote.per_provider.get(&record.provider).copied();
            if theirs >= config.max_providers_per_key
                || of_provider.unwrap_or(0) >= config.max_records_per_provider
            {
                // Full: ignore the newcomer (Sybil mitigation, as `MemoryStore`).
                return Ok(Admission::Ignored);
            }
            remote.records += 1;
            remote.keys += usize::from(theirs == 0);
            *remote.per_provider.entry(record.provider).or_default() += 1;
        }
        self.providers
            .entry(record.key.clone())
            .or_default()
            .push(record);
        Ok(Admission::Kept)
    }

    /// Removes expired provider records of other peers (rows too), at most every
    /// [`PURGE_EVERY`]; whether it ran.
    fn purge_expired(&mut self, now: Instant) -> bool {
        if self
            .last_purge
            .is_some_and(|at| now.saturating_duration_since(at) < PURGE_EVERY)
        {
            return false;
        }
        self.last_purge = Some(now);
        let expired: Vec<(RecordKey, PeerId)> = self
            .providers
            .values()
            .flatten()
            .filter(|p| p.provider != self.local_id && p.is_expired(now))
            .map(|p| (p.key.clone(), p.provider))
            .collect();
        for (key, provider) in &expired {
            self.remove_provider(key, provider);
        }
        true
    }
}

/// Trims a provider record's addresses to the limits (the first ones that fit).
fn trim_addresses(record: &mut ProviderRecord) {
    record
        .addresses
        .retain(|a| a.as_ref().len() <= MAX_ADDRESS_LEN);
    record.addresses.truncate(MAX_ADDRESSES_PER_RECORD);
}

impl RecordStore for PersistentStore {
    type RecordsIter<'a> =
        iter::Map<hash_map::Values<'a, RecordKey, Record>, fn(&'a Record) -> Cow<'a, Record>>;

    type ProvidedIter<'a> = iter::Map<
        hash_set::Iter<'a, ProviderRecord>,
        fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
    >;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(k).map(Cow::Borrowed)
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        if r.value.len() >= self.config.max_value_bytes {
            return Err(store::Error::ValueTooLarge);
        }
        if !self.records.contains_key(&r.key) && self.records.len() >= self.config.max_records {
            return Err(store::Error::MaxRecords);
        }
        self.rows.put_record(&r, &Clock::now());
        self.records.insert(r.key.clone(), r);
        Ok(())
    }

    fn remove(&mut self, k: &RecordKey) {
        if self.records.remove(k).is_some() {
            self.rows.delete_record(k);
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.values().map(Cow::Borrowed)
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> store::Result<()> {
        let now = Instant::now();
        if record.is_expired(now) {
            return Ok(());
        }
        trim_addresses(&mut record);
        let outcome = match self.admit(record.clone()) {
            Err(_) | Ok(Admission::Ignored) if self.purge_expired(now) => {
                self.admit(record.clone())
            }
            outcome => outcome,
        };
        if outcome? == Admission::Kept {
            self.rows.put_provider(&record, &Clock::now());
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let now = Instant::now();
        self.providers
            .get(key)
            .map(|list| {
                list.iter()
                    .filter(|p| !p.is_expired(now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.provided.iter().map(Cow::Borrowed)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if let hash_map::Entry::Occupied(mut e) = self.providers.entry(key.clone()) {
            let providers = e.get_mut();
            if let Some(i) = providers.iter().position(|p| &p.provider == provider) {
                let p = providers.remove(i);
                self.rows.delete_provider(&p);
                if p.provider == self.local_id {
                    self.provided.remove(&p);
                } else {
                    let remote = &mut self.remote;
                    remote.records = remote.records.saturating_sub(1);
                    if !providers.iter().any(|q| q.provider != self.local_id) {
                        remote.keys = remote.keys.saturating_sub(1);
                    }
                    if let hash_map::Entry::Occupied(mut n) = remote.per_provider.entry(p.provider)
                    {
                        *n.get_mut() -= 1;
                        if *n.get() == 0 {
                            n.remove();
                        }
                    }
                }
            }
            if providers.is_empty() {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests;
