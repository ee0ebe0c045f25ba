//! How a testnet is built and run: [`Config`] and the Argon2id parameters of its homes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Argon2id parameters for `datamesh init` of each home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kdf {
    /// Memory in KiB (`--kdf-memory-kib`).
    pub memory_kib: u32,
    /// Passes (`--kdf-iterations`).
    pub iterations: u32,
    /// Lanes (`--kdf-parallelism`).
    pub parallelism: u32,
}

impl Kdf {
    /// The cheapest parameters Argon2id accepts: for tests only (homes unlock in
    /// microseconds, so every node start is fast).
    pub const FAST: Self = Self {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    /// The `datamesh init` (and `keys backup`, ...) arguments that select them.
    pub fn args(&self) -> [String; 6] {
        [
            "--kdf-memory-kib".into(),
            self.memory_kib.to_string(),
            "--kdf-iterations".into(),
            self.iterations.to_string(),
            "--kdf-parallelism".into(),
            self.parallelism.to_string(),
        ]
    }
}

/// How to build and run a testnet.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) binary: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) nodes: usize,
    pub(crate) kdf: Option<Kdf>,
    pub(crate) ready_timeout: Duration,
    pub(crate) stop_timeout: Duration,
    pub(crate) keep_running: bool,
    pub(crate) node_env: BTreeMap<usize, BTreeMap<String, String>>,
    pub(crate) node_quota: BTreeMap<usize, u64>,
    pub(crate) hosts: Option<usize>,
    pub(crate) transports: Option<String>,
    pub(crate) nat: Vec<usize>,
}

impl Config {
    /// `nodes` nodes of the `datamesh` binary at `binary`, with homes in `dir/node-I`.
    pub fn new(binary: impl Into<PathBuf>, dir: impl Into<PathBuf>, nodes: usize) -> Self {
        Self {
            binary: binary.into(),
            dir: dir.into(),
            nodes,
            kdf: None,
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            keep_running: false,
            node_env: BTreeMap::new(),
            node_quota: BTreeMap::new(),
            hosts: None,
            transports: None,
            nat: Vec::new(),
        }
    }

    /// The transports every node listens and dials on (`node run --transport`, e.g.
    /// `quic` or `tcp,quic`). Default: the home's config (TCP).
    #[must_use]
    pub fn with_transports(mut self, transports: impl Into<String>) -> Self {
        self.transports = Some(transports.into());
        self
    }

    /// On a testnet of hosts ([`Self::with_hosts`]), puts these hosts behind NAT routers
    /// of their own: no connection from outside reaches them (see the crate docs,
    /// "Separate hosts"). Host 0 never is (the others join through it). Default: none.
    #[must_use]
    pub fn with_nat(mut self, hosts: &[usize]) -> Self {
        self.nat = hosts.to_vec();
        self
    }

    /// Argon2id parameters for new homes. Default: none given, i.e. the CLI's defaults
    /// (64 MiB, 3 passes, 4 lanes), as a real user gets.
    #[must_use]
    pub fn with_kdf(mut self, kdf: Kdf) -> Self {
        self.kdf = Some(kdf);
        self
    }

    /// How long a node may take to publish its `node.json`, and the nodes to fill their
    /// routing tables. Default: 60 s.
    #[must_use]
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long a node may take to exit after SIGTERM before it is SIGKILLed. Default:
    /// 30 s.
    #[must_use]
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Leave the nodes running when the [`Testnet`](crate::Testnet) is dropped, each in a process group
    /// of its own (so a Ctrl-C in the terminal that started them does not reach them).
    /// Default: false (drop SIGKILLs them).
    #[must_use]
    pub fn with_keep_running(mut self, keep: bool) -> Self {
        self.keep_running = keep;
        self
    }

    /// An environment variable for node `i`'s process, every time it starts (e.g. a
    /// test-only fault hook of the node). Default: none; the caller's `DATAMESH_*`
    /// variables never reach a node (see [`SCRUBBED_ENV`](crate::run::SCRUBBED_ENV)).
    #[must_use]
    pub fn with_node_env(
        mut self,
        i: usize,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.node_env
            .entry(i)
            .or_default()
            .insert(key.into(), value.into());
        self
    }

    /// Runs the nodes on `hosts` separate hosts, each a network namespace with its own
    /// address (node `i` on host `i % hosts`); needs root. Default: every node on
    /// 127.0.0.1 of this machine. See the crate docs, "Separate hosts".
    #[must_use]
    pub fn with_hosts(mut self, hosts: usize) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// Node `i` runs with a storage quota of `bytes` (`node run --quota`, which
    /// overrides `storage_quota_bytes` of its config.toml). Default: the config's.
    #[must_use]
    pub fn with_node_quota(mut self, i: usize, bytes: u64) -> Self {
        self.node_quota.insert(i, bytes);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_the_real_ones() {
        let config = Config::new("/bin/datamesh", "/tmp/tn", 6);
        assert_eq!(config.kdf, None);
        assert_eq!(config.ready_timeout, Duration::from_secs(60));
        assert!(!config.keep_running);
        assert!(config.node_env.is_empty() && config.node_quota.is_empty());
        let config = config
            .with_kdf(Kdf::FAST)
            .with_keep_running(true)
            .with_node_env(2, "DATAMESH_TEST_FAULTS", "1")
            .with_node_quota(3, 4096);
        assert_eq!(config.kdf, Some(Kdf::FAST));
        assert!(config.keep_running);
        assert_eq!(
            config.node_env[&2]
                .get("DATAMESH_TEST_FAULTS")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(config.node_quota.get(&3), Some(&4096));
        assert_eq!(
            Kdf::FAST.args(),
            [
                "--kdf-memory-kib",
                "8",
                "--kdf-iterations",
                "1",
                "--kdf-parallelism",
                "1"
            ]
        );
    }
}
