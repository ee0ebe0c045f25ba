//! The holder's side of audits: an `Audit` challenge is answered with the chunk it picks
//! and its BLAKE3 proof (`datamesh_core::audit`).
//!
//! Cost, budgeted: each challenge reads and hashes the whole blob once (with BlobDB a
//! point lookup reads the whole value; one pass of BLAKE3 both checks the copy and makes
//! the proof), so a peer gets at most [`AUDITS_PER_WINDOW`] challenges answered per
//! [`AUDIT_WINDOW`]; past that it is told `Busy` at the cost of a map lookup. The answer
//! is at most 1 KiB + 15 x 32 bytes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use datamesh_core::ShardId;
use datamesh_core::audit::prove;
use libp2p::PeerId;
use tracing::warn;

use super::Server;
use crate::protocol::{FailureReason, Refusal, Response};
use crate::store::StoreError;

/// Challenges answered per peer per [`AUDIT_WINDOW`] at most.
pub const AUDITS_PER_WINDOW: u32 = 64;
/// The window of the per-peer audit budget.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(10);
/// Peers tracked at most; when full, windows that ended are forgotten, and if none has,
/// new peers are refused until one does.
const MAX_TRACKED_PEERS: usize = 4096;

/// Per peer: when its window started and how many challenges it has had answered in it.
#[derive(Debug, Default)]
pub(crate) struct AuditBudget {
    peers: Mutex<HashMap<PeerId, (Instant, u32)>>,
}

impl AuditBudget {
    /// Whether `peer` may have one more challenge answered now (and counts it).
    fn admit(&self, peer: PeerId, now: Instant) -> bool {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, (start, _)| now.duration_since(*start) < AUDIT_WINDOW);
            if peers.len() >= MAX_TRACKED_PEERS {
                return false;
            }
        }
        let entry = peers.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= AUDIT_WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= AUDITS_PER_WINDOW {
            return false;
        }
        entry.1 += 1;
        true
    }
}

impl Server {
    /// Answers an audit challenge (see the module docs).
    pub(super) fn audit(&self, peer: PeerId, id: ShardId, nonce: u64) -> Response {
        if !self.audits.admit(peer, Instant::now()) {
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
        let budget = AuditBudget::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..AUDITS_PER_WINDOW {
            assert!(budget.admit(a, t0));
        }
        assert!(!budget.admit(a, t0));
        assert!(budget.admit(b, t0), "another peer has its own budget");
        assert!(budget.admit(a, t0 + AUDIT_WINDOW), "a new window");
    }

    #[test]
    fn the_map_of_peers_is_bounded() {
        let budget = AuditBudget::default();
        let t0 = Instant::now();
        for _ in 0..MAX_TRACKED_PEERS {
            assert!(budget.admit(PeerId::random(), t0));
        }
        assert!(!budget.admit(PeerId::random(), t0));
        assert!(budget.admit(PeerId::random(), t0 + AUDIT_WINDOW));
        assert!(budget.peers.lock().map(|p| p.len()).unwrap_or(usize::MAX) <= MAX_TRACKED_PEERS);
    }
}
