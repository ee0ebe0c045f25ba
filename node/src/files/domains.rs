//! Failure domains: a stripe's six shards go to six distinct *hosts* when the network has
//! six, not only to six distinct peer ids. One machine running several node ids (or
//! several nodes behind one address) fails as one: it must not hold two shards of a
//! stripe when that can be avoided.
//!
//! A peer's host is the IP address it is known at: its first non-loopback address, else
//! its first address (every node of a one-machine testnet is on 127.0.0.1: one host, so
//! nothing can be avoided there and the order stays by distance); a peer known at no IP
//! address, or only through relay circuits (a node behind a NAT), is a host of its own. [`spread_over_hosts`] reorders the candidates (nearest
//! first) so that the nearest peer of each host not yet used comes first, then the rest
//! in their order: the first six placed are on six hosts when six exist, and a refused
//! or failed store is replaced from a new host before a used one.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// The host (IP address) a peer known at `addresses` runs on.
pub(crate) fn host_of(addresses: &[Multiaddr]) -> Option<IpAddr> {
    let ips: Vec<IpAddr> = addresses
        .iter()
        // A relay circuit's IP address is the relay's host, not the peer's.
        .filter(|a| !crate::network::is_relayed(a))
        .filter_map(|a| {
            a.iter().find_map(|p| match p {
                Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            })
        })
        .collect();
    ips.iter()
        .find(|ip| !ip.is_loopback())
        .or(ips.first())
        .copied()
}

/// `candidates` (nearest first) with the nearest peer of each host first, hosts in
/// `taken` (already holding a shard of the stripe) last among them; then the others in
/// their order. Peers of unknown host count as hosts of their own.
pub(crate) fn spread_over_hosts(
    candidates: Vec<PeerId>,
    hosts: &HashMap<PeerId, IpAddr>,
    taken: &HashSet<IpAddr>,
) -> Vec<PeerId> {
    let mut used: HashSet<IpAddr> = taken.clone();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for peer in candidates {
        match hosts.get(&peer) {
            Some(host) if !used.insert(*host) => rest.push(peer),
            _ => first.push(peer),
        }
    }
    first.extend(rest);
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    #[test]
    fn two_ids_on_one_host_never_hold_two_shards_when_six_hosts_exist() {
        // Ten peers, nearest first; peers 0-3 on host 1 (four node ids on one machine),
        // the others each on a host of their own (6 more hosts).
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let hosts: HashMap<PeerId, IpAddr> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, if i < 4 { ip(1) } else { ip(i as u8) }))
            .collect();
        let order = spread_over_hosts(peers.clone(), &hosts, &HashSet::new());
        assert_eq!(order.len(), 10);
        let six: HashSet<IpAddr> = order[..6].iter().map(|p| hosts[p]).collect();
        assert_eq!(six.len(), 6, "the first six are on six hosts");
        assert_eq!(order[0], peers[0], "the nearest peer still comes first");
        assert_eq!(
            &order[7..],
            &peers[1..4],
            "the host's other ids come last, in order"
        );

        // Repair: the hosts still holding shards are avoided while others are left.
        let taken: HashSet<IpAddr> = [ip(1), ip(4)].into_iter().collect();
        let order = spread_over_hosts(peers.clone(), &hosts, &taken);
        assert!(
            order[..5].iter().all(|p| !taken.contains(&hosts[p])),
            "{order:?}"
        );
    }

    #[test]
    fn one_host_keeps_the_distance_order_and_unknown_hosts_are_their_own() {
        let peers: Vec<PeerId> = (0..7).map(|_| PeerId::random()).collect();
        let lo = IpAddr::from([127, 0, 0, 1]);
        let all_local: HashMap<PeerId, IpAddr> = peers.iter().map(|p| (*p, lo)).collect();
        let order = spread_over_hosts(peers.clone(), &all_local, &HashSet::new());
        assert_eq!(order, peers);
        let unknown = spread_over_hosts(peers.clone(), &HashMap::new(), &HashSet::new());
        assert_eq!(unknown, peers);
    }

    #[test]
    fn a_host_is_its_first_non_loopback_address() {
        let addrs = |list: &[&str]| -> Vec<Multiaddr> {
            let parsed: Vec<Multiaddr> = list.iter().filter_map(|a| a.parse().ok()).collect();
            assert_eq!(parsed.len(), list.len(), "{list:?}");
            parsed
        };
        assert_eq!(
            host_of(&addrs(&["/ip4/127.0.0.1/tcp/1", "/ip4/198.18.0.7/tcp/2"])),
            Some(ip(7))
        );
        assert_eq!(
            host_of(&addrs(&["/ip4/127.0.0.1/tcp/1"])),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(host_of(&addrs(&["/dns4/example.org/tcp/1"])), None);
        let relayed = "/ip4/198.18.0.2/tcp/1/p2p/12D3KooWGC6TvWhfapngpreuhy7VaBEJpNT2jLrfpjFDpJYwnJoG/p2p-circuit";
        assert_eq!(
            host_of(&addrs(&[relayed])),
            None,
            "the relay's host is not the peer's"
        );
    }
}
