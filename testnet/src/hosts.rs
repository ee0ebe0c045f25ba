//! A testnet of separate hosts: one network namespace per host, each with its own
//! address on a bridge made for this testnet, like machines on one switch.
//!
//! Names: everything this module makes starts with the testnet's id, `dmt` and 5 random
//! hex digits (`dmt1a2b3`): the bridge `ID-br`, per host `h` a namespace `ID-hH` and the
//! bridge end of its veth pair, also `ID-hH` (the other end is `eth0` inside the
//! namespace, address `198.18.0.(H+1)/16`, from the range reserved for benchmark
//! networks). The bridge has no address and is never connected to the machine's own
//! interfaces: the hosts reach each other and nothing else. Packet filters (`nft`) and
//! rate limits (`tc`) live inside the namespaces, so deleting a namespace deletes them.
//!
//! Hosts behind NAT (`Config::with_nat`): host `h` then sits behind a router of its own,
//! namespace `ID-nH`, whose `wan` end is on the bridge at the host's public address
//! `198.18.0.(H+1)`; the host itself is `10.H.0.2/24` on a veth to the router's `lan`
//! (`10.H.0.1`), its default route through it. The router masquerades what the host sends
//! (nftables `ip dm_nat`, like a home router) and forwards nothing from outside that is
//! not a reply: no connection from another host reaches a host behind NAT.
//!
//! The router model is a typical Linux home router's (most home routers run Linux
//! netfilter): the masquerade keeps a host's source port when no other flow uses it
//! (so one mapping per host port, whatever the destination, as long as ports do not
//! clash: "endpoint-independent" in practice), and filters inbound by the full flow
//! (only the address and port a host sent to may answer). Its own WAN address answers
//! nothing unsolicited (dropped, as a home router's firewall does). Two hosts behind such
//! routers can open a direct path when both send to each other's mapped address at about
//! the same time (a hole punch): whichever packet arrives first is dropped, and the other
//! one's arrives as the reply of the flow its own host opened. A router that answered
//! the first packet itself (a reset, or an ICMP error plus a conntrack entry for it)
//! would break that; the model drops it, as the firewall of a home router does.
//!
//! Leftovers: `/run/datamesh-testnet/ID` names the process that made testnet ID. On every
//! `up`, the namespaces and links of an id whose maker has exited and whose namespaces
//! hold no process are deleted (a crashed or killed run); a testnet's own id is always
//! rebuilt from scratch. `<dir>/hosts.json` keeps the id and the number of hosts, so the
//! CLI finds the testnet again from its folder.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};

use crate::error::{Error, Result, io_err};
use crate::netns::{self, ip, links, namespaces, pids_in};
use crate::process::pid_alive;

/// The first characters of every name this module makes.
pub(crate) const PREFIX: &str = "dmt";
/// Where the makers of testnets are recorded (cleared at boot, like namespaces).
const REGISTRY: &str = "/run/datamesh-testnet";
/// The file in a testnet folder that makes it a testnet of hosts.
pub(crate) const STATE_FILE: &str = "hosts.json";
/// Most hosts (the last octet of their address).
pub const MAX_HOSTS: usize = 250;

/// The hosts of one testnet: its id and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hosts {
    id: String,
    count: usize,
    /// The hosts behind NAT routers, sorted.
    nat: Vec<usize>,
}

/// The nft script of a NAT router, a home router's defaults: masquerade what leaves by
/// `wan` (Linux keeps the host's source port when it is free), and let in from outside
/// only replies and what relates to them, both to the host (`forward`) and to the router
/// itself (`input`: nothing unsolicited reaches its own stack, which would answer a
/// stray SYN with a reset, and a stray UDP datagram with an ICMP error and a conntrack
/// entry that takes the very mapping a hole punch then needs; see the module docs).
const NAT_RULES: &str = "add table ip dm_nat\ndelete table ip dm_nat\ntable ip dm_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" masquerade
  }
  chain input {
    type filter hook input priority 0; policy drop;
    iifname \"lo\" accept
    iifname \"lan\" accept
    ct state established,related accept
    counter
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
    counter
  }
}
";

impl Hosts {
    /// `count` hosts under a new random id.
    pub(crate) fn new(count: usize) -> Result<Self> {
        if count == 0 || count > MAX_HOSTS {
            return Err(Error::Invalid {
                what: "the number of hosts".into(),
                reason: format!("{count} is not in 1..={MAX_HOSTS}"),
            });
        }
        let mut bytes = [0u8; 3];
        OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            id: format!("{PREFIX}{}", &hex[..5]),
            count,
            nat: Vec::new(),
        })
    }

    /// These hosts behind NAT routers (never host 0, through which the others join).
    pub(crate) fn with_nat(mut self, nat: &[usize]) -> Result<Self> {
        let mut nat = nat.to_vec();
        nat.sort_unstable();
        nat.dedup();
        if let Some(&bad) = nat.iter().find(|&&h| h == 0 || h >= self.count) {
            return Err(Error::Invalid {
                what: "the hosts behind NAT".into(),
                reason: format!("host {bad} is not in 1..{}", self.count),
            });
        }
        self.nat = nat;
        Ok(self)
    }

    /// Whether host `h` is behind a NAT router.
    pub(crate) fn is_natted(&self, h: usize) -> bool {
        self.nat.contains(&h)
    }

    /// The namespace of the NAT router of host `h`.
    pub(crate) fn router(&self, h: usize) -> String {
        format!("{}-n{h}", self.id)
    }

    /// The address of host `h` behind its NAT router.
    fn private_address(h: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, u8::try_from(h).unwrap_or(u8::MAX), 0, 2)
    }

    /// The hosts recorded in testnet folder `dir`, if it is a testnet of hosts.
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
        };
        let invalid = |reason: &str| Error::Invalid {
            what: path.display().to_string(),
            reason: reason.to_string(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(&e.to_string()))?;
        let id = value["id"].as_str().ok_or_else(|| invalid("no id"))?;
        let count = value["hosts"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_HOSTS).contains(n))
            .ok_or_else(|| invalid("no valid number of hosts"))?;
        if !is_id(id) {
            return Err(invalid("the id is not dmt and 5 hex digits"));
        }
        let nat: Vec<usize> = match value.get("nat") {
            None => Vec::new(),
            Some(list) => list
                .as_array()
                .filter(|l| l.len() <= MAX_HOSTS)
                .and_then(|l| {
                    l.iter()
                        .map(|n| n.as_u64().and_then(|n| usize::try_from(n).ok()))
                        .collect()
                })
                .ok_or_else(|| invalid("nat is not a list of host numbers"))?,
        };
        Self {
            id: id.to_string(),
            count,
            nat: Vec::new(),
        }
        .with_nat(&nat)
        .map(Some)
        .map_err(|_| invalid("nat names a host that cannot be behind NAT"))
    }

    /// Writes `dir/hosts.json`.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let json = serde_json::json!({ "id": self.id, "hosts": self.count, "nat": self.nat });
        fs::write(&path, format!("{json}\n"))
            .map_err(io_err(format!("cannot write {}", path.display())))
    }

    /// How many hosts.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The namespace of host `h`.
    pub(crate) fn namespace(&self, h: usize) -> String {
        format!("{}-h{h}", self.id)
    }

    /// The address of host `h`.
    pub(crate) fn address(h: usize) -> Ipv4Addr {
        let last = u8::try_from(h + 1).unwrap_or(u8::MAX);
        Ipv4Addr::new(198, 18, 0, last)
    }

    fn bridge(&self) -> String {
        format!("{}-br", self.id)
    }

    fn registry_file(&self) -> PathBuf {
        Path::new(REGISTRY).join(&self.id)
    }

    /// Deletes the leftovers of dead testnets and of this one, then makes the bridge
    /// and every host.
    pub(crate) fn create(&self) -> Result<()> {
        netns::require_root("a testnet of separate hosts (--hosts)")?;
        remove_dead_leftovers()?;
        self.remove()?;
        self.ensure()
    }

    /// Makes whatever of the bridge and the hosts is missing (after a crash, or after
    /// another testnet's `up` took this one's network for a leftover while all its nodes
    /// were down).
    pub(crate) fn ensure(&self) -> Result<()> {
        netns::require_root("a testnet of separate hosts (--hosts)")?;
        fs::create_dir_all(REGISTRY).map_err(io_err(format!("cannot create {REGISTRY}")))?;
        let registry = self.registry_file();
        fs::write(&registry, format!("{}\n", std::process::id()))
            .map_err(io_err(format!("cannot write {}", registry.display())))?;
        let existing_links = links()?;
        let existing_ns = namespaces()?;
        let bridge = self.bridge();
        if !existing_links.contains(&bridge) {
            ip(&["link", "add", &bridge, "type", "bridge"])?;
        }
        ip(&["link", "set", &bridge, "up"])?;
        for h in 0..self.count {
            let ns = self.namespace(h);
            if !existing_ns.contains(&ns) {
                ip(&["netns", "add", &ns])?;
            }
            if self.is_natted(h) {
                self.ensure_router(h, &bridge)?;
            } else if !links()?.contains(&ns) {
                // The veth's bridge end is named after the namespace; its other end is
                // eth0 inside it.
                ip(&[
                    "link", "add", &ns, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ])?;
                ip(&["link", "set", &ns, "master", &bridge, "up"])?;
                let cidr = format!("{}/16", Self::address(h));
                ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            }
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            if self.is_natted(h) {
                let gateway = Ipv4Addr::new(10, u8::try_from(h).unwrap_or(u8::MAX), 0, 1);
                ip(&[
                    "-n",
                    &ns,
                    "route",
                    "replace",
                    "default",
                    "via",
                    &gateway.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    /// Makes whatever is missing of host `h`'s NAT router: its namespace, its `wan` on
    /// the bridge at the host's public address, its `lan` to the host, forwarding and the
    /// masquerade rules.
    fn ensure_router(&self, h: usize, bridge: &str) -> Result<()> {
        let (router, ns) = (self.router(h), self.namespace(h));
        if !namespaces()?.contains(&router) {
            ip(&["netns", "add", &router])?;
        }
        if !links()?.contains(&router) {
            ip(&[
                "link", "add", &router, "type", "veth", "peer", "name", "wan", "netns", &router,
            ])?;
            ip(&["link", "set", &router, "master", bridge, "up"])?;
            let cidr = format!("{}/16", Self::address(h));
            ip(&["-n", &router, "addr", "add", &cidr, "dev", "wan"])?;
        }
        let has_lan = ip(&["-n", &router, "-o", "link", "show"])?.contains(" lan@");
        if !has_lan {
            ip(&[
                "-n", &router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            let gateway = format!("10.{h}.0.1/24");
            ip(&["-n", &router, "addr", "add", &gateway, "dev", "lan"])?;
            let cidr = format!("{}/24", Self::private_address(h));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
        }
        for link in ["lo", "wan", "lan"] {
            ip(&["-n", &router, "link", "set", link, "up"])?;
        }
        crate::netns::exec_in(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        crate::netns::nft_in(&router, NAT_RULES)
    }

    /// Deletes every namespace and link of this testnet (their filters and qdiscs go
    /// with them) and its registry entry. Idempotent.
    pub(crate) fn remove(&self) -> Result<()> {
        remove_id(&self.id)
    }
}

/// Whether `name` is a testnet id: `dmt` and 5 lowercase hex digits.
fn is_id(name: &str) -> bool {
    name.len() == PREFIX.len() + 5
        && name.starts_with(PREFIX)
        && name[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The testnet id a namespace or link name belongs to.
fn id_of(name: &str) -> Option<&str> {
    let (id, rest) = name.split_once('-')?;
    let numbered = |p: char| {
        rest.strip_prefix(p)
            .is_some_and(|n| n.parse::<usize>().is_ok())
    };
    (is_id(id) && (rest == "br" || numbered('h') || numbered('n'))).then_some(id)
}

/// Deletes the namespaces and links of `id`, and its registry entry.
fn remove_id(id: &str) -> Result<()> {
    for ns in namespaces()? {
        if id_of(&ns) == Some(id) {
            ip(&["netns", "del", &ns])?;
        }
    }
    for link in links()? {
        if id_of(&link) == Some(id) {
            match ip(&["link", "del", &link]) {
                // A veth end goes with its namespace, a moment after `netns del`.
                Err(Error::Command { stderr, .. }) if stderr.contains("Cannot find device") => {}
                other => other.map(drop)?,
            }
        }
    }
    match fs::remove_file(Path::new(REGISTRY).join(id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err(format!("cannot remove {REGISTRY}/{id}"))(e))
        }
        _ => Ok(()),
    }
}

/// Deletes the namespaces and links of every testnet whose maker has exited and whose
/// namespaces hold no process. Returns the ids removed.
pub(crate) fn remove_dead_leftovers() -> Result<Vec<String>> {
    let names: Vec<String> = namespaces()?.into_iter().chain(links()?).collect();
    let mut ids: Vec<&str> = names.iter().filter_map(|n| id_of(n)).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut removed = Vec::new();
    for id in ids {
        let maker = fs::read_to_string(Path::new(REGISTRY).join(id))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        if maker.is_some_and(pid_alive) {
            continue;
        }
        let mut busy = false;
        for ns in names.iter().filter(|n| id_of(n) == Some(id)) {
            if namespaces()?.contains(ns) && !pids_in(ns)?.is_empty() {
                busy = true;
            }
        }
        // Another process may be removing the same leftovers: a failure here is not
        // this testnet's.
        if !busy && remove_id(id).is_ok() {
            removed.push(id.to_string());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn names_and_addresses() -> TestResult {
        let hosts = Hosts::new(3)?;
        assert!(is_id(&hosts.id), "{}", hosts.id);
        assert_eq!(hosts.namespace(2), format!("{}-h2", hosts.id));
        assert!(
            hosts.namespace(MAX_HOSTS - 1).len() <= 15,
            "a link name fits IFNAMSIZ"
        );
        assert_eq!(Hosts::address(0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(id_of(&hosts.bridge()), Some(hosts.id.as_str()));
        assert_eq!(id_of(&hosts.namespace(7)), Some(hosts.id.as_str()));
        assert_eq!(id_of(&hosts.router(7)), Some(hosts.id.as_str()));
        assert_eq!(Hosts::private_address(7), Ipv4Addr::new(10, 7, 0, 2));
        assert!(hosts.clone().with_nat(&[0]).is_err() && hosts.clone().with_nat(&[3]).is_err());
        let natted = hosts.clone().with_nat(&[2, 1, 2])?;
        assert!(natted.is_natted(1) && natted.is_natted(2) && !natted.is_natted(0));
        for other in [
            "dmt12345-x",
            "dmtzzzzz-h1",
            "eth0",
            "dmt1234-h1",
            "dmt12345-h",
        ] {
            assert_eq!(id_of(other), None, "{other}");
        }
        assert!(Hosts::new(0).is_err() && Hosts::new(MAX_HOSTS + 1).is_err());
        Ok(())
    }

    #[test]
    fn the_state_file_round_trips_and_is_checked() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert_eq!(Hosts::load(dir.path())?, None);
        let hosts = Hosts::new(4)?;
        hosts.save(dir.path())?;
        assert_eq!(Hosts::load(dir.path())?, Some(hosts.clone()));
        let natted = hosts.with_nat(&[3])?;
        natted.save(dir.path())?;
        assert_eq!(Hosts::load(dir.path())?, Some(natted));
        // A file of a testnet made before NAT (no "nat") still loads.
        fs::write(
            dir.path().join(STATE_FILE),
            r#"{"id":"dmt12345","hosts":2}"#,
        )?;
        assert!(Hosts::load(dir.path())?.is_some());
        for bad in [
            "{}",
            r#"{"id":"eth0","hosts":2}"#,
            r#"{"id":"dmt12345","hosts":0}"#,
            r#"{"id":"dmt12345","hosts":2,"nat":[0]}"#,
            r#"{"id":"dmt12345","hosts":2,"nat":"x"}"#,
            "nope",
        ] {
            fs::write(dir.path().join(STATE_FILE), bad)?;
            assert!(
                matches!(Hosts::load(dir.path()), Err(Error::Invalid { .. })),
                "{bad}"
            );
        }
        Ok(())
    }
}
