//! What the [`Network`](super::Network) handle asks the swarm task, what it answers,
//! and the handler of inbound shard requests.

use std::collections::HashSet;

use datamesh_core::FileId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::error::NetworkError;
use super::nat::Reachability;
use crate::protocol::{Request, Response};

/// Serves inbound shard requests; runs on blocking threads.
pub trait InboundHandler: Send + Sync + 'static {
    /// Answers one request from `peer`. For an `Announce` it only decides: `Done` means
    /// the announcement is honoured, and the swarm task then starts providing the file.
    fn handle(&self, peer: PeerId, request: Request) -> Response;

    /// The answer to a request that needs neither the disk nor a lock held for long (a
    /// `Fetch` of a small shard still in memory), given on the swarm task that received
    /// it, with no thread woken; `None` for any other, which [`Self::handle_and_provide`]
    /// then answers on a blocking thread. Must take microseconds, never block.
    fn answer_at_once(&self, _request: &Request) -> Option<Response> {
        None
    }

    /// As [`Self::handle`], also naming the file the swarm task is to start providing
    /// before the answer is sent: an honoured `Announce`'s; the node's server also names
    /// the file of a key envelope it kept as the file's first (a `PutEnvelope`'s,
    /// protocol 7, a `StoreManifest`'s, protocol 8, or a `StoreWithManifest`'s, protocol
    /// 10). A file is named only with an answer that honours the request; if the provide
    /// then fails, the swarm task answers `Failed(Dht)` for it instead.
    fn handle_and_provide(&self, peer: PeerId, request: Request) -> (Response, Option<FileId>) {
        let announced = match &request {
            Request::Announce { file, .. } => Some(*file),
            _ => None,
        };
        let response = self.handle(peer, request);
        let provide = announced.filter(|_| response == Response::Done);
        (response, provide)
    }
}

/// A peer as the network sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    /// Its id.
    pub peer_id: PeerId,
    /// Addresses known for it.
    pub addresses: Vec<Multiaddr>,
    /// Whether a connection is open now.
    pub connected: bool,
}

/// A snapshot of the swarm's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkInfo {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses it listens on.
    pub listen_addresses: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table_peers: usize,
    /// Whether peers can dial this node, as AutoNAT last found.
    pub reachability: Reachability,
    /// Relay reservations held (or being made) by a private node.
    pub relays: usize,
}

/// Work for the swarm task.
#[derive(Debug)]
pub(super) enum Command {
    Request {
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetworkError>>,
    },
    ClosestPeers {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<PeerId>, NetworkError>>,
    },
    StartProviding {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    GetProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<HashSet<PeerId>, NetworkError>>,
    },
    Info {
        reply: oneshot::Sender<NetworkInfo>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    Bootstrap,
    SetBlocked {
        peers: HashSet<PeerId>,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}
