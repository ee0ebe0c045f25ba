//! A node's shard requests go out with the protocol proposal (multistream-select
//! `V1Lazy`, `patches/libp2p-swarm`), every other protocol's streams wait for the
//! listener's confirmation (`V1`: with every protocol lazy, nodes behind NAT never became
//! reachable through relays over QUIC). A request to a peer of another shard-protocol version then fails
//! on its answer, at once (not at the request timeout), and leaves the connection up,
//! while a peer of the protocol is answered beside it. A bare `Network` and two peers
//! built on libp2p request-response with the node's `ShardCodec`, on 127.0.0.1.

use std::time::{Duration, Instant};

use datamesh_core::ShardId;
use datamesh_node::network::{InboundHandler, KAD_PROTOCOL, NetworkError, RequestFailure};
use datamesh_node::protocol::{PROTOCOL, Request, Response, ShardCodec};
use datamesh_node::{Network, NetworkConfig};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundFailure};
use libp2p::swarm::{SwarmEvent, lazy_protocols};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::watch;

#[path = "common/peers.rs"]
mod common;
use common::{bare_network, shard_peer};

type Error = common::PeerError;
type TestResult = Result<(), Error>;

/// Longest wait for anything here, and the node's request timeout: a refusal that took
/// this long would show as a timeout, which the test rejects.
const DEADLINE: Duration = Duration::from_secs(60);

/// The node's own server answers nothing in these tests.
struct Silent;

impl InboundHandler for Silent {
    fn handle(&self, _peer: PeerId, _request: Request) -> Response {
        Response::Stored
    }
}

/// A peer serving `protocol` (answering every `Has` with "none held"), dialled into
/// `node` at `addr`; its swarm runs on a task. The watch counts its connections open.
fn peer(
    node: PeerId,
    addr: Multiaddr,
    protocol: StreamProtocol,
) -> Result<(PeerId, watch::Receiver<i64>), Error> {
    let mut swarm = shard_peer(
        ShardCodec::default(),
        protocol,
        request_response::Config::default(),
        DEADLINE,
    )?;
    let id = *swarm.local_peer_id();
    swarm.dial(addr)?;
    let (open_tx, open) = watch::channel(0i64);
    tokio::spawn(async move {
        let mut open = 0;
        while let Some(event) = swarm.next().await {
            match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request: Request::Has { ids },
                            channel,
                            ..
                        },
                    ..
                }) => {
                    let none = Response::Has(vec![false; ids.len()]);
                    let _ = swarm.behaviour_mut().send_response(channel, none);
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == node => open += 1,
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == node => open -= 1,
                _ => {}
            }
            if open_tx.send(open).is_err() {
                break;
            }
        }
    });
    Ok((id, open))
}

async fn node(dir: &std::path::Path) -> Result<(Network, Multiaddr), Error> {
    let config = |c: NetworkConfig| c.with_request_timeout(DEADLINE);
    bare_network(dir, config, std::sync::Arc::new(Silent), DEADLINE).await
}

fn has() -> Request {
    Request::Has {
        ids: vec![ShardId::from_bytes([7; 32])],
    }
}

/// Until the peer's connection is up on both sides: the node then has `peers` connected.
async fn connected(net: &Network, peers: usize, open: &mut watch::Receiver<i64>) -> TestResult {
    tokio::time::timeout(DEADLINE, open.wait_for(|&n| n > 0)).await??;
    let start = Instant::now();
    while net.info().await?.connected_peers < peers {
        if start.elapsed() > DEADLINE {
            return Err("the node never saw the connection".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_protocol_answers_and_one_of_another_version_fails_at_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (net, addr) = node(dir.path()).await?;
    // The node named its shard protocol, and only it, for lazy negotiation.
    assert!(lazy_protocols::includes(&[PROTOCOL]));
    assert!(!lazy_protocols::includes(&[KAD_PROTOCOL]));
    assert!(!lazy_protocols::includes(&[PROTOCOL, KAD_PROTOCOL]));

    let (speaks, mut speaks_open) = peer(net.peer_id(), addr.clone(), PROTOCOL)?;
    connected(&net, 1, &mut speaks_open).await?;
    let answer = net.request(speaks, has()).await?;
    assert!(
        matches!(answer, Response::Has(ref held) if held == &[false]),
        "{answer:?}"
    );

    let older = StreamProtocol::new("/datamesh/shard/9.0.0");
    let (refuses, mut refuses_open) = peer(net.peer_id(), addr, older)?;
    connected(&net, 2, &mut refuses_open).await?;
    for attempt in 0..2 {
        match net.request(refuses, has()).await {
            Ok(answer) => return Err(format!("attempt {attempt}: answered {answer:?}").into()),
            Err(NetworkError::Request {
                reason: RequestFailure::Outbound(failure),
                ..
            }) => assert!(
                // Lazily negotiated, the refusal is read where the answer would be: a
                // stream error, not `UnsupportedProtocols` before the request is sent.
                matches!(*failure, OutboundFailure::Io(_)),
                "attempt {attempt}: {failure:?}"
            ),
            Err(other) => return Err(format!("attempt {attempt}: {other}").into()),
        }
        // The refusal closed one stream, not the connection.
        assert_eq!(*refuses_open.borrow(), 1, "attempt {attempt}");
    }
    // And the first peer is still served over its connection.
    assert!(matches!(
        net.request(speaks, has()).await?,
        Response::Has(_)
    ));
    assert_eq!(*speaks_open.borrow(), 1);
    net.shutdown().await;
    Ok(())
}
