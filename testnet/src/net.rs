// One file: every operation on a testnet's node slots is a method of `Testnet`; its unit tests are the last 100 lines.
//! [`Testnet`]: the node processes of one testnet folder, started, stopped, killed,
//! frozen, restarted and partitioned through the `datamesh` binary.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::config::Config;
use crate::error::{Error, Result, io_err};
use crate::home::{log_tail, write_random_password};
use crate::hosts::Hosts;
use crate::process::{POLL, pid_alive, runs_with_path, signal, wait_gone};
use crate::run::{datamesh, output};
use crate::{RunFile, Status, parse_status, read_run_file};

/// At most this many peers are required in each routing table for the testnet to be
/// ready (Kademlia's k).
pub const READY_PEERS_CAP: usize = 20;

/// How long reading a node's metrics may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The hosts, for a testnet of separate hosts ([`Config::with_hosts`]).
    hosts: Option<Hosts>,
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
        let hosts = match config.hosts {
            Some(count) => {
                crate::netns::require_root("a testnet of separate hosts (--hosts)")?;
                if let Some(old) = Hosts::load(&config.dir)? {
                    old.remove()?;
                }
                let hosts = Hosts::new(count)?.with_nat(&config.nat)?;
                hosts.save(&config.dir)?;
                hosts.create()?;
                Some(hosts)
            }
            None => None,
        };
        let mut net = Self {
            hosts,
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
            // A stale node.json's pid may be another program's by now: only a process
            // running with this home counts.
            let pid = read_run_file(&home)?
                .map(|run| run.pid)
                .filter(|&pid| pid_alive(pid) && runs_with_path(pid, "--home", &home));
            slots.push(Slot { child: None, pid });
        }
        if slots.is_empty() {
            return Err(Error::NoNodes(format!(
                "{} holds no testnet (no node-0); start one with `datamesh testnet up`",
                dir.display()
            )));
        }
        let hosts = Hosts::load(dir)?;
        if hosts.is_some() {
            crate::netns::require_root("a testnet of separate hosts (--hosts)")?;
        }
        Ok(Self {
            config: Config {
                nodes: slots.len(),
                hosts: hosts.as_ref().map(Hosts::count),
                ..config
            },
            slots,
            hosts,
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
    /// `DATAMESH_*` variables; on a testnet of hosts, run inside node `i`'s host
    /// (`ip netns exec <namespace> datamesh ...`), where its API is on 127.0.0.1.
    pub fn cli(&self, i: usize) -> Command {
        let plain = datamesh(&self.config.binary, &self.home(i));
        match self.namespace_of(i) {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns]).arg(plain.get_program());
                cmd.args(plain.get_args());
                for var in crate::run::SCRUBBED_ENV {
                    cmd.env_remove(var);
                }
                cmd
            }
            None => plain,
        }
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
        parse_status(&output(&mut cmd)?)
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
        if let Some(hosts) = &self.hosts {
            hosts.ensure()?;
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
            output(&mut cmd)?;
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
                output(self.cli(i).args(["debug", "block-peers", "--none"]))?;
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

    /// The Prometheus text of running node `i` (`GET /metrics` on its API, with the
    /// home's token), read within 10 s.
    ///
    /// # Errors
    /// As [`Testnet::with_api`].
    pub fn metrics(&self, i: usize) -> Result<String> {
        self.with_api(
            i,
            METRICS_TIMEOUT,
            "the metrics",
            datamesh_api::Client::metrics,
        )
    }

    /// Calls running node `i`'s API through `call`, with a client that carries the
    /// home's token and gives up after `timeout`; on a testnet of hosts, from inside the
    /// node's network namespace (where its API listens on 127.0.0.1). `what` names the
    /// call in errors.
    ///
    /// # Errors
    /// [`Error::NotRunning`] when the node has no `node.json`; [`Error::Io`] when the
    /// token cannot be read or the API cannot be reached; [`Error::Invalid`] when the API
    /// answers with an error.
    pub fn with_api<T: Send>(
        &self,
        i: usize,
        timeout: Duration,
        what: &str,
        call: impl FnOnce(&datamesh_api::Client) -> std::result::Result<T, datamesh_api::ClientError>
        + Send,
    ) -> Result<T> {
        let run = self.run_file(i)?.ok_or(Error::NotRunning { index: i })?;
        let what = format!("{what} of node {i}");
        let token_path = self.home(i).join(datamesh_api::API_TOKEN_FILE);
        let token = fs::read_to_string(&token_path)
            .map_err(io_err(format!("cannot read {}", token_path.display())))?;
        let read = move || {
            let client = datamesh_api::Client::new(run.api, &token).with_timeout(timeout);
            call(&client).map_err(|e| match e {
                datamesh_api::ClientError::Api { .. } => Error::Invalid {
                    what,
                    reason: e.to_string(),
                },
                other => Error::Io {
                    what,
                    source: io::Error::other(other),
                },
            })
        };
        match self.namespace_of(i) {
            Some(ns) => crate::netns::within(&ns, read),
            None => read(),
        }
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
        if first.is_none()
            && let Some(hosts) = &self.hosts
            && let Err(e) = hosts.remove()
        {
            first = Some(e);
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
        // A node behind NAT enters the others' tables only once it holds a relay
        // reservation: the wait is for the nodes others can dial.
        let behind_nat = running.iter().filter(|&&i| self.is_behind_nat(i)).count();
        let want = (running.len() - behind_nat)
            .saturating_sub(1)
            .min(READY_PEERS_CAP);
        let started = Instant::now();
        for i in running {
            self.wait_peers(i, want, started)?;
        }
        Ok(())
    }

    /// How many hosts a testnet of separate hosts has (`None`: every node on 127.0.0.1).
    pub fn hosts(&self) -> Option<usize> {
        self.hosts.as_ref().map(Hosts::count)
    }

    /// The host node `i` runs on, on a testnet of separate hosts.
    pub fn host_of(&self, i: usize) -> Option<usize> {
        self.hosts.as_ref().map(|h| i % h.count())
    }

    /// The bridge end of host `h`'s link (its veth, or its NAT router's), in the root
    /// namespace.
    pub(crate) fn bridge_port(&self, h: usize) -> Option<String> {
        let hosts = self.hosts.as_ref()?;
        Some(if hosts.is_natted(h) {
            hosts.router(h)
        } else {
            hosts.namespace(h)
        })
    }

    /// Whether node `i` runs on a host behind a NAT router ([`Config::with_nat`]).
    pub fn is_behind_nat(&self, i: usize) -> bool {
        self.hosts
            .as_ref()
            .is_some_and(|h| h.is_natted(i % h.count()))
    }

    /// The network namespace node `i` runs in, on a testnet of separate hosts (for
    /// `ip netns exec`).
    pub fn namespace_of(&self, i: usize) -> Option<String> {
        let hosts = self.hosts.as_ref()?;
        Some(hosts.namespace(i % hosts.count()))
    }

    /// The network namespace of the NAT router in front of node `i`'s host, when that
    /// host is behind NAT ([`Config::with_nat`]); its kernel state (e.g. the flows it
    /// tracks, `ip netns exec NS cat /proc/net/nf_conntrack`) shows what crossed it.
    pub fn router_of(&self, i: usize) -> Option<String> {
        let hosts = self.hosts.as_ref()?;
        let h = i % hosts.count();
        hosts.is_natted(h).then(|| hosts.router(h))
    }

    /// The address of the host node `i` runs on, on a testnet of separate hosts.
    pub fn address_of(&self, i: usize) -> Option<std::net::Ipv4Addr> {
        self.host_of(i).map(Hosts::address)
    }

    /// Deletes the hosts of a testnet of separate hosts (namespaces, links, filters),
    /// whatever runs in them; what [`down`](Self::down) does after stopping the nodes.
    ///
    /// # Errors
    /// [`Error::Command`] when a namespace or link cannot be deleted.
    pub fn remove_hosts(&mut self) -> Result<()> {
        self.hosts.as_ref().map_or(Ok(()), Hosts::remove)
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
        write_random_password(&password)?;
        let mut cmd = self.cli(i);
        cmd.arg("init").arg("--password-file").arg(&password);
        if let Some(kdf) = self.config.kdf {
            cmd.args(kdf.args());
        }
        output(&mut cmd).map(drop)
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
        // On a host: every interface (the node advertises only its host's address);
        // the API stays on the host's loopback.
        let listen = if self.hosts.is_some() {
            "/ip4/0.0.0.0/tcp/0"
        } else {
            "/ip4/127.0.0.1/tcp/0"
        };
        cmd.args(["node", "run"]);
        // A node whose password file was removed unlocks through another slot (a PKCS#11
        // token, the TPM: see `with_node_env` for its PIN file or TCTI).
        if self.password_file(i).exists() {
            cmd.arg("--password-file").arg(self.password_file(i));
        }
        cmd.args(["--listen", listen, "--api", "127.0.0.1:0"]);
        if let Some(transports) = &self.config.transports {
            cmd.args(["--transport", transports]);
        }
        for addr in bootstrap {
            cmd.arg("--bootstrap").arg(addr);
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
        let mut run = self.run_file(i)?.ok_or(Error::NotRunning { index: i })?;
        if self.hosts.is_some() {
            // 127.0.0.1 of another host is not this node.
            run.listen
                .retain(|a| !a.starts_with("/ip4/127.") && !a.starts_with("/ip6/::1/"));
        }
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
        if let Some(hosts) = &self.hosts {
            let _ = hosts.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

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
    fn a_stale_node_json_naming_another_live_program_is_not_a_node() -> TestResult {
        let dir = tempfile::tempdir()?;
        let home = dir.path().join("node-0");
        fs::create_dir(&home)?;
        // As after a SIGKILL whose pid was reused: here, by this test's own process.
        let stale = RunFile {
            pid: std::process::id(),
            peer_id: "12D3KooWstale".into(),
            api: "127.0.0.1:9".parse()?,
            listen: vec![],
        };
        fs::write(RunFile::path(&home), stale.to_json())?;
        fs::set_permissions(RunFile::path(&home), fs::Permissions::from_mode(0o600))?;
        let mut net = Testnet::attach(Path::new("datamesh"), dir.path())?;
        assert_eq!(net.pid(0), None);
        assert!(matches!(net.kill(0), Err(Error::NotRunning { index: 0 })));
        assert!(matches!(net.stop(0), Err(Error::NotRunning { index: 0 })));
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
