//! NAT traversal: whether this node is reachable from outside (AutoNAT), relays for a
//! node that is not (circuit relay v2), and direct connections through the NAT where a
//! hole punch works (DCUtR).
//!
//! - **Reachability** ([`Reachability`]) comes from AutoNAT (v1): now and then a
//!   connected peer is asked to dial this node back at its addresses (a server dials only
//!   the IP address it sees the request come from). Until the first answer the node is
//!   `Unknown` and behaves as `Public`.
//! - **Private**: the node stops advertising its own (unreachable) listen addresses and
//!   instead holds reservations on up to [`MAX_RELAYS`] public peers that offer the relay
//!   protocol; it advertises the circuit addresses those give it
//!   (`<relay>/p2p/<relay id>/p2p-circuit`). Peers reach it through a relay; DCUtR then
//!   tries to replace the relayed connection by a direct one (a hole punch, or a
//!   connection from the private node to a public one).
//! - **Public**: the node serves as a relay for others, within [`relay_config`]'s budget,
//!   and answers AutoNAT probes within [`autonat_config`]'s.
//!
//! The counts of what happened (relayed connections, hole punches, reservations,
//! circuits served, shard requests that came over a relay) are metrics
//! (`datamesh_nat_events_total{event=...}`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, autonat, relay};

use super::addresses::is_loopback;

/// Relays a private node holds reservations on at once.
pub const MAX_RELAYS: usize = 2;
/// Peers remembered as possible relays (public peers that offer the hop protocol).
const MAX_RELAY_CANDIDATES: usize = 64;
/// How long a relay that failed (refused or closed the reservation) is not asked again.
const RELAY_RETRY: Duration = Duration::from_secs(60);

/// Whether this node can be dialled from outside, as AutoNAT last found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not known yet (no AutoNAT answer): treated as public.
    Unknown,
    /// A peer dialled this node back: it is reachable at its own addresses.
    Public,
    /// Peers could not dial it back: it is behind a NAT or a firewall.
    Private,
}

impl Reachability {
    /// Its name in status output and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Public => "public",
            Self::Private => "private",
        }
    }

    /// What the node takes itself to be from AutoNAT's `status`, held with `confidence`
    /// (how many later answers agreed with the one that set it), its listen addresses
    /// `listen`, and what it took itself to be until now, `was`.
    ///
    /// - Becoming `Private` needs [`PRIVATE_CONFIDENCE`] answers after the first: libp2p
    ///   flips to private on the first "dial failed" answer, and one such answer is cheap
    ///   to get wrong (a server's own connection limit or a transient failure refuses the
    ///   dial-back), while being private costs the node its place in others' routing
    ///   tables. Until then it stays `Unknown` (treated as public).
    /// - Staying `Private` needs only AutoNAT's status to stay private: libp2p lowers its
    ///   confidence at every new listen address (each relay reservation is one), which
    ///   must not drop the reservations that made it.
    /// - A node whose every listen address is loopback is never private: its peers are on
    ///   its own machine, where they can always dial it; AutoNAT cannot say anything
    ///   about other machines there, and a relay would not help.
    pub(super) fn judge(
        status: &autonat::NatStatus,
        confidence: usize,
        listen: &[Multiaddr],
        was: Self,
    ) -> Self {
        let direct: Vec<&Multiaddr> = listen.iter().filter(|a| !is_relayed(a)).collect();
        let loopback_only = !direct.is_empty() && direct.iter().all(|a| is_loopback(a));
        match status {
            autonat::NatStatus::Public(_) => Self::Public,
            autonat::NatStatus::Private
                if !loopback_only && (confidence >= PRIVATE_CONFIDENCE || was == Self::Private) =>
            {
                Self::Private
            }
            autonat::NatStatus::Private | autonat::NatStatus::Unknown => Self::Unknown,
        }
    }
}

/// Answers that must agree with AutoNAT's first "private" before the node believes it
/// (see [`Reachability::judge`]): two "dial failed" answers in a row (each probe asks a
/// connected peer drawn at random, so usually two servers).
pub(super) const PRIVATE_CONFIDENCE: usize = 1;

/// What the relay server of a public node allows, so that every cost a stranger can make
/// it pay is bounded: reservations (at most 64, 2 per peer, 1 hour each, and libp2p's
/// rate limits per peer and per IP), circuits (at most 16 at once, 4 per peer, each
/// closed after 10 minutes or 256 MiB relayed, whichever first, and the rate limits of
/// new circuits per source peer and IP). libp2p's defaults (128 KiB, 2 minutes a circuit)
/// are meant for a hole punch's signalling only; DataMesh also carries shards over a
/// circuit when the hole punch fails, so circuits are larger, and fewer at once.
pub(super) fn relay_config() -> relay::Config {
    let defaults = relay::Config::default();
    relay::Config {
        max_reservations: 64,
        max_reservations_per_peer: 2,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: 16,
        max_circuits_per_peer: 4,
        max_circuit_duration: Duration::from_secs(600),
        max_circuit_bytes: 256 << 20,
        ..defaults
    }
}

/// The relay limits as numbers, for docs and tests: (reservations, per peer, circuits,
/// per peer, circuit seconds, circuit bytes).
pub const RELAY_LIMITS: (usize, usize, usize, usize, u64, u64) = (64, 2, 16, 4, 600, 256 << 20);

/// AutoNAT (v1): a first probe 2 s after start, then every 20 s until three answers
/// agree, then every 15 minutes (a verdict of private needs two answers in a row,
/// [`PRIVATE_CONFIDENCE`], so it takes about 22 s). As a server it dials back at most 3 requests per peer
/// and 30 in all per second, at most 16 addresses each, and only the IP address the
/// request came from (a client cannot make it dial a third machine). Private addresses
/// are probed too (`only_global_ips: false`): a testnet of namespaces and a LAN are
/// private networks where reachability matters just as much.
pub(super) fn autonat_config() -> autonat::Config {
    autonat::Config {
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(20),
        only_global_ips: false,
        throttle_server_period: Duration::from_secs(5),
        ..autonat::Config::default()
    }
}

/// Whether `addr` goes through a relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The relays of a private node: candidates (public peers offering the hop protocol, at
/// a direct address) and the reservations held.
#[derive(Debug, Default)]
pub(super) struct Relays {
    candidates: BTreeMap<PeerId, Multiaddr>,
    /// Reservation listeners, by relay.
    held: HashMap<PeerId, ListenerId>,
    /// Relays that failed lately, not asked again before the time.
    resting: HashMap<PeerId, Instant>,
}

impl Relays {
    /// Notes what Identify says of `peer`: a possible relay when it offers the hop
    /// protocol at a direct, non-loopback address; no longer one otherwise.
    pub(super) fn identified(&mut self, peer: PeerId, offers_hop: bool, addrs: &[Multiaddr]) {
        let direct = addrs.iter().find(|a| !is_relayed(a) && !is_loopback(a));
        match direct {
            Some(addr) if offers_hop => {
                if self.candidates.len() < MAX_RELAY_CANDIDATES
                    || self.candidates.contains_key(&peer)
                {
                    self.candidates.insert(peer, addr.clone());
                }
            }
            _ => {
                self.candidates.remove(&peer);
            }
        }
    }

    /// The circuit listen addresses to open now so that up to [`MAX_RELAYS`]
    /// reservations are held (none while `reachability` is not private).
    pub(super) fn wanted(
        &mut self,
        reachability: Reachability,
        now: Instant,
    ) -> Vec<(PeerId, Multiaddr)> {
        if reachability != Reachability::Private {
            return Vec::new();
        }
        self.resting.retain(|_, until| *until > now);
        let missing = MAX_RELAYS.saturating_sub(self.held.len());
        self.candidates
            .iter()
            .filter(|(p, _)| !self.held.contains_key(p) && !self.resting.contains_key(p))
            .take(missing)
            .map(|(p, a)| {
                let circuit = a.clone().with(Protocol::P2p(*p)).with(Protocol::P2pCircuit);
                (*p, circuit)
            })
            .collect()
    }

    /// A reservation listener was opened on `relay`.
    pub(super) fn opened(&mut self, relay: PeerId, id: ListenerId) {
        self.held.insert(relay, id);
    }

    /// Listener `id` closed (the reservation was refused, ended or its relay went away);
    /// its relay rests a while.
    pub(super) fn closed(&mut self, id: ListenerId, now: Instant) {
        let gone: Vec<PeerId> = self
            .held
            .iter()
            .filter(|(_, l)| **l == id)
            .map(|(p, _)| *p)
            .collect();
        for peer in gone {
            self.held.remove(&peer);
            self.resting.insert(peer, now + RELAY_RETRY);
        }
    }

    /// Every reservation listener, to close when the node turns out public.
    pub(super) fn take_all(&mut self) -> Vec<ListenerId> {
        self.held.drain().map(|(_, id)| id).collect()
    }

    /// How many reservations are held (or being made).
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// A relay's address when `peer` is a known candidate.
    #[cfg(test)]
    fn candidate(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.candidates.get(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse()
            .unwrap_or_else(|e| panic!("{text} is not a multiaddr: {e}"))
    }

    #[test]
    fn a_private_node_reserves_on_two_public_relays_and_rests_failed_ones() {
        let mut relays = Relays::default();
        let (a, b, c, d) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        let direct = addr("/ip4/198.18.0.2/tcp/4001");
        relays.identified(a, true, &[direct.clone()]);
        relays.identified(b, true, &[addr("/ip4/198.18.0.3/udp/9/quic-v1")]);
        // Not relays: no hop protocol, only loopback, only a circuit.
        relays.identified(c, false, &[addr("/ip4/198.18.0.4/tcp/1")]);
        relays.identified(d, true, &[addr("/ip4/127.0.0.1/tcp/1")]);
        assert_eq!(relays.candidate(&a), Some(&direct));
        assert!(relays.candidate(&c).is_none() && relays.candidate(&d).is_none());

        let now = Instant::now();
        assert!(relays.wanted(Reachability::Public, now).is_empty());
        assert!(relays.wanted(Reachability::Unknown, now).is_empty());
        let wanted = relays.wanted(Reachability::Private, now);
        assert_eq!(wanted.len(), 2);
        for (peer, circuit) in &wanted {
            assert!(is_relayed(circuit), "{circuit}");
            assert!(circuit.iter().any(|p| p == Protocol::P2p(*peer)));
        }
        let ids: Vec<ListenerId> = wanted
            .iter()
            .map(|(p, _)| {
                let id = ListenerId::next();
                relays.opened(*p, id);
                id
            })
            .collect();
        assert!(relays.wanted(Reachability::Private, now).is_empty());
        assert_eq!(relays.held(), 2);

        // One reservation ends: its relay rests, no other candidate is left.
        relays.closed(ids[0], now);
        assert_eq!(relays.held(), 1);
        assert!(relays.wanted(Reachability::Private, now).is_empty());
        let later = now + RELAY_RETRY + Duration::from_secs(1);
        assert_eq!(relays.wanted(Reachability::Private, later).len(), 1);

        // A relay that stops offering the hop protocol is forgotten.
        relays.identified(a, false, &[direct]);
        assert!(relays.candidate(&a).is_none());
        assert_eq!(relays.take_all().len(), 1);
        assert_eq!(relays.held(), 0);
    }

    #[test]
    fn private_needs_a_confirmed_answer_and_a_non_loopback_listener() {
        use autonat::NatStatus;
        let lan = [
            addr("/ip4/10.7.0.2/tcp/4001"),
            addr("/ip4/127.0.0.1/tcp/4001"),
        ];
        let lo = [
            addr("/ip4/127.0.0.1/tcp/4001"),
            addr("/ip6/::1/udp/4001/quic-v1"),
        ];
        let circuit = addr(
            "/ip4/198.18.0.2/tcp/4001/p2p/12D3KooWGC6TvWhfapngpreuhy7VaBEJpNT2jLrfpjFDpJYwnJoG/p2p-circuit",
        );
        let judge =
            |s: &NatStatus, c, l: &[Multiaddr]| Reachability::judge(s, c, l, Reachability::Unknown);
        // The first "dial failed" is not believed, the second is.
        assert_eq!(judge(&NatStatus::Private, 0, &lan), Reachability::Unknown);
        assert_eq!(judge(&NatStatus::Private, 1, &lan), Reachability::Private);
        assert_eq!(judge(&NatStatus::Private, 3, &lan), Reachability::Private);
        // Once private, a lower confidence (libp2p lowers it at every new listen
        // address, a relay reservation too) keeps it private; a public answer does not.
        let was = Reachability::Private;
        let judge_was = |s: &NatStatus, c| Reachability::judge(s, c, &lan, was);
        assert_eq!(judge_was(&NatStatus::Private, 0), Reachability::Private);
        assert_eq!(
            judge_was(&NatStatus::Public(lan[0].clone()), 0),
            Reachability::Public
        );
        assert_eq!(judge_was(&NatStatus::Unknown, 0), Reachability::Unknown);
        // A circuit listener does not count as a direct address.
        let with_circuit = [lan[0].clone(), circuit.clone()];
        assert_eq!(
            judge(&NatStatus::Private, 2, &with_circuit),
            Reachability::Private
        );
        // Loopback only (a one-machine testnet): never private.
        assert_eq!(judge(&NatStatus::Private, 3, &lo), Reachability::Unknown);
        let lo_circuit = [lo[0].clone(), circuit];
        assert_eq!(
            judge(&NatStatus::Private, 3, &lo_circuit),
            Reachability::Unknown
        );
        for listen in [&lan[..], &lo[..], &[]] {
            assert_eq!(judge(&NatStatus::Unknown, 3, listen), Reachability::Unknown);
            assert_eq!(
                judge(&NatStatus::Public(lan[0].clone()), 0, listen),
                Reachability::Public
            );
        }
    }

    #[test]
    fn relayed_addresses_are_recognised() {
        assert!(is_relayed(&addr(
            "/ip4/198.18.0.2/tcp/4001/p2p/12D3KooWGC6TvWhfapngpreuhy7VaBEJpNT2jLrfpjFDpJYwnJoG/p2p-circuit"
        )));
        assert!(!is_relayed(&addr("/ip4/198.18.0.2/tcp/4001")));
        let c = relay_config();
        assert_eq!(
            (
                c.max_reservations,
                c.max_reservations_per_peer,
                c.max_circuits,
                c.max_circuits_per_peer,
                c.max_circuit_duration.as_secs(),
                c.max_circuit_bytes
            ),
            RELAY_LIMITS
        );
    }
}
