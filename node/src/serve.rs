//! The storage side of the node: answers other peers' shard-protocol requests.
//!
//! It stores and returns opaque bytes by id and keeps key envelopes; it never sees a key
//! or a byte of plaintext (Architecture Invariant).
//!
//! Key envelopes: one per file, kept only for a file whose manifest this node holds, if
//! it verifies under the authority key the manifest commits to, and replaced only by a
//! higher sequence; envelope bytes count against the quota. The authority key of each
//! manifest is cached in a row of its own the first time an envelope names the file.

use std::sync::{Arc, Mutex};

use datamesh_core::wire::first_duplicate;
use datamesh_core::{AuthorityPublic, FileId, KeyEnvelope, Manifest, ShardId};
use libp2p::PeerId;
use rocksdb::{DB, WriteBatch};
use tracing::{debug, warn};

use crate::db::{CF_FILES, DbError, cf};
use crate::lease::{DEFAULT_LEASE, Leases};
use crate::metrics::Metrics;
use crate::network::InboundHandler;
use crate::protocol::{
    BatchShard, FailureReason, InvalidReason, MAX_ENVELOPE_LEN, ManifestOutcome, Refusal, Request,
    Response, StoreOutcome,
};
use crate::store::{BindOutcome, DeleteOutcome, Durability, PutOutcome, ShardStore, StoreError};

mod audit;
mod held;
mod lease;
mod rate;
mod remove;
pub use audit::{AUDIT_WINDOW, AUDITS_PER_WINDOW};
pub use remove::{
    ORDER_UNITS, ORDER_WINDOW, REMOVED_MARK_LIFETIME, REMOVED_MARKS, Released, order_cost,
};

/// Key prefix of envelopes in the `files` column family: `e` || file id -> envelope.
const ENVELOPE_PREFIX: u8 = b'e';
/// Key prefix of cached authority keys in the `files` column family: `a` || file id ->
/// the 33-byte key of the manifest held under that id, or empty if that blob is not a
/// manifest.
const AUTHORITY_PREFIX: u8 = b'a';

/// Serves shard-protocol requests from the node's store.
#[derive(Debug)]
pub struct Server {
    store: Arc<ShardStore>,
    db: Arc<DB>,
    metrics: Arc<Metrics>,
    /// Test-only misbehaviour: serve altered bytes (see [`crate::faults`]).
    wrong_bytes: bool,
    /// Test-only misbehaviour: refuse every key envelope (see [`crate::faults`]).
    refuse_envelopes: bool,
    /// Held while an envelope is compared with the one held and replaces it.
    envelope_writes: Mutex<()>,
    /// The leases of the claims on blobs held (`crate::lease`).
    leases: Arc<Leases>,
    /// Audit challenges answered per peer (`serve/audit.rs`).
    audits: rate::PeerRate,
    /// Owner's orders (`RemoveFile`, `RenewLease`) checked per peer (`serve/remove.rs`).
    orders: rate::PeerRate,
    /// Files whose removal was honoured lately (`serve/remove.rs`).
    removed: remove::RemovedFiles,
}

impl Server {
    /// A server over the node's store and database.
    pub fn new(store: Arc<ShardStore>, db: Arc<DB>, metrics: Arc<Metrics>) -> Self {
        let db_for_leases = Arc::clone(&db);
        Self {
            store,
            db,
            metrics,
            wrong_bytes: false,
            refuse_envelopes: false,
            envelope_writes: Mutex::new(()),
            leases: Arc::new(Leases::new(db_for_leases, DEFAULT_LEASE)),
            audits: audit::audit_budget(),
            orders: remove::order_budget(),
            removed: remove::RemovedFiles::default(),
        }
    }

    /// Claims granted by a store or a renewal last `lease`. Default: [`DEFAULT_LEASE`].
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.leases = Arc::new(Leases::new(Arc::clone(&self.db), lease));
        self
    }

    /// The leases of the claims on blobs held.
    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// Test-only: answer every fetch with altered bytes, as a lying peer would. Set only
    /// from [`crate::faults::TestFaults`].
    pub(crate) fn with_wrong_bytes(mut self, on: bool) -> Self {
        self.wrong_bytes = on;
        self
    }

    /// Test-only: refuse every key envelope from a peer, as a broken holder would. Set
    /// only from [`crate::faults::TestFaults`].
    pub(crate) fn with_refuse_envelopes(mut self, on: bool) -> Self {
        self.refuse_envelopes = on;
        self
    }

    /// The shard store served.
    pub fn store(&self) -> &Arc<ShardStore> {
        &self.store
    }

    /// A request, answered with the file it makes this node provide (a manifest holder
    /// that kept the envelope, an `Announce` done). A store's writes are synced before
    /// the answer ([`Durability::Synced`], every peer's request), or left unsynced
    /// ([`Durability::Deferred`]) for a put's request to this node itself (its own shard,
    /// batch or manifest copy): the put's catalog entry, written synced to the same
    /// database after them, makes them durable before the put is acknowledged (one log:
    /// a write that is durable makes every write before it durable).
    pub(crate) fn handle_with(
        &self,
        peer: PeerId,
        request: Request,
        durability: Durability,
    ) -> (Response, Option<FileId>) {
        let response = match request {
            Request::PutEnvelope { bytes } => return self.put_envelope(peer, &bytes),
            Request::StoreManifest {
                id,
                envelope,
                bytes,
            } => {
                return match durability {
                    Durability::Synced => self.store_manifest(peer, id, &envelope, &bytes),
                    Durability::Deferred => {
                        self.store_manifest_deferred(peer, id, &envelope, &bytes)
                    }
                };
            }
            Request::StoreWithManifest {
                id,
                envelope,
                manifest,
                shard,
            } => {
                return self
                    .store_with_manifest(peer, id, &envelope, &manifest, &shard, durability);
            }
            Request::Announce { file, held } => {
                let response = self.announce(peer, file, held);
                let provide = (response == Response::Done).then_some(file);
                return (response, provide);
            }
            Request::Store { id, bytes } => {
                self.store_blob_then(peer, None, id, &bytes, durability)
            }
            Request::StoreFor { file, id, bytes } => {
                self.store_blob_then(peer, Some(file), id, &bytes, durability)
            }
            Request::StoreBatch { shards } => self.store_batch(peer, &shards, durability),
            Request::Fetch { id } => self.fetch(peer, id),
            Request::Has { ids } => self.has(peer, &ids),
            Request::Delete { id } => self.delete(peer, id),
            Request::GetEnvelope { file } => {
                Response::Envelopes(self.envelope(&file).into_iter().collect())
            }
            Request::RemoveFile {
                manifest,
                issued_at,
                signature,
            } => self.remove_file(peer, &manifest, issued_at, &signature),
            Request::Lease { ids, renew } => self.lease(peer, &ids, renew),
            Request::RenewLease {
                manifest,
                issued_at,
                signature,
                ids,
            } => self.renew_lease(peer, &manifest, issued_at, &signature, &ids),
            Request::Audit { id, nonce } => self.audit(peer, id, nonce),
        };
        (response, None)
    }

    /// The shards of a `StoreBatch`, each stored (or refused) as its own `Store` would be,
    /// none acknowledged before one synced write makes them all durable; if that fails,
    /// none is acknowledged.
    fn store_batch(&self, peer: PeerId, shards: &[BatchShard], durability: Durability) -> Response {
        let mut outcomes: Vec<StoreOutcome> = shards
            .iter()
            .map(|shard| {
                store_outcome(self.store_blob_then(
                    peer,
                    None,
                    shard.id,
                    &shard.bytes,
                    Durability::Deferred,
                ))
            })
            .collect();
        let wrote = outcomes
            .iter()
            .any(|o| !matches!(o, StoreOutcome::Refused(_)));
        if wrote
            && durability == Durability::Synced
            && let Err(e) = self.store.sync()
        {
            warn!(%peer, shards = shards.len(), "syncing a batch of shards failed: {e}");
            for outcome in &mut outcomes {
                if !matches!(outcome, StoreOutcome::Refused(_)) {
                    *outcome = StoreOutcome::Refused(Refusal::Failed(FailureReason::Storage));
                }
            }
        }
        Response::BatchStored(outcomes)
    }

    /// A `Store` (`file` `None`) or `StoreFor`: keeps the blob under a claim of `peer`,
    /// bound to `file` if given, and leases it, the write synced now or by the caller
    /// (`durability`). Refused for a file removed lately, and for the manifest of one
    /// (whose blob id is the file id): checked before the write and again after it, when
    /// a removal that came meanwhile (and did not see the new claim) makes it take the
    /// claim back.
    fn store_blob_then(
        &self,
        peer: PeerId,
        file: Option<FileId>,
        id: ShardId,
        bytes: &[u8],
        durability: Durability,
    ) -> Response {
        self.metrics.bytes_in.inc_by(bytes.len() as u64);
        let concerned = [file, Some(FileId::from_bytes(*id.as_bytes()))];
        let removed = || concerned.iter().flatten().any(|f| self.removed_lately(f));
        if removed() {
            debug!(%peer, shard = %id.short(), "refused a blob of a file removed lately");
            self.metrics.shards_refused.inc();
            return Response::Refused(Refusal::Invalid(InvalidReason::Removed));
        }
        let claimant = peer.to_bytes();
        let stored = self
            .store
            .put_with(&id, bytes, &claimant, file.as_ref(), durability);
        if stored.is_ok() && removed() {
            if let Err(e) = self.store.delete(&id, &claimant) {
                warn!(%peer, shard = %id.short(), "taking back a claim on a removed file's blob failed: {e}");
            }
            self.metrics.shards_refused.inc();
            return Response::Refused(Refusal::Invalid(InvalidReason::Removed));
        }
        if stored.is_ok()
            && let Err(e) = self.leases.grant(&id, &claimant, crate::lease::unix_now())
        {
            warn!(%peer, shard = %id.short(), "recording a lease failed: {e}");
        }
        match stored {
            Ok(PutOutcome::Stored) => {
                self.metrics.shards_stored.inc();
                Response::Stored
            }
            Ok(PutOutcome::AlreadyHeld) => Response::AlreadyHeld,
            Err(StoreError::Mismatch { .. }) => {
                warn!(%peer, shard = %id.short(), "peer sent a shard that does not match its id");
                self.metrics.shards_refused.inc();
                self.metrics.bad_shards_received.inc();
                Response::Refused(Refusal::Mismatch)
            }
            Err(StoreError::QuotaExceeded { used, max, .. }) => {
                self.metrics.shards_refused.inc();
                Response::Refused(Refusal::Full { used, max })
            }
            Err(e) => {
                warn!(%peer, shard = %id.short(), "storing a shard failed: {e}");
                self.metrics.shards_refused.inc();
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }

    fn fetch(&self, peer: PeerId, id: ShardId) -> Response {
        match self.store.get(&id) {
            Ok(Some(bytes)) => self.serve_blob(id, bytes),
            Ok(None) => Response::NotFound,
            Err(StoreError::Corrupt { id }) => {
                warn!(shard = %id.short(), "stored shard is corrupt; not served");
                self.metrics.corrupt_shards.inc();
                Response::Refused(Refusal::Corrupt)
            }
            Err(e) => {
                warn!(%peer, shard = %id.short(), "reading a shard failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }

    /// The answer carrying a shard read intact.
    fn serve_blob(&self, id: ShardId, mut bytes: Vec<u8>) -> Response {
        self.metrics.shards_served.inc();
        self.metrics.bytes_out.inc_by(bytes.len() as u64);
        if self.wrong_bytes {
            warn!(shard = %id.short(), "TEST FAULT: serving altered bytes");
            match bytes.first_mut() {
                Some(b) => *b ^= 0xff,
                None => bytes.push(0),
            }
        }
        Response::Blob(bytes.into())
    }

    /// Which of `ids` are held: one small-row lookup per id, no shard read. Each id at most
    /// once (the codec refuses repeats already; this covers the local path).
    fn has(&self, peer: PeerId, ids: &[ShardId]) -> Response {
        if first_duplicate(ids).is_some() {
            debug!(%peer, "refused a has request with duplicate ids");
            return Response::Refused(Refusal::Invalid(InvalidReason::DuplicateIds));
        }
        self.metrics.has_ids_answered.inc_by(ids.len() as u64);
        match self.store.has_each(ids) {
            Ok(flags) => Response::Has(flags),
            Err(e) => {
                warn!(%peer, ids = ids.len(), "looking up shards failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }

    /// A delete: the stored copy if a read found it corrupt (whoever asks: a corrupt copy
    /// is useless to everyone, and a repairer that fetched it asks), else the peer's
    /// claim. A peer without a claim costs a few small-row lookups: no shard read, no
    /// hash, no store-wide lock.
    fn delete(&self, peer: PeerId, id: ShardId) -> Response {
        match self.store.remove_corrupt(&id) {
            Ok(true) => {
                warn!(%peer, shard = %id.short(), "dropped a corrupt copy on request");
                return Response::Done;
            }
            Ok(false) => {}
            Err(e) => {
                warn!(%peer, shard = %id.short(), "dropping a corrupt copy failed: {e}");
                return Response::Refused(Refusal::Failed(FailureReason::Storage));
            }
        }
        match self.store.delete(&id, &peer.to_bytes()) {
            Ok(DeleteOutcome::NotOwner) => Response::Refused(Refusal::Denied),
            Ok(DeleteOutcome::Deleted) => {
                // A manifest (its blob id is the file id) takes its envelope and cached
                // authority key along, unless the envelope is this node's own (kept under
                // a lease of its own); for any other blob these are empty lookups.
                let own = self.leases.held_by(&id, crate::lease::OWN_ENVELOPE);
                if !own.unwrap_or(true)
                    && let Err(e) = self.drop_envelope(&FileId::from_bytes(*id.as_bytes()))
                {
                    warn!(%peer, shard = %id.short(), "dropping a deleted manifest's envelope failed: {e}");
                }
                Response::Done
            }
            Ok(_) => Response::Done,
            Err(e) => {
                warn!(%peer, shard = %id.short(), "deleting a shard failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }

    /// Whether the node may announce `file` for `peer`: it holds the file's manifest, or
    /// `peer` stored `held` here and binds that claim to the file (one file per claim).
    /// `Done` means yes (the swarm task then starts providing); a file the node holds
    /// nothing of is refused. A couple of small-row lookups and one small write; for a
    /// manifest held here, its authority key is cached if it is not yet (one read and
    /// parse per file, ever): a manifest holder that announces is one the other holders
    /// may defer to, so its network repair must look after the file
    /// ([`Self::held_manifests`]) even if no key envelope reached it.
    fn announce(&self, peer: PeerId, file: FileId, held: ShardId) -> Response {
        if self.removed_lately(&file) {
            debug!(%peer, %file, "refused to announce a file removed lately");
            return Response::Refused(Refusal::Invalid(InvalidReason::Removed));
        }
        let outcome = self
            .store
            .has(&ShardId::from_bytes(*file.as_bytes()))
            .and_then(|manifest| {
                if manifest {
                    Ok(BindOutcome::Bound)
                } else {
                    self.store.bind_claim(&held, &peer.to_bytes(), &file)
                }
            });
        if matches!(outcome, Ok(BindOutcome::Bound))
            && let Err(e) = self.held_authority(&file, None)
        {
            warn!(%peer, %file, "caching the authority key of an announced manifest failed: {e}");
        }
        match outcome {
            Ok(BindOutcome::Bound) => Response::Done,
            Ok(BindOutcome::NoClaim | BindOutcome::OtherFile) => {
                debug!(%peer, %file, "refused to announce a file not held here");
                Response::Refused(Refusal::Invalid(InvalidReason::UnknownFile))
            }
            Err(e) => {
                warn!(%peer, %file, "checking an announcement failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }

    /// A peer's key envelope: kept if this node holds the file's manifest and the
    /// envelope verifies and is newer than the one held. The file is also returned when
    /// the envelope is kept as the first held for the file (protocol 7): the swarm task
    /// then provides the file as for an `Announce`, so a putter need not send one to a
    /// manifest holder. A newer envelope (a share, a rewrap) or the same bytes again
    /// start nothing: a peer gets at most one provide per manifest held out of this.
    fn put_envelope(&self, peer: PeerId, bytes: &[u8]) -> (Response, Option<FileId>) {
        self.put_envelope_of(peer, bytes, None, Durability::Synced)
    }

    /// [`Self::put_envelope`], refusing an envelope of any other file than the one of
    /// `beside` (the manifest beside it in a `StoreManifest`, just stored: its bytes give
    /// the authority key without reading them back), its write made durable as
    /// `durability` says.
    fn put_envelope_of(
        &self,
        peer: PeerId,
        bytes: &[u8],
        beside: Option<(FileId, &[u8])>,
        durability: Durability,
    ) -> (Response, Option<FileId>) {
        let expected = beside.map(|(file, _)| file);
        if self.refuse_envelopes {
            warn!(%peer, "TEST FAULT: refusing a key envelope");
            return (
                Response::Refused(Refusal::Failed(FailureReason::Storage)),
                None,
            );
        }
        if bytes.len() > MAX_ENVELOPE_LEN {
            let refused = Response::Refused(Refusal::Invalid(InvalidReason::EnvelopeTooLarge));
            return (refused, None);
        }
        let envelope = match KeyEnvelope::from_bytes(bytes) {
            Ok(e) => e,
            Err(e) => {
                debug!(%peer, "refused a key envelope: {e}");
                let refused = Response::Refused(Refusal::Invalid(InvalidReason::BadEnvelope));
                return (refused, None);
            }
        };
        let file = envelope.file_id();
        if expected.is_some_and(|expected| expected != file) {
            debug!(%peer, %file, "refused an envelope sent with another file's manifest");
            self.metrics.envelopes_refused.inc();
            let refused = Response::Refused(Refusal::Invalid(InvalidReason::BadEnvelope));
            return (refused, None);
        }
        if self.removed_lately(&file) {
            debug!(%peer, %file, "refused the key envelope of a file removed lately");
            self.metrics.envelopes_refused.inc();
            return (
                Response::Refused(Refusal::Invalid(InvalidReason::Removed)),
                None,
            );
        }
        let refused = match self.held_authority(&file, beside.map(|(_, bytes)| bytes)) {
            Ok(Some(authority)) => {
                match self.keep_envelope(&envelope, bytes, &authority, durability) {
                    Ok(Kept::New) => return (Response::Done, Some(file)),
                    Ok(Kept::Same | Kept::Replaced) => return (Response::Done, None),
                    Err(e) => e,
                }
            }
            Ok(None) => EnvelopeRefusal::UnknownFile,
            Err(e) => e,
        };
        debug!(%peer, %file, "refused a key envelope: {refused}");
        self.metrics.envelopes_refused.inc();
        let response = match refused {
            EnvelopeRefusal::UnknownFile => {
                Response::Refused(Refusal::Invalid(InvalidReason::UnknownFile))
            }
            EnvelopeRefusal::BadSignature => {
                Response::Refused(Refusal::Invalid(InvalidReason::BadEnvelope))
            }
            EnvelopeRefusal::Stale { .. } => {
                Response::Refused(Refusal::Invalid(InvalidReason::StaleEnvelope))
            }
            EnvelopeRefusal::Full { used, max } => Response::Refused(Refusal::Full { used, max }),
            EnvelopeRefusal::Store(e) => {
                warn!(%peer, %file, "keeping a key envelope failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        };
        (response, None)
    }

    /// A put's manifest copy with the file's key envelope (protocol 8): the manifest is
    /// stored as by a `Store`; once it is held, the envelope is kept as by a `PutEnvelope`
    /// if it is the envelope of that very file; both writes are synced once, before the
    /// answer. One request where a put sent two; what each part may cost and what it
    /// proves are the same as for its own request. The file is returned when the envelope
    /// is kept as the file's first, as for a `PutEnvelope`.
    fn store_manifest(
        &self,
        peer: PeerId,
        id: ShardId,
        envelope: &[u8],
        bytes: &[u8],
    ) -> (Response, Option<FileId>) {
        let (answer, provide) = self.store_manifest_deferred(peer, id, envelope, bytes);
        if !matches!(answer, Response::ManifestStored { .. }) {
            return (answer, provide);
        }
        if let Err(e) = self.store.sync() {
            warn!(%peer, manifest = %id.short(), "syncing a manifest and its envelope failed: {e}");
            return (
                Response::Refused(Refusal::Failed(FailureReason::Storage)),
                None,
            );
        }
        (answer, provide)
    }

    /// [`Self::store_manifest`], its writes made durable by the caller's
    /// [`ShardStore::sync`].
    fn store_manifest_deferred(
        &self,
        peer: PeerId,
        id: ShardId,
        envelope: &[u8],
        bytes: &[u8],
    ) -> (Response, Option<FileId>) {
        match self.store_blob_then(peer, None, id, bytes, Durability::Deferred) {
            Response::Stored | Response::AlreadyHeld => {}
            refused => return (refused, None),
        }
        let file = FileId::from_bytes(*id.as_bytes());
        let (answer, provide) =
            self.put_envelope_of(peer, envelope, Some((file, bytes)), Durability::Deferred);
        let envelope_refused = match answer {
            Response::Done => None,
            Response::Refused(refusal) => Some(refusal),
            _ => Some(Refusal::Failed(FailureReason::Storage)),
        };
        (Response::ManifestStored { envelope_refused }, provide)
    }

    /// A put's shard and its manifest copy with the file's key envelope (protocol 10):
    /// the shard stored as by a `Store`, then the manifest and the envelope as by a
    /// `StoreManifest` (a refused shard does not stop them), the writes of the shard, the
    /// manifest and the envelope synced once before the answer. One request where a put
    /// sent two; each part costs and proves what its own request would. The file is
    /// returned as for a `StoreManifest`.
    fn store_with_manifest(
        &self,
        peer: PeerId,
        id: ShardId,
        envelope: &[u8],
        manifest: &[u8],
        shard: &BatchShard,
        durability: Durability,
    ) -> (Response, Option<FileId>) {
        let mut shard_outcome = store_outcome(self.store_blob_then(
            peer,
            None,
            shard.id,
            &shard.bytes,
            Durability::Deferred,
        ));
        let (answer, mut provide) = self.store_manifest_deferred(peer, id, envelope, manifest);
        let mut manifest_outcome = match answer {
            Response::ManifestStored { envelope_refused } => {
                ManifestOutcome::Stored { envelope_refused }
            }
            Response::Refused(refusal) => ManifestOutcome::Refused(refusal),
            _ => ManifestOutcome::Refused(Refusal::Failed(FailureReason::Storage)),
        };
        let shard_written = !matches!(shard_outcome, StoreOutcome::Refused(_));
        let manifest_written = matches!(manifest_outcome, ManifestOutcome::Stored { .. });
        if (shard_written || manifest_written)
            && durability == Durability::Synced
            && let Err(e) = self.store.sync()
        {
            warn!(%peer, shard = %shard.id.short(), "syncing a shard and manifest failed: {e}");
            let failed = Refusal::Failed(FailureReason::Storage);
            if shard_written {
                shard_outcome = StoreOutcome::Refused(failed.clone());
            }
            if manifest_written {
                manifest_outcome = ManifestOutcome::Refused(failed);
                provide = None;
            }
        }
        let response = Response::ShardAndManifest {
            shard: shard_outcome,
            manifest: manifest_outcome,
        };
        (response, provide)
    }

    /// The authority key of a file whose manifest this node holds, or `None` if it holds
    /// no manifest under that id. The key is cached in a small row the first time the
    /// manifest is parsed (an empty row if the blob under that id is not a manifest), so
    /// each blob held is read and parsed at most once, however many envelopes name it.
    ///
    /// `stored`: the blob's bytes, stored under that id by the request at hand (checked
    /// against it then): held, and parsed from there rather than read back.
    fn held_authority(
        &self,
        file: &FileId,
        stored: Option<&[u8]>,
    ) -> Result<Option<AuthorityPublic>, EnvelopeRefusal> {
        let blob = ShardId::from_bytes(*file.as_bytes());
        let files = cf(&self.db, CF_FILES)?;
        let key = row_key(AUTHORITY_PREFIX, file.as_bytes());
        let cached = self.db.get_pinned_cf(files, &key).map_err(DbError::from)?;
        // A blob's id fixes its bytes: one that was not a manifest never will be.
        if cached.as_ref().is_some_and(|row| row.is_empty())
            || (stored.is_none() && !self.store.has(&blob).map_err(EnvelopeRefusal::Store)?)
        {
            return Ok(None);
        }
        if let Some(row) = cached {
            return Ok(AuthorityPublic::from_bytes(&row).ok());
        }
        let parse = |bytes: &[u8]| Manifest::from_bytes(bytes).ok().map(|m| m.authority().key);
        let authority = match stored {
            Some(bytes) => parse(bytes),
            None => match self.store.get(&blob) {
                Ok(Some(bytes)) => {
                    self.metrics
                        .manifest_bytes_read_for_envelopes
                        .inc_by(bytes.len() as u64);
                    parse(&bytes)
                }
                // Gone meanwhile, or corrupt: nothing to cache.
                Ok(None) | Err(StoreError::Corrupt { .. }) => return Ok(None),
                Err(e) => return Err(EnvelopeRefusal::Store(e)),
            },
        };
        self.metrics.manifests_parsed_for_envelopes.inc();
        self.cache_authority(file, authority.as_ref())?;
        Ok(authority)
    }

    /// Caches the authority key of the manifest under `file` (`None`: that blob is not a
    /// manifest). The row also makes the network repair look after the file while the
    /// manifest blob is held here ([`Self::held_manifests`]).
    fn cache_authority(
        &self,
        file: &FileId,
        authority: Option<&AuthorityPublic>,
    ) -> Result<(), DbError> {
        let files = cf(&self.db, CF_FILES)?;
        let row = authority.map(|a| a.to_bytes().to_vec()).unwrap_or_default();
        self.db
            .put_cf(files, row_key(AUTHORITY_PREFIX, file.as_bytes()), row)
            .map_err(DbError::from)
    }

    /// Keeps `bytes` (parsed as `envelope`) as the file's envelope if it verifies under
    /// `authority` and is newer than the one held; its bytes count against the quota.
    fn keep_envelope(
        &self,
        envelope: &KeyEnvelope,
        bytes: &[u8],
        authority: &AuthorityPublic,
        durability: Durability,
    ) -> Result<Kept, EnvelopeRefusal> {
        envelope
            .verify(authority)
            .map_err(|_| EnvelopeRefusal::BadSignature)?;
        let files = cf(&self.db, CF_FILES)?;
        let key = row_key(ENVELOPE_PREFIX, envelope.file_id().as_bytes());
        // One replacement at a time: the sequence check and the write are one step.
        let _guard = self
            .envelope_writes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let old = self.db.get_cf(files, &key).map_err(DbError::from)?;
        let old_len = old.as_ref().map_or(0, |o| o.len() as u64);
        if let Some(old) = &old {
            if old[..] == *bytes {
                return Ok(Kept::Same);
            }
            // What is held verified when it was kept; a row that no longer parses is
            // replaced.
            if let Ok(held) = KeyEnvelope::from_bytes(old)
                && held.sequence() >= envelope.sequence()
            {
                return Err(EnvelopeRefusal::Stale {
                    held: held.sequence(),
                });
            }
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(files, &key, bytes);
        match self
            .store
            .write_counted(batch, old_len, bytes.len() as u64, durability)
        {
            Ok(()) if old.is_some() => Ok(Kept::Replaced),
            Ok(()) => Ok(Kept::New),
            Err(StoreError::QuotaExceeded { used, max, .. }) => {
                Err(EnvelopeRefusal::Full { used, max })
            }
            Err(e) => Err(EnvelopeRefusal::Store(e)),
        }
    }

    /// Keeps an envelope of one of this node's own files (put, share, rewrap), checked
    /// against the manifest the caller holds (from its catalog): this node need not hold
    /// the manifest blob itself. [`Durability::Deferred`] only for a caller whose synced
    /// write of the same database follows (a put's catalog entry: one log, so that sync
    /// makes this write durable too).
    ///
    /// # Errors
    /// [`EnvelopeRefusal`] saying why it was not kept.
    pub fn keep_own_envelope(
        &self,
        manifest: &Manifest,
        bytes: &[u8],
        durability: Durability,
    ) -> Result<(), EnvelopeRefusal> {
        let envelope = KeyEnvelope::from_bytes(bytes).map_err(|_| EnvelopeRefusal::BadSignature)?;
        if envelope.file_id() != manifest.file_id() {
            return Err(EnvelopeRefusal::UnknownFile);
        }
        self.keep_envelope(&envelope, bytes, &manifest.authority().key, durability)?;
        // The putter may hold a copy of its own manifest (it is one of the peers nearest
        // to the file id): no peer sends it the envelope, so cache the key here, or its
        // network repair would never look at the file while the other holders defer to it.
        self.cache_authority(&envelope.file_id(), Some(&manifest.authority().key))?;
        // Leased like a blob: collected once the owner stops renewing (`serve/lease.rs`).
        self.lease_own_envelope(&envelope.file_id())
            .map_err(EnvelopeRefusal::Store)
    }

    /// The key envelope held for a file, if any.
    pub fn envelope(&self, file: &FileId) -> Option<Vec<u8>> {
        let files = cf(&self.db, CF_FILES).ok()?;
        self.db
            .get_cf(files, row_key(ENVELOPE_PREFIX, file.as_bytes()))
            .ok()
            .flatten()
    }

    /// How many key envelopes this node holds (one per file at most).
    pub fn envelope_count(&self) -> usize {
        let Ok(files) = cf(&self.db, CF_FILES) else {
            return 0;
        };
        self.db
            .prefix_iterator_cf(files, [ENVELOPE_PREFIX])
            .map_while(Result::ok)
            .take_while(|(k, _)| k.first() == Some(&ENVELOPE_PREFIX))
            .count()
    }
}

/// How a key envelope was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kept {
    /// The first envelope held for the file.
    New,
    /// The same bytes were held already.
    Same,
    /// It replaced an older envelope (a lower sequence).
    Replaced,
}

/// Why a key envelope was not kept: told to a peer as a typed refusal, logged in full
/// here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeRefusal {
    /// No manifest is held for the envelope's file.
    #[error("no manifest held for this file")]
    UnknownFile,
    /// Malformed, or not signed with the file's authority key.
    #[error("the envelope does not verify under the file's authority key")]
    BadSignature,
    /// The sequence is not higher than the one held.
    #[error("sequence not newer than the one held ({held})")]
    Stale {
        /// The sequence held.
        held: u64,
    },
    /// The quota is used up.
    #[error("storage full: {used} of {max} bytes used")]
    Full {
        /// Bytes in use.
        used: u64,
        /// Quota.
        max: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<DbError> for EnvelopeRefusal {
    fn from(e: DbError) -> Self {
        Self::Store(StoreError::Db(e))
    }
}

/// A store's answer as the outcome of one shard of a request that carries several parts.
fn store_outcome(response: Response) -> StoreOutcome {
    match response {
        Response::Stored => StoreOutcome::Stored,
        Response::AlreadyHeld => StoreOutcome::AlreadyHeld,
        Response::Refused(refusal) => StoreOutcome::Refused(refusal),
        _ => StoreOutcome::Refused(Refusal::Failed(FailureReason::Storage)),
    }
}

fn row_key(prefix: u8, file: &[u8; 32]) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(file);
    key
}

/// The largest shard a `Fetch` is answered with by the swarm task itself, when it is in
/// memory ([`InboundHandler::answer_at_once`]): a small file's shard (a 64 KiB file has
/// four of about 16 KiB), checked against its id in microseconds.
const AT_ONCE_MAX_BYTES: usize = 64 * 1024;

impl InboundHandler for Server {
    fn handle(&self, peer: PeerId, request: Request) -> Response {
        self.handle_with(peer, request, Durability::Synced).0
    }

    fn answer_at_once(&self, request: &Request) -> Option<Response> {
        let Request::Fetch { id } = request else {
            return None;
        };
        let bytes = self.store.get_from_memory(id, AT_ONCE_MAX_BYTES)?;
        self.metrics.shards_served_at_once.inc();
        Some(self.serve_blob(*id, bytes))
    }

    fn handle_and_provide(&self, peer: PeerId, request: Request) -> (Response, Option<FileId>) {
        self.handle_with(peer, request, Durability::Synced)
    }
}

#[cfg(test)]
mod tests {
    use datamesh_core::ecies::SecretKey;
    use datamesh_core::{
        AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, EncodedFile, Encoder,
    };

    use super::*;
    use crate::store::StoreConfig;
    use bytes::Bytes;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A small file of `root`'s, encoded, stored nowhere.
    fn file_of(
        root: &AuthorityRoot,
    ) -> Result<(EncodedFile, AuthorityKey), Box<dyn std::error::Error>> {
        let authority = AuthorityKey::derive(root, &AuthoritySalt::random())?;
        let mut encoder = Encoder::new(&b"hello"[..], EncodeOptions::new("h"));
        for stripe in encoder.by_ref() {
            stripe?;
        }
        let file = encoder.finish(authority.file_authority())?;
        Ok((file, authority))
    }

    /// A small file of `root`'s, its manifest stored on `server` as a peer would.
    fn file_on(
        server: &Server,
        root: &AuthorityRoot,
    ) -> Result<(EncodedFile, AuthorityKey), Box<dyn std::error::Error>> {
        let (file, authority) = file_of(root)?;
        let bytes = file.manifest.to_bytes();
        let id = ShardId::from_bytes(*file.file_id.as_bytes());
        assert_eq!(
            server.store().put(&id, &bytes, b"putter")?,
            crate::store::PutOutcome::Stored
        );
        Ok((file, authority))
    }

    /// The file's first key envelope (sequence 1), to a key nobody else holds.
    fn first_envelope(
        file: &EncodedFile,
        authority: &AuthorityKey,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let recipients = [SecretKey::generate().public_key()];
        Ok(KeyEnvelope::seal(file.file_id, 1, &file.data_key, &recipients, authority)?.to_bytes())
    }

    fn put(server: &Server, bytes: Vec<u8>) -> Response {
        server.handle(PeerId::random(), Request::PutEnvelope { bytes })
    }

    fn refused(reason: InvalidReason) -> Response {
        Response::Refused(Refusal::Invalid(reason))
    }

    fn server(dir: &std::path::Path, quota: u64) -> Result<Server, Box<dyn std::error::Error>> {
        let db = crate::db::open(dir)?;
        let store = Arc::new(ShardStore::new(Arc::clone(&db), StoreConfig::new(quota)));
        Ok(Server::new(store, db, Arc::new(Metrics::new())))
    }

    #[test]
    fn envelopes_for_files_not_held_are_refused_and_cost_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 20)?;
        let attacker = AuthorityRoot::from_bytes(&[3; 32]);
        let recipients: Vec<_> = (0..200)
            .map(|_| SecretKey::generate().public_key())
            .collect();
        let authority = AuthorityKey::derive(&attacker, &AuthoritySalt::random())?;
        let template = KeyEnvelope::seal(
            FileId::of_manifest(b"made up"),
            1,
            &datamesh_core::DataKey::generate(),
            &recipients,
            &authority,
        )?
        .to_bytes();
        assert!(template.len() > 30_000 && template.len() <= MAX_ENVELOPE_LEN);
        for i in 0..640u32 {
            // Another made-up file id each time (bytes 1..33 of the wire form).
            let mut bytes = template.clone();
            bytes[1..5].copy_from_slice(&i.to_be_bytes());
            assert_eq!(put(&server, bytes), refused(InvalidReason::UnknownFile));
        }
        assert_eq!(server.store().used_bytes()?, 0);
        assert_eq!(server.envelope_count(), 0);
        assert_eq!(server.metrics.envelopes_refused.get(), 640);
        assert_eq!(server.metrics.manifests_parsed_for_envelopes.get(), 0);

        // Envelopes naming a blob held that is not a manifest (a shard): it is parsed
        // once, then refused from the cached row.
        let shard = vec![7u8; 100_000];
        let id = ShardId::of(&shard);
        server.store().put(&id, &shard, b"putter")?;
        let mut bytes = template.clone();
        bytes[1..33].copy_from_slice(id.as_bytes());
        for _ in 0..20 {
            assert_eq!(
                put(&server, bytes.clone()),
                refused(InvalidReason::UnknownFile)
            );
        }
        assert_eq!(server.metrics.manifests_parsed_for_envelopes.get(), 1);
        assert_eq!(server.store().used_bytes()?, shard.len() as u64);
        Ok(())
    }

    #[test]
    fn only_the_first_envelope_kept_for_a_file_makes_the_node_provide_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 20)?;
        let root = AuthorityRoot::from_bytes(&[5; 32]);
        let (file, authority) = file_on(&server, &root)?;
        let seal = |seq: u64, key: &AuthorityKey| {
            KeyEnvelope::seal(
                file.file_id,
                seq,
                &file.data_key,
                &[SecretKey::generate().public_key()],
                key,
            )
            .map(|e| e.to_bytes())
        };
        let peer = PeerId::random();
        let offer =
            |bytes: Vec<u8>| server.handle_and_provide(peer, Request::PutEnvelope { bytes });
        // Signed by another root: refused, nothing provided.
        let forged = seal(
            1,
            &AuthorityKey::derive(
                &AuthorityRoot::from_bytes(&[6; 32]),
                &AuthoritySalt::random(),
            )?,
        )?;
        assert_eq!(offer(forged), (refused(InvalidReason::BadEnvelope), None));
        // The first kept: provided.
        let first = seal(1, &authority)?;
        assert_eq!(offer(first.clone()), (Response::Done, Some(file.file_id)));
        // The same bytes again, and a newer envelope: kept, nothing provided again.
        assert_eq!(offer(first), (Response::Done, None));
        assert_eq!(offer(seal(2, &authority)?), (Response::Done, None));
        // An envelope of a file whose manifest is not held: refused, nothing provided.
        let (other, other_authority) = file_on(&server, &root)?;
        let elsewhere = KeyEnvelope::seal(
            FileId::of_manifest(b"not held"),
            1,
            &other.data_key,
            &[SecretKey::generate().public_key()],
            &other_authority,
        )?
        .to_bytes();
        assert_eq!(
            offer(elsewhere),
            (refused(InvalidReason::UnknownFile), None)
        );
        // An honoured `Announce` provides as before; other requests never do.
        let manifest = ShardId::from_bytes(*file.file_id.as_bytes());
        let announce = Request::Announce {
            file: file.file_id,
            held: manifest,
        };
        assert_eq!(
            server.handle_and_provide(peer, announce),
            (Response::Done, Some(file.file_id))
        );
        let has = Request::Has {
            ids: vec![manifest],
        };
        assert_eq!(
            server.handle_and_provide(peer, has),
            (Response::Has(vec![true]), None)
        );
        Ok(())
    }

    #[test]
    fn a_manifest_and_its_envelope_are_kept_from_one_request() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 20)?;
        let root = AuthorityRoot::from_bytes(&[7; 32]);
        let peer = PeerId::random();
        let seal = |file: &EncodedFile, key: &AuthorityKey| {
            KeyEnvelope::seal(
                file.file_id,
                1,
                &file.data_key,
                &[SecretKey::generate().public_key()],
                key,
            )
            .map(|e| e.to_bytes())
        };
        let offer = |file: &EncodedFile, envelope: Vec<u8>, bytes: Vec<u8>| {
            server.handle_and_provide(
                peer,
                Request::StoreManifest {
                    id: ShardId::from_bytes(*file.file_id.as_bytes()),
                    envelope,
                    bytes: bytes.into(),
                },
            )
        };
        let held = |file: &EncodedFile| {
            server
                .store()
                .has(&ShardId::from_bytes(*file.file_id.as_bytes()))
        };
        let envelope_refused = |reason| Response::ManifestStored {
            envelope_refused: Some(Refusal::Invalid(reason)),
        };

        // Bytes that are not the manifest the id names: the store's refusal, and the
        // envelope is not looked at.
        let (a, a_authority) = file_of(&root)?;
        let good = seal(&a, &a_authority)?;
        let not_a = b"not the manifest".to_vec();
        assert_eq!(
            offer(&a, good.clone(), not_a),
            (Response::Refused(Refusal::Mismatch), None)
        );
        assert!(!held(&a)?);
        assert_eq!(server.envelope(&a.file_id), None);

        // The manifest is kept whatever becomes of the envelope beside it: another
        // file's envelope, one that does not parse, one over the limit, a forged one.
        let (b, b_authority) = file_of(&root)?;
        let b_manifest = b.manifest.to_bytes();
        let forged = seal(
            &b,
            &AuthorityKey::derive(
                &AuthorityRoot::from_bytes(&[8; 32]),
                &AuthoritySalt::random(),
            )?,
        )?;
        for (envelope, reason) in [
            (good.clone(), InvalidReason::BadEnvelope),
            (b"garbage".to_vec(), InvalidReason::BadEnvelope),
            (
                vec![0; MAX_ENVELOPE_LEN + 1],
                InvalidReason::EnvelopeTooLarge,
            ),
            (forged, InvalidReason::BadEnvelope),
        ] {
            assert_eq!(
                offer(&b, envelope, b_manifest.clone()),
                (envelope_refused(reason), None)
            );
        }
        assert!(held(&b)?);
        assert_eq!(server.envelope(&b.file_id), None);
        assert_eq!(server.envelope(&a.file_id), None);

        // The manifest with its own file's envelope: both kept, the file provided; the
        // same request again provides nothing more.
        let b_envelope = seal(&b, &b_authority)?;
        let kept = Response::ManifestStored {
            envelope_refused: None,
        };
        assert_eq!(
            offer(&b, b_envelope.clone(), b_manifest.clone()),
            (kept.clone(), Some(b.file_id))
        );
        assert_eq!(server.envelope(&b.file_id), Some(b_envelope.clone()));
        assert_eq!(offer(&b, b_envelope, b_manifest), (kept.clone(), None));
        let a_manifest = a.manifest.to_bytes();
        assert_eq!(offer(&a, good.clone(), a_manifest), (kept, Some(a.file_id)));
        assert_eq!(server.envelope(&a.file_id), Some(good));

        // Bytes stored under their own hash that are no manifest, with an envelope naming
        // them (signed by a key the peer chose): the blob is held, the envelope refused
        // for a file this node does not know, from the bytes in hand and then from the
        // cached row (one parse).
        let junk = vec![5u8; 3000];
        let junk_id = ShardId::of(&junk);
        let junk_file = FileId::from_bytes(*junk_id.as_bytes());
        let squatter = AuthorityKey::derive(&root, &AuthoritySalt::random())?;
        let envelope = KeyEnvelope::seal(
            junk_file,
            1,
            &a.data_key,
            &[SecretKey::generate().public_key()],
            &squatter,
        )?
        .to_bytes();
        let parsed = server.metrics.manifests_parsed_for_envelopes.get();
        for _ in 0..3 {
            let answer = server.handle_and_provide(
                peer,
                Request::StoreManifest {
                    id: junk_id,
                    envelope: envelope.clone(),
                    bytes: junk.clone().into(),
                },
            );
            assert_eq!(answer, (envelope_refused(InvalidReason::UnknownFile), None));
        }
        assert!(server.store().has(&junk_id)?);
        assert_eq!(server.envelope(&junk_file), None);
        assert_eq!(
            server.metrics.manifests_parsed_for_envelopes.get(),
            parsed + 1
        );
        Ok(())
    }

    #[test]
    fn a_shard_and_a_manifest_copy_from_one_request_are_each_kept_or_refused_on_their_own()
    -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 20)?;
        let root = AuthorityRoot::from_bytes(&[9; 32]);
        let peer = PeerId::random();
        let (file, authority) = file_of(&root)?;
        let manifest = file.manifest.to_bytes();
        let envelope = first_envelope(&file, &authority)?;
        let offer = |shard: &[u8], shard_id: ShardId, manifest: &[u8]| {
            server.handle_and_provide(
                peer,
                Request::StoreWithManifest {
                    id: ShardId::from_bytes(*file.file_id.as_bytes()),
                    envelope: envelope.clone(),
                    manifest: Bytes::copy_from_slice(manifest),
                    shard: BatchShard {
                        id: shard_id,
                        bytes: Bytes::copy_from_slice(shard),
                    },
                },
            )
        };
        let (shard, other) = (vec![3u8; 2000], vec![4u8; 2000]);
        let (shard_id, other_id) = (ShardId::of(&shard), ShardId::of(&other));
        let manifest_blob = ShardId::from_bytes(*file.file_id.as_bytes());
        let kept = ManifestOutcome::Stored {
            envelope_refused: None,
        };

        // A shard that is not what its id names, beside a manifest that is not either:
        // each refused as its own request would be, nothing held.
        let answer = offer(&other, shard_id, b"not the manifest");
        let expected = Response::ShardAndManifest {
            shard: StoreOutcome::Refused(Refusal::Mismatch),
            manifest: ManifestOutcome::Refused(Refusal::Mismatch),
        };
        assert_eq!(answer, (expected, None));
        assert!(!server.store().has(&shard_id)? && !server.store().has(&manifest_blob)?);

        // A bad shard does not stop the manifest and its envelope: kept, the file
        // provided (the envelope is its first).
        let answer = offer(&other, shard_id, &manifest);
        let expected = Response::ShardAndManifest {
            shard: StoreOutcome::Refused(Refusal::Mismatch),
            manifest: kept.clone(),
        };
        assert_eq!(answer, (expected, Some(file.file_id)));
        assert!(!server.store().has(&shard_id)?);
        assert_eq!(server.envelope(&file.file_id), Some(envelope.clone()));

        // Both good: the shard stored, the manifest and envelope found held, nothing
        // provided again; the same again finds the shard held.
        let both = |shard| Response::ShardAndManifest {
            shard,
            manifest: kept.clone(),
        };
        assert_eq!(
            offer(&shard, shard_id, &manifest),
            (both(StoreOutcome::Stored), None)
        );
        assert_eq!(
            offer(&shard, shard_id, &manifest),
            (both(StoreOutcome::AlreadyHeld), None)
        );
        assert_eq!(server.store().get(&shard_id)?, Some(shard.clone()));

        // Another shard with the manifest held: stored, and still held after a reopen.
        assert_eq!(
            offer(&other, other_id, &manifest),
            (both(StoreOutcome::Stored), None)
        );
        drop(server);
        let server = self::server(dir.path(), 1 << 20)?;
        assert_eq!(server.store().get(&other_id)?, Some(other));
        assert!(server.store().has(&manifest_blob)?);
        Ok(())
    }

    #[test]
    fn one_envelope_per_file_replaced_only_by_the_owner_with_a_higher_sequence() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 20)?;
        let owner_root = AuthorityRoot::from_bytes(&[1; 32]);
        let (file, authority) = file_on(&server, &owner_root)?;
        let manifest_len = server.store().used_bytes()?;
        let reader = SecretKey::generate();
        let seal = |seq: u64, key: &AuthorityKey| {
            KeyEnvelope::seal(
                file.file_id,
                seq,
                &file.data_key,
                &[reader.public_key()],
                key,
            )
            .map(|e| e.to_bytes())
        };
        let first = seal(1, &authority)?;
        assert_eq!(put(&server, first.clone()), Response::Done);
        assert_eq!(server.envelope(&file.file_id), Some(first.clone()));
        assert_eq!(
            server.store().used_bytes()?,
            manifest_len + first.len() as u64
        );
        // The same bytes again: nothing changes.
        assert_eq!(put(&server, first.clone()), Response::Done);
        assert_eq!(
            server.store().used_bytes()?,
            manifest_len + first.len() as u64
        );

        // Someone else's root, even with the file's salt, and even at a higher sequence.
        let squatter = AuthorityKey::derive(
            &AuthorityRoot::from_bytes(&[2; 32]),
            &file.manifest.authority().salt,
        )?;
        for seq in [2, 1_000, u64::MAX] {
            assert_eq!(
                put(&server, seal(seq, &squatter)?),
                refused(InvalidReason::BadEnvelope)
            );
        }
        // The owner's own envelope, but not newer: stale.
        assert_eq!(
            put(&server, seal(1, &authority)?),
            refused(InvalidReason::StaleEnvelope)
        );
        let second = seal(2, &authority)?;
        assert_eq!(put(&server, second.clone()), Response::Done);
        assert_eq!(put(&server, first), refused(InvalidReason::StaleEnvelope));
        assert_eq!(server.envelope(&file.file_id), Some(second.clone()));
        assert_eq!(server.envelope_count(), 1);
        assert_eq!(
            server.store().used_bytes()?,
            manifest_len + second.len() as u64
        );
        // One manifest parse, however many envelopes named the file.
        assert_eq!(server.metrics.manifests_parsed_for_envelopes.get(), 1);
        Ok(())
    }

    #[test]
    fn deleting_the_last_claim_on_a_manifest_drops_its_envelope() -> TestResult {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 30)?;
        let owner = PeerId::random();
        let root = AuthorityRoot::from_bytes(&[1; 32]);
        let (file, _) = remove::tests::put_file(&server, owner, &root)?;
        let envelope = server.envelope(&file.file_id).ok_or("no envelope")?;
        let used = server.store().used_bytes()?;
        let id = ShardId::from_bytes(*file.file_id.as_bytes());
        assert_eq!(server.handle(owner, Request::Delete { id }), Response::Done);
        assert!(server.envelope(&file.file_id).is_none());
        let freed = (file.manifest.to_bytes().len() + envelope.len()) as u64;
        assert_eq!(server.store().used_bytes()?, used - freed);
        Ok(())
    }

    #[test]
    fn envelope_bytes_count_against_the_quota() -> TestResult {
        let dir = tempfile::tempdir()?;
        // Room for the manifest and a few hundred bytes more.
        let probe = server(tempfile::tempdir()?.path(), 1 << 20)?;
        let (probe_file, _) = file_on(&probe, &AuthorityRoot::from_bytes(&[1; 32]))?;
        let quota = probe_file.manifest.to_bytes().len() as u64 + 400;
        let server = server(dir.path(), quota)?;
        let (file, authority) = file_on(&server, &AuthorityRoot::from_bytes(&[1; 32]))?;
        let recipients: Vec<_> = (0..8).map(|_| SecretKey::generate().public_key()).collect();
        let big =
            KeyEnvelope::seal(file.file_id, 1, &file.data_key, &recipients, &authority)?.to_bytes();
        let used = server.store().used_bytes()?;
        assert!(used + big.len() as u64 > quota);
        assert_eq!(
            put(&server, big),
            Response::Refused(Refusal::Full { used, max: quota })
        );
        assert_eq!(server.envelope_count(), 0);
        let small = KeyEnvelope::seal(
            file.file_id,
            1,
            &file.data_key,
            &recipients[..1],
            &authority,
        )?
        .to_bytes();
        assert_eq!(put(&server, small.clone()), Response::Done);
        assert_eq!(server.store().used_bytes()?, used + small.len() as u64);
        Ok(())
    }

    #[test]
    fn a_batch_stores_each_shard_as_its_own_store_would_and_answers_each() -> TestResult {
        let dir = tempfile::tempdir()?;
        let shard = |fill: u8, len: usize| {
            let bytes = Bytes::from(vec![fill; len]);
            BatchShard {
                id: ShardId::of(&bytes),
                bytes,
            }
        };
        // Room for three shards of 1,000 bytes.
        let server = server(dir.path(), 3_000)?;
        let (peer, other) = (PeerId::random(), PeerId::random());
        let held = shard(1, 1_000);
        assert_eq!(
            server.handle(
                other,
                Request::Store {
                    id: held.id,
                    bytes: held.bytes.clone()
                }
            ),
            Response::Stored
        );
        let mut forged = shard(2, 1_000);
        forged.bytes = Bytes::from(vec![3; 1_000]);
        let shards = vec![
            shard(4, 1_000),
            held.clone(),
            forged,
            shard(5, 1_000),
            // Over the quota by now.
            shard(6, 1_000),
        ];
        let answer = server.handle(
            peer,
            Request::StoreBatch {
                shards: shards.clone(),
            },
        );
        assert_eq!(
            answer,
            Response::BatchStored(vec![
                StoreOutcome::Stored,
                StoreOutcome::AlreadyHeld,
                StoreOutcome::Refused(Refusal::Mismatch),
                StoreOutcome::Stored,
                StoreOutcome::Refused(Refusal::Full {
                    used: 3_000,
                    max: 3_000
                }),
            ])
        );
        // The stored ones are held, with the sender's claim on each (the one it found
        // held included): it may delete them, as after a plain store.
        for stored in [&shards[0], &shards[3]] {
            assert_eq!(
                server.store().get(&stored.id)?.as_deref(),
                Some(&stored.bytes[..])
            );
        }
        assert!(server.store().get(&shards[2].id)?.is_none());
        assert!(server.store().get(&shards[4].id)?.is_none());
        for claimed in [&shards[0], &shards[1]] {
            assert_eq!(
                server.handle(peer, Request::Delete { id: claimed.id }),
                Response::Done
            );
        }
        // The other owner's claim keeps the shard it stored first.
        assert!(server.store().get(&held.id)?.is_some());
        // An empty batch costs nothing and answers nothing.
        assert_eq!(
            server.handle(peer, Request::StoreBatch { shards: vec![] }),
            Response::BatchStored(vec![])
        );
        Ok(())
    }

    #[test]
    fn a_puts_own_stores_are_left_unsynced_and_a_peers_are_synced_before_the_answer() -> TestResult
    {
        let dir = tempfile::tempdir()?;
        let server = server(dir.path(), 1 << 20)?;
        let root = AuthorityRoot::from_bytes(&[11; 32]);
        let (file, authority) = file_of(&root)?;
        let envelope = first_envelope(&file, &authority)?;
        let manifest_blob = ShardId::from_bytes(*file.file_id.as_bytes());
        let shard = |fill: u8| {
            let bytes = vec![fill; 1500];
            BatchShard {
                id: ShardId::of(&bytes),
                bytes: bytes.into(),
            }
        };
        let requests = |first: u8| {
            [
                Request::StoreWithManifest {
                    id: manifest_blob,
                    envelope: envelope.clone(),
                    manifest: file.manifest.to_bytes().into(),
                    shard: shard(first),
                },
                Request::Store {
                    id: shard(first + 1).id,
                    bytes: shard(first + 1).bytes,
                },
                Request::StoreBatch {
                    shards: vec![shard(first + 2), shard(first + 3)],
                },
            ]
        };
        let me = PeerId::random();
        // This node's own part of a put: every blob kept, no sync (the put's catalog
        // write makes them durable).
        let syncs = server.store().syncs();
        let answers: Vec<Response> = requests(1)
            .into_iter()
            .map(|request| server.handle_with(me, request, Durability::Deferred).0)
            .collect();
        assert!(matches!(
            answers[0],
            Response::ShardAndManifest {
                shard: StoreOutcome::Stored,
                manifest: ManifestOutcome::Stored {
                    envelope_refused: None
                },
            }
        ));
        assert_eq!(answers[1], Response::Stored);
        assert_eq!(
            answers[2],
            Response::BatchStored(vec![StoreOutcome::Stored, StoreOutcome::Stored])
        );
        for fill in 1..=4 {
            assert!(server.store().has(&shard(fill).id)?);
        }
        assert!(server.store().has(&manifest_blob)?);
        assert!(server.envelope(&file.file_id).is_some());
        assert_eq!(server.store().syncs(), syncs);
        // The same requests from a peer: each synced before its answer.
        for request in requests(5) {
            server.handle(PeerId::random(), request);
        }
        assert_eq!(server.store().syncs(), syncs + 3);
        Ok(())
    }
}
