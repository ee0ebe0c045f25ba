//! The test-fault routes (`/v1/debug/...`), served only by a node run with test faults.

use serde::{Deserialize, Serialize};

/// What `POST /v1/debug/corrupt-shard` answers: the shard whose stored bytes were flipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptedShard {
    /// The shard's id (hex).
    pub shard: String,
    /// Its file, when it was chosen by file (`null` when given by shard id).
    pub file: Option<String>,
    /// Its stripe, when chosen by file.
    pub stripe: Option<u64>,
    /// Its index in the stripe, when chosen by file.
    pub index: Option<usize>,
    /// The node that held it.
    pub peer_id: String,
}

/// The body of `POST /v1/debug/block-peers`: exactly the peers to block (`[]`: none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPeers {
    /// Peer ids.
    pub peers: Vec<String>,
}

/// What `POST /v1/debug/block-peers` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedPeers {
    /// The peers now blocked.
    pub blocked: Vec<String>,
    /// The node that blocks them.
    pub peer_id: String,
}
