//! Which transports a node listens and dials on: TCP (+ Noise + Yamux), QUIC (v1, TLS 1.3
//! built in), or both. The swarm always carries both (and the relay client); this choice
//! decides what it listens on and which peer addresses it keeps and dials, so a TCP-only
//! node never dials a QUIC address and the reverse.
//!
//! One listen address is given (config `listen_address`, `node run --listen`); it is
//! turned into the same host and port for every chosen transport
//! (`/ip4/A/tcp/P` and `/ip4/A/udp/P/quic-v1`).

use std::fmt;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// The transports a node uses. Default: TCP only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transports {
    tcp: bool,
    quic: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Self::TCP
    }
}

/// What a transport address is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Quic,
    Other,
}

/// The transport of `addr`, looking through a relay circuit to the relay's own address.
fn kind(addr: &Multiaddr) -> Kind {
    for p in addr.iter() {
        match p {
            Protocol::Tcp(_) => return Kind::Tcp,
            Protocol::QuicV1 => return Kind::Quic,
            _ => {}
        }
    }
    Kind::Other
}

impl Transports {
    /// TCP only.
    pub const TCP: Self = Self {
        tcp: true,
        quic: false,
    };
    /// QUIC only.
    pub const QUIC: Self = Self {
        tcp: false,
        quic: true,
    };
    /// TCP and QUIC.
    pub const BOTH: Self = Self {
        tcp: true,
        quic: true,
    };

    /// The transports named in `names` (`tcp`, `quic`; at least one, each at most once
    /// counted).
    ///
    /// # Errors
    /// A one-line reason for an unknown name or an empty list.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut out = Self {
            tcp: false,
            quic: false,
        };
        for name in names {
            match name.as_ref().trim() {
                "tcp" => out.tcp = true,
                "quic" => out.quic = true,
                other => {
                    return Err(format!(
                        "unknown transport {other:?} (expected \"tcp\" or \"quic\")"
                    ));
                }
            }
        }
        if !out.tcp && !out.quic {
            return Err("no transport chosen (expected \"tcp\", \"quic\" or both)".into());
        }
        Ok(out)
    }

    /// Whether TCP is used.
    pub fn tcp(self) -> bool {
        self.tcp
    }

    /// Whether QUIC is used.
    pub fn quic(self) -> bool {
        self.quic
    }

    /// Whether `addresses` (as the swarm reports them) hold one of every chosen
    /// transport: the TCP and QUIC listeners report theirs one after the other.
    pub fn each_reported(self, addresses: &[Multiaddr]) -> bool {
        let has = |wanted: Kind| addresses.iter().any(|a| kind(a) == wanted);
        (!self.tcp || has(Kind::Tcp)) && (!self.quic || has(Kind::Quic))
    }

    /// The addresses to listen on for `base`: its host and port on every chosen
    /// transport. An address of neither kind is kept as it is.
    pub fn listen_addresses(self, base: &Multiaddr) -> Vec<Multiaddr> {
        let (mut host, mut port) = (Multiaddr::empty(), None);
        for p in base.iter() {
            match p {
                Protocol::Tcp(n) | Protocol::Udp(n) => port = Some(n),
                Protocol::QuicV1 => {}
                other if port.is_none() => host.push(other),
                _ => return vec![base.clone()],
            }
        }
        let Some(port) = port.filter(|_| kind(base) != Kind::Other) else {
            return vec![base.clone()];
        };
        let mut out = Vec::new();
        if self.tcp {
            out.push(host.clone().with(Protocol::Tcp(port)));
        }
        if self.quic {
            out.push(host.with(Protocol::Udp(port)).with(Protocol::QuicV1));
        }
        out
    }

    /// Whether this node dials `addr` (and keeps it in its routing table): its
    /// transport, or the relay's under a circuit, is one of ours.
    pub fn allows(self, addr: &Multiaddr) -> bool {
        match kind(addr) {
            Kind::Tcp => self.tcp,
            Kind::Quic => self.quic,
            Kind::Other => false,
        }
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tcp, self.quic) {
            (true, true) => f.write_str("tcp,quic"),
            (false, true) => f.write_str("quic"),
            _ => f.write_str("tcp"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::addresses::addr;

    #[test]
    fn one_listen_address_becomes_one_per_transport() {
        let tcp = addr("/ip4/0.0.0.0/tcp/4001");
        let quic = addr("/ip4/0.0.0.0/udp/4001/quic-v1");
        assert_eq!(Transports::TCP.listen_addresses(&tcp), vec![tcp.clone()]);
        assert_eq!(Transports::QUIC.listen_addresses(&tcp), vec![quic.clone()]);
        assert_eq!(
            Transports::BOTH.listen_addresses(&quic),
            vec![tcp.clone(), quic.clone()]
        );
        let v6 = addr("/ip6/::1/tcp/0");
        assert_eq!(
            Transports::QUIC.listen_addresses(&v6),
            vec![addr("/ip6/::1/udp/0/quic-v1")]
        );
        let odd = addr("/memory/7");
        assert_eq!(Transports::BOTH.listen_addresses(&odd), vec![odd]);
    }

    #[test]
    fn a_node_on_both_transports_waits_for_an_address_of_each() {
        let tcp = addr("/ip4/127.0.0.1/tcp/4001");
        let quic = addr("/ip4/127.0.0.1/udp/4001/quic-v1");
        assert!(!Transports::BOTH.each_reported(std::slice::from_ref(&tcp)));
        assert!(!Transports::BOTH.each_reported(std::slice::from_ref(&quic)));
        assert!(Transports::BOTH.each_reported(&[tcp.clone(), quic.clone()]));
        assert!(Transports::TCP.each_reported(std::slice::from_ref(&tcp)));
        assert!(Transports::QUIC.each_reported(&[quic]));
        assert!(!Transports::QUIC.each_reported(&[tcp]));
    }

    #[test]
    fn only_addresses_of_chosen_transports_are_dialled() {
        let tcp = addr("/ip4/198.18.0.2/tcp/4001");
        let quic = addr("/ip4/198.18.0.2/udp/4001/quic-v1");
        let circuit = addr(
            "/ip4/198.18.0.2/udp/4001/quic-v1/p2p/12D3KooWGC6TvWhfapngpreuhy7VaBEJpNT2jLrfpjFDpJYwnJoG/p2p-circuit",
        );
        assert!(Transports::TCP.allows(&tcp) && !Transports::TCP.allows(&quic));
        assert!(!Transports::QUIC.allows(&tcp) && Transports::QUIC.allows(&quic));
        assert!(Transports::QUIC.allows(&circuit) && !Transports::TCP.allows(&circuit));
        assert!(Transports::BOTH.allows(&tcp) && Transports::BOTH.allows(&quic));
        assert!(!Transports::BOTH.allows(&addr("/dns4/example.org")));
    }

    #[test]
    fn names_parse_and_print() {
        assert_eq!(Transports::parse(&["tcp"]), Ok(Transports::TCP));
        assert_eq!(Transports::parse(&["quic", "tcp"]), Ok(Transports::BOTH));
        assert_eq!(Transports::parse(&[" quic "]), Ok(Transports::QUIC));
        assert!(Transports::parse::<&str>(&[]).is_err());
        assert!(Transports::parse(&["udp"]).is_err_and(|e| e.contains("udp")));
        for t in [Transports::TCP, Transports::QUIC, Transports::BOTH] {
            let names: Vec<String> = t.to_string().split(',').map(String::from).collect();
            assert_eq!(Transports::parse(&names), Ok(t));
        }
    }
}
