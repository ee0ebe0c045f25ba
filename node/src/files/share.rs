//! Sharing and re-wrapping: a new key envelope for one of this node's files (to the
//! active key, the keys it is shared with and any new recipient), sent to every holder;
//! no shard moves. And which of this node's keys open each of its files.

use datamesh_core::{EnvelopeError, FileId, KeyEnvelope, KeyId, PolicyError, Recipient};
use libp2p::PeerId;
use tokio::task::JoinError;

use super::engine::{Files, KeyAccess, KeyProviderError};
use super::put::MIN_ENVELOPE_COPIES;
use crate::catalog::CatalogError;

/// What a rewrap (or share) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrapReport {
    /// The file.
    pub id: FileId,
    /// The new envelope's sequence number.
    pub sequence: u64,
    /// Keys the data key is now wrapped to.
    pub recipients: usize,
    /// Remote peers that accepted the new envelope.
    pub peers: usize,
    /// Bytes sent: envelopes only, no shard moves.
    pub bytes_sent: u64,
}

/// A rewrap (or share) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewrapError {
    /// The file is not in this node's catalog: only the node that put a file re-wraps it.
    #[error(
        "file {0} not found in this node's catalog: only the node that put a file can share or re-wrap it"
    )]
    NotFound(FileId),
    /// None of this node's keys opens the file's current envelope.
    #[error("no key of this node can open file {0}: it was not shared with this node's keys")]
    NoKey(FileId),
    /// No file-authority root of this node derives the file's authority key: only the
    /// owner (whose keystore made the file) can replace its envelope.
    #[error(
        "no file-authority key of this node signs for file {0}: only its owner can replace its key envelope"
    )]
    NotOwner(FileId),
    /// The `[security]` recipient policy refuses a recipient (no envelope was sent).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Too few holders kept the new envelope.
    #[error(
        "the new key envelope of file {file} (sequence {sequence}) reached only {stored} remote holders (need {MIN_ENVELOPE_COPIES}; {refused} refused it): run the command again, or `datamesh repair` if holders are lost"
    )]
    EnvelopeCopies {
        /// The file.
        file: FileId,
        /// The new envelope's sequence.
        sequence: u64,
        /// Remote holders that kept it.
        stored: usize,
        /// Holders that refused it.
        refused: usize,
    },
    /// The keystore could not give the keys.
    #[error("keystore: {0}")]
    Keys(#[source] KeyProviderError),
    /// The new key envelope could not be sealed (a recipient key it cannot wrap to).
    #[error("sealing the key envelope of file {file}: {source}")]
    Seal {
        /// The file.
        file: FileId,
        /// Why.
        source: EnvelopeError,
    },
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The blocking task that writes the catalog entry panicked or was cancelled.
    #[error("rewrap: the {task} task failed: {source}")]
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
        /// Why it ended.
        source: JoinError,
    },
}

/// Finding which keys open this node's files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyUsageError {
    /// The keystore could not give the keys.
    #[error("keystore: {0}")]
    Keys(#[source] KeyProviderError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Files {
    /// Re-wraps the data key of one of this node's files to the active file-encryption
    /// key (and every key it is shared with, plus `add`), and publishes the new envelope
    /// to every peer holding the file. No shard moves: only the envelope travels.
    ///
    /// # Errors
    /// [`RewrapError::NotFound`] if the file is not in this node's catalog,
    /// [`RewrapError::NoKey`] if no live key opens its current envelope.
    pub async fn rewrap(
        &self,
        id: FileId,
        add: Vec<Recipient>,
    ) -> Result<RewrapReport, RewrapError> {
        self.rewrap_with(id, add, KeyAccess::Live).await
    }

    /// As [`Files::rewrap`], opening the current envelope with the keys `access` allows
    /// (a file only a revoked version opens needs [`KeyAccess::WithRevoked`]). The new
    /// envelope is always wrapped to the active key, never to a revoked one.
    ///
    /// # Errors
    /// See [`Files::rewrap`].
    pub async fn rewrap_with(
        &self,
        id: FileId,
        add: Vec<Recipient>,
        access: KeyAccess,
    ) -> Result<RewrapReport, RewrapError> {
        let keys = self
            .file_keys_for(access, "rewrap")
            .map_err(RewrapError::Keys)?;
        let catalog = self.catalog();
        let (Some(mut entry), Some(manifest)) = (catalog.get(&id)?, catalog.manifest(&id)?) else {
            return Err(RewrapError::NotFound(id));
        };
        let authority = keys
            .authority_for(manifest.authority())
            .ok_or(RewrapError::NotOwner(id))?;
        let placement = catalog.placement(&id)?;
        let peers = self.envelope_targets(id, placement.as_ref()).await;
        let (key, _, held) = self
            .unlock(id, &manifest, &peers, &keys)
            .await
            .ok_or(RewrapError::NoKey(id))?;
        for pk in add {
            let hex = pk.to_string();
            if !entry.shared_with.contains(&hex) {
                entry.shared_with.push(hex);
            }
        }
        let policy = self.config().recipients;
        let mut recipients = vec![keys.owner_recipient(policy)?];
        recipients.extend(
            entry
                .shared_with
                .iter()
                .filter_map(|text| text.parse::<Recipient>().ok()),
        );
        policy.check(&recipients)?;
        // Above every sequence this node made and every one it saw verified: holders
        // refuse anything not newer than what they hold.
        entry.envelope_sequence = entry.envelope_sequence.max(held) + 1;
        let envelope =
            KeyEnvelope::seal_to(id, entry.envelope_sequence, &key, &recipients, &authority)
                .map_err(|source| RewrapError::Seal { file: id, source })?;
        let published = self.publish_envelope(&envelope, &manifest, &peers).await;
        let catalog = catalog.clone();
        let saved = entry.clone();
        tokio::task::spawn_blocking(move || catalog.update(&saved))
            .await
            .map_err(|source| RewrapError::TaskFailed {
                task: "catalog write",
                source,
            })??;
        if published.kept() < MIN_ENVELOPE_COPIES {
            return Err(RewrapError::EnvelopeCopies {
                file: id,
                sequence: entry.envelope_sequence,
                stored: published.kept(),
                refused: published.refused,
            });
        }
        let remote = peers.iter().filter(|p| **p != self.peer_id()).count();
        Ok(RewrapReport {
            id,
            sequence: entry.envelope_sequence,
            recipients: envelope.wrapped().len(),
            peers: published.kept(),
            bytes_sent: (envelope.to_bytes().len() * remote) as u64,
        })
    }

    /// Where a file's envelope goes: the peers that may hold its manifest (its providers,
    /// its recorded placement) and the peers closest to its id (where put and repair
    /// place manifest copies). Peers without the manifest refuse it, costing one round
    /// trip each.
    async fn envelope_targets(
        &self,
        id: FileId,
        placement: Option<&crate::catalog::Placement>,
    ) -> Vec<PeerId> {
        let (mut peers, closest) = tokio::join!(
            self.file_peers(id, placement),
            tokio::time::timeout(
                self.config().lookup_deadline,
                self.net().closest_peers(id.as_bytes().to_vec()),
            )
        );
        for peer in closest.ok().and_then(Result::ok).unwrap_or_default() {
            if !peers.contains(&peer) {
                peers.push(peer);
            }
        }
        peers
    }

    /// For every file of the catalog, the ids of this node's file-encryption keys (live
    /// ones; revoked ones too with [`KeyAccess::WithRevoked`]) that really open its
    /// current (newest) envelope (the wrapped key decrypts and opens the manifest's sealed
    /// metadata), so `keys destroy` can refuse to destroy the last key of a file.
    /// Blocking: reads the catalog and the keystore.
    ///
    /// # Errors
    /// [`KeyUsageError::Keys`] or [`KeyUsageError::Catalog`].
    pub fn key_usage(&self, access: KeyAccess) -> Result<Vec<(FileId, Vec<KeyId>)>, KeyUsageError> {
        let keys = self
            .file_keys_for(access, "key usage")
            .map_err(KeyUsageError::Keys)?;
        let mut out = Vec::new();
        for entry in self.catalog().list()? {
            let Some(manifest) = self.catalog().manifest(&entry.id)? else {
                continue;
            };
            let envelopes: Vec<KeyEnvelope> = self
                .server()
                .envelope(&entry.id)
                .and_then(|b| KeyEnvelope::from_verified_bytes(&b, &manifest.authority().key).ok())
                .filter(|e| e.file_id() == entry.id)
                .into_iter()
                .collect();
            let usable = keys
                .unwrap_keys()
                .filter(|key| {
                    envelopes.iter().any(|e| {
                        e.open([*key])
                            .ok()
                            .and_then(|dek| manifest.open_metadata(&dek))
                            .is_some()
                    })
                })
                .map(|key| key.key_id())
                .collect();
            out.push((entry.id, usable));
        }
        Ok(out)
    }
}
