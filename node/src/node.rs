//! A whole node: database, shard store, swarm, put/get engine and local API, with an
//! explicit, idempotent shutdown that finishes in-flight requests and flushes RocksDB.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rocksdb::DB;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::api::{ApiState, ApiToken, router};
use crate::catalog::Catalog;
use crate::check::{Checker, NetworkRepairConfig};
use crate::db::DbError;
use crate::faults::TestFaults;
use crate::files::{Files, FilesConfig, KeyProvider};
use crate::metrics::Metrics;
use crate::network::{Network, NetworkConfig, NetworkError};
use crate::records::{PersistentStore, PersistentStoreConfig};
use crate::serve::Server;
use crate::store::{ShardStore, StoreConfig};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    data_dir: PathBuf,
    network: NetworkConfig,
    api_addr: SocketAddr,
    store: StoreConfig,
    files: FilesConfig,
    check_interval: Duration,
    check_verify: bool,
    faults: TestFaults,
    lease: Duration,
    network_repair: NetworkRepairConfig,
}

/// Default period of the self-check over the catalog.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Longest self-check period (a year); longer ones are capped.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default storage quota: bytes of shards stored for others at most (10 GiB).
pub const DEFAULT_STORAGE_QUOTA: u64 = 10 << 30;

impl NodeConfig {
    /// A node keeping its database in `data_dir`, with the given network settings,
    /// serving its API on `api_addr` (use port 0 for any free port).
    pub fn new(data_dir: PathBuf, network: NetworkConfig, api_addr: SocketAddr) -> Self {
        Self {
            data_dir,
            network,
            api_addr,
            store: StoreConfig::new(DEFAULT_STORAGE_QUOTA),
            files: FilesConfig::default(),
            check_interval: DEFAULT_CHECK_INTERVAL,
            check_verify: false,
            faults: TestFaults::none(),
            lease: crate::lease::DEFAULT_LEASE,
            network_repair: NetworkRepairConfig::default(),
        }
    }

    /// How long a holder keeps a claim on a blob without a renewal (the owner's
    /// self-check renews); at least a second. Default: [`crate::lease::DEFAULT_LEASE`]
    /// (180 days).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// How the node checks and repairs the files whose manifest it holds, for their
    /// owners (`check/network.rs`). Default: [`NetworkRepairConfig::default`] (every
    /// 15 minutes).
    pub fn with_network_repair(mut self, config: NetworkRepairConfig) -> Self {
        self.network_repair = config;
        self
    }

    /// How often the node checks the files of its catalog and repairs those below full
    /// health; zero disables; capped at a year. Default: [`DEFAULT_CHECK_INTERVAL`]
    /// (10 minutes).
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval.min(MAX_CHECK_INTERVAL);
        self
    }

    /// Whether the self-check fetches and hashes every copy (finds bit rot and lying
    /// holders, reads every shard of the catalog each time) instead of asking holders.
    /// Default: false.
    pub fn with_check_verify(mut self, verify: bool) -> Self {
        self.check_verify = verify;
        self
    }

    /// Test-only faults (see [`crate::faults`]). Default: none.
    pub fn with_test_faults(mut self, faults: TestFaults) -> Self {
        self.faults = faults;
        self
    }

    /// Storage quota. Default: 10 GiB.
    pub fn with_store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// Put/get tuning. Default: [`FilesConfig::default`].
    pub fn with_files(mut self, files: FilesConfig) -> Self {
        self.files = files;
        self
    }
}

/// A node failed to start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The database could not be opened or flushed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The swarm could not start.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The API address could not be bound.
    #[error("cannot serve the API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    network: Network,
    files: Files,
    checker: Checker,
    db: Arc<DB>,
    api_addr: SocketAddr,
    stop_api: watch::Sender<bool>,
    api_task: JoinHandle<()>,
    net_task: JoinHandle<()>,
    check_task: Option<JoinHandle<()>>,
    lease_task: JoinHandle<()>,
    network_repair_task: Option<JoinHandle<()>>,
}

impl Node {
    /// Opens the database, starts the swarm and the API.
    ///
    /// # Errors
    /// See [`NodeError`].
    pub async fn start(
        config: NodeConfig,
        identity: Keypair,
        keys: Arc<dyn KeyProvider>,
        token: ApiToken,
    ) -> Result<Self, NodeError> {
        let peer_id = identity.public().to_peer_id();
        if let Some(warning) = config.faults.warning() {
            tracing::warn!("{warning}");
        }
        let dir = config.data_dir.clone();
        let db = tokio::task::spawn_blocking(move || crate::db::open(&dir))
            .await
            .map_err(DbError::Task)??;
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(ShardStore::new(Arc::clone(&db), config.store));
        let server = Arc::new(
            Server::new(Arc::clone(&store), Arc::clone(&db), Arc::clone(&metrics))
                .with_wrong_bytes(config.faults.wrong_bytes())
                .with_refuse_envelopes(config.faults.refuse_envelopes())
                .with_lease(config.lease),
        );
        let lease_task = crate::lease::spawn_collector(Arc::clone(&server));
        let records = PersistentStore::new(
            peer_id,
            Arc::clone(&db),
            // The node keeps only provider records (pointers); value records are small
            // and few, so a tight cap bounds memory (4,096 x 16 KiB = 64 MiB worst case).
            PersistentStoreConfig::default()
                .with_max_records(4096)
                .with_max_value_bytes(16 * 1024),
        )?;
        let all_interfaces = config.network.listens_on_all_interfaces();
        let transports = config.network.transports();
        let net_config = config.network.with_metrics(Arc::clone(&metrics));
        let (network, net_task) = Network::start(identity, records, net_config, server.clone())?;
        let mut files_config = config.files;
        if files_config.put_sessions.is_none() {
            files_config.put_sessions = Some(config.data_dir.join("put-sessions"));
        }
        let files = Files::new(
            network.clone(),
            server,
            Catalog::new(Arc::clone(&db)),
            keys,
            Arc::clone(&metrics),
            files_config,
        );
        // Interrupted puts not resumed for a day: their state and shards go.
        tokio::spawn({
            let files = files.clone();
            async move { files.sweep_put_sessions().await }
        });
        let checker = Checker::new(files.clone());
        let listener = tokio::net::TcpListener::bind(config.api_addr)
            .await
            .map_err(|source| NodeError::Api {
                addr: config.api_addr,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| NodeError::Api {
            addr: config.api_addr,
            source,
        })?;
        let app = router(ApiState {
            files: files.clone(),
            checker: checker.clone(),
            net: network.clone(),
            store,
            metrics,
            token: Arc::new(token),
            faults: config.faults,
        });
        let (stop_api, mut stopped) = watch::channel(false);
        let api_task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // Without TCP_NODELAY a response written in two parts (headers, then the
            // streamed body) waits for the client's delayed ACK on a kept-alive
            // connection: about 40 ms per request.
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY on an API connection: {e}");
                }
            });
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!("api server failed: {e}");
            }
        });
        // Report once the swarm listens, so callers can print real addresses.
        for _ in 0..100 {
            if network.info().await.is_ok_and(|i| {
                listening(&i.listen_addresses, all_interfaces)
                    && transports.each_reported(&i.listen_addresses)
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let check_task = (!config.check_interval.is_zero())
            .then(|| checker.spawn_self_checks(config.check_interval, config.check_verify));
        let network_repair_task = checker.spawn_network_repair(config.network_repair);
        info!(%peer_id, %api_addr, "node started");
        Ok(Self {
            network,
            files,
            checker,
            db,
            api_addr,
            stop_api,
            api_task,
            net_task,
            check_task,
            lease_task,
            network_repair_task,
        })
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.network.peer_id()
    }

    /// The swarm handle.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The put/get engine.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// The checker (check, verify, repair, self-check) over the engine.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Addresses the swarm listens on, each with `/p2p/<peer id>`, for others to bootstrap
    /// from.
    ///
    /// # Errors
    /// [`NetworkError::Stopped`].
    pub async fn listen_addresses(&self) -> Result<Vec<Multiaddr>, NetworkError> {
        let info = self.network.info().await?;
        Ok(info
            .listen_addresses
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(info.peer_id)))
            .collect())
    }

    /// Finishes in-flight API requests, stops the swarm and flushes the database.
    ///
    /// # Errors
    /// [`NodeError::Db`] if the final flush fails (the WAL still holds every synced
    /// write).
    pub async fn shutdown(self) -> Result<(), NodeError> {
        if let Some(task) = &self.check_task {
            task.abort();
        }
        self.lease_task.abort();
        if let Some(task) = &self.network_repair_task {
            task.abort();
        }
        let _ = self.stop_api.send(true);
        let _ = self.api_task.await;
        self.network.shutdown().await;
        let _ = self.net_task.await;
        let db = self.db;
        tokio::task::spawn_blocking(move || crate::db::flush_all(&db))
            .await
            .map_err(DbError::Task)??;
        info!("node stopped");
        Ok(())
    }
}

/// Whether the swarm reports the addresses callers should print (and `node.json`
/// records): any address, and, for a listener on every interface, one that is not
/// loopback (libp2p reports one interface at a time, loopback often first; a node whose
/// `node.json` named only 127.0.0.1 could not be reached from another host). The caller
/// waits a bounded time: a machine with no other interface still starts. It waits as
/// well for an address of each transport (`Transports::each_reported`): a node on TCP and
/// QUIC whose `node.json` named only its TCP address once failed
/// `tests/transports.rs` on a loaded machine.
fn listening(addresses: &[Multiaddr], all_interfaces: bool) -> bool {
    !addresses.is_empty()
        && (!all_interfaces || addresses.iter().any(|a| !crate::network::is_loopback(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_node_on_every_interface_waits_for_an_address_beyond_loopback() -> TestResult {
        let loopback: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse()?;
        let host: Multiaddr = "/ip4/10.77.0.2/tcp/4001".parse()?;
        assert!(!listening(&[], false));
        assert!(listening(std::slice::from_ref(&loopback), false));
        assert!(!listening(std::slice::from_ref(&loopback), true));
        assert!(listening(&[loopback, host], true));
        let every: Multiaddr = "/ip4/0.0.0.0/tcp/0".parse()?;
        let config = NetworkConfig::new(vec![every]);
        assert!(config.listens_on_all_interfaces());
        assert!(
            !NetworkConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse()?]).listens_on_all_interfaces()
        );
        Ok(())
    }
}
