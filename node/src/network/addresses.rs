//! Which addresses the node advertises (Identify, and through it every peer's routing
//! table): only ones that other machines can reach.
//!
//! The policy: the external addresses given in the config (`external_addresses`, e.g. a
//! router's forwarded port), and every listen address that is not loopback. A loopback
//! address is advertised only by a node that listens on nothing else (every node of a
//! one-machine testnet, where the peers are on the same loopback): a node that listens on
//! all interfaces never tells a peer on another machine to dial 127.0.0.1, which would
//! reach that peer's own machine. Unspecified addresses (0.0.0.0) never appear: libp2p
//! reports one listen address per interface.
//!
//! A node that AutoNAT found private (`nat.rs`) advertises none of its own listen
//! addresses (nobody outside can dial them): only its relay circuits and the configured
//! externals. Its peers then drop the addresses they had for it (`event_loop.rs`), so it
//! is a shard holder only where it can be reached.

use libp2p::multiaddr::Protocol;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Multiaddr, Swarm};

use super::nat::{Reachability, is_relayed};

/// Whether `addr` is on a loopback interface (127.0.0.0/8, ::1).
pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Whether `addr` listens on every interface (0.0.0.0, ::).
pub fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// The addresses to advertise for these listen addresses and configured externals, at
/// this reachability.
pub(super) fn advertised(
    listen: &[Multiaddr],
    configured: &[Multiaddr],
    reachability: Reachability,
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = configured.to_vec();
    if reachability == Reachability::Private {
        out.extend(listen.iter().filter(|a| is_relayed(a)).cloned());
    } else {
        let direct = || listen.iter().filter(|a| !is_relayed(a));
        out.extend(direct().filter(|a| !is_loopback(a)).cloned());
        if out.is_empty() {
            out.extend(direct().cloned());
        }
    }
    out.dedup();
    out
}

/// The node's advertised addresses, kept in step with its listen addresses.
#[derive(Debug, Default)]
pub(super) struct Advertiser {
    configured: Vec<Multiaddr>,
    current: Vec<Multiaddr>,
    reachability: Option<Reachability>,
}

impl Advertiser {
    pub(super) fn new(configured: Vec<Multiaddr>) -> Self {
        Self {
            configured,
            current: Vec::new(),
            reachability: None,
        }
    }

    /// What AutoNAT found; takes effect at the next [`Self::sync`].
    pub(super) fn set_reachability(&mut self, reachability: Reachability) {
        self.reachability = Some(reachability);
    }

    /// Makes the swarm's external addresses [`advertised`]`(listen, configured)`;
    /// whether they changed (then tell the connected peers: an Identify push).
    pub(super) fn sync<B: NetworkBehaviour>(
        &mut self,
        swarm: &mut Swarm<B>,
        listen: &[Multiaddr],
    ) -> bool {
        let reachability = self.reachability.unwrap_or(Reachability::Unknown);
        let wanted = advertised(listen, &self.configured, reachability);
        if wanted == self.current {
            return false;
        }
        for old in self.current.iter().filter(|a| !wanted.contains(a)) {
            swarm.remove_external_address(old);
        }
        for new in wanted.iter().filter(|a| !self.current.contains(a)) {
            swarm.add_external_address(new.clone());
        }
        self.current = wanted;
        true
    }
}

/// `text` as a multiaddr, for the tests of the network's modules: panics on a malformed
/// one, naming it.
#[cfg(test)]
pub(super) fn addr(text: &str) -> Multiaddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text} is not a multiaddr: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|a| addr(a)).collect()
    }

    #[test]
    fn loopback_is_advertised_only_by_a_loopback_only_node() {
        let unknown = Reachability::Unknown;
        let advertised = |l: &[Multiaddr], c: &[Multiaddr]| advertised(l, c, unknown);
        let lo = addrs(&["/ip4/127.0.0.1/tcp/4001"]);
        assert_eq!(advertised(&lo, &[]), lo);
        let all = addrs(&[
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/198.18.0.3/tcp/4001",
            "/ip6/::1/tcp/4001",
        ]);
        assert_eq!(advertised(&all, &[]), addrs(&["/ip4/198.18.0.3/tcp/4001"]));
        let external = addrs(&["/ip4/203.0.113.7/tcp/4001"]);
        assert_eq!(advertised(&lo, &external), external);
        assert_eq!(
            advertised(&all, &external),
            addrs(&["/ip4/203.0.113.7/tcp/4001", "/ip4/198.18.0.3/tcp/4001"])
        );
        assert!(is_loopback(&lo[0]) && !is_loopback(&external[0]));
    }

    #[test]
    fn a_private_node_advertises_only_its_circuits_and_externals() {
        let relayed = "/ip4/198.18.0.2/udp/4001/quic-v1/p2p/12D3KooWGC6TvWhfapngpreuhy7VaBEJpNT2jLrfpjFDpJYwnJoG/p2p-circuit";
        let listen = addrs(&[
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.7.0.2/tcp/4001",
            "/ip4/10.7.0.2/udp/4001/quic-v1",
            relayed,
        ]);
        let private = Reachability::Private;
        assert_eq!(advertised(&listen, &[], private), addrs(&[relayed]));
        let external = addrs(&["/ip4/203.0.113.7/tcp/4001"]);
        assert_eq!(
            advertised(&listen, &external, private),
            addrs(&["/ip4/203.0.113.7/tcp/4001", relayed])
        );
        assert!(advertised(&listen[..3], &[], private).is_empty());
        // Public (or not known yet): its direct addresses, never a circuit.
        for r in [Reachability::Public, Reachability::Unknown] {
            assert_eq!(
                advertised(&listen, &[], r),
                addrs(&["/ip4/10.7.0.2/tcp/4001", "/ip4/10.7.0.2/udp/4001/quic-v1"])
            );
        }
    }
}
