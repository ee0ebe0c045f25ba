//! The swarm task: the one owner of the [`Swarm`]. It runs [`Command`]s from the
//! [`Network`](super::Network) handles, answers them when their query or request ends
//! (pending maps keyed by query / request id), feeds Identify into Kademlia, and hands
//! inbound shard requests to the [`InboundHandler`] on blocking threads (at most
//! [`MAX_INBOUND_IN_FLIGHT`] at once). Every inbound request arrives holding its bytes
//! of the inbound budget (or as `Busy`, its body discarded); the permit is resized to the
//! answer (`Busy` if that does not fit) and released once the answer is written. The
//! offences it sees (a `Mismatch` it sends, a frame that does not decode, a peer over
//! its share, an owner's order that does not verify) are strikes in the per-peer
//! [`Accounting`]; a peer with too many is blocked for a while (libp2p's block list, shared
//! with the test-fault partitions). It also follows NAT traversal (`nat.rs`): AutoNAT's
//! verdict, the relay reservations of a private node, relayed connections and hole punches,
//! counted in the metrics.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetClosestPeersError, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, identify, relay};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::accounting::{Accounting, Offence, PeerPolicy, Verdict};
use super::addresses::Advertiser;
use super::batching::{StoreBatcher, Waiting};
use super::census::Census;
use super::command::{Command, InboundHandler, NetworkInfo, PeerSummary};
use super::error::{DhtError, NetworkError, RequestFailure};
use super::nat::{Reachability, Relays, is_relayed};
use super::swarm::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::transport::Transports;
use crate::metrics::Metrics;
use crate::protocol::{
    FailureReason, InboundBudget, InvalidReason, ManifestOutcome, OverBudget, Permit, Refusal,
    Request, RequestFrame, Response, ResponseFrame, StoreOutcome, response_bytes,
};

/// Inbound requests served at once; more wait, holding their bytes of the inbound budget
/// (and eventually time out at the sender). Each may read one blob (up to 16 MiB) before
/// its answer is charged to the budget: part of the worst case in ARCHITECTURE.md.
pub const MAX_INBOUND_IN_FLIGHT: usize = 16;
/// Provider walks that may run while their callers go on (this node's own
/// `start_providing`, a peer's `Announce`); past it, this node's next caller waits for its
/// own walk to end, and a peer's announcement is kept only here (served from here,
/// republished by Kademlia's job) rather than piling up walks peers can trigger.
pub const MAX_BACKGROUND_PROVIDES: usize = 64;
/// How often blocks are ended and the accounting gauges refreshed.
const TICK: Duration = Duration::from_millis(500);

/// An answer on its way back to the swarm task: the peer, its channel, the answer, and
/// the key to start providing first when it is an `Announce` the handler honoured.
type Answer = (
    PeerId,
    ResponseChannel<ResponseFrame>,
    ResponseFrame,
    Option<RecordKey>,
);

type ProvidersReply = oneshot::Sender<Result<HashSet<PeerId>, NetworkError>>;

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    responses_tx: mpsc::Sender<Answer>,
    responses_rx: mpsc::Receiver<Answer>,
    handler: Arc<dyn InboundHandler>,
    inbound_slots: Arc<Semaphore>,
    budget: Arc<InboundBudget>,
    /// Peers whose frame broke the format (reported by the codec).
    bad_frames: mpsc::Receiver<PeerId>,
    accounting: Accounting,
    /// Peers blocked by the test-fault hook (kept apart from the accounting's blocks).
    fault_blocked: HashSet<PeerId>,
    metrics: Arc<Metrics>,
    /// Who waits for each outbound shard request's answer.
    pending_requests: HashMap<OutboundRequestId, Waiting>,
    /// Stores to a peer beyond its slots, waiting to go as one batch (`batching.rs`).
    stores: StoreBatcher,
    pending_closest: HashMap<QueryId, oneshot::Sender<Result<Vec<PeerId>, NetworkError>>>,
    pending_providing: HashMap<QueryId, oneshot::Sender<Result<(), NetworkError>>>,
    /// Provider walks running whose callers were answered when they started.
    background_provides: HashSet<QueryId>,
    /// Every peer of a small network, while known (`census.rs`).
    census: Census<QueryId>,
    pending_providers: HashMap<QueryId, (HashSet<PeerId>, ProvidersReply)>,
    connected: HashSet<PeerId>,
    listen_addresses: Vec<Multiaddr>,
    /// What Identify tells peers (`addresses.rs`).
    advertiser: Advertiser,
    /// The transports whose addresses this node keeps and dials.
    transports: Transports,
    /// What AutoNAT last found.
    reachability: Reachability,
    /// A private node's relays.
    relays: Relays,
    /// Open connections that go through a relay.
    relayed: HashSet<ConnectionId>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        handler: Arc<dyn InboundHandler>,
        budget: Arc<InboundBudget>,
        bad_frames: mpsc::Receiver<PeerId>,
        policy: PeerPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (responses_tx, responses_rx) = mpsc::channel(MAX_INBOUND_IN_FLIGHT);
        Self {
            swarm,
            commands,
            responses_tx,
            responses_rx,
            handler,
            inbound_slots: Arc::new(Semaphore::new(MAX_INBOUND_IN_FLIGHT)),
            budget,
            bad_frames,
            accounting: Accounting::new(policy),
            fault_blocked: HashSet::new(),
            metrics,
            pending_requests: HashMap::new(),
            stores: StoreBatcher::default(),
            pending_closest: HashMap::new(),
            pending_providing: HashMap::new(),
            background_provides: HashSet::new(),
            census: Census::default(),
            pending_providers: HashMap::new(),
            connected: HashSet::new(),
            listen_addresses: Vec::new(),
            advertiser: Advertiser::default(),
            transports: Transports::default(),
            reachability: Reachability::Unknown,
            relays: Relays::default(),
            relayed: HashSet::new(),
        }
    }

    /// Keeps and dials only addresses of `transports` (default: TCP).
    pub(super) fn with_transports(mut self, transports: Transports) -> Self {
        self.transports = transports;
        self
    }

    /// Advertises what `advertiser` chooses (`addresses.rs`) from now on.
    pub(super) fn with_advertiser(mut self, mut advertiser: Advertiser) -> Self {
        advertiser.sync(&mut self.swarm, &self.listen_addresses);
        self.advertiser = advertiser;
        self
    }

    /// Re-chooses the advertised addresses after the listen addresses changed; peers
    /// already connected (a bootstrap dial may beat the first listen address) hear the
    /// new ones at once, or they would keep none of ours in their routing tables.
    fn readvertise(&mut self) {
        if self
            .advertiser
            .sync(&mut self.swarm, &self.listen_addresses)
        {
            let peers: Vec<PeerId> = self.connected.iter().copied().collect();
            self.swarm.behaviour_mut().identify.push(peers);
        }
    }

    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some((peer, channel, mut frame, provide)) = self.responses_rx.recv() => {
                    // The handler names a file only with an answer that honours the
                    // request (`Done`; `ManifestStored` or `ShardAndManifest` with the
                    // envelope kept).
                    if let Some(key) = provide
                        && let Err(refusal) = self.provide_for_peer(key)
                    {
                        frame.response = match frame.response {
                            Response::ManifestStored { .. } => Response::ManifestStored {
                                envelope_refused: Some(refusal),
                            },
                            Response::ShardAndManifest { shard, .. } => {
                                Response::ShardAndManifest {
                                    shard,
                                    manifest: ManifestOutcome::Stored {
                                        envelope_refused: Some(refusal),
                                    },
                                }
                            }
                            _ => Response::Refused(refusal),
                        };
                    }
                    self.respond(peer, channel, frame);
                }
                Some(peer) = self.bad_frames.recv() => self.strike(peer, Offence::BadFrame),
                _ = tick.tick() => self.on_tick(),
            }
        }
        info!("network stopped");
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Request {
                peer,
                request: Request::Store { id, bytes },
                reply,
            } => {
                if let Some((request, waiting)) = self.stores.store(peer, id, bytes, reply) {
                    self.send_request(peer, request, waiting);
                }
            }
            Command::Request {
                peer,
                request,
                reply,
            } => self.send_request(peer, request, Waiting::One(reply)),
            Command::ClosestPeers { key, reply } => {
                // A small network's census is the answer the walk would give.
                if let Some(peers) = self.census.closest(&key, Instant::now()) {
                    let _ = reply.send(Ok(peers));
                    return;
                }
                self.metrics.dht_walk("closest_peers");
                let id = behaviour.kad.get_closest_peers(key);
                self.pending_closest.insert(id, reply);
            }
            Command::StartProviding { key, reply } => {
                // The record is kept here (and answered from) at once; the walk that
                // puts it on the closest peers runs on, its caller answered, unless
                // too many such walks run already.
                match self.provide(RecordKey::new(&key), "provide") {
                    Ok(None) => {
                        let _ = reply.send(Ok(()));
                    }
                    Ok(Some(id)) if self.background_provides.len() < MAX_BACKGROUND_PROVIDES => {
                        self.background_provides.insert(id);
                        let _ = reply.send(Ok(()));
                    }
                    Ok(Some(id)) => {
                        self.pending_providing.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetworkError::Dht(DhtError::Store(e))));
                    }
                }
            }
            Command::GetProviders { key, reply } => {
                self.metrics.dht_walk("providers");
                let id = behaviour.kad.get_providers(RecordKey::new(&key));
                self.pending_providers.insert(id, (HashSet::new(), reply));
            }
            Command::Info { reply } => {
                let routing_table_peers = behaviour.kad.kbuckets().map(|b| b.num_entries()).sum();
                let _ = reply.send(NetworkInfo {
                    peer_id: *self.swarm.local_peer_id(),
                    listen_addresses: self.listen_addresses.clone(),
                    connected_peers: self.connected.len(),
                    routing_table_peers,
                    reachability: self.reachability,
                    relays: self.relays.held(),
                });
            }
            Command::Peers { reply } => {
                let mut peers = Vec::new();
                for bucket in behaviour.kad.kbuckets() {
                    for entry in bucket.iter() {
                        let peer_id = *entry.node.key.preimage();
                        peers.push(PeerSummary {
                            peer_id,
                            addresses: entry.node.value.iter().cloned().collect(),
                            connected: self.connected.contains(&peer_id),
                        });
                    }
                }
                let _ = reply.send(peers);
            }
            Command::Bootstrap => {
                if let Err(e) = behaviour.kad.bootstrap() {
                    debug!("bootstrap skipped: {e}");
                }
            }
            Command::SetBlocked { mut peers, reply } => {
                peers.remove(self.swarm.local_peer_id());
                let behaviour = self.swarm.behaviour_mut();
                for peer in self.fault_blocked.iter().filter(|p| !peers.contains(p)) {
                    if !self.accounting.is_blocked(peer) {
                        behaviour.blocked.unblock_peer(*peer);
                    }
                }
                self.fault_blocked.clone_from(&peers);
                for peer in &peers {
                    // Also closes its open connections.
                    behaviour.blocked.block_peer(*peer);
                    self.census.lost(peer);
                }
                let mut now: Vec<PeerId> = peers.into_iter().collect();
                now.sort();
                if now.is_empty() {
                    warn!("TEST FAULT: no peer blocked any more");
                } else {
                    warn!(blocked = now.len(), "TEST FAULT: blocking peers: {now:?}");
                }
                let _ = reply.send(now);
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                let address = self.without_own_id(address);
                self.listen_addresses.push(address);
                self.readvertise();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let address = self.without_own_id(address);
                self.listen_addresses.retain(|a| a != &address);
                self.readvertise();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                match self.relays.closed(listener_id, Instant::now()) {
                    Some(relay) => info!(%relay, ?reason, "relay reservation closed"),
                    None => debug!(?reason, "listener closed"),
                }
                for address in addresses {
                    let address = self.without_own_id(address);
                    self.listen_addresses.retain(|a| a != &address);
                }
                self.readvertise();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.connected.insert(peer_id);
                self.census.connected(&peer_id);
                if is_relayed(endpoint.get_remote_address()) {
                    self.relayed.insert(connection_id);
                    self.nat_event("relayed_connection");
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.relayed.remove(&connection_id);
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, "outgoing connection failed: {error}");
                if let Some(peer) = peer_id {
                    self.census.lost(&peer);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let fresh: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| self.transports.allows(a))
                    .collect();
                let offers_hop = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                self.relays.identified(peer_id, offers_hop, &fresh);
                // Identify does not feed Kademlia by itself: the peer's advertised
                // addresses (of our transports) replace those in the routing table if it
                // speaks our DHT protocol. A peer that withdrew its addresses (found
                // itself private, and has no relay yet) leaves the table: it is no
                // candidate holder until it can be reached.
                if info.protocols.contains(&KAD_PROTOCOL) {
                    self.replace_addresses(peer_id, fresh);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => self.on_autonat(event),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => match event {
                relay::Event::ReservationReqAccepted { .. } => {
                    self.nat_event("reservation_served");
                }
                relay::Event::CircuitReqAccepted { .. } => self.nat_event("circuit_served"),
                other => debug!("relay: {other:?}"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                if let relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } = &event {
                    info!(relay = %relay_peer_id, "relay reservation accepted");
                    self.relays.accepted(*relay_peer_id);
                    self.nat_event("reservation_accepted");
                } else {
                    debug!("relay client: {event:?}");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(_) => {
                    info!(peer = %remote_peer_id, "direct connection through the NAT (DCUtR)");
                    self.nat_event("hole_punch_succeeded");
                }
                Err(e) => {
                    info!(peer = %remote_peer_id, "hole punch failed: {e}");
                    self.nat_event("hole_punch_failed");
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Shards(event)) => self.on_shard_event(event),
            other => debug!("swarm event: {other:?}"),
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            is_new_peer: true, ..
        } = event
        {
            self.census.joined();
        }
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            debug!("kad event: {event:?}");
            return;
        };
        match result {
            QueryResult::GetClosestPeers(result) => {
                let (peers, complete) = match result {
                    Ok(ok) => (ok.peers, true),
                    Err(GetClosestPeersError::Timeout { peers, .. }) => (peers, false),
                };
                let peers: Vec<PeerId> = peers.into_iter().map(|p| p.peer_id).collect();
                let now = Instant::now();
                let answered = complete.then_some(peers.as_slice());
                if self.census.walk_ended(id, answered, now) {
                    return;
                }
                if complete {
                    self.census.walked(&peers, now);
                }
                if let Some(reply) = self.pending_closest.remove(&id) {
                    let _ = reply.send(Ok(peers));
                }
            }
            QueryResult::StartProviding(result) => {
                self.background_provides.remove(&id);
                if let Some(reply) = self.pending_providing.remove(&id) {
                    let _ = reply.send(
                        result
                            .map(|_| ())
                            .map_err(|e| NetworkError::Dht(DhtError::Announce(e))),
                    );
                }
            }
            QueryResult::GetProviders(result) => {
                let Some((found, _)) = self.pending_providers.get_mut(&id) else {
                    return;
                };
                let failed = match result {
                    Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                        found.extend(providers);
                        None
                    }
                    Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => None,
                    Err(e) => Some(e),
                };
                if step.last || failed.is_some() {
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                    if let Some((found, reply)) = self.pending_providers.remove(&id) {
                        // A timeout still returns what was found on the way.
                        let _ = reply.send(match failed {
                            Some(e) if found.is_empty() => {
                                Err(NetworkError::Dht(DhtError::Providers(e)))
                            }
                            _ => Ok(found),
                        });
                    }
                }
            }
            QueryResult::Bootstrap(Ok(_)) => {}
            other => debug!("kad query result: {other:?}"),
        }
    }

    /// Sends a shard request to `peer`; `waiting` gets its answer.
    fn send_request(&mut self, peer: PeerId, request: Request, waiting: Waiting) {
        self.metrics.request_sent(request.kind());
        let id = self
            .swarm
            .behaviour_mut()
            .shards
            .send_request(&peer, request.into());
        self.pending_requests.insert(id, waiting);
    }

    /// Gives the answer to (or the failure of) request `id` to who waits for it, and, if
    /// that freed a peer's store slot, sends the stores waiting for one.
    fn answer(&mut self, id: OutboundRequestId, result: Result<Response, NetworkError>) {
        let Some(waiting) = self.pending_requests.remove(&id) else {
            return;
        };
        if let Some(peer) = waiting.answer(result)
            && let Some((request, waiting)) = self.stores.done(peer)
        {
            self.send_request(peer, request, waiting);
        }
    }

    fn on_shard_event(&mut self, event: request_response::Event<RequestFrame, ResponseFrame>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                connection_id,
                message:
                    Message::Request {
                        request, channel, ..
                    },
            } => {
                if self.relayed.contains(&connection_id) {
                    self.nat_event("shard_request_relayed");
                } else if self.reachability == Reachability::Private {
                    self.nat_event("shard_request_direct");
                }
                self.on_inbound(peer, request, channel);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.answer(request_id, Ok(response.response));
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let failure = NetworkError::Request {
                    peer,
                    reason: RequestFailure::Outbound(Arc::new(error)),
                };
                self.answer(request_id, Err(failure));
            }
            Event::InboundFailure { peer, error, .. } => {
                // A frame that breaks the format never gets here (request-response does
                // not report a request it could not read): the codec reports its peer.
                debug!(%peer, "inbound shard request failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Keeps a provider record of this node for `key` and starts the walk that puts it on
    /// the peers closest to `key`; `None` (no walk) while a census knows every peer: a
    /// providers walk then asks this node too, which answers from its own record.
    /// The walk, when there is one, is counted as `kind`.
    fn provide(
        &mut self,
        key: RecordKey,
        kind: &'static str,
    ) -> Result<Option<QueryId>, kad::store::Error> {
        if self.census.current(Instant::now()).is_some() {
            return self.provide_at_home(key, "census");
        }
        self.metrics.dht_walk(kind);
        self.swarm
            .behaviour_mut()
            .kad
            .start_providing(key)
            .map(Some)
    }

    /// Keeps the provider record `start_providing` would, with no walk (counted for
    /// `reason`): this node's addresses are filled in when it is served.
    fn provide_at_home(
        &mut self,
        key: RecordKey,
        reason: &'static str,
    ) -> Result<Option<QueryId>, kad::store::Error> {
        self.metrics.provide_unwalked(reason);
        let record = kad::ProviderRecord::new(key, *self.swarm.local_peer_id(), Vec::new());
        let kad = &mut self.swarm.behaviour_mut().kad;
        kad.store_mut().add_provider(record).map(|()| None)
    }

    /// Starts providing a file a peer's `Announce` named, once the handler honoured it:
    /// with a walk while fewer than [`MAX_BACKGROUND_PROVIDES`] run, else at home only.
    fn provide_for_peer(&mut self, key: RecordKey) -> Result<(), Refusal> {
        let provided = if self.background_provides.len() < MAX_BACKGROUND_PROVIDES {
            self.provide(key, "provide_for_peer")
        } else {
            self.provide_at_home(key, "busy")
        };
        match provided {
            Ok(walk) => {
                self.background_provides.extend(walk);
                Ok(())
            }
            Err(e) => {
                warn!("cannot announce a file for a peer: {e}");
                Err(Refusal::Failed(FailureReason::Dht))
            }
        }
    }

    fn on_inbound(
        &mut self,
        peer: PeerId,
        frame: RequestFrame,
        channel: ResponseChannel<ResponseFrame>,
    ) {
        let (request, permit) = match frame {
            RequestFrame::Request(request, permit) => (request, permit),
            RequestFrame::Busy(over) => {
                if over == OverBudget::Peer {
                    self.strike(peer, Offence::OverBudget);
                }
                let busy = Response::Refused(Refusal::Busy);
                self.respond(peer, channel, answer(busy, Permit::none()));
                return;
            }
        };
        // A small shard in memory is answered here: a blocking thread and two wake-ups
        // would cost more than the read. A panic in it is the handler's, as on its thread.
        let at_once = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handler.answer_at_once(&request)
        }));
        if let Ok(Some(response)) = at_once {
            self.respond(peer, channel, sized(response, permit));
            return;
        }
        // An `Announce` (or a first key envelope) is checked by the handler (on a
        // blocking thread: it reads the store) like any request; the provider record
        // starts when its answer comes back.
        let inbound = Inbound {
            handler: Arc::clone(&self.handler),
            responses: self.responses_tx.clone(),
            peer,
            request,
            permit,
            channel,
        };
        // With a slot free (the usual case) the handler's thread starts at once and sends
        // the answer itself; with none, a task waits for one. A slot is held until the
        // answer is queued (the queue has room for one per slot).
        match Arc::clone(&self.inbound_slots).try_acquire_owned() {
            Ok(slot) => {
                tokio::task::spawn_blocking(move || inbound.handle(slot));
            }
            Err(_) => {
                let slots = Arc::clone(&self.inbound_slots);
                tokio::spawn(async move {
                    if let Ok(slot) = slots.acquire_owned().await {
                        let _ = tokio::task::spawn_blocking(move || inbound.handle(slot)).await;
                    }
                });
            }
        }
    }

    /// Sends an answer to an inbound request, counting each refusal in it (a batch's are
    /// one per shard, and a `ShardAndManifest`'s one per part, as for the requests they
    /// stand for) and the offence it shows.
    fn respond(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<ResponseFrame>,
        frame: ResponseFrame,
    ) {
        let refused = |outcome: &StoreOutcome| match outcome {
            StoreOutcome::Refused(refusal) => Some(refusal.clone()),
            _ => None,
        };
        let refusals: Vec<Refusal> = match &frame.response {
            Response::Refused(refusal) => vec![refusal.clone()],
            Response::BatchStored(outcomes) => outcomes.iter().filter_map(refused).collect(),
            Response::ShardAndManifest { shard, manifest } => {
                let manifest = match manifest {
                    ManifestOutcome::Refused(refusal) => Some(refusal.clone()),
                    ManifestOutcome::Stored { .. } => None,
                };
                refused(shard).into_iter().chain(manifest).collect()
            }
            _ => Vec::new(),
        };
        for refusal in &refusals {
            self.metrics.refusal_sent(refusal_kind(refusal));
            match refusal {
                Refusal::Mismatch => self.strike(peer, Offence::WrongBytes),
                Refusal::Invalid(InvalidReason::BadRemoval | InvalidReason::BadRenewal) => {
                    self.strike(peer, Offence::ForgedOrder);
                }
                _ => {}
            }
        }
        if self
            .swarm
            .behaviour_mut()
            .shards
            .send_response(channel, frame)
            .is_err()
        {
            debug!("inbound request's peer went away before the response");
        }
    }

    /// Counts an offence of `peer`; blocks it at the policy's limit.
    fn strike(&mut self, peer: PeerId, offence: Offence) {
        self.metrics
            .peer_strikes
            .get_or_create(&[("offence", offence.label().to_string())])
            .inc();
        match self.accounting.strike(peer, Instant::now()) {
            Verdict::Counted(strikes) => {
                debug!(%peer, strikes, "strike for {}", offence.label());
            }
            Verdict::Block => {
                warn!(%peer, "blocking a misbehaving peer (last offence: {})", offence.label());
                self.metrics.peers_blocked.inc();
                // Also closes its open connections.
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                self.census.lost(&peer);
            }
            Verdict::AlreadyBlocked => {}
        }
        if let Some(strikes) = self.accounting.strikes(&peer) {
            self.metrics
                .peer_strikes_now
                .get_or_create(&[("peer", peer.to_string())])
                .set(i64::from(strikes));
        }
        let blocked = self.accounting.blocked();
        self.metrics
            .peers_blocked_now
            .set(i64::try_from(blocked).unwrap_or(i64::MAX));
    }

    /// `address` without this node's own id at its end: a relay circuit is advertised so
    /// (a peer adds the id when it dials).
    fn without_own_id(&self, mut address: Multiaddr) -> Multiaddr {
        if address.iter().last() == Some(Protocol::P2p(*self.swarm.local_peer_id())) {
            address.pop();
        }
        address
    }

    /// Makes `fresh` the addresses of `peer` in the routing table. Kademlia keeps each
    /// address with its `/p2p/<peer>` suffix: `fresh` is compared so, or every address
    /// would look stale and a peer with one address would leave the table.
    fn replace_addresses(&mut self, peer: PeerId, fresh: Vec<Multiaddr>) {
        let fresh: Vec<Multiaddr> = fresh
            .into_iter()
            .filter_map(|a| a.with_p2p(peer).ok())
            .collect();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let known: Vec<Multiaddr> = kad
            .kbucket(peer)
            .and_then(|bucket| {
                bucket
                    .iter()
                    .find(|e| *e.node.key.preimage() == peer)
                    .map(|e| e.node.value.iter().cloned().collect())
            })
            .unwrap_or_default();
        for addr in &fresh {
            kad.add_address(&peer, addr.clone());
        }
        for stale in known.iter().filter(|a| !fresh.contains(a)) {
            kad.remove_address(&peer, stale);
        }
    }

    /// AutoNAT's verdict changed: what to advertise, whether to relay for others, and
    /// whether to hold relay reservations follow it.
    fn on_autonat(&mut self, event: autonat::Event) {
        debug!("autonat: {event:?}");
        // Every answer may change the verdict: AutoNAT reports only flips of its own
        // status, but a private one counts here only once later answers confirm it.
        let autonat = &self.swarm.behaviour().autonat;
        let (status, confidence) = (autonat.nat_status(), autonat.confidence());
        let now = Reachability::judge(
            &status,
            confidence,
            &self.listen_addresses,
            self.reachability,
        );
        if now == self.reachability {
            return;
        }
        info!(
            reachability = now.label(),
            "AutoNAT: reachability changed ({status:?}, confidence {confidence})"
        );
        self.reachability = now;
        self.metrics.nat_reachability.set(match now {
            Reachability::Unknown => 0,
            Reachability::Public => 1,
            Reachability::Private => 2,
        });
        // Only a node others can dial relays for them.
        let serve = if now == Reachability::Public {
            relay::Status::Enable
        } else {
            relay::Status::Disable
        };
        self.swarm.behaviour_mut().relay.set_status(Some(serve));
        // Peers learn whether it offers the relay protocol from Identify: tell them now
        // (a private node looks for relays among the peers that do).
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        self.swarm.behaviour_mut().identify.push(peers);
        if now != Reachability::Private {
            for id in self.relays.take_all() {
                self.swarm.remove_listener(id);
            }
        }
        if now == Reachability::Private {
            info!(
                candidates = self.relays.candidates(),
                "looking for relays among the peers that offer the relay protocol"
            );
        }
        self.advertiser.set_reachability(now);
        self.readvertise();
        self.reserve_relays();
    }

    /// A private node opens reservations on relays until it holds [`super::nat::MAX_RELAYS`].
    fn reserve_relays(&mut self) {
        let now = Instant::now();
        for (relay, circuit) in self.relays.wanted(self.reachability, now) {
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    info!(%relay, %circuit, "asking for a relay reservation");
                    self.relays.opened(relay, id);
                }
                Err(e) => {
                    warn!(%circuit, "cannot listen through a relay: {e}");
                    self.relays.failed(relay, now);
                }
            }
        }
    }

    fn nat_event(&self, event: &'static str) {
        self.metrics
            .nat_events
            .get_or_create(&[("event", event.to_string())])
            .inc();
    }

    fn on_tick(&mut self) {
        self.reserve_relays();
        self.take_census();
        for peer in self.accounting.expire(Instant::now()) {
            if !self.fault_blocked.contains(&peer) {
                info!(%peer, "block of a misbehaving peer is over");
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
        }
        self.refresh_gauges();
    }

    /// Starts a census walk (`census.rs`) when a small network's census is missing or due.
    fn take_census(&mut self) {
        let now = Instant::now();
        let local = *self.swarm.local_peer_id();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let table_peers = kad.kbuckets().map(|b| b.num_entries()).sum();
        if self.census.wants_walk(table_peers, now) {
            self.metrics.dht_walk("census");
            let id = kad.get_closest_peers(local);
            self.census.walking(id, now);
        }
    }

    fn refresh_gauges(&self) {
        let m = &self.metrics;
        m.inbound_bytes_held
            .set(i64::try_from(self.budget.used()).unwrap_or(i64::MAX));
        m.peers_blocked_now
            .set(i64::try_from(self.accounting.blocked()).unwrap_or(i64::MAX));
        m.peer_strikes_now.clear();
        for (peer, strikes) in self.accounting.tracked() {
            m.peer_strikes_now
                .get_or_create(&[("peer", peer.to_string())])
                .set(i64::from(strikes));
        }
    }
}

/// An inbound request on its way to the handler, and where its answer goes.
struct Inbound {
    handler: Arc<dyn InboundHandler>,
    responses: mpsc::Sender<Answer>,
    peer: PeerId,
    request: Request,
    permit: Permit,
    channel: ResponseChannel<ResponseFrame>,
}

impl Inbound {
    /// Runs the handler (on a blocking thread: it reads and writes the store) and queues
    /// its answer for the swarm task, which starts a provider record it names.
    fn handle(self, _slot: OwnedSemaphorePermit) {
        let Self {
            handler,
            responses,
            peer,
            request,
            permit,
            channel,
        } = self;
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.handle_and_provide(peer, request)
        }));
        let Ok((response, provide)) = handled else {
            warn!(%peer, "inbound handler failed: it panicked");
            return;
        };
        let provide = provide.map(|file| RecordKey::new(file.as_bytes()));
        let _ = responses.blocking_send((peer, channel, sized(response, permit), provide));
    }
}

/// The answer to a request whose permit is resized to the answer: the request is gone,
/// and the answer holds its bytes until it is written (`Busy` if they do not fit).
fn sized(response: Response, mut permit: Permit) -> ResponseFrame {
    let response = match permit.resize(response_bytes(&response)) {
        Ok(()) => response,
        Err(_) => Response::Refused(Refusal::Busy),
    };
    answer(response, permit)
}

fn answer(response: Response, permit: Permit) -> ResponseFrame {
    ResponseFrame { response, permit }
}

/// The metric label of a refusal (a variant added to the wire enum needs one here).
fn refusal_kind(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::Full { .. } => "full",
        Refusal::Mismatch => "mismatch",
        Refusal::Denied => "denied",
        Refusal::Invalid(_) => "invalid",
        Refusal::Failed(_) => "failed",
        Refusal::Corrupt => "corrupt",
        Refusal::Busy => "busy",
    }
}
