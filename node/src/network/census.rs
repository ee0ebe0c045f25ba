//! What this node knows of a small network: every peer in it.
//!
//! A Kademlia closest-peers walk ends when the `K` closest peers it heard of have
//! answered, or when it has asked every peer it heard of. So a walk that finished with
//! fewer than `K` answers asked every peer the network's routing tables know of: that
//! set is the whole reachable network (a census), and a closest-peers lookup of any key
//! would only come back with the same peers, sorted by their distance to it. While the
//! census is fresh, the node answers lookups from it and keeps the provider records it
//! announces only at home: on such a network a reader's providers walk asks every peer,
//! this one too (`event_loop.rs`).
//!
//! A census stays true only while nothing joins: a new peer in the routing table or a
//! connection from a peer it does not count ends it at once, a peer that cannot be
//! dialled or is blocked leaves it, and it expires after [`CENSUS_TTL`]. While the routing table holds fewer than `K` peers the node
//! takes a new census with a walk of its own every [`CENSUS_REFRESH`] (at most every
//! [`CENSUS_MIN_INTERVAL`] after a join), so a quiet small network keeps a fresh one. A
//! walk of `K` or more answers means the network is not small: no census, every lookup
//! walks. A peer cannot fake a small network: the walk also asks the honest peers it
//! hears of, and stops short of `K` only when there are no more to ask.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::K_VALUE;

/// How long a census answers lookups after the walk that took it.
pub(super) const CENSUS_TTL: Duration = Duration::from_secs(60);
/// The age at which a small network's census is taken again.
const CENSUS_REFRESH: Duration = Duration::from_secs(30);
/// The least time between two census walks (peers joining end a census each time): a
/// network coming up has its census a second after its last join, and a peer that keeps
/// joining under new ids costs at most one walk a second.
const CENSUS_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The census, and the walk taking the next one (`Q`: a walk's query id).
#[derive(Debug)]
pub(super) struct Census<Q> {
    /// The peers every walk would reach, and when the walk that found them ended.
    known: Option<(HashSet<PeerId>, Instant)>,
    /// The census walk running.
    walk: Option<Q>,
    /// When the last census walk started.
    last_walk: Option<Instant>,
}

impl<Q> Default for Census<Q> {
    fn default() -> Self {
        Self {
            known: None,
            walk: None,
            last_walk: None,
        }
    }
}

impl<Q: PartialEq + Copy> Census<Q> {
    /// The peers of a fresh census, `None` when there is none (a network of `K` peers or
    /// more, a peer joined, or the census is older than [`CENSUS_TTL`]).
    pub(super) fn current(&self, now: Instant) -> Option<&HashSet<PeerId>> {
        match &self.known {
            Some((peers, taken)) if now.saturating_duration_since(*taken) < CENSUS_TTL => {
                Some(peers)
            }
            _ => None,
        }
    }

    /// The answer a closest-peers walk of `key` would give: the census's peers nearest
    /// to it first, at most `K`. `None` without a fresh census.
    pub(super) fn closest(&self, key: &[u8], now: Instant) -> Option<Vec<PeerId>> {
        let peers = self.current(now)?;
        let mut peers: Vec<PeerId> = peers.iter().copied().collect();
        super::sort_by_distance(&mut peers, key);
        peers.truncate(K_VALUE.get());
        Some(peers)
    }

    /// A closest-peers walk ended without a timeout, these peers answering: fewer than
    /// `K` are the whole network; `K` or more mean it is not small.
    pub(super) fn walked(&mut self, peers: &[PeerId], now: Instant) {
        self.known = (peers.len() < K_VALUE.get() && !peers.is_empty())
            .then(|| (peers.iter().copied().collect(), now));
    }

    /// The census walk `id` ended; `peers` answered it (`None`: it timed out).
    /// Returns whether `id` was the census walk.
    pub(super) fn walk_ended(&mut self, id: Q, peers: Option<&[PeerId]>, now: Instant) -> bool {
        if self.walk != Some(id) {
            return false;
        }
        self.walk = None;
        match peers {
            Some(peers) => self.walked(peers, now),
            None => self.known = None,
        }
        true
    }

    /// A peer joined the routing table: the census no longer holds.
    pub(super) fn joined(&mut self) {
        self.known = None;
    }

    /// A connection to `peer` opened: a peer the census does not count (one it lost, or
    /// one let back after a block) ends it.
    pub(super) fn connected(&mut self, peer: &PeerId) {
        if self
            .known
            .as_ref()
            .is_some_and(|(peers, _)| !peers.contains(peer))
        {
            self.known = None;
        }
    }

    /// `peer` could not be reached or was blocked: it is no candidate any more.
    pub(super) fn lost(&mut self, peer: &PeerId) {
        if let Some((peers, _)) = &mut self.known {
            peers.remove(peer);
            if peers.is_empty() {
                self.known = None;
            }
        }
    }

    /// Whether to start a census walk now: the routing table holds fewer than `K` peers
    /// (but some), no census walk runs, none started in the last
    /// [`CENSUS_MIN_INTERVAL`], and the census is missing or due for a refresh.
    pub(super) fn wants_walk(&self, table_peers: usize, now: Instant) -> bool {
        let small = table_peers > 0 && table_peers < K_VALUE.get();
        let rested = self
            .last_walk
            .is_none_or(|t| now.saturating_duration_since(t) >= CENSUS_MIN_INTERVAL);
        let due = match &self.known {
            Some((_, taken)) => now.saturating_duration_since(*taken) >= CENSUS_REFRESH,
            None => true,
        };
        small && self.walk.is_none() && rested && due
    }

    /// A census walk started.
    pub(super) fn walking(&mut self, id: Q, now: Instant) {
        self.walk = Some(id);
        self.last_walk = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use libp2p::kad::KBucketKey;

    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn a_walk_short_of_k_is_a_census_and_answers_lookups_nearest_first() {
        let mut census = Census::<u32>::default();
        let now = Instant::now();
        assert!(census.closest(b"key", now).is_none());
        let all = peers(6);
        census.walked(&all, now);
        let got = census.closest(b"key", now).unwrap_or_default();
        assert_eq!(got.len(), 6);
        let target = KBucketKey::new(b"key".to_vec());
        let distances: Vec<_> = got
            .iter()
            .map(|p| KBucketKey::from(*p).distance(&target))
            .collect();
        assert!(distances.windows(2).all(|w| w[0] <= w[1]), "nearest first");
        let got: HashSet<PeerId> = got.into_iter().collect();
        assert_eq!(got, all.into_iter().collect());
    }

    #[test]
    fn k_answers_mean_no_census() {
        let mut census = Census::<u32>::default();
        let now = Instant::now();
        census.walked(&peers(5), now);
        assert!(census.current(now).is_some());
        census.walked(&peers(K_VALUE.get()), now);
        assert!(census.current(now).is_none());
        census.walked(&[], now);
        assert!(
            census.current(now).is_none(),
            "no peer answered: nothing known"
        );
    }

    #[test]
    fn a_census_ends_with_a_join_with_age_and_loses_unreachable_peers() {
        let mut census = Census::<u32>::default();
        let now = Instant::now();
        let all = peers(3);
        census.walked(&all, now);
        census.lost(&all[0]);
        assert_eq!(census.current(now).map(HashSet::len), Some(2));
        assert!(census.current(now + CENSUS_TTL).is_none(), "expired");
        census.joined();
        assert!(census.current(now).is_none(), "a peer joined");
        census.walked(&all[..1], now);
        census.lost(&all[0]);
        assert!(census.current(now).is_none(), "nobody left");
        census.walked(&all, now);
        census.lost(&all[0]);
        census.connected(&all[1]);
        assert!(census.current(now).is_some(), "a peer counted");
        census.connected(&all[0]);
        assert!(census.current(now).is_none(), "a peer lost came back");
    }

    #[test]
    fn census_walks_only_on_a_small_table_one_at_a_time_and_spaced() {
        let mut census = Census::<u32>::default();
        let now = Instant::now();
        assert!(!census.wants_walk(0, now), "nobody to ask");
        assert!(
            !census.wants_walk(K_VALUE.get(), now),
            "not a small network"
        );
        assert!(census.wants_walk(6, now));
        let id = 1;
        census.walking(id, now);
        assert!(!census.wants_walk(6, now), "one at a time");
        assert!(!census.walk_ended(2, Some(&peers(2)), now));
        assert!(census.walk_ended(id, Some(&peers(6)), now));
        assert!(census.current(now).is_some());
        assert!(!census.wants_walk(6, now + CENSUS_MIN_INTERVAL), "fresh");
        assert!(
            census.wants_walk(6, now + CENSUS_REFRESH),
            "due for a refresh"
        );
        census.joined();
        assert!(!census.wants_walk(6, now), "spaced after the last walk");
        assert!(census.wants_walk(6, now + CENSUS_MIN_INTERVAL));
    }
}
