//! Repair: rebuilds what a stripe lacks from any four intact shards (erasure coding on
//! ciphertext, each rebuilt shard's id checked against the manifest), places it with the
//! put path's placement away from the remaining holders and bad peers, asks holders of
//! corrupt copies to drop them; then, per file, announces the new holders, tops the
//! manifest back up to [`MANIFEST_COPIES`] copies, gives the newest key envelope to every
//! manifest holder that lacks it and records the new placement of this node's own files.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use datamesh_core::{DATA_SHARDS, Manifest, ShardId, TOTAL_SHARDS, rebuild_shards};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::error::{RepairError, StripeRepairError};
use super::inspect::{EnvelopeCopies, Fetched, fetch_copy};
use super::report::{BadCopy, BadReason, CheckReport, RepairedShard, StripeReport, matching};
use crate::catalog::Placement;
use crate::files::{Files, MANIFEST_COPIES};
use crate::protocol::Request;

/// Rebuilds and places what a stripe lacks; `report.holders` gains the new holders.
/// `bytes` are the intact shards already fetched (by a verify).
pub(super) async fn repair_stripe(
    files: &Files,
    manifest: &Manifest,
    report: &mut StripeReport,
    mut bytes: [Option<Vec<u8>>; TOTAL_SHARDS],
    unreachable: &Mutex<HashSet<PeerId>>,
) -> Result<(), StripeRepairError> {
    let stripe = report.stripe;
    let ids = manifest.stripes()[stripe as usize];
    let layout = manifest
        .layout(stripe)
        .ok_or(StripeRepairError::NotInManifest { stripe })?;

    // Four intact shards: those already fetched, then from the holders, data first.
    let have = bytes.iter().flatten().count();
    if have < DATA_SHARDS {
        let mut fetches: FuturesUnordered<_> = (0..TOTAL_SHARDS)
            .filter(|&i| bytes[i].is_none() && !report.holders[i].is_empty())
            .map(|index| {
                let files = files.clone();
                let list = report.holders[index].clone();
                let id = ids[index];
                async move {
                    let mut found = None;
                    let mut bad = Vec::new();
                    for peer in list {
                        match fetch_copy(&files, peer, id).await {
                            Fetched::Good(b) => {
                                files.metrics().repair_bytes_fetched.inc_by(b.len() as u64);
                                found = Some(b);
                                break;
                            }
                            Fetched::Bad(reason) => bad.push((peer, reason)),
                            Fetched::NoAnswer => {}
                        }
                    }
                    (index, found, bad)
                }
            })
            .collect();
        let mut have = have;
        while let Some((index, found, bad)) = fetches.next().await {
            for (peer, reason) in bad {
                report.holders[index].retain(|p| *p != peer);
                report.bad.push(BadCopy {
                    peer,
                    index,
                    shard: ids[index],
                    reason,
                });
            }
            if let Some(b) = found {
                bytes[index] = Some(b);
                have += 1;
                if have >= DATA_SHARDS {
                    break;
                }
            }
        }
    }
    let shard_len = layout.shard_len;
    let rebuilt = tokio::task::spawn_blocking(move || {
        rebuild_shards(&ids, shard_len, &mut bytes).map(|()| bytes)
    })
    .await
    .map_err(|source| StripeRepairError::TaskFailed { stripe, source })?
    .map_err(|source| StripeRepairError::Rebuild { stripe, source })?;

    // Drop corrupt copies (the holder checks the corruption itself before deleting).
    for copy in report.bad.iter().filter(|b| b.reason == BadReason::Corrupt) {
        let answer = files
            .send(copy.peer, Request::Delete { id: copy.shard })
            .await;
        debug!(peer = %copy.peer, shard = %copy.shard.short(), ?answer, "asked to drop a corrupt copy");
    }

    let best = matching(&report.holders);
    let missing: Vec<usize> = (0..TOTAL_SHARDS).filter(|&i| best[i].is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    // A removal honoured here meanwhile (the repair is racing the owner's `rm`): stop.
    if files.server().removed_lately(&manifest.file_id()) {
        return Err(StripeRepairError::Removed { stripe });
    }
    let mut exclude: HashSet<PeerId> = best.iter().flatten().copied().collect();
    exclude.extend(report.bad.iter().map(|b| b.peer));
    exclude.extend(report.unreachable.iter().copied());
    let shards: Vec<(ShardId, bytes::Bytes)> = missing
        .iter()
        .map(|&i| (ids[i], rebuilt[i].clone().unwrap_or_default().into()))
        .collect();
    let (placed, found) = files
        .place_shards_for(
            manifest.file_id(),
            ids[0].as_bytes(),
            shards,
            &exclude,
            unreachable,
        )
        .await?;
    for (&index, peer) in missing.iter().zip(&placed) {
        if let Some(peer) = *peer {
            files.metrics().repair_bytes_stored.inc_by(shard_len as u64);
            report.holders[index].push(peer);
            report.repaired.push(RepairedShard {
                index,
                shard: ids[index],
                peer,
            });
        }
    }
    let placed_count = placed.iter().flatten().count();
    if placed_count < missing.len() {
        return Err(StripeRepairError::NotEnoughPeers {
            stripe,
            placed: placed_count,
            missing: missing.len(),
            found,
        });
    }
    Ok(())
}

/// Announces new holders, tops up the manifest and envelope copies and records the new
/// placement.
pub(super) async fn after_repair(
    files: &Files,
    report: &mut CheckReport,
    manifest: &Manifest,
    manifest_before: &HashSet<PeerId>,
    envelopes_before: &EnvelopeCopies,
    placement: Option<Placement>,
) -> Result<(), RepairError> {
    let id = report.id;
    // Each new holder announces the file on the strength of a shard placed there.
    let mut new_holders: HashMap<PeerId, ShardId> = HashMap::new();
    for r in report.stripes.iter().flat_map(|s| &s.repaired) {
        new_holders.entry(r.peer).or_insert(r.shard);
    }
    let mut manifest_now = manifest_before.clone();
    if manifest_before.len() < MANIFEST_COPIES {
        let request = Request::StoreFor {
            file: id,
            id: ShardId::from_bytes(*id.as_bytes()),
            bytes: manifest.to_bytes().into(),
        };
        match files
            .place_copies(id.as_bytes(), &request, manifest_before)
            .await
        {
            Ok(copies) => {
                let fresh: HashSet<PeerId> = copies
                    .into_iter()
                    .filter(|p| !manifest_before.contains(p))
                    .collect();
                if !fresh.is_empty() {
                    files
                        .metrics()
                        .repair_bytes_stored
                        .inc_by((fresh.len() * manifest.to_bytes().len()) as u64);
                    let blob = ShardId::from_bytes(*id.as_bytes());
                    let named = fresh.iter().map(|&peer| (peer, blob)).collect();
                    let announced = files.announce(id, &named).await;
                    manifest_now.extend(fresh);
                    info!(file = %id, copies = manifest_now.len(), announced, "manifest copies topped up");
                }
            }
            Err(e) => warn!(file = %id, "could not top up the manifest copies: {e}"),
        }
    }
    let manifest_after = manifest_now.len();
    // Every manifest holder gets the newest envelope (signed and opaque: no key needed).
    let mut envelope_after = envelopes_before.holders.len();
    if let Some(newest) = &envelopes_before.newest {
        let lacking: Vec<PeerId> = manifest_now
            .iter()
            .filter(|p| !envelopes_before.holders.contains(p))
            .copied()
            .collect();
        if !lacking.is_empty() {
            let published = files.publish_envelope_bytes(newest.clone(), &lacking).await;
            envelope_after += published.kept();
            info!(file = %id, copies = envelope_after, refused = published.refused, "envelope copies topped up");
        }
    }
    report.envelope_copies.1 = envelope_after;
    report.manifest_copies.1 = manifest_after;
    if new_holders.is_empty() {
        return Ok(());
    }
    let announced = files.announce(id, &new_holders).await;
    let repaired = report.repaired_shards();
    files.metrics().repaired_shards.inc_by(repaired as u64);
    info!(file = %id, repaired, new_holders = new_holders.len(), announced, "repair placed shards");

    // This node's own file: the placement hint follows the shards.
    if let Some(old) = placement
        && files.catalog().get(&id)?.is_some()
    {
        let rows: Vec<[PeerId; TOTAL_SHARDS]> = report
            .stripes
            .iter()
            .map(|s| {
                let best = matching(&s.holders);
                std::array::from_fn(|index| {
                    best[index]
                        .or_else(|| s.holders[index].first().copied())
                        .or_else(|| old.holder(s.stripe, index))
                        .unwrap_or_else(|| files.peer_id())
                })
            })
            .collect();
        let catalog = files.catalog().clone();
        let placement = Placement::from_stripes(&rows);
        tokio::task::spawn_blocking(move || catalog.set_placement(&id, &placement))
            .await
            .map_err(|source| RepairError::TaskFailed {
                file: id,
                task: "placement write",
                source,
            })??;
    }
    Ok(())
}
