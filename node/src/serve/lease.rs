//! The holder's side of leases: a `Lease` request asks until when blobs are kept and,
//! with `renew`, extends the sender's lease on each blob it already claims; a
//! `RenewLease`, the owner's signed order, makes or keeps the sender's claim on each of
//! the file's blobs held, bound to the file, and leases it for another lease
//! (`crate::lease`). Only the owner's order makes a claim: a peer that never stored a blob
//! cannot keep it alive past the owner's `rm` or past the owner's last renewal.

use std::collections::HashSet;

use datamesh_core::wire::first_duplicate;
use datamesh_core::{FileId, Renew, ShardId};
use libp2p::PeerId;
use tracing::{debug, warn};

use super::Server;
use crate::lease::{Collected, OWN_ENVELOPE, unix_now};
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
        for id in done.deleted.iter().chain(&done.unheld) {
            self.drop_envelope(&FileId::from_bytes(*id.as_bytes()))?;
        }
        self.metrics.leases_expired.inc_by(done.expired);
        self.metrics
            .lease_blobs_collected
            .inc_by(done.blobs_deleted);
        Ok(done)
    }

    /// Per id: until when it is kept (0: not held). With `renew`, each id the sender
    /// already claims first gets a lease from now (no claim is made). Costs, per id: an
    /// info-row lookup and the blob's lease rows; with `renew`, a claim lookup and a
    /// lease write. At most [`MAX_IDS`] distinct ids (the codec refuses more, and repeats;
    /// this covers the local path).
    pub(super) fn lease(&self, peer: PeerId, ids: &[ShardId], renew: bool) -> Response {
        self.leases_of(peer, ids, |id, claimant| {
            Ok(renew && self.store.has_claim(id, claimant)?)
        })
    }

    /// Answers the owner's signed `RenewLease` (see the module docs): refused unless the
    /// order verifies under the authority key of the manifest sent with it, is fresh,
    /// and every id is the manifest's or one it lists. Costs: as `RemoveFile`'s check
    /// (one BLAKE3 of the manifest, a parse, one ECDSA verification), then per id as a
    /// renewing `Lease` plus a claim write and its binding to the file.
    pub(super) fn renew_lease(
        &self,
        peer: PeerId,
        manifest: &[u8],
        issued_at: u64,
        signature: &[u8],
        ids: &[ShardId],
    ) -> Response {
        let bad = InvalidReason::BadRenewal;
        let checked = super::remove::check_order::<Renew>(
            manifest,
            issued_at,
            signature,
            unix_now(),
            (bad, InvalidReason::StaleRenewal),
        )
        .and_then(|(file, parsed)| {
            let listed: HashSet<ShardId> = std::iter::once(ShardId::from_bytes(*file.as_bytes()))
                .chain(parsed.stripes().iter().flatten().copied())
                .collect();
            if ids.iter().all(|id| listed.contains(id)) {
                Ok(file)
            } else {
                Err(bad)
            }
        });
        let file = match checked {
            Ok(file) => file,
            Err(reason) => {
                debug!(%peer, "refused a lease renewal: {reason}");
                self.metrics.leases_refused.inc();
                return Response::Refused(Refusal::Invalid(reason));
            }
        };
        let manifest_id = ShardId::from_bytes(*file.as_bytes());
        let renewed = self.leases_of(peer, ids, |id, claimant| {
            if !self.store.claim_held(id, claimant)? {
                return Ok(false);
            }
            // A claim bound to another file (the same bytes in two files) stays bound
            // there; it is leased all the same.
            self.store.bind_claim(id, claimant, &file)?;
            Ok(true)
        });
        // The owner's own envelope, kept here without the manifest blob, lives by the
        // owner's order too.
        if ids.contains(&manifest_id)
            && let Err(e) = self.renew_own_envelope(&manifest_id)
        {
            warn!(%peer, %file, "renewing the lease of an own envelope failed: {e}");
        }
        renewed
    }

    /// Extends the lease of an own envelope kept under `manifest_id`, if there is one.
    fn renew_own_envelope(&self, manifest_id: &ShardId) -> Result<(), StoreError> {
        if self.leases.held_by(manifest_id, OWN_ENVELOPE)? {
            self.leases.grant(manifest_id, OWN_ENVELOPE, unix_now())?;
        }
        Ok(())
    }

    /// Gives an owner's own envelope of `file` (kept without its manifest blob) a lease:
    /// collected with it unless the owner's order renews it (`RenewLease`).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub(super) fn lease_own_envelope(&self, file: &FileId) -> Result<(), StoreError> {
        let blob = ShardId::from_bytes(*file.as_bytes());
        self.leases.grant(&blob, OWN_ENVELOPE, unix_now()).map(drop)
    }

    /// Per id: until when it is kept, after granting the sender a lease from now on each
    /// id `renew` says yes to.
    fn leases_of(
        &self,
        peer: PeerId,
        ids: &[ShardId],
        renew: impl Fn(&ShardId, &[u8]) -> Result<bool, StoreError>,
    ) -> Response {
        if ids.len() > MAX_IDS || first_duplicate(ids).is_some() {
            debug!(%peer, "refused a lease request with too many or repeated ids");
            return Response::Refused(Refusal::Invalid(InvalidReason::DuplicateIds));
        }
        let now = unix_now();
        let claimant = peer.to_bytes();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let answer = (|| -> Result<u64, StoreError> {
                if renew(id, &claimant)? {
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
