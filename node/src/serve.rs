//! The storage side of the node: answers other peers' shard-protocol requests.
//!
//! It stores and returns opaque bytes by id and keeps key envelopes; it never sees a key
//! or a byte of plaintext (Architecture Invariant).

use std::sync::Arc;

use datamesh_core::wire::first_duplicate;
use datamesh_core::{FileId, KeyEnvelope, KeyId, ShardId};
use libp2p::PeerId;
use rocksdb::DB;
use tracing::{debug, warn};

use crate::db::{CF_FILES, DbError, cf};
use crate::metrics::Metrics;
use crate::network::InboundHandler;
use crate::protocol::{FailureReason, InvalidReason, MAX_ENVELOPE_LEN, Refusal, Request, Response};
use crate::store::{BindOutcome, DeleteOutcome, PutOutcome, ShardStore, StoreError};

/// Most envelope owners kept per file (each owner's newest envelope is kept).
pub const MAX_ENVELOPE_OWNERS: usize = 16;
/// Key prefix of envelopes in the `files` column family.
const ENVELOPE_PREFIX: u8 = b'e';

/// Serves shard-protocol requests from the node's store.
#[derive(Debug)]
pub struct Server {
    store: Arc<ShardStore>,
    db: Arc<DB>,
    metrics: Arc<Metrics>,
    /// Test-only misbehaviour: serve altered bytes (see [`crate::faults`]).
    wrong_bytes: bool,
}

impl Server {
    /// A server over the node's store and database.
    pub fn new(store: Arc<ShardStore>, db: Arc<DB>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            db,
            metrics,
            wrong_bytes: false,
        }
    }

    /// Test-only: answer every fetch with altered bytes, as a lying peer would. Set only
    /// from [`crate::faults::TestFaults`].
    pub(crate) fn with_wrong_bytes(mut self, on: bool) -> Self {
        self.wrong_bytes = on;
        self
    }

    /// The shard store served.
    pub fn store(&self) -> &Arc<ShardStore> {
        &self.store
    }

    fn store_blob(&self, peer: PeerId, id: ShardId, bytes: &[u8]) -> Response {
        self.metrics.bytes_in.inc_by(bytes.len() as u64);
        match self.store.put(&id, bytes, &peer.to_bytes()) {
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
            Ok(Some(mut bytes)) => {
                self.metrics.shards_served.inc();
                self.metrics.bytes_out.inc_by(bytes.len() as u64);
                if self.wrong_bytes {
                    warn!(shard = %id.short(), "TEST FAULT: serving altered bytes");
                    match bytes.first_mut() {
                        Some(b) => *b ^= 0xff,
                        None => bytes.push(0),
                    }
                }
                Response::Blob(bytes)
            }
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

    /// Which of `ids` are held: one small-row lookup per id, no shard read. Each id at most
    /// once (the codec refuses repeats already; this covers the local path).
    fn has(&self, peer: PeerId, ids: &[ShardId]) -> Response {
        if first_duplicate(ids).is_some() {
            debug!(%peer, "refused a has request with duplicate ids");
            return Response::Refused(Refusal::Invalid(InvalidReason::DuplicateIds));
        }
        let mut flags = Vec::with_capacity(ids.len());
        for id in ids {
            match self.store.has(id) {
                Ok(held) => flags.push(held),
                Err(e) => {
                    warn!(%peer, shard = %id.short(), "looking up a shard failed: {e}");
                    return Response::Refused(Refusal::Failed(FailureReason::Storage));
                }
            }
        }
        Response::Has(flags)
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
    /// nothing of is refused. A couple of small-row lookups and one small write.
    fn announce(&self, peer: PeerId, file: FileId, held: ShardId) -> Response {
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

    fn put_envelope(&self, peer: PeerId, bytes: &[u8]) -> Response {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Response::Refused(Refusal::Invalid(InvalidReason::EnvelopeTooLarge));
        }
        let envelope = match KeyEnvelope::from_bytes(bytes) {
            Ok(e) => e,
            Err(e) => {
                debug!(%peer, "refused a key envelope: {e}");
                return Response::Refused(Refusal::Invalid(InvalidReason::BadEnvelope));
            }
        };
        match self.keep_envelope(&envelope, bytes) {
            Ok(()) => Response::Done,
            Err(EnvelopeRefusal::TooManyOwners) => {
                Response::Refused(Refusal::Invalid(InvalidReason::TooManyEnvelopeOwners))
            }
            Err(EnvelopeRefusal::Db(e)) => {
                warn!(%peer, file = %envelope.file_id(), "keeping a key envelope failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }

    /// Keeps `envelope` unless this owner already has a newer one for the file.
    fn keep_envelope(&self, envelope: &KeyEnvelope, bytes: &[u8]) -> Result<(), EnvelopeRefusal> {
        let files = cf(&self.db, CF_FILES)?;
        let mut key = envelope_prefix(envelope.file_id().as_bytes());
        key.extend_from_slice(KeyId::of(envelope.owner()).as_bytes());
        if let Some(old) = self.db.get_pinned_cf(files, &key).map_err(DbError::from)? {
            if let Ok(old) = KeyEnvelope::from_bytes(&old)
                && old.sequence() >= envelope.sequence()
            {
                return Ok(());
            }
        } else if self.envelopes(envelope.file_id().as_bytes()).len() >= MAX_ENVELOPE_OWNERS {
            return Err(EnvelopeRefusal::TooManyOwners);
        }
        Ok(self.db.put_cf(files, &key, bytes).map_err(DbError::from)?)
    }

    /// Every envelope held for a file (newest per owner).
    pub fn envelopes(&self, file: &[u8; 32]) -> Vec<Vec<u8>> {
        let Ok(files) = cf(&self.db, CF_FILES) else {
            return Vec::new();
        };
        let prefix = envelope_prefix(file);
        self.db
            .prefix_iterator_cf(files, &prefix)
            .map_while(Result::ok)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.to_vec())
            .collect()
    }
}

/// Why an envelope was not kept: told to the peer coarsely, logged in full here.
#[derive(Debug, thiserror::Error)]
enum EnvelopeRefusal {
    #[error("too many envelope owners for this file")]
    TooManyOwners,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn envelope_prefix(file: &[u8; 32]) -> Vec<u8> {
    let mut key = vec![ENVELOPE_PREFIX];
    key.extend_from_slice(file);
    key
}

impl InboundHandler for Server {
    fn handle(&self, peer: PeerId, request: Request) -> Response {
        match request {
            Request::Store { id, bytes } => self.store_blob(peer, id, &bytes),
            Request::Fetch { id } => self.fetch(peer, id),
            Request::Has { ids } => self.has(peer, &ids),
            Request::Delete { id } => self.delete(peer, id),
            Request::PutEnvelope { bytes } => self.put_envelope(peer, &bytes),
            Request::GetEnvelope { file } => Response::Envelopes(self.envelopes(file.as_bytes())),
            Request::Announce { file, held } => self.announce(peer, file, held),
        }
    }
}
