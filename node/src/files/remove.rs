//! The owner's signed orders about its files (`signed_order`: a removal, a lease
//! renewal; `datamesh_core::OwnerOrder`), and removal.
//!
//! Removal (`datamesh rm`): the owner signs a removal of one of its files with the file's
//! authority key and sends it, with the manifest, to every peer that may hold a part of
//! it (providers, the placement, the peers closest to the file id, every holder a `Has`
//! finds). Each holder checks the signature against the manifest and drops the owner's
//! claims and the claims bound to the file, the blobs no claim is left on and the key
//! envelope (`crate::serve`). Then the catalog forgets the file. A holder that is
//! offline keeps its copies until their lease ends.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datamesh_core::{FileId, Manifest, OrderKind, OwnerOrder, Removal};
use futures::stream::StreamExt;
use libp2p::PeerId;
use tokio::task::JoinError;
use tracing::{info, warn};

use super::engine::{Files, KeyProviderError};
use crate::catalog::CatalogError;
use crate::network::NetworkError;
use crate::protocol::{Refusal, Request, Response};

/// Removals sent at once.
const REMOVALS_IN_FLIGHT: usize = 32;
/// Deadline of each peer's answer.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(10);
/// Tries of an owner's order a holder answers `Busy` (its sender is over its order
/// budget there: `crate::serve`), and the wait before each retry.
const ORDER_TRIES: u32 = 8;
const ORDER_RETRY_WAIT: Duration = Duration::from_millis(250);

/// What a removal did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveReport {
    /// The file, gone from the catalog.
    pub file: FileId,
    /// Peers asked (every possible holder found).
    pub asked: u64,
    /// Peers that confirmed (they dropped what they held of it, or held nothing).
    pub confirmed: u64,
    /// Peers that refused or did not answer (their copies end with their lease).
    pub failed: u64,
}

/// A removal failed; nothing was sent and the file is still in the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The file is not in this node's catalog.
    #[error(
        "file {0} not found in this node's catalog: only the node that put a file can remove it"
    )]
    NotFound(FileId),
    /// None of this node's authority roots derives the file's authority key.
    #[error("file {0} was not put with this node's keys: only its owner can remove it")]
    NotOwner(FileId),
    /// The keys could not be read.
    #[error("remove: {0}")]
    Keys(#[from] KeyProviderError),
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A blocking task (a catalog read or write) panicked or was cancelled.
    #[error("remove: the {task} task failed: {source}")]
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
        /// Why it ended.
        source: JoinError,
    },
}

impl Files {
    /// Removes one of this node's files from the network (see the module docs).
    ///
    /// # Errors
    /// [`RemoveError`]; on any error nothing was sent and the catalog is unchanged.
    pub async fn remove(&self, id: FileId) -> Result<RemoveReport, RemoveError> {
        let catalog = self.catalog().clone();
        let (entry, manifest, placement) = tokio::task::spawn_blocking(move || {
            Ok::<_, CatalogError>((
                catalog.get(&id)?,
                catalog.manifest(&id)?,
                catalog.placement(&id)?,
            ))
        })
        .await
        .map_err(|source| RemoveError::TaskFailed {
            task: "catalog read",
            source,
        })??;
        let (Some(_), Some(manifest)) = (entry, manifest) else {
            return Err(RemoveError::NotFound(id));
        };
        let removal: Removal = self
            .signed_order(&manifest)?
            .ok_or(RemoveError::NotOwner(id))?;
        let issued_at = removal.issued_at();

        // Every peer that may hold a part: providers, placement, this node, the peers
        // closest to the file id (manifest copies), and every holder found by a `Has`.
        let mut peers = self.file_peers(id, placement.as_ref()).await;
        let closest = tokio::time::timeout(
            self.config().lookup_deadline,
            self.net().closest_peers(id.as_bytes().to_vec()),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        peers.extend(closest);
        let (holders, _) = self.locate(&manifest, &peers, placement.as_ref()).await;
        peers.extend(holders.iter().flatten().flatten().copied());
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));

        let request = Request::RemoveFile {
            manifest: manifest.to_bytes().into(),
            issued_at,
            signature: removal.signature().to_vec(),
        };
        let asked = peers.len() as u64;
        let confirmed = self.send_removals(peers, request).await;
        let catalog = self.catalog().clone();
        tokio::task::spawn_blocking(move || catalog.remove(&id))
            .await
            .map_err(|source| RemoveError::TaskFailed {
                task: "catalog write",
                source,
            })??;
        info!(file = %id, asked, confirmed, "file removed");
        Ok(RemoveReport {
            file: id,
            asked,
            confirmed,
            failed: asked - confirmed,
        })
    }

    /// The owner's order of kind `K` about the file of `manifest`, signed now with the
    /// file's authority key; `None` when no root of this node derives that key (not this
    /// owner's file).
    ///
    /// # Errors
    /// [`KeyProviderError`]: the keys could not be read, or signing failed (probability
    /// about 2^-256).
    pub(crate) fn signed_order<K: OrderKind>(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<OwnerOrder<K>>, KeyProviderError> {
        let keys = self.file_keys()?;
        let Some(key) = keys.authority_for(manifest.authority()) else {
            return Ok(None);
        };
        drop(keys);
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        OwnerOrder::sign(manifest.file_id(), issued_at, &key)
            .map(Some)
            .map_err(KeyProviderError::new)
    }

    /// Sends an owner's order (`RemoveFile`, `RenewLease`) to `peer`, again after a wait
    /// while it answers `Busy` (this node is over its order budget there: an owner with
    /// many files renews faster than a holder checks orders), at most [`ORDER_TRIES`]
    /// times.
    ///
    /// # Errors
    /// [`NetworkError`] of the last try.
    pub(crate) async fn send_order(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, NetworkError> {
        let mut tries = 1;
        loop {
            let answer = self.send(peer, request.clone()).await;
            if tries >= ORDER_TRIES || !matches!(answer, Ok(Response::Refused(Refusal::Busy))) {
                return answer;
            }
            tries += 1;
            tokio::time::sleep(ORDER_RETRY_WAIT).await;
        }
    }

    /// Sends the removal to every peer, concurrently and each bounded in time; returns
    /// how many confirmed.
    async fn send_removals(&self, peers: Vec<PeerId>, request: Request) -> u64 {
        futures::stream::iter(peers)
            .map(|peer| {
                let files = self.clone();
                let request = request.clone();
                async move {
                    match tokio::time::timeout(REMOVAL_DEADLINE, files.send_order(peer, request))
                        .await
                    {
                        Ok(Ok(Response::Done)) => 1,
                        other => {
                            warn!(%peer, "a holder did not confirm a removal: {other:?}");
                            0
                        }
                    }
                }
            })
            .buffer_unordered(REMOVALS_IN_FLIGHT)
            .fold(0, |n, ok| async move { n + ok })
            .await
    }
}
