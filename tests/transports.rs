//! Transports (issue 17): a testnet of real node processes on 127.0.0.1 over QUIC only,
//! and over TCP and QUIC together: put/get across them, and the addresses the nodes
//! advertise to each other are of the chosen transports only. No root needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use datamesh_testnet::Testnet;
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, run_within, serial};
use serde_json::Value;

mod support;

/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

/// A testnet of six nodes over `transports`, each listening on addresses that `listens`
/// accepts (as its `node.json` says).
fn testnet_over(
    scratch: &Path,
    transports: &str,
    listens: impl Fn(&[String]) -> bool,
) -> anyhow::Result<Testnet> {
    let net = support::testnet(scratch.join("net"), 6, |c| c.with_transports(transports))
        .with_context(|| format!("cannot start a testnet over {transports}"))?;
    for i in 0..net.len() {
        let run = net.run_file(i)?.context("no node.json")?;
        ensure!(listens(&run.listen), "node {i} listens on {:?}", run.listen);
    }
    Ok(net)
}

/// Every node's peers, each known only at addresses accepted by `ok` (as the routing
/// table keeps them, with a `/p2p/<peer id>` suffix); the number of peers each node knows.
fn check_peer_addresses(
    net: &Testnet,
    scratch: &Path,
    ok: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let nodes = net.len();
    let ids: BTreeMap<String, usize> = (0..nodes)
        .map(|i| Ok((net.peer_id(i)?, i)))
        .collect::<anyhow::Result<_>>()?;
    for i in 0..nodes {
        let mut cmd = net.cli(i);
        cmd.args(["--json", "peers"]);
        let list: Value = serde_json::from_slice(&run(cmd, scratch)?.ok("peers")?)?;
        let list = list.as_array().context("peers: not a list")?;
        ensure!(
            list.len() == nodes - 1,
            "node {i} knows {} peers",
            list.len()
        );
        for peer in list {
            let j = ids[peer["peer_id"].as_str().context("no peer id")?];
            let addresses = peer["addresses"].as_array().context("no addresses")?;
            ensure!(
                !addresses.is_empty(),
                "node {i} knows node {j} at no address"
            );
            for addr in addresses {
                let addr = addr.as_str().unwrap_or_default();
                ensure!(ok(addr), "node {i} knows node {j} at {addr}");
            }
        }
    }
    Ok(())
}

/// Puts a file through node 0 shared with node `to`, gets it back there, compares.
fn put_and_get(net: &Testnet, scratch: &Path, to: usize, seed: u64) -> anyhow::Result<()> {
    let mut export = net.cli(to);
    export
        .args(["keys", "export-public", "--password-file"])
        .arg(net.password_file(to));
    let key = String::from_utf8(run(export, scratch)?.ok("export-public")?)?;
    let input = make_file(scratch, 3 * MIB, seed)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&input).args(["--to", key.trim()]);
    let file = String::from_utf8(run(put, scratch)?.ok("put")?)?;
    let out = scratch.join(format!("copy-{seed}"));
    let mut get = net.cli(to);
    get.args(["get", file.trim(), "-o"]).arg(&out);
    run(get, scratch)?.ok("get")?;
    assert_same_file(&input, &out)?;
    Ok(())
}

#[test]
fn a_quic_only_testnet_puts_and_gets_and_advertises_only_quic() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet_over(scratch, "quic", |listen| {
        !listen.is_empty()
            && listen
                .iter()
                .all(|a| a.contains("/udp/") && a.contains("/quic-v1/"))
    })?;
    check_peer_addresses(&net, scratch, |a| {
        a.starts_with("/ip4/127.0.0.1/udp/") && a.contains("/quic-v1")
    })?;
    put_and_get(&net, scratch, 5, 1701)
}

#[test]
fn tcp_and_quic_together_listen_and_advertise_both() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet_over(scratch, "tcp,quic", |listen| {
        let tcp = listen.iter().filter(|a| a.contains("/tcp/")).count();
        let quic = listen.iter().filter(|a| a.contains("/quic-v1/")).count();
        tcp == 1 && quic == 1
    })?;
    check_peer_addresses(&net, scratch, |a| {
        a.starts_with("/ip4/127.0.0.1/") && (a.contains("/tcp/") || a.contains("/quic-v1"))
    })?;
    // Each node knows each other at both.
    let mut cmd = net.cli(0);
    cmd.args(["--json", "peers"]);
    let list: Value = serde_json::from_slice(&run(cmd, scratch)?.ok("peers")?)?;
    for peer in list.as_array().context("peers: not a list")? {
        let addrs: Vec<&str> = peer["addresses"]
            .as_array()
            .context("no addresses")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        ensure!(
            addrs.iter().any(|a| a.contains("/tcp/"))
                && addrs.iter().any(|a| a.contains("/quic-v1")),
            "node 0 knows {} at {addrs:?}",
            peer["peer_id"]
        );
    }
    put_and_get(&net, scratch, 3, 1702)
}

#[test]
fn an_unknown_transport_is_refused_in_one_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = support::testnet(scratch.join("net"), 1, |c| c)?;
    let home = net.home(0);
    drop(net);
    let mut cmd = support::datamesh(&home);
    cmd.args(["node", "run", "--transport", "udp", "--password-file"])
        .arg(home.join("password"));
    let line = run(cmd, scratch)?.fails_with(1, "node run --transport udp")?;
    ensure!(line.contains("unknown transport \"udp\""), "{line}");
    Ok(())
}
