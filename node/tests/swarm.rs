// One file (one test binary): every test shares the in-process swarm harness below, and each extra test binary would link RocksDB again.
//! Several real nodes (TCP on 127.0.0.1, real RocksDB, real Kademlia) in one process:
//! placement, sharing, refusal of bad shards, survival of two lost holders; check, verify
//! and repair (by a node without the key), bit rot and a peer serving wrong bytes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datamesh_core::ecies::SecretKey;
use datamesh_core::{AuthorityRoot, FileId, SegmentSize, ShardId};
use datamesh_node::catalog::Placement;
use datamesh_node::protocol::{Refusal, Request, Response};
use datamesh_node::{
    ApiToken, FileKeys, FilesConfig, GetError, Health, KeyAccess, KeyProvider, KeyProviderError,
    NetworkConfig, Node, NodeConfig, PutError, StoreConfig, TestFaults, Unlocked,
};
use libp2p::identity::Keypair;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[path = "swarm/authority.rs"]
mod authority;
#[path = "common/peers.rs"]
#[allow(dead_code, reason = "these tests use only the peer")]
mod common;
#[path = "swarm/durable.rs"]
mod durable;
#[path = "swarm/ui.rs"]
mod ui;

struct StaticKeys(Vec<u8>);

impl KeyProvider for StaticKeys {
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        let bytes: [u8; 32] = self
            .0
            .as_slice()
            .try_into()
            .map_err(|_| KeyProviderError::new("bad key"))?;
        let active = SecretKey::from_bytes(&bytes).map_err(KeyProviderError::new)?;
        let again = SecretKey::from_bytes(&bytes).map_err(KeyProviderError::new)?;
        let root = test_root(&bytes);
        Ok(Arc::new(FileKeys {
            active,
            decrypt: vec![again],
            hybrid: Vec::new(),
            p256: Vec::new(),
            authority: vec![root],
            unlocked: Unlocked::default(),
        }))
    }
}

/// A node's own file-authority root, made from its file key's bytes for the tests.
fn test_root(key: &[u8; 32]) -> AuthorityRoot {
    AuthorityRoot::from_bytes(&key.map(|b| b ^ 0x5c))
}

struct Net {
    nodes: Vec<Option<Node>>,
    keys: Vec<SecretKey>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Net {
    fn node(&self, i: usize) -> &Node {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is stopped"))
    }

    async fn stop(&mut self, i: usize) -> TestResult {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await?;
        }
        Ok(())
    }

    async fn shutdown(mut self) -> TestResult {
        for i in 0..self.nodes.len() {
            self.stop(i).await?;
        }
        Ok(())
    }
}

async fn start_net(
    n: usize,
    quota: impl Fn(usize) -> u64,
) -> Result<Net, Box<dyn std::error::Error + Send + Sync>> {
    start_net_with(n, quota, |_| TestFaults::none(), Duration::ZERO).await
}

/// As [`start_net`], with test faults per node and a self-check interval (zero: off).
async fn start_net_with(
    n: usize,
    quota: impl Fn(usize) -> u64,
    faults: impl Fn(usize) -> TestFaults,
    check_interval: Duration,
) -> Result<Net, Box<dyn std::error::Error + Send + Sync>> {
    start_net_tuned(n, quota, faults, check_interval, |_, config| config).await
}

/// As [`start_net_with`], each node's config passed through `tune` last.
async fn start_net_tuned(
    n: usize,
    quota: impl Fn(usize) -> u64,
    faults: impl Fn(usize) -> TestFaults,
    check_interval: Duration,
    tune: impl Fn(usize, NodeConfig) -> NodeConfig,
) -> Result<Net, Box<dyn std::error::Error + Send + Sync>> {
    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    let mut dirs = Vec::new();
    let mut bootstrap = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir()?;
        let key = SecretKey::generate();
        let network = NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?])
            .with_bootstrap(bootstrap.clone())
            .with_request_timeout(Duration::from_secs(10));
        let config = NodeConfig::new(
            dir.path().join("db"),
            network,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .with_store(StoreConfig::new(quota(i)))
        .with_files(FilesConfig {
            stripe_deadline: Duration::from_secs(15),
            ..FilesConfig::default()
        })
        .with_check_interval(check_interval)
        .with_test_faults(faults(i));
        let config = tune(i, config);
        let node = Node::start(
            config,
            Keypair::generate_ed25519(),
            Arc::new(StaticKeys(key.to_bytes().to_vec())),
            ApiToken::new("test-token"),
        )
        .await?;
        if i == 0 {
            bootstrap = node.listen_addresses().await?;
        }
        nodes.push(Some(node));
        keys.push(key);
        dirs.push(dir);
    }
    // Wait until every routing table knows every other node.
    for _ in 0..200 {
        let mut ready = true;
        for node in nodes.iter().flatten() {
            ready &= node.network().info().await?.routing_table_peers >= n - 1;
        }
        if ready {
            break;
        }
        for node in nodes.iter().flatten() {
            node.network().bootstrap().await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Net {
        nodes,
        keys,
        _dirs: dirs,
    })
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
}

/// Puts `bytes` through `node` as a file named `name`, wrapped to the owner only.
async fn put(
    node: &Node,
    bytes: Vec<u8>,
    name: impl Into<String>,
) -> Result<datamesh_node::files::PutReport, datamesh_node::files::PutError> {
    node.files()
        .put(std::io::Cursor::new(bytes), name.into(), vec![])
        .await
}

async fn get(node: &Node, id: datamesh_core::FileId) -> Result<Vec<u8>, GetError> {
    let file = node.files().open(id).await?;
    let out = SharedBuf::default();
    node.files().read(file, out.clone()).await?;
    Ok(out.take())
}

/// As [`get`], opened the way the API reads ([`datamesh_node::Files::open_to_read`]).
async fn get_to_read(node: &Node, id: datamesh_core::FileId) -> Result<Vec<u8>, GetError> {
    let file = node.files().open_to_read(id, KeyAccess::Live).await?;
    let out = SharedBuf::default();
    node.files().read(file, out.clone()).await?;
    Ok(out.take())
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn placement_of(
    node: &Node,
    id: &datamesh_core::FileId,
) -> Result<Placement, Box<dyn std::error::Error + Send + Sync>> {
    node.files()
        .catalog()
        .placement(id)?
        .ok_or_else(|| "no placement".into())
}

async fn placement_on_distinct_peers(n: usize) -> TestResult {
    let net = start_net(n, |_| 1 << 30).await?;
    let plain = data(3 * 1024 * 1024 + 123);
    let report = put(net.node(0), plain.clone(), "three.bin").await?;
    assert_eq!(report.stripes, 4);
    let placement = placement_of(net.node(0), &report.id)?;
    for stripe in 0..report.stripes {
        let peers: HashSet<_> = (0..6).filter_map(|i| placement.holder(stripe, i)).collect();
        assert_eq!(peers.len(), 6, "stripe {stripe} is not on 6 distinct peers");
    }
    assert_eq!(get(net.node(0), report.id).await?, plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_uses_six_distinct_peers_out_of_8() -> TestResult {
    placement_on_distinct_peers(8).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_uses_six_distinct_peers_out_of_12() -> TestResult {
    placement_on_distinct_peers(12).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_file_opens_on_another_node_even_with_two_holders_down() -> TestResult {
    let mut net = start_net(8, |_| 1 << 30).await?;
    let plain = data(2 * 1024 * 1024 + 5);
    let friend = net.keys[5].public_key();
    let report = net
        .node(0)
        .files()
        .put(
            std::io::Cursor::new(plain.clone()),
            "shared.bin".into(),
            vec![friend.into()],
        )
        .await?;
    // Node 5 was given the key; node 6 was not.
    assert_eq!(get(net.node(5), report.id).await?, plain);
    assert!(matches!(
        get(net.node(6), report.id).await,
        Err(GetError::NoKey(_))
    ));

    // Stop two holders of stripe 0 (not node 0 or 5): still readable everywhere.
    let placement = placement_of(net.node(0), &report.id)?;
    let mut stopped = 0;
    for i in 0..6 {
        let Some(holder) = placement.holder(0, i) else {
            continue;
        };
        let Some(index) = (1..8)
            .find(|&j| j != 5 && net.nodes[j].as_ref().is_some_and(|n| n.peer_id() == holder))
        else {
            continue;
        };
        net.stop(index).await?;
        stopped += 1;
        if stopped == 2 {
            break;
        }
    }
    assert_eq!(stopped, 2);
    assert_eq!(get(net.node(5), report.id).await?, plain);
    assert_eq!(get(net.node(0), report.id).await?, plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_that_does_not_match_its_id_is_refused() -> TestResult {
    let net = start_net(2, |_| 1 << 30).await?;
    let peer = net.node(1).peer_id();
    let id = ShardId::of(b"the real bytes");
    let response = net
        .node(0)
        .network()
        .request(
            peer,
            Request::Store {
                id,
                bytes: b"other bytes".to_vec().into(),
            },
        )
        .await?;
    assert_eq!(response, Response::Refused(Refusal::Mismatch));
    let response = net
        .node(0)
        .network()
        .request(peer, Request::Fetch { id })
        .await?;
    assert_eq!(response, Response::NotFound);
    let ok = net
        .node(0)
        .network()
        .request(
            peer,
            Request::Store {
                id,
                bytes: b"the real bytes".to_vec().into(),
            },
        )
        .await?;
    assert_eq!(ok, Response::Stored);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_node_refuses_and_the_putter_places_elsewhere() -> TestResult {
    // Node 3 has room for nothing: every stripe must go to the six others, and node 3,
    // a candidate for every stripe, refuses whatever it is offered.
    let net = start_net(7, |i| if i == 3 { 0 } else { 1 << 30 }).await?;
    let plain = data(4 * 1024 * 1024 + 1);
    let report = put(net.node(0), plain.clone(), "f").await?;
    let placement = placement_of(net.node(0), &report.id)?;
    let full = net.node(3).peer_id();
    assert!(!placement.peers().contains(&full));
    assert_eq!(placement.peers().len(), 6);
    let addr = net.node(3).api_addr();
    let metrics = tokio::task::spawn_blocking(move || {
        ureq::get(format!("http://{addr}/metrics"))
            .header("authorization", "Bearer test-token")
            .call()
            .and_then(|r| r.into_body().read_to_string())
    })
    .await??;
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("datamesh_shards_refused_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused > 0, "node 3 was never offered a shard:\n{metrics}");
    assert_eq!(get(net.node(0), report.id).await?, plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_fewer_than_six_peers_a_put_fails_and_says_how_many() -> TestResult {
    let net = start_net(4, |_| 1 << 30).await?;
    let err = put(net.node(0), data(10), "f").await.err();
    assert!(
        matches!(
            err,
            Some(PutError::NotEnoughPeers {
                placed: 4,
                found: 4,
                ..
            })
        ),
        "{err:?}"
    );
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharing_later_rewraps_the_key_without_moving_shards() -> TestResult {
    let net = start_net(7, |_| 1 << 30).await?;
    let plain = data(1024 * 1024 + 7);
    let report = put(net.node(0), plain.clone(), "later.bin").await?;
    assert!(matches!(
        get(net.node(6), report.id).await,
        Err(GetError::NoKey(_))
    ));
    let rewrap = net
        .node(0)
        .files()
        .rewrap(report.id, vec![net.keys[6].public_key().into()])
        .await?;
    assert_eq!(rewrap.sequence, 2);
    assert_eq!(rewrap.recipients, 2);
    assert!(rewrap.peers >= 3, "{rewrap:?}");
    // Only envelopes travel: a few hundred bytes per holder, far below one shard.
    assert!(rewrap.bytes_sent < 8 * 1024, "{rewrap:?}");
    assert_eq!(get(net.node(6), report.id).await?, plain);
    assert_eq!(get(net.node(0), report.id).await?, plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_needs_the_token_and_serves_status_files_and_metrics() -> TestResult {
    use datamesh_api::{Client, ClientError};
    let net = start_net(6, |_| 1 << 30).await?;
    let addr = net.node(0).api_addr();
    let outcome = tokio::task::spawn_blocking(move || -> TestResult {
        let wrong = Client::new(addr, "not-the-token");
        assert!(matches!(
            wrong.list(),
            Err(ClientError::Api { status: 401, .. })
        ));
        let client = Client::new(addr, "test-token");
        let plain = data(300_000);
        let put = client.put(std::io::Cursor::new(plain.clone()), "api.bin", &[])?;
        assert_eq!(put.size, 300_000);
        let listed = client.list()?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "api.bin");
        let id: datamesh_core::FileId = put.id.parse()?;
        let provider_walks = || -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
            let text = client.metrics()?;
            Ok(text
                .lines()
                .find_map(|l| l.strip_prefix("datamesh_dht_walks_total{kind=\"providers\"} "))
                .map_or(Ok(0), str::parse)?)
        };
        let walks_before_get = provider_walks()?;
        let mut download = client.get(&id)?;
        assert_eq!(
            (download.size, download.name.as_str()),
            (300_000, "api.bin")
        );
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut download.body, &mut got)?;
        assert!(got == plain);
        // The owner's get asked the holders its catalog names: no providers walk.
        assert_eq!(provider_walks()?, walks_before_get);
        let status = serde_json::to_value(client.status()?)?;
        assert_eq!(status["routing_table_peers"], 5);
        // An unknown (well-formed) id is "not found", a mistyped one a bad request.
        let unknown = datamesh_core::FileId::of_manifest(b"never stored");
        assert!(matches!(
            client.get(&unknown),
            Err(ClientError::Api { status: 404, .. })
        ));
        let scrape = || -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            Ok(ureq::get(format!("http://{addr}/metrics"))
                .header("authorization", "Bearer test-token")
                .call()?
                .into_body()
                .read_to_string()?)
        };
        // The get is counted when the node's reading task ends, which can be just after
        // the client has read the last of the `Content-Length` bytes: scrape until it
        // shows (bounded), never assume the two are ordered.
        let mut metrics = scrape()?;
        for _ in 0..100 {
            if metrics.contains("datamesh_gets_total 1") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            metrics = scrape()?;
        }
        assert!(metrics.contains("datamesh_puts_total 1"), "{metrics}");
        assert!(metrics.contains("datamesh_gets_total 1"), "{metrics}");
        // Each stage of the put is timed once; a lookup for its stripe and its manifest.
        for stage in ["keys", "encode", "place", "publish", "catalog"] {
            let line = format!("datamesh_put_stage_seconds_count{{stage=\"{stage}\"}} 1");
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
        assert!(
            metrics.contains("datamesh_placement_lookup_seconds_count 2"),
            "{metrics}"
        );
        // A client with small buffers (a one-shot `datamesh put` of a small file) still
        // carries a body many times their size, both ways.
        let small = Client::new(addr, "test-token").for_small_transfers();
        let put = small.put(std::io::Cursor::new(plain.clone()), "small.bin", &[])?;
        let mut download = small.get(&put.id.parse()?)?;
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut download.body, &mut got)?;
        assert!(got == plain);
        Ok(())
    })
    .await?;
    outcome?;
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_message_is_refused_and_the_node_keeps_serving() -> TestResult {
    use datamesh_node::protocol::{MAX_REQUEST_LEN, PROTOCOL, ShardCodec};
    use futures::StreamExt;
    use libp2p::request_response;
    use libp2p::swarm::SwarmEvent;

    let net = start_net(2, |_| 1 << 30).await?;
    let target = net.node(1).peer_id();
    let addr = net
        .node(1)
        .listen_addresses()
        .await?
        .into_iter()
        .next()
        .ok_or("node 1 has no address")?;
    // A misbehaving peer whose codec writes frames past the limit.
    let mut evil = common::shard_peer(
        ShardCodec::with_limits(64 << 20, 64 << 20),
        PROTOCOL,
        request_response::Config::default(),
        Duration::ZERO,
    )?;
    evil.add_peer_address(target, addr);
    // Control: a request within the limit gets an answer over the same path.
    evil.behaviour_mut()
        .send_request(&target, Request::Has { ids: vec![] });
    let control = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let SwarmEvent::Behaviour(event) = evil.select_next_some().await {
                return format!("{event:?}");
            }
        }
    })
    .await?;
    assert!(control.contains("Response"), "{control}");
    let bytes = vec![7u8; MAX_REQUEST_LEN + 1];
    evil.behaviour_mut().send_request(
        &target,
        Request::Store {
            id: ShardId::of(&bytes),
            bytes: bytes.into(),
        },
    );
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match evil.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    error, ..
                }) => {
                    return Ok(error.to_string());
                }
                SwarmEvent::Behaviour(request_response::Event::Message { message, .. }) => {
                    return Err(format!(
                        "the node answered an oversized request: {message:?}"
                    ));
                }
                _ => {}
            }
        }
    })
    .await?;
    assert!(outcome.is_ok(), "{outcome:?}");
    // Nothing was stored, and the node still answers others.
    let response = net
        .node(0)
        .network()
        .request(
            target,
            Request::Has {
                ids: vec![ShardId::of(b"x")],
            },
        )
        .await?;
    assert_eq!(response, Response::Has(vec![false]));
    net.shutdown().await
}

/// Index of the running node with this peer id.
fn index_of(net: &Net, peer: libp2p::PeerId) -> Option<usize> {
    (0..net.nodes.len()).find(|&j| net.nodes[j].as_ref().is_some_and(|n| n.peer_id() == peer))
}

/// Holders of stripe 0 (running nodes, in shard order), leaving out `keep`.
fn stripe0_holders(net: &Net, placement: &Placement, keep: &[usize]) -> Vec<usize> {
    (0..6)
        .filter_map(|i| placement.holder(0, i))
        .filter_map(|p| index_of(net, p))
        .filter(|j| !keep.contains(j))
        .collect()
}

async fn metric(node: &Node, name: &str) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let addr = node.api_addr();
    let text = tokio::task::spawn_blocking(move || {
        ureq::get(format!("http://{addr}/metrics"))
            .header("authorization", "Bearer test-token")
            .call()
            .and_then(|r| r.into_body().read_to_string())
    })
    .await??;
    let prefix = format!("{name} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0))
}

/// The owner's get of a file of several stripes asks each holder only about the shards
/// its placement put there: every shard id is looked up once on the network, not once per
/// peer. A holder that lost its shards since sends the get to every peer, and it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_asks_each_holder_only_about_its_own_shards() -> TestResult {
    let mut net = start_net(8, |_| 1 << 30).await?;
    let plain = data(2 * 1024 * 1024 + 5);
    let report = put(net.node(0), plain.clone(), "asked.bin").await?;
    let shards = 6 * report.stripes;
    let answered = "datamesh_has_ids_answered_total";
    let mut before = 0.0;
    for i in 0..8 {
        before += metric(net.node(i), answered).await?;
    }
    assert_eq!(get_to_read(net.node(0), report.id).await?, plain);
    let mut after = 0.0;
    for i in 0..8 {
        after += metric(net.node(i), answered).await?;
    }
    assert_eq!(after - before, shards as f64, "ids looked up for one get");
    // Two holders of stripe 0 gone: stripe 0 keeps four where placed, so the first round
    // still suffices; the copy is whole.
    let placement = placement_of(net.node(0), &report.id)?;
    let gone = stripe0_holders(&net, &placement, &[0]);
    net.stop(gone[0]).await?;
    net.stop(gone[1]).await?;
    assert_eq!(get_to_read(net.node(0), report.id).await?, plain);
    Ok(())
}

/// A read of the whole of this node's own file of several stripes fetches stripe 0 from
/// the holders its catalog recorded while it opens the file (its holders asked, its key
/// opened), and reads it from there; a range read does not. Two of those holders gone,
/// the other four still give stripe 0 while the file opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_read_fetches_the_first_stripe_while_the_file_opens() -> TestResult {
    let mut net = start_net(8, |_| 1 << 30).await?;
    let plain = data(2 * 1024 * 1024 + 5);
    let report = put(net.node(0), plain.clone(), "first.bin").await?;
    assert_eq!(report.stripes, 3);
    let first = "datamesh_first_stripes_fetched_while_opening_total";
    let files = net.node(0).files();
    let whole = files.open_to_read_whole(report.id, KeyAccess::Live).await?;
    let out = SharedBuf::default();
    files.read(whole, out.clone()).await?;
    assert!(out.take() == plain, "the whole read differs");
    assert_eq!(metric(net.node(0), first).await?, 1.0);
    // A range read opens the file without stripe 0, which it may not need.
    let part = files.open_to_read(report.id, KeyAccess::Live).await?;
    let range = datamesh_core::ByteRange::new(1 << 20, (1 << 20) + 999, plain.len() as u64)?;
    files.read_range(part, range, out.clone()).await?;
    assert!(out.take() == plain[1 << 20..(1 << 20) + 1000]);
    assert_eq!(metric(net.node(0), first).await?, 1.0);
    let placement = placement_of(net.node(0), &report.id)?;
    let gone = stripe0_holders(&net, &placement, &[0]);
    net.stop(gone[0]).await?;
    net.stop(gone[1]).await?;
    let whole = net
        .node(0)
        .files()
        .open_to_read_whole(report.id, KeyAccess::Live)
        .await?;
    let out = SharedBuf::default();
    net.node(0).files().read(whole, out.clone()).await?;
    assert!(
        out.take() == plain,
        "the whole read differs with two holders gone"
    );
    assert_eq!(metric(net.node(0), first).await?, 2.0);
    Ok(())
}

/// A put wraps its data key to the owner with a key agreement made ahead on a thread of
/// its own (`files/ahead.rs`) once one is ready: the first put starts that thread, later
/// ones take what it made. Every file opens again, whichever way it was wrapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_wrap_with_key_agreements_made_ahead_and_their_files_open() -> TestResult {
    let net = start_net(7, |_| 1 << 30).await?;
    let ready = "datamesh_put_key_agreements_ready_total";
    let mut files = Vec::new();
    for i in 0..20 {
        let plain = data(4096 + i);
        let report = put(net.node(0), plain.clone(), format!("ahead-{i}.bin")).await?;
        files.push((report.id, plain));
        if metric(net.node(0), ready).await? >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metric(net.node(0), ready).await? >= 2.0,
        "no put took an agreement made ahead in {} puts",
        files.len()
    );
    for (id, plain) in &files {
        assert_eq!(get(net.node(0), *id).await?, *plain);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_without_the_key_repairs_and_the_owner_survives_two_more_losses() -> TestResult {
    let mut net = start_net(8, |_| 1 << 30).await?;
    let plain = data(2 * 1024 * 1024 + 77);
    let report = put(net.node(0), plain.clone(), "kept.bin").await?;
    let id = report.id;
    // Node 7 was given no key: it cannot read the file...
    assert!(matches!(
        get(net.node(7), id).await,
        Err(GetError::NoKey(_))
    ));
    let before = net.node(7).checker().check(id, true).await?;
    assert_eq!(before.state(), Health::Healthy, "{:#}", before.to_json());
    assert!(before.bad_peers().is_empty());

    // Lose two holders of stripe 0 (not the owner, not the repairer).
    let placement = placement_of(net.node(0), &id)?;
    let originals = stripe0_holders(&net, &placement, &[0, 7]);
    assert!(originals.len() >= 4, "{originals:?}");
    net.stop(originals[0]).await?;
    net.stop(originals[1]).await?;
    let degraded = net.node(7).checker().check(id, false).await?;
    assert_eq!(
        degraded.state(),
        Health::Degraded,
        "{:#}",
        degraded.to_json()
    );

    // ...but it can repair it: no key needed.
    let repaired = net.node(7).checker().repair(id, true).await?;
    let json = repaired.to_json();
    assert_eq!(repaired.state_before(), Health::Degraded, "{json:#}");
    assert_eq!(repaired.state(), Health::Healthy, "{json:#}");
    assert!(repaired.repaired_shards() >= 2, "{json:#}");
    assert_eq!(json["after"]["healthy_stripes"], report.stripes);
    for stripe in &repaired.stripes {
        let peers: HashSet<_> = stripe.repaired.iter().map(|r| r.peer).collect();
        assert_eq!(
            peers.len(),
            stripe.repaired.len(),
            "new holders must be distinct"
        );
    }
    assert!(
        metric(net.node(7), "datamesh_repaired_shards_total").await? >= 2.0,
        "the counter counts repaired shards"
    );
    // A fresh check from the owner sees every stripe back at full health.
    let again = net.node(0).checker().check(id, true).await?;
    assert_eq!(again.state(), Health::Healthy, "{:#}", again.to_json());

    // Lose two *other* original holders: only the repaired shards make this readable.
    net.stop(originals[2]).await?;
    net.stop(originals[3]).await?;
    assert!(get(net.node(0), id).await? == plain);
    net.shutdown().await
}

/// The sum of metric `name` over the running nodes.
async fn metric_sum(
    net: &Net,
    name: &str,
) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let mut sum = 0.0;
    for node in net.nodes.iter().flatten() {
        sum += metric(node, name).await?;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_small_network_a_put_walks_no_dht_and_readers_still_find_every_holder() -> TestResult {
    let net = start_net(7, |_| 1 << 30).await?;
    let at_home = "datamesh_provides_unwalked_total{reason=\"census\"}";
    let walks = [
        "datamesh_dht_walks_total{kind=\"closest_peers\"}",
        "datamesh_dht_walks_total{kind=\"provide\"}",
        "datamesh_dht_walks_total{kind=\"provide_for_peer\"}",
    ];
    // Until every node has taken its census (a walk of its own, `census.rs`), a put
    // still walks: put small files until one needed no walk at all (bounded).
    // What the putter sends per kind of request (protocol 8: the envelope travels with
    // the manifest copy, never on its own; protocol 10: a one-stripe file's shard and
    // manifest copy for one peer travel together).
    let sent = |kind: &str| format!("datamesh_requests_sent_total{{kind=\"{kind}\"}}");
    let kinds = [
        "store",
        "store_manifest",
        "store_with_manifest",
        "put_envelope",
        "announce",
    ];
    let mut quiet = None;
    for attempt in 0..40 {
        let mut before = Vec::new();
        for name in walks {
            before.push(metric_sum(&net, name).await?);
        }
        let homed = metric_sum(&net, at_home).await?;
        let mut sent_before = Vec::new();
        for kind in kinds {
            sent_before.push(metric(net.node(0), &sent(kind)).await?);
        }
        let plain = data(4096 + attempt);
        let report = put(net.node(0), plain.clone(), "small.bin").await?;
        let mut after = Vec::new();
        for name in walks {
            after.push(metric_sum(&net, name).await?);
        }
        let homed = metric_sum(&net, at_home).await? - homed;
        let mut sent_by_put = Vec::new();
        for (kind, before) in kinds.iter().zip(sent_before) {
            sent_by_put.push(metric(net.node(0), &sent(kind)).await? - before);
        }
        if after == before && homed >= 6.0 {
            quiet = Some((report.id, plain, sent_by_put));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (id, plain, sent_by_put) = quiet.ok_or("no put went without a DHT walk in 40 tries")?;
    // The records stayed with their holders, and a providers walk from another node
    // still finds all of them: on a network this small it asks every peer. The manifest
    // holders among them provide on keeping the envelope, not asked by an `Announce`
    // (protocol 7): count them too.
    let placement = placement_of(net.node(0), &id)?;
    let mut holders: HashSet<libp2p::PeerId> = placement.peers().into_iter().collect();
    assert!(holders.len() >= 6, "{holders:?}");
    let manifest_blob = datamesh_core::ShardId::from_bytes(*id.as_bytes());
    let mut manifest_holders = 0;
    for i in 1..7 {
        if net.node(i).files().store().has(&manifest_blob)? {
            manifest_holders += 1;
            holders.insert(net.node(i).peer_id());
        }
    }
    assert!(
        manifest_holders >= 3,
        "{manifest_holders} remote manifest copies"
    );
    // Each remote holder got one request with what it stores: a holder of a shard its
    // shard and the manifest with the envelope together (so it provides the file as it
    // keeps the envelope: no `Announce`), a peer nearest the file id that holds no shard
    // the manifest with the envelope; no envelope went on its own.
    let remote = holders.len() - usize::from(holders.contains(&net.node(0).peer_id()));
    let [stores, manifests, together, envelopes, announces] = sent_by_put[..] else {
        return Err("one count per kind".into());
    };
    assert_eq!(envelopes, 0.0, "{sent_by_put:?}");
    assert_eq!(
        manifests + together,
        manifest_holders as f64,
        "{sent_by_put:?}"
    );
    // Of the 6 a stripe's shards go to, at least 5 are remote.
    assert!(together >= 5.0, "{sent_by_put:?}");
    assert_eq!(stores, 0.0, "{sent_by_put:?}");
    assert_eq!(announces, 0.0, "{sent_by_put:?}");
    assert_eq!(
        manifests + together,
        remote as f64,
        "{sent_by_put:?} for {remote} remote holders"
    );
    for reader in 1..7 {
        let found = net
            .node(reader)
            .network()
            .providers(id.as_bytes().to_vec())
            .await?;
        let missing: Vec<_> = holders.iter().filter(|p| !found.contains(p)).collect();
        assert!(missing.is_empty(), "node {reader} did not find {missing:?}");
    }
    assert!(get(net.node(0), id).await? == plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_that_queue_up_for_a_peer_go_in_batches_and_every_shard_is_held() -> TestResult {
    let net = start_net(7, |_| 1 << 30).await?;
    let sent = |kind: &str| format!("datamesh_requests_sent_total{{kind=\"{kind}\"}}");
    let (stores, batches) = (sent("store"), sent("store_batch"));
    let before = (
        metric(net.node(0), &stores).await?,
        metric(net.node(0), &batches).await?,
    );
    // 13 stripes: the put keeps several in flight, so each peer's stores queue up.
    let plain = data(12 * 1024 * 1024 + 5);
    let report = put(net.node(0), plain.clone(), "batched.bin").await?;
    assert_eq!(report.stripes, 13);
    let requests = (
        metric(net.node(0), &stores).await? - before.0,
        metric(net.node(0), &batches).await? - before.1,
    );
    // Every shard is held where the placement says, by the peer that acknowledged it.
    let placement = placement_of(net.node(0), &report.id)?;
    let manifest = net
        .node(0)
        .files()
        .catalog()
        .manifest(&report.id)?
        .ok_or("no manifest")?;
    let me = net.node(0).peer_id();
    let mut remote = 0;
    for (stripe, ids) in manifest.stripes().iter().enumerate() {
        for (index, shard) in ids.iter().enumerate() {
            let holder = placement.holder(stripe as u64, index).ok_or("no holder")?;
            remote += usize::from(holder != me);
            let node = (0..7)
                .map(|i| net.node(i))
                .find(|n| n.peer_id() == holder)
                .ok_or("a holder outside the network")?;
            assert!(
                node.files().store().has(shard)?,
                "stripe {stripe} shard {index} is not held by its holder"
            );
        }
    }
    // Some went in batches, so fewer requests than remote shards went out (a manifest
    // copy to a holder is a `store_manifest`, counted apart).
    assert!(requests.1 >= 1.0, "{requests:?}");
    assert!(
        requests.0 + requests.1 < remote as f64,
        "{requests:?} requests for {remote} remote shards"
    );
    assert!(get(net.node(0), report.id).await? == plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_names_a_corrupt_shard_and_repair_replaces_it() -> TestResult {
    use datamesh_api::{Client, ClientError};
    // Node 6 runs without test faults: its debug route does not exist.
    let net = start_net_with(
        7,
        |_| 1 << 30,
        |i| {
            if i == 6 {
                TestFaults::none()
            } else {
                TestFaults::none().with_debug_api()
            }
        },
        Duration::ZERO,
    )
    .await?;
    let plain = data(1024 * 1024 + 3);
    let id = put(net.node(0), plain.clone(), "rot.bin").await?.id;
    let placement = placement_of(net.node(0), &id)?;
    let victim = *stripe0_holders(&net, &placement, &[0, 6])
        .first()
        .ok_or("no holder to corrupt")?;
    let victim_peer = net.node(victim).peer_id();
    let (addr, plain_addr) = (net.node(victim).api_addr(), net.node(6).api_addr());
    let corrupted = tokio::task::spawn_blocking(move || {
        let client = Client::new(addr, "test-token");
        let normal = Client::new(plain_addr, "test-token");
        let refused = normal.debug_corrupt_shard(None, Some(&id), None, None);
        assert!(
            matches!(refused, Err(ClientError::Api { status: 404, .. })),
            "{refused:?}"
        );
        client.debug_corrupt_shard(None, Some(&id), Some(0), None)
    })
    .await??;
    let corrupted = serde_json::to_value(corrupted)?;
    let shard = corrupted["shard"]
        .as_str()
        .ok_or("no shard in answer")?
        .to_string();
    assert_eq!(corrupted["stripe"], 0);

    // Readers still get the right bytes.
    assert!(get(net.node(0), id).await? == plain);
    // The cheap check trusts the holder; verify names it.
    assert_eq!(
        net.node(0).checker().check(id, false).await?.state(),
        Health::Healthy
    );
    let verified = net.node(0).checker().check(id, true).await?;
    assert_eq!(
        verified.state(),
        Health::Degraded,
        "{:#}",
        verified.to_json()
    );
    assert_eq!(verified.bad_peers(), vec![victim_peer]);
    // The same through the API (what `datamesh --json check ID --verify` prints).
    let api = net.node(0).api_addr();
    let json = tokio::task::spawn_blocking(move || {
        let wrong = ureq::post(format!("http://{api}/v1/files/{id}/check?verify=maybe"))
            .header("authorization", "Bearer test-token")
            .send_empty();
        assert!(
            matches!(wrong, Err(ureq::Error::StatusCode(400))),
            "{wrong:?}"
        );
        Client::new(api, "test-token").check(&id, true, false)
    })
    .await??;
    let json = serde_json::to_value(json)?;
    assert_eq!(json["state"], "degraded", "{json:#}");
    assert_eq!(json["verified"], true);
    assert_eq!(json["bad_peers"][0], victim_peer.to_string());
    assert_eq!(json["stripes"][0]["before"]["healthy"], 5);
    let bad = &json["stripes"][0]["bad"][0];
    assert_eq!(bad["shard"], shard.as_str());
    assert_eq!(bad["reason"], "corrupt");
    assert_eq!(bad["peer"], victim_peer.to_string());

    let repaired = net.node(0).checker().repair(id, true).await?;
    assert_eq!(
        repaired.state(),
        Health::Healthy,
        "{:#}",
        repaired.to_json()
    );
    assert_eq!(repaired.repaired_shards(), 1, "{:#}", repaired.to_json());
    // The corrupt copy was dropped: a second verify is clean.
    let clean = net.node(0).checker().check(id, true).await?;
    assert_eq!(clean.state(), Health::Healthy, "{:#}", clean.to_json());
    assert!(clean.bad_peers().is_empty(), "{:#}", clean.to_json());
    assert!(get(net.node(0), id).await? == plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_serving_wrong_bytes_is_rejected_and_reported() -> TestResult {
    // Six nodes: every stripe has a shard on the liar (node 3).
    let net = start_net_with(
        6,
        |_| 1 << 30,
        |i| {
            if i == 3 {
                TestFaults::none().with_debug_api().with_wrong_bytes()
            } else {
                TestFaults::none()
            }
        },
        Duration::ZERO,
    )
    .await?;
    let liar = net.node(3).peer_id();
    let plain = data(6 * 1024 * 1024 + 11);
    let id = put(net.node(0), plain.clone(), "liar.bin").await?.id;
    // The get asks the recorded holder of each data shard first: wherever that is the
    // liar, its bytes must be rejected and the shard fetched elsewhere.
    let placement = placement_of(net.node(0), &id)?;
    let asked_liar = (0..7u64).any(|s| (0..4).any(|i| placement.holder(s, i) == Some(liar)));
    let file = net.node(0).files().open(id).await?;
    let out = SharedBuf::default();
    let got = net.node(0).files().read(file, out.clone()).await?;
    assert!(out.take() == plain, "wrong bytes reached the output");
    if asked_liar {
        assert!(got.bad_peers.contains(&liar), "{got:?}");
    }
    // Verify fetches every copy: the liar is named for every stripe.
    let verified = net.node(0).checker().check(id, true).await?;
    let json = verified.to_json();
    assert_eq!(verified.bad_peers(), vec![liar], "{json:#}");
    for stripe in json["stripes"].as_array().ok_or("no stripes")? {
        assert_eq!(stripe["bad"][0]["reason"], "wrong_bytes", "{json:#}");
        assert_eq!(stripe["healthy"], 5);
    }
    assert!(metric(net.node(0), "datamesh_bad_shards_fetched_total").await? >= 7.0);
    // No seventh peer to move the liar's shards to: repair says so, the file stays
    // readable.
    let repaired = net.node(0).checker().repair(id, true).await?;
    assert_eq!(
        repaired.state(),
        Health::Degraded,
        "{:#}",
        repaired.to_json()
    );
    assert!(
        repaired.stripes.iter().all(|s| s.error.is_some()),
        "{:#}",
        repaired.to_json()
    );
    assert!(get(net.node(0), id).await? == plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_self_check_repairs_the_catalog_and_counts_files_below_full_health() -> TestResult {
    use datamesh_api::Client;
    // The self-check is called directly here (no timer); the next test covers the timer.
    let mut net = start_net_with(
        7,
        |_| 1 << 30,
        |_| TestFaults::none().with_debug_api(),
        Duration::ZERO,
    )
    .await?;
    let plain = data(512 * 1024);
    let id = put(net.node(0), plain.clone(), "self.bin").await?.id;
    let placement = placement_of(net.node(0), &id)?;
    let holders = stripe0_holders(&net, &placement, &[0]);
    // Bit rot on a holder: the cheap self-check trusts the holder; the verifying one
    // finds the copy and replaces it.
    let addr = net.node(holders[2]).api_addr();
    tokio::task::spawn_blocking(move || {
        Client::new(addr, "test-token").debug_corrupt_shard(None, Some(&id), Some(0), None)
    })
    .await??;
    let pass = net.node(0).checker().self_check(false).await;
    assert_eq!((pass.repaired_shards, pass.below_full_health.len()), (0, 0));
    let pass = net.node(0).checker().self_check(true).await;
    assert_eq!(pass.repaired_shards, 1, "{pass:?}");
    assert!(pass.below_full_health.is_empty(), "{pass:?}");
    // One holder lost, a spare peer left: the self-check repairs.
    net.stop(holders[0]).await?;
    let pass = net.node(0).checker().self_check(false).await;
    assert_eq!(pass.files, 1);
    assert!(pass.below_full_health.is_empty(), "{pass:?}");
    assert_eq!(pass.repaired_shards, 1, "{pass:?}");
    // Another lost, only five peers left: below full health, and said so.
    net.stop(holders[1]).await?;
    let pass = net.node(0).checker().self_check(false).await;
    assert_eq!(pass.below_full_health, vec![id], "{pass:?}");
    assert_eq!(
        metric(net.node(0), "datamesh_files_below_full_health").await?,
        1.0
    );
    let addr = net.node(0).api_addr();
    let status =
        tokio::task::spawn_blocking(move || Client::new(addr, "test-token").status()).await??;
    let status = serde_json::to_value(status)?;
    assert_eq!(status["files_below_full_health"], 1);
    assert_eq!(status["below_full_health"][0], id.to_string());
    assert!(get(net.node(0), id).await? == plain);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_node_runs_its_self_check_on_the_configured_interval() -> TestResult {
    let net = start_net_with(
        6,
        |_| 1 << 30,
        |_| TestFaults::none(),
        Duration::from_millis(300),
    )
    .await?;
    put(net.node(0), data(1000), "tick.bin").await?;
    // Bounded wait for the timer (no timing assertion: only that it ran).
    let mut ran = false;
    for _ in 0..300 {
        if net
            .node(0)
            .checker()
            .last_self_check()
            .is_some_and(|c| c.files == 1)
        {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ran, "no self-check within 30 s");
    assert!(metric(net.node(0), "datamesh_self_checks_total").await? >= 1.0);
    assert_eq!(
        metric(net.node(0), "datamesh_files_below_full_health").await?,
        0.0
    );
    net.shutdown().await
}

/// Shards and bytes each running node holds.
async fn holdings(net: &Net) -> Result<Vec<(u64, u64)>, Box<dyn std::error::Error + Send + Sync>> {
    let mut out = Vec::new();
    for node in net.nodes.iter().flatten() {
        let store = Arc::clone(node.files().store());
        out.push(
            tokio::task::spawn_blocking(
                move || -> Result<(u64, u64), datamesh_node::StoreError> {
                    Ok((store.shard_count()?, store.used_bytes()?))
                },
            )
            .await??,
        );
    }
    Ok(out)
}

/// Waits (bounded) until every node's holdings are `expected(i)`; returns the last seen.
async fn wait_for_holdings(
    net: &Net,
    expected: impl Fn(usize) -> (u64, u64),
) -> Result<Vec<(u64, u64)>, Box<dyn std::error::Error + Send + Sync>> {
    let want: Vec<(u64, u64)> = (0..net.nodes.len()).map(expected).collect();
    let mut seen = holdings(net).await?;
    for _ in 0..300 {
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = holdings(net).await?;
    }
    Ok(seen)
}

/// Yields `len` bytes of test data, then (once `gate`, if any, is opened or dropped, or
/// after a bounded wait) fails like an upload cut mid-stream.
struct CutReader {
    data: Vec<u8>,
    pos: usize,
    gate: Option<std::sync::mpsc::Receiver<()>>,
}

impl CutReader {
    fn new(len: usize, gate: Option<std::sync::mpsc::Receiver<()>>) -> Self {
        Self {
            data: data(len),
            pos: 0,
            gate,
        }
    }
}

impl std::io::Read for CutReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.data.len() {
            let n = buf.len().min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv_timeout(Duration::from_secs(120));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "upload cut",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_that_fails_for_want_of_peers_leaves_nothing_on_the_peers() -> TestResult {
    // Four nodes: every stripe of this three-stripe file is placed on four of them,
    // then the put fails. What was placed must go again.
    let net = start_net(4, |_| 1 << 30).await?;
    let err = put(net.node(0), data(9 * 1024 * 1024), "f").await.err();
    assert!(
        matches!(err, Some(PutError::NotEnoughPeers { placed: 4, .. })),
        "{err:?}"
    );
    let left = wait_for_holdings(&net, |_| (0, 0)).await?;
    assert_eq!(left, vec![(0, 0); 4], "(shards, bytes) left per node");
    assert!(net.node(0).files().catalog().list()?.is_empty());
    assert!(metric(net.node(0), "datamesh_put_cleanup_deleted_total").await? >= 4.0);
    assert_eq!(
        metric(net.node(0), "datamesh_put_cleanup_failures_total").await?,
        0.0
    );
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_whose_input_breaks_mid_stream_leaves_nothing_behind() -> TestResult {
    let net = start_net(7, |_| 1 << 30).await?;
    // The encoder reads stripes (1 MiB of input each) in batches of eight, the next batch
    // while the last is placed: at least the first batch is placed, then the input fails.
    let err = net
        .node(0)
        .files()
        .put(CutReader::new(20 * 1024 * 1024, None), "f".into(), vec![])
        .await
        .err();
    assert!(matches!(err, Some(PutError::Encode(_))), "{err:?}");
    let left = wait_for_holdings(&net, |_| (0, 0)).await?;
    assert_eq!(left, vec![(0, 0); 7], "(shards, bytes) left per node");
    assert!(net.node(0).files().catalog().list()?.is_empty());
    assert!(metric(net.node(0), "datamesh_put_cleanup_deleted_total").await? >= 12.0);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_clean_up_of_a_failed_put_keeps_a_shard_another_owner_also_stored() -> TestResult {
    let net = start_net(7, |_| 1 << 30).await?;
    let (open, gate) = std::sync::mpsc::channel();
    let files = net.node(0).files().clone();
    let put = tokio::spawn(async move {
        files
            .put(
                CutReader::new(20 * 1024 * 1024, Some(gate)),
                "f".into(),
                vec![],
            )
            .await
    });
    // The input stops after 20 MiB (two batches of eight stripes read, the first placed)
    // until the test lets it fail. Wait (bounded) until a node other than the putter
    // holds a shard of the put.
    let mut target = None;
    for _ in 0..300 {
        for j in 1..7 {
            let store = Arc::clone(net.node(j).files().store());
            if let Some(id) = tokio::task::spawn_blocking(move || store.ids())
                .await??
                .first()
            {
                target = Some((j, *id));
            }
        }
        if target.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (holder, id) = target.ok_or("the put placed nothing")?;
    // Another node stores the very same shard on that holder, for itself.
    let other = if holder == 1 { 2 } else { 1 };
    let store = Arc::clone(net.node(holder).files().store());
    let bytes = tokio::task::spawn_blocking(move || store.get(&id))
        .await??
        .ok_or("shard gone")?;
    let len = bytes.len() as u64;
    let answer = net
        .node(other)
        .network()
        .request(
            net.node(holder).peer_id(),
            Request::Store {
                id,
                bytes: bytes.into(),
            },
        )
        .await?;
    assert_eq!(answer, Response::AlreadyHeld);
    // Now the input breaks: the put fails and cleans up.
    open.send(())?;
    let err = put.await?.err();
    assert!(matches!(err, Some(PutError::Encode(_))), "{err:?}");
    let left = wait_for_holdings(&net, |i| if i == holder { (1, len) } else { (0, 0) }).await?;
    let want: Vec<(u64, u64)> = (0..7)
        .map(|i| if i == holder { (1, len) } else { (0, 0) })
        .collect();
    assert_eq!(left, want, "(shards, bytes) left per node");
    // The putter's claim is gone; the other owner's is what keeps the shard.
    let holder_peer = net.node(holder).peer_id();
    let putter = net
        .node(0)
        .network()
        .request(holder_peer, Request::Delete { id })
        .await?;
    assert_eq!(putter, Response::Refused(Refusal::Denied));
    let owner = net
        .node(other)
        .network()
        .request(holder_peer, Request::Delete { id })
        .await?;
    assert_eq!(owner, Response::Done);
    let left = wait_for_holdings(&net, |_| (0, 0)).await?;
    assert_eq!(left, vec![(0, 0); 7]);
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_dropped_part_way_leaves_nothing_behind() -> TestResult {
    // As when the API client goes away: the put's future is dropped mid-way, while its
    // input is stalled and some stripes are placed.
    let net = start_net(7, |_| 1 << 30).await?;
    let (open, gate) = std::sync::mpsc::channel::<()>();
    let files = net.node(0).files().clone();
    let put = tokio::spawn(async move {
        files
            .put(
                CutReader::new(20 * 1024 * 1024, Some(gate)),
                "f".into(),
                vec![],
            )
            .await
    });
    let mut placed = 0;
    for _ in 0..300 {
        placed = holdings(&net).await?.iter().map(|(shards, _)| shards).sum();
        if placed >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(placed >= 6, "the put placed {placed} shards");
    put.abort();
    assert!(put.await.is_err_and(|e| e.is_cancelled()));
    drop(open);
    let left = wait_for_holdings(&net, |_| (0, 0)).await?;
    assert_eq!(left, vec![(0, 0); 7], "(shards, bytes) left per node");
    assert!(net.node(0).files().catalog().list()?.is_empty());
    net.shutdown().await
}

/// Keys that change while the node runs: an active key, and revoked keys that open files
/// only through [`KeyProvider::file_keys_with_revoked`] (the explicit override). The live
/// keys are handed out again until they change, as the keystore's adapter does.
struct ChangingKeys {
    active: std::sync::Mutex<[u8; 32]>,
    revoked: std::sync::Mutex<Vec<[u8; 32]>>,
    overrides: std::sync::atomic::AtomicUsize,
    live: std::sync::Mutex<Option<Arc<FileKeys>>>,
}

impl ChangingKeys {
    fn new(active: &SecretKey) -> Self {
        Self {
            active: std::sync::Mutex::new(*active.to_bytes()),
            revoked: std::sync::Mutex::default(),
            overrides: std::sync::atomic::AtomicUsize::new(0),
            live: std::sync::Mutex::default(),
        }
    }

    /// A new active key, the old ones revoked: the live keys are built again.
    fn change(&self, active: &SecretKey, revoked: &[&SecretKey]) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = *active.to_bytes();
        *self.revoked.lock().unwrap_or_else(|p| p.into_inner()) =
            revoked.iter().map(|k| *k.to_bytes()).collect();
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn keys(&self, with_revoked: bool) -> Result<Arc<FileKeys>, KeyProviderError> {
        let active = *self.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut decrypt = vec![SecretKey::from_bytes(&active).map_err(KeyProviderError::new)?];
        if with_revoked {
            for bytes in self
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                decrypt.push(SecretKey::from_bytes(bytes).map_err(KeyProviderError::new)?);
            }
        }
        Ok(Arc::new(FileKeys {
            active: SecretKey::from_bytes(&active).map_err(KeyProviderError::new)?,
            decrypt,
            hybrid: Vec::new(),
            p256: Vec::new(),
            // The file-authority root stays when the file keys change.
            authority: vec![AuthorityRoot::from_bytes(&[0x5c; 32])],
            unlocked: Unlocked::default(),
        }))
    }
}

impl KeyProvider for ChangingKeys {
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = &*live {
            return Ok(Arc::clone(keys));
        }
        let keys = self.keys(false)?;
        *live = Some(Arc::clone(&keys));
        Ok(keys)
    }

    fn file_keys_with_revoked(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        self.overrides
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.keys(true)
    }
}

/// Node 0 of `net` replaced by a node of the same network whose keys are `keys`.
async fn node_with_keys(
    net: &Net,
    keys: Arc<dyn KeyProvider>,
    dir: &std::path::Path,
) -> Result<Node, Box<dyn std::error::Error + Send + Sync>> {
    let network = NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?])
        .with_bootstrap(net.node(1).listen_addresses().await?)
        .with_request_timeout(Duration::from_secs(10));
    let config = NodeConfig::new(
        dir.join("db"),
        network,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    let node = Node::start(
        config,
        Keypair::generate_ed25519(),
        keys,
        ApiToken::new("test-token"),
    )
    .await?;
    for _ in 0..200 {
        if node.network().info().await?.routing_table_peers >= net.nodes.len() {
            break;
        }
        node.network().bootstrap().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_only_a_revoked_key_opens_needs_the_explicit_override() -> TestResult {
    use datamesh_node::KeyAccess;
    let net = start_net(6, |_| 1 << 30).await?;
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let keys = Arc::new(ChangingKeys::new(&old));
    let dir = tempfile::tempdir()?;
    let owner = node_with_keys(&net, keys.clone(), dir.path()).await?;
    let plain = data(300_001);
    let id = put(&owner, plain.clone(), "old.bin").await?.id;
    // Read twice with the keys unchanged: the second takes the data key the first opened.
    let remembered = "datamesh_unlocks_remembered_total";
    assert!(get(&owner, id).await? == plain);
    assert_eq!(metric(&owner, remembered).await?, 0.0);
    assert!(get(&owner, id).await? == plain);
    assert_eq!(metric(&owner, remembered).await?, 1.0);
    // The old key is revoked: a new active key, the old one only on override. What the
    // old keys opened goes with them.
    keys.change(&new, &[&old]);
    assert!(matches!(get(&owner, id).await, Err(GetError::NoKey(_))));
    assert!(matches!(
        owner.files().rewrap(id, vec![]).await,
        Err(datamesh_node::RewrapError::NoKey(_))
    ));
    assert_eq!(keys.overrides.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Explicitly: the file reads, and re-wraps to the new active key.
    let file = owner.files().open_with(id, KeyAccess::WithRevoked).await?;
    let out = SharedBuf::default();
    owner.files().read(file, out.clone()).await?;
    assert!(out.take() == plain);
    owner
        .files()
        .rewrap_with(id, vec![], KeyAccess::WithRevoked)
        .await?;
    assert_eq!(keys.overrides.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Now the live keys open it (a new envelope: opened, not remembered), and the revoked
    // key opens none of its envelopes.
    assert!(get(&owner, id).await? == plain);
    assert_eq!(metric(&owner, remembered).await?, 1.0);
    let usage = owner.files().key_usage(KeyAccess::WithRevoked)?;
    let old_id = datamesh_core::KeyId::of(&old.public_key());
    assert_eq!(usage.len(), 1);
    assert!(!usage[0].1.contains(&old_id), "{usage:?}");
    owner.shutdown().await?;
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reencrypt_gives_a_fresh_data_key_and_releases_the_old_shards() -> TestResult {
    use datamesh_core::KeyEnvelope;
    use datamesh_node::KeyAccess;
    let net = start_net(7, |_| 1 << 30).await?;
    let owner = net.node(0);
    let plain = data(2 * 1024 * 1024 + 5);
    let old = put(owner, plain.clone(), "secret.bin").await?.id;
    let old_manifest = owner.files().manifest_of(old).await?;
    // What a thief keeps: the old envelope (and the key that opens it).
    let old_envelope = match net
        .node(1)
        .network()
        .request(owner.peer_id(), Request::GetEnvelope { file: old })
        .await?
    {
        Response::Envelopes(list) if !list.is_empty() => KeyEnvelope::from_bytes(&list[0])?,
        other => return Err(format!("no envelope: {other:?}").into()),
    };
    let old_dek = old_envelope.open([&net.keys[0]])?;
    assert!(old_manifest.open_metadata(&old_dek).is_some());

    let report = owner.files().reencrypt(old, KeyAccess::Live).await?;
    assert_eq!((report.old, report.size), (old, plain.len() as u64));
    assert_ne!(report.new, old);
    assert!(get(owner, report.new).await? == plain);
    let listed: Vec<_> = owner
        .files()
        .catalog()
        .list()?
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![report.new]);
    // The old data key opens nothing of the new file, whose shards are all new.
    let new_manifest = owner.files().manifest_of(report.new).await?;
    assert!(new_manifest.open_metadata(&old_dek).is_none());
    let old_ids: HashSet<ShardId> = old_manifest.stripes().iter().flatten().copied().collect();
    assert!(
        new_manifest
            .stripes()
            .iter()
            .flatten()
            .all(|s| !old_ids.contains(s))
    );
    // Every holder released the old shards and manifest copies.
    assert!(report.released >= 3 * 6, "{report:?}");
    let mut asked: Vec<ShardId> = old_ids.into_iter().collect();
    asked.push(ShardId::from_bytes(*old.as_bytes()));
    for i in 0..net.nodes.len() {
        let store = net.node(i).files().store();
        for id in &asked {
            assert!(!store.has(id)?, "node {i} still holds {}", id.short());
        }
    }
    assert!(matches!(
        owner.files().reencrypt(old, KeyAccess::Live).await,
        Err(datamesh_node::ReencryptError::NotFound(_))
    ));
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_file_checksum_failure_cuts_the_download_even_at_a_chunk_multiple() -> TestResult {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use datamesh_core::KeyEnvelope;
    let net = start_net(6, |_| 1 << 30).await?;
    let owner = net.node(0);
    let asker = net.node(1);
    // 512 KiB: a multiple of the API's 256 KiB chunks.
    let plain = data(512 * 1024);
    let honest = put(owner, plain.clone(), "lie.bin").await?.id;
    let manifest = owner.files().manifest_of(honest).await?;
    let Response::Envelopes(list) = asker
        .network()
        .request(owner.peer_id(), Request::GetEnvelope { file: honest })
        .await?
    else {
        return Err("no envelope".into());
    };
    let dek = KeyEnvelope::from_verified_bytes(&list[0], &manifest.authority().key)?
        .open([&net.keys[0]])?;
    let mut metadata = manifest
        .open_metadata(&dek)
        .ok_or("metadata does not open")?;
    // The same file, but its sealed metadata claims another whole-file BLAKE3: every
    // segment still authenticates, only the final check fails.
    metadata.blake3[0] ^= 1;
    let mut sealed = postcard::to_stdvec(&metadata)?;
    sealed.resize(sealed.len().next_multiple_of(64), 0);
    let mut aad = b"datamesh metadata v1".to_vec();
    aad.extend_from_slice(&manifest.file_len().to_be_bytes());
    aad.extend_from_slice(&(manifest.segment_size().bytes() as u32).to_be_bytes());
    let mut nonce = [0u8; 12];
    nonce[0] = 1;
    nonce[11] = 1;
    let cipher =
        aes_gcm::Aes256Gcm::new_from_slice(&dek.to_bytes()[..]).map_err(|_| "bad key length")?;
    cipher
        .encrypt_in_place(&nonce.into(), &aad, &mut sealed)
        .map_err(|_| "sealing failed")?;
    // The manifest ends with the sealed metadata, then the authority key (a length byte
    // and 33 bytes) and its 32-byte salt (docs/format.md): swap the sealed metadata.
    let honest_bytes = manifest.to_bytes();
    let tail = 1 + datamesh_core::AUTHORITY_KEY_LEN + datamesh_core::AUTHORITY_SALT_LEN;
    let cut = honest_bytes.len() - tail - sealed.len();
    let mut bytes = honest_bytes[..cut].to_vec();
    bytes.extend_from_slice(&sealed);
    bytes.extend_from_slice(&honest_bytes[honest_bytes.len() - tail..]);
    let lying = datamesh_core::Manifest::from_bytes(&bytes)?;
    let id = lying.file_id();
    assert!(
        lying
            .open_metadata(&dek)
            .is_some_and(|m| m.blake3 == metadata.blake3)
    );
    // Published like a put would: manifest on every node, an envelope, providers.
    // Signed by the owner's authority key: the lying manifest keeps the honest one's
    // authority key and salt.
    let authority = datamesh_core::AuthorityKey::derive(
        &test_root(&net.keys[0].to_bytes()),
        &lying.authority().salt,
    )?;
    let envelope = KeyEnvelope::seal(id, 1, &dek, &[net.keys[0].public_key()], &authority)?;
    for i in 0..net.nodes.len() {
        let peer = net.node(i).peer_id();
        let stored = asker
            .network()
            .request(
                peer,
                Request::Store {
                    id: ShardId::from_bytes(*id.as_bytes()),
                    bytes: bytes.clone().into(),
                },
            )
            .await;
        let announced = asker
            .network()
            .request(
                peer,
                Request::Announce {
                    file: id,
                    held: ShardId::from_bytes(*id.as_bytes()),
                },
            )
            .await;
        if i == 0 {
            assert!(matches!(stored, Ok(Response::Stored)), "{stored:?}");
            let put = asker
                .network()
                .request(
                    peer,
                    Request::PutEnvelope {
                        bytes: envelope.to_bytes(),
                    },
                )
                .await?;
            assert_eq!(put, Response::Done);
        } else if i != 1 {
            assert!(announced.is_ok(), "{announced:?}");
        }
    }
    asker
        .network()
        .start_providing(id.as_bytes().to_vec())
        .await?;
    // Through the API, as `datamesh get` reads it: the download must not end complete.
    let addr = owner.api_addr();
    let outcome = tokio::task::spawn_blocking(move || -> TestResult {
        let client = datamesh_api::Client::new(addr, "test-token");
        let download = client.get(&id)?;
        assert_eq!(download.size, 512 * 1024);
        let mut out = Vec::new();
        let copied = download.copy_to(&mut out);
        assert!(
            copied.is_err(),
            "a file failing its BLAKE3 downloaded whole: {copied:?}"
        );
        assert!(out.len() < 512 * 1024, "{} bytes", out.len());
        Ok(())
    })
    .await?;
    outcome?;
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_file_is_encoded_and_decoded_on_the_calling_task_and_a_larger_one_is_not()
-> TestResult {
    use datamesh_node::files::{PutInput, SMALL_FILE_BYTES};
    let net = start_net(8, |_| 1 << 30).await?;
    let files = net.node(0).files();
    let small = SMALL_FILE_BYTES;
    for len in [0, 1, 4096, small, small + 1, 3 * small] {
        let plain = data(len);
        let report = files
            .put_resumable(
                PutInput::<std::io::Empty>::Bytes(plain.clone()),
                format!("f{len}"),
                None,
                vec![],
                None,
                SegmentSize::MIN,
            )
            .await?;
        assert_eq!(report.size, len as u64);
        let mut opened = files.open_to_read(report.id, KeyAccess::Live).await?;
        match files.try_read_small(&mut opened) {
            Some(read) => {
                assert!(len <= small, "{len} bytes read on the task");
                assert!(read? == plain, "{len} bytes differ");
            }
            None => {
                assert!(len > small, "{len} bytes not read on the task");
                let out = SharedBuf::default();
                files.read(opened, out.clone()).await?;
                assert!(out.take() == plain, "{len} bytes differ");
            }
        }
        // Opened without its stripe (as every other reader opens it): read as usual.
        let mut opened = files.open(report.id).await?;
        if files.try_read_small(&mut opened).is_some() {
            return Err(format!("{len} bytes read on the task with no stripe fetched").into());
        }
        let out = SharedBuf::default();
        files.read(opened, out.clone()).await?;
        assert!(out.take() == plain, "{len} bytes differ");
    }

    // Through the API: a body in one piece and a streamed one, each side of the bound.
    let addr = net.node(0).api_addr();
    tokio::task::spawn_blocking(move || -> TestResult {
        let client = datamesh_api::Client::new(addr, "test-token");
        for len in [small, small + 1] {
            let plain = data(len);
            let sized = client.put_bytes(&plain, "sized", &[])?;
            let streamed = client.put(std::io::Cursor::new(plain.clone()), "streamed", &[])?;
            for id in [sized.id, streamed.id] {
                let download = client.get(&id.parse::<FileId>()?)?;
                assert_eq!(download.size, len as u64);
                let mut out = Vec::new();
                download.copy_to(&mut out)?;
                assert!(out == plain, "{len} bytes differ");
            }
        }
        Ok(())
    })
    .await??;
    net.shutdown().await
}

/// A peer's `Fetch` of a small shard still in memory is answered by the swarm task that
/// received it (no blocking thread), with the same checked bytes; a shard larger than
/// that bound is read on a blocking thread as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_shard_in_memory_is_served_by_the_swarm_task_and_a_large_one_is_not() -> TestResult
{
    let net = start_net(8, |_| 1 << 30).await?;
    let served = "datamesh_shards_served_total";
    let at_once = "datamesh_shards_served_at_once_total";
    // 4 KiB: four data shards of about 1 KiB, three or four of them on other nodes.
    let small = data(4096);
    let report = put(net.node(0), small.clone(), "small").await?;
    let before = metric_sum(&net, at_once).await?;
    assert!(get(net.node(0), report.id).await? == small);
    let answered = metric_sum(&net, at_once).await? - before;
    assert!(
        answered >= 3.0,
        "{answered} shards of the small file served at once"
    );
    // 2 MiB in 1 MiB segments: shards of 256 KiB, past the bound.
    let large = data(2 * 1024 * 1024);
    let report = put(net.node(0), large.clone(), "large").await?;
    let (served_before, before) = (
        metric_sum(&net, served).await?,
        metric_sum(&net, at_once).await?,
    );
    assert!(get(net.node(0), report.id).await? == large);
    assert_eq!(metric_sum(&net, at_once).await?, before);
    let shards = metric_sum(&net, served).await? - served_before;
    assert!(shards >= 6.0, "{shards} shards of the large file served");
    net.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_files_read_fetches_its_recorded_holders_at_once_and_asks_when_they_are_gone()
-> TestResult {
    let mut net = start_net(10, |_| 1 << 30).await?;
    let plain = data(4096);
    let report = put(net.node(0), plain.clone(), "small.bin").await?;
    let id = report.id;
    assert_eq!(report.stripes, 1);
    let recorded = "datamesh_gets_from_recorded_total";
    assert!(get_to_read(net.node(0), id).await? == plain);
    assert_eq!(
        metric(net.node(0), recorded).await?,
        1.0,
        "read from the recorded holders"
    );
    // A range read of it too.
    let file = net
        .node(0)
        .files()
        .open_to_read(id, KeyAccess::Live)
        .await?;
    let out = SharedBuf::default();
    let range = datamesh_core::ByteRange::new(100, 1099, 4096)?;
    net.node(0)
        .files()
        .read_range(file, range, out.clone())
        .await?;
    assert!(out.take() == plain[100..1100]);
    assert_eq!(metric(net.node(0), recorded).await?, 2.0);

    // Two recorded holders lost (not the owner), a repair by a node that holds nothing
    // of it (not the owner: the catalog still names the lost ones), a third lost: three
    // recorded holders cannot give the stripe, the read asks and finds the new ones.
    let placement = placement_of(net.node(0), &id)?;
    let lost = stripe0_holders(&net, &placement, &[0]);
    assert!(lost.len() >= 5, "{lost:?}");
    let repairer = (1..10)
        .find(|n| !lost.contains(n))
        .ok_or("every node holds a shard")?;
    net.stop(lost[0]).await?;
    net.stop(lost[1]).await?;
    let repaired = net.node(repairer).checker().repair(id, true).await?;
    assert_eq!(
        repaired.state(),
        Health::Healthy,
        "{:#}",
        repaired.to_json()
    );
    net.stop(lost[2]).await?;
    assert!(get_to_read(net.node(0), id).await? == plain);
    assert_eq!(
        metric(net.node(0), recorded).await?,
        2.0,
        "asked, not recorded"
    );
    // Two more lost: three holders are left, and the read refuses before a byte.
    net.stop(lost[3]).await?;
    net.stop(lost[4]).await?;
    assert!(matches!(
        net.node(0).files().open_to_read(id, KeyAccess::Live).await,
        Err(GetError::InsufficientShards { .. })
    ));
    net.shutdown().await
}

/// A get fetches the four data shards of a stripe whenever they are reachable, even where
/// the reading node holds a parity shard itself: a stripe with a data shard missing is
/// rebuilt by Reed-Solomon, 130 us of CPU even for a small file's 1 KiB shards.
/// With a data shard's holder gone, the stripe is rebuilt from parity (and counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_reads_data_shards_before_its_own_parity_and_rebuilds_only_when_one_is_gone()
-> TestResult {
    let mut net = start_net(7, |_| 1 << 30).await?;
    let me = net.node(0).peer_id();
    let rebuilt = "datamesh_stripes_rebuilt_total";
    // Small files until node 0 holds a parity shard of one (a third of those it holds a
    // shard of; bounded).
    let mut found = None;
    for i in 0..40 {
        let plain = data(4096 + i);
        let report = put(net.node(0), plain.clone(), &format!("f{i}")).await?;
        let placement = placement_of(net.node(0), &report.id)?;
        let own = (0..6).find(|&index| placement.holder(0, index) == Some(me));
        if own.is_some_and(|index| index >= datamesh_core::DATA_SHARDS) {
            found = Some((report.id, plain, placement));
            break;
        }
    }
    let (id, plain, placement) = found.ok_or("node 0 held no parity shard of 40 files")?;
    assert!(get(net.node(0), id).await? == plain);
    assert_eq!(metric(net.node(0), rebuilt).await?, 0.0);

    // A data shard's holder stops: node 0 reads its own parity and rebuilds the stripe.
    let data_holder = (0..datamesh_core::DATA_SHARDS)
        .filter_map(|index| placement.holder(0, index))
        .find_map(|peer| index_of(&net, peer))
        .ok_or("no data holder running")?;
    net.stop(data_holder).await?;
    assert!(get(net.node(0), id).await? == plain);
    assert_eq!(metric(net.node(0), rebuilt).await?, 1.0);
    net.shutdown().await
}
