//! Per-peer accounting: a peer caught misbehaving earns a strike; at
//! [`PeerPolicy::strikes_to_block`] strikes it is disconnected and refused (libp2p's block
//! list) for [`PeerPolicy::block_for`], then allowed again with a clean slate. Strikes
//! older than `block_for` are forgotten. At most [`MAX_TRACKED_PEERS`] peers are tracked
//! (the one with the oldest last strike makes room), so the accounting itself is bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Most peers with strikes or a block remembered at once.
pub const MAX_TRACKED_PEERS: usize = 4096;

/// What a peer was caught doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offence {
    /// Sent a shard that does not hash to its id (`Refusal::Mismatch`).
    WrongBytes,
    /// Sent a frame over the size limit, or one that does not decode.
    BadFrame,
    /// Sent more than its share of the inbound byte budget (`Refusal::Busy`).
    OverBudget,
    /// Sent an owner's order (`RemoveFile`, `RenewLease`) that does not verify: a forged
    /// signature, a manifest that does not parse, or ids the manifest does not list. No
    /// honest node sends one; each costs the holder a BLAKE3 of up to 16 MiB and an ECDSA
    /// verification.
    ForgedOrder,
}

impl Offence {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::WrongBytes => "wrong_bytes",
            Self::BadFrame => "bad_frame",
            Self::OverBudget => "over_budget",
            Self::ForgedOrder => "forged_order",
        }
    }
}

/// When a peer is blocked and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerPolicy {
    strikes_to_block: u32,
    block_for: Duration,
}

impl Default for PeerPolicy {
    /// 16 strikes, 10 minutes.
    fn default() -> Self {
        Self {
            strikes_to_block: 16,
            block_for: Duration::from_secs(600),
        }
    }
}

impl PeerPolicy {
    /// Blocks a peer at `strikes_to_block` strikes (at least 1) for `block_for`.
    pub fn new(strikes_to_block: u32, block_for: Duration) -> Self {
        Self {
            strikes_to_block: strikes_to_block.max(1),
            block_for,
        }
    }

    /// Strikes that block a peer.
    pub fn strikes_to_block(&self) -> u32 {
        self.strikes_to_block
    }

    /// How long a block lasts (and how long a strike is remembered).
    pub fn block_for(&self) -> Duration {
        self.block_for
    }
}

#[derive(Clone, Copy, Debug)]
struct Record {
    strikes: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// The strikes and blocks of peers (owned by the swarm task).
#[derive(Debug)]
pub(super) struct Accounting {
    policy: PeerPolicy,
    peers: HashMap<PeerId, Record>,
}

/// What a strike did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Counted: the peer's strikes now.
    Counted(u32),
    /// The peer reached the limit: block it now.
    Block,
    /// The peer is blocked already.
    AlreadyBlocked,
}

impl Accounting {
    pub(super) fn new(policy: PeerPolicy) -> Self {
        Self {
            policy,
            peers: HashMap::new(),
        }
    }

    /// Counts one offence of `peer` at `now`.
    pub(super) fn strike(&mut self, peer: PeerId, now: Instant) -> Verdict {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.make_room(now);
        }
        let forget = self.policy.block_for;
        let record = self.peers.entry(peer).or_insert(Record {
            strikes: 0,
            last: now,
            blocked_until: None,
        });
        if record.blocked_until.is_some() {
            return Verdict::AlreadyBlocked;
        }
        if now.saturating_duration_since(record.last) > forget {
            record.strikes = 0;
        }
        record.strikes += 1;
        record.last = now;
        if record.strikes >= self.policy.strikes_to_block {
            record.blocked_until = Some(now + self.policy.block_for);
            Verdict::Block
        } else {
            Verdict::Counted(record.strikes)
        }
    }

    /// Drops the peer whose last strike is oldest, preferring peers not blocked.
    fn make_room(&mut self, now: Instant) {
        let oldest = self
            .peers
            .iter()
            .min_by_key(|(_, r)| (r.blocked_until.is_some(), r.last))
            .map(|(p, _)| *p);
        if let Some(peer) = oldest {
            self.peers.remove(&peer);
        }
        self.forget_old(now);
    }

    /// Forgets unblocked peers whose last strike is older than the block time.
    fn forget_old(&mut self, now: Instant) {
        let forget = self.policy.block_for;
        self.peers.retain(|_, r| {
            r.blocked_until.is_some() || now.saturating_duration_since(r.last) <= forget
        });
    }

    /// Ends the blocks that are over at `now` (their peers start again with no strike)
    /// and forgets old strikes; returns the peers to unblock.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        let over: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, r)| r.blocked_until.is_some_and(|until| until <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in &over {
            self.peers.remove(peer);
        }
        self.forget_old(now);
        over
    }

    /// Whether `peer` is blocked by the accounting now.
    pub(super) fn is_blocked(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|r| r.blocked_until.is_some())
    }

    /// `peer`'s strikes now (the limit while it is blocked), if it is tracked.
    pub(super) fn strikes(&self, peer: &PeerId) -> Option<u32> {
        self.peers.get(peer).map(|r| r.strikes)
    }

    /// Every tracked peer and its strikes.
    pub(super) fn tracked(&self) -> impl Iterator<Item = (PeerId, u32)> + '_ {
        self.peers.iter().map(|(p, r)| (*p, r.strikes))
    }

    /// Peers blocked now.
    pub(super) fn blocked(&self) -> usize {
        self.peers
            .values()
            .filter(|r| r.blocked_until.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_blocked_at_the_limit_and_starts_clean_after_the_block() {
        let mut acc = Accounting::new(PeerPolicy::new(3, Duration::from_secs(60)));
        let (bad, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        assert_eq!(acc.strike(bad, t0), Verdict::Counted(1));
        assert_eq!(acc.strike(other, t0), Verdict::Counted(1));
        assert_eq!(acc.strike(bad, t0), Verdict::Counted(2));
        assert_eq!(acc.strike(bad, t0), Verdict::Block);
        assert_eq!(acc.strike(bad, t0), Verdict::AlreadyBlocked);
        assert!(acc.is_blocked(&bad) && !acc.is_blocked(&other));
        assert_eq!(acc.blocked(), 1);
        assert!(acc.expire(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(acc.expire(t0 + Duration::from_secs(60)), vec![bad]);
        assert!(!acc.is_blocked(&bad));
        // A clean slate, and `other`'s old strike is forgotten.
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(acc.strike(bad, t1), Verdict::Counted(1));
        assert_eq!(acc.strike(other, t1), Verdict::Counted(1));
    }

    #[test]
    fn strikes_spread_out_in_time_never_block() {
        let mut acc = Accounting::new(PeerPolicy::new(2, Duration::from_secs(10)));
        let peer = PeerId::random();
        let t0 = Instant::now();
        for i in 0..5 {
            let at = t0 + Duration::from_secs(11 * i);
            assert_eq!(acc.strike(peer, at), Verdict::Counted(1));
        }
    }

    #[test]
    fn the_tracked_peers_are_bounded() {
        let mut acc = Accounting::new(PeerPolicy::new(2, Duration::from_secs(600)));
        let t0 = Instant::now();
        let blocked = PeerId::random();
        acc.strike(blocked, t0);
        assert_eq!(acc.strike(blocked, t0), Verdict::Block);
        for i in 0..MAX_TRACKED_PEERS + 10 {
            acc.strike(PeerId::random(), t0 + Duration::from_millis(i as u64));
        }
        assert!(acc.peers.len() <= MAX_TRACKED_PEERS);
        // A blocked peer is not the one that makes room.
        assert!(acc.is_blocked(&blocked));
    }
}
