//! The byte budget of inbound shard-protocol work: how many bytes of peers' requests (and
//! of the answers to them) the node holds at once, per peer and in total.
//!
//! ```
//! use datamesh_node::protocol::{InboundBudget, OverBudget};
//!
//! let budget = InboundBudget::exact(100, 150);
//! let peer = Some(libp2p::PeerId::random());
//! let held = budget.try_acquire(peer, 80).ok();
//! assert_eq!(budget.try_acquire(peer, 30).err(), Some(OverBudget::Peer));
//! drop(held); // released when the permit is dropped
//! assert!(budget.try_acquire(peer, 30).is_ok());
//! ```
//!
//! A [`Permit`] is taken by the node's codec after a frame's 4-byte length is read and
//! before a byte of its body is read or allocated; it travels with the request to the
//! handler, is resized to the answer, and is released when the answer is written (or
//! dropped). A frame that does not fit is not kept: the codec reads and discards its body
//! and the node answers [`Refusal::Busy`](crate::protocol::Refusal::Busy).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use libp2p::PeerId;

use super::MAX_REQUEST_LEN;

/// Default bytes one peer's inbound requests and their answers may hold at once
/// (64 MiB: two of the largest frames while they decode, with room to spare).
pub const DEFAULT_PEER_BUDGET: usize = 64 << 20;
/// Default bytes all peers' inbound requests and their answers may hold at once (256 MiB).
pub const DEFAULT_NODE_BUDGET: usize = 256 << 20;
/// The smallest per-peer budget: the largest request while it decodes (the frame and the
/// copy of its payload).
pub const MIN_PEER_BUDGET: usize = 2 * MAX_REQUEST_LEN;

/// Which share of the budget was used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverBudget {
    /// The asking peer's own share: its fault (counted against it).
    Peer,
    /// The node's total: everyone's load, not this peer's fault.
    Node,
}

/// The node's inbound byte budget (see [`crate::protocol`]). Shared (`Arc`) by the
/// codec of every connection and by the swarm task.
pub struct InboundBudget {
    per_peer: usize,
    total: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    used: usize,
    /// Bytes held per peer; no entry at zero. `None`: a codec not bound to a peer (never
    /// expected; such streams share one slot).
    peers: HashMap<Option<PeerId>, usize>,
    /// The peer whose connection's codec is being made (see `BudgetedCodec`'s `Clone`).
    binding: Option<PeerId>,
}

impl fmt::Debug for InboundBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundBudget")
            .field("per_peer", &self.per_peer)
            .field("total", &self.total)
            .field("used", &self.used())
            .finish_non_exhaustive()
    }
}

impl InboundBudget {
    /// A budget of `per_peer` bytes per peer (raised to [`MIN_PEER_BUDGET`]) and `total`
    /// bytes in all (raised to the per-peer budget).
    pub fn new(per_peer: usize, total: usize) -> Arc<Self> {
        let per_peer = per_peer.max(MIN_PEER_BUDGET);
        Arc::new(Self {
            per_peer,
            total: total.max(per_peer),
            state: Mutex::new(State::default()),
        })
    }

    /// A budget without a floor on the per-peer share: for tests that want tiny budgets.
    pub fn exact(per_peer: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_peer,
            total,
            state: Mutex::new(State::default()),
        })
    }

    /// Bytes per peer.
    pub fn per_peer(&self) -> usize {
        self.per_peer
    }

    /// Bytes in all.
    pub fn total(&self) -> usize {
        self.total
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics with the lock held; a poisoned lock still holds valid counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held now, by everyone.
    pub fn used(&self) -> usize {
        self.state().used
    }

    /// Bytes held now by `peer`'s requests.
    pub fn used_by(&self, peer: &PeerId) -> usize {
        self.state().peers.get(&Some(*peer)).copied().unwrap_or(0)
    }

    /// Takes `bytes` for `peer`, if both its share and the total allow.
    ///
    /// # Errors
    /// [`OverBudget`]: which share is used up (the peer's is checked first).
    pub fn try_acquire(
        self: &Arc<Self>,
        peer: Option<PeerId>,
        bytes: usize,
    ) -> Result<Permit, OverBudget> {
        self.grow(peer, bytes)?;
        Ok(Permit {
            budget: Some(Arc::clone(self)),
            peer,
            bytes,
        })
    }

    fn grow(&self, peer: Option<PeerId>, bytes: usize) -> Result<(), OverBudget> {
        let mut state = self.state();
        let held = state.peers.get(&peer).copied().unwrap_or(0);
        if held.saturating_add(bytes) > self.per_peer {
            return Err(OverBudget::Peer);
        }
        if state.used.saturating_add(bytes) > self.total {
            return Err(OverBudget::Node);
        }
        state.used += bytes;
        if bytes > 0 {
            state.peers.insert(peer, held + bytes);
        }
        Ok(())
    }

    fn release(&self, peer: Option<PeerId>, bytes: usize) {
        let mut state = self.state();
        state.used = state.used.saturating_sub(bytes);
        if let Some(held) = state.peers.get_mut(&peer) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                state.peers.remove(&peer);
            }
        }
    }

    /// Names the peer of the connection whose codec is cloned next (`None`: done).
    pub(crate) fn bind(&self, peer: Option<PeerId>) {
        self.state().binding = peer;
    }

    pub(crate) fn bound_peer(&self) -> Option<PeerId> {
        self.state().binding
    }
}

/// Bytes held from an [`InboundBudget`] until dropped. An outbound message carries
/// [`Permit::none`], which holds nothing.
pub struct Permit {
    budget: Option<Arc<InboundBudget>>,
    peer: Option<PeerId>,
    bytes: usize,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("peer", &self.peer)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Permit {
    /// A permit of nothing (messages this node sends, or reads as a client).
    pub fn none() -> Self {
        Self {
            budget: None,
            peer: None,
            bytes: 0,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `bytes` instead: shrinking always succeeds, growing only within budget.
    ///
    /// # Errors
    /// [`OverBudget`] if growing does not fit (the permit keeps what it held).
    pub fn resize(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if bytes > self.bytes {
            budget.grow(self.peer, bytes - self.bytes)?;
        } else {
            budget.release(self.peer, self.bytes - bytes);
        }
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.peer, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_held_to_its_share_and_everyone_to_the_total() {
        let budget = InboundBudget::exact(100, 150);
        let (a, b) = (Some(PeerId::random()), Some(PeerId::random()));
        let a1 = budget.try_acquire(a, 60);
        assert!(a1.is_ok());
        assert_eq!(budget.try_acquire(a, 41).err(), Some(OverBudget::Peer));
        let a2 = budget.try_acquire(a, 40);
        assert!(a2.is_ok());
        // b's share is free, but the total is not.
        assert_eq!(budget.try_acquire(b, 51).err(), Some(OverBudget::Node));
        let b1 = budget.try_acquire(b, 50);
        assert!(b1.is_ok());
        assert_eq!(budget.used(), 150);
        drop(a1);
        assert_eq!(budget.used(), 90);
        assert_eq!(budget.used_by(&PeerId::random()), 0);
        drop((a2, b1));
        assert_eq!(budget.used(), 0);
        assert!(budget.state().peers.is_empty());
    }

    #[test]
    fn a_permit_resizes_within_budget_and_releases_what_it_holds() -> Result<(), OverBudget> {
        let budget = InboundBudget::exact(100, 100);
        let peer = Some(PeerId::random());
        let mut permit = budget.try_acquire(peer, 80)?;
        permit.resize(30)?;
        assert_eq!(budget.used(), 30);
        assert_eq!(permit.resize(101), Err(OverBudget::Peer));
        assert_eq!((permit.bytes(), budget.used()), (30, 30));
        permit.resize(100)?;
        drop(permit);
        assert_eq!(budget.used(), 0);
        let mut none = Permit::none();
        none.resize(1 << 40)?;
        Ok(())
    }

    #[test]
    fn the_per_peer_share_fits_the_largest_request_while_it_decodes() {
        let budget = InboundBudget::new(1, 1);
        assert_eq!(budget.per_peer(), MIN_PEER_BUDGET);
        assert_eq!(budget.total(), MIN_PEER_BUDGET);
        let budget = InboundBudget::new(DEFAULT_PEER_BUDGET, DEFAULT_NODE_BUDGET);
        assert_eq!(
            (budget.per_peer(), budget.total()),
            (DEFAULT_PEER_BUDGET, DEFAULT_NODE_BUDGET)
        );
    }
}
