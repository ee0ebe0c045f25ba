//! What can stop a check or a repair. A stripe that cannot be repaired is not an error
//! of the repair: the report says so (its `after` state and `error`).

use datamesh_core::{FileId, RebuildError};
use tokio::task::JoinError;

use crate::catalog::CatalogError;
use crate::files::FindError;
use crate::network::NetworkError;

/// A check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No reachable peer has the manifest.
    #[error("file {0} not found: no reachable peer holds its manifest")]
    NotFound(FileId),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl From<FindError> for CheckError {
    fn from(e: FindError) -> Self {
        e.into_error(Self::NotFound)
    }
}

/// A repair failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// No reachable peer has the manifest.
    #[error("file {0} not found: no reachable peer holds its manifest")]
    NotFound(FileId),
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The blocking task that records the new placement panicked or was cancelled.
    #[error("repair of file {file}: the {task} task failed: {source}")]
    TaskFailed {
        /// The file.
        file: FileId,
        /// What the task was doing.
        task: &'static str,
        /// Why it ended.
        source: JoinError,
    },
}

impl From<FindError> for RepairError {
    fn from(e: FindError) -> Self {
        e.into_error(Self::NotFound)
    }
}

/// Why one stripe's repair did not reach full health. Its message is the stripe
/// report's `error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StripeRepairError {
    /// The manifest has no layout for the stripe.
    #[error("stripe {stripe} is not in the manifest")]
    NotInManifest {
        /// Stripe index.
        stripe: u64,
    },
    /// Rebuilding the missing shards failed (fewer than four intact shards, ...).
    #[error("stripe {stripe}: {source}")]
    Rebuild {
        /// Stripe index.
        stripe: u64,
        /// Why.
        source: RebuildError,
    },
    /// The blocking task that rebuilds the shards panicked or was cancelled.
    #[error("stripe {stripe}: the rebuild task failed: {source}")]
    TaskFailed {
        /// Stripe index.
        stripe: u64,
        /// Why it ended.
        source: JoinError,
    },
    /// Finding peers to place the rebuilt shards on failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// Too few other live peers took the rebuilt shards.
    #[error(
        "stripe {stripe}: only {placed} of the {missing} missing shards could be placed on other live peers ({found} peers found): repair needs more reachable peers with free space"
    )]
    NotEnoughPeers {
        /// Stripe index.
        stripe: u64,
        /// Shards placed.
        placed: usize,
        /// Shards missing.
        missing: usize,
        /// Distinct peers found (this node included).
        found: usize,
    },
    /// The owner removed the file meanwhile (this node honoured the removal): nothing
    /// more is placed.
    #[error("stripe {stripe}: the file was removed by its owner during the repair")]
    Removed {
        /// Stripe index.
        stripe: u64,
    },
}
