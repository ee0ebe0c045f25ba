//! Faults made by the kernel between the hosts of a testnet of separate hosts
//! ([`Config::with_hosts`](crate::Config::with_hosts)): packet filters (`nft`) inside the
//! hosts' namespaces that silently drop packets (a partition, one way or both, or a share
//! of random loss), a rate limit (`tc tbf`) on a host's link, and a host's link taken
//! down. The nodes see only missing packets, never a refusal: connections hang until
//! their timeouts, as on a real network. Every filter and qdisc lives inside a
//! namespace, so removing the hosts removes them.
//!
//! The filters are nftables tables of their own in each host: `inet dm_partition`
//! (replaced whole by every partition call, emptied by [`Testnet::heal_hosts`]) and
//! `inet dm_loss`. Each drop rule counts what it dropped
//! ([`Testnet::dropped_packets`]), so a test can show the fault was met.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::net::Testnet;
use crate::netns::{exec_in, ip, nft_in};

/// The nftables table of partitions.
const PARTITION_TABLE: &str = "dm_partition";
/// The nftables table of packet loss.
const LOSS_TABLE: &str = "dm_loss";

/// What one host drops: packets arriving from, and leaving for, these addresses.
#[derive(Debug, Default)]
struct Drops {
    from: BTreeSet<Ipv4Addr>,
    to: BTreeSet<Ipv4Addr>,
}

/// An nft script that replaces table `name` by one with the given rules in its input
/// and output chains (an `add` first, so the `delete` never fails).
fn table_script(name: &str, input: &[String], output: &[String]) -> String {
    let chain = |hook: &str, rules: &[String]| {
        let mut text =
            format!("  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n");
        for rule in rules {
            text.push_str(&format!("    {rule}\n"));
        }
        text.push_str("  }\n");
        text
    };
    format!(
        "add table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n{}{}}}\n",
        chain("input", input),
        chain("output", output)
    )
}

fn set(addresses: &BTreeSet<Ipv4Addr>) -> String {
    let list: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

/// The `tbf` rate and burst for `rate` bit/s: a burst of at least one jiffy's worth of
/// bytes at the rate (and 64 KiB); the queue is 50 ms.
fn tbf(rate: u64) -> (String, String) {
    let burst = (rate / 8 / 100).max(64 * 1024);
    (format!("{rate}bit"), burst.to_string())
}

impl Testnet {
    /// The namespace of node `i`'s host, or [`Error::Invalid`] on a testnet without hosts.
    fn host_namespace(&self, i: usize) -> Result<String> {
        if i >= self.len() {
            return Err(Error::NoSuchNode {
                index: i,
                nodes: self.len(),
            });
        }
        self.namespace_of(i).ok_or_else(|| Error::Invalid {
            what: "a kernel-level fault".into(),
            reason: "the testnet has no separate hosts (Config::with_hosts)".into(),
        })
    }

    /// A partition made by the kernel: the hosts of the nodes of each group drop every
    /// packet from and to the hosts of every other group (silently: no reset, no
    /// refusal). Replaces any earlier partition; hosts in no group drop nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the testnet has no hosts, or when one host's nodes are in
    /// two groups; [`Error::Command`] when `nft` fails.
    pub fn partition_hosts(&self, groups: &[&[usize]]) -> Result<()> {
        let mut group_of = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            for &i in *group {
                self.host_namespace(i)?;
                let host = self.host_of(i).unwrap_or_default();
                if let Some(other) = group_of.insert(host, g)
                    && other != g
                {
                    return Err(Error::Invalid {
                        what: "partition groups".into(),
                        reason: format!("host {host} (of node {i}) is in groups {other} and {g}"),
                    });
                }
            }
        }
        let mut drops: BTreeMap<usize, Drops> = BTreeMap::new();
        for (&a, &ga) in &group_of {
            for (&b, &gb) in &group_of {
                if ga != gb {
                    let entry = drops.entry(a).or_default();
                    entry.from.insert(crate::hosts::Hosts::address(b));
                    entry.to.insert(crate::hosts::Hosts::address(b));
                }
            }
        }
        self.apply_partition(&drops)
    }

    /// A one-way cut made by the kernel: every packet from the hosts of nodes `from` to
    /// the hosts of nodes `to` is dropped as it leaves; packets the other way pass.
    /// Replaces any earlier partition.
    ///
    /// # Errors
    /// As [`partition_hosts`](Self::partition_hosts).
    pub fn cut_one_way(&self, from: &[usize], to: &[usize]) -> Result<()> {
        let mut drops: BTreeMap<usize, Drops> = BTreeMap::new();
        let mut targets = BTreeSet::new();
        for &j in to {
            self.host_namespace(j)?;
            targets.insert(self.address_of(j).unwrap_or(Ipv4Addr::UNSPECIFIED));
        }
        for &i in from {
            self.host_namespace(i)?;
            let host = self.host_of(i).unwrap_or_default();
            let own = crate::hosts::Hosts::address(host);
            if targets.contains(&own) {
                return Err(Error::Invalid {
                    what: "a one-way cut".into(),
                    reason: format!("host {host} (of node {i}) is on both sides"),
                });
            }
            drops.entry(host).or_default().to.extend(targets.iter());
        }
        self.apply_partition(&drops)
    }

    /// Writes the partition table of every host (empty where `drops` has nothing).
    fn apply_partition(&self, drops: &BTreeMap<usize, Drops>) -> Result<()> {
        let none = Drops::default();
        for host in 0..self.hosts().unwrap_or(0) {
            let ns = self.host_namespace(host)?;
            let d = drops.get(&host).unwrap_or(&none);
            let input: Vec<String> = (!d.from.is_empty())
                .then(|| format!("ip saddr {} counter drop", set(&d.from)))
                .into_iter()
                .collect();
            let output: Vec<String> = (!d.to.is_empty())
                .then(|| format!("ip daddr {} counter drop", set(&d.to)))
                .into_iter()
                .collect();
            nft_in(&ns, &table_script(PARTITION_TABLE, &input, &output))?;
        }
        Ok(())
    }

    /// Ends a [`partition_hosts`](Self::partition_hosts) or
    /// [`cut_one_way`](Self::cut_one_way): no host drops packets of another any more.
    /// Connections that timed out meanwhile are dialled again when needed.
    ///
    /// # Errors
    /// [`Error::Invalid`] on a testnet without hosts; [`Error::Command`].
    pub fn heal_hosts(&self) -> Result<()> {
        self.apply_partition(&BTreeMap::new())
    }

    /// The host of node `i` drops `percent` % of the packets it receives, at random
    /// (nft `numgen random`); 0 ends the loss.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `percent` is over 100 or the testnet has no hosts;
    /// [`Error::Command`].
    pub fn set_packet_loss(&self, i: usize, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(Error::Invalid {
                what: "packet loss".into(),
                reason: format!("{percent} % is more than 100"),
            });
        }
        let ns = self.host_namespace(i)?;
        let input: Vec<String> = (percent > 0)
            .then(|| format!("iifname \"eth0\" numgen random mod 100 < {percent} counter drop"))
            .into_iter()
            .collect();
        nft_in(&ns, &table_script(LOSS_TABLE, &input, &[]))
    }

    /// Packets dropped so far by the kernel-level faults on node `i`'s host (the
    /// counters of its partition and loss rules).
    ///
    /// # Errors
    /// [`Error::Invalid`] on a testnet without hosts; [`Error::Command`].
    pub fn dropped_packets(&self, i: usize) -> Result<u64> {
        let ns = self.host_namespace(i)?;
        let mut total = 0;
        for table in [PARTITION_TABLE, LOSS_TABLE] {
            let Ok(text) = exec_in(&ns, "nft", &["list", "table", "inet", table]) else {
                continue; // never made
            };
            // `counter packets N bytes M drop`
            let words: Vec<&str> = text.split_whitespace().collect();
            for pair in words.windows(2) {
                if pair[0] == "packets" {
                    total += pair[1].parse::<u64>().unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    /// Limits what node `i`'s host sends to `bits_per_second` (`tc qdisc ... tbf` on its
    /// link); `None` removes the limit.
    ///
    /// # Errors
    /// [`Error::Invalid`] on a testnet without hosts or a rate of 0; [`Error::Command`].
    pub fn limit_rate(&self, i: usize, bits_per_second: Option<u64>) -> Result<()> {
        let ns = self.host_namespace(i)?;
        let Some(rate) = bits_per_second else {
            // Deleting a qdisc that is not there fails: ignore it, the link is unlimited.
            let _ = ip(&[
                "netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root",
            ]);
            return Ok(());
        };
        if rate == 0 {
            return Err(Error::Invalid {
                what: "a rate limit".into(),
                reason: "0 bit/s".into(),
            });
        }
        let (rate, burst) = tbf(rate);
        exec_in(
            &ns,
            "tc",
            &[
                "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", &burst,
                "latency", "50ms",
            ],
        )
        .map(drop)
    }

    /// Limits node `i`'s host's link to `bits_per_second` both ways, like a network card
    /// of that speed: what the host sends (its `eth0`) and what the bridge sends to it
    /// (the bridge end of its veth, or its NAT router's). `None` removes both limits.
    ///
    /// # Errors
    /// As [`limit_rate`](Self::limit_rate).
    pub fn limit_link(&self, i: usize, bits_per_second: Option<u64>) -> Result<()> {
        self.limit_rate(i, bits_per_second)?;
        let host = self.host_of(i).unwrap_or_default();
        let port = self.bridge_port(host).ok_or_else(|| Error::Invalid {
            what: "a link limit".into(),
            reason: "the testnet has no separate hosts".into(),
        })?;
        match bits_per_second {
            None => {
                let _ = ip(&["link", "show", &port])
                    .and_then(|_| crate::netns::run_tc(&["qdisc", "del", "dev", &port, "root"]));
                Ok(())
            }
            Some(rate) => {
                let (rate, burst) = tbf(rate);
                crate::netns::run_tc(&[
                    "qdisc", "replace", "dev", &port, "root", "tbf", "rate", &rate, "burst",
                    &burst, "latency", "50ms",
                ])
                .map(drop)
            }
        }
    }

    /// Bytes node `i`'s host has sent through its rate limit (`tc -s qdisc`), 0 when it
    /// has none.
    ///
    /// # Errors
    /// [`Error::Invalid`] on a testnet without hosts; [`Error::Command`].
    pub fn limited_bytes_sent(&self, i: usize) -> Result<u64> {
        let ns = self.host_namespace(i)?;
        let text = exec_in(&ns, "tc", &["-s", "qdisc", "show", "dev", "eth0"])?;
        let Some(tbf) = text.split("qdisc ").find(|q| q.starts_with("tbf")) else {
            return Ok(0);
        };
        // ` Sent N bytes M pkt ...`
        let words: Vec<&str> = tbf.split_whitespace().collect();
        Ok(words
            .windows(2)
            .find(|w| w[0] == "Sent")
            .and_then(|w| w[1].parse().ok())
            .unwrap_or(0))
    }

    /// Takes node `i`'s host's link down (`false`) or up again (`true`): a host cut off
    /// the network, its processes still running.
    ///
    /// # Errors
    /// [`Error::Invalid`] on a testnet without hosts; [`Error::Command`].
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        let ns = self.host_namespace(i)?;
        let state = if up { "up" } else { "down" };
        ip(&["-n", &ns, "link", "set", "eth0", state]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nft_script_replaces_its_table() {
        let from: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)]
            .into_iter()
            .collect();
        let script = table_script(
            "dm_partition",
            &[format!("ip saddr {} counter drop", set(&from))],
            &[],
        );
        assert!(script.starts_with(
            "add table inet dm_partition\ndelete table inet dm_partition\ntable inet dm_partition {"
        ));
        assert!(script.contains("ip saddr { 198.18.0.2, 198.18.0.3 } counter drop"));
        assert!(script.contains(
            "chain output {\n    type filter hook output priority 0; policy accept;\n  }"
        ));
    }

    #[test]
    fn kernel_faults_need_hosts() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("node-0"))?;
        let net = Testnet::attach(std::path::Path::new("datamesh"), dir.path())?;
        assert!(matches!(
            net.partition_hosts(&[&[0]]),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(net.set_link(0, false), Err(Error::Invalid { .. })));
        assert!(matches!(
            net.set_packet_loss(3, 5),
            Err(Error::NoSuchNode { .. })
        ));
        Ok(())
    }
}
