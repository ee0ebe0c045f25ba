//! The fault suite: real `datamesh node run` processes on 127.0.0.1 (started, killed,
//! frozen by `datamesh-testnet`), broken on purpose; every case requires byte-identical
//! data or a clear error, never wrong bytes, never a hang.
//!
//! Built as an integration test of the cli package (see cli/Cargo.toml), so that
//! `CARGO_BIN_EXE_datamesh` is the binary under test. The tests run one at a time (each
//! has a testnet of eight node processes, ten for the partition); cases that can share a
//! testnet do, and leave every node running for the next. Every command runs under a
//! deadline and is killed after it; every node is SIGKILLed when its testnet is dropped,
//! also on failure.
//!
//! Which nodes hold which shards is learned from the system itself: `datamesh --json
//! check ID` lists, per stripe and shard index, the live peers holding a copy; the
//! testnet maps peer ids to nodes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use datamesh_testnet::{Config, Kdf, Testnet};

mod support;
use serde_json::Value;
use support::{
    BIN, MIB, Outcome, Running, SplitMix, assert_same_file, datamesh, make_file, run_within,
    serial, unique,
};

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
    let base = Config::new(BIN, dir.join("net"), NODES).with_kdf(Kdf::FAST);
    Testnet::up_with(config(base)).context("cannot start the testnet")
}

/// Runs `cmd` to completion within [`COMMAND_DEADLINE`].
fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    run_within(cmd, scratch, COMMAND_DEADLINE)
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

/// A counter of node `i`'s Prometheus metrics (0 when not yet reported).
fn counter(net: &Testnet, i: usize, name: &str) -> anyhow::Result<u64> {
    let text = net.metrics(i)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64))
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

// ------------------------------------------------------------------- cases 1-4

/// Cases 1-4 on one testnet: kills before and during gets, a stripe with too few
/// shards, frozen holders. Each case leaves every node running.
#[test]
fn kills_and_freezes() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, |c| c)?;
    let started = Instant::now();
    let peers = peer_map(&net)?;
    kill_two_before_get(&mut net, &peers, scratch).context("case 1")?;
    note!("case 1 done at {:?}", started.elapsed());
    kill_two_during_get(&mut net, &peers, scratch).context("case 2")?;
    note!("case 2 done at {:?}", started.elapsed());
    kill_three_fails_cleanly(&mut net, &peers, scratch).context("case 3")?;
    note!("case 3 done at {:?}", started.elapsed());
    freeze_two_during_get(&mut net, &peers, scratch).context("case 4")?;
    note!("case 4 done at {:?}", started.elapsed());
    Ok(())
}

/// Case 1: two holders of one stripe SIGKILLed, then a get: byte-identical. Pairs: the
/// putting node itself with another holder of a stripe it holds a shard of (its own
/// column; read through a node the file is shared with), and two pairs of holders of
/// other stripes (read through the putter).
fn kill_two_before_get(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    const PUTTER: usize = 0;
    const FRIEND: usize = 1;
    let friend_key = public_key(net, FRIEND, scratch)?;
    // Seven stripes: the putter holds shards of some of them, except by a rare chance:
    // put again (bounded) until it does.
    let mut found = None;
    for attempt in 0..6 {
        let stored = put_located(
            net,
            peers,
            PUTTER,
            (6 * MIB + 777, 100 + attempt),
            std::slice::from_ref(&friend_key),
            scratch,
        )?;
        let own = (0..stored.map.len()).find(|&s| stripe_nodes(&stored.map, s).contains(&PUTTER));
        if let Some(own) = own {
            found = Some((stored, own));
            break;
        }
    }
    let (stored, own) = found.context("in 6 puts the putting node never stored a shard itself")?;
    let partner = stripe_nodes(&stored.map, own)
        .into_iter()
        .find(|&n| n != PUTTER && n != FRIEND)
        .context("no partner")?;
    let mut pairs = vec![((PUTTER, partner), own, FRIEND)];
    for s in (0..stored.map.len()).filter(|&s| s != own) {
        let nodes: Vec<usize> = stripe_nodes(&stored.map, s)
            .into_iter()
            .filter(|&n| n != PUTTER && n != FRIEND)
            .collect();
        let pair = (nodes[0], nodes[1]);
        if pairs.len() < 3 && !pairs.iter().any(|(p, _, _)| *p == pair) {
            pairs.push((pair, s, PUTTER));
        }
    }
    for ((a, b), stripe, reader) in pairs {
        net.kill(a)?;
        net.kill(b)?;
        get_same(
            net,
            reader,
            &stored.id,
            &stored.input,
            scratch,
            &format!(
                "nodes {a} and {b} (holders of stripe {stripe}) killed, read through node {reader}"
            ),
        )?;
        note!(
            "case 1: nodes {a} and {b} (holders of stripe {stripe}) killed: identical through node {reader}"
        );
        net.start(a)?;
        net.start(b)?;
    }
    fs::remove_file(&stored.input)?;
    Ok(())
}

/// Case 2: two holders SIGKILLed while a 64 MiB get streams: byte-identical.
fn kill_two_during_get(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let stored = put_located(net, peers, 0, (64 * MIB, 2), &[], scratch)?;
    let victims = stored.two_late_holders(&[0])?;
    let out_dir = scratch.join("case-2");
    fs::create_dir(&out_dir)?;
    let out = out_dir.join("copy");
    let mut get = Running::spawn(get_cmd(net, 0, &stored.id, &out), scratch, COMMAND_DEADLINE)?;
    wait_streaming(&mut get, &out_dir)?;
    for &v in &victims {
        net.kill(v)?;
    }
    ensure!(
        get.running()?,
        "the get finished before the holders were killed"
    );
    get.finish()?.ok("the get during the kills")?;
    assert_same_file(&stored.input, &out)
        .with_context(|| format!("nodes {victims:?} killed during the get"))?;
    fs::remove_file(&out)?;
    fs::remove_file(&stored.input)?;
    restart_all(net)
}

/// Case 3: three holders of one stripe SIGKILLed (chosen so that every other stripe keeps
/// four shards): the get fails within 30 s with the not-enough-shards error naming that
/// stripe, exit code 4, and leaves no file; `check` calls the file unrecoverable (exit 5).
fn kill_three_fails_cleanly(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let input = make_file(scratch, 4 * MIB - 1000, 3)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let map = holders(&check(net, 0, &id, &[], scratch)?, peers)?;
    let (stripe, victims) = three_holders_of_one_stripe(&map)
        .context("no 3 holders of one stripe that leave the other stripes readable")?;
    note!("case 3: killing {victims:?}, holders of stripe {stripe}");
    for &v in &victims {
        net.kill(v)?;
    }
    let out_dir = scratch.join("case-3");
    fs::create_dir(&out_dir)?;
    let out = out_dir.join("copy");
    let get = Running::spawn(get_cmd(net, 0, &id, &out), scratch, FAIL_FAST_DEADLINE)?;
    let line = get
        .finish()
        .context("a get that cannot succeed must fail within 30 s")?
        .fails_with(EXIT_NETWORK, "get with 3 holders of a stripe killed")?;
    ensure!(
        line.contains(&format!("stripe {stripe}:")) && line.contains("of the 4 shards needed"),
        "expected the not-enough-shards error naming stripe {stripe}, got {line:?}"
    );
    let left: Vec<_> = fs::read_dir(&out_dir)?.filter_map(Result::ok).collect();
    ensure!(
        left.is_empty(),
        "the failed get left {:?}",
        left.iter().map(fs::DirEntry::file_name).collect::<Vec<_>>()
    );
    let mut cmd = net.cli(0);
    cmd.args(["check", &id]);
    let line = run(cmd, scratch)?.fails_with(5, "check of a file with a lost stripe")?;
    ensure!(line.contains("UNRECOVERABLE"), "{line}");
    fs::remove_file(&input)?;
    restart_all(net)
}

/// A stripe and three of its holders (never node 0, the reader) whose loss leaves every
/// other stripe at least four holders; the last stripes are tried first.
fn three_holders_of_one_stripe(map: &[Vec<Vec<usize>>]) -> Option<(usize, [usize; 3])> {
    for s in (0..map.len()).rev() {
        let nodes: Vec<usize> = stripe_nodes(map, s)
            .into_iter()
            .filter(|&n| n != 0)
            .collect();
        for a in 0..nodes.len() {
            for b in a + 1..nodes.len() {
                for c in b + 1..nodes.len() {
                    let dead = [nodes[a], nodes[b], nodes[c]];
                    let others_readable = (0..map.len()).filter(|&t| t != s).all(|t| {
                        map[t]
                            .iter()
                            .filter(|list| list.iter().any(|n| !dead.contains(n)))
                            .count()
                            >= 4
                    });
                    if others_readable {
                        return Some((s, dead));
                    }
                }
            }
        }
    }
    None
}

/// Case 4: two holders frozen (SIGSTOP) while a get streams: it completes from the
/// others while they stay frozen; thawed (SIGCONT), they serve shards again.
fn freeze_two_during_get(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let stored = put_located(net, peers, 0, (24 * MIB + 5, 4), &[], scratch)?;
    let frozen = stored.two_late_holders(&[0])?;
    let out_dir = scratch.join("case-4");
    fs::create_dir(&out_dir)?;
    let out = out_dir.join("copy");
    let mut get = Running::spawn(get_cmd(net, 0, &stored.id, &out), scratch, COMMAND_DEADLINE)?;
    wait_streaming(&mut get, &out_dir)?;
    for &f in &frozen {
        net.freeze(f)?;
    }
    let still_running = get.running()?;
    let finished = get.finish();
    // Thaw before anything can fail, so that the next case finds them running.
    for &f in &frozen {
        net.thaw(f)?;
    }
    ensure!(
        still_running,
        "the get finished before the holders were frozen"
    );
    finished?.ok("the get with two holders frozen")?;
    assert_same_file(&stored.input, &out)
        .with_context(|| format!("nodes {frozen:?} frozen during the get"))?;
    fs::remove_file(&out)?;

    // Thawed, they serve again: with two other holders of the last stripe killed, that
    // stripe can only be read with both of their shards.
    let last = stored.map.len() - 1;
    let others: Vec<usize> = stripe_nodes(&stored.map, last)
        .into_iter()
        .filter(|n| *n != 0 && !frozen.contains(n))
        .take(2)
        .collect();
    ensure!(others.len() == 2, "last stripe on {:?}", stored.map[last]);
    for &n in &others {
        net.kill(n)?;
    }
    let served = |net: &Testnet| -> anyhow::Result<Vec<u64>> {
        frozen
            .iter()
            .map(|&f| counter(net, f, "datamesh_shards_served_total"))
            .collect()
    };
    let before = served(net)?;
    get_same(
        net,
        0,
        &stored.id,
        &stored.input,
        scratch,
        &format!("after the thaw, with {others:?} killed: stripe {last} needs {frozen:?}"),
    )?;
    let after = served(net)?;
    for (k, &f) in frozen.iter().enumerate() {
        ensure!(
            after[k] > before[k],
            "node {f} served no shard after SIGCONT ({} -> {})",
            before[k],
            after[k]
        );
    }
    note!(
        "case 4: froze {frozen:?} during the get; thawed, they served stripe {last} with {others:?} killed"
    );
    fs::remove_file(&stored.input)?;
    restart_all(net)
}

// ------------------------------------------------------------------- case 8

/// Case 8: a stream of puts through node 0 while storage nodes are SIGKILLed at random
/// moments and restarted (20 kills; `DATAMESH_SOAK_KILLS=N` for a longer soak);
/// afterwards every acknowledged put reads back byte-identical and verifies intact on
/// six peers, and every failed put failed cleanly.
#[test]
fn crash_durability_under_a_stream_of_puts() -> anyhow::Result<()> {
    let kills_wanted: usize = match std::env::var("DATAMESH_SOAK_KILLS") {
        Ok(n) => n
            .parse()
            .with_context(|| format!("DATAMESH_SOAK_KILLS={n:?} is not a count"))?,
        Err(_) => 20,
    };
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path().to_path_buf();
    let mut net = testnet(&scratch, |c| c)?;
    let seed = {
        use rand_core::RngCore as _;
        rand_core::OsRng.next_u64()
    };
    note!("case 8: seed {seed:#x}");
    let mut rng = SplitMix(seed);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let home = net.home(0);
    let putter = {
        let (stop, scratch) = (std::sync::Arc::clone(&stop), scratch.clone());
        let mut rng = SplitMix(seed.rotate_left(17));
        std::thread::spawn(move || -> anyhow::Result<(Vec<(String, PathBuf)>, usize)> {
            let mut acked = Vec::new();
            let mut failed = 0;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let len = rng.range(1, 3 * MIB as u64) as usize;
                let input = make_file(&scratch, len, 8000 + n)?;
                let mut cmd = datamesh(&home);
                cmd.arg("put").arg(&input);
                let outcome = run(cmd, &scratch)?;
                if outcome.code == Some(0) {
                    let id = String::from_utf8(outcome.stdout)?.trim().to_string();
                    ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
                    acked.push((id, input));
                } else {
                    // Not acknowledged: it must have failed cleanly.
                    outcome.fails_with(EXIT_NETWORK, "a put during a crash")?;
                    failed += 1;
                    fs::remove_file(input)?;
                }
            }
            Ok((acked, failed))
        })
    };
    let mut kills = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for _ in 0..kills_wanted {
            std::thread::sleep(Duration::from_millis(rng.range(50, 1500)));
            let victim = rng.range(1, NODES as u64) as usize;
            net.kill(victim)?;
            kills.push(victim);
            std::thread::sleep(Duration::from_millis(rng.range(0, 500)));
            net.start(victim)?;
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = putter
        .join()
        .map_err(|_| anyhow::anyhow!("the put thread panicked"))??;
    result?;
    note!(
        "case 8: {} puts acknowledged, {failed} failed cleanly; killed {kills:?}",
        acked.len()
    );
    ensure!(
        acked.len() >= kills_wanted / 2,
        "only {} puts were acknowledged",
        acked.len()
    );
    restart_all(&mut net)?;
    // Every acknowledged put reads back, and every copy of every shard it placed is
    // there and intact (fetched and hashed): no torn shard passes.
    for (id, input) in &acked {
        get_same(&net, 0, id, input, &scratch, "an acknowledged put")?;
        let verify = check(&net, 0, id, &["--verify"], &scratch)?;
        ensure!(
            state(&verify) == "healthy"
                && verify["bad_peers"].as_array().is_some_and(Vec::is_empty),
            "an acknowledged put is not intact on six peers after the crashes: {verify}"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------- cases 5-7

/// Cases 5-7 on one testnet whose nodes all accept the test fault hooks
/// (`DATAMESH_TEST_FAULTS=1`): repair, bit rot, a peer answering wrong bytes.
#[test]
fn repair_bit_rot_and_lying_peers() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, |c| {
        (0..NODES).fold(c, |c, i| c.with_node_env(i, "DATAMESH_TEST_FAULTS", "1"))
    })?;
    let peers = peer_map(&net)?;
    let started = Instant::now();
    repair_then_lose_others(&mut net, &peers, scratch).context("case 5")?;
    note!("case 5 done at {:?}", started.elapsed());
    bit_rot(&net, &peers, scratch).context("case 6")?;
    note!("case 6 done at {:?}", started.elapsed());
    lying_peer(&mut net, &peers, scratch).context("case 7")?;
    note!("case 7 done at {:?}", started.elapsed());
    Ok(())
}

/// Case 5: two holders of stripe 0 SIGKILLed, `check --repair` (through a node that
/// cannot read the file: repair needs no key), then two *other* original holders of
/// stripe 0 SIGKILLed: without the repair stripe 0 would be down to 2 shards; the get is
/// byte-identical.
fn repair_then_lose_others(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let input = make_file(scratch, 2 * MIB + 333, 5)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let report = check(net, 0, &id, &[], scratch)?;
    ensure!(state(&report) == "healthy", "after the put: {report}");
    let original = stripe_nodes(&holders(&report, peers)?, 0);
    ensure!(original.len() == 6, "stripe 0 on {original:?}");
    let others: Vec<usize> = original.iter().copied().filter(|&n| n != 0).collect();
    let (first, second) = ([others[0], others[1]], [others[2], others[3]]);
    // The repairer: alive throughout, and not shared with.
    let repairer = (1..NODES)
        .find(|n| !first.contains(n) && !second.contains(n))
        .context("no node left to repair through")?;
    let cmd = get_cmd(net, repairer, &id, &scratch.join("not-readable"));
    run(cmd, scratch)?.fails_with(2, "get through the repairer, not shared with")?;

    for n in first {
        net.kill(n)?;
    }
    let repaired = check(net, repairer, &id, &["--repair"], scratch)?;
    ensure!(
        repaired["before"]["state"].as_str() == Some("degraded") && state(&repaired) == "healthy",
        "repair with nodes {first:?} down: {repaired}"
    );
    ensure!(
        repaired["repaired_shards"].as_u64() >= Some(2),
        "repair placed fewer than the 2 lost shards of stripe 0: {repaired}"
    );
    let now = stripe_nodes(&holders(&repaired, peers)?, 0);
    ensure!(
        now.len() == 6 && !now.iter().any(|n| first.contains(n)),
        "stripe 0 after the repair is on {now:?} (killed: {first:?})"
    );
    note!(
        "case 5: stripe 0 was on {original:?}; killed {first:?}, repaired onto {now:?}, killing {second:?}"
    );

    for n in second {
        net.kill(n)?;
    }
    get_same(
        net,
        0,
        &id,
        &input,
        scratch,
        &format!("repaired with {first:?} down, then {second:?} killed"),
    )?;
    fs::remove_file(input)?;
    restart_all(net)
}

/// Case 6: one stored shard corrupted on its holder: the get is byte-identical, `check
/// --verify` names the holder and the shard, `--repair` replaces it, and a second
/// `--verify` is clean.
fn bit_rot(net: &Testnet, peers: &BTreeMap<String, usize>, scratch: &Path) -> anyhow::Result<()> {
    let input = make_file(scratch, 3 * MIB / 2, 6)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let report = check(net, 0, &id, &[], scratch)?;
    let map = holders(&report, peers)?;
    // A node holding a data shard of stripe 0 (a reader asks for those first), other
    // than the reader.
    let victim = (0..4)
        .find_map(|i| map[0][i].iter().copied().find(|&n| n != 0))
        .context("no data shard of stripe 0 on another node")?;
    // `--file` alone: the first shard of the file the node holds. (`--stripe`/`--index`
    // would pick one, but clap rejects them together with `--file`.)
    let mut cmd = net.cli(victim);
    cmd.args(["--json", "debug", "corrupt-shard", "--file", &id]);
    let corrupted: Value = serde_json::from_slice(
        &run(cmd, scratch)?.ok(&format!("debug corrupt-shard on node {victim}"))?,
    )?;
    let shard = corrupted["shard"]
        .as_str()
        .context("corrupt-shard named no shard")?
        .to_string();
    let (Some(stripe), Some(index)) = (
        corrupted["stripe"].as_u64().map(|s| s as usize),
        corrupted["index"].as_u64().map(|i| i as usize),
    ) else {
        bail!("corrupt-shard did not say which stripe and index: {corrupted}");
    };
    ensure!(
        map.get(stripe)
            .is_some_and(|row| row[index].contains(&victim)),
        "node {victim} corrupted shard {index} of stripe {stripe}, which it does not hold: {corrupted}"
    );
    let victim_peer = net.peer_id(victim)?;
    ensure!(
        corrupted["peer_id"].as_str() == Some(victim_peer.as_str()),
        "{corrupted}"
    );
    note!("case 6: corrupted shard {index} of stripe {stripe} ({shard}) on node {victim}");

    get_same(net, 0, &id, &input, scratch, "one shard corrupted")?;

    let verify = check(net, 0, &id, &["--verify"], scratch)?;
    ensure!(state(&verify) == "degraded", "verify: {verify}");
    let bad = verify["stripes"][stripe]["bad"]
        .as_array()
        .context("no bad list")?;
    ensure!(
        bad.iter()
            .any(|b| b["peer"].as_str() == Some(victim_peer.as_str())
                && b["index"].as_u64() == Some(index as u64)
                && b["shard"].as_str() == Some(shard.as_str())
                && b["reason"].as_str() == Some("corrupt")),
        "verify did not name node {victim} ({victim_peer}) and shard {shard}: {verify}"
    );
    ensure!(
        verify["bad_peers"]
            .as_array()
            .is_some_and(|b| b.iter().any(|p| p.as_str() == Some(victim_peer.as_str()))),
        "bad_peers lacks {victim_peer}: {verify}"
    );

    let repair = check(net, 0, &id, &["--verify", "--repair"], scratch)?;
    ensure!(
        state(&repair) == "healthy" && repair["repaired_shards"].as_u64() >= Some(1),
        "repair: {repair}"
    );
    let again = check(net, 0, &id, &["--verify"], scratch)?;
    let clean = state(&again) == "healthy"
        && again["bad_peers"].as_array().is_some_and(Vec::is_empty)
        && again["stripes"].as_array().is_some_and(|stripes| {
            stripes
                .iter()
                .all(|s| s["bad"].as_array().is_some_and(Vec::is_empty))
        });
    ensure!(clean, "the second verify is not clean: {again}");
    get_same(net, 0, &id, &input, scratch, "after the repair")?;
    fs::remove_file(input)?;
    Ok(())
}

/// Case 7: a holder restarted in the test-only mode that answers every fetch with altered
/// bytes: the reader rejects them by hash and fetches elsewhere (byte-identical output),
/// and the peer is reported: in the reader's log and metrics, and by `check --verify`.
fn lying_peer(
    net: &mut Testnet,
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<()> {
    let input = make_file(scratch, 5 * MIB / 2, 7)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    let map = holders(&check(net, 0, &id, &[], scratch)?, peers)?;
    // The liar holds a data shard of stripe 0: the reader asks it first.
    let liar = (0..4)
        .find_map(|i| map[0][i].iter().copied().find(|&n| n != 0))
        .context("no data shard of stripe 0 on another node")?;
    net.stop(liar)?;
    net.set_node_env(liar, "DATAMESH_TEST_MISBEHAVE", Some("wrong-bytes"))?;
    net.start(liar)?;
    let liar_peer = net.peer_id(liar)?;
    note!("case 7: node {liar} ({liar_peer}) answers wrong bytes");

    let bad_before = counter(net, 0, "datamesh_bad_shards_fetched_total")?;
    get_same(
        net,
        0,
        &id,
        &input,
        scratch,
        "one holder answers wrong bytes",
    )?;
    let bad_after = counter(net, 0, "datamesh_bad_shards_fetched_total")?;
    ensure!(
        bad_after > bad_before,
        "the reader counted no bad shard ({bad_before} -> {bad_after})"
    );
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.lines()
            .any(|l| l.contains("does not match its id") && l.contains(&liar_peer)),
        "the reader's log does not name {liar_peer}"
    );
    let verify = check(net, 0, &id, &["--verify"], scratch)?;
    ensure!(
        verify["bad_peers"]
            .as_array()
            .is_some_and(|b| b.iter().any(|p| p.as_str() == Some(liar_peer.as_str()))),
        "verify did not report {liar_peer}: {verify}"
    );
    ensure!(
        verify["stripes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["bad"].as_array().into_iter().flatten())
            .any(|b| b["peer"].as_str() == Some(liar_peer.as_str())
                && b["reason"].as_str() == Some("wrong_bytes")),
        "verify did not report wrong bytes from {liar_peer}: {verify}"
    );

    net.stop(liar)?;
    net.set_node_env(liar, "DATAMESH_TEST_MISBEHAVE", None)?;
    net.start(liar)?;
    fs::remove_file(input)?;
    Ok(())
}

// ------------------------------------------------------------------- case 9

/// Case 9: one node with a tiny storage quota (`node run --quota`): once full it refuses
/// shards (the putter logs the refusal, with the node's numbers), stays up, keeps serving
/// the shards it has, and every put still succeeds on six other peers.
#[test]
fn disk_full_node_refuses_and_keeps_serving() -> anyhow::Result<()> {
    const FULL: usize = 7;
    const QUOTA: u64 = 1_000_000;
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, |c| c.with_node_quota(FULL, QUOTA))?;
    let peers = peer_map(&net)?;
    let full_peer = net.peer_id(FULL)?;
    ensure!(
        net.status(FULL)?.quota_bytes == QUOTA,
        "node {FULL} does not run with the quota"
    );

    // Put until node FULL refuses a shard (bounded); every put must succeed.
    let mut files = Vec::new();
    for n in 0..12 {
        let input = make_file(scratch, 3 * MIB, 900 + n)?;
        let id = put_in(&net.home(0), &input, &[], scratch)?;
        files.push((id, input));
        if counter(&net, FULL, "datamesh_shards_refused_total")? > 0 {
            break;
        }
    }
    ensure!(
        counter(&net, FULL, "datamesh_shards_refused_total")? > 0,
        "node {FULL} never refused a shard in {} puts",
        files.len()
    );
    // One more put, with the node full: placed on six others.
    let input = make_file(scratch, 3 * MIB, 999)?;
    let id = put_in(&net.home(0), &input, &[], scratch)?;
    files.push((id, input));
    ensure!(net.is_running(FULL), "the full node exited");
    let status = net.status(FULL)?;
    ensure!(
        status.bytes_stored <= QUOTA,
        "node {FULL} stores {} bytes over its quota of {QUOTA}",
        status.bytes_stored
    );
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.lines()
            .any(|l| l.contains("peer is full") && l.contains(&full_peer)),
        "the putter's log does not say node {FULL} ({full_peer}) is full"
    );
    note!(
        "case 9: {} puts; node {FULL} holds {} bytes, quota {QUOTA}",
        files.len(),
        status.bytes_stored
    );

    // Every file is at full health: the refused shards went to other peers.
    let mut held = None;
    for (id, _) in &files {
        let report = check(&net, 0, id, &[], scratch)?;
        ensure!(state(&report) == "healthy", "{report}");
        let map = holders(&report, &peers)?;
        if held.is_none()
            && let Some(s) = (0..map.len()).find(|&s| map[s].iter().flatten().any(|&n| n == FULL))
        {
            held = Some((id.clone(), s, stripe_nodes(&map, s)));
        }
    }
    // Reads still served: kill two other holders of a stripe the full node holds, so
    // that the stripe can only be read with its shard.
    let (id, s, nodes) = held.context("the full node holds no shard at all")?;
    let input = &files.iter().find(|(f, _)| *f == id).context("lost file")?.1;
    let victims: Vec<usize> = nodes
        .iter()
        .copied()
        .filter(|&n| n != 0 && n != FULL)
        .take(2)
        .collect();
    for &v in &victims {
        net.kill(v)?;
    }
    let served = counter(&net, FULL, "datamesh_shards_served_total")?;
    get_same(
        &net,
        0,
        &id,
        input,
        scratch,
        &format!("stripe {s} needs the full node, {victims:?} killed"),
    )?;
    ensure!(
        counter(&net, FULL, "datamesh_shards_served_total")? > served,
        "the full node served nothing"
    );
    restart_all(&mut net)
}

// ------------------------------------------------------------------- case 10

/// Case 10: a partition of ten nodes into A (nodes 0-6) and B (7-9). There is no
/// kernel-level partition here (no iptables/nft; every node dials from 127.0.0.1):
/// [`Testnet::partition`] makes each node block the other group's peers through the
/// test-fault hook (`datamesh debug block-peers`, libp2p's block list), so connections
/// between the groups are closed, refused and never dialled. During the partition, a put
/// through A lands on six distinct peers of A, a put through B (three nodes) fails
/// cleanly and never reports success. After healing, every file (one put before the
/// partition, two during it) is read byte-identical through every node.
#[test]
fn partition_then_heal() -> anyhow::Result<()> {
    const ALL: usize = 10;
    const A: [usize; 7] = [0, 1, 2, 3, 4, 5, 6];
    const B: [usize; 3] = [7, 8, 9];
    /// Routing tables re-form after healing within this long (retries of failed gets).
    const HEAL_DEADLINE: Duration = Duration::from_secs(60);
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut config = Config::new(BIN, scratch.join("net"), ALL).with_kdf(Kdf::FAST);
    for i in 0..ALL {
        config = config.with_node_env(i, "DATAMESH_TEST_FAULTS", "1");
    }
    let net = Testnet::up_with(config).context("cannot start the testnet")?;
    let started = Instant::now();
    let peers = peer_map(&net)?;
    // Every file is shared with every node, so that every node can read it.
    let keys: Vec<String> = (0..ALL)
        .map(|i| public_key(&net, i, scratch))
        .collect::<anyhow::Result<_>>()?;

    let mut files: Vec<(String, PathBuf, &str)> = Vec::new();
    let input = make_file(scratch, 3 * MIB / 2, 1000)?;
    let id = put_in(&net.home(8), &input, &keys, scratch)?;
    files.push((id, input, "put through B before the partition"));

    net.partition(&[&A, &B])?;
    note!("case 10: partitioned at {:?}", started.elapsed());
    for (n, via) in [0usize, 6].into_iter().enumerate() {
        let input = make_file(scratch, 3 * MIB / 2, 1010 + n as u64)?;
        let id = put_in(&net.home(via), &input, &keys, scratch)?;
        let map = holders(&check(&net, via, &id, &[], scratch)?, &peers)?;
        for s in 0..map.len() {
            let nodes = stripe_nodes(&map, s);
            ensure!(
                nodes.len() == 6 && nodes.iter().all(|n| A.contains(n)),
                "put through node {via} during the partition: stripe {s} on nodes {nodes:?}"
            );
        }
        files.push((id, input, "put through A during the partition"));
    }
    for (n, via) in B.into_iter().enumerate() {
        let input = make_file(scratch, 3 * MIB / 2, 1020 + n as u64)?;
        let mut cmd = net.cli(via);
        cmd.arg("put").arg(&input);
        let outcome = Running::spawn(cmd, scratch, FAIL_FAST_DEADLINE)?.finish()?;
        ensure!(
            outcome.stdout.is_empty(),
            "put through node {via} of B printed {:?}",
            String::from_utf8_lossy(&outcome.stdout)
        );
        let line = outcome.fails_with(EXIT_NETWORK, &format!("put through node {via} of B"))?;
        ensure!(
            line.contains("distinct peers"),
            "put through node {via} of B: {line}"
        );
        note!("case 10: put through node {via} of B: {line}");
    }

    // No connection crosses the partition, after all those puts (bounded wait: a
    // blocked peer's connections are closed asynchronously); the routing tables still
    // list the other group.
    let wait = Instant::now() + Duration::from_secs(10);
    for via in 0..ALL {
        let other: &[usize] = if A.contains(&via) { &B } else { &A };
        loop {
            let (connected, known) = other_group_peers(&net, via, other, &peers, scratch)?;
            if connected.is_empty() {
                ensure!(
                    !known.is_empty(),
                    "node {via} forgot the other group's peers"
                );
                break;
            }
            ensure!(
                Instant::now() < wait,
                "node {via} is still connected to {connected:?} across the partition"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    net.heal()?;
    note!("case 10: healed at {:?}", started.elapsed());
    // The routing tables kept the other group's peers; the first operations across the
    // old boundary redial them. Failed gets are retried until HEAL_DEADLINE; a get that
    // succeeds must be byte-identical at once.
    let deadline = Instant::now() + HEAL_DEADLINE;
    let mut retries = 0;
    for (id, input, what) in &files {
        for via in 0..ALL {
            let out = scratch.join(format!("out-{}", unique()));
            loop {
                let outcome = run(get_cmd(&net, via, id, &out), scratch)?;
                if outcome.code == Some(0) {
                    assert_same_file(input, &out)
                        .with_context(|| format!("{what}, read through node {via}"))?;
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{what}: get through node {via} still fails {HEAL_DEADLINE:?} after healing: {}",
                    outcome.stderr
                );
                retries += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            fs::remove_file(&out)?;
        }
    }
    // The shards put during the partition are where the putter said: on A.
    for (id, _, _) in &files[1..] {
        let map = holders(&check(&net, 9, id, &[], scratch)?, &peers)?;
        for s in 0..map.len() {
            let nodes = stripe_nodes(&map, s);
            ensure!(
                nodes.len() == 6 && nodes.iter().all(|n| A.contains(n)),
                "after healing, check through node 9: stripe {s} on nodes {nodes:?}"
            );
        }
    }
    note!(
        "case 10: {} files read through all {ALL} nodes after healing ({retries} retried gets), done at {:?}",
        files.len(),
        started.elapsed()
    );
    Ok(())
}

/// Of the nodes `other`, those node `via` is connected to and those in its routing table
/// (`datamesh --json peers`).
fn other_group_peers(
    net: &Testnet,
    via: usize,
    other: &[usize],
    peers: &BTreeMap<String, usize>,
    scratch: &Path,
) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let mut cmd = net.cli(via);
    cmd.args(["--json", "peers"]);
    let out = run(cmd, scratch)?.ok(&format!("peers of node {via}"))?;
    let list: Value = serde_json::from_slice(&out).context("peers: not JSON")?;
    let (mut connected, mut known) = (Vec::new(), Vec::new());
    for p in list.as_array().context("peers: not a list")? {
        let Some(&n) = p["peer_id"].as_str().and_then(|id| peers.get(id)) else {
            continue;
        };
        if other.contains(&n) {
            known.push(n);
            if p["connected"].as_bool() == Some(true) {
                connected.push(n);
            }
        }
    }
    Ok((connected, known))
}
