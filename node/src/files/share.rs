//! Sharing and re-wrapping: a new key envelope for one of this node's files (to the
//! active key, the keys it is shared with and any new recipient), sent to every holder;
//! no shard moves. And which of this node's keys open each of its files.

use datamesh_core::ecies::PublicKey;
use datamesh_core::{EnvelopeError, FileId, KeyEnvelope, KeyId};
use tokio::task::JoinError;

use super::engine::{Files, KeyAccess, KeyProviderError};
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
    /// Peers that accepted the new envelope.
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
        add: Vec<PublicKey>,
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
        add: Vec<PublicKey>,
        access: KeyAccess,
    ) -> Result<RewrapReport, RewrapError> {
        let keys = self
            .file_keys_for(access, "rewrap")
            .map_err(RewrapError::Keys)?;
        let catalog = self.catalog();
        let (Some(mut entry), Some(manifest)) = (catalog.get(&id)?, catalog.manifest(&id)?) else {
            return Err(RewrapError::NotFound(id));
        };
        let placement = catalog.placement(&id)?;
        let peers = self.file_peers(id, placement.as_ref()).await;
        let (key, _) = self
            .unlock(id, &manifest, &peers, &keys)
            .await
            .ok_or(RewrapError::NoKey(id))?;
        for pk in add {
            let hex = pk.to_string();
            if !entry.shared_with.contains(&hex) {
                entry.shared_with.push(hex);
            }
        }
        let mut recipients = vec![keys.active.public_key()];
        recipients.extend(
            entry
                .shared_with
                .iter()
                .filter_map(|h| h.parse::<PublicKey>().ok()),
        );
        entry.envelope_sequence += 1;
        let envelope =
            KeyEnvelope::seal(id, entry.envelope_sequence, &key, &recipients, &keys.active)
                .map_err(|source| RewrapError::Seal { file: id, source })?;
        let accepted = self.publish_envelope(&envelope, &peers).await;
        let catalog = catalog.clone();
        let saved = entry.clone();
        tokio::task::spawn_blocking(move || catalog.update(&saved))
            .await
            .map_err(|source| RewrapError::TaskFailed {
                task: "catalog write",
                source,
            })??;
        let remote = peers.iter().filter(|p| **p != self.peer_id()).count();
        Ok(RewrapReport {
            id,
            sequence: entry.envelope_sequence,
            recipients: envelope.wrapped().len(),
            peers: accepted,
            bytes_sent: (envelope.to_bytes().len() * remote) as u64,
        })
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
            // The current envelope: the newest. Holders keep the newest envelope of
            // each signing key, so one signed by a rotated-away key stays beside it.
            let envelopes: Vec<KeyEnvelope> = self
                .server()
                .envelopes(entry.id.as_bytes())
                .iter()
                .filter_map(|b| KeyEnvelope::from_bytes(b).ok())
                .filter(|e| e.file_id() == entry.id)
                .max_by_key(KeyEnvelope::sequence)
                .into_iter()
                .collect();
            let usable = keys
                .decrypt
                .iter()
                .filter(|key| {
                    envelopes.iter().any(|e| {
                        e.open([*key])
                            .ok()
                            .and_then(|dek| manifest.open_metadata(&dek))
                            .is_some()
                    })
                })
                .map(|key| KeyId::of(&key.public_key()))
                .collect();
            out.push((entry.id, usable));
        }
        Ok(out)
    }
}
