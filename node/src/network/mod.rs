//! The libp2p swarm and the one task that owns it.
//!
//! TCP + Noise + Yamux; Identify, wired by hand into Kademlia's address book; Kademlia
//! under DataMesh's own protocol name, forced into server mode; the shard protocol
//! ([`crate::protocol`]); a connection limit. Everything else in the node talks to the
//! swarm through [`Network`], a cheap handle that sends [`Command`]s over a bounded
//! channel, each with a oneshot reply (the structure of libp2p's file-sharing example).
//! Inbound shard requests are served on blocking threads by an [`InboundHandler`], so
//! disk work never stalls the swarm. This file is the handle, its settings and errors;
//! `event_loop.rs` is the task.
//!
//! The swarm also carries libp2p's block list ([`allow_block_list::Behaviour`]), empty
//! unless a test sets it ([`Network::set_blocked_peers`], reachable only through the
//! test-fault debug API): a blocked peer's connections are closed and refused both
//! ways, and dials to it are denied at once, so Kademlia queries and shard requests
//! that would reach it fail immediately instead of waiting for a timeout. This is how
//! the fault suite partitions a testnet (every node shares 127.0.0.1, so there is no
//! kernel-level partition to make): a test hook, not a model of packet loss.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad;
use libp2p::request_response::{self, OutboundFailure, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, TransportError, allow_block_list, connection_limits,
    identify, noise, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::protocol::{PROTOCOL, Request, Response, ShardCodec};
use crate::records::PersistentStore;

mod event_loop;

use event_loop::EventLoop;

/// Kademlia protocol name: DataMesh nodes never join another network's DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/kad/1.0.0");
/// What Identify reports as the protocol version.
pub const IDENTIFY_VERSION: &str = "/datamesh/1.0.0";

/// Commands queued for the swarm task.
const COMMAND_QUEUE: usize = 256;
/// How often Kademlia re-runs a bootstrap.
const BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(60);
/// Most established connections.
const MAX_CONNECTIONS: u32 = 256;

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    request_timeout: Duration,
}

impl NetworkConfig {
    /// Listen on `listen` (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub fn new(listen: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            bootstrap: Vec::new(),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Peers to join through, each with its `/p2p/<peer id>` suffix. Default: none.
    pub fn with_bootstrap(mut self, peers: Vec<Multiaddr>) -> Self {
        self.bootstrap = peers;
        self
    }

    /// Deadline of one shard-protocol request. Default: 30 s.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

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

/// Serves inbound shard requests; runs on blocking threads.
pub trait InboundHandler: Send + Sync + 'static {
    /// Answers one request from `peer`. `Announce` never reaches it (the swarm task
    /// handles it).
    fn handle(&self, peer: PeerId, request: Request) -> Response;
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
}

/// Work for the swarm task.
#[derive(Debug)]
enum Command {
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

/// A handle to the swarm task. Cloning is cheap; when the last handle is dropped or
/// [`Network::shutdown`] is called, the task ends.
#[derive(Clone, Debug)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // First, so a denied connection or dial is refused before any other behaviour
    // sees it.
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<PersistentStore>,
    shards: request_response::Behaviour<ShardCodec>,
}

impl Network {
    /// Builds the swarm, starts listening, dials the bootstrap peers and spawns the
    /// swarm task on the current tokio runtime.
    ///
    /// # Errors
    /// [`NetworkError::Setup`] if the transport cannot be built or an address cannot be
    /// listened on.
    pub fn start(
        keypair: Keypair,
        store: PersistentStore,
        config: NetworkConfig,
        handler: Arc<dyn InboundHandler>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), NetworkError> {
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| NetworkError::Transport(Arc::new(e)))?
            .with_behaviour(|key| {
                let mut kad_config = kad::Config::new(KAD_PROTOCOL);
                kad_config.set_periodic_bootstrap_interval(Some(BOOTSTRAP_INTERVAL));
                let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
                // rust-libp2p starts in client mode until an external address is
                // confirmed; a DataMesh node always serves the DHT.
                kad.set_mode(Some(kad::Mode::Server));
                let limits = connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(MAX_CONNECTIONS))
                    .with_max_established_per_peer(Some(4))
                    .with_max_pending_incoming(Some(64));
                Behaviour {
                    blocked: allow_block_list::Behaviour::default(),
                    limits: connection_limits::Behaviour::new(limits),
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_VERSION.to_string(),
                        key.public(),
                    )),
                    kad,
                    shards: request_response::Behaviour::new(
                        [(PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(config.request_timeout)
                            .with_max_concurrent_streams(256),
                    ),
                }
            })
            .map_err(|e| match e {})?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetworkError::Listen {
                    addr: addr.clone(),
                    source: Arc::new(e),
                })?;
        }
        for addr in &config.bootstrap {
            match peer_of(addr) {
                Some(peer) => {
                    swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    if let Err(e) = swarm.dial(addr.clone()) {
                        warn!(%addr, "cannot dial bootstrap peer: {e}");
                    }
                }
                None => warn!(%addr, "bootstrap address has no /p2p/<peer id>: ignored"),
            }
        }
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let task = tokio::spawn(EventLoop::new(swarm, rx, handler).run());
        Ok((
            Self {
                commands: tx,
                peer_id,
            },
            task,
        ))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetworkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }

    /// Sends one shard-protocol request and waits for the answer (bounded by the
    /// request timeout).
    ///
    /// # Errors
    /// [`NetworkError::Request`] if the peer cannot be reached or does not answer in time.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, NetworkError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// The peers closest to `key` by XOR distance, found by an iterative DHT lookup
    /// (without this node).
    ///
    /// # Errors
    /// [`NetworkError::Dht`] if the lookup fails with no peers at all.
    pub async fn closest_peers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::ClosestPeers { key, reply })
            .await?
    }

    /// Announces in the DHT that this node provides `key`.
    ///
    /// # Errors
    /// [`NetworkError::Dht`] if the announcement reached no peer (the record is still kept
    /// locally and republished).
    pub async fn start_providing(&self, key: Vec<u8>) -> Result<(), NetworkError> {
        self.call(|reply| Command::StartProviding { key, reply })
            .await?
    }

    /// The peers that announced they provide `key`.
    ///
    /// # Errors
    /// [`NetworkError::Dht`] if the lookup fails.
    pub async fn providers(&self, key: Vec<u8>) -> Result<HashSet<PeerId>, NetworkError> {
        self.call(|reply| Command::GetProviders { key, reply })
            .await?
    }

    /// A snapshot of the swarm's state.
    ///
    /// # Errors
    /// [`NetworkError::Stopped`].
    pub async fn info(&self) -> Result<NetworkInfo, NetworkError> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Every peer in the routing table, with whether it is connected.
    ///
    /// # Errors
    /// [`NetworkError::Stopped`].
    pub async fn peers(&self) -> Result<Vec<PeerSummary>, NetworkError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Starts a Kademlia bootstrap now.
    ///
    /// # Errors
    /// [`NetworkError::Stopped`].
    pub async fn bootstrap(&self) -> Result<(), NetworkError> {
        self.commands
            .send(Command::Bootstrap)
            .await
            .map_err(|_| NetworkError::Stopped)
    }

    /// Test hook (the node exposes it only with test faults enabled): makes `peers` the
    /// set of blocked peers, replacing the previous set (empty: block nobody). Open
    /// connections to a newly blocked peer are closed; new ones are refused both ways
    /// and dials to it fail at once. Unblocked peers can connect again; their routing
    /// table entries were kept. Answers the blocked set, sorted.
    ///
    /// # Errors
    /// [`NetworkError::Stopped`].
    pub async fn set_blocked_peers(
        &self,
        peers: HashSet<PeerId>,
    ) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::SetBlocked { peers, reply })
            .await
    }

    /// Stops the swarm task. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}

/// The peer id at the end of a `/p2p/<id>` address.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::records::PersistentStoreConfig;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Answers every request with `Has(false...)`.
    struct Nothing;

    impl InboundHandler for Nothing {
        fn handle(&self, _peer: PeerId, request: Request) -> Response {
            match request {
                Request::Has { ids } => Response::Has(vec![false; ids.len()]),
                _ => Response::NotFound,
            }
        }
    }

    fn start(
        dir: &std::path::Path,
        bootstrap: Vec<Multiaddr>,
    ) -> Result<Network, Box<dyn std::error::Error>> {
        let keypair = Keypair::generate_ed25519();
        let store = PersistentStore::new(
            keypair.public().to_peer_id(),
            crate::db::open(dir)?,
            PersistentStoreConfig::default(),
        )?;
        let config = NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?])
            .with_bootstrap(bootstrap)
            // Longer than any wait below: a denied dial must fail on its own, not time out.
            .with_request_timeout(Duration::from_secs(120));
        let (net, _task) = Network::start(keypair, store, config, Arc::new(Nothing))?;
        Ok(net)
    }

    /// Polls `check` every 50 ms for up to 30 s.
    async fn wait_for(
        what: &str,
        mut check: impl AsyncFnMut() -> Result<bool, NetworkError>,
    ) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check().await? {
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn has() -> Request {
        Request::Has {
            ids: vec![datamesh_core::ShardId::of(b"x")],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocked_peers_are_cut_off_and_dials_denied_until_unblocked() -> TestResult {
        let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let a = start(da.path(), Vec::new())?;
        let mut listening = Vec::new();
        wait_for("a listen address", async || {
            listening = a.info().await?.listen_addresses;
            Ok(!listening.is_empty())
        })
        .await?;
        let addr = listening[0]
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(a.peer_id()));
        let b = start(db.path(), vec![addr])?;
        wait_for("a connection", async || {
            Ok(a.info().await?.connected_peers == 1)
        })
        .await?;
        assert!(matches!(
            a.request(b.peer_id(), has()).await,
            Ok(Response::Has(_))
        ));

        // Only a blocks b: the connection closes, and neither side gets through.
        let blocked = a.set_blocked_peers([b.peer_id()].into()).await?;
        assert_eq!(blocked, vec![b.peer_id()]);
        wait_for("the connection to close", async || {
            Ok(a.info().await?.connected_peers == 0 && b.info().await?.connected_peers == 0)
        })
        .await?;
        match a.request(b.peer_id(), has()).await {
            Err(NetworkError::Request { peer, reason }) => {
                assert_eq!(peer, b.peer_id());
                assert!(
                    reason.to_string().to_lowercase().contains("dial"),
                    "{reason}"
                );
            }
            other => panic!("a request to a blocked peer answered {other:?}"),
        }
        // b may dial (its list is empty), but a refuses the connection.
        assert!(b.request(a.peer_id(), has()).await.is_err());
        assert!(a.peers().await?.iter().any(|p| p.peer_id == b.peer_id()));
        // A lookup does not wait for the blocked peer either: it ends (with nobody).
        assert!(
            a.closest_peers(b"key".to_vec())
                .await
                .is_ok_and(|p| !p.contains(&b.peer_id()))
        );

        // Unblocking (the empty set): requests get through again, from the routing table.
        assert!(a.set_blocked_peers(HashSet::new()).await?.is_empty());
        assert!(matches!(
            a.request(b.peer_id(), has()).await,
            Ok(Response::Has(_))
        ));
        a.shutdown().await;
        b.shutdown().await;
        Ok(())
    }
}
