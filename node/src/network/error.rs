//! What can fail in the network, with the peer, address or DHT operation concerned.

use std::io;
use std::sync::Arc;

use libp2p::request_response::OutboundFailure;
use libp2p::{Multiaddr, PeerId, TransportError, kad, noise};

/// A network failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// The swarm task has stopped (the node is shutting down).
    #[error("the network has stopped")]
    Stopped,
    /// A request to a peer failed (unreachable, timed out, refused the protocol).
    #[error("request to peer {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        reason: RequestFailure,
    },
    /// The transport (TCP + Noise + Yamux) could not be built.
    #[error("network setup failed: {0}")]
    Transport(Arc<noise::Error>),
    /// An address could not be listened on.
    #[error("network setup failed: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        source: Arc<TransportError<io::Error>>,
    },
    /// A DHT operation failed.
    #[error("dht: {0}")]
    Dht(DhtError),
}

/// Why a request to a peer failed ([`NetworkError::Request`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The request-response exchange failed: the dial, a timeout, the connection, the
    /// protocol negotiation or the stream.
    #[error(transparent)]
    Outbound(Arc<OutboundFailure>),
    /// The peer's answer does not fit the request (a batch's outcomes not one per shard).
    #[error("the peer's answer does not fit the request")]
    BadAnswer,
    /// The local task that sent or served the request panicked or was cancelled.
    #[error("the task running the request failed: {0}")]
    Task(Arc<tokio::task::JoinError>),
}

impl From<tokio::task::JoinError> for RequestFailure {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Task(Arc::new(e))
    }
}

/// Which DHT operation failed ([`NetworkError::Dht`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The local record store refused the provider record (e.g. too many keys).
    #[error("cannot keep the provider record: {0}")]
    Store(kad::store::Error),
    /// Announcing a provider record reached no peer.
    #[error(transparent)]
    Announce(kad::AddProviderError),
    /// A provider lookup failed before it found anyone.
    #[error(transparent)]
    Providers(kad::GetProvidersError),
}
