//! Owners' authority over their files' key envelopes, and envelope durability: a holder
//! keeps one envelope per file, only for a manifest it holds, only from the file's owner
//! and only newer; a put needs three envelope copies; check and repair count and top
//! them up.

use datamesh_core::{AuthorityKey, AuthorityRoot, DataKey, FileId, KeyEnvelope, Manifest, ShardId};
use datamesh_node::RewrapError;
use datamesh_node::protocol::InvalidReason;

use super::*;

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The envelope `node` serves for `file` (asked over the network by `asker`).
async fn envelope_on(
    net: &Net,
    asker: usize,
    node: usize,
    file: FileId,
) -> AnyResult<Option<KeyEnvelope>> {
    let answer = net
        .node(asker)
        .network()
        .request(net.node(node).peer_id(), Request::GetEnvelope { file })
        .await?;
    let Response::Envelopes(list) = answer else {
        return Err(format!("unexpected answer {answer:?}").into());
    };
    assert!(list.len() <= 1, "a node keeps one envelope per file");
    Ok(match list.first() {
        Some(bytes) => Some(KeyEnvelope::from_bytes(bytes)?),
        None => None,
    })
}

/// Indices of the running nodes that hold the file's manifest.
fn manifest_holders(net: &Net, file: FileId) -> AnyResult<Vec<usize>> {
    let blob = ShardId::from_bytes(*file.as_bytes());
    let mut out = Vec::new();
    for (i, node) in net.nodes.iter().enumerate() {
        if let Some(node) = node
            && node.files().store().has(&blob)?
        {
            out.push(i);
        }
    }
    Ok(out)
}

/// Bytes of the files under `dir`, recursively (RocksDB's info logs excluded).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                disk_bytes(&path)
            } else if e.file_name().to_string_lossy().starts_with("LOG") {
                0
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envelopes_for_made_up_files_are_refused_and_the_victims_disk_does_not_grow() -> TestResult
{
    // Node 1 is the victim (1 MiB quota), node 0 the attacker.
    let net = start_net(2, |i| if i == 1 { 1 << 20 } else { 1 << 30 }).await?;
    let victim = net.node(1).peer_id();
    let recipients: Vec<_> = (0..200)
        .map(|_| SecretKey::generate().public_key())
        .collect();
    let attacker_root = AuthorityRoot::from_bytes(&[0xa7; 32]);
    let authority = AuthorityKey::derive(&attacker_root, &datamesh_core::AuthoritySalt::random())?;
    let template = KeyEnvelope::seal(
        FileId::of_manifest(b"made up"),
        1,
        &DataKey::generate(),
        &recipients,
        &authority,
    )?
    .to_bytes();
    let dir = net._dirs[1].path().to_path_buf();
    let disk_before = disk_bytes(&dir);
    let used_before = net.node(1).files().store().used_bytes()?;
    let mut answers = std::collections::HashMap::new();
    let mut ids = Vec::new();
    for i in 0..640u32 {
        let mut bytes = template.clone();
        bytes[1..5].copy_from_slice(&i.to_be_bytes());
        ids.push(KeyEnvelope::from_bytes(&bytes)?.file_id());
        let answer = net
            .node(0)
            .network()
            .request(victim, Request::PutEnvelope { bytes })
            .await?;
        *answers.entry(format!("{answer:?}")).or_insert(0usize) += 1;
    }
    let unknown = format!(
        "{:?}",
        Response::Refused(Refusal::Invalid(InvalidReason::UnknownFile))
    );
    assert_eq!(answers.get(&unknown), Some(&640), "{answers:?}");
    assert_eq!(net.node(1).files().store().used_bytes()?, used_before);
    for id in ids.iter().step_by(64) {
        assert!(envelope_on(&net, 0, 1, *id).await?.is_none());
    }
    let disk_after = disk_bytes(&dir);
    // Nothing was written for them: not a row, not a byte of the quota. (The database
    // keeps its own bookkeeping; far below one envelope.)
    assert!(
        disk_after < disk_before + template.len() as u64,
        "{disk_before} -> {disk_after}"
    );
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn squatters_and_replays_are_refused_and_the_owners_rewrap_lands_on_every_holder()
-> TestResult {
    // Node 0 (which every node knows: it is the bootstrap) attacks node 1's file.
    const OWNER: usize = 1;
    const ATTACKER: usize = 0;
    let net = start_net(7, |_| 1 << 30).await?;
    // The attacker's node may itself hold a copy: what it sends to itself, the owner's
    // node carries (anyone may pass bytes on).
    let sender = |target: usize| if target == ATTACKER { OWNER } else { ATTACKER };
    let plain = data(300 * 1024 + 11);
    let put = put(net.node(OWNER), plain.clone(), "owned.bin").await?;
    assert!(put.envelope_copies >= 3, "{put:?}");
    let id = put.id;
    let holders = manifest_holders(&net, id)?;
    let remote_holders: Vec<usize> = holders.iter().copied().filter(|&i| i != OWNER).collect();
    assert!(remote_holders.len() >= 3, "{holders:?}");
    let manifest = Manifest::from_bytes(
        &net.node(holders[0])
            .files()
            .store()
            .get(&ShardId::from_bytes(*id.as_bytes()))?
            .ok_or("manifest")?,
    )?;
    // The attacker keeps a copy of the owner's first envelope to replay it.
    let replay = envelope_on(&net, sender(remote_holders[0]), remote_holders[0], id)
        .await?
        .ok_or("no envelope on a holder")?;
    assert_eq!(replay.sequence(), 1);

    // Squatting: envelopes signed with the attacker's own root (even with the file's
    // salt), at high sequences, wrapping a key of the attacker's, sent to every node.
    let attacker_root = AuthorityRoot::from_bytes(&[0x66; 32]);
    let squatter = AuthorityKey::derive(&attacker_root, &manifest.authority().salt)?;
    for sequence in [2, 100, u64::MAX - 1] {
        let forged = KeyEnvelope::seal(
            id,
            sequence,
            &DataKey::generate(),
            &[net.keys[ATTACKER].public_key()],
            &squatter,
        )?;
        for target in (0..7).filter(|&t| t != OWNER) {
            let answer = net
                .node(sender(target))
                .network()
                .request(
                    net.node(target).peer_id(),
                    Request::PutEnvelope {
                        bytes: forged.to_bytes(),
                    },
                )
                .await?;
            let expected = if holders.contains(&target) {
                InvalidReason::BadEnvelope
            } else {
                InvalidReason::UnknownFile
            };
            assert_eq!(
                answer,
                Response::Refused(Refusal::Invalid(expected)),
                "node {target}"
            );
        }
    }
    // The owner's rewrap: sequence 2 on every holder.
    let rewrap = net.node(OWNER).files().rewrap(id, vec![]).await?;
    assert_eq!(rewrap.sequence, 2);
    assert_eq!(rewrap.peers, remote_holders.len(), "{rewrap:?}");
    // The replayed older envelope is stale everywhere.
    for &target in &remote_holders {
        let answer = net
            .node(sender(target))
            .network()
            .request(
                net.node(target).peer_id(),
                Request::PutEnvelope {
                    bytes: replay.to_bytes(),
                },
            )
            .await?;
        assert_eq!(
            answer,
            Response::Refused(Refusal::Invalid(InvalidReason::StaleEnvelope)),
            "node {target}"
        );
    }
    // After the attack the owner's next rewrap still lands on every holder.
    let again = net.node(OWNER).files().rewrap(id, vec![]).await?;
    assert_eq!(again.sequence, 3);
    assert_eq!(again.peers, remote_holders.len(), "{again:?}");
    for &target in &remote_holders {
        let held = envelope_on(&net, sender(target), target, id)
            .await?
            .ok_or("no envelope")?;
        assert_eq!(held.sequence(), 3, "node {target}");
        held.verify(&manifest.authority().key)?;
    }
    assert_eq!(get(net.node(OWNER), id).await?, plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_whose_holders_refuse_envelopes_fails_and_leaves_no_shard() -> TestResult {
    let net = start_net_with(
        7,
        |_| 1 << 30,
        |i| {
            if i == 0 {
                TestFaults::none()
            } else {
                TestFaults::none().with_refuse_envelopes()
            }
        },
        Duration::ZERO,
    )
    .await?;
    let err = put(net.node(0), data(100_000), "lost-key.bin").await.err();
    assert!(
        matches!(err, Some(PutError::EnvelopeCopies { stored: 0, .. })),
        "{err:?}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("need 3"), "{message}");
    assert!(net.node(0).files().catalog().list()?.is_empty());
    // The put was undone: its shards and manifest copies are deleted again.
    let seen = wait_for_holdings(&net, |_| (0, 0)).await?;
    assert!(seen.iter().all(|(shards, _)| *shards == 0), "{seen:?}");
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewrap_that_reaches_too_few_holders_fails() -> TestResult {
    let mut net = start_net(7, |_| 1 << 30).await?;
    let put = put(net.node(0), data(50_000), "f.bin").await?;
    let remote: Vec<usize> = manifest_holders(&net, put.id)?
        .into_iter()
        .filter(|&i| i != 0)
        .collect();
    // Keep two remote manifest holders.
    for &i in &remote[2..] {
        net.stop(i).await?;
    }
    let err = net.node(0).files().rewrap(put.id, vec![]).await.err();
    assert!(
        matches!(err, Some(RewrapError::EnvelopeCopies { stored: 2, .. })),
        "{err:?}"
    );
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_counts_envelope_copies_and_repair_tops_them_up() -> TestResult {
    let mut net = start_net(8, |_| 1 << 30).await?;
    // Two stripes: the manifest on the six peers nearest the file id (a one-stripe file's
    // is on its shard holders too, protocol 10, which may leave no peer to top up on).
    let put = put(net.node(0), data(1_500_000), "kept.bin").await?;
    assert_eq!(put.stripes, 2);
    let report = net.node(0).checker().check(put.id, false).await?;
    assert_eq!(
        report.envelope_copies.0, report.manifest_copies.0,
        "{report:?}"
    );
    assert!(report.envelope_copies.0 >= put.envelope_copies);
    let api = report.to_api();
    assert_eq!(api.before.envelope_copies, report.envelope_copies.0);

    // Two manifest holders go away: the copies drop, and repair brings both back.
    let remote: Vec<usize> = manifest_holders(&net, put.id)?
        .into_iter()
        .filter(|&i| i != 0)
        .collect();
    for &i in &remote[..2] {
        net.stop(i).await?;
    }
    let report = net.node(0).checker().check(put.id, false).await?;
    let before = report.envelope_copies.0;
    assert_eq!(before, report.manifest_copies.0);
    assert!(before < 6, "{report:?}");
    let repaired = net.node(0).checker().repair(put.id, false).await?;
    assert!(
        repaired.manifest_copies.1 > repaired.manifest_copies.0,
        "{repaired:?}"
    );
    assert_eq!(
        repaired.envelope_copies.1, repaired.manifest_copies.1,
        "{repaired:?}"
    );
    let after = net.node(0).checker().check(put.id, false).await?;
    assert_eq!(after.envelope_copies.0, repaired.envelope_copies.1);
    net.shutdown().await
}
