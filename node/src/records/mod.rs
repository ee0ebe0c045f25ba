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
//!   is about `max_records × max_value_bytes` of values (4 GiB with the defaults) plus
//!   `max_provided_keys × max_providers_per_key` provider records.
//! - **Providers per key are first come, first kept**, as in libp2p-kad's own
//!   `MemoryStore` since 0.46.1 (Sybil resistance: peers grinding ids close to a key
//!   cannot evict honest providers): a new provider is ignored while the key is full,
//!   until one is removed or expires.
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

use libp2p::PeerId;
use libp2p::kad::store::{self, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use rocksdb::{DB, WriteBatch};
use tracing::debug;

use crate::db::DbError;

mod clock;
mod config;
mod rows;

use clock::Clock;
pub use config::{
    DEFAULT_MAX_PROVIDED_KEYS, DEFAULT_MAX_RECORDS, DEFAULT_MAX_VALUE_BYTES, PersistentStoreConfig,
};
use rows::{Rows, load_providers, load_records};

/// A Kademlia [`RecordStore`] with `MemoryStore`'s semantics whose contents survive a
/// restart: an in-memory cache serves every read; every mutation is written through to
/// the `kad_records` / `kad_providers` column families (unsynced, see the
/// [module docs](self)), and [`PersistentStore::new`] loads them back.
pub struct PersistentStore {
    local_id: PeerId,
    config: PersistentStoreConfig,
    rows: Rows,
    records: HashMap<RecordKey, Record>,
    /// Per key: in insertion order (after a reload, in row order); never empty.
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    /// The records of `providers` whose provider is the local peer; kept in sync with it.
    provided: HashSet<ProviderRecord>,
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
        let providers = load_providers(&db, &config, &clock, &local_id, &mut doomed)?;
        let provided = providers
            .values()
            .flatten()
            .filter(|p| p.provider == local_id)
            .cloned()
            .collect::<HashSet<_>>();
        if !doomed.is_empty() {
            debug!(rows = doomed.len(), "deleting dropped kad rows");
            db.write(doomed)?;
        }
        debug!(
            records = records.len(),
            provider_keys = providers.len(),
            provided = provided.len(),
            "loaded kad record store"
        );
        Ok(Self {
            local_id,
            config,
            rows: Rows { db },
            records,
            providers,
            provided,
        })
    }
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

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        let num_keys = self.providers.len();
        let providers = match self.providers.entry(record.key.clone()) {
            hash_map::Entry::Occupied(e) => e.into_mut(),
            hash_map::Entry::Vacant(e) => {
                if num_keys >= self.config.max_provided_keys {
                    return Err(store::Error::MaxProvidedKeys);
                }
                if self.config.max_providers_per_key == 0 {
                    return Ok(());
                }
                e.insert(Vec::new())
            }
        };
        if let Some(p) = providers.iter_mut().find(|p| p.provider == record.provider) {
            // In-place update of an existing provider record (same place).
            self.rows.put_provider(&record, &Clock::now());
            if record.provider == self.local_id {
                self.provided.replace(record.clone());
            }
            *p = record;
            return Ok(());
        }
        if providers.len() >= self.config.max_providers_per_key {
            // Full: ignore the newcomer (Sybil mitigation, as `MemoryStore`).
            return Ok(());
        }
        providers.push(record.clone());
        self.rows.put_provider(&record, &Clock::now());
        if record.provider == self.local_id {
            self.provided.insert(record);
        }
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers.get(key).cloned().unwrap_or_default()
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
