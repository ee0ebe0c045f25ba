//! Kernel-level faults on a testnet of separate hosts (network namespaces, issue 17):
//! packets dropped by nftables between hosts (a 7+3 partition both ways, then one way),
//! random packet loss, a rate-limited link (`tc tbf`), a host whose link goes down during
//! a get. The nodes see only missing packets, never a refusal. Needs root (each test says
//! so and fails otherwise; CI runs as root); the hosts, and every filter and qdisc in
//! them, are removed when the testnet is dropped, also on failure.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Running, serial, unique};
use datamesh_testnet::{Config, Kdf, Testnet};

use super::{EXIT_NETWORK, check, get_cmd, holders, peer_map, public_key, run, stripe_nodes};
use crate::support::{bin, require_root};

/// A testnet of `nodes` nodes, one per host.
fn hosts_testnet(scratch: &Path, nodes: usize) -> anyhow::Result<Testnet> {
    Testnet::up_with(
        Config::new(bin()?, scratch.join("net"), nodes)
            .with_kdf(Kdf::FAST)
            .with_hosts(nodes),
    )
    .context("cannot start the testnet of hosts")
}

/// `datamesh put PATH --to KEY...` through node `via` (inside its host); the id.
fn put_via(
    net: &Testnet,
    via: usize,
    input: &Path,
    keys: &[String],
    scratch: &Path,
) -> anyhow::Result<String> {
    let mut cmd = net.cli(via);
    cmd.arg("put").arg(input);
    for key in keys {
        cmd.args(["--to", key]);
    }
    let id = String::from_utf8(run(cmd, scratch)?.ok(&format!("put through node {via}"))?)?;
    Ok(id.trim().to_string())
}

/// Gets `id` through `via` until it succeeds (byte-identical at once) or `deadline`.
fn get_eventually(
    net: &Testnet,
    via: usize,
    (id, input): (&str, &Path),
    scratch: &Path,
    deadline: Instant,
) -> anyhow::Result<usize> {
    let out = scratch.join(format!("out-{}", unique()));
    let mut retries = 0;
    loop {
        let outcome = run(get_cmd(net, via, id, &out), scratch)?;
        if outcome.code == Some(0) {
            assert_same_file(input, &out).with_context(|| format!("get through node {via}"))?;
            fs::remove_file(&out)?;
            return Ok(retries);
        }
        ensure!(
            Instant::now() < deadline,
            "get through node {via} still fails: {}",
            outcome.stderr
        );
        retries += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Puts through `via` that must land on six distinct nodes, all in `allowed`.
fn put_lands_within(
    net: &Testnet,
    via: usize,
    (input, keys): (&Path, &[String]),
    allowed: &[usize],
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<String> {
    let id = put_via(net, via, input, keys, scratch)?;
    let map = holders(&check(net, via, &id, &[], scratch)?, peers)?;
    for s in 0..map.len() {
        let nodes = stripe_nodes(&map, s);
        ensure!(
            nodes.len() == 6 && nodes.iter().all(|n| allowed.contains(n)),
            "put through node {via}: stripe {s} on nodes {nodes:?}, not 6 of {allowed:?}"
        );
    }
    Ok(id)
}

/// A put through `via` that cannot place its shards: no id, exit 4, one line.
fn put_fails(net: &Testnet, via: usize, input: &Path, scratch: &Path) -> anyhow::Result<String> {
    let mut cmd = net.cli(via);
    cmd.arg("put").arg(input);
    let outcome = Running::spawn(cmd, scratch, super::COMMAND_DEADLINE)?.finish()?;
    ensure!(
        outcome.stdout.is_empty(),
        "put through node {via} printed {:?}",
        String::from_utf8_lossy(&outcome.stdout)
    );
    let line = outcome.fails_with(EXIT_NETWORK, &format!("put through node {via}"))?;
    ensure!(
        line.contains("distinct peers"),
        "put through node {via}: {line}"
    );
    Ok(line)
}

/// Case K1: ten hosts partitioned by nftables into A (nodes 0-6) and B (7-9), both ways,
/// then healed; then a one-way cut (packets from A to B dropped, B to A pass), healed.
/// The assertions of case 10 (the block-list partition): during it, puts through A land
/// on six distinct nodes of A, puts through B fail (exit 4, one line, no id); after
/// healing, every file reads byte-identical through every node. And the kernel really
/// dropped packets (the rules' counters).
#[test]
fn kernel_partition_both_ways_then_one_way() -> anyhow::Result<()> {
    const ALL: usize = 10;
    const A: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];
    const B: [usize; 3] = [7, 8, 9];
    const HEAL_DEADLINE: Duration = Duration::from_secs(120);
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = hosts_testnet(scratch, ALL)?;
    let started = Instant::now();
    let peers = peer_map(&net)?;
    let keys: Vec<String> = (0..ALL)
        .map(|i| public_key(&net, i, scratch))
        .collect::<anyhow::Result<_>>()?;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let input = make_file(scratch, 3 * MIB / 2, 1700)?;
    files.push((put_via(&net, 8, &input, &keys, scratch)?, input));

    for (round, one_way) in [false, true].into_iter().enumerate() {
        if one_way {
            net.cut_one_way(&A, &B)?;
        } else {
            net.partition_hosts(&[&A, &B])?;
        }
        note!(
            "case K1: round {round} (one way: {one_way}) cut at {:?}",
            started.elapsed()
        );
        let input = make_file(scratch, 3 * MIB / 2, 1710 + round as u64)?;
        let id = put_lands_within(&net, round * 6, (&input, &keys), &A, &peers, scratch)?;
        files.push((id, input));
        let input = make_file(scratch, MIB, 1720 + round as u64)?;
        let line = put_fails(&net, B[round], &input, scratch)?;
        note!(
            "case K1: round {round}: put through node {}: {line} at {:?}",
            B[round],
            started.elapsed()
        );
        let dropped: u64 = (0..ALL)
            .map(|i| net.dropped_packets(i))
            .sum::<datamesh_testnet::Result<u64>>()?;
        ensure!(dropped > 0, "round {round}: the kernel dropped no packet");
        net.heal_hosts()?;
        let deadline = Instant::now() + HEAL_DEADLINE;
        let mut retries = 0;
        for (id, input) in &files {
            for via in 0..ALL {
                retries += get_eventually(&net, via, (id, input), scratch, deadline)?;
            }
        }
        note!(
            "case K1: round {round}: {dropped} packets dropped; healed, {} files read through all {ALL} nodes ({retries} retried gets) at {:?}",
            files.len(),
            started.elapsed()
        );
    }
    Ok(())
}

/// Case K2: link faults on eight hosts. With 10 % of the packets a holder's host
/// receives dropped, a get is byte-identical; with a holder's link limited to 20 Mbit/s
/// (`tc tbf`), a get is byte-identical and the limited link carried shard bytes; a holder
/// whose link goes down during a 32 MiB get: the same get completes, byte-identical; with
/// the link up again, the host serves again.
#[test]
fn kernel_loss_rate_limit_and_link_down() -> anyhow::Result<()> {
    const NODES: usize = 8;
    require_root()?;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = hosts_testnet(scratch, NODES)?;
    let peers = peer_map(&net)?;
    let started = Instant::now();
    let input = make_file(scratch, 32 * MIB, 1730)?;
    let id = put_via(&net, 0, &input, &[], scratch)?;
    let map = holders(&check(&net, 0, &id, &[], scratch)?, &peers)?;
    let last = stripe_nodes(&map, map.len() - 1);
    let victims: Vec<usize> = last.into_iter().filter(|&n| n != 0).take(2).collect();
    ensure!(victims.len() == 2, "the last stripe's holders: {map:?}");
    let deadline = || Instant::now() + super::COMMAND_DEADLINE;

    // Random loss on one holder's host.
    net.set_packet_loss(victims[0], 10)?;
    let retries = get_eventually(&net, 0, (&id, &input), scratch, deadline())?;
    let dropped = net.dropped_packets(victims[0])?;
    ensure!(dropped > 0, "10 % loss dropped nothing");
    net.set_packet_loss(victims[0], 0)?;
    note!(
        "case K2: 10 % loss on node {}: {dropped} packets dropped, get identical ({retries} retries) at {:?}",
        victims[0],
        started.elapsed()
    );

    // A rate-limited link.
    net.limit_rate(victims[1], Some(20_000_000))?;
    let retries = get_eventually(&net, 0, (&id, &input), scratch, deadline())?;
    let sent = net.limited_bytes_sent(victims[1])?;
    ensure!(sent > MIB as u64, "the limited link sent only {sent} bytes");
    net.limit_rate(victims[1], None)?;
    note!(
        "case K2: 20 Mbit/s on node {}: {sent} bytes through the limit, get identical ({retries} retries) at {:?}",
        victims[1],
        started.elapsed()
    );

    // A holder's link goes down mid-get.
    let out_dir = scratch.join(format!("down-{}", unique()));
    fs::create_dir(&out_dir)?;
    let out = out_dir.join("copy");
    let mut get = Running::spawn(
        get_cmd(&net, 0, &id, &out),
        scratch,
        super::COMMAND_DEADLINE,
    )?;
    super::wait_streaming(&mut get, &out_dir)?;
    net.set_link(victims[0], false)?;
    get.finish()?
        .ok("the get during which a holder's link went down")?;
    assert_same_file(&input, &out)?;
    note!(
        "case K2: node {}'s link down mid-get: identical at {:?}",
        victims[0],
        started.elapsed()
    );
    net.set_link(victims[0], true)?;
    // Up again, it serves: a get that needs it (the other victim's host cut off).
    net.set_link(victims[1], false)?;
    // And a third holder of the last stripe (not the reader): four left, one of them
    // the host that came back.
    let third = stripe_nodes(&map, map.len() - 1)
        .into_iter()
        .find(|&n| n != victims[0] && n != victims[1] && n != 0)
        .context("the last stripe has no third holder")?;
    net.set_link(third, false)?;
    let retries = get_eventually(&net, 0, (&id, &input), scratch, deadline())?;
    note!(
        "case K2: node {} serves again after its link came back ({retries} retries) at {:?}",
        victims[0],
        started.elapsed()
    );
    Ok(())
}
