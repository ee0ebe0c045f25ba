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
