//! Placement: which peers hold what. A shard (or a copy of the manifest) goes to the
//! peers nearest (XOR) to its key that accept it, the next nearest replacing any that
//! fails or refuses. Put and repair place through the same functions.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use bytes::Bytes;
use datamesh_core::{FileId, ShardId};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::domains::{host_of, spread_over_hosts};
use super::engine::Files;
use crate::network::{NetworkError, sort_by_distance};
use crate::protocol::{Refusal, Request, Response};

/// Copies of the manifest (and key envelope) placed at put time.
pub const MANIFEST_COPIES: usize = 6;

impl Files {
    /// Candidate holders for `key`: the peers the DHT lookup found closest (they answered
    /// it) and this node, nearest first; then, as a fallback for a lookup that came back
    /// short (under load, with dead peers about), the routing table's other peers, also
    /// nearest first. A blob's copies ([`Self::place_copies_via`]) go to the first
    /// [`MANIFEST_COPIES`] of them that accept it.
    pub(crate) async fn candidates(&self, key: &[u8]) -> Result<Vec<PeerId>, NetworkError> {
        let net = self.net();
        let started = std::time::Instant::now();
        let (closest, known) = tokio::join!(net.closest_peers(key.to_vec()), net.peers());
        self.metrics()
            .placement_lookup_seconds
            .observe(started.elapsed().as_secs_f64());
        let known = known.unwrap_or_default();
        let mut peers = match closest {
            Ok(peers) => peers,
            Err(NetworkError::Dht(e)) if !known.is_empty() => {
                debug!("closest-peers lookup failed ({e}); using the routing table");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        peers.push(net.peer_id());
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        sort_by_distance(&mut peers, key);
        let mut fallback: Vec<PeerId> = known
            .into_iter()
            .map(|p| p.peer_id)
            .filter(|p| seen.insert(*p))
            .collect();
        sort_by_distance(&mut fallback, key);
        peers.extend(fallback);
        Ok(peers)
    }

    /// The host (IP address) of each peer in the routing table, and of this node.
    async fn peer_hosts(&self) -> HashMap<PeerId, IpAddr> {
        let net = self.net();
        let (known, own) = tokio::join!(net.peers(), net.info());
        let mut hosts: HashMap<PeerId, IpAddr> = known
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.peer_id, host_of(&p.addresses)?)))
            .collect();
        if let Some(host) = own.ok().and_then(|i| host_of(&i.listen_addresses)) {
            hosts.insert(net.peer_id(), host);
        }
        hosts
    }

    /// A repair's placement of shards of `file` ([`Self::place_shards_via`]): each store a
    /// `StoreFor`, so the new holder binds the claim to the file (the owner's `rm` then
    /// drops it) or refuses it if it honoured the file's removal lately.
    pub(crate) async fn place_shards_for(
        &self,
        file: FileId,
        key: &[u8],
        shards: Vec<(ShardId, Bytes)>,
        exclude: &HashSet<PeerId>,
        unreachable: &Mutex<HashSet<PeerId>>,
    ) -> Result<(Vec<Option<PeerId>>, usize), NetworkError> {
        self.place_shards_via(key, shards, exclude, unreachable, move |peer, request| {
            let request = match request {
                Request::Store { id, bytes } => Request::StoreFor { file, id, bytes },
                other => other,
            };
            self.send(peer, request)
        })
        .await
    }

    /// The peers a stripe's shards go to, in the order they are tried (the first one per
    /// shard first): nearest to `key`, never a peer of `exclude`, six hosts before a
    /// second shard on one host, the peers `unreachable` names last. Also how many
    /// candidates the lookup found.
    pub(crate) async fn shard_candidates(
        &self,
        key: &[u8],
        exclude: &HashSet<PeerId>,
        unreachable: &Mutex<HashSet<PeerId>>,
    ) -> Result<(Vec<PeerId>, usize), NetworkError> {
        let mut candidates = self.candidates(key).await?;
        let found = candidates.len();
        candidates.retain(|p| !exclude.contains(p));
        // Six hosts before a second shard on one host (`domains.rs`), away from the
        // hosts of the stripe's remaining holders.
        let hosts = self.peer_hosts().await;
        let taken: HashSet<IpAddr> = exclude
            .iter()
            .filter_map(|p| hosts.get(p))
            .copied()
            .collect();
        let mut candidates = spread_over_hosts(candidates, &hosts, &taken);
        {
            // Peers that already failed during this put go last, not first.
            let bad = unreachable.lock().unwrap_or_else(|p| p.into_inner());
            candidates.sort_by_key(|p| bad.contains(p));
        }
        Ok((candidates, found))
    }

    /// Places each of `shards` on its own peer, nearest to `key` first, never on a peer of
    /// `exclude`; a peer that fails or refuses is replaced by the next nearest. Used by
    /// put (a whole stripe, `key` its first shard id) and by repair (the missing shards of
    /// a stripe, away from its remaining holders). Returns, per shard, the peer that
    /// stored it (`None` if candidates ran out) and how many candidates there were. Each
    /// `Store` is sent through `send` (a put's sends record what was stored, see
    /// `put.rs`; a repair's bind the claim to the file, [`Self::place_shards_for`]).
    pub(crate) async fn place_shards_via<S, F>(
        &self,
        key: &[u8],
        shards: Vec<(ShardId, Bytes)>,
        exclude: &HashSet<PeerId>,
        unreachable: &Mutex<HashSet<PeerId>>,
        send: S,
    ) -> Result<(Vec<Option<PeerId>>, usize), NetworkError>
    where
        S: Fn(PeerId, Request) -> F,
        F: Future<Output = Result<Response, NetworkError>>,
    {
        let (candidates, found) = self.shard_candidates(key, exclude, unreachable).await?;
        let mut next = 0usize;
        let mut placed: Vec<Option<PeerId>> = vec![None; shards.len()];
        let mut attempts = FuturesUnordered::new();
        let launch = |shard: usize, peer: PeerId| {
            let (id, bytes) = &shards[shard];
            // A new handle on the same buffer: no copy of the shard per attempt.
            let request = Request::Store {
                id: *id,
                bytes: bytes.clone(),
            };
            let attempt = send(peer, request);
            async move { (shard, peer, attempt.await) }
        };
        for shard in 0..shards.len() {
            let Some(&peer) = candidates.get(next) else {
                break;
            };
            next += 1;
            attempts.push(launch(shard, peer));
        }
        while let Some((shard, peer, result)) = attempts.next().await {
            match result {
                Ok(Response::Stored | Response::AlreadyHeld) => placed[shard] = Some(peer),
                other => {
                    match &other {
                        Ok(Response::Refused(Refusal::Full { used, max })) => {
                            info!(%peer, used, max, "peer is full; placing elsewhere");
                        }
                        Ok(response) => warn!(%peer, ?response, "peer refused a shard"),
                        Err(e) => {
                            warn!(%peer, "storing a shard failed: {e}");
                            mark_unreachable(unreachable, peer);
                        }
                    }
                    if let Some(&replacement) = candidates.get(next) {
                        next += 1;
                        attempts.push(launch(shard, replacement));
                    }
                }
            }
        }
        Ok((placed, found))
    }

    /// Stores one blob on up to [`MANIFEST_COPIES`] distinct peers nearest to `key`; the
    /// candidates of `held` hold it already and count without a store.
    pub(crate) async fn place_copies(
        &self,
        key: &[u8],
        request: &Request,
        held: &HashSet<PeerId>,
    ) -> Result<Vec<PeerId>, NetworkError> {
        self.place_copies_via(key, request, held, move |peer, request| {
            self.send(peer, request)
        })
        .await
    }

    /// [`Self::place_copies`], each store sent through `send` (a put's sends record what
    /// was stored, see `put.rs`).
    pub(crate) async fn place_copies_via<S, F>(
        &self,
        key: &[u8],
        request: &Request,
        held: &HashSet<PeerId>,
        send: S,
    ) -> Result<Vec<PeerId>, NetworkError>
    where
        S: Fn(PeerId, Request) -> F,
        F: Future<Output = Result<Response, NetworkError>>,
    {
        let candidates = self.candidates(key).await?;
        let mut stored = Vec::new();
        for chunk in candidates.chunks(MANIFEST_COPIES) {
            let need = MANIFEST_COPIES - stored.len();
            let (have, lack): (Vec<PeerId>, Vec<PeerId>) =
                chunk.iter().take(need).partition(|p| held.contains(p));
            stored.extend(have);
            let mut attempts: FuturesUnordered<_> = lack
                .into_iter()
                .map(|peer| {
                    let attempt = send(peer, request.clone());
                    async move { (peer, attempt.await) }
                })
                .collect();
            while let Some((peer, result)) = attempts.next().await {
                match result {
                    // A `StoreManifest`'s answer: the manifest is held, whatever became
                    // of the envelope beside it (the put counts those).
                    Ok(
                        Response::Stored | Response::AlreadyHeld | Response::ManifestStored { .. },
                    ) => stored.push(peer),
                    other => warn!(%peer, ?other, "manifest copy not stored"),
                }
            }
            if stored.len() >= MANIFEST_COPIES {
                break;
            }
        }
        Ok(stored)
    }
}

/// Records that `peer` failed during a put, so later placements try it last.
pub(super) fn mark_unreachable(unreachable: &Mutex<HashSet<PeerId>>, peer: PeerId) {
    unreachable
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(peer);
}
