//! What backup and escrow need from the node: the catalog snapshot that goes into a
//! bundle or a network copy, writing it into a restored home's database, storing the
//! network copy through the running node, and fetching it back through the network with
//! an ephemeral in-process node when the machine is gone.
//!
//! The catalog snapshot's format, and reading it from / writing it into a node database,
//! are `datamesh_node::catalog::snapshot`'s; this module picks the source (the running
//! node's API, else the stopped node's database).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use datamesh_api::{Client, ClientError};
use datamesh_core::FileId;
use datamesh_core::ecies::{PublicKey, SecretKey};
use datamesh_keys::fsx;
use datamesh_node::catalog::CatalogEntry;
use datamesh_node::catalog::snapshot::{self, Snapshot, SnapshotFile, SnapshotSource};
use datamesh_node::libp2p::Multiaddr;
use datamesh_node::libp2p::identity::Keypair;
use datamesh_node::{
    ApiToken, FileKeys, FilesConfig, KeyProvider, KeyProviderError, NetworkConfig, Node,
    NodeConfig, StoreConfig, Unlocked,
};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::Context;
use crate::{config, home};

/// The name the network copy is stored under.
pub(super) const COPY_NAME: &str = "datamesh-keystore-copy";
/// How long fetching the network copy may take in all.
const FETCH_DEADLINE: Duration = Duration::from_secs(120);

/// A catalog snapshot, encoded, and what it holds.
pub(super) struct CatalogSnapshot {
    pub(super) bytes: Vec<u8>,
    pub(super) files: usize,
    pub(super) source: &'static str,
}

/// `<home>/node/db`, the node's database (as `node run` opens it).
fn db_dir(home: &Path) -> PathBuf {
    home::node_db(home)
}

/// The client of this home's running node, if its `node.json` says one runs and its API
/// answers.
pub(super) fn running_node(home: &Path) -> anyhow::Result<Option<Client>> {
    let Some(client) = home::client(home)? else {
        return Ok(None);
    };
    // A node killed without a clean stop leaves its node.json behind: unreachable means
    // not running (its database then opens).
    match client.status() {
        Err(ClientError::Unreachable { .. }) => Ok(None),
        _ => Ok(Some(client)),
    }
}

/// The node's catalog: through the running node's API (ids, names, sizes, times), or,
/// with the node stopped, from its database (also manifests, placement hints, sharing
/// recipients and envelope sequence numbers). Empty for a home whose node never ran.
pub(super) fn snapshot(home: &Path) -> anyhow::Result<CatalogSnapshot> {
    let snapshot = if let Some(client) = running_node(home)? {
        let listed = client
            .list()
            .context("cannot read the catalog from the running node")?;
        let mut files = Vec::with_capacity(listed.len());
        for f in listed {
            let id: FileId =
                f.id.parse()
                    .with_context(|| format!("the node listed a malformed file id {}", f.id))?;
            files.push(SnapshotFile::entry_only(CatalogEntry {
                id,
                name: f.name,
                size: f.size,
                stripes: f.stripes,
                created: f.created,
                shared_with: Vec::new(),
                envelope_sequence: 0,
            }));
        }
        Snapshot::new(SnapshotSource::Api, files)
    } else if db_dir(home).is_dir() {
        snapshot::read(&db_dir(home)).with_context(|| {
            format!(
                "cannot read the catalog from the node database {} (is the node starting?)",
                db_dir(home).display()
            )
        })?
    } else {
        Snapshot::new(SnapshotSource::None, Vec::new())
    };
    Ok(CatalogSnapshot {
        bytes: snapshot.to_bytes(),
        files: snapshot.files.len(),
        source: snapshot.source.as_str(),
    })
}

/// How many files a snapshot holds (and that it decodes).
pub(super) fn count(bytes: &[u8]) -> anyhow::Result<usize> {
    Ok(Snapshot::decode(bytes)?.files.len())
}

/// Writes a snapshot into the database of `home` (created); returns how many files.
/// Files whose manifest is in the snapshot get it (and their placement); the others get
/// their catalog entry, and the node fetches the manifest from the network at `get`.
pub(super) fn restore(home: &Path, bytes: &[u8]) -> anyhow::Result<usize> {
    let snapshot = Snapshot::decode(bytes)?;
    if snapshot.files.is_empty() {
        return Ok(0);
    }
    fsx::ensure_dir(&home.join("node")).context("cannot create the node's data folder")?;
    Ok(snapshot::restore(&db_dir(home), &snapshot)?)
}

/// Stores the network copy through the running node, its data key wrapped to the node's
/// key and to `recovery`. Returns the file id.
pub(super) fn store_copy(
    client: &Client,
    copy: Vec<u8>,
    recovery: &PublicKey,
) -> anyhow::Result<FileId> {
    let put = client
        .put(
            io::Cursor::new(copy),
            COPY_NAME,
            &[datamesh_core::Recipient::Classical(*recovery)],
        )
        .context("cannot store the keystore's network copy through the running node")?;
    put.id
        .parse()
        .with_context(|| format!("the node answered a malformed file id {}", put.id))
}

/// The keys of the ephemeral node: only the recovery key (it reads, never puts, so it
/// needs no file-authority root).
struct RecoveryKeys(Zeroizing<[u8; 32]>);

impl KeyProvider for RecoveryKeys {
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        let key = || SecretKey::from_bytes(&self.0).map_err(KeyProviderError::new);
        Ok(Arc::new(FileKeys {
            active: key()?,
            decrypt: vec![key()?],
            hybrid: Vec::new(),
            p256: Vec::new(),
            authority: Vec::new(),
            unlocked: Unlocked::default(),
        }))
    }
}

/// A buffer the node's reader writes into.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if inner.len() + buf.len() > usize::try_from(datamesh_keys::MAX_COPY_LEN).unwrap_or(0) {
            return Err(io::Error::other("the network copy is larger than allowed"));
        }
        inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes the ephemeral node's folder however the fetch ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fetches the network copy `id` with an ephemeral node (throwaway identity, database in
/// a temporary folder, only the recovery key) that joins through `bootstrap`.
pub(super) fn fetch_copy(
    ctx: &Context,
    bootstrap: &[String],
    id: FileId,
    key: &SecretKey,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut peers: Vec<Multiaddr> = Vec::new();
    for addr in bootstrap {
        peers.push(
            addr.parse()
                .with_context(|| format!("bootstrap address {addr} is not a multiaddr"))?,
        );
    }
    let mut random = [0u8; 16];
    OsRng.fill_bytes(&mut random);
    let temp = TempDir(std::env::temp_dir().join(format!(
        "datamesh-recover-{}-{}",
        std::process::id(),
        data_encoding::HEXLOWER.encode(&random)
    )));
    fsx::create_private_dir(&temp.0)
        .with_context(|| format!("cannot create {}", temp.0.display()))?;
    let token = ApiToken::new(&home::new_api_token());
    let listen: Multiaddr = config::DEFAULT_LISTEN
        .parse()
        .context("the listen address does not parse")?;
    let config = NodeConfig::new(
        temp.0.join("db"),
        NetworkConfig::new(vec![listen]).with_bootstrap(peers),
        config::DEFAULT_API,
    )
    // It stores nothing for others: a tiny quota.
    .with_store(StoreConfig::new(1 << 20))
    .with_files(FilesConfig::default());
    let keys = Arc::new(RecoveryKeys(key.to_bytes()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let node = Node::start(config, Keypair::generate_ed25519(), keys, token)
            .await
            .context("cannot start the ephemeral recovery node")?;
        ctx.out.detail(format_args!(
            "ephemeral node {} joining through {} peer(s)",
            node.peer_id(),
            bootstrap.len()
        ));
        let result = fetch_with(&node, id).await;
        let _ = node.shutdown().await;
        result
    })
}

async fn fetch_with(node: &Node, id: FileId) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let started = Instant::now();
    // Wait (bounded) until a bootstrap peer is connected (the routing table holds the
    // configured peers before any of them answered).
    while node
        .network()
        .info()
        .await
        .map(|i| i.connected_peers)
        .unwrap_or(0)
        == 0
    {
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!(
                "no bootstrap peer answered within 30 s: check --bootstrap (a running node's multiaddr ending in /p2p/PEER_ID); nothing written"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut last = None;
    while started.elapsed() < FETCH_DEADLINE {
        match node.files().open(id).await {
            Ok(file) => {
                if file.metadata.size > datamesh_keys::MAX_COPY_LEN {
                    anyhow::bail!(
                        "file {id} is {} bytes, too large to be a keystore network copy",
                        file.metadata.size
                    );
                }
                let sink = Sink::default();
                node.files()
                    .read(file, sink.clone())
                    .await
                    .with_context(|| format!("cannot read the keystore's network copy {id}"))?;
                let bytes = std::mem::take(&mut *sink.0.lock().unwrap_or_else(|p| p.into_inner()));
                return Ok(Zeroizing::new(bytes));
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(match last {
        Some(e) => anyhow::Error::new(e),
        None => anyhow::anyhow!("timed out"),
    })
    .with_context(|| {
        format!("cannot fetch the keystore's network copy {id} within {FETCH_DEADLINE:?}")
    })
}
