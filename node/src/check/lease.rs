//! Leases seen from the checker: until when the holders found keep the file's blobs,
//! each holder asked once (a `Lease` request per [`MAX_IDS`] ids), and the owner's
//! renewal (its self-check renews every copy it finds, `renew`, with its signed order:
//! a `RenewLease`).

use std::collections::{HashMap, HashSet};

use datamesh_core::{FileId, Manifest, Renew, ShardId};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::{debug, warn};

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
    // The owner renews with its signed order: only that makes a holder keep a blob for
    // it (a plain renewal extends a claim the sender already has).
    let order = if renew {
        match files.signed_order::<Renew>(manifest) {
            Ok(order) => order.map(|o| (o, bytes::Bytes::from(manifest.to_bytes()))),
            Err(e) => {
                warn!(%file, "cannot sign the lease renewal: {e}");
                None
            }
        }
    } else {
        None
    };
    if order.is_some() {
        // This node too: its own envelope of the file is leased under the file id.
        asks.entry(files.peer_id()).or_default().insert(blob);
    }
    let deadline = files.config().lookup_deadline;
    let mut answers: FuturesUnordered<_> = asks
        .into_iter()
        .map(|(peer, ids)| {
            let files = files.clone();
            let ids: Vec<ShardId> = ids.into_iter().collect();
            let order = order.clone();
            async move {
                let mut earliest: Option<u64> = None;
                for batch in ids.chunks(MAX_IDS) {
                    let ids = batch.to_vec();
                    let request = match &order {
                        Some((order, manifest)) => Request::RenewLease {
                            manifest: manifest.clone(),
                            issued_at: order.issued_at(),
                            signature: order.signature().to_vec(),
                            ids,
                        },
                        None => Request::Lease { ids, renew },
                    };
                    // The owner's order is sent again while the holder says `Busy`.
                    let send = async {
                        match request {
                            Request::RenewLease { .. } => files.send_order(peer, request).await,
                            _ => files.send(peer, request).await,
                        }
                    };
                    match tokio::time::timeout(deadline, send).await {
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
