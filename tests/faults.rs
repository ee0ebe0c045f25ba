//! The fault suite: real `datamesh node run` processes on 127.0.0.1 (started, killed,
//! frozen by `datamesh-testnet`), broken on purpose; every case requires byte-identical
//! data or a clear error, never wrong bytes, never a hang.
//!
//! A test of the `datamesh-e2e` package (tests/Cargo.toml); the binary under test is the
//! `datamesh` of the same cargo build (`support::bin`). The tests run one at a time (each
//! has a testnet of eight node processes, ten for the partition); cases that can share a
//! testnet do, and leave every node running for the next. Every command runs under a
//! deadline and is killed after it; every node is SIGKILLed when its testnet is dropped,
//! also on failure.
//!
//! Which nodes hold which shards is learned from the system itself: `datamesh --json
//! check ID` lists, per stripe and shard index, the live peers holding a copy; the
//! testnet maps peer ids to nodes.
//!
//! This file holds what the cases share; the cases are in `faults/`, one file per
//! testnet: `kills.rs` (cases 1-4), `corruption.rs` (5-7), `crash.rs` (8), `full.rs` (9),
//! `partition.rs` (10); `audit.rs` (11: `check --audit` with a frozen holder);
//! `kernel.rs` (K1, K2: kernel-level faults between network namespaces, as root).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, Running, run_within, unique};
use datamesh_testnet::{Config, Kdf, Testnet};
use serde_json::Value;

mod support;
use support::{bin, counter, datamesh};

/// Nodes of each testnet: six holders per stripe, and two to spare.
const NODES: usize = 8;
/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);
/// A get that cannot succeed must say so within this long (issue 7, case 3).
const FAIL_FAST_DEADLINE: Duration = Duration::from_secs(30);
/// Exit code of network failures, "not enough shards" included (cli/src/exit.rs).
const EXIT_NETWORK: i32 = 4;

/// A progress line on stderr (shown with `--nocapture`): which case, what it learned.
macro_rules! note {
    ($($arg:tt)*) => {{
        #[allow(clippy::print_stderr)]
        {
            eprintln!($($arg)*);
        }
    }};
}

/// A testnet of [`NODES`] nodes in `dir/net`, with cheap KDF parameters.
fn testnet(dir: &Path, config: impl FnOnce(Config) -> Config) -> anyhow::Result<Testnet> {
    let base = Config::new(bin()?, dir.join("net"), NODES).with_kdf(Kdf::FAST);
    Testnet::up_with(config(base)).context("cannot start the testnet")
}

/// Runs `cmd` to completion within [`COMMAND_DEADLINE`].
fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

/// `datamesh put PATH [--to KEY]...` with the home `home`; the id.
fn put_in(home: &Path, path: &Path, to: &[String], scratch: &Path) -> anyhow::Result<String> {
    let mut cmd = datamesh(home);
    cmd.arg("put").arg(path);
    for key in to {
        cmd.args(["--to", key]);
    }
    let stdout = run(cmd, scratch)?.ok(&format!("put {}", path.display()))?;
    let id = String::from_utf8(stdout)?.trim().to_string();
    ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
    Ok(id)
}

/// `datamesh get ID -o OUT` on node `i`.
fn get_cmd(net: &Testnet, i: usize, id: &str, out: &Path) -> Command {
    let mut cmd = net.cli(i);
    cmd.args(["get", id, "-o"]).arg(out);
    cmd
}

/// Gets `id` through node `i` and requires the bytes of `expected`.
fn get_same(
    net: &Testnet,
    i: usize,
    id: &str,
    expected: &Path,
    scratch: &Path,
    what: &str,
) -> anyhow::Result<()> {
    let out = scratch.join(format!("out-{}", unique()));
    run(get_cmd(net, i, id, &out), scratch)?.ok(&format!("get through node {i} ({what})"))?;
    assert_same_file(expected, &out).with_context(|| what.to_string())?;
    fs::remove_file(out)?;
    Ok(())
}

/// The public key of node `i` (`keys export-public`), to share files with it.
fn public_key(net: &Testnet, i: usize, scratch: &Path) -> anyhow::Result<String> {
    let mut cmd = net.cli(i);
    cmd.args(["keys", "export-public", "--password-file"])
        .arg(net.password_file(i));
    let out = run(cmd, scratch)?.ok(&format!("export-public on node {i}"))?;
    Ok(String::from_utf8(out)?.trim().to_string())
}

/// A file put through one node, and where its shards are.
struct Stored {
    id: String,
    input: PathBuf,
    /// Per stripe, per shard index: the nodes holding it.
    map: Vec<Vec<Vec<usize>>>,
}

impl Stored {
    /// Two nodes holding shards of the last stripe (the one a get reads last), neither
    /// of them in `except`.
    fn two_late_holders(&self, except: &[usize]) -> anyhow::Result<[usize; 2]> {
        let last = self.map.len() - 1;
        let nodes: Vec<usize> = stripe_nodes(&self.map, last)
            .into_iter()
            .filter(|n| !except.contains(n))
            .collect();
        ensure!(nodes.len() >= 2, "last stripe on {:?}", self.map[last]);
        Ok([nodes[0], nodes[1]])
    }
}

/// Puts a new file of `len` bytes through `putter` (shared with `to`) and locates its
/// shards (`check` through the putter); the file must be at full health.
fn put_located(
    net: &Testnet,
    peers: &BTreeMap<String, usize>,
    putter: usize,
    (len, seed): (usize, u64),
    to: &[String],
    scratch: &Path,
) -> anyhow::Result<Stored> {
    let input = make_file(scratch, len, seed)?;
    let id = put_in(&net.home(putter), &input, to, scratch)?;
    let report = check(net, putter, &id, &[], scratch)?;
    ensure!(state(&report) == "healthy", "after the put: {report}");
    let map = holders(&report, peers)?;
    Ok(Stored { id, input, map })
}

/// Starts every node that is not running (a case may have killed some).
fn restart_all(net: &mut Testnet) -> anyhow::Result<()> {
    for i in 0..net.len() {
        if !net.is_running(i) {
            net.start(i).with_context(|| format!("restart node {i}"))?;
        }
    }
    Ok(())
}

/// Waits until a get writing into `dir` has streamed some bytes (its temp file is not
/// empty), or has finished.
fn wait_streaming(get: &mut Running, dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + COMMAND_DEADLINE;
    loop {
        let streaming = fs::read_dir(dir)?.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".datamesh-get-")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        });
        if streaming || !get.running()? {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the get wrote nothing within {COMMAND_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Peer id -> node index, for every node of the testnet (ids survive restarts).
fn peer_map(net: &Testnet) -> anyhow::Result<BTreeMap<String, usize>> {
    (0..net.len()).map(|i| Ok((net.peer_id(i)?, i))).collect()
}

/// `datamesh --json check ID FLAGS...` through node `via`; the report (exit 0 required:
/// every stripe readable).
fn check(
    net: &Testnet,
    via: usize,
    id: &str,
    flags: &[&str],
    scratch: &Path,
) -> anyhow::Result<Value> {
    let mut cmd = net.cli(via);
    cmd.args(["--json", "check", id]).args(flags);
    let what = format!("check {flags:?} through node {via}");
    let out = run(cmd, scratch)?.ok(&what)?;
    let report: Value =
        serde_json::from_slice(&out).with_context(|| format!("{what}: not JSON"))?;
    ensure!(
        report["id"].as_str() == Some(id),
        "{what}: report of another file: {report}"
    );
    Ok(report)
}

/// The report's `state` (`healthy`, `degraded`, `unrecoverable`).
fn state(report: &Value) -> &str {
    report["state"].as_str().unwrap_or("(none)")
}

/// Per stripe, per shard index: the nodes holding a healthy copy (from a check report).
fn holders(
    report: &Value,
    peers: &BTreeMap<String, usize>,
) -> anyhow::Result<Vec<Vec<Vec<usize>>>> {
    let stripes = report["stripes"]
        .as_array()
        .context("check report without stripes")?;
    stripes
        .iter()
        .map(|stripe| {
            let row = stripe["holders"]
                .as_array()
                .filter(|row| row.len() == 6)
                .with_context(|| format!("stripe without 6 holder lists: {stripe}"))?;
            row.iter()
                .map(|list| {
                    list.as_array()
                        .context("holder list is not an array")?
                        .iter()
                        .map(|p| {
                            let p = p.as_str().context("holder is not a string")?;
                            peers
                                .get(p)
                                .copied()
                                .with_context(|| format!("holder {p} is not a testnet node"))
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// The distinct nodes holding shards of stripe `s`, in shard-index order.
fn stripe_nodes(holders: &[Vec<Vec<usize>>], s: usize) -> Vec<usize> {
    let mut nodes: Vec<usize> = Vec::new();
    for n in holders[s].iter().flatten() {
        if !nodes.contains(n) {
            nodes.push(*n);
        }
    }
    nodes
}

// The crate root's modules would be siblings of this file; the cases live in faults/.
#[path = "faults/audit.rs"]
mod audit;
#[path = "faults/corruption.rs"]
mod corruption;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/full.rs"]
mod full;
#[path = "faults/kernel.rs"]
mod kernel;
#[path = "faults/kills.rs"]
mod kills;
#[path = "faults/partition.rs"]
mod partition;
