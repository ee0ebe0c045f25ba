//! Cases 5-7 on one testnet with the test fault hooks: repair, bit rot, a lying peer.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use datamesh_testnet::Testnet;
use datamesh_testnet::input::{MIB, make_file};
use datamesh_testnet::run::serial;
use serde_json::Value;

use super::{
    NODES, check, counter, get_cmd, get_same, holders, peer_map, put_in, restart_all, run, state,
    stripe_nodes, testnet,
};

/// Cases 5-7 on one testnet whose nodes all accept the test fault hooks
/// (`DATAMESH_TEST_FAULTS=1`): repair, bit rot, a peer answering wrong bytes.
#[test]
fn repair_bit_rot_and_lying_peers() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, |c| {
        (0..NODES).fold(c, |c, i| c.with_node_env(i, "DATAMESH_TEST_FAULTS", "1"))
    })?;
    let peers = peer_map(&net)?;
    let started = Instant::now();
    repair_then_lose_others(&mut net, &peers, scratch).context("case 5")?;
    note!("case 5 done at {:?}", started.elapsed());
    bit_rot(&net, &peers, scratch).context("case 6")?;
    note!("case 6 done at {:?}", started.elapsed());
    lying_peer(&mut net, &peers, scratch).context("case 7")?;
    note!("case 7 done at {:?}", started.elapsed());
    Ok(())
}

/// Case 5: two holders of stripe 0 SIGKILLed, `check --repair` (through a node that
/// cannot read the file: repair needs no key), then two *other* original holders of
/// stripe 0 SIGKILLed: without the repair stripe 0 would be down to 2 shards; the get is
/// byte-identical.
fn repair_then_lose_others(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let input = make_file(scratch, 2 * MIB + 333, 5)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let report = check(net, 0, &id, &[], scratch)?;
    ensure!(state(&report) == "healthy", "after the put: {report}");
    let original = stripe_nodes(&holders(&report, peers)?, 0);
    ensure!(original.len() == 6, "stripe 0 on {original:?}");
    let others: Vec<usize> = original.iter().copied().filter(|&n| n != 0).collect();
    let (first, second) = ([others[0], others[1]], [others[2], others[3]]);
    // The repairer: alive throughout, and not shared with.
    let repairer = (1..NODES)
        .find(|n| !first.contains(n) && !second.contains(n))
        .context("no node left to repair through")?;
    let cmd = get_cmd(net, repairer, &id, &scratch.join("not-readable"));
    run(cmd, scratch)?.fails_with(2, "get through the repairer, not shared with")?;

    for n in first {
        net.kill(n)?;
    }
    let repaired = check(net, repairer, &id, &["--repair"], scratch)?;
    ensure!(
        repaired["before"]["state"].as_str() == Some("degraded") && state(&repaired) == "healthy",
        "repair with nodes {first:?} down: {repaired}"
    );
    ensure!(
        repaired["repaired_shards"].as_u64() >= Some(2),
        "repair placed fewer than the 2 lost shards of stripe 0: {repaired}"
    );
    let now = stripe_nodes(&holders(&repaired, peers)?, 0);
    ensure!(
        now.len() == 6 && !now.iter().any(|n| first.contains(n)),
        "stripe 0 after the repair is on {now:?} (killed: {first:?})"
    );
    note!(
        "case 5: stripe 0 was on {original:?}; killed {first:?}, repaired onto {now:?}, killing {second:?}"
    );

    for n in second {
        net.kill(n)?;
    }
    get_same(
        net,
        0,
        &id,
        &input,
        scratch,
        &format!("repaired with {first:?} down, then {second:?} killed"),
    )?;
    fs::remove_file(input)?;
    restart_all(net)
}

/// Case 6: one stored shard corrupted on its holder: the get is byte-identical, `check
/// --verify` names the holder and the shard, `--repair` replaces it, and a second
/// `--verify` is clean.
fn bit_rot(net: &Testnet, peers: &BTreeMap<String, usize>, scratch: &Path) -> anyhow::Result<()> {
    let input = make_file(scratch, 3 * MIB / 2, 6)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let report = check(net, 0, &id, &[], scratch)?;
    let map = holders(&report, peers)?;
    // A node holding a data shard of stripe 0 (a reader asks for those first), other
    // than the reader.
    let victim = (0..4)
        .find_map(|i| map[0][i].iter().copied().find(|&n| n != 0))
        .context("no data shard of stripe 0 on another node")?;
    // `--file` alone: the first shard of the file the node holds. (`--stripe`/`--index`
    // would pick one, but clap rejects them together with `--file`.)
    let mut cmd = net.cli(victim);
    cmd.args(["--json", "debug", "corrupt-shard", "--file", &id]);
    let corrupted: Value = serde_json::from_slice(
        &run(cmd, scratch)?.ok(&format!("debug corrupt-shard on node {victim}"))?,
    )?;
    let shard = corrupted["shard"]
        .as_str()
        .context("corrupt-shard named no shard")?
        .to_string();
    let (Some(stripe), Some(index)) = (
        corrupted["stripe"].as_u64().map(|s| s as usize),
        corrupted["index"].as_u64().map(|i| i as usize),
    ) else {
        bail!("corrupt-shard did not say which stripe and index: {corrupted}");
    };
    ensure!(
        map.get(stripe)
            .is_some_and(|row| row[index].contains(&victim)),
        "node {victim} corrupted shard {index} of stripe {stripe}, which it does not hold: {corrupted}"
    );
    let victim_peer = net.peer_id(victim)?;
    ensure!(
        corrupted["peer_id"].as_str() == Some(victim_peer.as_str()),
        "{corrupted}"
    );
    note!("case 6: corrupted shard {index} of stripe {stripe} ({shard}) on node {victim}");

    get_same(net, 0, &id, &input, scratch, "one shard corrupted")?;

    let verify = check(net, 0, &id, &["--verify"], scratch)?;
    ensure!(state(&verify) == "degraded", "verify: {verify}");
    let bad = verify["stripes"][stripe]["bad"]
        .as_array()
        .context("no bad list")?;
    ensure!(
        bad.iter()
            .any(|b| b["peer"].as_str() == Some(victim_peer.as_str())
                && b["index"].as_u64() == Some(index as u64)
                && b["shard"].as_str() == Some(shard.as_str())
                && b["reason"].as_str() == Some("corrupt")),
        "verify did not name node {victim} ({victim_peer}) and shard {shard}: {verify}"
    );
    ensure!(
        verify["bad_peers"]
            .as_array()
            .is_some_and(|b| b.iter().any(|p| p.as_str() == Some(victim_peer.as_str()))),
        "bad_peers lacks {victim_peer}: {verify}"
    );

    let repair = check(net, 0, &id, &["--verify", "--repair"], scratch)?;
    ensure!(
        state(&repair) == "healthy" && repair["repaired_shards"].as_u64() >= Some(1),
        "repair: {repair}"
    );
    let again = check(net, 0, &id, &["--verify"], scratch)?;
    let clean = state(&again) == "healthy"
        && again["bad_peers"].as_array().is_some_and(Vec::is_empty)
        && again["stripes"].as_array().is_some_and(|stripes| {
            stripes
                .iter()
                .all(|s| s["bad"].as_array().is_some_and(Vec::is_empty))
        });
    ensure!(clean, "the second verify is not clean: {again}");
    get_same(net, 0, &id, &input, scratch, "after the repair")?;
    fs::remove_file(input)?;
    Ok(())
}

/// Case 7: a holder restarted in the test-only mode that answers every fetch with altered
/// bytes: the reader rejects them by hash and fetches elsewhere (byte-identical output),
/// and the peer is reported: in the reader's log and metrics, and by `check --verify`.
fn lying_peer(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let input = make_file(scratch, 5 * MIB / 2, 7)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let map = holders(&check(net, 0, &id, &[], scratch)?, peers)?;
    // The liar holds a data shard of stripe 0: the reader asks it first.
    let liar = (0..4)
        .find_map(|i| map[0][i].iter().copied().find(|&n| n != 0))
        .context("no data shard of stripe 0 on another node")?;
    net.stop(liar)?;
    net.set_node_env(liar, "DATAMESH_TEST_MISBEHAVE", Some("wrong-bytes"))?;
    net.start(liar)?;
    let liar_peer = net.peer_id(liar)?;
    note!("case 7: node {liar} ({liar_peer}) answers wrong bytes");

    let bad_before = counter(net, 0, "datamesh_bad_shards_fetched_total")?;
    get_same(
        net,
        0,
        &id,
        &input,
        scratch,
        "one holder answers wrong bytes",
    )?;
    let bad_after = counter(net, 0, "datamesh_bad_shards_fetched_total")?;
    ensure!(
        bad_after > bad_before,
        "the reader counted no bad shard ({bad_before} -> {bad_after})"
    );
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.lines()
            .any(|l| l.contains("does not match its id") && l.contains(&liar_peer)),
        "the reader's log does not name {liar_peer}"
    );
    let verify = check(net, 0, &id, &["--verify"], scratch)?;
    ensure!(
        verify["bad_peers"]
            .as_array()
            .is_some_and(|b| b.iter().any(|p| p.as_str() == Some(liar_peer.as_str()))),
        "verify did not report {liar_peer}: {verify}"
    );
    ensure!(
        verify["stripes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["bad"].as_array().into_iter().flatten())
            .any(|b| b["peer"].as_str() == Some(liar_peer.as_str())
                && b["reason"].as_str() == Some("wrong_bytes")),
        "verify did not report wrong bytes from {liar_peer}: {verify}"
    );

    net.stop(liar)?;
    net.set_node_env(liar, "DATAMESH_TEST_MISBEHAVE", None)?;
    net.start(liar)?;
    fs::remove_file(input)?;
    Ok(())
}
