//! A local testnet of real `datamesh node run` processes on 127.0.0.1.
//!
//! ```no_run
//! use std::path::Path;
//! use datamesh_testnet::{Config, Kdf, Testnet};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let binary = Path::new("target/release/datamesh");
//! let mut net = Testnet::up_with(Config::new(binary, "/tmp/tn", 6).with_kdf(Kdf::FAST))?;
//! let put = net.cli(0).args(["put", "photo.jpg"]).output()?;
//! let id = String::from_utf8(put.stdout)?;
//! net.kill(3)?; // SIGKILL a storage node
//! net.stop(0)?; // SIGTERM, wait for a clean exit
//! net.start(0)?; // same home, new ports, bootstrapped from every running node
//! let got = net.cli(0).args(["get", id.trim(), "-o", "copy.jpg"]).status()?;
//! # Ok(()) }
//! // Dropping `net` SIGKILLs every node it started.
//! ```
//!
//! Gotchas first:
//! - Dropping a [`Testnet`] SIGKILLs every node process it started, also when a test
//!   panics, unless it was started with [`Config::with_keep_running`] or [`Testnet::detach`]ed
//!   (what `datamesh testnet up` does, so the nodes outlive the command).
//! - Nodes listen on port 0: a restarted node gets new ports, so [`Testnet::start`]
//!   bootstraps it from every node that is running at that moment.
//! - Each home keeps its password in plaintext (`node-I/password`, 0600): a testnet is
//!   for testing, never for data that matters.
//! - This crate drives the `datamesh` binary; it does not link the node. Pass the binary
//!   under test (`env!("CARGO_BIN_EXE_datamesh")` in the cli package's tests).
//!
//! Layout of the testnet folder:
//!
//! ```text
//! <dir>/node-I/          the home of node I (`datamesh --home <dir>/node-I ...`)
//! <dir>/node-I/password  its random keystore password, 0600
//! <dir>/node-I/log       the node's stderr, appended across restarts
//! <dir>/node-I/node.json written by the running node (pid, peer id, API, addresses)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use rustix::process::{Pid, Signal};

/// At most this many peers are required in each routing table for the testnet to be
/// ready (Kademlia's k).
pub const READY_PEERS_CAP: usize = 20;

/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// How long reading a node's metrics may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

/// The `DATAMESH_*` variables that would change what the binary does; removed from
/// every command this crate runs, so the caller's environment cannot leak in.
pub const SCRUBBED_ENV: [&str; 8] = [
    "DATAMESH_HOME",
    "DATAMESH_PASSWORD_FILE",
    "DATAMESH_NEW_PASSWORD_FILE",
    "DATAMESH_LISTEN",
    "DATAMESH_API",
    "DATAMESH_QUOTA",
    "DATAMESH_PASSWORD",
    "DATAMESH_LOG",
];

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

    fn args(&self) -> [String; 6] {
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
    binary: PathBuf,
    dir: PathBuf,
    nodes: usize,
    kdf: Option<Kdf>,
    ready_timeout: Duration,
    stop_timeout: Duration,
    keep_running: bool,
    log_filter: Option<String>,
    node_env: BTreeMap<usize, BTreeMap<String, String>>,
    node_quota: BTreeMap<usize, u64>,
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
            log_filter: None,
            node_env: BTreeMap::new(),
            node_quota: BTreeMap::new(),
        }
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

    /// Leave the nodes running when the [`Testnet`] is dropped, each in a process group
    /// of its own (so a Ctrl-C in the terminal that started them does not reach them).
    /// Default: false (drop SIGKILLs them).
    #[must_use]
    pub fn with_keep_running(mut self, keep: bool) -> Self {
        self.keep_running = keep;
        self
    }

    /// `DATAMESH_LOG` filter for the nodes (e.g. `debug`). Default: the home's
    /// `log_level` (info).
    #[must_use]
    pub fn with_log_filter(mut self, filter: impl Into<String>) -> Self {
        self.log_filter = Some(filter.into());
        self
    }

    /// An environment variable for node `i`'s process, every time it starts (e.g. a
    /// test-only fault hook of the node). Default: none; the caller's `DATAMESH_*`
    /// variables never reach a node (see [`SCRUBBED_ENV`]).
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

    /// Node `i` runs with a storage quota of `bytes` (`node run --quota`, which
    /// overrides `storage_quota_bytes` of its config.toml). Default: the config's.
    #[must_use]
    pub fn with_node_quota(mut self, i: usize, bytes: u64) -> Self {
        self.node_quota.insert(i, bytes);
        self
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `datamesh` command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A node process exited when it should be running.
    #[error("node {index} exited ({status}); last log lines: {log_tail}")]
    Exited {
        /// The node.
        index: usize,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// No such node.
    #[error("node {index} does not exist (the testnet has {nodes} nodes)")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// How many there are.
        nodes: usize,
    },
    /// The node is not running.
    #[error("node {index} is not running")]
    NotRunning {
        /// The node.
        index: usize,
    },
    /// The node is already running.
    #[error("node {index} is already running (pid {pid})")]
    AlreadyRunning {
        /// The node.
        index: usize,
        /// Its process id.
        pid: u32,
    },
    /// A file the node wrote (`node.json`, `status --json`) is not what was expected.
    #[error("{what} is not valid: {reason}")]
    Invalid {
        /// Which file or output.
        what: String,
        /// Why.
        reason: String,
    },
    /// A testnet needs at least one node; or the folder holds none.
    #[error("no nodes: {0}")]
    NoNodes(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// What a running node publishes in `<home>/node.json` (the format of `datamesh-api`).
pub use datamesh_api::RunFile;
/// `datamesh status --json` (the node's `GET /v1/status`, the format of `datamesh-api`).
pub use datamesh_api::Status;

/// Parses the output of `datamesh status --json`.
///
/// # Errors
/// [`Error::Invalid`] when it is not JSON or lacks `peer_id` / `routing_table_peers`.
pub fn parse_status(json: &[u8]) -> Result<Status> {
    serde_json::from_slice(json).map_err(|e| Error::Invalid {
        what: "`datamesh status --json` output".into(),
        reason: e.to_string(),
    })
}

/// One node: its process, if this testnet knows it to be running.
#[derive(Debug)]
struct Slot {
    /// The process, when this testnet started it.
    child: Option<Child>,
    /// The process id of a running node (also one found by [`Testnet::attach`]).
    pid: Option<u32>,
}

/// A running local testnet; see the crate docs.
#[derive(Debug)]
pub struct Testnet {
    config: Config,
    slots: Vec<Slot>,
}

impl Testnet {
    /// Starts `nodes` nodes in `dir` with the default [`Config`] and waits until the DHT
    /// is ready.
    ///
    /// # Errors
    /// As [`Testnet::up_with`].
    pub fn up(binary: &Path, dir: &Path, nodes: usize) -> Result<Self> {
        Self::up_with(Config::new(binary, dir, nodes))
    }

    /// Creates the homes that do not exist yet (`dir/node-I`, random password), starts
    /// node 0, then the others bootstrapped from node 0, and waits until every routing
    /// table holds `min(nodes - 1, 20)` peers. Homes that exist are reused, so a testnet
    /// brought [`down`](Self::down) comes back with its data.
    ///
    /// # Errors
    /// [`Error::NoNodes`] for 0 nodes; [`Error::Command`] when `init` fails;
    /// [`Error::Exited`] when a node dies at start; [`Error::Timeout`] when the DHT is not
    /// ready in time. Nodes already started are SIGKILLed (unless kept running).
    pub fn up_with(config: Config) -> Result<Self> {
        if config.nodes == 0 {
            return Err(Error::NoNodes("a testnet needs at least one node".into()));
        }
        fs::create_dir_all(&config.dir)
            .map_err(io_err(format!("cannot create {}", config.dir.display())))?;
        let mut net = Self {
            slots: (0..config.nodes)
                .map(|_| Slot {
                    child: None,
                    pid: None,
                })
                .collect(),
            config,
        };
        for i in 0..net.len() {
            net.init(i)?;
        }
        net.spawn(0, &[])?;
        let seed = net.listen_addresses(0)?;
        for i in 1..net.len() {
            net.spawn(i, &seed)?;
        }
        net.wait_ready()?;
        Ok(net)
    }

    /// The testnet in `dir` as a previous `up` left it, to manage from another process
    /// (`datamesh testnet status|kill|stop|start|down`). Nodes whose `node.json` names a
    /// live process count as running. Dropping it leaves every node as it is.
    ///
    /// # Errors
    /// [`Error::NoNodes`] when `dir` has no `node-0`; [`Error::Io`] when it cannot be
    /// read.
    pub fn attach(binary: &Path, dir: &Path) -> Result<Self> {
        let config = Config::new(binary, dir, 0).with_keep_running(true);
        let mut slots = Vec::new();
        while config.dir.join(format!("node-{}", slots.len())).is_dir() {
            let home = config.dir.join(format!("node-{}", slots.len()));
            let pid = read_run_file(&home)?
                .map(|run| run.pid)
                .filter(|pid| pid_alive(*pid));
            slots.push(Slot { child: None, pid });
        }
        if slots.is_empty() {
            return Err(Error::NoNodes(format!(
                "{} holds no testnet (no node-0); start one with `datamesh testnet up`",
                dir.display()
            )));
        }
        Ok(Self {
            config: Config {
                nodes: slots.len(),
                ..config
            },
            slots,
        })
    }

    /// How many nodes the testnet has.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it has no nodes (never, for one made by `up`).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The testnet folder.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The home of node `i`: `dir/node-i`.
    pub fn home(&self, i: usize) -> PathBuf {
        self.config.dir.join(format!("node-{i}"))
    }

    /// The password file of node `i`.
    pub fn password_file(&self, i: usize) -> PathBuf {
        self.home(i).join("password")
    }

    /// The log (stderr) of node `i`.
    pub fn log_file(&self, i: usize) -> PathBuf {
        self.home(i).join("log")
    }

    /// `datamesh --home <home of i>`, ready for arguments, with none of the caller's
    /// `DATAMESH_*` variables.
    pub fn cli(&self, i: usize) -> Command {
        let mut cmd = Command::new(&self.config.binary);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.arg("--home").arg(self.home(i));
        cmd
    }

    /// The process id of node `i` if it is running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.slots.get(i).and_then(|s| s.pid)
    }

    /// Whether node `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.refresh(i);
        self.pid(i).is_some()
    }

    /// The `node.json` of node `i`, if there is one (it is stale after a SIGKILL).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Invalid`] when it cannot be read.
    pub fn run_file(&self, i: usize) -> Result<Option<RunFile>> {
        read_run_file(&self.home(i))
    }

    /// `datamesh status --json` of node `i`.
    ///
    /// # Errors
    /// [`Error::Command`] when the command fails (e.g. the node is down);
    /// [`Error::Invalid`] when its output cannot be parsed.
    pub fn status(&self, i: usize) -> Result<Status> {
        let mut cmd = self.cli(i);
        cmd.args(["status", "--json"]);
        parse_status(&run(&mut cmd)?)
    }

    /// SIGKILLs node `i` and reaps it; its `node.json` stays behind, stale, as after a
    /// crash.
    ///
    /// # Errors
    /// [`Error::NotRunning`]; [`Error::Io`] when the signal cannot be sent.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let pid = self.running_pid(i)?;
        let slot = self.slot_mut(i)?;
        if let Some(mut child) = slot.child.take() {
            child
                .kill()
                .map_err(io_err(format!("cannot kill node {i}")))?;
            child
                .wait()
                .map_err(io_err(format!("cannot reap node {i}")))?;
        } else {
            signal(pid, Signal::KILL).map_err(io_err(format!("cannot kill node {i}")))?;
            wait_gone(pid, Duration::from_secs(10), i)?;
        }
        slot.pid = None;
        Ok(())
    }

    /// SIGTERMs node `i` and waits for it to exit (it flushes its store and removes its
    /// `node.json`); SIGKILLs it after the stop timeout.
    ///
    /// # Errors
    /// [`Error::NotRunning`]; [`Error::Exited`] when it exits with a failure;
    /// [`Error::Timeout`] when it had to be killed.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        let pid = self.running_pid(i)?;
        let timeout = self.config.stop_timeout;
        signal(pid, Signal::TERM).map_err(io_err(format!("cannot signal node {i}")))?;
        let log_tail = log_tail(&self.log_file(i));
        let slot = self.slot_mut(i)?;
        slot.pid = None;
        let Some(mut child) = slot.child.take() else {
            return wait_gone(pid, timeout, i);
        };
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(Error::Exited {
                        index: i,
                        status,
                        log_tail,
                    });
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Timeout {
                        what: format!("node {i} to stop after SIGTERM (killed it)"),
                        waited: timeout,
                    });
                }
                Err(e) => return Err(io_err(format!("cannot wait for node {i}"))(e)),
            }
        }
    }

    /// Starts node `i` again with its home (new ports), bootstrapped from every running
    /// node, and waits until its routing table holds `min(running others, 20)` peers.
    ///
    /// # Errors
    /// [`Error::AlreadyRunning`]; otherwise as [`Testnet::up_with`].
    pub fn start(&mut self, i: usize) -> Result<()> {
        self.slot_mut(i)?;
        if let Some(pid) = self.refresh(i) {
            return Err(Error::AlreadyRunning { index: i, pid });
        }
        let mut bootstrap = Vec::new();
        let mut others = 0;
        for j in 0..self.len() {
            if j != i && self.is_running(j) {
                others += 1;
                bootstrap.extend(self.listen_addresses(j)?);
            }
        }
        self.spawn(i, &bootstrap)?;
        self.wait_peers(i, others.min(READY_PEERS_CAP), Instant::now())
    }

    /// Freezes node `i` (SIGSTOP): the process stays, its sockets stay open, it answers
    /// nothing until [`thaw`](Self::thaw)ed. Dropping the testnet still SIGKILLs it; thaw
    /// it before [`stop`](Self::stop) (a frozen process cannot act on SIGTERM).
    ///
    /// # Errors
    /// [`Error::NotRunning`]; [`Error::Io`] when the signal cannot be sent.
    pub fn freeze(&mut self, i: usize) -> Result<()> {
        let pid = self.running_pid(i)?;
        signal(pid, Signal::STOP).map_err(io_err(format!("cannot freeze node {i}")))
    }

    /// Lets a [`freeze`](Self::freeze)d node `i` run again (SIGCONT).
    ///
    /// # Errors
    /// [`Error::NotRunning`]; [`Error::Io`] when the signal cannot be sent.
    pub fn thaw(&mut self, i: usize) -> Result<()> {
        let pid = self.running_pid(i)?;
        signal(pid, Signal::CONT).map_err(io_err(format!("cannot thaw node {i}")))
    }

    /// Sets (`Some`) or removes (`None`) an environment variable of node `i` for its
    /// next [`start`](Self::start)s (see [`Config::with_node_env`]).
    ///
    /// # Errors
    /// [`Error::NoSuchNode`].
    pub fn set_node_env(&mut self, i: usize, key: &str, value: Option<&str>) -> Result<()> {
        self.slot_mut(i)?;
        let env = self.config.node_env.entry(i).or_default();
        match value {
            Some(value) => env.insert(key.to_string(), value.to_string()),
            None => env.remove(key),
        };
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) the storage quota of node `i` for its next
    /// [`start`](Self::start)s (see [`Config::with_node_quota`]).
    ///
    /// # Errors
    /// [`Error::NoSuchNode`].
    pub fn set_node_quota(&mut self, i: usize, bytes: Option<u64>) -> Result<()> {
        self.slot_mut(i)?;
        match bytes {
            Some(bytes) => self.config.node_quota.insert(i, bytes),
            None => self.config.node_quota.remove(&i),
        };
        Ok(())
    }

    /// Partitions the testnet: every running node of each group blocks the peers of
    /// every other group (`datamesh debug block-peers`), so no connection crosses
    /// groups. Nodes in no group keep their block list. A test hook, not a kernel-level
    /// partition: the nodes must run with `DATAMESH_TEST_FAULTS=1` (see
    /// [`Config::with_node_env`]), and a node restarted meanwhile forgets its list (so
    /// call this again after a restart). Undo with [`heal`](Self::heal).
    ///
    /// # Errors
    /// [`Error::NoSuchNode`]; [`Error::Invalid`] when a node is in two groups;
    /// [`Error::NotRunning`] when a node of a group never published its peer id;
    /// [`Error::Command`] when a node refuses (e.g. it runs without test faults).
    pub fn partition(&self, groups: &[&[usize]]) -> Result<()> {
        let mut group_of = BTreeMap::new();
        for (g, group) in groups.iter().enumerate() {
            for &i in *group {
                self.slot(i)?;
                if let Some(other) = group_of.insert(i, g) {
                    return Err(Error::Invalid {
                        what: "partition groups".into(),
                        reason: format!("node {i} is in groups {other} and {g}"),
                    });
                }
            }
        }
        let peers: BTreeMap<usize, String> = group_of
            .keys()
            .map(|&i| Ok((i, self.peer_id(i)?)))
            .collect::<Result<_>>()?;
        for (&i, &g) in &group_of {
            if self.pid(i).is_none() {
                continue;
            }
            let others: Vec<&String> = peers
                .iter()
                .filter(|(j, _)| group_of[*j] != g)
                .map(|(_, p)| p)
                .collect();
            let mut cmd = self.cli(i);
            cmd.args(["debug", "block-peers"]);
            if others.is_empty() {
                cmd.arg("--none");
            } else {
                cmd.args(others);
            }
            run(&mut cmd)?;
        }
        Ok(())
    }

    /// Undoes a [`partition`](Self::partition): every running node blocks nobody. The
    /// routing tables kept the other groups' peers, so connections form again as soon
    /// as they are needed.
    ///
    /// # Errors
    /// [`Error::Command`] when a node refuses (e.g. it runs without test faults).
    pub fn heal(&self) -> Result<()> {
        for i in 0..self.len() {
            if self.pid(i).is_some() {
                run(self.cli(i).args(["debug", "block-peers", "--none"]))?;
            }
        }
        Ok(())
    }

    /// The peer id of node `i`, from its `node.json` (the identity stays across restarts,
    /// so a stale `node.json` of a killed node still names it).
    ///
    /// # Errors
    /// [`Error::NotRunning`] when it has never published one; as [`Testnet::run_file`].
    pub fn peer_id(&self, i: usize) -> Result<String> {
        self.slot(i)?;
        Ok(self
            .run_file(i)?
            .ok_or(Error::NotRunning { index: i })?
            .peer_id)
    }

    /// The node whose peer id is `peer`, if it is one of this testnet's (running or not,
    /// as long as it ever published its `node.json`).
    pub fn node_of_peer(&self, peer: &str) -> Option<usize> {
        (0..self.len()).find(|&i| self.peer_id(i).is_ok_and(|p| p == peer))
    }

    /// The Prometheus text of running node `i` (`GET /metrics` on its API, with the
    /// home's token), read within 10 s.
    ///
    /// # Errors
    /// [`Error::NotRunning`]; [`Error::Io`] when the API cannot be reached or read;
    /// [`Error::Invalid`] when the answer is not a 200.
    pub fn metrics(&self, i: usize) -> Result<String> {
        let run = self.run_file(i)?.ok_or(Error::NotRunning { index: i })?;
        let what = format!("the metrics of node {i}");
        let token_path = self.home(i).join(datamesh_api::API_TOKEN_FILE);
        let token = fs::read_to_string(&token_path)
            .map_err(io_err(format!("cannot read {}", token_path.display())))?;
        let client = datamesh_api::Client::new(run.api, &token).with_timeout(METRICS_TIMEOUT);
        client.metrics().map_err(|e| match e {
            datamesh_api::ClientError::Api { .. } => Error::Invalid {
                what,
                reason: e.to_string(),
            },
            other => Error::Io {
                what,
                source: io::Error::other(other),
            },
        })
    }

    /// Stops every running node (SIGTERM, wait); their homes and data stay.
    ///
    /// # Errors
    /// The first failure; every node is still asked to stop.
    pub fn down(&mut self) -> Result<()> {
        let mut first = None;
        for i in (0..self.len()).rev() {
            if self.is_running(i)
                && let Err(e) = self.stop(i)
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Lets the nodes outlive this value: dropping it afterwards leaves them running.
    /// (Start with [`Config::with_keep_running`] too, so they are also shielded from the
    /// terminal's Ctrl-C.)
    pub fn detach(mut self) {
        self.config.keep_running = true;
    }

    /// Waits until every running node's routing table holds `min(running - 1, 20)`
    /// peers.
    ///
    /// # Errors
    /// [`Error::Timeout`] after the ready timeout; [`Error::Exited`] when a node dies.
    pub fn wait_ready(&mut self) -> Result<()> {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        let want = running.len().saturating_sub(1).min(READY_PEERS_CAP);
        let started = Instant::now();
        for i in running {
            self.wait_peers(i, want, started)?;
        }
        Ok(())
    }

    // ---- internals ----

    fn slot(&self, i: usize) -> Result<&Slot> {
        let nodes = self.slots.len();
        self.slots
            .get(i)
            .ok_or(Error::NoSuchNode { index: i, nodes })
    }

    fn slot_mut(&mut self, i: usize) -> Result<&mut Slot> {
        let nodes = self.slots.len();
        self.slots
            .get_mut(i)
            .ok_or(Error::NoSuchNode { index: i, nodes })
    }

    /// Forgets a process that has exited; returns the pid if it still runs.
    fn refresh(&mut self, i: usize) -> Option<u32> {
        let slot = self.slots.get_mut(i)?;
        let gone = match (&mut slot.child, slot.pid) {
            (Some(child), _) => !matches!(child.try_wait(), Ok(None)),
            (None, Some(pid)) => !pid_alive(pid),
            (None, None) => false,
        };
        if gone {
            slot.child = None;
            slot.pid = None;
        }
        slot.pid
    }

    fn running_pid(&mut self, i: usize) -> Result<u32> {
        self.slot_mut(i)?;
        self.refresh(i).ok_or(Error::NotRunning { index: i })
    }

    /// `datamesh init` for node `i` unless its home exists.
    fn init(&self, i: usize) -> Result<()> {
        let home = self.home(i);
        if home.join("config.toml").exists() && self.password_file(i).exists() {
            return Ok(());
        }
        fs::create_dir_all(&self.config.dir).map_err(io_err(format!(
            "cannot create {}",
            self.config.dir.display()
        )))?;
        let password = self.password_file(i);
        fs::create_dir_all(&home).map_err(io_err(format!("cannot create {}", home.display())))?;
        write_password(&password)?;
        let mut cmd = self.cli(i);
        cmd.arg("init").arg("--password-file").arg(&password);
        if let Some(kdf) = self.config.kdf {
            cmd.args(kdf.args());
        }
        run(&mut cmd).map(drop)
    }

    /// Starts the process of node `i` and waits for its `node.json`.
    fn spawn(&mut self, i: usize, bootstrap: &[String]) -> Result<()> {
        let home = self.home(i);
        // A stale node.json (after a SIGKILL) must not be taken for the new process's.
        match fs::remove_file(RunFile::path(&home)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(format!(
                    "cannot remove the stale node.json of node {i}"
                ))(e));
            }
            _ => {}
        }
        let log_path = self.log_file(i);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io_err(format!("cannot open {}", log_path.display())))?;
        let _ = writeln!(log, "---- testnet: starting node {i} ----");
        let mut cmd = self.cli(i);
        cmd.args(["node", "run", "--password-file"])
            .arg(self.password_file(i))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"]);
        for addr in bootstrap {
            cmd.arg("--bootstrap").arg(addr);
        }
        if let Some(filter) = &self.config.log_filter {
            cmd.env("DATAMESH_LOG", filter);
        }
        if let Some(bytes) = self.config.node_quota.get(&i) {
            cmd.arg("--quota").arg(bytes.to_string());
        }
        for (key, value) in self.config.node_env.get(&i).into_iter().flatten() {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if self.config.keep_running {
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(io_err(format!(
            "cannot run {}",
            self.config.binary.display()
        )))?;
        let pid = child.id();
        let timeout = self.config.ready_timeout;
        let slot = self.slot_mut(i)?;
        slot.pid = Some(pid);
        slot.child = Some(child);
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive(i)?;
            if let Some(run) = self.run_file(i)?
                && run.pid == pid
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("node {i} to publish its node.json"),
                    waited: timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Error::Exited`] if node `i`, started by us, has exited.
    fn check_alive(&mut self, i: usize) -> Result<()> {
        let slot = self.slot_mut(i)?;
        let status = match &mut slot.child {
            Some(child) => child
                .try_wait()
                .map_err(io_err(format!("cannot wait for node {i}")))?,
            None => None,
        };
        if let Some(status) = status {
            slot.child = None;
            slot.pid = None;
            return Err(Error::Exited {
                index: i,
                status,
                log_tail: log_tail(&self.log_file(i)),
            });
        }
        Ok(())
    }

    /// The listen addresses of running node `i`, from its `node.json`.
    fn listen_addresses(&self, i: usize) -> Result<Vec<String>> {
        let run = self.run_file(i)?.ok_or(Error::NotRunning { index: i })?;
        if run.listen.is_empty() {
            return Err(Error::Invalid {
                what: format!("node.json of node {i}"),
                reason: "no listen address".into(),
            });
        }
        Ok(run.listen)
    }

    fn wait_peers(&mut self, i: usize, want: usize, started: Instant) -> Result<()> {
        let timeout = self.config.ready_timeout;
        let want = want as u64;
        loop {
            self.check_alive(i)?;
            let last = match self.status(i) {
                Ok(status) if status.routing_table_peers >= want => return Ok(()),
                Ok(status) => format!("{} peers", status.routing_table_peers),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!(
                        "node {i} to have {want} peers in its routing table (last: {last})"
                    ),
                    waited: timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Testnet {
    /// SIGKILLs and reaps every node this testnet started, unless kept running.
    fn drop(&mut self) {
        if self.config.keep_running {
            return;
        }
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `cmd` to completion; its stdout, or [`Error::Command`] with its stderr.
fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("cannot run {line}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Command {
            command: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A new random password (32 bytes as 64 hex characters) in a new 0600 file.
fn write_password(path: &Path) -> Result<()> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("cannot create {}", path.display())))?;
    file.write_all(format!("{hex}\n").as_bytes())
        .map_err(io_err(format!("cannot write {}", path.display())))
}

fn read_run_file(home: &Path) -> Result<Option<RunFile>> {
    RunFile::read(home).map_err(|e| match e {
        datamesh_api::RunFileError::Damaged { path, source } => Error::Invalid {
            what: path.display().to_string(),
            reason: source.to_string(),
        },
        datamesh_api::RunFileError::Read { path, source } => {
            io_err(format!("cannot read {}", path.display()))(source)
        }
        other => Error::Invalid {
            what: RunFile::FILE_NAME.into(),
            reason: other.to_string(),
        },
    })
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

fn pid_alive(pid: u32) -> bool {
    to_pid(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

fn signal(pid: u32, sig: Signal) -> io::Result<()> {
    let pid = to_pid(pid).ok_or_else(|| io::Error::other(format!("{pid} is not a pid")))?;
    rustix::process::kill_process(pid, sig).map_err(io::Error::from)
}

/// Waits until a process that is not our child is gone.
fn wait_gone(pid: u32, timeout: Duration, index: usize) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            let _ = signal(pid, Signal::KILL);
            return Err(Error::Timeout {
                what: format!("node {index} (pid {pid}) to exit"),
                waited: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The last few lines of a log, on one line.
fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 2048;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut text = String::new();
        file.take(TAIL).read_to_string(&mut text)?;
        Ok(text)
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
            format!("{tail} (log: {})", path.display())
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

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

    #[test]
    fn password_files_are_private_and_random() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_password(&a)?;
        write_password(&b)?;
        assert_eq!(fs::metadata(&a)?.permissions().mode() & 0o777, 0o600);
        let (a, b) = (fs::read_to_string(a)?, fs::read_to_string(b)?);
        assert_eq!(a.trim_end().len(), 64);
        assert!(a.ends_with('\n'));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn status_parses_the_cli_json() -> TestResult {
        let status = parse_status(
            br#"{"peer_id":"12D3Koo","routing_table_peers":5,"connected_peers":5,"shards":3,"bytes_stored":99,"quota_bytes":1}"#,
        )?;
        assert_eq!(status.peer_id, "12D3Koo");
        assert_eq!(
            (
                status.routing_table_peers,
                status.shards,
                status.bytes_stored
            ),
            (5, 3, 99)
        );
        assert!(matches!(
            parse_status(br#"{"peer_id":"x"}"#),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(parse_status(b"nope"), Err(Error::Invalid { .. })));
        Ok(())
    }

    #[test]
    fn zero_nodes_and_a_missing_binary_are_errors() -> TestResult {
        let dir = tempfile::tempdir()?;
        let zero = Testnet::up(Path::new("/nonexistent/datamesh"), dir.path(), 0);
        assert!(matches!(zero, Err(Error::NoNodes(_))));
        let missing = Testnet::up(Path::new("/nonexistent/datamesh"), dir.path(), 2);
        assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
        Ok(())
    }

    #[test]
    fn a_failing_init_reports_its_stderr() -> TestResult {
        let dir = tempfile::tempdir()?;
        let fake = dir.path().join("fake-datamesh");
        fs::write(&fake, "#!/bin/sh\necho 'error: no luck' >&2\nexit 3\n")?;
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755))?;
        match Testnet::up(&fake, &dir.path().join("net"), 2) {
            Err(Error::Command { stderr, status, .. }) => {
                assert_eq!(stderr, "error: no luck");
                assert_eq!(status.code(), Some(3));
            }
            other => return Err(format!("expected a command error, got {other:?}").into()),
        }
        Ok(())
    }

    #[test]
    fn a_node_that_dies_at_start_is_reported_with_its_log() -> TestResult {
        let dir = tempfile::tempdir()?;
        let fake = dir.path().join("fake-datamesh");
        // `init` succeeds (and makes the config), `node run` fails at once.
        fs::write(
            &fake,
            "#!/bin/sh\ncase \"$3\" in\n  init) touch \"$2/config.toml\" ;;\n  *) echo 'error: keystore damaged' >&2; exit 5 ;;\nesac\n",
        )?;
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755))?;
        match Testnet::up(&fake, &dir.path().join("net"), 3) {
            Err(Error::Exited {
                index, log_tail, ..
            }) => {
                assert_eq!(index, 0);
                assert!(log_tail.contains("keystore damaged"), "{log_tail}");
            }
            other => return Err(format!("expected an exit error, got {other:?}").into()),
        }
        Ok(())
    }

    #[test]
    fn attach_to_an_empty_folder_is_an_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let attached = Testnet::attach(Path::new("datamesh"), dir.path());
        assert!(matches!(attached, Err(Error::NoNodes(_))));
        Ok(())
    }

    #[test]
    fn unknown_nodes_are_errors() -> TestResult {
        let dir = tempfile::tempdir()?;
        fs::create_dir(dir.path().join("node-0"))?;
        let mut net = Testnet::attach(Path::new("datamesh"), dir.path())?;
        assert_eq!(net.len(), 1);
        assert!(!net.is_running(0));
        assert!(matches!(net.kill(0), Err(Error::NotRunning { index: 0 })));
        assert!(matches!(net.freeze(0), Err(Error::NotRunning { index: 0 })));
        assert!(matches!(net.thaw(0), Err(Error::NotRunning { index: 0 })));
        assert!(matches!(
            net.peer_id(0),
            Err(Error::NotRunning { index: 0 })
        ));
        assert!(matches!(
            net.metrics(0),
            Err(Error::NotRunning { index: 0 })
        ));
        assert_eq!(net.node_of_peer("12D3KooWnobody"), None);
        assert!(matches!(
            net.set_node_env(1, "X", Some("1")),
            Err(Error::NoSuchNode { index: 1, nodes: 1 })
        ));
        assert!(matches!(
            net.stop(7),
            Err(Error::NoSuchNode { index: 7, nodes: 1 })
        ));
        assert_eq!(net.home(3), dir.path().join("node-3"));
        Ok(())
    }
}
