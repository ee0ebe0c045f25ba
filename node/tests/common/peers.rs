//! The two ends of the tests that play a foreign or hostile peer, on 127.0.0.1: a bare
//! node `Network` serving a handler of the test's, and a bare libp2p peer (TCP, Noise,
//! yamux) with one behaviour, request-response with the node's own codec, whose swarm
//! runs only while the test pumps it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datamesh_node::network::InboundHandler;
use datamesh_node::protocol::ShardCodec;
use datamesh_node::records::{PersistentStore, PersistentStoreConfig};
use datamesh_node::{Network, NetworkConfig};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{Multiaddr, StreamProtocol, Swarm};

pub(crate) type PeerError = Box<dyn std::error::Error + Send + Sync>;

/// The peer: `config` bounds its requests; a connection with no stream open closes after
/// `idle`.
pub(crate) fn shard_peer(
    codec: ShardCodec,
    protocol: StreamProtocol,
    config: request_response::Config,
    idle: Duration,
) -> Result<Swarm<request_response::Behaviour<ShardCodec>>, PeerError> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                codec,
                [(protocol, ProtocolSupport::Full)],
                config,
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

/// A bare network node in `dir` serving `handler`, configured by `config`, and the
/// address it listens on (waited for up to `deadline`).
pub(crate) async fn bare_network(
    dir: &Path,
    config: impl FnOnce(NetworkConfig) -> NetworkConfig,
    handler: Arc<dyn InboundHandler>,
    deadline: Duration,
) -> Result<(Network, Multiaddr), PeerError> {
    let keypair = Keypair::generate_ed25519();
    let store = PersistentStore::new(
        keypair.public().to_peer_id(),
        datamesh_node::db::open(dir)?,
        PersistentStoreConfig::default(),
    )?;
    let network = config(NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]));
    let (net, _task) = Network::start(keypair, store, network, handler)?;
    let start = Instant::now();
    loop {
        if let Some(addr) = net.info().await?.listen_addresses.into_iter().next() {
            return Ok((net, addr));
        }
        if start.elapsed() > deadline {
            return Err("the bare network never listened".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
