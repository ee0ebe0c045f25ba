//! Reaching peers: one request to one peer (this node served locally, without the
//! network), one request to many at once under a deadline, and the fan-outs every
//! operation shares (key envelopes, provider announcements).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datamesh_core::{FileId, KeyEnvelope, Manifest, ShardId};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tracing::warn;

use super::engine::Files;
use crate::network::NetworkError;
use crate::protocol::{InvalidReason, Refusal, Request, Response};
use crate::store::Durability;

/// Where a key envelope landed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Published {
    /// Peers that keep it now (or already held these bytes); this node's own copy is not
    /// among them.
    pub(crate) kept_by: Vec<PeerId>,
    /// Peers that hold the manifest but refused it (a newer or conflicting envelope
    /// held, a full store, a failure).
    pub(crate) refused: usize,
}

impl Published {
    /// How many peers keep it.
    pub(crate) fn kept(&self) -> usize {
        self.kept_by.len()
    }

    /// Counts `peer`'s answer to the envelope: kept (`None`), or refused and why. A peer
    /// that holds no manifest of the file is not among the holders that refused it.
    pub(crate) fn count(&mut self, peer: PeerId, refused: Option<&Refusal>) {
        match refused {
            None => self.kept_by.push(peer),
            Some(Refusal::Invalid(InvalidReason::UnknownFile)) => {}
            Some(_) => self.refused += 1,
        }
    }
}

impl Files {
    /// Sends a request to a peer, or serves it locally when the peer is this node.
    pub(crate) async fn send(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, NetworkError> {
        self.send_with(peer, request, Durability::Synced).await
    }

    /// As [`Self::send`]; a request this node serves itself is handled with its writes
    /// `own`: [`Durability::Deferred`] only for a put's stores, whose synced catalog
    /// write makes them durable before the put is acknowledged
    /// ([`crate::serve::Server::handle_with`]).
    pub(crate) async fn send_with(
        &self,
        peer: PeerId,
        request: Request,
        own: Durability,
    ) -> Result<Response, NetworkError> {
        let net = self.net();
        if peer != net.peer_id() {
            return net.request(peer, request).await;
        }
        if let Request::Announce { file, .. } = request {
            return match net.start_providing(file.as_bytes().to_vec()).await {
                Ok(()) | Err(NetworkError::Dht(_)) => Ok(Response::Done),
                Err(e) => Err(e),
            };
        }
        let server = Arc::clone(self.server());
        tokio::task::spawn_blocking(move || server.handle_with(peer, request, own).0)
            .await
            .map_err(|e| NetworkError::Request {
                peer,
                reason: e.into(),
            })
    }

    /// Sends `request` to every peer at once, each answer bounded by `deadline`; yields
    /// `(peer, answer)` as they come, `None` for a failure or a timeout.
    pub(crate) fn ask_all(
        &self,
        peers: &[PeerId],
        request: &Request,
        deadline: Duration,
    ) -> FuturesUnordered<impl Future<Output = (PeerId, Option<Response>)> + use<>> {
        peers
            .iter()
            .map(|&peer| {
                let files = self.clone();
                let request = request.clone();
                async move {
                    let answer = tokio::time::timeout(deadline, files.send(peer, request)).await;
                    (peer, answer.ok().and_then(Result::ok))
                }
            })
            .collect()
    }

    /// Keeps a key envelope of this node's file locally (checked against `manifest`) and
    /// sends it to every other peer of `peers`. Peers that hold no manifest of the file
    /// refuse it (`UnknownFile`) and are not counted either way.
    pub(crate) async fn publish_envelope(
        &self,
        envelope: &KeyEnvelope,
        manifest: &Manifest,
        peers: &[PeerId],
    ) -> Published {
        let bytes = envelope.to_bytes();
        let me = self.peer_id();
        let remote: Vec<PeerId> = peers.iter().copied().filter(|p| *p != me).collect();
        // The local copy is written while the remote ones are sent (each is a synced
        // write: one round, not two).
        let (_, published) = tokio::join!(
            self.keep_own_envelope(manifest, bytes.clone(), Durability::Synced),
            self.publish_envelope_bytes(bytes, &remote)
        );
        published
    }

    /// Keeps an envelope of this node's own file here, for its own reads (put, share,
    /// rewrap), written as `durability` says
    /// ([`crate::serve::Server::keep_own_envelope`]). A failure is logged: the remote
    /// copies are what those operations count.
    pub(crate) async fn keep_own_envelope(
        &self,
        manifest: &Manifest,
        bytes: Vec<u8>,
        durability: Durability,
    ) {
        let server = Arc::clone(self.server());
        let manifest = manifest.clone();
        let file = manifest.file_id();
        let kept = tokio::task::spawn_blocking(move || {
            server.keep_own_envelope(&manifest, &bytes, durability)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|kept| kept.map_err(|e| e.to_string()));
        if let Err(e) = kept {
            warn!(%file, "keeping the new envelope locally failed: {e}");
        }
    }

    /// Sends a key envelope's wire form to every peer of `peers` (this node's own server
    /// answers like any peer). Envelopes are signed and opaque: no key is needed to pass
    /// one on.
    pub(crate) async fn publish_envelope_bytes(
        &self,
        bytes: Vec<u8>,
        peers: &[PeerId],
    ) -> Published {
        let request = Request::PutEnvelope { bytes };
        peers
            .iter()
            .map(|&peer| {
                let files = self.clone();
                let request = request.clone();
                async move { (peer, files.send(peer, request).await) }
            })
            .collect::<FuturesUnordered<_>>()
            .fold(Published::default(), |mut out, (peer, answer)| {
                match answer {
                    Ok(Response::Done) => out.count(peer, None),
                    Ok(Response::Refused(refusal)) => out.count(peer, Some(&refusal)),
                    _ => {}
                }
                std::future::ready(out)
            })
            .await
    }

    /// Asks every holder to announce the file in the DHT, each naming the blob this node
    /// stored there for it (a holder honours only that). Returns how many agreed.
    pub(crate) async fn announce(&self, id: FileId, holders: &HashMap<PeerId, ShardId>) -> usize {
        let requests = holders
            .iter()
            .map(|(&peer, &held)| (peer, Request::Announce { file: id, held }));
        self.count_done(requests).await
    }

    /// Sends each request to its peer, all at once, and waits for every answer (each
    /// bounded by the network's request timeout). Returns how many answered `Done`.
    async fn count_done(&self, requests: impl IntoIterator<Item = (PeerId, Request)>) -> usize {
        requests
            .into_iter()
            .map(|(peer, request)| {
                let files = self.clone();
                async move { files.send(peer, request).await }
            })
            .collect::<FuturesUnordered<_>>()
            .filter(|r| std::future::ready(matches!(r, Ok(Response::Done))))
            .count()
            .await
    }
}
