//! The hostile-peer suite, in process: real nodes (TCP on 127.0.0.1, RocksDB, Kademlia)
//! and a hostile peer built on the node's own network code ([`attacker::Attacker`]) in
//! one process. Each test performs one attack on a victim node, asserts the defence with
//! figures (bytes of shard values the victim read, answers counted), and runs an honest
//! put and get through the network while the attack is under way.
//!
//! The victim's reads are [`datamesh_node::ShardStore::value_bytes_read`]; a fetch reads
//! exactly the bytes it serves (`datamesh_shard_bytes_out`), so what the victim read
//! beyond what it served is what the attack cost it.

#[path = "hostile/attacker.rs"]
mod attacker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use attacker::{Attacker, BoxError, Outcome};
use bytes::Bytes;
use datamesh_core::ecies::SecretKey;
use datamesh_core::{AuthorityRoot, FileId, ShardId};
use datamesh_node::protocol::{InvalidReason, MAX_IDS, Refusal, Request, Response};
use datamesh_node::{
    ApiToken, FileKeys, FilesConfig, KeyProvider, KeyProviderError, NetworkConfig, Node,
    NodeConfig, StoreConfig, Unlocked,
};
use libp2p::identity::Keypair;

type TestResult = Result<(), BoxError>;

/// The largest blob a peer stores (a manifest at its 16 MiB cap).
const LARGE: usize = 16 << 20;
/// Nodes in each test's network: six for a put, and the victim.
const NODES: usize = 7;
/// The victim (never the honest putter).
const VICTIM: usize = 0;
/// Requests sent at once on one connection: as many shard streams as a node serves on
/// one connection (beyond that, yamux's stream limit closes the connection).
const FLOOD: usize = datamesh_node::network::limits::MAX_SHARD_STREAMS;

struct StaticKeys(Vec<u8>);

impl KeyProvider for StaticKeys {
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        let key = |b: &[u8]| {
            let bytes: [u8; 32] = b.try_into().map_err(|_| KeyProviderError::new("bad key"))?;
            SecretKey::from_bytes(&bytes).map_err(KeyProviderError::new)
        };
        let bytes: [u8; 32] = self
            .0
            .as_slice()
            .try_into()
            .map_err(|_| KeyProviderError::new("bad key"))?;
        Ok(Arc::new(FileKeys {
            active: key(&self.0)?,
            decrypt: vec![key(&self.0)?],
            hybrid: Vec::new(),
            p256: Vec::new(),
            // Each node's own file-authority root, made from its key for the test.
            authority: vec![AuthorityRoot::from_bytes(&bytes.map(|b| b ^ 0x5c))],
            unlocked: Unlocked::default(),
        }))
    }
}

struct Net {
    nodes: Vec<Node>,
    keys: Vec<SecretKey>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Net {
    async fn start(n: usize) -> Result<Self, BoxError> {
        let (mut nodes, mut keys, mut dirs, mut bootstrap) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let dir = tempfile::tempdir()?;
            let key = SecretKey::generate();
            let network = NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?])
                .with_bootstrap(bootstrap.clone())
                .with_request_timeout(Duration::from_secs(30));
            let config = NodeConfig::new(
                dir.path().join("db"),
                network,
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .with_store(StoreConfig::new(1 << 30))
            .with_files(FilesConfig {
                stripe_deadline: Duration::from_secs(30),
                ..FilesConfig::default()
            });
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
            nodes.push(node);
            keys.push(key);
            dirs.push(dir);
        }
        for _ in 0..200 {
            let mut ready = true;
            for node in &nodes {
                ready &= node.network().info().await?.routing_table_peers >= n - 1;
            }
            if ready {
                break;
            }
            for node in &nodes {
                node.network().bootstrap().await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            nodes,
            keys,
            _dirs: dirs,
        })
    }

    /// A hostile peer that knows where the victim is.
    async fn attacker(&self) -> Result<Attacker, BoxError> {
        let mut attacker = Attacker::new(Duration::from_secs(120))?;
        let victim = &self.nodes[VICTIM];
        let addr = victim
            .listen_addresses()
            .await?
            .into_iter()
            .next()
            .ok_or("the victim has no address")?;
        attacker.add_address(victim.peer_id(), addr);
        Ok(attacker)
    }

    /// Has node 1 (an honest peer) store a large blob on the victim: the victim holds it,
    /// the attacker does not own it.
    async fn large_blob_on_victim(&self, seed: u8) -> Result<ShardId, BoxError> {
        let bytes: Vec<u8> = (0..LARGE).map(|i| (i as u8) ^ seed).collect();
        let id = ShardId::of(&bytes);
        let answer = self.nodes[1]
            .network()
            .request(
                self.nodes[VICTIM].peer_id(),
                Request::Store {
                    id,
                    bytes: Bytes::from(bytes),
                },
            )
            .await?;
        assert_eq!(answer, Response::Stored);
        Ok(id)
    }

    /// Bytes of shard values the victim read beyond the bytes its fetches served and the
    /// manifests it read once each to check the honest put's key envelope.
    async fn victim_extra_reads(&self) -> Result<u64, BoxError> {
        let victim = &self.nodes[VICTIM];
        let read = victim.files().store().value_bytes_read();
        let served = metric(victim, "datamesh_shard_bytes_out_total").await?;
        let manifests = metric(victim, "datamesh_manifest_bytes_read_for_envelopes_total").await?;
        Ok(read.saturating_sub(served + manifests))
    }

    /// An honest put on node 1 shared with node 2, and its get on node 2 (which finds it
    /// from the id alone, through the holders' announcements): the bytes come back.
    async fn honest_round_trip(&self, seed: u8) -> TestResult {
        let plain: Vec<u8> = (0..700_000usize)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect();
        let report = self.nodes[1]
            .files()
            .put(
                std::io::Cursor::new(plain.clone()),
                format!("honest-{seed}.bin"),
                vec![self.keys[2].public_key().into()],
            )
            .await?;
        let reader = &self.nodes[2];
        let file = reader.files().open(report.id).await?;
        let out = SharedBuf::default();
        reader.files().read(file, out.clone()).await?;
        assert_eq!(out.take(), plain, "the honest round trip changed the bytes");
        Ok(())
    }

    async fn shutdown(self) -> TestResult {
        for node in self.nodes {
            node.shutdown().await?;
        }
        Ok(())
    }
}

async fn metric(node: &Node, name: &str) -> Result<u64, BoxError> {
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
        .unwrap_or(0.0) as u64)
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

/// `n` distinct ids, `held` among them at position `at`.
fn distinct_ids(n: usize, held: ShardId, at: usize) -> Vec<ShardId> {
    (0..n)
        .map(|i| {
            if i == at {
                held
            } else {
                ShardId::of(&(i as u64).to_be_bytes())
            }
        })
        .collect()
}

/// 65,536 copies of a 16 MiB blob's id in one `Has` (a terabyte of reads before the
/// defence) are refused before the victim looks anything up; 65,536 distinct ids are
/// answered without reading a byte of any shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_has_flood_is_refused_or_answered_without_reading_shards() -> TestResult {
    let net = Net::start(NODES).await?;
    let big = net.large_blob_on_victim(1).await?;
    let mut attacker = net.attacker().await?;
    let victim = net.nodes[VICTIM].peer_id();
    let before = net.victim_extra_reads().await?;

    let duplicates = vec![
        Request::Has {
            ids: vec![big; MAX_IDS]
        };
        8
    ];
    let at = MAX_IDS / 2;
    let distinct = vec![
        Request::Has {
            ids: distinct_ids(MAX_IDS, big, at),
        };
        8
    ];
    let ((refused, answered), honest) = tokio::join!(
        async {
            let refused = attacker.send_all(victim, duplicates).await;
            (refused, attacker.send_all(victim, distinct).await)
        },
        net.honest_round_trip(1)
    );
    honest?;

    // Every request of duplicates is refused (the stream is dropped: it does not decode).
    assert_eq!(refused.len(), 8);
    for outcome in &refused {
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    }
    // Distinct ids are answered, the large blob found where it was asked about.
    assert_eq!(answered.len(), 8);
    for outcome in &answered {
        let Outcome::Answered(Response::Has(flags)) = outcome else {
            panic!("a has of distinct ids was not answered: {outcome:?}");
        };
        assert_eq!(flags.len(), MAX_IDS);
        assert_eq!(flags.iter().filter(|f| **f).count(), 1);
        assert!(flags[at]);
    }
    // 16 x 65,536 lookups, not one byte of a shard read for them.
    let extra = net.victim_extra_reads().await? - before;
    assert_eq!(extra, 0);
    net.shutdown().await
}

/// Deletes of a 16 MiB blob the attacker never stored are denied without a read of it,
/// and the blob stays; "delete this corrupt copy" reads a copy only once a read has found
/// it corrupt, and once more to remove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_flood_of_a_blob_the_attacker_does_not_own_reads_nothing() -> TestResult {
    let net = Net::start(NODES).await?;
    let big = net.large_blob_on_victim(2).await?;
    let mut attacker = net.attacker().await?;
    let victim_id = net.nodes[VICTIM].peer_id();
    let store = Arc::clone(net.nodes[VICTIM].files().store());
    let before = net.victim_extra_reads().await?;

    let deletes = vec![Request::Delete { id: big }; FLOOD];
    let (outcomes, honest) = tokio::join!(
        attacker.send_all(victim_id, deletes),
        net.honest_round_trip(2)
    );
    honest?;
    let denied = outcomes
        .iter()
        .filter(|o| o.is(&Response::Refused(Refusal::Denied)))
        .count();
    let extra = net.victim_extra_reads().await? - before;
    assert_eq!(denied, FLOOD, "{outcomes:?}");
    assert_eq!(extra, 0);
    assert!(store.has(&big)?);

    // The same blob gone bad on disk: until a read finds it corrupt, a delete from anyone
    // is still denied and reads nothing.
    assert!(store.corrupt_for_test(&big)?);
    let outcomes = attacker
        .send_all(victim_id, vec![Request::Delete { id: big }; FLOOD])
        .await;
    assert!(
        outcomes
            .iter()
            .all(|o| o.is(&Response::Refused(Refusal::Denied))),
        "{outcomes:?}"
    );
    assert_eq!(net.victim_extra_reads().await? - before, 0);
    // A fetch finds it corrupt (one read); then any peer may have it dropped (one more
    // read, then it is gone and further deletes cost nothing).
    let fetched = attacker.send(victim_id, Request::Fetch { id: big }).await;
    assert!(
        fetched.is(&Response::Refused(Refusal::Corrupt)),
        "{fetched:?}"
    );
    let outcomes = attacker
        .send_all(victim_id, vec![Request::Delete { id: big }; FLOOD])
        .await;
    let done = outcomes.iter().filter(|o| o.is(&Response::Done)).count();
    let denied = outcomes
        .iter()
        .filter(|o| o.is(&Response::Refused(Refusal::Denied)))
        .count();
    let extra = net.victim_extra_reads().await? - before;
    // One removes it (reading it once more); those that come while it is being read are
    // denied, those after it find nothing held (done: nothing to do).
    assert!(done >= 1, "{outcomes:?}");
    assert_eq!(done + denied, FLOOD, "{outcomes:?}");
    assert_eq!(extra, 2 * LARGE as u64);
    assert!(!store.has(&big)?);
    net.shutdown().await
}

/// Announcements of files the victim holds nothing of are refused and leave no provider
/// record; a claim backs one file only; an honest put's holders are all announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn announce_of_unknown_files_is_refused() -> TestResult {
    let net = Net::start(NODES).await?;
    let mut attacker = net.attacker().await?;
    let victim = &net.nodes[VICTIM];
    let victim_id = victim.peer_id();
    let made_up: Vec<FileId> = (0..20u8).map(|i| FileId::of_manifest(&[i; 7])).collect();
    let announces = made_up
        .iter()
        .map(|&file| Request::Announce {
            file,
            held: ShardId::of(file.as_bytes()),
        })
        .collect();
    let (outcomes, honest) = tokio::join!(
        attacker.send_all(victim_id, announces),
        net.honest_round_trip(3)
    );
    honest?;
    let unknown = Response::Refused(Refusal::Invalid(InvalidReason::UnknownFile));
    let refused = outcomes.iter().filter(|o| o.is(&unknown)).count();
    assert_eq!(refused, 20, "{outcomes:?}");
    for file in &made_up {
        let providers = victim.network().providers(file.as_bytes().to_vec()).await?;
        assert!(!providers.contains(&victim_id), "{file} is provided");
    }

    // A blob the attacker stored backs the announcement of one file, not of many.
    let tiny = Bytes::from_static(b"one tiny blob");
    let stored = attacker
        .send(
            victim_id,
            Request::Store {
                id: ShardId::of(&tiny),
                bytes: tiny.clone(),
            },
        )
        .await;
    assert!(stored.is(&Response::Stored), "{stored:?}");
    let held = ShardId::of(&tiny);
    let outcomes = attacker
        .send_all(
            victim_id,
            made_up
                .iter()
                .map(|&file| Request::Announce { file, held })
                .collect(),
        )
        .await;
    let honoured = outcomes.iter().filter(|o| o.is(&Response::Done)).count();
    assert_eq!(honoured, 1, "{outcomes:?}");
    net.shutdown().await
}
