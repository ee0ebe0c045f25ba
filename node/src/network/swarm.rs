//! The swarm's behaviours (block list, connection limits, Identify, Kademlia, the shard
//! protocol, and NAT traversal: AutoNAT, the relay server and client, DCUtR, see
//! `nat.rs`) and the transports (TCP + Noise + Yamux, QUIC, and relay circuits over
//! either), with the limits that bound what a peer can make the node hold: connections
//! per peer and in all, streams per connection (yamux, QUIC, request-response, and
//! streams still negotiating a protocol). The bytes those streams carry are bounded by
//! the [`InboundBudget`] of the shard protocol's codec.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr, identify, kad,
    noise, relay, tcp, yamux,
};
use tokio::sync::mpsc;

use super::error::NetworkError;
use super::nat::{autonat_config, relay_config};
use super::shards::Shards;
use crate::protocol::{BudgetedCodec, InboundBudget, PROTOCOL};
use crate::records::PersistentStore;

/// Kademlia protocol name: DataMesh nodes never join another network's DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/kad/1.0.0");
/// What Identify reports as the protocol version.
pub const IDENTIFY_VERSION: &str = "/datamesh/1.0.0";
/// How often Kademlia re-runs a bootstrap.
const BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(60);
/// How long a DHT query runs before it ends with what it found: under the file engine's
/// 10 s lookup deadline (`files::FilesConfig::lookup_deadline`), so a lookup held up by a
/// peer that never answers (frozen, or hostile) still returns the peers and providers it
/// found instead of being cut off with nothing (kad's default is 60 s).
const QUERY_TIMEOUT: Duration = Duration::from_secs(8);
/// Most established connections.
pub const MAX_CONNECTIONS: u32 = 256;
/// Most established connections with one peer: two nodes dialling each other at once
/// make two, and an AutoNAT probe each way makes one more each (the server dials the
/// client back on a new connection, which stays until it idles out). With fewer, the
/// server's own limit refused its dial-back, and it answered "dial failed", the very
/// answer a node behind NAT gets (`nat.rs`).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Most connections being set up (TCP + Noise + Yamux) from outside at once.
const MAX_PENDING_INCOMING: u32 = 64;
/// Most yamux streams per connection, every protocol, both directions.
pub const MAX_STREAMS_PER_CONNECTION: usize = 64;
/// Most shard-protocol streams per connection at once, both directions; an inbound one
/// beyond it is reset unread. An honest node asks one peer for at most a put's window of
/// stripes (8) at a time, plus a few lookups.
pub const MAX_SHARD_STREAMS: usize = 32;
/// Most inbound streams per connection still negotiating their protocol.
const MAX_NEGOTIATING_STREAMS: usize = 16;

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    // First, so a denied connection or dial is refused before any other behaviour
    // sees it.
    pub(super) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(super) limits: connection_limits::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) kad: kad::Behaviour<PersistentStore>,
    pub(super) shards: Shards,
    pub(super) autonat: autonat::Behaviour,
    pub(super) relay: relay::Behaviour,
    pub(super) relay_client: relay::client::Behaviour,
    pub(super) dcutr: dcutr::Behaviour,
}

fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    config
}

/// The swarm of `keypair`, its DHT records in `store`, shard requests timing out after
/// `request_timeout`, inbound shard requests held to `budget`, the peers of frames that
/// break the format sent to `bad_frames`.
///
/// # Errors
/// [`NetworkError::Transport`] if the transport cannot be built.
pub(super) fn build(
    keypair: Keypair,
    store: PersistentStore,
    request_timeout: Duration,
    budget: Arc<InboundBudget>,
    bad_frames: mpsc::Sender<PeerId>,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let peer_id = keypair.public().to_peer_id();
    // A shard request goes out with the protocol proposal (multistream-select `V1Lazy`),
    // not a round trip after the listener's confirmation: the protocol is one, and a peer
    // that refuses it fails the request as before (`patches/libp2p-swarm`; every other
    // protocol keeps `V1`, see the swarm config below).
    libp2p::swarm::lazy_protocols::add(PROTOCOL);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux_config,
        )
        .map_err(|e| NetworkError::Transport(Arc::new(e)))?
        .with_quic_config(|mut c| {
            // The same stream bound as yamux's; QUIC's flow-control windows (10 MB a
            // stream, 15 MB a connection) bound what a peer can make it buffer.
            c.max_concurrent_stream_limit = MAX_STREAMS_PER_CONNECTION as u32;
            c
        })
        .with_relay_client(noise::Config::new, yamux_config)
        .map_err(|e| NetworkError::Transport(Arc::new(e)))?
        .with_behaviour(|key, relay_client| {
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_periodic_bootstrap_interval(Some(BOOTSTRAP_INTERVAL));
            kad_config.set_query_timeout(QUERY_TIMEOUT);
            // Against eclipse attacks: a lookup follows disjoint paths (S/Kademlia), so
            // one group of colluding peers cannot steer all of them. The routing table
            // takes a peer only once a connection to it succeeded (the default
            // `BucketInserts::OnConnected`), and a full bucket keeps its old entries.
            kad_config.disjoint_query_paths(true);
            let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
            // rust-libp2p starts in client mode until an external address is
            // confirmed; a DataMesh node always serves the DHT.
            kad.set_mode(Some(kad::Mode::Server));
            // No relaying for others until AutoNAT finds this node public.
            let mut relay = relay::Behaviour::new(peer_id, relay_config());
            relay.set_status(Some(relay::Status::Disable));
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_established(Some(MAX_CONNECTIONS))
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING));
            Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                limits: connection_limits::Behaviour::new(limits),
                // Only the addresses `addresses.rs` chose, never every listen address.
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_VERSION.to_string(), key.public())
                        .with_hide_listen_addrs(true),
                ),
                kad,
                shards: Shards::new(
                    Arc::clone(&budget),
                    request_response::Behaviour::with_codec(
                        BudgetedCodec::new(budget, bad_frames),
                        [(PROTOCOL, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(request_timeout)
                            .with_max_concurrent_streams(MAX_SHARD_STREAMS),
                    ),
                ),
                autonat: autonat::Behaviour::new(peer_id, autonat_config()),
                relay,
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
            }
        })
        .map_err(|e| match e {})?
        .with_swarm_config(|c| {
            // Not `with_substream_upgrade_protocol_override(V1Lazy)`: it applies to every
            // protocol, and with it nodes behind NAT never became reachable through
            // relays over QUIC (`tests/hosts.rs`; benches/PROFILE.md, sessions 16 and
            // 26). Only the shard protocol's streams are lazy (`build` above).
            c.with_idle_connection_timeout(Duration::from_secs(120))
                .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_STREAMS)
        })
        .build();
    Ok(swarm)
}
