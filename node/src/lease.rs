//! Leases: a holder keeps a claim on a blob only while its lease runs; the owner renews
//! it (its self-check does), and an expired claim is dropped by a bounded collection pass,
//! the blob with it when no claim is left. Abandoned data is so given back; a blob that
//! several peers claim is kept while any of their leases runs.
//!
//! Rows, in the `leases` column family:
//!
//! ```text
//! 'k' || blob id (32) || claimant peer id  ->  expiry (u64 BE, Unix seconds)
//! 'x' || expiry (u64 BE) || blob id (32) || claimant peer id  ->  empty   (the expiry index)
//! ```
//!
//! The index lets a collection pass read only expired rows, oldest first, at most
//! [`COLLECT_BATCH`] per pass. A claim without a lease row (stored before leases
//! existed, or this node's own blobs) is never collected. Lease rows of a claim dropped
//! otherwise (delete, removal) are dropped by the next pass that finds them expired.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datamesh_core::ShardId;
use rocksdb::{DB, WriteBatch};

use crate::db::{CF_LEASES, DbError, cf};
use crate::store::{DeleteOutcome, ShardStore, StoreError};

/// Default lease: 180 days, so a node offline for weeks (the owner on holiday, its
/// self-check not running) loses nothing.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(180 * 24 * 3600);
/// Expired claims looked at by one collection pass at most.
pub const COLLECT_BATCH: usize = 1024;
const KEY_PREFIX: u8 = b'k';
const INDEX_PREFIX: u8 = b'x';

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a collection pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Expired lease rows dropped (with their claim, if it was still there).
    pub expired: u64,
    /// Blobs deleted: their last claim expired.
    pub blobs_deleted: u64,
    /// Their ids (a manifest's is its file id: its envelope goes too, `crate::serve`).
    pub deleted: Vec<ShardId>,
    /// Ids whose last lease ended with no blob held under them (the lease of an owner's
    /// own envelope, kept without its manifest blob: `crate::serve`).
    pub unheld: Vec<ShardId>,
}

/// The claimant of the lease on an owner's own key envelope kept without the manifest
/// blob (`Server::keep_own_envelope`), under the file id.
pub const OWN_ENVELOPE: &[u8] = b"own-envelope";

/// The lease rows of a node's store.
#[derive(Debug)]
pub struct Leases {
    db: Arc<DB>,
    duration: Duration,
    /// One grant at a time: the old index row is found and replaced in one step.
    writes: Mutex<()>,
}

impl Leases {
    /// Leases of `duration` over the node database.
    pub fn new(db: Arc<DB>, duration: Duration) -> Self {
        Self {
            db,
            duration,
            writes: Mutex::new(()),
        }
    }

    /// The lease granted on a store or a renewal.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Grants (or extends) `claimant`'s lease on `id` until `now` + the lease; returns
    /// the expiry. Never shortens a lease. Two small reads and one write.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn grant(&self, id: &ShardId, claimant: &[u8], now: u64) -> Result<u64, StoreError> {
        let leases = cf(&self.db, CF_LEASES)?;
        let key = lease_key(id, claimant);
        let expiry = now.saturating_add(self.duration.as_secs());
        let _guard = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let old = self
            .db
            .get_pinned_cf(leases, &key)
            .map_err(DbError::from)?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map(u64::from_be_bytes);
        if old.is_some_and(|o| o >= expiry) {
            return Ok(old.unwrap_or(expiry));
        }
        let mut batch = WriteBatch::default();
        if let Some(old) = old {
            batch.delete_cf(leases, index_key(old, id, claimant));
        }
        batch.put_cf(leases, &key, expiry.to_be_bytes());
        batch.put_cf(leases, index_key(expiry, id, claimant), []);
        self.db.write(batch).map_err(DbError::from)?;
        Ok(expiry)
    }

    /// Until when `id` is kept here: the latest expiry of its leases, `u64::MAX` if it is
    /// held with no lease at all (never collected), 0 if not held. One lookup of the info
    /// row and the blob's lease rows (one per claimant).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn kept_until(&self, store: &ShardStore, id: &ShardId) -> Result<u64, StoreError> {
        if !store.has(id)? {
            return Ok(0);
        }
        let leases = cf(&self.db, CF_LEASES)?;
        let mut prefix = vec![KEY_PREFIX];
        prefix.extend_from_slice(id.as_bytes());
        let latest = self
            .db
            .prefix_iterator_cf(leases, &prefix)
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, v)| <[u8; 8]>::try_from(&v[..]).ok().map(u64::from_be_bytes))
            .max();
        Ok(latest.unwrap_or(u64::MAX))
    }

    /// Whether any claimant has a lease row on `id`. One prefix seek.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn has_lease(&self, id: &ShardId) -> Result<bool, StoreError> {
        let leases = cf(&self.db, CF_LEASES)?;
        let mut prefix = vec![KEY_PREFIX];
        prefix.extend_from_slice(id.as_bytes());
        let first = self
            .db
            .prefix_iterator_cf(leases, &prefix)
            .next()
            .transpose()
            .map_err(DbError::from)?;
        Ok(first.is_some_and(|(k, _)| k.starts_with(&prefix)))
    }

    /// Whether `claimant` has a lease row on `id`. One small read.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn held_by(&self, id: &ShardId, claimant: &[u8]) -> Result<bool, StoreError> {
        let leases = cf(&self.db, CF_LEASES)?;
        Ok(self
            .db
            .get_pinned_cf(leases, lease_key(id, claimant))
            .map_err(DbError::from)?
            .is_some())
    }

    /// One collection pass: drops at most [`COLLECT_BATCH`] claims whose lease ended
    /// before `now`, oldest first, and each blob whose last claim that was.
    ///
    /// # Errors
    /// [`StoreError::Db`] (what was dropped before stays dropped).
    pub fn collect(&self, store: &ShardStore, now: u64) -> Result<Collected, StoreError> {
        let leases = cf(&self.db, CF_LEASES)?;
        let mut expired = Vec::new();
        for item in self.db.prefix_iterator_cf(leases, [INDEX_PREFIX]) {
            let (key, _) = item.map_err(DbError::from)?;
            if key.first() != Some(&INDEX_PREFIX) || expired.len() >= COLLECT_BATCH {
                break;
            }
            let Some((expiry, id, claimant)) = parse_index(&key) else {
                // Not written by this module: drop it.
                self.db.delete_cf(leases, &key).map_err(DbError::from)?;
                continue;
            };
            if expiry >= now {
                break;
            }
            expired.push((expiry, id, claimant.to_vec()));
        }
        let mut done = Collected::default();
        for (expiry, id, claimant) in expired {
            {
                // Renewed meanwhile? Then only the stale index row goes.
                let _guard = self.writes.lock().unwrap_or_else(|p| p.into_inner());
                let key = lease_key(&id, &claimant);
                let current = self
                    .db
                    .get_pinned_cf(leases, &key)
                    .map_err(DbError::from)?
                    .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
                    .map(u64::from_be_bytes);
                let mut batch = WriteBatch::default();
                batch.delete_cf(leases, index_key(expiry, &id, &claimant));
                let renewed = current.is_some_and(|c| c != expiry);
                if !renewed {
                    batch.delete_cf(leases, &key);
                }
                self.db.write(batch).map_err(DbError::from)?;
                if renewed {
                    continue;
                }
            }
            done.expired += 1;
            match store.delete(&id, &claimant)? {
                DeleteOutcome::Deleted => {
                    done.blobs_deleted += 1;
                    done.deleted.push(id);
                }
                DeleteOutcome::NotHeld if !self.has_lease(&id)? => done.unheld.push(id),
                _ => {}
            }
        }
        Ok(done)
    }
}

/// Runs collection passes for the node's life: one per [`collect_interval`], none during
/// the first [`collect_grace`] after start (a node back from a long stop gives owners a
/// lease's worth, at most a day, to renew before it collects what expired meanwhile).
pub fn spawn_collector(server: Arc<crate::serve::Server>) -> tokio::task::JoinHandle<()> {
    let lease = server.leases().duration();
    tokio::spawn(async move {
        tokio::time::sleep(collect_grace(lease)).await;
        let mut timer = tokio::time::interval(collect_interval(lease));
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let server = Arc::clone(&server);
            let pass =
                tokio::task::spawn_blocking(move || server.collect_expired(unix_now())).await;
            match pass {
                Ok(Ok(done)) if done.expired > 0 => tracing::info!(
                    expired = done.expired,
                    deleted = done.blobs_deleted,
                    "expired leases collected"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("collecting expired leases failed: {e}"),
                Err(e) => tracing::warn!("the lease collection task failed: {e}"),
            }
        }
    })
}

/// Time between collection passes: an eighth of the lease, within 1 s .. 10 min.
pub fn collect_interval(lease: Duration) -> Duration {
    (lease / 8).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// No collection this long after start: the lease, at most a day.
pub fn collect_grace(lease: Duration) -> Duration {
    lease.min(Duration::from_secs(24 * 3600))
}

fn lease_key(id: &ShardId, claimant: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 32 + claimant.len());
    key.push(KEY_PREFIX);
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(claimant);
    key
}

fn index_key(expiry: u64, id: &ShardId, claimant: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + 8 + 32 + claimant.len());
    key.push(INDEX_PREFIX);
    key.extend_from_slice(&expiry.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(claimant);
    key
}

fn parse_index(key: &[u8]) -> Option<(u64, ShardId, &[u8])> {
    let rest = key.strip_prefix(&[INDEX_PREFIX])?;
    let expiry = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id: [u8; 32] = rest.get(8..40)?.try_into().ok()?;
    Some((expiry, ShardId::from_bytes(id), rest.get(40..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn setup(dir: &std::path::Path) -> Result<(ShardStore, Leases), Box<dyn std::error::Error>> {
        let db = crate::db::open(dir)?;
        Ok((
            ShardStore::new(Arc::clone(&db), StoreConfig::new(1 << 30)),
            Leases::new(db, Duration::from_secs(100)),
        ))
    }

    #[test]
    fn an_expired_lease_frees_the_blob_and_a_renewed_one_keeps_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (store, leases) = setup(dir.path())?;
        let (a, b) = (vec![1u8; 5000], vec![2u8; 7000]);
        let (ida, idb) = (ShardId::of(&a), ShardId::of(&b));
        store.put(&ida, &a, b"owner")?;
        store.put(&idb, &b, b"owner")?;
        assert_eq!(leases.grant(&ida, b"owner", 1_000)?, 1_100);
        assert_eq!(leases.grant(&idb, b"owner", 1_000)?, 1_100);
        assert_eq!(leases.kept_until(&store, &ida)?, 1_100);
        // Renewing b later: it now runs to 1_150; an older renewal never shortens it.
        assert_eq!(leases.grant(&idb, b"owner", 1_050)?, 1_150);
        assert_eq!(leases.grant(&idb, b"owner", 1_010)?, 1_150);
        // Before the expiry nothing goes.
        assert_eq!(leases.collect(&store, 1_100)?, Collected::default());
        let done = leases.collect(&store, 1_101)?;
        assert_eq!((done.expired, done.deleted), (1, vec![ida]));
        assert!(!store.has(&ida)? && store.has(&idb)?);
        assert_eq!(store.used_bytes()?, 7000);
        assert_eq!(leases.kept_until(&store, &ida)?, 0);
        assert_eq!(leases.collect(&store, 1_151)?.blobs_deleted, 1);
        assert_eq!((store.used_bytes()?, store.shard_count()?), (0, 0));
        // Nothing left to look at.
        assert_eq!(leases.collect(&store, u64::MAX)?, Collected::default());
        Ok(())
    }

    #[test]
    fn a_blob_claimed_by_several_is_kept_while_any_lease_runs() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (store, leases) = setup(dir.path())?;
        let blob = vec![3u8; 4000];
        let id = ShardId::of(&blob);
        store.put(&id, &blob, b"first")?;
        store.put(&id, &blob, b"second")?;
        leases.grant(&id, b"first", 1_000)?;
        leases.grant(&id, b"second", 2_000)?;
        assert_eq!(leases.kept_until(&store, &id)?, 2_100);
        let done = leases.collect(&store, 1_500)?;
        assert_eq!((done.expired, done.blobs_deleted), (1, 0));
        assert!(store.has(&id)?);
        assert_eq!(leases.collect(&store, 2_101)?.blobs_deleted, 1);
        assert!(!store.has(&id)?);
        // A blob held with no lease at all (stored before leases) is never collected.
        store.put(&id, &blob, b"old")?;
        assert_eq!(leases.kept_until(&store, &id)?, u64::MAX);
        assert_eq!(leases.collect(&store, u64::MAX)?, Collected::default());
        assert!(store.has(&id)?);
        Ok(())
    }

    #[test]
    fn a_pass_is_bounded_and_the_next_one_goes_on() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (store, leases) = setup(dir.path())?;
        let n = COLLECT_BATCH + 10;
        for i in 0..n as u32 {
            let blob = i.to_be_bytes();
            let id = ShardId::of(&blob);
            store.put(&id, &blob, b"owner")?;
            leases.grant(&id, b"owner", u64::from(i))?;
        }
        assert_eq!(
            leases.collect(&store, u64::MAX)?.blobs_deleted,
            COLLECT_BATCH as u64
        );
        assert_eq!(leases.collect(&store, u64::MAX)?.blobs_deleted, 10);
        assert_eq!(store.shard_count()?, 0);
        Ok(())
    }
}
