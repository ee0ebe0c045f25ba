//! A one-stripe file's placement (a put of a small file): its six shards and its manifest
//! copies in one round, one request to each peer, and no `Announce` round after it.
//!
//! A put places a stripe's shards on the six peers nearest the stripe's key and the
//! manifest (with the key envelope) on the [`MANIFEST_COPIES`] peers nearest the file id;
//! then it asks every holder that did not keep the envelope (a holder of shards only) to
//! announce the file, one more round. A longer file's stripes go out as they are encoded,
//! before the manifest exists. A one-stripe file's manifest exists as soon as its stripe
//! does, so each remote holder of its shards gets the manifest copy with its shard, in one
//! `StoreWithManifest` (protocol 10): it keeps the envelope and provides the file as a
//! manifest holder does, so no holder is left to ask. The peers nearest the file id that
//! hold no shard get a `StoreManifest`, as for any file. A one-stripe file thus has its
//! manifest on up to twelve peers (on a small network, where the two sets overlap, on about
//! seven), a copy of a few KiB each. Whatever that round did not place is placed as any put
//! does ([`Files::place_shards_via`], [`Files::place_copies_via`]), away from the peers it
//! tried.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datamesh_core::{ShardId, Stripe, TOTAL_SHARDS};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::warn;

use super::engine::Files;
use super::placement::{MANIFEST_COPIES, mark_unreachable};
use super::put::{ManifestCopy, PutError, PutLedger, write_ahead};
use super::reach::Published;
use super::session::SessionLog;
use crate::protocol::{MAX_BLOB_LEN, ManifestOutcome, Request, Response, StoreOutcome};

/// What one request of the round carries: a shard (its index), the manifest copy, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Parts {
    shard: Option<usize>,
    manifest: bool,
}

impl Parts {
    /// What of these parts `answer` says is held.
    fn held(self, answer: &Response) -> (bool, bool) {
        let stored = |o: &StoreOutcome| !matches!(o, StoreOutcome::Refused(_));
        match (self.shard.is_some(), self.manifest, answer) {
            (true, true, Response::ShardAndManifest { shard, manifest }) => (
                stored(shard),
                matches!(manifest, ManifestOutcome::Stored { .. }),
            ),
            (true, false, Response::Stored | Response::AlreadyHeld) => (true, false),
            // A remote copy's answer, or this node's (its store takes the manifest alone).
            (
                false,
                true,
                Response::ManifestStored { .. } | Response::Stored | Response::AlreadyHeld,
            ) => (false, true),
            _ => (false, false),
        }
    }
}

impl Files {
    /// Places a one-stripe file: the stripe's shards and the manifest `copy`, each peer's
    /// parts in one request, then what that round left as a longer file's are placed.
    /// Returns the stripe's holders and the manifest's. Every send is recorded in
    /// `ledger`; the holders that kept the envelope are counted in `published`.
    pub(super) async fn place_one_stripe_file(
        &self,
        stripe: Stripe,
        log: Option<Arc<SessionLog>>,
        copy: &ManifestCopy,
        unreachable: &Mutex<HashSet<PeerId>>,
        ledger: &Arc<PutLedger>,
        published: &Mutex<Published>,
    ) -> Result<([PeerId; TOTAL_SHARDS], Vec<PeerId>), PutError> {
        write_ahead(log, &stripe).await?;
        let index = stripe.index();
        let ids = *stripe.ids();
        let shards: Vec<(ShardId, Bytes)> =
            ids.into_iter().zip(stripe.into_shared_shards()).collect();
        let none = HashSet::new();
        let (shard_peers, copy_peers) = tokio::join!(
            self.shard_candidates(ids[0].as_bytes(), &none, unreachable),
            self.candidates(copy.id.as_bytes()),
        );
        let (shard_peers, found) = shard_peers?;
        let copy_peers = copy_peers?;
        // The first peer each part would be tried on by the general path.
        let shard_to: Vec<PeerId> = shard_peers.iter().take(TOTAL_SHARDS).copied().collect();
        let copy_to: Vec<PeerId> = copy_peers.iter().take(MANIFEST_COPIES).copied().collect();
        let me = self.peer_id();
        // One request holds both within the frame limit (a one-stripe manifest is small).
        let fits = |shard: &Bytes| copy.bytes.len() + shard.len() <= MAX_BLOB_LEN;
        let mut round: Vec<(PeerId, Parts)> = Vec::new();
        for (i, &peer) in shard_to.iter().enumerate() {
            // This node's own copy of the manifest, if it is one of the nearest, goes to its
            // store on its own (below).
            let manifest = peer != me && fits(&shards[i].1);
            round.push((
                peer,
                Parts {
                    shard: Some(i),
                    manifest,
                },
            ));
        }
        for &peer in &copy_to {
            if !round.iter().any(|(p, parts)| *p == peer && parts.manifest) {
                round.push((
                    peer,
                    Parts {
                        shard: None,
                        manifest: true,
                    },
                ));
            }
        }

        let mut attempts: FuturesUnordered<_> = round
            .into_iter()
            .map(|(peer, parts)| {
                let answer = match parts.shard {
                    Some(i) => {
                        let (id, bytes) = (shards[i].0, shards[i].1.clone());
                        if parts.manifest {
                            let request = copy.with_shard(id, bytes);
                            self.send_manifest_copy(peer, request, ledger, published)
                                .left_future()
                        } else {
                            let request = Request::Store { id, bytes };
                            self.send_tracked(peer, request, Arc::clone(ledger))
                                .right_future()
                        }
                    }
                    None => self
                        .send_manifest_copy(peer, copy.request(), ledger, published)
                        .left_future(),
                };
                async move { (peer, parts, answer.await) }
            })
            .collect();
        let mut placed: [Option<PeerId>; TOTAL_SHARDS] = [None; TOTAL_SHARDS];
        let mut copies: Vec<PeerId> = Vec::new();
        while let Some((peer, parts, answer)) = attempts.next().await {
            let (shard_held, copy_held) = match &answer {
                Ok(response) => {
                    let held = parts.held(response);
                    if held != (parts.shard.is_some(), parts.manifest) {
                        warn!(%peer, ?response, "a small file's shard or manifest copy was refused");
                    }
                    held
                }
                Err(e) => {
                    warn!(%peer, "storing a small file's shard or manifest failed: {e}");
                    mark_unreachable(unreachable, peer);
                    (false, false)
                }
            };
            if let (Some(i), true) = (parts.shard, shard_held) {
                placed[i] = Some(peer);
            }
            if copy_held {
                copies.push(peer);
            }
        }

        // What the round did not place: the shards away from every peer it tried them on,
        // the copies on the next nearest peers, as for any file.
        let missing: Vec<usize> = (0..TOTAL_SHARDS).filter(|&i| placed[i].is_none()).collect();
        let tried: HashSet<PeerId> = shard_to.iter().copied().collect();
        let rest: Vec<(ShardId, Bytes)> = missing.iter().map(|&i| shards[i].clone()).collect();
        let shards_again = async {
            if rest.is_empty() {
                return Ok((Vec::new(), found));
            }
            self.place_shards_via(
                ids[0].as_bytes(),
                rest,
                &tried,
                unreachable,
                |peer, request| self.send_tracked(peer, request, Arc::clone(ledger)),
            )
            .await
        };
        // The copies of the round count for the nearest ones the general path wants; only
        // the ones it adds are new.
        let held: HashSet<PeerId> = copies.iter().copied().collect();
        let copies_again = async {
            if copy_to.iter().all(|p| held.contains(p)) {
                return Ok(Vec::new());
            }
            let request = copy.request();
            self.place_copies_via(copy.id.as_bytes(), &request, &held, |peer, request| {
                self.send_manifest_copy(peer, request, ledger, published)
            })
            .await
        };
        let (shards_again, copies_again) = tokio::join!(shards_again, copies_again);
        let (again, _) = shards_again?;
        for (&i, peer) in missing.iter().zip(again) {
            placed[i] = peer;
        }
        // Every peer that holds a copy, the round's and the general path's.
        let mut holders = copies;
        holders.extend(copies_again?.into_iter().filter(|p| !held.contains(p)));
        match placed {
            [Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)] => {
                Ok(([a, b, c, d, e, f], holders))
            }
            _ => Err(PutError::NotEnoughPeers {
                stripe: index,
                placed: placed.iter().flatten().count(),
                found,
            }),
        }
    }
}
