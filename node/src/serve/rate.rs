//! Per-peer rate budgets for requests whose cost the inbound byte budget does not bound
//! (it bounds bytes in flight, not how often a cheap-to-send request can be repeated):
//! audit challenges (`serve/audit.rs`) and the owner's signed orders (`RemoveFile`,
//! `RenewLease`: `serve/remove.rs`, `serve/lease.rs`).
//!
//! A budget of `burst` units per `window`: a peer may spend up to `burst` units at once,
//! then `burst / window` per second on average (a generic cell rate algorithm: one
//! instant per peer, the time at which its spending so far is paid off). A refusal costs a
//! map lookup. At most [`MAX_TRACKED_PEERS`] peers are remembered; when full, peers
//! whose spending is paid off are forgotten (they are as good as new), and if none is,
//! new peers are refused until one is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Peers tracked at most by one budget.
pub(crate) const MAX_TRACKED_PEERS: usize = 4096;

/// `burst` units per `window` per peer (see the module docs).
#[derive(Debug)]
pub(crate) struct PeerRate {
    burst: u32,
    /// Time that pays off one unit: `window / burst`.
    unit: Duration,
    /// Per peer: when its spending so far is paid off.
    peers: Mutex<HashMap<PeerId, Instant>>,
}

impl PeerRate {
    /// `burst` (at least 1) units per `window`.
    pub(crate) fn new(burst: u32, window: Duration) -> Self {
        let burst = burst.max(1);
        Self {
            burst,
            unit: window / burst,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `peer` may spend `cost` units now (counted if so). A cost above the burst
    /// counts as the burst: such a request is admitted only when the peer's budget is
    /// whole.
    pub(crate) fn admit(&self, peer: PeerId, cost: u32, now: Instant) -> bool {
        let cost = cost.clamp(1, self.burst);
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, paid_off| *paid_off > now);
            if peers.len() >= MAX_TRACKED_PEERS {
                return false;
            }
        }
        let paid_off = peers.get(&peer).copied().unwrap_or(now).max(now);
        let after = paid_off + self.unit * cost;
        if after.saturating_duration_since(now) > self.unit * self.burst {
            return false;
        }
        peers.insert(peer, after);
        true
    }

    /// Peers remembered now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.peers.lock().map_or(usize::MAX, |p| p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_spends_its_burst_then_the_rate_and_no_more() {
        let rate = PeerRate::new(8, Duration::from_secs(8));
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..8 {
            assert!(rate.admit(a, 1, t0));
        }
        assert!(!rate.admit(a, 1, t0));
        assert!(rate.admit(b, 1, t0), "another peer has its own budget");
        // A cost above the burst passes only on a whole budget (b spent one unit).
        assert!(!rate.admit(b, 100, t0));
        // One unit paid off per second.
        let t1 = t0 + Duration::from_millis(1500);
        assert!(rate.admit(a, 1, t1));
        assert!(!rate.admit(a, 1, t1));
        // Paid off, it passes, and empties the budget.
        let t2 = t0 + Duration::from_secs(60);
        assert!(rate.admit(b, 100, t2));
        assert!(!rate.admit(b, 1, t2));
        assert!(rate.admit(a, 8, t2));
    }

    #[test]
    fn the_map_of_peers_is_bounded() {
        let rate = PeerRate::new(4, Duration::from_secs(4));
        let t0 = Instant::now();
        for _ in 0..MAX_TRACKED_PEERS {
            assert!(rate.admit(PeerId::random(), 1, t0));
        }
        assert!(!rate.admit(PeerId::random(), 1, t0));
        assert!(rate.admit(PeerId::random(), 1, t0 + Duration::from_secs(1)));
        assert!(rate.tracked() <= MAX_TRACKED_PEERS);
    }
}
