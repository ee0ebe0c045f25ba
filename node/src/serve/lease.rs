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
    /// and every id is the manifest's or one it lists; first, its cost is spent from the
    /// sender's order budget (`Busy` past it, `serve/remove.rs`). Costs: as `RemoveFile`'s check
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
        if let Some(busy) = self.over_order_budget(peer, manifest.len(), ids.len()) {
            return busy;
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datamesh_core::{AuthorityRoot, Renewal};

    use super::*;
    use crate::metrics::Metrics;
    use crate::network::InboundHandler;
    use crate::protocol::Request;
    use crate::serve::remove::tests::{now, put_file};
    use crate::store::{ShardStore, StoreConfig};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A holder over the database in `dir` (opened again after a stop), leases of `lease`.
    fn holder(
        dir: &std::path::Path,
        lease: Duration,
    ) -> Result<Server, Box<dyn std::error::Error>> {
        let db = crate::db::open(dir)?;
        let store = Arc::new(ShardStore::new(Arc::clone(&db), StoreConfig::new(1 << 30)));
        Ok(Server::new(store, db, Arc::new(Metrics::new())).with_lease(lease))
    }

    /// Every blob of the file of `manifest`: the manifest's and its shards.
    fn blobs(file: &datamesh_core::EncodedFile) -> Vec<ShardId> {
        std::iter::once(ShardId::from_bytes(*file.file_id.as_bytes()))
            .chain(file.manifest.stripes().iter().flatten().copied())
            .collect()
    }

    /// Issue 18's edge case: a holder offline while its leases ran out comes back and
    /// the owner's renewal arrives late, after the expiry but before a collection pass:
    /// it keeps the file (the expired claim is renewed, its stale expiry forgotten), and
    /// the pass collects only a file nobody renewed; a renewal later still finds nothing
    /// (0: the owner's repair places the copies again).
    #[test]
    fn an_expired_lease_renewed_late_after_a_stop_keeps_the_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let owner = PeerId::random();
        let root = AuthorityRoot::from_bytes(&[1; 32]);
        let lease = Duration::from_secs(1);
        let (kept, kept_key, dropped, dropped_key) = {
            let server = holder(dir.path(), lease)?;
            let (kept, kept_key) = put_file(&server, owner, &root)?;
            let (dropped, dropped_key) = put_file(&server, owner, &root)?;
            (kept, kept_key, dropped, dropped_key)
        };
        // Offline (the database closed) past every lease: nothing was collected.
        std::thread::sleep(lease * 3);
        let server = holder(dir.path(), Duration::from_secs(3600))?;
        let held = server.store().shard_count()?;
        assert_eq!(held, 26, "two files of 13 blobs each");
        let renew = |file: &datamesh_core::EncodedFile, key: &datamesh_core::AuthorityKey| {
            let order = Renewal::sign(file.file_id, now(), key)?;
            Ok::<_, datamesh_core::AuthorityError>(Request::RenewLease {
                manifest: file.manifest.to_bytes().into(),
                issued_at: order.issued_at(),
                signature: order.signature().to_vec(),
                ids: blobs(file),
            })
        };
        let at = now();
        match server.handle(owner, renew(&kept, &kept_key)?) {
            Response::Leases(list) => {
                assert_eq!(list.len(), 13);
                assert!(list.iter().all(|&t| t >= at + 3000), "{list:?}");
            }
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
        let done = server.collect_expired(now())?;
        assert_eq!(done.blobs_deleted, 13, "{done:?}");
        for id in blobs(&kept) {
            assert!(server.store().has(&id)?, "a renewed blob was collected");
        }
        for id in blobs(&dropped) {
            assert!(!server.store().has(&id)?, "an expired blob was kept");
        }
        // The renewed file's stale expiry rows are gone too: nothing more to collect.
        assert_eq!(server.collect_expired(now())?.expired, 0);
        match server.handle(owner, renew(&dropped, &dropped_key)?) {
            Response::Leases(list) => assert!(list.iter().all(|&t| t == 0), "{list:?}"),
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
        assert_eq!(server.store().shard_count()?, 13);
        Ok(())
    }
}
