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
/// Direct addresses remembered per candidate relay.
const MAX_RELAY_ADDRS: usize = 4;
/// How long a relay that failed (the circuit address was refused, or the reservation
/// was refused or ended) is not asked again after its first failure; each failure in a
/// row doubles it, up to [`RELAY_RETRY_MAX`]. An accepted reservation starts it afresh.
const RELAY_RETRY_MIN: Duration = Duration::from_secs(5);
/// The longest rest of a relay that keeps failing.
const RELAY_RETRY_MAX: Duration = Duration::from_secs(60);
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

/// The relays of a private node: candidates (public peers offering the hop protocol,
/// at their direct addresses), the reservations held, and the relays that failed lately.
#[derive(Debug, Default)]
pub(super) struct Relays {
    /// Each candidate's direct addresses, without a `/p2p` suffix.
    candidates: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// Reservation listeners, by relay.
    held: HashMap<PeerId, ListenerId>,
    /// Relays that failed lately: not asked again before the time; failures in a row.
    resting: HashMap<PeerId, (Instant, u32)>,
}

/// The address of `peer` that `addr` names, without its `/p2p/<peer>` suffix; `None` for
/// an address of another peer, a relay circuit, or loopback (a relay on another machine
/// is never reached there).
fn relay_address(peer: PeerId, addr: &Multiaddr) -> Option<Multiaddr> {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(id)) = addr.iter().last() {
        if id != peer {
            return None;
        }
        addr.pop();
    }
    let direct = !addr.is_empty()
        && !is_relayed(&addr)
        && !is_loopback(&addr)
        && !addr.iter().any(|p| matches!(p, Protocol::P2p(_)));
    direct.then_some(addr)
}

impl Relays {
    /// Notes what Identify says of `peer`: a possible relay when it offers the hop
    /// protocol at a direct, non-loopback address; no longer one otherwise.
    ///
    /// A public node's Identify lists its address twice, bare and with its own
    /// `/p2p/<id>` (AutoNAT confirms the address it was dialled at so), in no fixed
    /// order; the suffix is dropped here, as the circuit address adds it once.
    pub(super) fn identified(&mut self, peer: PeerId, offers_hop: bool, addrs: &[Multiaddr]) {
        let mut direct: Vec<Multiaddr> = Vec::new();
        for addr in addrs.iter().filter_map(|a| relay_address(peer, a)) {
            if !direct.contains(&addr) && direct.len() < MAX_RELAY_ADDRS {
                direct.push(addr);
            }
        }
        if offers_hop
            && !direct.is_empty()
            && (self.candidates.len() < MAX_RELAY_CANDIDATES || self.candidates.contains_key(&peer))
        {
            self.candidates.insert(peer, direct);
        } else {
            self.candidates.remove(&peer);
        }
    }

    /// The circuit listen addresses to open now so that up to [`MAX_RELAYS`]
    /// reservations are held (none while `reachability` is not private). A relay that
    /// failed before is asked at its next address.
    pub(super) fn wanted(
        &mut self,
        reachability: Reachability,
        now: Instant,
    ) -> Vec<(PeerId, Multiaddr)> {
        if reachability != Reachability::Private {
            return Vec::new();
        }
        let missing = MAX_RELAYS.saturating_sub(self.held.len());
        let resting = &self.resting;
        self.candidates
            .iter()
            .filter(|(p, _)| !self.held.contains_key(p))
            .filter(|(p, _)| resting.get(p).is_none_or(|(until, _)| *until <= now))
            .take(missing)
            .map(|(p, addrs)| {
                let failures = resting.get(p).map_or(0, |(_, n)| *n as usize);
                let addr = &addrs[failures % addrs.len()];
                let circuit = addr
                    .clone()
                    .with(Protocol::P2p(*p))
                    .with(Protocol::P2pCircuit);
                (*p, circuit)
            })
            .collect()
    }

    /// A reservation listener was opened on `relay`.
    pub(super) fn opened(&mut self, relay: PeerId, id: ListenerId) {
        self.held.insert(relay, id);
    }

    /// `relay` accepted a reservation: a later failure rests it the shortest time.
    pub(super) fn accepted(&mut self, relay: PeerId) {
        self.resting.remove(&relay);
    }

    /// Asking `relay` failed (its circuit address was refused, or the reservation was
    /// refused or ended): it rests, twice as long as after the failure before.
    pub(super) fn failed(&mut self, relay: PeerId, now: Instant) {
        self.held.remove(&relay);
        let failures = self.resting.get(&relay).map_or(0, |(_, n)| *n);
        let rest = RELAY_RETRY_MIN
            .saturating_mul(1u32 << failures.min(16))
            .min(RELAY_RETRY_MAX);
        self.resting
            .insert(relay, (now + rest, failures.saturating_add(1)));
        // Bounded: only candidates and held relays rest.
        let candidates = &self.candidates;
        self.resting.retain(|p, _| candidates.contains_key(p));
    }

    /// Listener `id` closed (the reservation was refused, ended or its relay went away):
    /// the relay it was on, which rests a while.
    pub(super) fn closed(&mut self, id: ListenerId, now: Instant) -> Option<PeerId> {
        let relay = self.held.iter().find(|(_, l)| **l == id).map(|(p, _)| *p)?;
        self.failed(relay, now);
        Some(relay)
    }

    /// Every reservation listener, to close when the node turns out public.
    pub(super) fn take_all(&mut self) -> Vec<ListenerId> {
        self.held.drain().map(|(_, id)| id).collect()
    }

    /// How many reservations are held (or being made).
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// How many peers are known to offer the relay protocol.
    pub(super) fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// A relay's addresses when `peer` is a known candidate.
    #[cfg(test)]
    fn candidate(&self, peer: &PeerId) -> Option<&[Multiaddr]> {
        self.candidates.get(peer).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::addresses::addr;

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
        relays.identified(a, true, std::slice::from_ref(&direct));
        relays.identified(b, true, &[addr("/ip4/198.18.0.3/udp/9/quic-v1")]);
        // Not relays: no hop protocol, only loopback, only a circuit.
        relays.identified(c, false, &[addr("/ip4/198.18.0.4/tcp/1")]);
        relays.identified(d, true, &[addr("/ip4/127.0.0.1/tcp/1")]);
        assert_eq!(relays.candidate(&a), Some(&[direct.clone()][..]));
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
        assert_eq!(relays.closed(ids[0], now), Some(wanted[0].0));
        assert_eq!(relays.closed(ListenerId::next(), now), None);
        assert_eq!(relays.held(), 1);
        assert!(relays.wanted(Reachability::Private, now).is_empty());
        let later = now + RELAY_RETRY_MIN;
        assert_eq!(relays.wanted(Reachability::Private, later).len(), 1);

        // A relay that stops offering the hop protocol is forgotten.
        relays.identified(a, false, &[direct]);
        assert!(relays.candidate(&a).is_none());
        assert_eq!(relays.take_all().len(), 1);
        assert_eq!(relays.held(), 0);
    }

    /// The bug that kept the NATed hosts of the namespace testnet without a relay: a
    /// public node's Identify lists `<addr>/p2p/<id>` beside `<addr>` (AutoNAT's
    /// confirmed address), and a relay picked at the first made
    /// `<addr>/p2p/<id>/p2p/<id>/p2p-circuit`, which libp2p's relay transport refuses
    /// (`MalformedMultiaddr`); it was asked again every tick, never another relay.
    #[test]
    fn a_relay_listed_with_its_own_id_gets_a_circuit_the_relay_transport_takes() {
        use libp2p::Transport as _;
        let relay = PeerId::random();
        let bare = addr("/ip4/198.18.0.2/tcp/4001");
        let with_id = bare.clone().with(Protocol::P2p(relay));
        let other = addr(&format!("/ip4/198.18.0.9/tcp/1/p2p/{}", PeerId::random()));
        let mut relays = Relays::default();
        for listed in [
            vec![with_id.clone(), bare.clone()],
            vec![with_id.clone()],
            vec![other.clone(), bare.clone(), with_id],
        ] {
            relays.identified(relay, true, &listed);
            assert_eq!(relays.candidate(&relay), Some(&[bare.clone()][..]));
            let wanted = relays.wanted(Reachability::Private, Instant::now());
            let [(peer, circuit)] = &wanted[..] else {
                panic!("{wanted:?}");
            };
            assert_eq!(*peer, relay);
            assert_eq!(
                *circuit,
                bare.clone()
                    .with(Protocol::P2p(relay))
                    .with(Protocol::P2pCircuit)
            );
            let (mut transport, _behaviour) = relay::client::new(PeerId::random());
            transport
                .listen_on(ListenerId::next(), circuit.clone())
                .unwrap_or_else(|e| panic!("{circuit}: {e}"));
        }
        // What the relay was asked at before: libp2p refuses it.
        let doubled = with_id_twice(&bare, relay);
        let (mut transport, _behaviour) = relay::client::new(PeerId::random());
        assert!(transport.listen_on(ListenerId::next(), doubled).is_err());
        // Another peer's address is never taken for the relay's.
        relays.identified(relay, true, &[other]);
        assert!(relays.candidate(&relay).is_none());
    }

    /// `<addr>/p2p/<relay>/p2p/<relay>/p2p-circuit`.
    fn with_id_twice(addr: &Multiaddr, relay: PeerId) -> Multiaddr {
        addr.clone()
            .with(Protocol::P2p(relay))
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit)
    }

    #[test]
    fn a_failing_relay_rests_longer_each_time_and_another_is_asked_meanwhile() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let a1 = addr("/ip4/198.18.0.2/tcp/4001");
        let a2 = addr("/ip4/198.18.0.2/udp/4001/quic-v1");
        let mut relays = Relays::default();
        relays.identified(a, true, &[a1.clone(), a2.clone()]);
        let t0 = Instant::now();
        let circuit_of = |relays: &mut Relays, t| {
            relays
                .wanted(Reachability::Private, t)
                .into_iter()
                .find(|(p, _)| *p == a)
                .map(|(_, c)| c)
        };
        let Some(first) = circuit_of(&mut relays, t0) else {
            panic!("a is not asked first");
        };
        assert!(first.to_string().starts_with(&a1.to_string()), "{first}");
        // Its circuit address is refused: it rests 5 s, then is asked at its next
        // address; meanwhile the two free slots go to the others.
        relays.failed(a, t0);
        relays.identified(b, true, &[addr("/ip4/198.18.0.3/tcp/4001")]);
        relays.identified(c, true, &[addr("/ip4/198.18.0.4/tcp/4001")]);
        assert_eq!(relays.candidates(), 3);
        let mut others: Vec<PeerId> = relays
            .wanted(Reachability::Private, t0)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        others.sort();
        let mut expected = vec![b, c];
        expected.sort();
        assert_eq!(others, expected);
        relays.identified(b, false, &[]);
        relays.identified(c, false, &[]);
        let Some(again) = circuit_of(&mut relays, t0 + RELAY_RETRY_MIN) else {
            panic!("a is not asked again after its rest");
        };
        assert!(again.to_string().starts_with(&a2.to_string()), "{again}");
        // Each failure in a row doubles the rest, up to the most.
        let mut t = t0 + RELAY_RETRY_MIN;
        let mut rest = RELAY_RETRY_MIN;
        for _ in 0..8 {
            relays.failed(a, t);
            rest = (rest * 2).min(RELAY_RETRY_MAX);
            assert!(circuit_of(&mut relays, t + rest - Duration::from_millis(1)).is_none());
            assert!(circuit_of(&mut relays, t + rest).is_some());
            t += rest;
        }
        assert_eq!(rest, RELAY_RETRY_MAX);
        // An accepted reservation starts the rest afresh.
        let id = ListenerId::next();
        relays.opened(a, id);
        relays.accepted(a);
        assert_eq!(relays.closed(id, t), Some(a));
        assert!(circuit_of(&mut relays, t + RELAY_RETRY_MIN).is_some());
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
