//! The worst-case memory of ARCHITECTURE.md ("Inbound work and its worst-case memory"),
//! held against a real `datamesh node run` process: attackers built on the node's own
//! network code (libp2p request-response with the node's `ShardCodec`, in this process)
//! flood the victim with 16 MiB `Store` requests on many streams and connections, a new
//! identity replacing each one the victim blocks. The victim's peak RSS (`VmHWM`) must
//! stay within its idle peak plus the bound a store flood can reach, and an honest put and
//! get through another node must succeed meanwhile.
//!
//! A test of the `datamesh-e2e` package; the binary under test is the `datamesh` of the
//! same cargo build (`support::bin`).

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use datamesh_core::ShardId;
use datamesh_node::network::limits::{MAX_CONNECTIONS_PER_PEER, MAX_STREAMS_PER_CONNECTION};
use datamesh_node::protocol::{
    DEFAULT_NODE_BUDGET, MAX_BLOB_LEN, PROTOCOL, Refusal, Request, Response, ShardCodec,
};
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{run_within, serial};
use datamesh_testnet::{Config, Kdf, Testnet};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

mod support;
use support::bin;

/// A progress line on stderr (shown with `--nocapture`).
macro_rules! note {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)]
        {
            eprintln!($($arg)*);
        }
    }};
}

/// Nodes of the testnet: the victim, and six more so a put never needs it.
const NODES: usize = 7;
const VICTIM: usize = 0;
/// Attacker identities flooding at once.
const IDENTITIES: usize = 2;
/// Requests each identity keeps in flight (spread over its connections).
const IN_FLIGHT: usize = 64;
/// Failures in a row after which an identity counts as cut off (a stream the victim
/// resets over its stream limit is a failure too, but answers come in between).
const CUT_OFF: usize = 4 * IN_FLIGHT;
/// No command may take longer.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);
/// What the honest put and get and the rest of the process may add on top of the bound
/// (allocator slack, the honest round trip's own buffers).
const SLACK: u64 = 64 * MIB as u64;

/// `VmHWM` (peak resident set) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// What the flood saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    stored: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
    failed: AtomicU64,
    identities: AtomicU64,
}

impl Tally {
    fn get(n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }
}

/// One attacker identity: opens every connection the victim allows and more, keeps
/// [`IN_FLIGHT`] stores of `blob` in flight, until `stop` or until it is cut off
/// ([`CUT_OFF`] failures in a row, no answer between them: the victim blocked it).
async fn flood_as_one(
    target: PeerId,
    addr: Multiaddr,
    blob: Bytes,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                ShardCodec::default(),
                [(PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(1024),
            )
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    tally.identities.fetch_add(1, Ordering::Relaxed);
    swarm.add_peer_address(target, addr.clone());
    for _ in 0..4 {
        swarm.dial(
            DialOpts::peer_id(target)
                .condition(PeerCondition::Always)
                .addresses(vec![addr.clone()])
                .build(),
        )?;
    }
    let id = ShardId::of(&blob);
    let (mut in_flight, mut failures_in_row) = (0usize, 0usize);
    while !stop.load(Ordering::Relaxed) && failures_in_row < CUT_OFF {
        while in_flight < IN_FLIGHT {
            swarm.behaviour_mut().send_request(
                &target,
                Request::Store {
                    id,
                    bytes: blob.clone(),
                },
            );
            tally.sent.fetch_add(1, Ordering::Relaxed);
            in_flight += 1;
        }
        let Ok(event) =
            tokio::time::timeout(Duration::from_millis(200), swarm.select_next_some()).await
        else {
            continue;
        };
        match event {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => {
                in_flight -= 1;
                failures_in_row = 0;
                let counter = match response {
                    Response::Stored | Response::AlreadyHeld => &tally.stored,
                    Response::Refused(Refusal::Busy) => &tally.busy,
                    _ => &tally.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                in_flight -= 1;
                failures_in_row += 1;
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Keeps [`IDENTITIES`] attackers flooding, a fresh identity replacing each one that is
/// cut off, until `stop`.
async fn flood(
    target: PeerId,
    addr: Multiaddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    // One blob, shared by every request (the attacker's own memory stays small); it hashes
    // to its id, so the victim stores it once and then answers `AlreadyHeld`.
    let blob = Bytes::from(datamesh_testnet::input::random_bytes(MAX_BLOB_LEN, 77));
    let mut running = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Relaxed) {
        while running.len() < IDENTITIES {
            running.spawn(flood_as_one(
                target,
                addr.clone(),
                blob.clone(),
                Arc::clone(&stop),
                Arc::clone(&tally),
            ));
        }
        if let Some(done) = running.join_next().await {
            done??;
        }
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    Ok(())
}

/// The victim's peer id and a dialable address of it.
fn victim_address(net: &Testnet) -> anyhow::Result<(PeerId, Multiaddr)> {
    let run = net
        .run_file(VICTIM)?
        .context("the victim wrote no node.json")?;
    let peer: PeerId = run.peer_id.parse()?;
    let addr: Multiaddr = run
        .listen
        .iter()
        .find(|a| a.contains("127.0.0.1"))
        .context("the victim listens on no 127.0.0.1 address")?
        .parse()?;
    let addr = addr
        .into_iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    Ok((peer, addr))
}

#[test]
fn a_store_flood_stays_within_the_stated_memory_and_honest_traffic_flows() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = Testnet::up_with(Config::new(bin()?, scratch.join("net"), NODES).with_kdf(Kdf::FAST))
        .context("cannot start the testnet")?;
    let pid = net.pid(VICTIM).context("the victim has no pid")?;
    let (target, addr) = victim_address(&net)?;
    let idle = peak_rss(pid)?;

    // The part of the worst case a store flood from these connections can reach: the
    // node's byte budget, and yamux buffering a stream window (256 KiB) on every stream
    // of every connection the attackers hold.
    let connections = (IDENTITIES * MAX_CONNECTIONS_PER_PEER as usize) as u64;
    let yamux = connections * MAX_STREAMS_PER_CONNECTION as u64 * 256 * 1024;
    let bound = idle + DEFAULT_NODE_BUDGET as u64 + yamux + SLACK;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let attack = runtime.spawn(flood(target, addr, Arc::clone(&stop), Arc::clone(&tally)));

    let honest = (|| -> anyhow::Result<()> {
        // The flood is under way before the honest traffic starts.
        let start = std::time::Instant::now();
        while Tally::get(&tally.busy) + Tally::get(&tally.stored) < 32 {
            ensure!(
                start.elapsed() < COMMAND_DEADLINE,
                "the victim answered no flood request"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let input = make_file(scratch, 3 * MIB, 4242)?;
        let mut put = net.cli(1);
        put.arg("put").arg(&input);
        let id = String::from_utf8(
            run_within(put, scratch, COMMAND_DEADLINE)?.ok("an honest put during the flood")?,
        )?
        .trim()
        .to_string();
        let out = scratch.join("out");
        let mut get = net.cli(1);
        get.args(["get", &id, "-o"]).arg(&out);
        run_within(get, scratch, COMMAND_DEADLINE)?.ok("an honest get during the flood")?;
        assert_same_file(&input, &out)?;
        Ok(())
    })();
    // Let the flood run on a little longer than the round trip, then stop it.
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let attacked = runtime.block_on(attack);
    let peak = peak_rss(pid)?;
    let metrics = net.metrics(VICTIM)?;
    note!(
        "flood: {} stores sent by {} identities; {} kept, {} busy, {} other answers, {} failed",
        Tally::get(&tally.sent),
        Tally::get(&tally.identities),
        Tally::get(&tally.stored),
        Tally::get(&tally.busy),
        Tally::get(&tally.other),
        Tally::get(&tally.failed),
    );
    note!(
        "victim peak RSS: idle {} MiB, under the flood {} MiB, bound {} MiB",
        idle >> 20,
        peak >> 20,
        bound >> 20
    );
    for line in metrics.lines().filter(|l| {
        l.starts_with("datamesh_refusals_sent_total")
            || l.starts_with("datamesh_peers_blocked_total")
            || l.starts_with("datamesh_peer_strikes_total")
    }) {
        note!("victim: {line}");
    }
    honest?;
    attacked??;
    ensure!(
        peak <= bound,
        "the victim's peak RSS {} MiB is over the bound {} MiB",
        peak >> 20,
        bound >> 20
    );
    ensure!(
        Tally::get(&tally.busy) > 0,
        "the victim never refused a store as busy"
    );
    Ok(())
}
