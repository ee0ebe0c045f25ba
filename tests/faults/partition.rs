//! Case 10: a partition of the testnet, then healing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Running, serial, unique};
use datamesh_testnet::{Config, Kdf, Testnet};
use serde_json::Value;

use super::{
    EXIT_NETWORK, FAIL_FAST_DEADLINE, check, get_cmd, holders, peer_map, public_key, put_in, run,
    stripe_nodes,
};
use crate::support::bin;

/// Case 10: a partition of ten nodes into A (nodes 0-6) and B (7-9). There is no
/// kernel-level partition here (no iptables/nft; every node dials from 127.0.0.1):
/// [`Testnet::partition`] makes each node block the other group's peers through the
/// test-fault hook (`datamesh debug block-peers`, libp2p's block list), so connections
/// between the groups are closed, refused and never dialled. During the partition, a put
/// through A lands on six distinct peers of A, a put through B (three nodes) fails
/// cleanly and never reports success. After healing, every file (one put before the
/// partition, two during it) is read byte-identical through every node.
#[test]
fn partition_then_heal() -> anyhow::Result<()> {
    const ALL: usize = 10;
    const A: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];
    const B: [usize; 3] = [7, 8, 9];
    /// Routing tables re-form after healing within this long (retries of failed gets).
    const HEAL_DEADLINE: Duration = Duration::from_secs(60);
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut config = Config::new(bin()?, scratch.join("net"), ALL).with_kdf(Kdf::FAST);
    for i in 0..ALL {
        config = config.with_node_env(i, "DATAMESH_TEST_FAULTS", "1");
    }
    let net = Testnet::up_with(config).context("cannot start the testnet")?;
    let started = Instant::now();
    let peers = peer_map(&net)?;
    // Every file is shared with every node, so that every node can read it.
    let keys: Vec<String> = (0..ALL)
        .map(|i| public_key(&net, i, scratch))
        .collect::<anyhow::Result<_>>()?;

    let mut files: Vec<(String, PathBuf, &str)> = Vec::new();
    let input = make_file(scratch, 3 * MIB / 2, 1000)?;
    let id = put_in(&net.home(8), &input, &keys, scratch)?;
    files.push((id, input, "put through B before the partition"));

    net.partition(&[&A, &B])?;
    note!("case 10: partitioned at {:?}", started.elapsed());
    for (n, via) in [0usize, 6].into_iter().enumerate() {
        let input = make_file(scratch, 3 * MIB / 2, 1010 + n as u64)?;
        let id = put_in(&net.home(via), &input, &keys, scratch)?;
        let map = holders(&check(&net, via, &id, &[], scratch)?, &peers)?;
        for s in 0..map.len() {
            let nodes = stripe_nodes(&map, s);
            ensure!(
                nodes.len() == 6 && nodes.iter().all(|n| A.contains(n)),
                "put through node {via} during the partition: stripe {s} on nodes {nodes:?}"
            );
        }
        files.push((id, input, "put through A during the partition"));
    }
    for (n, via) in B.into_iter().enumerate() {
        let input = make_file(scratch, 3 * MIB / 2, 1020 + n as u64)?;
        let mut cmd = net.cli(via);
        cmd.arg("put").arg(&input);
        let outcome = Running::spawn(cmd, scratch, FAIL_FAST_DEADLINE)?.finish()?;
        ensure!(
            outcome.stdout.is_empty(),
            "put through node {via} of B printed {:?}",
            String::from_utf8_lossy(&outcome.stdout)
        );
        let line = outcome.fails_with(EXIT_NETWORK, &format!("put through node {via} of B"))?;
        ensure!(
            line.contains("distinct peers"),
            "put through node {via} of B: {line}"
        );
        note!("case 10: put through node {via} of B: {line}");
    }

    // No connection crosses the partition, after all those puts (bounded wait: a
    // blocked peer's connections are closed asynchronously); the routing tables still
    // list the other group.
    let wait = Instant::now() + Duration::from_secs(10);
    for via in 0..ALL {
        let other: &[usize] = if A.contains(&via) { &B } else { &A };
        loop {
            let (connected, known) = other_group_peers(&net, via, other, &peers, scratch)?;
            if connected.is_empty() {
                ensure!(
                    !known.is_empty(),
                    "node {via} forgot the other group's peers"
                );
                break;
            }
            ensure!(
                Instant::now() < wait,
                "node {via} is still connected to {connected:?} across the partition"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    net.heal()?;
    note!("case 10: healed at {:?}", started.elapsed());
    // The routing tables kept the other group's peers; the first operations across the
    // old boundary redial them. Failed gets are retried until HEAL_DEADLINE; a get that
    // succeeds must be byte-identical at once.
    let deadline = Instant::now() + HEAL_DEADLINE;
    let mut retries = 0;
    for (id, input, what) in &files {
        for via in 0..ALL {
            let out = scratch.join(format!("out-{}", unique()));
            loop {
                let outcome = run(get_cmd(&net, via, id, &out), scratch)?;
                if outcome.code == Some(0) {
                    assert_same_file(input, &out)
                        .with_context(|| format!("{what}, read through node {via}"))?;
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{what}: get through node {via} still fails {HEAL_DEADLINE:?} after healing: {}",
                    outcome.stderr
                );
                retries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            fs::remove_file(&out)?;
        }
    }
    // The shards put during the partition are where the putter said: on A.
    for (id, _, _) in &files[1..] {
        let map = holders(&check(&net, 9, id, &[], scratch)?, &peers)?;
        for s in 0..map.len() {
            let nodes = stripe_nodes(&map, s);
            ensure!(
                nodes.len() == 6 && nodes.iter().all(|n| A.contains(n)),
                "after healing, check through node 9: stripe {s} on nodes {nodes:?}"
            );
        }
    }
    note!(
        "case 10: {} files read through all {ALL} nodes after healing ({retries} retried gets), done at {:?}",
        files.len(),
        started.elapsed()
    );
    Ok(())
}

/// Of the nodes `other`, those node `via` is connected to and those in its routing table
/// (`datamesh --json peers`).
fn other_group_peers(
    net: &Testnet,
    via: usize,
    other: &[usize],
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let mut cmd = net.cli(via);
    cmd.args(["--json", "peers"]);
    let out = run(cmd, scratch)?.ok(&format!("peers of node {via}"))?;
    let list: Value = serde_json::from_slice(&out).context("peers: not JSON")?;
    let (mut connected, mut known) = (Vec::new(), Vec::new());
    for p in list.as_array().context("peers: not a list")? {
        let Some(&n) = p["peer_id"].as_str().and_then(|id| peers.get(id)) else {
            continue;
        };
        if other.contains(&n) {
            known.push(n);
            if p["connected"].as_bool() == Some(true) {
                connected.push(n);
            }
        }
    }
    Ok((connected, known))
}
