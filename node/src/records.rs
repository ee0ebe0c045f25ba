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
//! - **Providers per key are first come, first kept** by default, as in libp2p-kad's own
//!   `MemoryStore` since 0.46.1 (Sybil resistance); [`ProviderPolicy::KeepClosest`] keeps
//!   the closest instead (see there).
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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, hash_map, hash_set};
use std::fmt;
use std::iter;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::kad::store::{self, RecordStore};
use libp2p::kad::{K_VALUE, KBucketDistance, KBucketKey, ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};
use rocksdb::{ColumnFamily, DB, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::db::{CF_KAD_PROVIDERS, CF_KAD_RECORDS, DbError, cf};

/// Default for [`PersistentStoreConfig::with_max_records`].
pub const DEFAULT_MAX_RECORDS: usize = 65_536;
/// Default for [`PersistentStoreConfig::with_max_value_bytes`].
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Default for [`PersistentStoreConfig::with_max_provided_keys`].
pub const DEFAULT_MAX_PROVIDED_KEYS: usize = 1_000_000;

/// The version byte that starts every row value written by this module.
const FORMAT_V1: u8 = 1;

/// Expiries further away than this are pulled in to it at load (no record lives that
/// long; a corrupt far-future expiry must not overflow [`Instant`]).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Which providers of a key are kept once it has `max_providers_per_key` of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderPolicy {
    /// The ones that came first: a new provider is ignored while the key is full (until
    /// one is removed or expires). What libp2p-kad's `MemoryStore` does since 0.46.1, so
    /// that peers grinding ids close to a key cannot evict honest providers.
    #[default]
    KeepFirst,
    /// The ones whose peer ids are closest to the key (XOR of their Kademlia keys): a
    /// closer newcomer evicts the farthest. What the [`RecordStore`] trait documentation
    /// suggests and `MemoryStore` did before 0.46.1; cheap ids make it Sybil-prone.
    KeepClosest,
}

/// Limits of a [`PersistentStore`]: much larger than `MemoryStore`'s defaults, still
/// bounded (everything is also held in memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentStoreConfig {
    max_records: usize,
    max_value_bytes: usize,
    max_providers_per_key: usize,
    max_provided_keys: usize,
    provider_policy: ProviderPolicy,
}

impl Default for PersistentStoreConfig {
    fn default() -> Self {
        Self {
            max_records: DEFAULT_MAX_RECORDS,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_providers_per_key: K_VALUE.get(),
            max_provided_keys: DEFAULT_MAX_PROVIDED_KEYS,
            provider_policy: ProviderPolicy::KeepFirst,
        }
    }
}

impl PersistentStoreConfig {
    /// The most value records held; a put of a new key beyond it fails with
    /// `MaxRecords`. Default [`DEFAULT_MAX_RECORDS`] (65 536).
    #[must_use]
    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    /// Values of this many bytes *or more* are refused with `ValueTooLarge` (the bound
    /// is exclusive, as in `MemoryStore`). Default [`DEFAULT_MAX_VALUE_BYTES`] (64 KiB).
    #[must_use]
    pub fn with_max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// The most providers kept per key; should match Kademlia's replication factor.
    /// Default [`K_VALUE`] (20).
    #[must_use]
    pub fn with_max_providers_per_key(mut self, max_providers_per_key: usize) -> Self {
        self.max_providers_per_key = max_providers_per_key;
        self
    }

    /// The most distinct keys with provider records (anyone's, not only this node's:
    /// `MemoryStore`'s name, `MemoryStore`'s meaning); a provider for a new key beyond it
    /// fails with `MaxProvidedKeys`. Default [`DEFAULT_MAX_PROVIDED_KEYS`] (1 000 000:
    /// the node provides one key per stored file, per holder).
    #[must_use]
    pub fn with_max_provided_keys(mut self, max_provided_keys: usize) -> Self {
        self.max_provided_keys = max_provided_keys;
        self
    }

    /// Which providers of a full key are kept. Default [`ProviderPolicy::KeepFirst`].
    #[must_use]
    pub fn with_provider_policy(mut self, provider_policy: ProviderPolicy) -> Self {
        self.provider_policy = provider_policy;
        self
    }

    /// See [`Self::with_max_records`].
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// See [`Self::with_max_value_bytes`].
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// See [`Self::with_max_providers_per_key`].
    pub fn max_providers_per_key(&self) -> usize {
        self.max_providers_per_key
    }

    /// See [`Self::with_max_provided_keys`].
    pub fn max_provided_keys(&self) -> usize {
        self.max_provided_keys
    }

    /// See [`Self::with_provider_policy`].
    pub fn provider_policy(&self) -> ProviderPolicy {
        self.provider_policy
    }
}

/// A Kademlia [`RecordStore`] with `MemoryStore`'s semantics whose contents survive a
/// restart: an in-memory cache serves every read; every mutation is written through to
/// the `kad_records` / `kad_providers` column families (unsynced, see the
/// [module docs](self)), and [`PersistentStore::new`] loads them back.
pub struct PersistentStore {
    local_key: KBucketKey<PeerId>,
    config: PersistentStoreConfig,
    rows: Rows,
    records: HashMap<RecordKey, Record>,
    /// Per key: in insertion order ([`ProviderPolicy::KeepFirst`]; after a reload, in row
    /// order) or nearest first ([`ProviderPolicy::KeepClosest`]); never empty.
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    /// The records of `providers` whose provider is the local peer; kept in sync with it.
    provided: HashSet<ProviderRecord>,
}

impl fmt::Debug for PersistentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentStore")
            .field("local_id", self.local_key.preimage())
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
            local_key: KBucketKey::from(local_id),
            config,
            rows: Rows { db },
            records,
            providers,
            provided,
        })
    }

    /// The limits this store was opened with.
    pub fn config(&self) -> &PersistentStoreConfig {
        &self.config
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
        let local_id = self.local_key.preimage();

        if let Some(p) = providers.iter_mut().find(|p| p.provider == record.provider) {
            // In-place update of an existing provider record (same distance, same place).
            self.rows.put_provider(&record, None, &Clock::now());
            if record.provider == *local_id {
                self.provided.replace(record.clone());
            }
            *p = record;
            return Ok(());
        }

        let evicted = if providers.len() < self.config.max_providers_per_key {
            let at = match self.config.provider_policy {
                ProviderPolicy::KeepFirst => providers.len(),
                ProviderPolicy::KeepClosest => {
                    let target = KBucketKey::new(record.key.clone());
                    let d = distance(&record.provider, &target);
                    providers.partition_point(|p| distance(&p.provider, &target) < d)
                }
            };
            providers.insert(at, record.clone());
            None
        } else {
            match self.config.provider_policy {
                // Full: ignore the newcomer (Sybil mitigation, as `MemoryStore`).
                ProviderPolicy::KeepFirst => return Ok(()),
                ProviderPolicy::KeepClosest => {
                    let target = KBucketKey::new(record.key.clone());
                    let d = distance(&record.provider, &target);
                    let at = providers.partition_point(|p| distance(&p.provider, &target) < d);
                    if at >= providers.len() {
                        return Ok(());
                    }
                    providers.insert(at, record.clone());
                    providers.pop()
                }
            }
        };

        self.rows
            .put_provider(&record, evicted.as_ref(), &Clock::now());
        if record.provider == *local_id {
            self.provided.insert(record);
        }
        if let Some(evicted) = evicted
            && evicted.provider == *local_id
        {
            self.provided.remove(&evicted);
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
                if &p.provider == self.local_key.preimage() {
                    self.provided.remove(&p);
                }
            }
            if providers.is_empty() {
                e.remove();
            }
        }
    }
}

fn distance(peer: &PeerId, target: &KBucketKey<RecordKey>) -> KBucketDistance {
    KBucketKey::from(*peer).distance(target)
}

/// The write-through half: turns mutations into RocksDB writes and logs failures.
struct Rows {
    db: Arc<DB>,
}

impl Rows {
    fn cf(&self, name: &str) -> Option<&ColumnFamily> {
        cf(&self.db, name)
            .inspect_err(|error| warn!(%error, "kad record store cannot write"))
            .ok()
    }

    /// A plain write: WAL, no fsync (see the module docs).
    fn commit(&self, batch: WriteBatch, what: &str) {
        if let Err(error) = self.db.write(batch) {
            warn!(%error, "could not persist {what}; it is kept in memory until restart");
        }
    }

    fn put_record(&self, record: &Record, clock: &Clock) {
        let Some(cf) = self.cf(CF_KAD_RECORDS) else {
            return;
        };
        let row = RecordRow {
            value: record.value.clone(),
            publisher: record.publisher.map(|p| p.to_bytes()),
            expires_unix_ms: record.expires.map(|t| clock.unix_ms(t)),
        };
        match encode(&row) {
            Ok(bytes) => {
                let mut batch = WriteBatch::default();
                batch.put_cf(cf, record.key.as_ref(), bytes);
                self.commit(batch, "a kad record");
            }
            Err(error) => warn!(%error, "could not encode a kad record"),
        }
    }

    fn delete_record(&self, key: &RecordKey) {
        let Some(cf) = self.cf(CF_KAD_RECORDS) else {
            return;
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf, key.as_ref());
        self.commit(batch, "a kad record removal");
    }

    /// Writes `record` and, in the same batch, deletes `evicted`.
    fn put_provider(
        &self,
        record: &ProviderRecord,
        evicted: Option<&ProviderRecord>,
        clock: &Clock,
    ) {
        let Some(cf) = self.cf(CF_KAD_PROVIDERS) else {
            return;
        };
        let row = ProviderRow {
            expires_unix_ms: record.expires.map(|t| clock.unix_ms(t)),
            addresses: record.addresses.iter().map(Multiaddr::to_vec).collect(),
        };
        match encode(&row) {
            Ok(bytes) => {
                let mut batch = WriteBatch::default();
                batch.put_cf(cf, provider_row_key(&record.key, &record.provider), bytes);
                if let Some(evicted) = evicted {
                    batch.delete_cf(cf, provider_row_key(&evicted.key, &evicted.provider));
                }
                self.commit(batch, "a kad provider record");
            }
            Err(error) => warn!(%error, "could not encode a kad provider record"),
        }
    }

    fn delete_provider(&self, record: &ProviderRecord) {
        let Some(cf) = self.cf(CF_KAD_PROVIDERS) else {
            return;
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf, provider_row_key(&record.key, &record.provider));
        self.commit(batch, "a kad provider record removal");
    }
}

/// One `kad_records` row value (after the version byte); the row key is the record key.
#[derive(Debug, Serialize, Deserialize)]
struct RecordRow {
    value: Vec<u8>,
    publisher: Option<Vec<u8>>,
    expires_unix_ms: Option<u64>,
}

/// One `kad_providers` row value (after the version byte); the row key names the record
/// key and the provider.
#[derive(Debug, Serialize, Deserialize)]
struct ProviderRow {
    expires_unix_ms: Option<u64>,
    addresses: Vec<Vec<u8>>,
}

/// Why a row was skipped at load.
#[derive(Debug, thiserror::Error)]
enum RowError {
    #[error("empty value")]
    Empty,
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("undecodable value: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("invalid peer id: {0}")]
    PeerId(#[from] libp2p::identity::ParseError),
    #[error("non-canonical peer id")]
    NonCanonicalPeerId,
    #[error("invalid address: {0}")]
    Multiaddr(#[from] libp2p::multiaddr::Error),
    #[error("malformed provider row key")]
    ProviderKey,
}

fn encode<T: Serialize>(row: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(row, vec![FORMAT_V1])
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, RowError> {
    let (&version, rest) = bytes.split_first().ok_or(RowError::Empty)?;
    if version != FORMAT_V1 {
        return Err(RowError::Version(version));
    }
    let (row, rest) = postcard::take_from_bytes(rest)?;
    if !rest.is_empty() {
        return Err(RowError::Trailing(rest.len()));
    }
    Ok(row)
}

fn peer_id(bytes: &[u8]) -> Result<PeerId, RowError> {
    let peer = PeerId::from_bytes(bytes)?;
    // The row key must be recomputable from the record, or it could never be deleted.
    if peer.to_bytes() != bytes {
        return Err(RowError::NonCanonicalPeerId);
    }
    Ok(peer)
}

/// `u32` BE length of the record key, the record key, the provider's peer id: the
/// providers of one key are adjacent, and the split is unambiguous.
fn provider_row_key(key: &RecordKey, provider: &PeerId) -> Vec<u8> {
    let key = key.as_ref();
    let peer = provider.to_bytes();
    // Kademlia keys come in packets of a few KiB; a 4 GiB key would make an undecodable
    // row, dropped at the next load.
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + key.len() + peer.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&peer);
    out
}

fn split_provider_row_key(raw: &[u8]) -> Result<(RecordKey, PeerId), RowError> {
    let (len, rest) = raw.split_first_chunk::<4>().ok_or(RowError::ProviderKey)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| RowError::ProviderKey)?;
    if rest.len() < len {
        return Err(RowError::ProviderKey);
    }
    let (key, peer) = rest.split_at(len);
    Ok((RecordKey::from(key.to_vec()), peer_id(peer)?))
}

/// A decoded row, or `None` if it has expired.
fn decode_record(key: &[u8], value: &[u8], clock: &Clock) -> Result<Option<Record>, RowError> {
    let row: RecordRow = decode(value)?;
    let publisher = row.publisher.as_deref().map(peer_id).transpose()?;
    let expires = match row.expires_unix_ms {
        None => None,
        Some(ms) => match clock.instant(ms) {
            None => return Ok(None),
            some => some,
        },
    };
    Ok(Some(Record {
        key: RecordKey::from(key.to_vec()),
        value: row.value,
        publisher,
        expires,
    }))
}

/// A decoded row, or `None` if it has expired.
fn decode_provider(
    key: &[u8],
    value: &[u8],
    clock: &Clock,
) -> Result<Option<ProviderRecord>, RowError> {
    let (key, provider) = split_provider_row_key(key)?;
    let row: ProviderRow = decode(value)?;
    let addresses = row
        .addresses
        .into_iter()
        .map(Multiaddr::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let expires = match row.expires_unix_ms {
        None => None,
        Some(ms) => match clock.instant(ms) {
            None => return Ok(None),
            some => some,
        },
    };
    Ok(Some(ProviderRecord {
        key,
        provider,
        expires,
        addresses,
    }))
}

/// The first bytes of a row key in hex, for logs.
struct Short<'a>(&'a [u8]);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(16) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 16 {
            f.write_str("..")?;
        }
        Ok(())
    }
}

fn load_records(
    db: &DB,
    config: &PersistentStoreConfig,
    clock: &Clock,
    doomed: &mut WriteBatch,
) -> Result<HashMap<RecordKey, Record>, DbError> {
    let cf = cf(db, CF_KAD_RECORDS)?;
    let mut records = HashMap::new();
    for row in db.iterator_cf(cf, IteratorMode::Start) {
        let (key, value) = row?;
        match decode_record(&key, &value, clock) {
            Ok(Some(record))
                if record.value.len() < config.max_value_bytes
                    && records.len() < config.max_records =>
            {
                records.insert(record.key.clone(), record);
                continue;
            }
            Ok(Some(record)) => warn!(
                key = %Short(&key),
                value_bytes = record.value.len(),
                "dropping a kad record beyond the configured limits"
            ),
            Ok(None) => debug!(key = %Short(&key), "dropping an expired kad record"),
            Err(error) => {
                warn!(key = %Short(&key), %error, "skipping and deleting a corrupt kad record row")
            }
        }
        doomed.delete_cf(cf, &key);
    }
    Ok(records)
}

fn load_providers(
    db: &DB,
    config: &PersistentStoreConfig,
    clock: &Clock,
    local_id: &PeerId,
    doomed: &mut WriteBatch,
) -> Result<HashMap<RecordKey, Vec<ProviderRecord>>, DbError> {
    let cf = cf(db, CF_KAD_PROVIDERS)?;
    let mut providers: HashMap<RecordKey, Vec<ProviderRecord>> = HashMap::new();
    for row in db.iterator_cf(cf, IteratorMode::Start) {
        let (key, value) = row?;
        match decode_provider(&key, &value, clock) {
            Ok(Some(record)) => {
                providers
                    .entry(record.key.clone())
                    .or_default()
                    .push(record);
                continue;
            }
            Ok(None) => debug!(key = %Short(&key), "dropping an expired kad provider record"),
            Err(error) => {
                warn!(key = %Short(&key), %error, "skipping and deleting a corrupt kad provider row")
            }
        }
        doomed.delete_cf(cf, &key);
    }

    // The limits, in case they were lowered since the rows were written.
    let mut excess = Vec::new();
    for (key, list) in &mut providers {
        if config.provider_policy == ProviderPolicy::KeepClosest {
            let target = KBucketKey::new(key.clone());
            list.sort_by_cached_key(|p| distance(&p.provider, &target));
        }
        if list.len() > config.max_providers_per_key {
            excess.extend(list.drain(config.max_providers_per_key..));
        }
    }
    providers.retain(|_, list| !list.is_empty());
    if providers.len() > config.max_provided_keys {
        // Keep the keys this node provides itself first: they are the ones it must
        // re-announce.
        let mut keys = providers
            .iter()
            .map(|(key, list)| (!list.iter().any(|p| p.provider == *local_id), key.clone()))
            .collect::<Vec<_>>();
        keys.sort_by_key(|(foreign, _)| *foreign);
        for (_, key) in keys.into_iter().skip(config.max_provided_keys) {
            excess.extend(providers.remove(&key).unwrap_or_default());
        }
    }
    if !excess.is_empty() {
        warn!(
            rows = excess.len(),
            "dropping kad provider records beyond the configured limits"
        );
    }
    for record in excess {
        doomed.delete_cf(cf, provider_row_key(&record.key, &record.provider));
    }
    Ok(providers)
}

/// One reading of both clocks, to convert expiries between them.
#[derive(Clone, Copy, Debug)]
struct Clock {
    mono: Instant,
    unix_ms: u64,
}

impl Clock {
    fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, saturating_ms);
        Self {
            mono: Instant::now(),
            unix_ms,
        }
    }

    /// The wall-clock time (unix milliseconds) of the monotonic `at`.
    fn unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.mono) {
            Some(ahead) => self.unix_ms.saturating_add(saturating_ms(ahead)),
            None => self
                .unix_ms
                .saturating_sub(saturating_ms(self.mono.duration_since(at))),
        }
    }

    /// The monotonic time of the wall-clock `unix_ms`, `None` if it has passed
    /// (`Record::is_expired` is `now >= expires`).
    fn instant(&self, unix_ms: u64) -> Option<Instant> {
        let ahead = unix_ms.checked_sub(self.unix_ms).filter(|&ms| ms > 0)?;
        self.mono
            .checked_add(Duration::from_millis(ahead).min(MAX_TTL))
    }
}

fn saturating_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use libp2p::multiaddr::Protocol;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn open(
        dir: &Path,
        local_id: PeerId,
        config: PersistentStoreConfig,
    ) -> Result<PersistentStore, Box<dyn std::error::Error>> {
        Ok(PersistentStore::new(
            local_id,
            crate::db::open(dir)?,
            config,
        )?)
    }

    fn key(name: &str) -> RecordKey {
        RecordKey::new(&name)
    }

    fn addr(port: u16) -> Multiaddr {
        Multiaddr::empty()
            .with(Protocol::Ip4([127, 0, 0, 1].into()))
            .with(Protocol::Tcp(port))
    }

    fn in_an_hour() -> Result<Instant, &'static str> {
        Instant::now()
            .checked_add(Duration::from_secs(3600))
            .ok_or("clock overflow")
    }

    fn a_second_ago() -> Result<Instant, &'static str> {
        Instant::now()
            .checked_sub(Duration::from_secs(1))
            .ok_or("clock underflow")
    }

    /// Whether two expiries are the same up to the millisecond rounding and the time
    /// between the two clock readings of a save and a load.
    fn close(a: Option<Instant>, b: Option<Instant>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                let d = a
                    .checked_duration_since(b)
                    .or_else(|| b.checked_duration_since(a));
                d.is_some_and(|d| d < Duration::from_secs(2))
            }
            _ => false,
        }
    }

    fn provided_set(store: &PersistentStore) -> HashSet<(RecordKey, PeerId)> {
        store
            .provided()
            .map(|p| (p.key.clone(), p.provider))
            .collect()
    }

    #[test]
    fn records_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let publisher = PeerId::random();
        let mut full = Record::new(key("full"), b"first".to_vec());
        full.publisher = Some(publisher);
        full.expires = Some(in_an_hour()?);
        let bare = Record::new(key("bare"), Vec::new());
        let gone = Record::new(key("gone"), b"bye".to_vec());
        {
            let mut store = open(dir.path(), me, PersistentStoreConfig::default())?;
            store.put(Record::new(key("full"), b"to be replaced".to_vec()))?;
            store.put(full.clone())?;
            store.put(bare.clone())?;
            store.put(gone.clone())?;
            store.remove(&gone.key);
            store.remove(&key("never there"));
            assert_eq!(store.get(&full.key).as_deref(), Some(&full));
        }
        let mut store = open(dir.path(), me, PersistentStoreConfig::default())?;
        let got = store.get(&full.key).ok_or("full record lost")?.into_owned();
        assert_eq!(got.value, full.value);
        assert_eq!(got.publisher, Some(publisher));
        assert!(close(got.expires, full.expires), "{got:?} vs {full:?}");
        assert_eq!(store.get(&bare.key).as_deref(), Some(&bare));
        assert!(store.get(&gone.key).is_none());
        assert_eq!(store.records().count(), 2);

        store.remove(&bare.key);
        drop(store);
        let store = open(dir.path(), me, PersistentStoreConfig::default())?;
        assert!(store.get(&bare.key).is_none());
        assert_eq!(store.records().count(), 1);
        Ok(())
    }

    #[test]
    fn providers_and_provided_survive_reopen() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let other = PeerId::random();
        let (a, b) = (key("file a"), key("file b"));
        let mut mine_a = ProviderRecord::new(a.clone(), me, vec![addr(4001), addr(4002)]);
        mine_a.expires = Some(in_an_hour()?);
        let theirs_a = ProviderRecord::new(a.clone(), other, vec![addr(5001)]);
        let mine_b = ProviderRecord::new(b.clone(), me, Vec::new());
        {
            let mut store = open(dir.path(), me, PersistentStoreConfig::default())?;
            store.add_provider(ProviderRecord::new(a.clone(), me, Vec::new()))?;
            store.add_provider(mine_a.clone())?; // in-place update
            store.add_provider(theirs_a.clone())?;
            store.add_provider(mine_b.clone())?;
            assert_eq!(store.providers(&a).len(), 2);
        }
        let mut store = open(dir.path(), me, PersistentStoreConfig::default())?;
        let got = store.providers(&a);
        assert_eq!(got.len(), 2);
        let got_mine = got.iter().find(|p| p.provider == me).ok_or("mine lost")?;
        assert_eq!(got_mine.addresses, mine_a.addresses);
        assert!(close(got_mine.expires, mine_a.expires));
        let got_theirs = got
            .iter()
            .find(|p| p.provider == other)
            .ok_or("theirs lost")?;
        assert_eq!(got_theirs.addresses, theirs_a.addresses);
        assert_eq!(got_theirs.expires, None);
        assert_eq!(
            provided_set(&store),
            HashSet::from([(a.clone(), me), (b.clone(), me)])
        );
        // The provided set carries the full record, addresses included.
        let provided_a = store
            .provided()
            .find(|p| p.key == a)
            .ok_or("provided a lost")?
            .into_owned();
        assert_eq!(provided_a.addresses, mine_a.addresses);

        store.remove_provider(&a, &me);
        store.remove_provider(&b, &other); // not a provider of b: no-op
        assert_eq!(provided_set(&store), HashSet::from([(b.clone(), me)]));
        drop(store);
        let mut store = open(dir.path(), me, PersistentStoreConfig::default())?;
        assert_eq!(provided_set(&store), HashSet::from([(b.clone(), me)]));
        assert_eq!(store.providers(&a), vec![theirs_a.clone()]);
        store.remove_provider(&a, &other);
        assert!(store.providers(&a).is_empty());
        drop(store);
        let store = open(dir.path(), me, PersistentStoreConfig::default())?;
        assert!(store.providers(&a).is_empty());
        assert_eq!(store.providers(&b), vec![mine_b]);
        Ok(())
    }

    #[test]
    fn expiries_convert_between_clocks() -> TestResult {
        let clock = Clock {
            mono: Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
        let later = clock
            .mono
            .checked_add(Duration::from_millis(90_000))
            .ok_or("overflow")?;
        assert_eq!(clock.unix_ms(later), 1_700_000_090_000);
        assert_eq!(clock.instant(1_700_000_090_000), Some(later));
        if let Some(earlier) = clock.mono.checked_sub(Duration::from_millis(5_000)) {
            assert_eq!(clock.unix_ms(earlier), 1_699_999_995_000);
        }
        assert_eq!(clock.unix_ms(clock.mono), clock.unix_ms);
        // Now or past: expired.
        assert_eq!(clock.instant(clock.unix_ms), None);
        assert_eq!(clock.instant(0), None);
        // Absurdly far: capped, not overflowed.
        assert_eq!(clock.instant(u64::MAX), clock.mono.checked_add(MAX_TTL));
        // A later restart (clocks read again, 10 s on) sees the same absolute expiry.
        let restart = Clock {
            mono: clock
                .mono
                .checked_add(Duration::from_secs(10))
                .ok_or("overflow")?,
            unix_ms: clock.unix_ms + 10_000,
        };
        assert_eq!(restart.instant(clock.unix_ms(later)), Some(later));
        Ok(())
    }

    #[test]
    fn expired_rows_are_dropped_at_load() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let mut old = Record::new(key("old"), b"stale".to_vec());
        old.expires = Some(a_second_ago()?);
        let mut fresh = Record::new(key("fresh"), b"ok".to_vec());
        fresh.expires = Some(in_an_hour()?);
        let mut old_provider = ProviderRecord::new(key("old"), me, Vec::new());
        old_provider.expires = Some(a_second_ago()?);
        let db = crate::db::open(dir.path())?;
        {
            let mut store = PersistentStore::new(me, db.clone(), PersistentStoreConfig::default())?;
            // Like `MemoryStore`, the store itself accepts expired records (the behaviour
            // filters them).
            store.put(old.clone())?;
            store.put(fresh.clone())?;
            store.add_provider(old_provider.clone())?;
        }
        let store = PersistentStore::new(me, db.clone(), PersistentStoreConfig::default())?;
        assert!(store.get(&old.key).is_none());
        assert!(store.get(&fresh.key).is_some());
        assert!(store.providers(&old_provider.key).is_empty());
        assert_eq!(store.provided().count(), 0);
        // ... and deleted, not just skipped.
        assert!(
            db.get_cf(cf(&db, CF_KAD_RECORDS)?, old.key.as_ref())?
                .is_none()
        );
        let row = provider_row_key(&old_provider.key, &me);
        assert!(db.get_cf(cf(&db, CF_KAD_PROVIDERS)?, row)?.is_none());
        Ok(())
    }

    #[test]
    fn record_limits_are_enforced() -> TestResult {
        let dir = tempfile::tempdir()?;
        let config = PersistentStoreConfig::default()
            .with_max_records(2)
            .with_max_value_bytes(16);
        let mut store = open(dir.path(), PeerId::random(), config.clone())?;
        assert!(matches!(
            store.put(Record::new(key("big"), vec![0; 16])),
            Err(store::Error::ValueTooLarge)
        ));
        store.put(Record::new(key("a"), vec![0; 15]))?;
        store.put(Record::new(key("b"), Vec::new()))?;
        assert!(matches!(
            store.put(Record::new(key("c"), Vec::new())),
            Err(store::Error::MaxRecords)
        ));
        // Replacing an existing key is not a new record.
        store.put(Record::new(key("a"), b"new".to_vec()))?;
        store.remove(&key("b"));
        store.put(Record::new(key("c"), Vec::new()))?;
        assert_eq!(store.records().count(), 2);
        assert!(store.get(&key("big")).is_none());
        Ok(())
    }

    #[test]
    fn lowered_limits_drop_rows_at_load() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        {
            let mut store = open(dir.path(), me, PersistentStoreConfig::default())?;
            for i in 0..5 {
                store.put(Record::new(key(&format!("r{i}")), vec![0; 10 * i]))?;
                store.add_provider(ProviderRecord::new(
                    key(&format!("p{i}")),
                    PeerId::random(),
                    Vec::new(),
                ))?;
            }
            store.add_provider(ProviderRecord::new(key("p4"), me, Vec::new()))?;
        }
        let config = PersistentStoreConfig::default()
            .with_max_records(3)
            .with_max_value_bytes(35)
            .with_max_provided_keys(2);
        let store = open(dir.path(), me, config)?;
        assert_eq!(store.records().count(), 3);
        assert!(store.records().all(|r| r.value.len() < 35));
        let keys_with_providers = (0..5)
            .filter(|i| !store.providers(&key(&format!("p{i}"))).is_empty())
            .count();
        assert_eq!(keys_with_providers, 2);
        // The key this node provides is kept first.
        assert_eq!(provided_set(&store), HashSet::from([(key("p4"), me)]));
        drop(store);
        // What was dropped is gone for good.
        let store = open(dir.path(), me, PersistentStoreConfig::default())?;
        assert_eq!(store.records().count(), 3);
        Ok(())
    }

    #[test]
    fn provided_keys_limit_counts_keys() -> TestResult {
        let dir = tempfile::tempdir()?;
        let config = PersistentStoreConfig::default().with_max_provided_keys(2);
        let mut store = open(dir.path(), PeerId::random(), config)?;
        store.add_provider(ProviderRecord::new(key("a"), PeerId::random(), Vec::new()))?;
        store.add_provider(ProviderRecord::new(key("b"), PeerId::random(), Vec::new()))?;
        // More providers for a known key are fine ...
        store.add_provider(ProviderRecord::new(key("a"), PeerId::random(), Vec::new()))?;
        // ... a third key is not.
        let c = ProviderRecord::new(key("c"), PeerId::random(), Vec::new());
        assert!(matches!(
            store.add_provider(c.clone()),
            Err(store::Error::MaxProvidedKeys)
        ));
        // Removing a key's last provider frees its slot.
        let b = store.providers(&key("b"));
        for p in &b {
            store.remove_provider(&p.key, &p.provider);
        }
        store.add_provider(c)?;
        Ok(())
    }

    #[test]
    fn a_full_key_keeps_its_first_providers_by_default() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let config = PersistentStoreConfig::default().with_max_providers_per_key(3);
        let k = key("popular");
        let first: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        {
            let mut store = open(dir.path(), me, config.clone())?;
            for p in &first {
                store.add_provider(ProviderRecord::new(k.clone(), *p, Vec::new()))?;
            }
            // Ignored, not an error (Sybil mitigation), however close it is.
            store.add_provider(ProviderRecord::new(k.clone(), me, Vec::new()))?;
            assert_eq!(store.provided().count(), 0);
            // Existing providers still update in place.
            store.add_provider(ProviderRecord::new(k.clone(), first[1], vec![addr(7)]))?;
            let got: Vec<PeerId> = store.providers(&k).iter().map(|p| p.provider).collect();
            assert_eq!(got, first);
        }
        let store = open(dir.path(), me, config)?;
        let got: HashSet<PeerId> = store.providers(&k).iter().map(|p| p.provider).collect();
        assert_eq!(got, first.iter().copied().collect());
        assert_eq!(store.provided().count(), 0);
        let updated = store
            .providers(&k)
            .into_iter()
            .find(|p| p.provider == first[1]);
        assert_eq!(updated.map(|p| p.addresses), Some(vec![addr(7)]));
        Ok(())
    }

    #[test]
    fn keep_closest_keeps_the_closest_providers() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let config = PersistentStoreConfig::default()
            .with_max_providers_per_key(3)
            .with_provider_policy(ProviderPolicy::KeepClosest);
        let k = key("contested");
        let target = KBucketKey::new(k.clone());
        let mut peers: Vec<PeerId> = (0..12).map(|_| PeerId::random()).collect();
        peers.push(me);
        let mut by_distance = peers.clone();
        by_distance.sort_by_key(|p| distance(p, &target));
        let closest = by_distance[..3].to_vec();
        {
            let mut store = open(dir.path(), me, config.clone())?;
            for p in &peers {
                store.add_provider(ProviderRecord::new(k.clone(), *p, Vec::new()))?;
            }
            let got: Vec<PeerId> = store.providers(&k).iter().map(|p| p.provider).collect();
            assert_eq!(got, closest);
            assert_eq!(store.provided().count(), usize::from(closest.contains(&me)));
        }
        // Evicted providers were deleted, so a reopen sees exactly the same three.
        let db = crate::db::open(dir.path())?;
        let rows = db
            .iterator_cf(cf(&db, CF_KAD_PROVIDERS)?, IteratorMode::Start)
            .count();
        assert_eq!(rows, 3);
        let store = PersistentStore::new(me, db, config)?;
        let got: Vec<PeerId> = store.providers(&k).iter().map(|p| p.provider).collect();
        assert_eq!(got, closest);
        assert_eq!(store.provided().count(), usize::from(closest.contains(&me)));
        Ok(())
    }

    #[test]
    fn keep_closest_evicts_the_local_provider_from_provided() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let k = key("k");
        let target = KBucketKey::new(k.clone());
        let config = PersistentStoreConfig::default()
            .with_max_providers_per_key(1)
            .with_provider_policy(ProviderPolicy::KeepClosest);
        let mut store = open(dir.path(), me, config)?;
        store.add_provider(ProviderRecord::new(k.clone(), me, Vec::new()))?;
        assert_eq!(store.provided().count(), 1);
        // Find a peer closer to the key than this node.
        let mine = distance(&me, &target);
        let closer = iter::repeat_with(PeerId::random)
            .take(10_000)
            .find(|p| distance(p, &target) < mine)
            .ok_or("no closer peer found")?;
        store.add_provider(ProviderRecord::new(k.clone(), closer, Vec::new()))?;
        assert_eq!(store.provided().count(), 0);
        assert_eq!(store.providers(&k).len(), 1);
        assert_eq!(store.providers(&k)[0].provider, closer);
        Ok(())
    }

    #[test]
    fn corrupt_rows_are_skipped_and_deleted() -> TestResult {
        let dir = tempfile::tempdir()?;
        let me = PeerId::random();
        let good = Record::new(key("good"), b"fine".to_vec());
        let good_provider = ProviderRecord::new(key("good"), me, vec![addr(1)]);
        let db = crate::db::open(dir.path())?;
        {
            let mut store = PersistentStore::new(me, db.clone(), PersistentStoreConfig::default())?;
            store.put(good.clone())?;
            store.add_provider(good_provider.clone())?;
        }
        let records = cf(&db, CF_KAD_RECORDS)?;
        let providers = cf(&db, CF_KAD_PROVIDERS)?;
        let valid_provider_key = provider_row_key(&key("x"), &PeerId::random());
        let valid_provider_value = encode(&ProviderRow {
            expires_unix_ms: None,
            addresses: Vec::new(),
        })?;
        let bad_records: Vec<(&[u8], Vec<u8>)> = vec![
            (&b"empty"[..], Vec::new()),
            (b"future version", vec![FORMAT_V1 + 1, 0, 0, 0]),
            (b"truncated", vec![FORMAT_V1, 200]),
            (
                b"garbage",
                vec![FORMAT_V1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (b"trailing", {
                let mut v = encode(&RecordRow {
                    value: Vec::new(),
                    publisher: None,
                    expires_unix_ms: None,
                })?;
                v.push(0);
                v
            }),
            (
                b"bad publisher",
                encode(&RecordRow {
                    value: Vec::new(),
                    publisher: Some(vec![1, 2, 3]),
                    expires_unix_ms: None,
                })?,
            ),
        ];
        for (k, v) in &bad_records {
            db.put_cf(records, k, v)?;
        }
        let bad_providers: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"abc".to_vec(), valid_provider_value.clone()),
            (vec![0, 0, 0, 9, 1], valid_provider_value.clone()),
            (
                [&[0, 0, 0, 1, b'k'][..], &b"not a peer id"[..]].concat(),
                valid_provider_value.clone(),
            ),
            (valid_provider_key.clone(), vec![FORMAT_V1, 7]),
            (
                [&valid_provider_key[..], &b"!"[..]].concat(),
                valid_provider_value.clone(),
            ),
            (
                provider_row_key(&key("y"), &PeerId::random()),
                encode(&ProviderRow {
                    expires_unix_ms: None,
                    addresses: vec![vec![0xff, 0xff, 0xff]],
                })?,
            ),
        ];
        for (k, v) in &bad_providers {
            db.put_cf(providers, k, v)?;
        }

        let store = PersistentStore::new(me, db.clone(), PersistentStoreConfig::default())?;
        assert_eq!(store.records().count(), 1);
        assert_eq!(store.get(&good.key).as_deref(), Some(&good));
        assert_eq!(store.providers(&key("good")), vec![good_provider.clone()]);
        assert_eq!(store.providers(&key("good"))[0].addresses, vec![addr(1)]);
        assert!(store.providers(&key("x")).is_empty());
        assert!(store.providers(&key("y")).is_empty());
        assert_eq!(store.provided().count(), 1);
        for (k, _) in &bad_records {
            assert!(db.get_cf(records, k)?.is_none());
        }
        for (k, _) in &bad_providers {
            assert!(db.get_cf(providers, k)?.is_none());
        }
        assert_eq!(db.iterator_cf(records, IteratorMode::Start).count(), 1);
        assert_eq!(db.iterator_cf(providers, IteratorMode::Start).count(), 1);
        Ok(())
    }

    #[test]
    fn row_formats_are_frozen() -> TestResult {
        let peer = PeerId::from_bytes(&[0, 2, 0xab, 0xcd])?;
        assert_eq!(
            provider_row_key(&key("k"), &peer),
            vec![0, 0, 0, 1, b'k', 0, 2, 0xab, 0xcd]
        );
        assert_eq!(
            split_provider_row_key(&[0, 0, 0, 1, b'k', 0, 2, 0xab, 0xcd])?,
            (key("k"), peer)
        );
        let row = RecordRow {
            value: vec![7, 8],
            publisher: Some(vec![0, 2, 0xab, 0xcd]),
            expires_unix_ms: Some(300),
        };
        assert_eq!(
            encode(&row)?,
            vec![FORMAT_V1, 2, 7, 8, 1, 4, 0, 2, 0xab, 0xcd, 1, 0xac, 0x02]
        );
        let row = ProviderRow {
            expires_unix_ms: None,
            addresses: vec![addr(1).to_vec()],
        };
        assert_eq!(
            encode(&row)?,
            vec![FORMAT_V1, 0, 1, 8, 4, 127, 0, 0, 1, 6, 0, 1]
        );
        Ok(())
    }
}
