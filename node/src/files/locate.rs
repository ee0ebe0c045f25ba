//! Locating a file: its manifest (catalog, providers, then the peers closest to its id),
//! a key envelope one of this node's keys opens, and which peers hold which shards.

use std::collections::HashSet;

use datamesh_core::{
    DATA_SHARDS, DataKey, FileId, KeyEnvelope, Manifest, Metadata, ShardId, TOTAL_SHARDS,
};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use smallvec::SmallVec;
use tracing::debug;

use super::engine::{FileKeys, Files};
use super::unlocked::Opened;
use crate::catalog::{CatalogError, Placement};
use crate::protocol::{MAX_IDS, Request, Response};

/// Closest-peers lookups run at once when locating the holders of stripes that the
/// file's providers did not cover.
const LOCATE_LOOKUPS: usize = 4;

/// Finding a file's manifest failed. Each operation turns it into its own error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FindError {
    /// No reachable peer has the manifest.
    #[error("file {0} not found: no reachable peer holds its manifest")]
    NotFound(FileId),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl FindError {
    /// Into an operation's own error, which has its own variants for both cases.
    pub(crate) fn into_error<E: From<CatalogError>>(
        self,
        not_found: impl FnOnce(FileId) -> E,
    ) -> E {
        match self {
            Self::NotFound(id) => not_found(id),
            Self::Catalog(e) => e.into(),
        }
    }
}

/// A file found: where it may be, and its manifest.
#[derive(Debug)]
pub(crate) struct Found {
    /// The placement recorded at put time (this node's files only).
    pub(crate) placement: Option<Placement>,
    /// The peers that may hold something of the file.
    pub(crate) peers: Vec<PeerId>,
    /// The manifest, checked against the file id.
    pub(crate) manifest: Manifest,
}

/// The peers that say they hold one shard: nearly always one, kept in place. As a
/// `Vec` each shard's list was an allocation of its own, 6,144 for a 1 GiB file, made
/// and freed at every opening (benches/PROFILE.md, session 32).
pub(crate) type HolderList = SmallVec<[PeerId; 1]>;

/// Per stripe, per shard index: the peers that say they hold it.
pub(crate) type Holders = Vec<[HolderList; TOTAL_SHARDS]>;

impl Files {
    /// The placement recorded at put time (for this node's files), the peers that may
    /// hold something of the file, and its manifest (from the catalog or those peers).
    pub(crate) async fn find(&self, id: FileId) -> Result<Found, FindError> {
        let placement = self.catalog().placement(&id)?;
        let mut peers = self.file_peers(id, placement.as_ref()).await;
        let manifest = match self.catalog().manifest(&id)? {
            Some(m) => m,
            None => match self.fetch_manifest(id, &peers).await {
                Some(m) => m,
                None => {
                    // No provider holds it (yet: announcements may still be walking the
                    // DHT). The put placed the manifest on the peers closest to the
                    // file id: ask those.
                    let closest = tokio::time::timeout(
                        self.config().lookup_deadline,
                        self.net().closest_peers(id.as_bytes().to_vec()),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                    let extra: Vec<PeerId> =
                        closest.into_iter().filter(|p| !peers.contains(p)).collect();
                    let manifest = self
                        .fetch_manifest(id, &extra)
                        .await
                        .ok_or(FindError::NotFound(id))?;
                    peers.extend(extra);
                    manifest
                }
            },
        };
        Ok(Found {
            placement,
            peers,
            manifest,
        })
    }

    /// One of this node's own files, found in its catalog alone: the manifest and the
    /// placement recorded at put time, the peers that placement names (and this node).
    /// No DHT walk: a reader asks those first and searches the network
    /// ([`Self::find`]) only if they fall short. `None` for a file not in the catalog.
    pub(crate) fn find_placed(&self, id: FileId) -> Result<Option<Found>, CatalogError> {
        let Some(placement) = self.catalog().placement(&id)? else {
            return Ok(None);
        };
        let Some(manifest) = self.catalog().manifest(&id)? else {
            return Ok(None);
        };
        let mut peers = placement.peers();
        peers.push(self.peer_id());
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        Ok(Some(Found {
            placement: Some(placement),
            peers,
            manifest,
        }))
    }

    /// Peers that may hold something of a file: its DHT providers, the placement
    /// recorded at put time, and this node.
    pub(crate) async fn file_peers(
        &self,
        id: FileId,
        placement: Option<&Placement>,
    ) -> Vec<PeerId> {
        let deadline = self.config().lookup_deadline;
        let mut peers: Vec<PeerId> =
            tokio::time::timeout(deadline, self.net().providers(id.as_bytes().to_vec()))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|p| p.into_iter().collect())
                .unwrap_or_default();
        if let Some(p) = placement {
            peers.extend(p.peers());
        }
        peers.push(self.peer_id());
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        peers
    }

    /// The first manifest one of `peers` serves that matches the file id.
    async fn fetch_manifest(&self, id: FileId, peers: &[PeerId]) -> Option<Manifest> {
        let blob = ShardId::from_bytes(*id.as_bytes());
        let deadline = self.config().lookup_deadline;
        let mut attempts = self.ask_all(peers, &Request::Fetch { id: blob }, deadline);
        while let Some((_, answer)) = attempts.next().await {
            if let Some(Response::Blob(bytes)) = answer
                && FileId::of_manifest(&bytes) == id
                && let Ok(manifest) = Manifest::from_bytes(&bytes)
            {
                return Some(manifest);
            }
        }
        None
    }

    /// Finds the newest key envelope that verifies under the manifest's authority key and
    /// that one of `keys` opens (this node's copy first; then every peer's, the highest
    /// sequence winning), and checks the key against the manifest's sealed metadata.
    /// Returns the data key, the metadata and the highest verified sequence seen; `None`
    /// if no key opens the file.
    pub(crate) async fn unlock(
        &self,
        id: FileId,
        manifest: &Manifest,
        peers: &[PeerId],
        keys: &FileKeys,
    ) -> Option<(DataKey, Metadata, u64)> {
        let authority = manifest.authority().key;
        let verified = |bytes: &[u8]| {
            KeyEnvelope::from_verified_bytes(bytes, &authority)
                .ok()
                .filter(|e| e.file_id() == id)
        };
        let try_open = |envelope: &KeyEnvelope| {
            let key = envelope.open(keys.unwrap_keys()).ok()?;
            let metadata = manifest.open_metadata(&key)?;
            Some((key, metadata))
        };
        // This node's own copy: the owner keeps the newest it made. The same bytes opened
        // with the same keys before open to the same key (`unlocked`).
        let local_bytes = self.server().envelope(&id);
        if let Some(bytes) = &local_bytes
            && let Some(opened) = keys.unlocked.get(id, bytes)
        {
            self.metrics().unlocks_remembered.inc();
            return Some((opened.key, opened.metadata, opened.sequence));
        }
        let local = local_bytes.as_deref().and_then(verified);
        if let (Some(bytes), Some(envelope)) = (&local_bytes, &local)
            && let Some((key, metadata)) = try_open(envelope)
        {
            let sequence = envelope.sequence();
            let opened = Opened {
                key: key.clone(),
                metadata: metadata.clone(),
                sequence,
            };
            keys.unlocked.insert(id, bytes, opened);
            return Some((key, metadata, sequence));
        }
        let deadline = self.config().lookup_deadline;
        let mut found: Vec<KeyEnvelope> = local.into_iter().collect();
        let mut asks = self.ask_all(peers, &Request::GetEnvelope { file: id }, deadline);
        while let Some((_, answer)) = asks.next().await {
            if let Some(Response::Envelopes(list)) = answer {
                found.extend(list.iter().filter_map(|b| verified(b)));
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.sequence()));
        let highest = found.first().map_or(0, KeyEnvelope::sequence);
        found
            .iter()
            .find_map(try_open)
            .map(|(key, metadata)| (key, metadata, highest))
    }

    /// Asks every candidate peer which of the file's shards it holds. Returns, per stripe
    /// and shard index, the peers that say they hold it, and the peers that answered.
    ///
    /// The candidates come from the file's DHT providers, which can miss a stripe's
    /// holders: a put returns while the holders' provider announcements are still
    /// walking the DHT, and a node keeps at most 20 providers per key. So a stripe with
    /// fewer than [`DATA_SHARDS`] holders found is looked up where the put placed it:
    /// the peers closest to the stripe's key (its first shard id), asked in turn.
    pub(crate) async fn locate(
        &self,
        manifest: &Manifest,
        peers: &[PeerId],
        placement: Option<&Placement>,
    ) -> (Holders, HashSet<PeerId>) {
        let stripes = manifest.stripes();
        let mut holders: Holders = (0..stripes.len()).map(|_| Default::default()).collect();
        let ids: Vec<ShardId> = stripes.iter().flatten().copied().collect();
        let mut asked: HashSet<PeerId> = peers.iter().copied().collect();
        let mut answered = HashSet::new();
        self.ask_has(peers, &ids, &mut holders, &mut answered).await;

        // The fallback: the closest peers of each short stripe's key, a few lookups at a
        // time, each bounded by the lookup deadline.
        let short: Vec<ShardId> = stripes
            .iter()
            .zip(&holders)
            .filter(|(_, row)| row.iter().filter(|h| !h.is_empty()).count() < DATA_SHARDS)
            .map(|(ids, _)| ids[0])
            .collect();
        if !short.is_empty() {
            let deadline = self.config().lookup_deadline;
            let net = self.net().clone();
            let found: Vec<PeerId> = futures::stream::iter(short.iter().copied())
                .map(|key| {
                    let net = net.clone();
                    async move {
                        tokio::time::timeout(deadline, net.closest_peers(key.as_bytes().to_vec()))
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default()
                    }
                })
                .buffer_unordered(LOCATE_LOOKUPS)
                .flat_map(futures::stream::iter)
                .collect()
                .await;
            let extra: Vec<PeerId> = found.into_iter().filter(|p| asked.insert(*p)).collect();
            debug!(
                stripes = short.len(),
                peers = extra.len(),
                "stripes short of holders: asking the peers closest to their keys"
            );
            self.ask_has(&extra, &ids, &mut holders, &mut answered)
                .await;
        }

        // Put the peer the placement names first: it is the one we expect to be fastest
        // to answer (and the only one, usually).
        if let Some(placement) = placement {
            for (stripe, row) in holders.iter_mut().enumerate() {
                for (index, list) in row.iter_mut().enumerate() {
                    if let Some(p) = placement.holder(stripe as u64, index)
                        && let Some(pos) = list.iter().position(|q| *q == p)
                    {
                        list.swap(0, pos);
                    }
                }
            }
        }
        (holders, answered)
    }

    /// Which peers hold which shards, to read a file: with a placement (this node's own
    /// files), each peer it names is asked only about the shards it names there, so every
    /// shard id is looked up once, where [`Self::locate`] asks every peer about every id
    /// (a 1 GiB file spread over 100 peers: 6,144 lookups, not 614,400; a 256 MiB file on
    /// the 7-node testnet: 1,536, not 10,752). Only if a stripe comes out short of four
    /// holders is the file located as [`Self::locate`] does it. Not for removing or
    /// re-placing copies, which must know every holder.
    pub(crate) async fn locate_to_read(
        &self,
        manifest: &Manifest,
        peers: &[PeerId],
        placement: Option<&Placement>,
    ) -> (Holders, HashSet<PeerId>) {
        let Some(named) = placement else {
            return self.locate(manifest, peers, None).await;
        };
        let stripes = manifest.stripes();
        let ids: Vec<ShardId> = stripes.iter().flatten().copied().collect();
        let asks = named.positions_by_peer(stripes.len());
        let mut holders: Holders = (0..stripes.len()).map(|_| Default::default()).collect();
        let mut answered = HashSet::new();
        self.ask_has_each(asks, &ids, &mut holders, &mut answered)
            .await;
        let short = holders
            .iter()
            .any(|row| row.iter().filter(|h| !h.is_empty()).count() < DATA_SHARDS);
        if short {
            debug!("a stripe is short of holders where the placement put them: asking every peer");
            return self.locate(manifest, peers, placement).await;
        }
        (holders, answered)
    }

    /// Asks `peers` which of `ids` (every shard of a file, stripe by stripe) they hold;
    /// adds each holder to `holders` and each peer that answered to `answered`.
    async fn ask_has(
        &self,
        peers: &[PeerId],
        ids: &[ShardId],
        holders: &mut [[HolderList; TOTAL_SHARDS]],
        answered: &mut HashSet<PeerId>,
    ) {
        // Put in the order each ask sorts its positions into, once: each sort then finds
        // them sorted already (a linear pass), not one full sort per peer.
        let (every, _) = ask_order((0..ids.len()).collect(), ids);
        let asks = peers.iter().map(|&peer| (peer, every.clone())).collect();
        self.ask_has_each(asks, ids, holders, answered).await;
    }

    /// Asks each peer of `asks` whether it holds the shards at its positions of `ids`
    /// (every shard of a file, stripe by stripe); adds each holder to `holders` and each
    /// peer that answered to `answered`.
    async fn ask_has_each(
        &self,
        asks: Vec<(PeerId, Vec<usize>)>,
        ids: &[ShardId],
        holders: &mut [[HolderList; TOTAL_SHARDS]],
        answered: &mut HashSet<PeerId>,
    ) {
        let deadline = self.config().lookup_deadline;
        let mut asks: FuturesUnordered<_> = asks
            .into_iter()
            .map(|(peer, positions)| {
                let files = self.clone();
                let (positions, unique) = ask_order(positions, ids);
                async move {
                    let mut flags = Vec::with_capacity(unique.len());
                    for batch in unique.chunks(MAX_IDS) {
                        let request = Request::Has {
                            ids: batch.to_vec(),
                        };
                        match tokio::time::timeout(deadline, files.send(peer, request)).await {
                            Ok(Ok(Response::Has(f))) if f.len() == batch.len() => flags.extend(f),
                            _ => return (peer, positions, unique, None),
                        }
                    }
                    (peer, positions, unique, Some(flags))
                }
            })
            .collect();
        while let Some((peer, positions, unique, flags)) = asks.next().await {
            let Some(flags) = flags else {
                debug!(%peer, "peer did not answer which shards it holds");
                continue;
            };
            answered.insert(peer);
            for (i, held) in answers(&positions, ids, &unique, &flags) {
                let list = &mut holders[i / TOTAL_SHARDS][i % TOTAL_SHARDS];
                if held && !list.contains(&peer) {
                    list.push(peer);
                }
            }
        }
    }
}

/// What one peer is asked about: `positions` (of `ids`) sorted by their ids, and those
/// ids once each. Peers refuse a `Has` that repeats an id (a file's shard ids repeat only
/// if two shards are equal); in order, the peer's lookups are fastest. Sorted positions
/// map the answers back in one pass ([`answers`]), not a search per position.
fn ask_order(mut positions: Vec<usize>, ids: &[ShardId]) -> (Vec<usize>, Vec<ShardId>) {
    positions.sort_unstable_by(|&a, &b| ids[a].cmp(&ids[b]));
    let mut unique: Vec<ShardId> = positions.iter().map(|&i| ids[i]).collect();
    unique.dedup();
    (positions, unique)
}

/// Each of `positions` with whether the peer holds its shard, from `flags`, the peer's
/// answer about `unique` (both as [`ask_order`] made them). A position past the answer
/// is not held.
fn answers<'a>(
    positions: &'a [usize],
    ids: &'a [ShardId],
    unique: &'a [ShardId],
    flags: &'a [bool],
) -> impl Iterator<Item = (usize, bool)> + 'a {
    let mut at = 0;
    positions.iter().map(move |&i| {
        while unique.get(at).is_some_and(|u| *u != ids[i]) {
            at += 1;
        }
        (i, flags.get(at).copied().unwrap_or(false))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position gets the answer about its own id, repeated ids included, whatever
    /// order the positions came in; a short answer leaves the rest not held.
    #[test]
    fn each_position_gets_its_ids_answer() {
        let id = |b: u8| ShardId::from_bytes([b; 32]);
        // Positions 1 and 4 share an id, as do 2 and 5.
        let ids = [id(9), id(3), id(7), id(1), id(3), id(7), id(5)];
        let held = |s: &ShardId| [3, 5, 9].contains(&s.as_bytes()[0]);
        let (positions, unique) = ask_order(vec![6, 4, 2, 0, 5, 1, 3], &ids);
        assert_eq!(unique, [id(1), id(3), id(5), id(7), id(9)]);
        let flags: Vec<bool> = unique.iter().map(held).collect();
        let mut got: Vec<(usize, bool)> = answers(&positions, &ids, &unique, &flags).collect();
        got.sort_unstable();
        let expected: Vec<(usize, bool)> = (0..ids.len()).map(|i| (i, held(&ids[i]))).collect();
        assert_eq!(got, expected);

        let short = &flags[..2];
        let mut got: Vec<(usize, bool)> = answers(&positions, &ids, &unique, short).collect();
        got.sort_unstable();
        let expected: Vec<(usize, bool)> = (0..ids.len())
            .map(|i| (i, held(&ids[i]) && ids[i] <= id(3)))
            .collect();
        assert_eq!(got, expected);
    }
}
