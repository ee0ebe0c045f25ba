//! The libp2p swarm and the one task that owns it.
//!
//! TCP + Noise + Yamux and QUIC, chosen by config (`transport.rs`); NAT traversal
//! (AutoNAT, relay, DCUtR: `nat.rs`); Identify, wired by hand into Kademlia's address book; Kademlia
//! under DataMesh's own protocol name, forced into server mode; the shard protocol
//! ([`crate::protocol`]); connection and stream limits. Everything else in the node talks to the
//! swarm through [`Network`], a cheap handle that sends commands over a bounded
//! channel, each with a oneshot reply (the structure of libp2p's file-sharing example).
//! Inbound shard requests are served on blocking threads by an [`InboundHandler`], so
//! disk work never stalls the swarm.
//!
//! Parts: this file is the handle ([`Network`], [`NetworkConfig`]); `swarm.rs` builds
//! the swarm (transport and behaviours); `event_loop.rs` is the task that owns it;
//! `command.rs` is what the two say to each other; `error.rs` what fails.
//!
//! Inbound work is bounded before it is read: connections per peer and in all, streams
//! per connection, and the bytes of inbound requests and their answers per peer and in
//! total (the codec's [`InboundBudget`], answered `Busy` when used up); see
//! ARCHITECTURE.md, "Inbound work and its worst-case memory". A peer caught sending
//! wrong bytes, bad frames or forged owner's orders, or over its share, earns strikes (`accounting.rs`,
//! [`PeerPolicy`]); at the limit it is blocked for a while, then let back.
//!
//! The swarm carries libp2p's block list ([`libp2p::allow_block_list::Behaviour`]) for
//! those blocks and for a test hook ([`Network::set_blocked_peers`], reachable only
//! through the test-fault debug API); the two sets are kept apart, a peer is blocked
//! while it is in either. A blocked peer's connections are closed and refused both
//! ways, and dials to it are denied at once, so Kademlia queries and shard requests
//! that would reach it fail immediately instead of waiting for a timeout. This is how
//! the fault suite partitions a testnet (every node shares 127.0.0.1, so there is no
//! kernel-level partition to make): a test hook, not a model of packet loss.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::KBucketKey;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::metrics::Metrics;
use crate::protocol::{DEFAULT_NODE_BUDGET, DEFAULT_PEER_BUDGET, InboundBudget, Request, Response};
use crate::records::PersistentStore;

mod accounting;
mod addresses;
mod batching;
mod census;
mod command;
mod error;
mod event_loop;
mod nat;
mod shards;
mod swarm;
mod transport;

pub use accounting::{MAX_TRACKED_PEERS, Offence, PeerPolicy};
pub use addresses::{is_loopback, is_unspecified};
use command::Command;
pub use command::{InboundHandler, NetworkInfo, PeerSummary};
pub use error::{DhtError, NetworkError, RequestFailure};
use event_loop::EventLoop;
pub use nat::{MAX_RELAYS, RELAY_LIMITS, Reachability, is_relayed};
pub use swarm::{IDENTIFY_VERSION, KAD_PROTOCOL};
pub use transport::Transports;

/// The limits that bound inbound work, for the worst-case memory in ARCHITECTURE.md (and
/// the test that holds it).
pub mod limits {
    pub use super::event_loop::{MAX_BACKGROUND_PROVIDES, MAX_INBOUND_IN_FLIGHT};
    pub use super::swarm::{
        MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, MAX_SHARD_STREAMS, MAX_STREAMS_PER_CONNECTION,
    };
}

/// Sorts `peers` by the XOR distance of their Kademlia keys to `key`, nearest first: the
/// order of the DHT's closest-peers answers and of the responsible-peer rule. The one
/// definition of that order (placement, the census, network repair).
pub(crate) fn sort_by_distance(peers: &mut [PeerId], key: &[u8]) {
    let target = KBucketKey::new(key.to_vec());
    peers.sort_by_cached_key(|p| KBucketKey::from(*p).distance(&target));
}

/// Commands queued for the swarm task.
const COMMAND_QUEUE: usize = 256;
/// Reports of bad frames queued for the swarm task's accounting (more are dropped).
const BAD_FRAME_QUEUE: usize = 256;

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    listen: Vec<Multiaddr>,
    transports: Transports,
    external: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    request_timeout: Duration,
    peer_budget: usize,
    node_budget: usize,
    exact_budget: bool,
    peer_policy: PeerPolicy,
    metrics: Option<Arc<Metrics>>,
}

impl NetworkConfig {
    /// Listen on `listen` (e.g. `/ip4/127.0.0.1/tcp/0`).
    pub fn new(listen: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            transports: Transports::default(),
            external: Vec::new(),
            bootstrap: Vec::new(),
            request_timeout: Duration::from_secs(30),
            peer_budget: DEFAULT_PEER_BUDGET,
            node_budget: DEFAULT_NODE_BUDGET,
            exact_budget: false,
            peer_policy: PeerPolicy::default(),
            metrics: None,
        }
    }

    /// The transports listened and dialled on.
    pub fn transports(&self) -> Transports {
        self.transports
    }

    /// Whether a listen address is on every interface (0.0.0.0, ::): libp2p then reports
    /// one address per interface, one after another.
    pub fn listens_on_all_interfaces(&self) -> bool {
        self.listen.iter().any(is_unspecified)
    }

    /// Bytes of inbound shard requests (and of the answers to them) held at once: per
    /// peer (at least [`MIN_PEER_BUDGET`](crate::protocol::MIN_PEER_BUDGET), the largest
    /// request while it decodes) and for all peers together. A request beyond either is
    /// answered `Busy` without its body being kept. Default: 64 MiB per peer, 256 MiB in
    /// all.
    pub fn with_inbound_budget(mut self, per_peer: usize, total: usize) -> Self {
        self.peer_budget = per_peer;
        self.node_budget = total;
        self.exact_budget = false;
        self
    }

    /// Test-only: as [`Self::with_inbound_budget`] without the per-peer floor, so a test
    /// can make small requests run over it.
    pub fn with_exact_inbound_budget_for_test(mut self, per_peer: usize, total: usize) -> Self {
        self.peer_budget = per_peer;
        self.node_budget = total;
        self.exact_budget = true;
        self
    }

    /// When a misbehaving peer is blocked, and for how long. Default:
    /// [`PeerPolicy::default`] (16 strikes, 10 minutes).
    pub fn with_peer_policy(mut self, policy: PeerPolicy) -> Self {
        self.peer_policy = policy;
        self
    }

    /// Where the network counts refusals, strikes and blocks. Default: metrics of its own
    /// that nobody reads.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Addresses at which other machines reach this node (e.g. a router's forwarded
    /// port), advertised besides its non-loopback listen addresses (see
    /// `network/addresses.rs`). Default: none.
    pub fn with_external_addresses(mut self, external: Vec<Multiaddr>) -> Self {
        self.external = external;
        self
    }

    /// The transports to listen and dial on: each listen address is listened on with
    /// every one of them (its host and port), and only peer addresses of them are kept
    /// and dialled. Default: [`Transports::TCP`].
    pub fn with_transports(mut self, transports: Transports) -> Self {
        self.transports = transports;
        self
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

/// A handle to the swarm task. Cloning is cheap; when the last handle is dropped or
/// [`Network::shutdown`] is called, the task ends.
#[derive(Clone, Debug)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
}

impl Network {
    /// Builds the swarm, starts listening, dials the bootstrap peers and spawns the
    /// swarm task on the current tokio runtime.
    ///
    /// # Errors
    /// [`NetworkError::Transport`] if the transport cannot be built,
    /// [`NetworkError::Listen`] if an address cannot be listened on.
    pub fn start(
        keypair: Keypair,
        store: PersistentStore,
        config: NetworkConfig,
        handler: Arc<dyn InboundHandler>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), NetworkError> {
        let peer_id = keypair.public().to_peer_id();
        let budget = if config.exact_budget {
            InboundBudget::exact(config.peer_budget, config.node_budget)
        } else {
            InboundBudget::new(config.peer_budget, config.node_budget)
        };
        let (bad_frames, bad_frames_rx) = mpsc::channel(BAD_FRAME_QUEUE);
        let mut swarm = swarm::build(
            keypair,
            store,
            config.request_timeout,
            Arc::clone(&budget),
            bad_frames,
        )?;
        let listen = config
            .listen
            .iter()
            .flat_map(|a| config.transports.listen_addresses(a));
        for addr in &listen.collect::<Vec<_>>() {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetworkError::Listen {
                    addr: addr.clone(),
                    source: Arc::new(e),
                })?;
        }
        for addr in &config.bootstrap {
            if !config.transports.allows(addr) {
                warn!(%addr, "bootstrap address of a transport not in use ({}): ignored", config.transports);
                continue;
            }
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
        let metrics = config.metrics.unwrap_or_default();
        let events = EventLoop::new(
            swarm,
            rx,
            handler,
            budget,
            bad_frames_rx,
            config.peer_policy,
            metrics,
        )
        .with_advertiser(addresses::Advertiser::new(config.external))
        .with_transports(config.transports);
        let task = tokio::spawn(events.run());
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

    /// Announces in the DHT that this node provides `key`: the record is kept here at
    /// once; the walk that puts it on the peers closest to `key` runs on after this
    /// returns, unless [`limits::MAX_BACKGROUND_PROVIDES`] such walks run already:
    /// then this waits for its own.
    ///
    /// # Errors
    /// [`NetworkError::Dht`] if the record cannot be kept, or a walk waited for reached no
    /// peer (the record is still kept locally and republished).
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
