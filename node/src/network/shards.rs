//! The shard protocol's behaviour: libp2p's request-response with the node's
//! [`BudgetedCodec`], wrapped so that each connection's codec is bound to its peer (the
//! per-peer share of the [`InboundBudget`]): the wrapper names the peer in the budget
//! while request-response builds the connection's handler, which is when it clones the
//! codec (see `protocol/budgeted.rs`). Everything else is passed through.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::request_response;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::protocol::{BudgetedCodec, InboundBudget};

type Inner = request_response::Behaviour<BudgetedCodec>;

/// Request-response over [`BudgetedCodec`], each connection's codec bound to its peer.
pub(super) struct Shards {
    inner: Inner,
    budget: Arc<InboundBudget>,
}

impl Shards {
    pub(super) fn new(budget: Arc<InboundBudget>, inner: Inner) -> Self {
        Self { inner, budget }
    }

    /// Runs `make` (which clones the codec) with `peer` named in the budget.
    fn bound<T>(&mut self, peer: PeerId, make: impl FnOnce(&mut Inner) -> T) -> T {
        self.budget.bind(Some(peer));
        let out = make(&mut self.inner);
        self.budget.bind(None);
        out
    }
}

impl Deref for Shards {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Shards {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl NetworkBehaviour for Shards {
    type ConnectionHandler = THandler<Inner>;
    type ToSwarm = <Inner as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.bound(peer, |inner| {
            inner.handle_established_inbound_connection(
                connection_id,
                peer,
                local_addr,
                remote_addr,
            )
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.bound(peer, |inner| {
            inner.handle_established_outbound_connection(
                connection_id,
                peer,
                addr,
                role_override,
                port_use,
            )
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
