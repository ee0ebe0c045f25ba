//! The swarm task: the one owner of the [`Swarm`]. It runs [`Command`]s from the
//! [`Network`](super::Network) handles, answers them when their query or request ends
//! (pending maps keyed by query / request id), feeds Identify into Kademlia, and hands
//! inbound shard requests to the [`InboundHandler`] on blocking threads (at most
//! [`MAX_INBOUND_IN_FLIGHT`] at once).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use libp2p::kad::{self, GetClosestPeersError, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::command::{Command, InboundHandler, NetworkInfo, PeerSummary};
use super::error::{DhtError, NetworkError, RequestFailure};
use super::swarm::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::protocol::{FailureReason, Refusal, Request, Response};

/// Inbound requests served at once; more wait (and eventually time out at the sender).
const MAX_INBOUND_IN_FLIGHT: usize = 64;

type ProvidersReply = oneshot::Sender<Result<HashSet<PeerId>, NetworkError>>;
/// An inbound request's answer, with the key to start providing first when it is an
/// `Announce` the handler honoured.
type Answer = (ResponseChannel<Response>, Response, Option<RecordKey>);

pub(super) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    responses_tx: mpsc::Sender<Answer>,
    responses_rx: mpsc::Receiver<Answer>,
    handler: Arc<dyn InboundHandler>,
    inbound_slots: Arc<Semaphore>,
    pending_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetworkError>>>,
    pending_closest: HashMap<QueryId, oneshot::Sender<Result<Vec<PeerId>, NetworkError>>>,
    pending_providing: HashMap<QueryId, oneshot::Sender<Result<(), NetworkError>>>,
    pending_providers: HashMap<QueryId, (HashSet<PeerId>, ProvidersReply)>,
    connected: HashSet<PeerId>,
    listen_addresses: Vec<Multiaddr>,
}

impl EventLoop {
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        handler: Arc<dyn InboundHandler>,
    ) -> Self {
        let (responses_tx, responses_rx) = mpsc::channel(MAX_INBOUND_IN_FLIGHT);
        Self {
            swarm,
            commands,
            responses_tx,
            responses_rx,
            handler,
            inbound_slots: Arc::new(Semaphore::new(MAX_INBOUND_IN_FLIGHT)),
            pending_requests: HashMap::new(),
            pending_closest: HashMap::new(),
            pending_providing: HashMap::new(),
            pending_providers: HashMap::new(),
            connected: HashSet::new(),
            listen_addresses: Vec::new(),
        }
    }

    pub(super) async fn run(mut self) {
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
                Some((channel, response, provide)) = self.responses_rx.recv() => {
                    let response = match provide {
                        Some(key) if response == Response::Done => self.provide_for_peer(key),
                        _ => response,
                    };
                    if self.swarm.behaviour_mut().shards.send_response(channel, response).is_err() {
                        debug!("inbound request's peer went away before the response");
                    }
                }
            }
        }
        info!("network stopped");
    }

    fn on_command(&mut self, command: Command) {
        let behaviour = self.swarm.behaviour_mut();
        match command {
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = behaviour.shards.send_request(&peer, request);
                self.pending_requests.insert(id, reply);
            }
            Command::ClosestPeers { key, reply } => {
                let id = behaviour.kad.get_closest_peers(key);
                self.pending_closest.insert(id, reply);
            }
            Command::StartProviding { key, reply } => {
                match behaviour.kad.start_providing(RecordKey::new(&key)) {
                    Ok(id) => {
                        self.pending_providing.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetworkError::Dht(DhtError::Store(e))));
                    }
                }
            }
            Command::GetProviders { key, reply } => {
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
                let old: Vec<PeerId> = behaviour.blocked.blocked_peers().iter().copied().collect();
                for peer in old.iter().filter(|p| !peers.contains(p)) {
                    behaviour.blocked.unblock_peer(*peer);
                }
                for peer in &peers {
                    // Also closes its open connections.
                    behaviour.blocked.block_peer(*peer);
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
                self.listen_addresses.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addresses.retain(|a| a != &address);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, "outgoing connection failed: {error}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Identify does not feed Kademlia by itself: add the peer's listen
                // addresses to the routing table if it speaks our DHT protocol.
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Shards(event)) => self.on_shard_event(event),
            other => debug!("swarm event: {other:?}"),
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            debug!("kad event: {event:?}");
            return;
        };
        match result {
            QueryResult::GetClosestPeers(result) => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                if let Some(reply) = self.pending_closest.remove(&id) {
                    let _ = reply.send(Ok(peers.into_iter().map(|p| p.peer_id).collect()));
                }
            }
            QueryResult::StartProviding(result) => {
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

    fn on_shard_event(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_inbound(peer, request, channel),
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetworkError::Request {
                        peer,
                        reason: RequestFailure::Outbound(Arc::new(error)),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound shard request failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    /// Starts providing a file a peer's `Announce` named, once the handler honoured it.
    fn provide_for_peer(&mut self, key: RecordKey) -> Response {
        match self.swarm.behaviour_mut().kad.start_providing(key) {
            Ok(_) => Response::Done,
            Err(e) => {
                warn!("cannot announce a file for a peer: {e}");
                Response::Refused(Refusal::Failed(FailureReason::Dht))
            }
        }
    }

    fn on_inbound(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        // An `Announce` is checked by the handler (on a blocking thread: it reads the
        // store) like any request; the provider record starts when its answer comes back.
        let provide = match &request {
            Request::Announce { file, .. } => Some(RecordKey::new(file.as_bytes())),
            _ => None,
        };
        let handler = Arc::clone(&self.handler);
        let responses = self.responses_tx.clone();
        let slots = Arc::clone(&self.inbound_slots);
        tokio::spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            let response = tokio::task::spawn_blocking(move || handler.handle(peer, request)).await;
            match response {
                Ok(response) => {
                    let _ = responses.send((channel, response, provide)).await;
                }
                Err(e) => warn!(%peer, "inbound handler failed: {e}"),
            }
        });
    }
}
