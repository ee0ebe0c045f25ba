//! Durability without the owner: `datamesh rm` (the owner's signed removal frees every
//! holder's space; nobody else's removal frees anything).

use std::time::{SystemTime, UNIX_EPOCH};

use datamesh_core::{AuthorityKey, Removal};
use datamesh_node::RemoveError;
use datamesh_node::protocol::InvalidReason;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rm_frees_the_space_on_every_holder_and_only_the_owner_can_do_it() -> TestResult {
    let net = start_net(8, |_| 1 << 30).await?;
    // Another owner's file, which must stay whole.
    let kept = data(700_000);
    let other = net
        .node(1)
        .files()
        .put(std::io::Cursor::new(kept.clone()), "kept".into(), vec![])
        .await?
        .id;
    let before = holdings(&net).await?;
    let plain = data(3 * 1024 * 1024 + 11);
    let owner = net.node(0);
    let file = owner
        .files()
        .put(std::io::Cursor::new(plain.clone()), "gone".into(), vec![])
        .await?
        .id;
    let with_file = holdings(&net).await?;
    let holders = (0..8).filter(|&i| with_file[i] != before[i]).count();
    assert!(holders >= 6, "{before:?} -> {with_file:?}");

    // Not the owner: a node without the file in its catalog, and a peer that signs a
    // removal with its own root (the file's salt, another key) over the network.
    assert!(matches!(
        net.node(2).files().remove(file).await,
        Err(RemoveError::NotFound(_))
    ));
    let manifest = owner.files().manifest_of(file).await?;
    let forged_key = AuthorityKey::derive(&test_root(&[9; 32]), &manifest.authority().salt)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let forged = Removal::sign(file, now, &forged_key);
    for i in 1..8 {
        let answer = net
            .node(3)
            .network()
            .request(
                net.node(i).peer_id(),
                Request::RemoveFile {
                    manifest: manifest.to_bytes().into(),
                    issued_at: now,
                    signature: forged.signature().to_vec(),
                },
            )
            .await;
        if i != 3 {
            assert_eq!(
                answer?,
                Response::Refused(Refusal::Invalid(InvalidReason::BadRemoval))
            );
        }
    }
    assert_eq!(
        holdings(&net).await?,
        with_file,
        "a forged removal freed space"
    );
    assert!(get(owner, file).await? == plain);

    // The owner: every holder gives back exactly what the file took.
    let report = owner.files().remove(file).await?;
    assert_eq!(report.file, file);
    assert!(report.confirmed >= 6, "{report:?}");
    let after = wait_for_holdings(&net, |i| before[i]).await?;
    assert_eq!(after, before, "with the file: {with_file:?}");
    let freed: u64 = with_file.iter().zip(&after).map(|(w, a)| w.1 - a.1).sum();
    assert!(freed > plain.len() as u64, "freed {freed} bytes");
    assert!(owner.files().catalog().get(&file)?.is_none());
    assert!(matches!(
        owner.files().remove(file).await,
        Err(RemoveError::NotFound(_))
    ));
    assert!(get(owner, file).await.is_err());
    // The other owner's file is untouched.
    assert!(get(net.node(1), other).await? == kept);
    net.shutdown().await
}

/// Until when `node` keeps each of `ids` (asked by `asker`, renewing its lease if `renew`).
async fn leases_on(
    net: &Net,
    asker: usize,
    node: usize,
    ids: &[ShardId],
    renew: bool,
) -> Result<Vec<u64>, Box<dyn std::error::Error + Send + Sync>> {
    match net
        .node(asker)
        .network()
        .request(
            net.node(node).peer_id(),
            Request::Lease {
                ids: ids.to_vec(),
                renew,
            },
        )
        .await?
    {
        Response::Leases(list) => Ok(list),
        other => Err(format!("unexpected answer {other:?}").into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_run_out_without_the_owner_and_the_self_check_renews_them() -> TestResult {
    // A 6 s lease (collection passes every second after a 6 s grace), no periodic
    // self-check: renewals happen only when the test runs one.
    let lease = Duration::from_secs(6);
    let net = start_net_tuned(
        7,
        |_| 1 << 30,
        |_| TestFaults::none(),
        Duration::ZERO,
        |_, config| config.with_lease(lease),
    )
    .await?;
    let owner = net.node(0);
    let file = owner
        .files()
        .put(std::io::Cursor::new(data(300_000)), "leased".into(), vec![])
        .await?
        .id;
    let manifest = owner.files().manifest_of(file).await?;
    let ids: Vec<ShardId> = manifest.stripes().iter().flatten().copied().collect();
    let before = holdings(&net).await?;
    // Spread over the other nodes (the owner may hold some too when the put ran before
    // every peer was in its routing table).
    assert!(
        before[1..].iter().filter(|h| h.0 > 0).count() >= 4,
        "{before:?}"
    );

    // The check shows the lease; a self-check renews it (a later expiry everywhere).
    let checked = owner.checker().check(file, false).await?;
    let first = checked.kept_until.ok_or("no lease reported")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    assert!(
        first <= now + lease.as_secs() && first + 60 > now,
        "{first} vs {now}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outcome = owner.checker().self_check(false).await;
    assert_eq!(outcome.files, 1);
    let renewed = owner.checker().check(file, false).await?;
    assert!(
        renewed.kept_until.ok_or("no lease reported")? > first,
        "{renewed:?}"
    );

    // A blob not held: nothing to renew, answered 0.
    let unknown = ShardId::of(b"not held anywhere");
    let answer = leases_on(&net, 1, 2, &[unknown], true).await?;
    assert_eq!(answer, vec![0]);

    // Nobody renews: every holder collects the file's blobs once the lease has run out.
    // (The owner's own node too: its copies are leased like any other.)
    // The owner's node keeps its own key envelope of a file still in its catalog (it is
    // dropped by `rm`, not by a lease): when the node held no manifest copy to collect
    // with it, those bytes stay.
    let own_envelope = owner
        .files()
        .server()
        .envelope(&file)
        .map_or(0, |e| e.len() as u64);
    let after = wait_for_holdings(&net, |i| (0, if i == 0 { own_envelope } else { 0 })).await?;
    for (i, held) in after.iter().enumerate() {
        assert_eq!(held.0, 0, "node {i} still holds {held:?}: {after:?}");
        if i > 0 {
            assert_eq!(held.1, 0, "node {i} still holds {held:?}: {after:?}");
        }
    }
    assert!(after[0].1 <= own_envelope, "{after:?}");
    for i in 1..7 {
        assert!(
            leases_on(&net, 0, i, &ids, false)
                .await?
                .iter()
                .all(|&t| t == 0)
        );
    }
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audits_cost_under_one_percent_and_catch_a_lying_or_emptied_holder() -> TestResult {
    // Node 7 answers every audit (and fetch) with altered bytes.
    let net = start_net_with(
        8,
        |_| 1 << 30,
        |i| {
            if i == 7 {
                TestFaults::none().with_wrong_bytes()
            } else {
                TestFaults::none()
            }
        },
        Duration::ZERO,
    )
    .await?;
    let owner = net.node(0);
    let file = owner
        .files()
        .put(
            std::io::Cursor::new(data(4 * 1024 * 1024)),
            "audited".into(),
            vec![],
        )
        .await?
        .id;
    // An auditor that is not the owner and has no key.
    let report = net.node(1).checker().audit(file).await?;
    assert!(report.challenged >= 24, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");
    let liar = net.node(7).peer_id();
    assert!(
        report.failed.iter().all(|(peer, _)| *peer == liar),
        "{report:?}"
    );
    let held_by_liar = report.challenged - report.passed;
    assert_eq!(report.failed.len() as u64, held_by_liar);
    // Proof bytes per shard byte: well under 1%.
    assert!(report.shard_bytes >= report.passed * 200_000, "{report:?}");
    assert!(report.proof_bytes * 100 < report.shard_bytes, "{report:?}");
    // The figure the README quotes (`-- --nocapture` shows it).
    #[allow(clippy::print_stdout)]
    {
        println!(
            "audit: {} copies, {} proof bytes for {} shard bytes ({:.3}%)",
            report.challenged,
            report.proof_bytes,
            report.shard_bytes,
            100.0 * report.proof_bytes as f64 / report.shard_bytes as f64
        );
    }

    // A holder whose copy is gone fails too, whatever it claims.
    let manifest = owner.files().manifest_of(file).await?;
    let victim = (1..7)
        .find(|&i| {
            manifest.stripes()[0]
                .iter()
                .any(|s| net.node(i).files().store().has(s).unwrap_or(false))
        })
        .ok_or("no honest holder of stripe 0")?;
    let store = net.node(victim).files().store();
    let mut dropped = 0;
    for shard in manifest.stripes().iter().flatten() {
        if store.has(shard)? {
            store.corrupt_for_test(shard)?;
            dropped += 1;
        }
    }
    let report = net.node(1).checker().audit(file).await?;
    let victim_id = net.node(victim).peer_id();
    let victim_failed = report
        .failed
        .iter()
        .filter(|(p, _)| *p == victim_id)
        .count();
    assert_eq!(victim_failed, dropped, "{report:?}");
    net.shutdown().await
}
