//! Leases seen from the checker: until when the holders found keep the file's blobs,
//! each holder asked once (a `Lease` request per [`MAX_IDS`] ids), and the owner's
//! renewal (its self-check renews every copy it finds, `renew`).

use std::collections::{HashMap, HashSet};

use datamesh_core::{FileId, Manifest, ShardId};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::debug;

use super::report::StripeReport;
use crate::files::Files;
use crate::protocol::{MAX_IDS, Request, Response};

/// Asks each holder in `stripes` (and each of `manifest_holders`) until when it keeps
/// the blobs it holds of the file, renewing this node's lease on them first when
/// `renew`. Returns the earliest answer, `None` if no holder answered.
pub(super) async fn kept_until(
    files: &Files,
    file: FileId,
    manifest: &Manifest,
    stripes: &[StripeReport],
    manifest_holders: &HashSet<PeerId>,
    renew: bool,
) -> Option<u64> {
    let mut asks: HashMap<PeerId, HashSet<ShardId>> = HashMap::new();
    for report in stripes {
        let Some(ids) = manifest.stripes().get(report.stripe as usize) else {
            continue;
        };
        for (index, peers) in report.holders.iter().enumerate() {
            for peer in peers {
                asks.entry(*peer).or_default().insert(ids[index]);
            }
        }
    }
    let blob = ShardId::from_bytes(*file.as_bytes());
    for peer in manifest_holders {
        asks.entry(*peer).or_default().insert(blob);
    }
    let deadline = files.config().lookup_deadline;
    let mut answers: FuturesUnordered<_> = asks
        .into_iter()
        .map(|(peer, ids)| {
            let files = files.clone();
            let ids: Vec<ShardId> = ids.into_iter().collect();
            async move {
                let mut earliest: Option<u64> = None;
                for batch in ids.chunks(MAX_IDS) {
                    let request = Request::Lease {
                        ids: batch.to_vec(),
                        renew,
                    };
                    match tokio::time::timeout(deadline, files.send(peer, request)).await {
                        Ok(Ok(Response::Leases(list))) if list.len() == batch.len() => {
                            let held = list.into_iter().filter(|&t| t > 0).min();
                            earliest = earliest.into_iter().chain(held).min();
                        }
                        other => {
                            debug!(%peer, "no lease answer: {other:?}");
                            return None;
                        }
                    }
                }
                earliest
            }
        })
        .collect();
    let mut earliest = None;
    while let Some(answer) = answers.next().await {
        earliest = earliest.into_iter().chain(answer).min();
    }
    earliest
}
