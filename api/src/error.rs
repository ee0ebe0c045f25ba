//! Error answers: the body the node sends, and what the client makes of a failed call.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What went wrong, as a machine name; each kind has one HTTP status ([`ErrorKind::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Missing or wrong bearer token (401).
    Unauthorized,
    /// A file or shard id that does not parse (400).
    BadId,
    /// A public key that does not parse (400).
    BadKey,
    /// A query parameter out of range (400).
    BadQuery,
    /// A request body that does not parse (400).
    BadBody,
    /// Input the pipeline refuses (400).
    Input,
    /// A `Range` outside the file, or one the node does not serve (416).
    BadRange,
    /// The node holds no key that opens the file (403).
    NoKey,
    /// No such file or shard (404).
    NotFound,
    /// The shards do not decode to the file (422).
    Integrity,
    /// Too few peers to place the file (503).
    NotEnoughPeers,
    /// Too few shards reachable to read the file (503).
    InsufficientShards,
    /// The swarm did not answer (503).
    Network,
    /// The keystore failed (500).
    Keystore,
    /// The catalog failed (500).
    Catalog,
    /// The shard store failed (500).
    Store,
    /// Anything else (500).
    Internal,
    /// Set by the client, never sent: the answer had no error body.
    Http,
}

impl ErrorKind {
    /// The HTTP status the node answers with.
    pub fn status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::BadId | Self::BadKey | Self::BadQuery | Self::BadBody | Self::Input => 400,
            Self::NoKey => 403,
            Self::BadRange => 416,
            Self::NotFound => 404,
            Self::Integrity => 422,
            Self::NotEnoughPeers | Self::InsufficientShards | Self::Network => 503,
            Self::Keystore | Self::Catalog | Self::Store | Self::Internal | Self::Http => 500,
        }
    }
}

/// The body of every error answer: `{"error": "<one line>", "kind": "<machine name>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// One line for a person.
    pub error: String,
    /// For programs.
    pub kind: ErrorKind,
}

/// A client error: the node's own message when it answered, otherwise why it could not
/// be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node is not running (or not at this address).
    #[error("cannot reach the node's API at {addr}: {reason} (is `datamesh node run` running?)")]
    Unreachable {
        /// The API address tried.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// What went wrong.
        kind: ErrorKind,
        /// The node's one-line message.
        message: String,
    },
    /// The transfer broke off (the node failed mid-stream), or an answer did not parse.
    #[error("transfer interrupted: {0}")]
    Interrupted(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_snake_case_names() -> Result<(), serde_json::Error> {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error": "no such file", "kind": "not_found"}"#)?;
        assert_eq!(body.kind, ErrorKind::NotFound);
        assert_eq!(body.kind.status(), 404);
        assert_eq!(
            serde_json::to_value(ErrorKind::InsufficientShards)?,
            "insufficient_shards"
        );
        Ok(())
    }
}
