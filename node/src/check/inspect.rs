//! Looking at a file's copies without changing anything: which peers hold the manifest
//! and its newest key envelope, and, per stripe, which claimed copies are healthy (taken on the holders' word, or
//! fetched and hashed when verifying).

use std::collections::HashSet;

use datamesh_core::{FileId, KeyEnvelope, Manifest, ShardId, TOTAL_SHARDS};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::debug;

use super::report::{BadCopy, BadReason, StripeHealth, StripeReport};
use crate::files::{Files, HolderList};
use crate::protocol::{Refusal, Request, Response};

/// One fetch's outcome.
pub(super) enum Fetched {
    Good(Vec<u8>),
    Bad(BadReason),
    NoAnswer,
}

/// Fetches one copy and judges it against its id.
pub(super) async fn fetch_copy(files: &Files, peer: PeerId, id: ShardId) -> Fetched {
    let deadline = files.config().stripe_deadline;
    match tokio::time::timeout(deadline, files.send(peer, Request::Fetch { id })).await {
        Ok(Ok(Response::Blob(bytes))) if ShardId::of(&bytes) == id => {
            Fetched::Good(Vec::from(bytes))
        }
        Ok(Ok(Response::Blob(_))) => {
            files.metrics().bad_shards_fetched.inc();
            Fetched::Bad(BadReason::WrongBytes)
        }
        Ok(Ok(Response::Refused(Refusal::Corrupt))) => Fetched::Bad(BadReason::Corrupt),
        Ok(Ok(Response::NotFound)) => Fetched::Bad(BadReason::Missing),
        Ok(Ok(other)) => {
            debug!(%peer, ?other, "shard not served");
            Fetched::NoAnswer
        }
        Ok(Err(e)) => {
            debug!(%peer, "fetch failed: {e}");
            Fetched::NoAnswer
        }
        Err(_) => Fetched::NoAnswer,
    }
}

/// The peers of `peers` that hold the manifest.
pub(super) async fn manifest_holders(
    files: &Files,
    id: FileId,
    peers: &HashSet<PeerId>,
) -> HashSet<PeerId> {
    let blob = ShardId::from_bytes(*id.as_bytes());
    let deadline = files.config().lookup_deadline;
    let peers: Vec<PeerId> = peers.iter().copied().collect();
    let mut asks = files.ask_all(&peers, &Request::Has { ids: vec![blob] }, deadline);
    let mut out = HashSet::new();
    while let Some((peer, answer)) = asks.next().await {
        if matches!(answer, Some(Response::Has(f)) if f == [true]) {
            out.insert(peer);
        }
    }
    out
}

/// A file's newest key envelope (verified under the manifest's authority key) and which
/// of `holders` (its manifest holders) hold it. Envelopes are asked of `holders` and of
/// this node; this node counts only if it is one of `holders`.
#[derive(Debug, Default)]
pub(super) struct EnvelopeCopies {
    /// The newest envelope's wire form (none found: `None`).
    pub(super) newest: Option<Vec<u8>>,
    /// Manifest holders that hold it.
    pub(super) holders: HashSet<PeerId>,
}

pub(super) async fn envelope_copies(
    files: &Files,
    manifest: &Manifest,
    holders: &HashSet<PeerId>,
) -> EnvelopeCopies {
    let id = manifest.file_id();
    let authority = manifest.authority().key;
    let deadline = files.config().lookup_deadline;
    let mut peers: Vec<PeerId> = holders.iter().copied().collect();
    if !holders.contains(&files.peer_id()) {
        peers.push(files.peer_id());
    }
    let mut asks = files.ask_all(&peers, &Request::GetEnvelope { file: id }, deadline);
    let mut held: Vec<(PeerId, u64, Vec<u8>)> = Vec::new();
    while let Some((peer, answer)) = asks.next().await {
        let Some(Response::Envelopes(list)) = answer else {
            continue;
        };
        for bytes in list {
            if let Ok(envelope) = KeyEnvelope::from_verified_bytes(&bytes, &authority)
                && envelope.file_id() == id
            {
                held.push((peer, envelope.sequence(), bytes));
            }
        }
    }
    let Some(newest) = held.iter().map(|(_, seq, _)| *seq).max() else {
        return EnvelopeCopies::default();
    };
    let mut out = EnvelopeCopies::default();
    for (peer, seq, bytes) in held {
        if seq == newest {
            if holders.contains(&peer) {
                out.holders.insert(peer);
            }
            out.newest.get_or_insert(bytes);
        }
    }
    out
}

/// One stripe as it stands: with `verify`, every claimed copy fetched and hashed (the
/// intact bytes are returned for a repair to use); without, the `claimed` holders as
/// they are.
pub(super) async fn inspect_stripe(
    files: &Files,
    manifest: &Manifest,
    claimed: &[HolderList; TOTAL_SHARDS],
    stripe: u64,
    verify: bool,
) -> (StripeReport, [Option<Vec<u8>>; TOTAL_SHARDS]) {
    let ids = manifest.stripes()[stripe as usize];
    let mut holders: [Vec<PeerId>; TOTAL_SHARDS] = Default::default();
    let mut bytes: [Option<Vec<u8>>; TOTAL_SHARDS] = Default::default();
    let mut bad = Vec::new();
    let mut silent = Vec::new();
    if verify {
        let mut fetches: FuturesUnordered<_> = claimed
            .iter()
            .enumerate()
            .flat_map(|(index, list)| list.iter().map(move |&peer| (index, peer)))
            .map(|(index, peer)| {
                let files = files.clone();
                let id = ids[index];
                async move { (index, peer, fetch_copy(&files, peer, id).await) }
            })
            .collect();
        while let Some((index, peer, outcome)) = fetches.next().await {
            match outcome {
                Fetched::Good(b) => {
                    holders[index].push(peer);
                    if bytes[index].is_none() {
                        bytes[index] = Some(b);
                    }
                }
                Fetched::Bad(reason) => bad.push(BadCopy {
                    peer,
                    index,
                    shard: ids[index],
                    reason,
                }),
                Fetched::NoAnswer => silent.push(peer),
            }
        }
        // Keep the locate order (the recorded holder first).
        for (list, order) in holders.iter_mut().zip(claimed) {
            list.sort_by_key(|p| order.iter().position(|q| q == p));
        }
    } else {
        holders = std::array::from_fn(|index| claimed[index].to_vec());
    }
    let before = StripeHealth::of(&holders);
    let report = StripeReport {
        stripe,
        before,
        after: before,
        holders,
        bad,
        unreachable: silent,
        repaired: Vec::new(),
        error: None,
    };
    (report, bytes)
}
