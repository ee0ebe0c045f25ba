//! A testnet of separate hosts (issue 17): every node in a network namespace of its own,
//! with its own address on a bridge, like machines on one switch; some hosts behind NAT
//! routers (relay and hole punching). Needs root (every test
//! says so and fails otherwise); every namespace, link and rule a test makes is removed
//! when its testnet is dropped, also on failure, and a killed run's leftovers by the next
//! `up`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use datamesh_testnet::Testnet;
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, run_within, serial};
use serde_json::Value;

mod support;
use support::{bin, require_root};

/// A line for the test's log (shown with --nocapture).
macro_rules! note {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)]
        {
            eprintln!($($arg)*);
        }
    }};
}

/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

/// The network namespaces and links whose names start with `id`.
fn leftovers(id: &str) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for args in [&["netns", "list"][..], &["-o", "link", "show"][..]] {
        let out = Command::new("ip").args(args).output()?;
        ensure!(out.status.success(), "ip {args:?} failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line
                .split_whitespace()
                .find(|w| w.trim_end_matches(':').starts_with(id))
            {
                found.push(name.trim_end_matches(':').to_string());
            }
        }
    }
    Ok(found)
}

/// The testnet id of a namespace name (`dmt12345-h0` -> `dmt12345`).
fn id_of(namespace: &str) -> &str {
    namespace.split('-').next().unwrap_or(namespace)
}

#[test]
fn six_hosts_put_and_get_across_hosts_advertise_no_loopback_and_leave_nothing() -> anyhow::Result<()>
{
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = support::testnet(scratch.join("net"), 6, |c| c.with_hosts(6))
        .context("cannot start a testnet of 6 hosts")?;
    let ns = net.namespace_of(0).context("no namespace")?;
    let id = id_of(&ns).to_string();
    let mut hosts: Vec<String> = (0..6).filter_map(|i| net.namespace_of(i)).collect();
    hosts.dedup();
    ensure!(hosts.len() == 6, "six nodes on {hosts:?}");

    // Every node knows the five others, each only at its host's address: no 127.x is
    // advertised to a peer on another host.
    let addresses: BTreeMap<String, usize> = (0..6)
        .map(|i| Ok((net.peer_id(i)?, i)))
        .collect::<anyhow::Result<_>>()?;
    for i in 0..6 {
        let mut cmd = net.cli(i);
        cmd.args(["--json", "peers"]);
        let list: Value = serde_json::from_slice(&run(cmd, scratch)?.ok("peers")?)?;
        let list = list.as_array().context("peers: not a list")?;
        ensure!(list.len() == 5, "node {i} knows {} peers", list.len());
        for peer in list {
            let j = addresses[peer["peer_id"].as_str().context("no peer id")?];
            let host = net.address_of(j).context("no address")?;
            for addr in peer["addresses"].as_array().context("no addresses")? {
                let addr = addr.as_str().unwrap_or_default();
                ensure!(
                    addr.starts_with(&format!("/ip4/{host}/")),
                    "node {i} knows node {j} at {addr}, not at its host {host}"
                );
            }
        }
    }

    // A file put on host 0 reads back byte-identical on host 5 (shared with it).
    let mut export = net.cli(5);
    export
        .args(["keys", "export-public", "--password-file"])
        .arg(net.password_file(5));
    let key = String::from_utf8(run(export, scratch)?.ok("export-public")?)?;
    let input = make_file(scratch, 3 * MIB, 17)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&input).args(["--to", key.trim()]);
    let file = String::from_utf8(run(put, scratch)?.ok("put on host 0")?)?;
    let out = scratch.join("copy");
    let mut get = net.cli(5);
    get.args(["get", file.trim(), "-o"]).arg(&out);
    run(get, scratch)?.ok("get on host 5")?;
    assert_same_file(&input, &out)?;

    ensure!(
        !leftovers(&id)?.is_empty(),
        "the hosts of {id} are not there"
    );
    drop(net);
    let left = leftovers(&id)?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

#[test]
fn the_leftovers_of_a_killed_run_are_removed_by_the_next_up() -> anyhow::Result<()> {
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    // A run that is killed: `datamesh testnet up --hosts 2` leaves its nodes running;
    // SIGKILL them and the CLI is long gone, so nothing removes the namespaces.
    let first = scratch.join("first");
    let mut up = Command::new(bin()?);
    up.args(["testnet", "up", "--hosts", "2", "--dir"])
        .arg(&first);
    run(up, scratch)?.ok("testnet up --hosts 2")?;
    let mut killed = Testnet::attach(bin()?, &first)?;
    let id = id_of(&killed.namespace_of(0).context("no namespace")?).to_string();
    for i in 0..killed.len() {
        killed.kill(i)?;
    }
    drop(killed); // attached: leaves the hosts as they are
    ensure!(leftovers(&id)?.len() >= 5, "{:?}", leftovers(&id)?); // 2 ns, 2 veth, bridge

    // The next up, of another testnet, removes them.
    let second = support::testnet(scratch.join("second"), 1, |c| c.with_hosts(1))?;
    let left = leftovers(&id)?;
    ensure!(left.is_empty(), "a killed run left {left:?}");
    let own = id_of(&second.namespace_of(0).context("no namespace")?).to_string();
    drop(second);
    ensure!(leftovers(&own)?.is_empty());
    Ok(())
}

#[test]
fn the_cli_refuses_hosts_without_root_in_one_line() -> anyhow::Result<()> {
    require_root()?; // to become another user
    let dir = tempfile::tempdir()?;
    // `setpriv` keeps root's capabilities up to its exec only: a `datamesh` run so could
    // not reach `datamesh-full` in a folder only root may enter (the build's, or the
    // test's temporary one), so the program that refuses runs directly.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin()?.with_file_name("datamesh-full"))
        .args(["testnet", "up", "--hosts", "2", "--dir"])
        .arg(dir.path().join("net"));
    let line = run(cmd, dir.path())?.fails_with(1, "testnet up --hosts as nobody")?;
    ensure!(line.contains("needs root"), "{line}");
    Ok(())
}

#[test]
fn two_node_ids_on_one_host_never_hold_two_shards_of_a_stripe() -> anyhow::Result<()> {
    const NODES: usize = 12;
    const HOSTS: usize = 6;
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    // Node i on host i % 6: two node ids per host.
    let net = support::testnet(scratch.join("net"), NODES, |c| c.with_hosts(HOSTS))
        .context("cannot start 12 nodes on 6 hosts")?;
    let host_of_peer: BTreeMap<String, usize> = (0..NODES)
        .map(|i| Ok((net.peer_id(i)?, net.host_of(i).context("no host")?)))
        .collect::<anyhow::Result<_>>()?;
    for (via, seed) in [(0usize, 1740u64), (7, 1741)] {
        // Enough stripes that nearest-six by distance alone would put two shards on one
        // host somewhere (each stripe has about a 7 % chance of six hosts by luck).
        let input = make_file(scratch, 12 * MIB, seed)?;
        let mut put = net.cli(via);
        put.arg("put").arg(&input);
        let id = String::from_utf8(run(put, scratch)?.ok("put")?)?;
        let mut check = net.cli(via);
        check.args(["--json", "check", id.trim()]);
        let report: Value = serde_json::from_slice(&run(check, scratch)?.ok("check")?)?;
        let stripes = report["stripes"].as_array().context("no stripes")?;
        ensure!(stripes.len() >= 3, "{} stripes", stripes.len());
        for (s, stripe) in stripes.iter().enumerate() {
            let mut hosts = Vec::new();
            for list in stripe["holders"].as_array().context("no holders")? {
                let first = list
                    .as_array()
                    .and_then(|l| l.first())
                    .and_then(Value::as_str)
                    .context("a shard without a holder")?;
                hosts.push(host_of_peer[first]);
            }
            let mut distinct = hosts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            ensure!(
                distinct.len() == 6,
                "put through node {via}: stripe {s}'s shards on hosts {hosts:?}"
            );
        }
    }
    Ok(())
}

/// The value of metric `name` with labels `labels` (`{event="..."}`, or empty) in
/// Prometheus text; 0 when absent.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let key = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A NAT traversal count of node `i` (`datamesh_nat_events_total{event=...}`).
fn nat_count(net: &Testnet, i: usize, event: &str) -> anyhow::Result<u64> {
    let text = net.metrics(i)?;
    Ok(metric(
        &text,
        "datamesh_nat_events_total",
        &format!("{{event=\"{event}\"}}"),
    ) as u64)
}

/// The last lines of node `i`'s log about its reachability and relays, on one line (for
/// a failure message).
fn nat_log(net: &Testnet, i: usize) -> String {
    let text = std::fs::read_to_string(net.log_file(i)).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("reachability changed") || l.contains("relay") || l.contains("hole punch")
        })
        .filter(|l| !l.contains("DEBUG"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    format!("node {i}: {}", tail.join(" / "))
}

/// Nodes of the NAT cases, one per host.
const NODES: usize = 7;
/// The hosts behind NAT routers in the NAT cases.
const NATTED: [usize; 2] = [5, 6];

/// A testnet of [`NODES`] hosts over `transport`, [`NATTED`] behind NAT routers.
fn nat_testnet(scratch: &Path, transport: &str) -> anyhow::Result<Testnet> {
    support::testnet(scratch.join("net"), NODES, |c| {
        c.with_hosts(NODES)
            .with_nat(&NATTED)
            .with_transports(transport)
    })
    .with_context(|| format!("cannot start 7 hosts over {transport}, 2 of them behind NAT"))
}

/// Waits (at most 120 s) until each node of `natted` found itself private (AutoNAT),
/// holds a relay reservation and is known to every public node only through relay
/// circuits (never at its private 10.x address).
fn wait_until_reachable_through_relays(
    net: &Testnet,
    natted: &[usize],
    peer_ids: &[String],
    scratch: &Path,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = String::new();
    'wait: loop {
        if std::time::Instant::now() >= deadline {
            let logs: Vec<String> = natted.iter().map(|&i| nat_log(net, i)).collect();
            anyhow::bail!(
                "the nodes behind NAT never became reachable through a relay: {last}; their NAT log lines: {}",
                logs.join(" | ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        for &i in natted {
            let text = net.metrics(i)?;
            let reach = metric(&text, "datamesh_nat_reachability", "");
            if reach != 2.0 || nat_count(net, i, "reservation_accepted")? == 0 {
                last = format!("node {i}: reachability {reach}, no reservation yet");
                continue 'wait;
            }
        }
        for i in (0..net.len()).filter(|i| !natted.contains(i)) {
            let mut cmd = net.cli(i);
            cmd.args(["--json", "peers"]);
            let list: Value = serde_json::from_slice(&run(cmd, scratch)?.ok("peers")?)?;
            for &j in natted {
                let entry = list
                    .as_array()
                    .and_then(|l| l.iter().find(|p| p["peer_id"] == peer_ids[j].as_str()));
                let addrs: Vec<&str> = entry
                    .and_then(|p| p["addresses"].as_array())
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if addrs.is_empty() || !addrs.iter().all(|a| a.contains("/p2p-circuit")) {
                    last = format!("node {i} knows node {j} at {addrs:?}");
                    continue 'wait;
                }
            }
        }
        break;
    }
    Ok(())
}

#[test]
fn nodes_behind_nat_join_store_and_serve_through_a_relay_or_a_hole_punch() -> anyhow::Result<()> {
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = nat_testnet(scratch, "tcp")?;
    let id = id_of(&net.namespace_of(0).context("no namespace")?).to_string();
    for &i in &NATTED {
        ensure!(net.is_behind_nat(i), "node {i} is not behind NAT");
    }

    let peer_ids: Vec<String> = (0..NODES)
        .map(|i| net.peer_id(i))
        .collect::<Result<_, _>>()?;
    wait_until_reachable_through_relays(&net, &NATTED, &peer_ids, scratch)?;

    // A put through public node 0: with 5 public nodes and 6 shards a stripe, every
    // stripe has a shard on a node behind NAT. A verifying check fetches and hashes
    // every copy: the nodes behind NAT served theirs.
    let input = make_file(scratch, 8 * MIB, 1790)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&input);
    let file = String::from_utf8(run(put, scratch)?.ok("put through node 0")?)?;
    let mut check = net.cli(0);
    check.args(["--json", "check", file.trim(), "--verify"]);
    let outcome = run(check, scratch)?;
    let report: Value = serde_json::from_slice(&outcome.ok("check --verify")?)?;
    let stripes = report["stripes"].as_array().context("no stripes")?;
    ensure!(stripes.len() >= 2, "{} stripes", stripes.len());
    for (s, stripe) in stripes.iter().enumerate() {
        ensure!(stripe["healthy"] == 6, "stripe {s}: {stripe}");
        let holders: Vec<&str> = stripe["holders"]
            .as_array()
            .context("no holders")?
            .iter()
            .filter_map(|l| l.as_array()?.first()?.as_str())
            .collect();
        ensure!(
            NATTED
                .iter()
                .any(|&j| holders.contains(&peer_ids[j].as_str())),
            "stripe {s} has no verified copy behind NAT: {holders:?}"
        );
    }
    // And the file reads back.
    let out = scratch.join("copy");
    let mut get = net.cli(0);
    get.args(["get", file.trim(), "-o"]).arg(&out);
    run(get, scratch)?.ok("get through node 0")?;
    assert_same_file(&input, &out)?;

    // How the shard requests reached the nodes behind NAT.
    let (mut relayed, mut direct, mut punched, mut circuits) = (0, 0, 0, 0);
    for &i in &NATTED {
        relayed += nat_count(&net, i, "shard_request_relayed")?;
        direct += nat_count(&net, i, "shard_request_direct")?;
        punched += nat_count(&net, i, "hole_punch_succeeded")?;
        circuits += nat_count(&net, i, "relayed_connection")?;
    }
    let served: u64 = (0..NODES)
        .filter(|i| !NATTED.contains(i))
        .map(|i| nat_count(&net, i, "circuit_served"))
        .sum::<anyhow::Result<u64>>()?;
    note!(
        "behind NAT: {relayed} shard requests over relay circuits, {direct} over direct connections; \
         {circuits} relayed connections, {punched} hole punches (DCUtR) succeeded; public nodes relayed {served} circuits"
    );
    ensure!(
        relayed + direct > 0,
        "no shard request reached a node behind NAT"
    );
    // Whether shards then crossed a relay circuit or a connection the node behind NAT
    // opened itself to the public holder (the putter reuses it) depends on which
    // connection is up first: both are NAT traversal; the counts above say which.

    drop(net);
    let left = leftovers(&id)?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

/// The flows of `proto` (`udp`, `tcp`) that NAT router namespace `router` tracks from its
/// host (a 10.x source) to public address `to`, and that `to` answered: lines of the
/// router's `/proc/net/nf_conntrack` (the original direction's `src=`/`dst=` come first;
/// `[UNREPLIED]` marks a flow nothing came back on).
fn answered_flows(router: &str, proto: &str, to: Ipv4Addr) -> anyhow::Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "exec", router, "cat", "/proc/net/nf_conntrack"])
        .output()?;
    ensure!(
        out.status.success(),
        "cannot read the flows of {router}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let first = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(String::from)
    };
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(proto))
        .filter(|l| first(l, "src=").is_some_and(|s| s.starts_with("10.")))
        .filter(|l| first(l, "dst=").as_deref() == Some(to.to_string().as_str()))
        .filter(|l| !l.contains("[UNREPLIED]"))
        .map(String::from)
        .collect())
}

/// Two hosts behind NAT routers (`hosts.rs`: a home router's masquerade and firewall)
/// open a direct connection to each other: the relayed connection between them is
/// upgraded by DCUtR (a hole punch), and each router tracks a flow from its host
/// straight to the other router's public address that was answered, which only packets
/// sent directly between the two (never through a relay) make.
fn two_nodes_behind_nat_punch_a_hole(transport: &str, proto: &str) -> anyhow::Result<()> {
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = nat_testnet(scratch, transport)?;
    let id = id_of(&net.namespace_of(0).context("no namespace")?).to_string();
    let peer_ids: Vec<String> = (0..NODES)
        .map(|i| net.peer_id(i))
        .collect::<Result<_, _>>()?;
    wait_until_reachable_through_relays(&net, &NATTED, &peer_ids, scratch)?;

    // A put through each node behind NAT: its DHT lookup finds the other one at its relay
    // circuit and connects through the relay, which DCUtR then tries to upgrade.
    for (&via, seed) in NATTED.iter().zip([1791u64, 1792]) {
        let input = make_file(scratch, 4 * MIB, seed)?;
        let mut put = net.cli(via);
        put.arg("put").arg(&input);
        let file = String::from_utf8(run(put, scratch)?.ok("put behind NAT")?)?;
        let out = scratch.join(format!("copy-{via}"));
        let mut get = net.cli(via);
        get.args(["get", file.trim(), "-o"]).arg(&out);
        run(get, scratch)?.ok("get behind NAT")?;
        assert_same_file(&input, &out)?;
    }

    let (a, b) = (NATTED[0], NATTED[1]);
    let routers = [
        (net.router_of(a).context("no router")?, net.address_of(b)),
        (net.router_of(b).context("no router")?, net.address_of(a)),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let punched = nat_count(&net, a, "hole_punch_succeeded")?
            + nat_count(&net, b, "hole_punch_succeeded")?;
        let mut flows = Vec::new();
        for (router, to) in &routers {
            flows.push(answered_flows(router, proto, to.context("no address")?)?);
        }
        if punched > 0 && flows.iter().all(|f| !f.is_empty()) {
            let failed =
                nat_count(&net, a, "hole_punch_failed")? + nat_count(&net, b, "hole_punch_failed")?;
            note!(
                "{transport}: {punched} hole punches succeeded, {failed} failed; direct flows: {flows:?}"
            );
            break;
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "no hole punch over {transport} between the nodes behind NAT: {punched} succeeded \
                 (DCUtR), answered direct flows {flows:?}; {} | {}",
                nat_log(&net, a),
                nat_log(&net, b)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    drop(net);
    let left = leftovers(&id)?;
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

#[test]
fn two_nodes_behind_nat_routers_punch_a_hole_to_each_other_over_quic() -> anyhow::Result<()> {
    two_nodes_behind_nat_punch_a_hole("quic", "udp")
}

#[test]
fn two_nodes_behind_nat_routers_punch_a_hole_to_each_other_over_tcp() -> anyhow::Result<()> {
    two_nodes_behind_nat_punch_a_hole("tcp", "tcp")
}
