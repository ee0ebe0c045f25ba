//! The holder's side of leases: a `Lease` request asks until when blobs are kept and,
//! with `renew`, keeps each one held for the sender for another lease (`crate::lease`).

use datamesh_core::wire::first_duplicate;
use datamesh_core::{FileId, ShardId};
use libp2p::PeerId;
use tracing::{debug, warn};

use super::Server;
use crate::lease::{Collected, unix_now};
use crate::protocol::{FailureReason, InvalidReason, MAX_IDS, Refusal, Response};
use crate::store::StoreError;

impl Server {
    /// One collection pass (`crate::lease`): claims whose lease ended before `now` go,
    /// blobs left without a claim go, and so does the key envelope of a file whose
    /// manifest went (its bytes back in the quota).
    ///
    /// # Errors
    /// [`StoreError`] (what was dropped before stays dropped).
    pub fn collect_expired(&self, now: u64) -> Result<Collected, StoreError> {
        let done = self.leases.collect(&self.store, now)?;
        for id in &done.deleted {
            self.drop_envelope(&FileId::from_bytes(*id.as_bytes()))?;
        }
        self.metrics.leases_expired.inc_by(done.expired);
        self.metrics
            .lease_blobs_collected
            .inc_by(done.blobs_deleted);
        Ok(done)
    }

    /// Per id: until when it is kept (0: not held). With `renew`, each id held first
    /// gets the sender's claim (as a `Store` of bytes already held would) and a lease from
    /// now. Costs, per id: an info-row lookup and the blob's lease rows; with `renew`, a
    /// claim write and a lease write. At most [`MAX_IDS`] distinct ids (the codec refuses
    /// more, and repeats; this covers the local path).
    pub(super) fn lease(&self, peer: PeerId, ids: &[ShardId], renew: bool) -> Response {
        if ids.len() > MAX_IDS || first_duplicate(ids).is_some() {
            debug!(%peer, "refused a lease request with too many or repeated ids");
            return Response::Refused(Refusal::Invalid(InvalidReason::DuplicateIds));
        }
        let now = unix_now();
        let claimant = peer.to_bytes();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let answer = (|| -> Result<u64, StoreError> {
                if renew && self.store.claim_held(id, &claimant)? {
                    self.leases.grant(id, &claimant, now)?;
                    self.metrics.leases_renewed.inc();
                }
                self.leases.kept_until(&self.store, id)
            })();
            match answer {
                Ok(until) => out.push(until),
                Err(e) => {
                    warn!(%peer, shard = %id.short(), "a lease request failed: {e}");
                    return Response::Refused(Refusal::Failed(FailureReason::Storage));
                }
            }
        }
        Response::Leases(out)
    }
}
