//! The holder's side of audits: an `Audit` challenge is answered with the chunk it picks
//! and its BLAKE3 proof (`datamesh_core::audit`).
//!
//! Cost, budgeted: each challenge reads and hashes the whole blob once (with BlobDB a
//! point lookup reads the whole value; one pass of BLAKE3 both checks the copy and makes
//! the proof), so a peer gets at most [`AUDITS_PER_WINDOW`] challenges answered at once
//! and as many per [`AUDIT_WINDOW`] on average (`serve/rate.rs`); past that it is told
//! `Busy` at the cost of a map lookup. The answer is at most 1 KiB + 15 x 32 bytes.

use std::time::{Duration, Instant};

use datamesh_core::ShardId;
use datamesh_core::audit::prove;
use libp2p::PeerId;
use tracing::warn;

use super::Server;
use super::rate::PeerRate;
use crate::protocol::{FailureReason, Refusal, Response};
use crate::store::StoreError;

/// Challenges answered per peer per [`AUDIT_WINDOW`] at most.
pub const AUDITS_PER_WINDOW: u32 = 64;
/// The window of the per-peer audit budget.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(10);
/// The per-peer budget of audit challenges answered: [`AUDITS_PER_WINDOW`] per
/// [`AUDIT_WINDOW`].
pub(super) fn audit_budget() -> PeerRate {
    PeerRate::new(AUDITS_PER_WINDOW, AUDIT_WINDOW)
}

impl Server {
    /// Answers an audit challenge (see the module docs).
    pub(super) fn audit(&self, peer: PeerId, id: ShardId, nonce: u64) -> Response {
        if !self.audits.admit(peer, 1, Instant::now()) {
            self.metrics.audits_refused.inc();
            return Response::Refused(Refusal::Busy);
        }
        match self.store.get(&id) {
            Ok(Some(bytes)) => {
                self.metrics.audits_answered.inc();
                let mut proof = prove(&bytes, nonce);
                if self.wrong_bytes {
                    warn!(shard = %id.short(), "TEST FAULT: answering an audit with altered bytes");
                    match proof.chunk.first_mut() {
                        Some(b) => *b ^= 0xff,
                        None => proof.chunk.push(0),
                    }
                }
                Response::Proof(proof)
            }
            Ok(None) => Response::NotFound,
            Err(StoreError::Corrupt { .. }) => {
                self.metrics.corrupt_shards.inc();
                Response::Refused(Refusal::Corrupt)
            }
            Err(e) => {
                warn!(%peer, shard = %id.short(), "reading a shard for an audit failed: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Storage))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_window_of_audits_and_no_more() {
        let budget = audit_budget();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..AUDITS_PER_WINDOW {
            assert!(budget.admit(a, 1, t0));
        }
        assert!(!budget.admit(a, 1, t0));
        assert!(budget.admit(b, 1, t0), "another peer has its own budget");
        assert!(budget.admit(a, 1, t0 + AUDIT_WINDOW), "a new window");
    }
}
