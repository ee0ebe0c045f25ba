//! Inbound work is bounded before it is read, and misbehaving peers are blocked for a
//! while: a victim node (or a bare `Network` with a handler that waits on a gate) and an
//! attacker built on the node's own network code (libp2p request-response with the
//! node's `ShardCodec`), all in one process on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use datamesh_core::ShardId;
use datamesh_node::metrics::Metrics;
use datamesh_node::network::limits::{MAX_CONNECTIONS_PER_PEER, MAX_SHARD_STREAMS};
use datamesh_node::network::{InboundHandler, PeerPolicy};
use datamesh_node::protocol::{
    BatchShard, InvalidReason, MAX_IDS, PROTOCOL, Refusal, Request, Response, ShardCodec,
    StoreOutcome,
};
use datamesh_node::{
    ApiToken, FileKeys, KeyProvider, KeyProviderError, Network, NetworkConfig, Node, NodeConfig,
};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId};

#[path = "common/peers.rs"]
mod common;
use common::{bare_network, shard_peer};

type Error = common::PeerError;
type TestResult = Result<(), Error>;

/// Longest wait for anything in these tests.
const DEADLINE: Duration = Duration::from_secs(60);

/// A peer that speaks the shard protocol with the node's own codec, and sends whatever
/// it is told to. Its swarm runs only while a method pumps it.
struct Attacker {
    swarm: Swarm<request_response::Behaviour<ShardCodec>>,
    target: PeerId,
    /// Requests that ended, in order, not yet taken.
    ended: Vec<Outcome>,
    established: usize,
    closed: usize,
}

/// How one request ended at the attacker.
#[derive(Debug)]
enum Outcome {
    Answer(Response),
    Failed(String),
}

impl Outcome {
    /// Why the request failed, if it did.
    fn failure(&self) -> Option<&str> {
        match self {
            Self::Answer(_) => None,
            Self::Failed(why) => Some(why),
        }
    }
}

impl Attacker {
    fn new(target: PeerId, addr: Multiaddr) -> Result<Self, Error> {
        let mut swarm = shard_peer(
            // Writes frames past the node's limits, when told to.
            ShardCodec::with_limits(64 << 20, 64 << 20),
            PROTOCOL,
            request_response::Config::default()
                .with_request_timeout(DEADLINE)
                .with_max_concurrent_streams(1024),
            DEADLINE,
        )?;
        swarm.add_peer_address(target, addr);
        Ok(Self {
            swarm,
            target,
            ended: Vec::new(),
            established: 0,
            closed: 0,
        })
    }

    fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn send(&mut self, request: Request) -> OutboundRequestId {
        self.swarm
            .behaviour_mut()
            .send_request(&self.target, request)
    }

    /// Runs the swarm for `time`, recording what ends.
    async fn pump(&mut self, time: Duration) {
        let until = tokio::time::Instant::now() + time;
        while let Ok(event) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
            match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => self.ended.push(Outcome::Answer(response)),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => self.ended.push(Outcome::Failed(error.to_string())),
                SwarmEvent::ConnectionEstablished { .. } => self.established += 1,
                SwarmEvent::ConnectionClosed { .. }
                | SwarmEvent::OutgoingConnectionError { .. } => self.closed += 1,
                _ => {}
            }
        }
    }

    /// Runs the swarm until `check` holds, for up to [`DEADLINE`].
    async fn pump_until(&mut self, what: &str, mut check: impl FnMut(&Self) -> bool) -> TestResult {
        let start = Instant::now();
        while !check(self) {
            if start.elapsed() > DEADLINE {
                return Err(format!("timed out waiting for {what}: {:?}", self.ended).into());
            }
            self.pump(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The next `n` requests to end.
    async fn outcomes(&mut self, n: usize) -> Result<Vec<Outcome>, Error> {
        self.pump_until(&format!("{n} requests to end"), |a| a.ended.len() >= n)
            .await?;
        Ok(self.ended.drain(..n).collect())
    }

    /// One request, and how it ended.
    async fn ask(&mut self, request: Request) -> Result<Outcome, Error> {
        self.send(request);
        let mut out = self.outcomes(1).await?;
        out.pop().ok_or_else(|| "no outcome".into())
    }
}

fn has() -> Request {
    Request::Has {
        ids: vec![ShardId::of(b"x")],
    }
}

fn answers(outcomes: &[Outcome]) -> Vec<&Response> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Answer(r) => Some(r),
            Outcome::Failed(_) => None,
        })
        .collect()
}

/// A handler that holds every request until the gate opens, then answers `Stored` (or
/// `Has(false..)`), counting the requests it has seen.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicUsize,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

impl InboundHandler for Gate {
    fn handle(&self, _peer: PeerId, request: Request) -> Response {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        match request {
            Request::Has { ids } => Response::Has(vec![false; ids.len()]),
            _ => Response::Stored,
        }
    }
}

/// A bare network node serving `handler`, and its address.
async fn victim(
    dir: &std::path::Path,
    config: impl FnOnce(NetworkConfig) -> NetworkConfig,
    handler: Arc<dyn InboundHandler>,
) -> Result<(Network, Multiaddr), Error> {
    bare_network(dir, config, handler, DEADLINE).await
}

/// The value of the metric line `name` (with its labels) in `text`, 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_per_connection_and_connections_per_peer_are_limited() -> TestResult {
    let dir = tempfile::tempdir()?;
    let gate = Arc::new(Gate::default());
    let (net, addr) = victim(dir.path(), |c| c, gate.clone()).await?;
    let mut attacker = Attacker::new(net.peer_id(), addr.clone())?;

    // 100 requests at once on one connection, none answered while the gate is shut: the
    // node keeps at most MAX_SHARD_STREAMS of them, the others' streams are reset unread.
    const SENT: usize = 100;
    for _ in 0..SENT {
        attacker.send(has());
    }
    let mut outcomes = attacker.outcomes(SENT - MAX_SHARD_STREAMS).await?;
    assert!(
        answers(&outcomes).is_empty(),
        "answered with the gate shut: {outcomes:?}"
    );
    gate.open();
    outcomes.extend(attacker.outcomes(MAX_SHARD_STREAMS).await?);
    let answered = answers(&outcomes).len();
    assert!(
        (1..=MAX_SHARD_STREAMS).contains(&answered),
        "{answered} of {SENT} answered"
    );
    assert!(gate.entered.load(Ordering::SeqCst) <= MAX_SHARD_STREAMS);

    // Four more connections from the same peer (one is open): the node keeps
    // MAX_CONNECTIONS_PER_PEER and closes the others.
    let before = attacker.established - attacker.closed;
    assert_eq!(before, 1);
    for _ in 0..4 {
        attacker.swarm.dial(
            DialOpts::peer_id(net.peer_id())
                .condition(PeerCondition::Always)
                .addresses(vec![addr.clone()])
                .build(),
        )?;
    }
    let refused = 1 + 4 - MAX_CONNECTIONS_PER_PEER as usize;
    attacker
        .pump_until("connections to be refused", |a| a.closed >= refused)
        .await?;
    attacker.pump(Duration::from_millis(200)).await;
    assert!(
        attacker.established - attacker.closed <= MAX_CONNECTIONS_PER_PEER as usize,
        "{} established, {} closed",
        attacker.established,
        attacker.closed
    );
    // The connections it kept still serve.
    let outcome = attacker.ask(has()).await?;
    assert!(
        matches!(outcome, Outcome::Answer(Response::Has(_))),
        "{outcome:?}"
    );
    net.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_in_flight_over_a_peers_share_are_refused_busy() -> TestResult {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir()?;
    let gate = Arc::new(Gate::default());
    let metrics = Arc::new(Metrics::new());
    let (net, addr) = victim(
        dir.path(),
        |c| {
            c.with_exact_inbound_budget_for_test(5 * MIB, 64 * MIB)
                .with_metrics(metrics.clone())
        },
        gate.clone(),
    )
    .await?;
    let mut attacker = Attacker::new(net.peer_id(), addr.clone())?;
    const BUSY: &str = "datamesh_refusals_sent_total{kind=\"busy\"}";

    // Ten stores of 1 MiB at once, held by the handler: each holds 2 MiB of the peer's
    // 5 MiB while it decodes and 1 MiB after, so at most three are kept; the others are
    // refused `Busy` without being kept.
    let bytes = bytes::Bytes::from(vec![3u8; MIB]);
    const SENT: usize = 10;
    for _ in 0..SENT {
        attacker.send(Request::Store {
            id: ShardId::of(&bytes),
            bytes: bytes.clone(),
        });
    }
    let busy_sent = || metric(&metrics.render(), BUSY) as usize;
    attacker
        .pump_until("every store to be refused or held", |_| {
            busy_sent() + gate.entered.load(Ordering::SeqCst) == SENT
        })
        .await?;
    let kept = gate.entered.load(Ordering::SeqCst);
    assert!((1..=3).contains(&kept), "{kept} kept");

    // Another peer, within its own share, is served meanwhile: its request is kept (it
    // reaches the handler), not refused.
    let mut honest = Attacker::new(net.peer_id(), addr)?;
    honest.send(has());
    honest
        .pump_until("the honest request to reach the handler", |_| {
            gate.entered.load(Ordering::SeqCst) == kept + 1
        })
        .await?;
    gate.open();
    let outcomes = attacker.outcomes(SENT).await?;
    let count = |want: &Response| answers(&outcomes).iter().filter(|r| **r == want).count();
    assert_eq!(count(&Response::Stored), kept, "{outcomes:?}");
    assert_eq!(
        count(&Response::Refused(Refusal::Busy)),
        SENT - kept,
        "{outcomes:?}"
    );
    let honest_outcome = honest.outcomes(1).await?;
    assert!(
        matches!(honest_outcome[..], [Outcome::Answer(Response::Has(_))]),
        "{honest_outcome:?}"
    );

    let text = metrics.render();
    assert_eq!(metric(&text, BUSY) as usize, SENT - kept, "{text}");
    assert_eq!(
        metric(
            &text,
            "datamesh_peer_strikes_total{offence=\"over_budget\"}"
        ) as usize,
        SENT - kept,
        "{text}"
    );
    // Everything is released once answered.
    attacker
        .pump_until("the budget to be released", |_| {
            metric(&metrics.render(), "datamesh_inbound_bytes_held") == 0.0
        })
        .await?;
    net.shutdown().await;
    Ok(())
}

struct NoKeys;

impl KeyProvider for NoKeys {
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        Err(KeyProviderError::new("no keys in this test"))
    }
}

/// A node under `policy` (its database in `dir`), its first listen address, and a
/// reader of its metrics text.
async fn policed_node(
    dir: &tempfile::TempDir,
    policy: PeerPolicy,
) -> Result<
    (
        Node,
        Multiaddr,
        impl Fn() -> Result<String, Error> + Copy + Send + 'static,
    ),
    Error,
> {
    let network =
        NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]).with_peer_policy(policy);
    let node = Node::start(
        NodeConfig::new(
            dir.path().join("db"),
            network,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ),
        Keypair::generate_ed25519(),
        Arc::new(NoKeys),
        ApiToken::new("test-token"),
    )
    .await?;
    let addr = node
        .listen_addresses()
        .await?
        .into_iter()
        .next()
        .ok_or("no address")?;
    let api = node.api_addr();
    let metrics = move || -> Result<String, Error> {
        Ok(ureq::get(format!("http://{api}/metrics"))
            .header("authorization", "Bearer test-token")
            .call()?
            .into_body()
            .read_to_string()?)
    };
    Ok((node, addr, metrics))
}

/// The metrics text that `metrics` reads once the node has blocked a peer, or at the
/// [`DEADLINE`] (the caller's assertions then say what is missing).
async fn metrics_once_blocked(
    metrics: impl Fn() -> Result<String, Error> + Copy + Send + 'static,
) -> Result<String, Error> {
    let start = Instant::now();
    loop {
        let text = tokio::task::spawn_blocking(metrics).await??;
        if metric(&text, "datamesh_peers_blocked_total") >= 1.0 || start.elapsed() > DEADLINE {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_sending_wrong_bytes_and_bad_frames_is_blocked_then_allowed_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (node, addr, metrics) =
        policed_node(&dir, PeerPolicy::new(3, Duration::from_secs(4))).await?;
    let mut attacker = Attacker::new(node.peer_id(), addr)?;
    assert!(matches!(attacker.ask(has()).await?, Outcome::Answer(_)));

    // Two shards that do not match their ids, then a frame that does not decode (more
    // ids than a `Has` may carry): three strikes.
    for i in 0..2u8 {
        let outcome = attacker
            .ask(Request::Store {
                id: ShardId::of(b"something else"),
                bytes: vec![i; 100].into(),
            })
            .await?;
        assert!(
            matches!(
                outcome,
                Outcome::Answer(Response::Refused(Refusal::Mismatch))
            ),
            "{outcome:?}"
        );
    }
    let outcome = attacker
        .ask(Request::Has {
            ids: vec![ShardId::of(b"x"); MAX_IDS + 1],
        })
        .await?;
    assert!(outcome.failure().is_some(), "{outcome:?}");
    // The node counts the bad frame once its stream is gone (the attacker may see that
    // first).
    let text = metrics_once_blocked(metrics).await?;
    assert_eq!(
        metric(
            &text,
            "datamesh_peer_strikes_total{offence=\"wrong_bytes\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(&text, "datamesh_peer_strikes_total{offence=\"bad_frame\"}"),
        1.0
    );
    assert_eq!(metric(&text, "datamesh_peers_blocked_total"), 1.0);
    assert_eq!(metric(&text, "datamesh_peers_blocked_now"), 1.0);
    assert_eq!(
        metric(
            &text,
            &format!(
                "datamesh_peer_strikes_now{{peer=\"{}\"}}",
                attacker.peer_id()
            )
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "datamesh_refusals_sent_total{kind=\"mismatch\"}"),
        2.0
    );

    // Blocked: the connection is closed and a new one refused...
    let blocked = attacker.ask(has()).await?;
    assert!(blocked.failure().is_some(), "{blocked:?}");
    // ... until the block is over; then it is served again.
    let start = Instant::now();
    loop {
        if let Outcome::Answer(Response::Has(_)) = attacker.ask(has()).await? {
            break;
        }
        if start.elapsed() > DEADLINE {
            return Err("the peer was never allowed again".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = tokio::task::spawn_blocking(metrics).await??;
    assert_eq!(metric(&text, "datamesh_peers_blocked_now"), 0.0, "{text}");
    node.shutdown().await?;
    Ok(())
}

/// A batch of stores is judged shard by shard: each shard that does not match its id is a
/// strike (as its own `Store` would be), so wrong bytes cost a peer no less in a batch,
/// and the good shards beside them are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_wrong_bytes_is_a_strike_per_shard_and_keeps_its_good_shards() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (node, addr, metrics) =
        policed_node(&dir, PeerPolicy::new(4, Duration::from_secs(600))).await?;
    let mut attacker = Attacker::new(node.peer_id(), addr)?;
    let good = bytes::Bytes::from(vec![9u8; 1000]);
    let mut shards = vec![BatchShard {
        id: ShardId::of(&good),
        bytes: good.clone(),
    }];
    for i in 0..3u8 {
        shards.push(BatchShard {
            id: ShardId::of(&[i]),
            bytes: vec![i; 100].into(),
        });
    }
    let outcome = attacker.ask(Request::StoreBatch { shards }).await?;
    let mismatch = StoreOutcome::Refused(Refusal::Mismatch);
    assert!(
        matches!(
            &outcome,
            Outcome::Answer(Response::BatchStored(outcomes))
                if outcomes[..] == [StoreOutcome::Stored, mismatch.clone(), mismatch.clone(), mismatch]
        ),
        "{outcome:?}"
    );
    assert_eq!(
        node.files().store().get(&ShardId::of(&good))?.as_deref(),
        Some(&good[..])
    );
    // Three strikes of four: one more wrong shard, alone, and the peer is blocked (the
    // node may close the connection before that answer is out).
    let last = attacker
        .ask(Request::Store {
            id: ShardId::of(b"another"),
            bytes: vec![1; 10].into(),
        })
        .await?;
    assert!(
        matches!(last, Outcome::Answer(Response::Refused(Refusal::Mismatch)))
            || last.failure().is_some(),
        "{last:?}"
    );
    let text = metrics_once_blocked(metrics).await?;
    assert_eq!(
        metric(
            &text,
            "datamesh_peer_strikes_total{offence=\"wrong_bytes\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(&text, "datamesh_refusals_sent_total{kind=\"mismatch\"}"),
        4.0
    );
    assert_eq!(metric(&text, "datamesh_peers_blocked_total"), 1.0, "{text}");
    let blocked = attacker.ask(has()).await?;
    assert!(blocked.failure().is_some(), "{blocked:?}");
    node.shutdown().await?;
    Ok(())
}

/// Owner's orders that do not verify (a forged renewal, a forged removal) each cost the
/// holder a BLAKE3 of the manifest sent and an ECDSA verification, and no honest node
/// sends one: each is a strike, and a peer that keeps sending them is blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_sending_forged_owner_orders_is_blocked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (node, addr, metrics) =
        policed_node(&dir, PeerPolicy::new(3, Duration::from_secs(600))).await?;
    let mut attacker = Attacker::new(node.peer_id(), addr)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    // A manifest that does not parse, signed by nobody: refused as forged.
    let manifest = bytes::Bytes::from(vec![7u8; 4096]);
    let forged = [
        Request::RenewLease {
            manifest: manifest.clone(),
            issued_at: now,
            signature: vec![1; 64],
            ids: vec![ShardId::of(&manifest)],
        },
        Request::RemoveFile {
            manifest: manifest.clone(),
            issued_at: now,
            signature: vec![2; 64],
        },
        Request::RenewLease {
            manifest,
            issued_at: now,
            signature: vec![3; 64],
            ids: vec![],
        },
    ];
    let expected = [
        InvalidReason::BadRenewal,
        InvalidReason::BadRemoval,
        InvalidReason::BadRenewal,
    ];
    for (n, (request, reason)) in forged.into_iter().zip(expected).enumerate() {
        let outcome = attacker.ask(request).await?;
        // The third strike blocks the peer, which closes its connection: the answer to
        // that order may be lost with it (CI saw "Connection was closed before a
        // response was received"); the strikes and the block are checked below.
        let last_lost = n == 2 && outcome.failure().is_some();
        assert!(
            last_lost
                || matches!(
                    outcome,
                    Outcome::Answer(Response::Refused(Refusal::Invalid(r))) if r == reason
                ),
            "{outcome:?}"
        );
    }
    let text = metrics_once_blocked(metrics).await?;
    assert_eq!(
        metric(
            &text,
            "datamesh_peer_strikes_total{offence=\"forged_order\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(metric(&text, "datamesh_peers_blocked_total"), 1.0, "{text}");
    // Blocked: the next request is not served.
    let blocked = attacker.ask(has()).await?;
    assert!(blocked.failure().is_some(), "{blocked:?}");
    node.shutdown().await?;
    Ok(())
}

/// The manifest (its bytes) of a small file signed by a fresh owner, and that owner's
/// authority key for it.
fn owned_manifest() -> Result<(bytes::Bytes, datamesh_core::AuthorityKey), Error> {
    use datamesh_core::{AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, Encoder};
    let key = AuthorityKey::derive(
        &AuthorityRoot::from_bytes(&[5; 32]),
        &AuthoritySalt::random(),
    )?;
    let mut encoder = Encoder::new(&b"an owner's file"[..], EncodeOptions::new("owned"));
    for stripe in encoder.by_ref() {
        stripe?;
    }
    let file = encoder.finish(key.file_authority())?;
    Ok((file.manifest.to_bytes().into(), key))
}

/// A valid owner's order can be replayed by whoever saw it while it is fresh (and an
/// owner can sign as many as it likes); each would cost the holder a BLAKE3 of the
/// manifest, an ECDSA verification and database work. Past the sender's order budget
/// it is answered `Busy` before any of that, with no strike (an honest owner with many
/// files looks the same), and another peer has a budget of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_replaying_a_valid_owner_order_is_answered_busy_past_its_budget() -> TestResult {
    use datamesh_core::{FileId, Removal, Renewal};
    use datamesh_node::serve::{ORDER_UNITS, order_cost};

    let dir = tempfile::tempdir()?;
    let (node, addr, metrics) =
        policed_node(&dir, PeerPolicy::new(3, Duration::from_secs(600))).await?;
    let (manifest, key) = owned_manifest()?;
    assert_eq!(order_cost(manifest.len(), 0), 1);
    let file = FileId::of_manifest(&manifest);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let renewal = Renewal::sign(file, now, &key)?;
    let removal = Removal::sign(file, now, &key)?;
    let orders = [
        Request::RenewLease {
            manifest: manifest.clone(),
            issued_at: now,
            signature: renewal.signature().to_vec(),
            ids: vec![],
        },
        Request::RemoveFile {
            manifest,
            issued_at: now,
            signature: removal.signature().to_vec(),
        },
    ];
    let mut attacker = Attacker::new(node.peer_id(), addr.clone())?;
    // Four times the budget, in batches a connection's streams allow: only if sending
    // them took more than three windows (30 s) could all be served.
    let total = 4 * ORDER_UNITS as usize;
    let (mut served, mut busy) = (0usize, 0usize);
    let mut sent = 0;
    while sent < total {
        let batch = (total - sent).min(MAX_SHARD_STREAMS / 2);
        for k in 0..batch {
            attacker.send(orders[(sent + k) % 2].clone());
        }
        sent += batch;
        for outcome in attacker.outcomes(batch).await? {
            match outcome {
                Outcome::Answer(Response::Leases(list)) if list.is_empty() => served += 1,
                Outcome::Answer(Response::Done) => served += 1,
                Outcome::Answer(Response::Refused(Refusal::Busy)) => busy += 1,
                other => return Err(format!("unexpected outcome {other:?}").into()),
            }
        }
    }
    assert!(
        busy >= 1,
        "{served} replays of a valid order served, none refused"
    );
    assert!(
        served >= ORDER_UNITS as usize,
        "{served} served, {busy} busy"
    );
    let text = tokio::task::spawn_blocking(metrics).await??;
    assert_eq!(
        metric(&text, "datamesh_orders_over_budget_total"),
        busy as f64,
        "{text}"
    );
    // Refused before the signature was checked, and never a strike.
    assert_eq!(
        metric(
            &text,
            "datamesh_peer_strikes_total{offence=\"forged_order\"}"
        ),
        0.0
    );
    assert_eq!(metric(&text, "datamesh_peers_blocked_total"), 0.0, "{text}");
    assert!(matches!(
        attacker.ask(has()).await?,
        Outcome::Answer(Response::Has(_))
    ));
    // Another peer's budget is its own.
    let mut other = Attacker::new(node.peer_id(), addr)?;
    let outcome = other.ask(orders[0].clone()).await?;
    assert!(
        matches!(outcome, Outcome::Answer(Response::Leases(_))),
        "{outcome:?}"
    );
    node.shutdown().await?;
    Ok(())
}
