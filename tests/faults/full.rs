//! Case 9: a node whose disk is full.

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{MIB, make_file};
use datamesh_testnet::run::serial;
use std::fs;

use super::{
    check, counter, get_same, holders, peer_map, put_in, restart_all, state, stripe_nodes, testnet,
};

/// Case 9: one node with a tiny storage quota (`node run --quota`): once full it refuses
/// shards (the putter logs the refusal, with the node's numbers), stays up, keeps serving
/// the shards it has, and every put still succeeds on six other peers.
#[test]
fn disk_full_node_refuses_and_keeps_serving() -> anyhow::Result<()> {
    const FULL: usize = 7;
    const QUOTA: u64 = 1_000_000;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, |c| c.with_node_quota(FULL, QUOTA))?;
    let peers = peer_map(&net)?;
    let full_peer = net.peer_id(FULL)?;
    ensure!(
        net.status(FULL)?.quota_bytes == QUOTA,
        "node {FULL} does not run with the quota"
    );

    // Put until node FULL refuses a shard (bounded); every put must succeed.
    let mut files = Vec::new();
    for n in 0..12 {
        let input = make_file(scratch, 3 * MIB, 900 + n)?;
        let id = put_in(&net.home(0), &input, &[], scratch)?;
        files.push((id, input));
        if counter(&net, FULL, "datamesh_shards_refused_total")? > 0 {
            break;
        }
    }
    ensure!(
        counter(&net, FULL, "datamesh_shards_refused_total")? > 0,
        "node {FULL} never refused a shard in {} puts",
        files.len()
    );
    // One more put, with the node full: placed on six others.
    let input = make_file(scratch, 3 * MIB, 999)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    files.push((id, input));
    ensure!(net.is_running(FULL), "the full node exited");
    let status = net.status(FULL)?;
    ensure!(
        status.bytes_stored <= QUOTA,
        "node {FULL} stores {} bytes over its quota of {QUOTA}",
        status.bytes_stored
    );
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.lines()
            .any(|l| l.contains("peer is full") && l.contains(&full_peer)),
        "the putter's log does not say node {FULL} ({full_peer}) is full"
    );
    note!(
        "case 9: {} puts; node {FULL} holds {} bytes, quota {QUOTA}",
        files.len(),
        status.bytes_stored
    );

    // Every file is at full health: the refused shards went to other peers.
    let mut held = None;
    for (id, _) in &files {
        let report = check(&net, 0, id, &[], scratch)?;
        ensure!(state(&report) == "healthy", "{report}");
        let map = holders(&report, &peers)?;
        if held.is_none()
            && let Some(s) = (0..map.len()).find(|&s| map[s].iter().flatten().any(|&n| n == FULL))
        {
            held = Some((id.clone(), s, stripe_nodes(&map, s)));
        }
    }
    // Reads still served: kill two other holders of a stripe the full node holds, so
    // that the stripe can only be read with its shard.
    let (id, s, nodes) = held.context("the full node holds no shard at all")?;
    let input = &files.iter().find(|(f, _)| *f == id).context("lost file")?.1;
    let victims: Vec<usize> = nodes
        .iter()
        .copied()
        .filter(|&n| n != 0 && n != FULL)
        .take(2)
        .collect();
    for &v in &victims {
        net.kill(v)?;
    }
    let served = counter(&net, FULL, "datamesh_shards_served_total")?;
    get_same(
        &net,
        0,
        &id,
        input,
        scratch,
        &format!("stripe {s} needs the full node, {victims:?} killed"),
    )?;
    ensure!(
        counter(&net, FULL, "datamesh_shards_served_total")? > served,
        "the full node served nothing"
    );
    restart_all(&mut net)
}
