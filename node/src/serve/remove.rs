//! The holder's side of `datamesh rm`: a `RemoveFile` request, the owner's signed order to
//! drop a file.
//!
//! Checked before anything is touched: the manifest sent with it hashes to the file id
//! (one BLAKE3 of at most a frame), parses, and commits to the authority key the removal's
//! signature verifies under; `issued_at` is within [`datamesh_core::REMOVAL_WINDOW_SECS`] of this node's
//! clock (a captured removal cannot be replayed later). Then, on the manifest blob and on
//! every shard the manifest lists that this node holds (one small-row lookup per id, as a
//! `Has` of the same ids), the sender's claim and every claim bound to the file go, and a
//! blob no claim is left on is deleted, its bytes given back to the quota; the file's key
//! envelope and cached authority row go too. A removal of a file this node holds nothing
//! of changes nothing and is answered `Done` (the owner asks every possible holder).
//!
//! Budget: a valid order can be replayed by anyone who saw it for as long as it is fresh
//! (and an owner can sign as many as it likes), and each costs the holder a BLAKE3 of
//! the manifest sent, an ECDSA verification and its database work. So before any of
//! that, every order (`RemoveFile` and `RenewLease` alike) spends [`order_cost`] units
//! of its sender's order budget, [`ORDER_UNITS`] units at once and as many per
//! [`ORDER_WINDOW`] on average (`serve/rate.rs`); past that it is answered `Busy` at the
//! cost of a map lookup (no strike: an owner with many files is not misbehaving; it
//! tries again later, `crate::files::remove`). A forged order still earns a strike
//! (`crate::network::accounting`).
//!
//! A repair racing the removal: the holder remembers every removal it honoured for
//! [`REMOVED_MARK_LIFETIME`] ([`RemovedFiles`], in memory, at most [`REMOVED_MARKS`] files,
//! the oldest forgotten first) and meanwhile refuses a `StoreFor`, `Announce` or
//! `PutEnvelope` for the file, and a `Store` of its manifest, with `Invalid(Removed)`.
//! A repair's stores are `StoreFor`s, their claims born bound to the file, so a removal
//! that reaches the holder after them drops them; one that reached it before refuses
//! them. What neither covers (a holder the owner's `rm` never reached, marks lost to a
//! restart or pushed out by a flood of removals) the repairer takes back once it sees the
//! removal itself (`crate::check::network`), else the lease collects it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datamesh_core::{
    FileId, Manifest, OrderKind, OwnerOrder, REMOVAL_SIGNATURE_LEN, REMOVAL_WINDOW_SECS, Remove,
    ShardId,
};
use libp2p::PeerId;
use rocksdb::WriteBatch;
use tracing::{debug, info, warn};

use super::rate::PeerRate;
use super::{AUTHORITY_PREFIX, ENVELOPE_PREFIX, Server, row_key};
use crate::db::{CF_FILES, DbError, cf};
use crate::fifo::FifoMap;
use crate::protocol::{FailureReason, InvalidReason, Refusal, Response};
use crate::store::{DeleteOutcome, Durability, StoreError};

/// Units of a peer's order budget, at once and per [`ORDER_WINDOW`] on average.
pub const ORDER_UNITS: u32 = 256;
/// The window of the per-peer order budget.
pub const ORDER_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Manifest bytes one unit pays for (a BLAKE3 of them per order).
const MANIFEST_BYTES_PER_UNIT: usize = 64 * 1024;
/// Ids of a `RenewLease` one unit pays for (a few small-row reads and writes each).
const IDS_PER_UNIT: usize = 1024;

/// The per-peer budget of owner's orders (see the module docs).
pub(super) fn order_budget() -> PeerRate {
    PeerRate::new(ORDER_UNITS, ORDER_WINDOW)
}

/// Units an order with a manifest of `manifest_len` bytes and `ids` ids costs: one, plus
/// one per [`MANIFEST_BYTES_PER_UNIT`] of manifest and per [`IDS_PER_UNIT`] ids (an
/// ordinary file's order costs 1; the largest possible, [`ORDER_UNITS`]).
pub fn order_cost(manifest_len: usize, ids: usize) -> u32 {
    let units = 1 + manifest_len / MANIFEST_BYTES_PER_UNIT + ids / IDS_PER_UNIT;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// How long a holder refuses a removed file's blobs, envelope and announcements: as long
/// as a removal order stays fresh (a repair that started before the removal is over by
/// then: one round moves at most `bytes_per_round`).
pub const REMOVED_MARK_LIFETIME: Duration = Duration::from_secs(REMOVAL_WINDOW_SECS);
/// Files remembered as removed at most (about 64 bytes each).
pub const REMOVED_MARKS: usize = 16_384;

/// The files whose removal this node honoured within [`REMOVED_MARK_LIFETIME`] (see the
/// module docs). Bounded: at most [`REMOVED_MARKS`], the oldest forgotten first; marking
/// a file already marked changes nothing, so replays of one order cannot grow it.
#[derive(Debug)]
pub(super) struct RemovedFiles {
    /// Per file, until when its mark holds.
    marks: Mutex<FifoMap<FileId, Instant>>,
}

impl Default for RemovedFiles {
    fn default() -> Self {
        Self {
            marks: Mutex::new(FifoMap::new(REMOVED_MARKS)),
        }
    }
}

impl RemovedFiles {
    /// Remembers `file` as removed at `now`.
    pub(super) fn mark(&self, file: FileId, now: Instant) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.forget_oldest_while(|until| now >= *until);
        marks.insert(file, now + REMOVED_MARK_LIFETIME);
    }

    /// Whether `file` was marked removed and the mark still holds at `now`.
    pub(super) fn contains(&self, file: &FileId, now: Instant) -> bool {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.get(file).is_some_and(|until| now < *until)
    }

    /// How many files are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.marks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// What a removal freed on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Blobs (manifest, shards) deleted: no claim was left on them.
    pub blobs_deleted: u64,
    /// Blobs whose claims were dropped but that another claim keeps.
    pub blobs_kept: u64,
    /// Whether the file's key envelope was dropped.
    pub envelope_dropped: bool,
}

impl Server {
    /// Answers a `RemoveFile` from `peer` (see the module docs).
    pub(super) fn remove_file(
        &self,
        peer: PeerId,
        manifest: &[u8],
        issued_at: u64,
        signature: &[u8],
    ) -> Response {
        if let Some(busy) = self.over_order_budget(peer, manifest.len(), 0) {
            return busy;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match self.check_removal(manifest, issued_at, signature, now) {
            Err(reason) => {
                debug!(%peer, "refused a removal: {reason}");
                self.metrics.removals_refused.inc();
                Response::Refused(Refusal::Invalid(reason))
            }
            Ok((file, parsed)) => match self.release_file(peer, &file, &parsed) {
                Ok(released) => {
                    info!(%peer, %file, ?released, "file removed by its owner");
                    self.metrics.removals_honoured.inc();
                    Response::Done
                }
                Err(e) => {
                    warn!(%peer, %file, "removing a file failed: {e}");
                    Response::Refused(Refusal::Failed(FailureReason::Storage))
                }
            },
        }
    }

    /// `Busy` if `peer` cannot spend an order's cost from its order budget now (see the
    /// module docs); else the cost is spent.
    pub(super) fn over_order_budget(
        &self,
        peer: PeerId,
        manifest_len: usize,
        ids: usize,
    ) -> Option<Response> {
        let cost = order_cost(manifest_len, ids);
        if self.orders.admit(peer, cost, std::time::Instant::now()) {
            return None;
        }
        debug!(%peer, cost, "an owner's order over the peer's order budget");
        self.metrics.orders_over_budget.inc();
        Some(Response::Refused(Refusal::Busy))
    }

    /// The file id and manifest of a removal that verifies and is fresh at `now`.
    fn check_removal(
        &self,
        manifest: &[u8],
        issued_at: u64,
        signature: &[u8],
        now: u64,
    ) -> Result<(FileId, Manifest), InvalidReason> {
        check_order::<Remove>(
            manifest,
            issued_at,
            signature,
            now,
            (InvalidReason::BadRemoval, InvalidReason::StaleRemoval),
        )
    }

    /// Whether this node honoured the removal of `file` lately (see the module docs).
    pub fn removed_lately(&self, file: &FileId) -> bool {
        self.removed.contains(file, Instant::now())
    }

    /// Remembers the removal of `file`, then drops every claim on its manifest blob,
    /// `peer`'s claims and the claims bound to `file` on the shards it lists held here,
    /// the blobs left without a claim, and the file's envelope. The mark comes first: a
    /// `StoreFor` whose claim this misses (written after the claims were read) sees the
    /// mark after its write and takes its claim back (`Server::store_blob_then`).
    ///
    /// # Errors
    /// [`StoreError`] of the first write that failed (what was released before stays
    /// released; the owner's next removal or the lease finishes it).
    pub fn release_file(
        &self,
        peer: PeerId,
        file: &FileId,
        manifest: &Manifest,
    ) -> Result<Released, StoreError> {
        self.removed.mark(*file, Instant::now());
        let claimant = peer.to_bytes();
        let mut released = Released::default();
        let blob = ShardId::from_bytes(*file.as_bytes());
        let mut seen = HashSet::from([blob]);
        let shards = manifest.stripes().iter().flatten().copied();
        let releases = std::iter::once(self.store.release_manifest(file)).chain(
            shards.filter(|id| seen.insert(*id)).map(|id| {
                if self.store.has(&id)? {
                    self.store.release_for_file(&id, &claimant, file)
                } else {
                    Ok(DeleteOutcome::NotHeld)
                }
            }),
        );
        for outcome in releases {
            match outcome? {
                DeleteOutcome::Deleted => released.blobs_deleted += 1,
                DeleteOutcome::StillShared => released.blobs_kept += 1,
                DeleteOutcome::NotOwner | DeleteOutcome::NotHeld => {}
            }
        }
        released.envelope_dropped = self.drop_envelope(file)?;
        Ok(released)
    }

    /// Drops the file's envelope (its bytes given back to the quota) and, once the
    /// manifest blob is gone, the cached authority row. Returns whether an envelope was
    /// held.
    pub(super) fn drop_envelope(&self, file: &FileId) -> Result<bool, StoreError> {
        let files = cf(&self.db, CF_FILES)?;
        let key = row_key(ENVELOPE_PREFIX, file.as_bytes());
        let _guard = self
            .envelope_writes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let old = self.db.get_cf(files, &key).map_err(DbError::from)?;
        if !self.store.has(&ShardId::from_bytes(*file.as_bytes()))? {
            self.db
                .delete_cf(files, row_key(AUTHORITY_PREFIX, file.as_bytes()))
                .map_err(DbError::from)?;
        }
        let Some(old) = old else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(files, &key);
        self.store
            .write_counted(batch, old.len() as u64, 0, Durability::Synced)?;
        Ok(true)
    }
}

/// The file id and manifest of an owner's order of kind `K` (the manifest sent with it)
/// that verifies and is fresh at `now`; else `bad` or `stale`. One BLAKE3 of the
/// manifest, a parse, one ECDSA verification.
pub(super) fn check_order<K: OrderKind>(
    manifest: &[u8],
    issued_at: u64,
    signature: &[u8],
    now: u64,
    (bad, stale): (InvalidReason, InvalidReason),
) -> Result<(FileId, Manifest), InvalidReason> {
    let signature: [u8; REMOVAL_SIGNATURE_LEN] = signature.try_into().map_err(|_| bad)?;
    let file = FileId::of_manifest(manifest);
    let parsed = Manifest::from_bytes(manifest).map_err(|_| bad)?;
    let order = OwnerOrder::<K>::from_parts(file, issued_at, signature);
    if !order.verify(&parsed.authority().key) {
        return Err(bad);
    }
    if !order.is_fresh(now) {
        return Err(stale);
    }
    Ok((file, parsed))
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use datamesh_core::ecies::SecretKey;
    use datamesh_core::{
        AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, EncodedFile, Encoder,
        KeyEnvelope, REMOVAL_WINDOW_SECS, Removal,
    };

    use super::*;
    use crate::metrics::Metrics;
    use crate::network::InboundHandler;
    use crate::protocol::Request;
    use crate::store::StoreConfig;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn server(dir: &std::path::Path) -> Result<Server, Box<dyn std::error::Error>> {
        let db = crate::db::open(dir)?;
        let store = Arc::new(crate::store::ShardStore::new(
            Arc::clone(&db),
            StoreConfig::new(1 << 30),
        ));
        Ok(Server::new(store, db, Arc::new(Metrics::new())))
    }

    /// A file of `root`'s (two stripes), its manifest, shards and envelope stored on
    /// `server` by `owner` as a put would.
    pub(in crate::serve) fn put_file(
        server: &Server,
        owner: PeerId,
        root: &AuthorityRoot,
    ) -> Result<(EncodedFile, AuthorityKey), Box<dyn std::error::Error>> {
        let authority = AuthorityKey::derive(root, &AuthoritySalt::random())?;
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let options =
            EncodeOptions::new("f").with_segment_size(datamesh_core::SegmentSize::new(64 * 1024)?);
        let mut encoder = Encoder::new(&data[..], options);
        for stripe in encoder.by_ref() {
            let stripe = stripe?;
            let ids = *stripe.ids();
            for (id, bytes) in ids.into_iter().zip(stripe.into_shards()) {
                server.handle(
                    owner,
                    Request::Store {
                        id,
                        bytes: bytes.into(),
                    },
                );
            }
        }
        let file = encoder.finish(authority.file_authority())?;
        let bytes = file.manifest.to_bytes();
        server.handle(
            owner,
            Request::Store {
                id: ShardId::from_bytes(*file.file_id.as_bytes()),
                bytes: bytes.into(),
            },
        );
        let envelope = KeyEnvelope::seal(
            file.file_id,
            1,
            &file.data_key,
            &[SecretKey::generate().public_key()],
            &authority,
        )?;
        assert_eq!(
            server.handle(
                owner,
                Request::PutEnvelope {
                    bytes: envelope.to_bytes()
                }
            ),
            Response::Done
        );
        Ok((file, authority))
    }

    fn removal(
        file: &EncodedFile,
        key: &AuthorityKey,
        issued_at: u64,
    ) -> Result<Request, datamesh_core::AuthorityError> {
        let signed = Removal::sign(file.file_id, issued_at, key)?;
        Ok(Request::RemoveFile {
            manifest: file.manifest.to_bytes().into(),
            issued_at,
            signature: signed.signature().to_vec(),
        })
    }

    pub(in crate::serve) fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    #[test]
    fn the_owners_removal_frees_every_byte_and_a_forged_one_frees_none() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path())?;
        let owner = PeerId::random();
        let (file, key) = put_file(&server, owner, &AuthorityRoot::from_bytes(&[1; 32]))?;
        let held = server.store().used_bytes()?;
        let shards = server.store().shard_count()?;
        assert_eq!(shards, 13, "two stripes of six shards and the manifest");
        assert!(server.envelope(&file.file_id).is_some());

        // Another root, the file's own salt: a key the manifest does not commit to.
        let squatter = AuthorityKey::derive(
            &AuthorityRoot::from_bytes(&[2; 32]),
            &file.manifest.authority().salt,
        )?;
        let mut forged = vec![removal(&file, &squatter, now())?];
        // The owner's signature, replayed two hours later or earlier.
        forged.push(removal(&file, &key, now() - 2 * REMOVAL_WINDOW_SECS)?);
        forged.push(removal(&file, &key, now() + 2 * REMOVAL_WINDOW_SECS)?);
        // The owner's signature with another manifest (the attacker's own, listing the
        // victim's shards is impossible to sign; this one just does not match).
        if let Request::RemoveFile {
            issued_at,
            signature,
            ..
        } = removal(&file, &key, now())?
        {
            forged.push(Request::RemoveFile {
                manifest: vec![2, 0, 0].into(),
                issued_at,
                signature: signature.clone(),
            });
            forged.push(Request::RemoveFile {
                manifest: file.manifest.to_bytes().into(),
                issued_at,
                signature: signature[..63].to_vec(),
            });
        }
        let expected = [
            InvalidReason::BadRemoval,
            InvalidReason::StaleRemoval,
            InvalidReason::StaleRemoval,
            InvalidReason::BadRemoval,
            InvalidReason::BadRemoval,
        ];
        for (request, reason) in forged.into_iter().zip(expected) {
            // From the owner's own peer id too: the signature is what counts.
            for from in [PeerId::random(), owner] {
                assert_eq!(
                    server.handle(from, request.clone()),
                    Response::Refused(Refusal::Invalid(reason))
                );
            }
        }
        assert_eq!(server.store().used_bytes()?, held);
        assert_eq!(server.store().shard_count()?, shards);
        assert!(server.envelope(&file.file_id).is_some());
        assert_eq!(server.metrics.removals_refused.get(), 10);

        // The owner's removal, sent by another peer (a relay): the claims bound to the
        // file go with it, and the manifest blob whoever claims it; here the owner's
        // unbound claims on the shards stay (they are not the sender's).
        let relay = PeerId::random();
        assert_eq!(
            server.handle(relay, removal(&file, &key, now())?),
            Response::Done
        );
        assert_eq!(server.store().shard_count()?, shards - 1);
        let manifest = ShardId::from_bytes(*file.file_id.as_bytes());
        assert!(!server.store().has(&manifest)?);
        assert!(server.envelope(&file.file_id).is_none());

        // From the owner's node: everything goes, the quota is back to zero.
        assert_eq!(
            server.handle(owner, removal(&file, &key, now())?),
            Response::Done
        );
        assert_eq!(server.store().used_bytes()?, 0);
        assert_eq!(server.store().shard_count()?, 0);
        assert_eq!(server.store().ids()?, Vec::<ShardId>::new());
        // Again: nothing held, nothing to do, still done.
        assert_eq!(
            server.handle(owner, removal(&file, &key, now())?),
            Response::Done
        );
        assert_eq!(server.metrics.removals_honoured.get(), 3);
        Ok(())
    }

    #[test]
    fn a_removal_keeps_what_another_file_claims() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path())?;
        let owner = PeerId::random();
        let (file, key) = put_file(&server, owner, &AuthorityRoot::from_bytes(&[1; 32]))?;
        let other = ShardId::from_bytes([9; 32]);
        // A second peer stored one of the shards too and bound its claim to its own file.
        let shard = file.manifest.stripes()[0][0];
        let second = PeerId::random();
        let bytes = {
            // Fetch the bytes as that peer would have sent them.
            match server.handle(second, Request::Fetch { id: shard }) {
                Response::Blob(b) => b,
                other => return Err(format!("fetch: {other:?}").into()),
            }
        };
        server.handle(
            second,
            Request::Store {
                id: shard,
                bytes: bytes.clone(),
            },
        );
        let other_file = FileId::of_manifest(other.as_bytes());
        assert_eq!(
            server
                .store()
                .bind_claim(&shard, &second.to_bytes(), &other_file)?,
            crate::store::BindOutcome::Bound
        );
        assert_eq!(
            server.handle(owner, removal(&file, &key, now())?),
            Response::Done
        );
        assert_eq!(server.store().ids()?, vec![shard]);
        assert_eq!(server.store().used_bytes()?, bytes.len() as u64);
        Ok(())
    }

    /// The bytes `server` holds under `id`.
    fn held_bytes(server: &Server, id: ShardId) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        match server.handle(PeerId::random(), Request::Fetch { id }) {
            Response::Blob(b) => Ok(b.to_vec()),
            other => Err(format!("fetch: {other:?}").into()),
        }
    }

    #[test]
    fn a_repairs_stores_go_with_the_removal_and_come_after_it_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path())?;
        let owner = PeerId::random();
        let (file, key) = put_file(&server, owner, &AuthorityRoot::from_bytes(&[1; 32]))?;
        let id = file.file_id;
        let manifest_id = ShardId::from_bytes(*id.as_bytes());
        let manifest = held_bytes(&server, manifest_id)?;
        let shard = file.manifest.stripes()[1][2];
        let shard_bytes = held_bytes(&server, shard)?;
        let envelope = server.envelope(&id).ok_or("no envelope")?;
        // A repairer's stores: claims bound to the file as they are made.
        let repairer = PeerId::random();
        for (blob, bytes) in [(shard, &shard_bytes), (manifest_id, &manifest)] {
            let store = Request::StoreFor {
                file: id,
                id: blob,
                bytes: bytes.clone().into(),
            };
            assert_eq!(server.handle(repairer, store), Response::AlreadyHeld);
            assert!(server.store().has_claim(&blob, &repairer.to_bytes())?);
        }
        // A top-up of the manifest by some other peer, an unbound claim.
        let other = PeerId::random();
        let store = Request::Store {
            id: manifest_id,
            bytes: manifest.clone().into(),
        };
        assert_eq!(server.handle(other, store), Response::AlreadyHeld);

        assert!(!server.removed_lately(&id));
        assert_eq!(
            server.handle(owner, removal(&file, &key, now())?),
            Response::Done
        );
        assert!(server.removed_lately(&id));
        assert_eq!(server.store().ids()?, Vec::<ShardId>::new());
        assert_eq!(server.store().used_bytes()?, 0);

        // After the removal: the repair's stores, announcements and envelope copies, and
        // anyone's store of the manifest (with its envelope or not), are refused; nothing
        // is kept.
        let removed = Response::Refused(Refusal::Invalid(InvalidReason::Removed));
        let late = [
            Request::StoreFor {
                file: id,
                id: shard,
                bytes: shard_bytes.clone().into(),
            },
            Request::StoreFor {
                file: id,
                id: manifest_id,
                bytes: manifest.clone().into(),
            },
            Request::Store {
                id: manifest_id,
                bytes: manifest.clone().into(),
            },
            Request::StoreManifest {
                id: manifest_id,
                envelope: envelope.clone(),
                bytes: manifest.clone().into(),
            },
            Request::Announce {
                file: id,
                held: shard,
            },
            Request::PutEnvelope { bytes: envelope },
        ];
        for request in late {
            assert_eq!(server.handle(repairer, request), removed);
        }
        assert_eq!(server.store().ids()?, Vec::<ShardId>::new());
        assert_eq!(server.store().used_bytes()?, 0);
        assert!(server.envelope(&id).is_none());
        Ok(())
    }

    #[test]
    fn removal_marks_are_bounded_and_expire() {
        let marks = RemovedFiles::default();
        let t0 = Instant::now();
        let file = |n: usize| FileId::of_manifest(&n.to_le_bytes());
        // Replays of one removal do not grow the marks.
        for _ in 0..10 {
            marks.mark(file(0), t0);
        }
        assert_eq!(marks.len(), 1);
        for n in 1..REMOVED_MARKS + 10 {
            marks.mark(file(n), t0);
        }
        assert_eq!(marks.len(), REMOVED_MARKS);
        // The oldest were forgotten first.
        assert!(!marks.contains(&file(0), t0));
        assert!(!marks.contains(&file(9), t0));
        assert!(marks.contains(&file(10), t0));
        assert!(marks.contains(&file(REMOVED_MARKS + 9), t0));
        // Past their lifetime, marks no longer count and the next mark drops them.
        let later = t0 + REMOVED_MARK_LIFETIME;
        assert!(!marks.contains(&file(10), later));
        marks.mark(file(0), later);
        assert_eq!(marks.len(), 1);
        assert!(marks.contains(&file(0), later));
    }
}
