//! A hostile peer built on the node's own network code: a libp2p swarm (TCP, Noise,
//! Yamux, as a node's) speaking the shard protocol with the node's [`ShardCodec`], that
//! sends whatever requests a test makes up and reports each outcome. It has no store,
//! no DHT and no limits of its own beyond the ones a test gives it.
//!
//! Shared by the in-process suite (`node/tests/hostile.rs`) and the real-process suite
//! (`tests/hostile.rs`, which includes this file by path): a new attack is a new list of
//! requests, not a new peer.
#![allow(dead_code)] // each suite uses part of it

use std::error::Error;
use std::time::Duration;

use datamesh_node::libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use datamesh_node::libp2p::swarm::SwarmEvent;
use datamesh_node::libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, noise, tcp, yamux};
use datamesh_node::protocol::{
    MAX_REQUEST_LEN, MAX_RESPONSE_LEN, PROTOCOL, Request, Response, ShardCodec,
};
use futures::StreamExt;

/// A boxed error that crosses tasks.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// What became of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The victim answered.
    Answered(Response),
    /// No answer: the victim refused the stream (a request that does not decode), the
    /// connection closed, or the request timed out. The text says which.
    Failed(String),
}

impl Outcome {
    /// Whether the victim answered with exactly `response`.
    pub(crate) fn is(&self, response: &Response) -> bool {
        matches!(self, Self::Answered(r) if r == response)
    }
}

/// The hostile peer.
pub(crate) struct Attacker {
    swarm: Swarm<request_response::Behaviour<ShardCodec>>,
}

impl Attacker {
    /// A new identity whose requests time out after `timeout`. Its codec writes up to
    /// four times the node's request limit (so oversized frames can be tried).
    ///
    /// # Errors
    /// When the transport cannot be built.
    pub(crate) fn new(timeout: Duration) -> Result<Self, BoxError> {
        let swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    ShardCodec::with_limits(4 * MAX_REQUEST_LEN, MAX_RESPONSE_LEN),
                    [(PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(timeout),
                )
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Ok(Self { swarm })
    }

    /// Its peer id.
    pub(crate) fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Where to reach `peer`.
    pub(crate) fn add_address(&mut self, peer: PeerId, addr: Multiaddr) {
        self.swarm.add_peer_address(peer, addr);
    }

    /// Sends one request and waits for its outcome.
    pub(crate) async fn send(&mut self, peer: PeerId, request: Request) -> Outcome {
        self.send_all(peer, vec![request])
            .await
            .pop()
            .unwrap_or_else(|| Outcome::Failed("no outcome".into()))
    }

    /// Sends every request at once (each on its own stream) and waits for all of their
    /// outcomes, in the order of `requests`.
    pub(crate) async fn send_all(&mut self, peer: PeerId, requests: Vec<Request>) -> Vec<Outcome> {
        let ids: Vec<OutboundRequestId> = requests
            .into_iter()
            .map(|r| self.swarm.behaviour_mut().send_request(&peer, r))
            .collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; ids.len()];
        let mut left = ids.len();
        while left > 0 {
            let (id, outcome) = match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) => (request_id, Outcome::Answered(response)),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) => (request_id, Outcome::Failed(error.to_string())),
                _ => continue,
            };
            if let Some(slot) = ids.iter().position(|i| *i == id)
                && outcomes[slot].replace(outcome).is_none()
            {
                left -= 1;
            }
        }
        outcomes.into_iter().flatten().collect()
    }
}
