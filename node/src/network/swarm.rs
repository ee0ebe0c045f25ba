//! The swarm's behaviours (block list, connection limits, Identify, Kademlia, the shard
//! protocol) and the transport (TCP + Noise + Yamux).

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, connection_limits, identify, kad, noise, tcp, yamux,
};

use super::error::NetworkError;
use crate::protocol::{PROTOCOL, ShardCodec};
use crate::records::PersistentStore;

/// Kademlia protocol name: DataMesh nodes never join another network's DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/kad/1.0.0");
/// What Identify reports as the protocol version.
pub const IDENTIFY_VERSION: &str = "/datamesh/1.0.0";
/// How often Kademlia re-runs a bootstrap.
const BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(60);
/// Most established connections.
const MAX_CONNECTIONS: u32 = 256;

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    // First, so a denied connection or dial is refused before any other behaviour
    // sees it.
    pub(super) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(super) limits: connection_limits::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) kad: kad::Behaviour<PersistentStore>,
    pub(super) shards: request_response::Behaviour<ShardCodec>,
}

/// The swarm of `keypair`, its DHT records in `store`, shard requests timing out after
/// `request_timeout`.
///
/// # Errors
/// [`NetworkError::Transport`] if the transport cannot be built.
pub(super) fn build(
    keypair: Keypair,
    store: PersistentStore,
    request_timeout: Duration,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let peer_id = keypair.public().to_peer_id();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
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
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(256),
                ),
            }
        })
        .map_err(|e| match e {})?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}
