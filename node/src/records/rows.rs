//! The rows of the two column families (see the [module docs](super)): their formats,
//! the write-through half of the store, and the load that drops expired, corrupt and
//! over-limit rows.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};
use rocksdb::{ColumnFamily, DB, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::clock::Clock;
use super::config::PersistentStoreConfig;
use crate::db::{CF_KAD_PROVIDERS, CF_KAD_RECORDS, DbError, cf};

/// The version byte that starts every row value written by this module.
pub(super) const FORMAT_V1: u8 = 1;

/// The write-through half: turns mutations into RocksDB writes and logs failures.
pub(super) struct Rows {
    pub(super) db: Arc<DB>,
}

impl Rows {
    fn cf(&self, name: &'static str) -> Option<&ColumnFamily> {
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

    pub(super) fn put_record(&self, record: &Record, clock: &Clock) {
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

    pub(super) fn delete_record(&self, key: &RecordKey) {
        let Some(cf) = self.cf(CF_KAD_RECORDS) else {
            return;
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf, key.as_ref());
        self.commit(batch, "a kad record removal");
    }

    /// Writes `record`.
    pub(super) fn put_provider(&self, record: &ProviderRecord, clock: &Clock) {
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
                self.commit(batch, "a kad provider record");
            }
            Err(error) => warn!(%error, "could not encode a kad provider record"),
        }
    }

    pub(super) fn delete_provider(&self, record: &ProviderRecord) {
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
pub(super) struct RecordRow {
    pub(super) value: Vec<u8>,
    pub(super) publisher: Option<Vec<u8>>,
    pub(super) expires_unix_ms: Option<u64>,
}

/// One `kad_providers` row value (after the version byte); the row key names the record
/// key and the provider.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ProviderRow {
    pub(super) expires_unix_ms: Option<u64>,
    pub(super) addresses: Vec<Vec<u8>>,
}

/// Why a row was skipped at load.
#[derive(Debug, thiserror::Error)]
pub(super) enum RowError {
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

pub(super) fn encode<T: Serialize>(row: &T) -> Result<Vec<u8>, postcard::Error> {
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
pub(super) fn provider_row_key(key: &RecordKey, provider: &PeerId) -> Vec<u8> {
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

pub(super) fn split_provider_row_key(raw: &[u8]) -> Result<(RecordKey, PeerId), RowError> {
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

pub(super) fn load_records(
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

/// Every provider row that decodes and has not expired, in row order; the others are
/// added to `doomed`. The limits are applied by the caller.
pub(super) fn load_providers(
    db: &DB,
    clock: &Clock,
    doomed: &mut WriteBatch,
) -> Result<Vec<ProviderRecord>, DbError> {
    let cf = cf(db, CF_KAD_PROVIDERS)?;
    let mut providers = Vec::new();
    for row in db.iterator_cf(cf, IteratorMode::Start) {
        let (key, value) = row?;
        match decode_provider(&key, &value, clock) {
            Ok(Some(record)) => {
                providers.push(record);
                continue;
            }
            Ok(None) => debug!(key = %Short(&key), "dropping an expired kad provider record"),
            Err(error) => {
                warn!(key = %Short(&key), %error, "skipping and deleting a corrupt kad provider row")
            }
        }
        doomed.delete_cf(cf, &key);
    }
    Ok(providers)
}

/// Adds the deletion of `record`'s row to `batch`.
pub(super) fn delete_provider_row(
    db: &DB,
    record: &ProviderRecord,
    batch: &mut WriteBatch,
) -> Result<(), DbError> {
    batch.delete_cf(
        cf(db, CF_KAD_PROVIDERS)?,
        provider_row_key(&record.key, &record.provider),
    );
    Ok(())
}
