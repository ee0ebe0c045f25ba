//! End-to-end tests: real `datamesh node run` processes on 127.0.0.1, started and killed
//! by `datamesh-testnet`, driven only through the `datamesh` binary (args, files, exit
//! codes, stderr).
//!
//! A test of the `datamesh-e2e` package (tests/Cargo.toml); the binary under test is the
//! `datamesh` of the same cargo build (`support::bin`). The tests run one at a time (each
//! starts six node processes; in parallel on a small machine they would only contend);
//! every process is bounded by a deadline and killed on drop, also when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, run_within, serial};
use datamesh_testnet::{Config, Kdf, Testnet, write_password_file};

mod support;
use support::{bin, datamesh};

/// The fewest nodes a put accepts (6 shards on 6 distinct peers).
const NODES: usize = 6;
/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

/// A testnet of `nodes` nodes in `dir/net`, with cheap KDF parameters.
fn testnet(dir: &Path, nodes: usize) -> anyhow::Result<Testnet> {
    Testnet::up_with(Config::new(bin()?, dir.join("net"), nodes).with_kdf(Kdf::FAST))
        .context("cannot start the testnet")
}

/// Runs `cmd` to completion within [`COMMAND_DEADLINE`] (killed after it).
fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

/// `datamesh put PATH` on node `i`; the id.
fn put(net: &Testnet, i: usize, path: &Path, scratch: &Path) -> anyhow::Result<String> {
    put_to(net, i, path, &[], scratch)
}

/// `datamesh put PATH --to KEY...` on node `i`; the id.
fn put_to(
    net: &Testnet,
    i: usize,
    path: &Path,
    to: &[String],
    scratch: &Path,
) -> anyhow::Result<String> {
    let mut cmd = net.cli(i);
    cmd.arg("put").arg(path);
    for key in to {
        cmd.args(["--to", key]);
    }
    let stdout = run(cmd, scratch)?.ok(&format!("put {} on node {i}", path.display()))?;
    let id = String::from_utf8(stdout)?.trim().to_string();
    ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
    Ok(id)
}

/// `datamesh get ID -o OUT` on node `i`.
fn get(net: &Testnet, i: usize, id: &str, out: &Path, scratch: &Path) -> anyhow::Result<()> {
    let mut cmd = net.cli(i);
    cmd.args(["get", id, "-o"]).arg(out);
    run(cmd, scratch)?.ok(&format!("get {id} on node {i}"))?;
    Ok(())
}

/// The file-encryption public key of node `i` (`keys export-public`), to share with it.
fn public_key(net: &Testnet, i: usize, scratch: &Path) -> anyhow::Result<String> {
    let mut export = net.cli(i);
    export
        .args(["keys", "export-public", "--password-file"])
        .arg(net.password_file(i));
    let out = run(export, scratch)?.ok(&format!("export-public on node {i}"))?;
    Ok(String::from_utf8(out)?.trim().to_string())
}

/// Put and get of the interesting sizes around the 1 MiB segment, and large files of
/// many stripes; each comes back byte-identical. The files are also shared (`--to`) with
/// node 4, which finds and opens them from the id alone; node 5, not shared with, finds
/// the file but cannot open it (exit 2).
#[test]
fn sizes_round_trip_byte_identical() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch, NODES)?;
    let node4_key = public_key(&net, 4, scratch)?;
    let sizes = [0, 1, MIB - 1, MIB, MIB + 1, 20 * MIB, 37 * MIB];
    for (n, &len) in sizes.iter().enumerate() {
        let input = make_file(scratch, len, n as u64)?;
        let id = put_to(&net, 0, &input, std::slice::from_ref(&node4_key), scratch)?;
        let output = scratch.join(format!("out-{len}"));
        get(&net, 0, &id, &output, scratch)?;
        assert_same_file(&input, &output).with_context(|| format!("size {len}"))?;
        if len == MIB + 1 {
            let shared = scratch.join(format!("out-{len}-node-4"));
            get(&net, 4, &id, &shared, scratch)?;
            assert_same_file(&input, &shared).context("get through node 4")?;
            let not_shared = scratch.join(format!("out-{len}-node-5"));
            let mut cmd = net.cli(5);
            cmd.args(["get", &id, "-o"]).arg(&not_shared);
            run(cmd, scratch)?.fails_with(2, "get through node 5, not shared with")?;
            ensure!(!not_shared.exists(), "a refused get left a file");
        }
        fs::remove_file(&input)?;
        fs::remove_file(&output)?;
    }
    Ok(())
}

/// `datamesh` runs the API commands in its own process (it links no node, keystore or
/// TPM library): alone in a folder, without `datamesh-full` beside it, it puts, gets and
/// lists; a command it hands to `datamesh-full` (`keys list`) fails there with one line
/// that names the missing program.
#[test]
fn api_commands_need_only_datamesh_and_the_others_name_datamesh_full() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch, NODES)?;
    let alone = scratch.join("alone");
    fs::create_dir(&alone)?;
    let client = alone.join("datamesh");
    fs::copy(bin()?, &client)?;
    let cli = || datamesh_testnet::run::datamesh(&client, &net.home(0));

    let input = make_file(scratch, MIB + 1, 7)?;
    let mut put = cli();
    put.arg("put").arg(&input);
    let id = String::from_utf8(run(put, scratch)?.ok("put through datamesh alone")?)?;
    let id = id.trim();
    ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
    let output = scratch.join("out");
    let mut get = cli();
    get.args(["get", id, "-o"]).arg(&output);
    run(get, scratch)?.ok("get through datamesh alone")?;
    assert_same_file(&input, &output)?;
    let mut ls = cli();
    ls.args(["--json", "ls"]);
    let listed = String::from_utf8(run(ls, scratch)?.ok("ls through datamesh alone")?)?;
    ensure!(listed.contains(id), "ls does not list {id}: {listed}");

    let mut keys = cli();
    keys.args(["keys", "list"]);
    let stderr = run(keys, scratch)?.fails_with(1, "keys list without datamesh-full")?;
    ensure!(
        stderr.contains("datamesh-full is missing"),
        "keys list without datamesh-full: {stderr}"
    );
    Ok(())
}

/// A storage node restarted (SIGTERM, start again) keeps serving its shards, and the
/// putting node itself, restarted on new ports, finds the file again.
#[test]
fn get_after_restarts_is_byte_identical() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let mut net = testnet(dir.path(), NODES)?;
    let input = make_file(dir.path(), 3 * MIB + 12345, 7)?;
    let id = put(&net, 0, &input, dir.path())?;

    net.stop(3)?;
    net.start(3)?;
    let out = dir.path().join("after-storage-restart");
    get(&net, 0, &id, &out, dir.path())?;
    assert_same_file(&input, &out).context("after restarting node 3")?;

    net.stop(0)?;
    net.start(0)?;
    let out = dir.path().join("after-putter-restart");
    get(&net, 0, &id, &out, dir.path())?;
    assert_same_file(&input, &out).context("after restarting node 0 (the putter)")?;
    Ok(())
}

/// `node run` starts itself again with one glibc arena (`GLIBC_TUNABLES`): the process the
/// testnet started (same pid) runs with it, serves a put and a get; a node given its own
/// arena count keeps that.
#[test]
fn nodes_run_with_one_allocator_arena_unless_told_otherwise() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let config = Config::new(bin()?, dir.path().join("net"), NODES)
        .with_kdf(Kdf::FAST)
        .with_node_env(5, "GLIBC_TUNABLES", "glibc.malloc.arena_max=2");
    let net = Testnet::up_with(config).context("cannot start the testnet")?;
    let tunables = |i: usize| -> anyhow::Result<Vec<String>> {
        let pid = net
            .pid(i)
            .with_context(|| format!("node {i} is not running"))?;
        let environ = fs::read(format!("/proc/{pid}/environ"))?;
        Ok(environ
            .split(|&b| b == 0)
            .filter_map(|v| v.strip_prefix(b"GLIBC_TUNABLES="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect())
    };
    for i in 0..5 {
        assert_eq!(tunables(i)?, ["glibc.malloc.arena_max=1"], "node {i}");
    }
    assert_eq!(tunables(5)?, ["glibc.malloc.arena_max=2"], "node 5");
    let input = make_file(dir.path(), 2 * MIB + 7, 13)?;
    let id = put(&net, 0, &input, dir.path())?;
    let out = dir.path().join("copy");
    get(&net, 0, &id, &out, dir.path())?;
    assert_same_file(&input, &out)?;
    Ok(())
}

/// With two of the six nodes SIGKILLed, each stripe still has 4 of its 6 shards: the
/// file comes back whole, without waiting forever on the dead peers.
#[test]
fn get_survives_two_killed_nodes() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let mut net = testnet(dir.path(), NODES)?;
    let input = make_file(dir.path(), 5 * MIB + 3, 11)?;
    let id = put(&net, 0, &input, dir.path())?;
    net.kill(2)?;
    net.kill(5)?;
    let out = dir.path().join("after-kills");
    get(&net, 0, &id, &out, dir.path())?;
    assert_same_file(&input, &out).context("with nodes 2 and 5 killed")?;
    Ok(())
}

/// Every user error gives one `error: ` line on stderr and its documented exit code.
#[test]
fn user_errors_have_one_line_and_their_exit_code() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch, NODES)?;
    let input = make_file(scratch, 1000, 3)?;
    let id = put(&net, 0, &input, scratch)?;

    // Unknown id: well formed (valid checksum) but never stored -> 3, nothing written.
    let unknown = datamesh_core::FileId::of_manifest(b"never stored").to_string();
    let out = scratch.join("unknown-out");
    let mut cmd = net.cli(0);
    cmd.args(["get", &unknown, "-o"]).arg(&out);
    run(cmd, scratch)?.fails_with(3, "get of an unknown id")?;
    ensure!(!out.exists(), "a failed get left {}", out.display());

    // Mistyped id: one character changed, the checksum catches it -> 1.
    let mut typo: Vec<char> = id.chars().collect();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let mut cmd = net.cli(0);
    cmd.args(["get", &typo, "-o"]).arg(&out);
    let stderr = run(cmd, scratch)?.fails_with(1, "get of a mistyped id")?;
    ensure!(stderr.contains("not a valid file id"), "{stderr}");

    // Existing output file without --force -> 1, the file untouched.
    let existing = scratch.join("existing");
    fs::write(&existing, b"precious")?;
    let mut cmd = net.cli(0);
    cmd.args(["get", &id, "-o"]).arg(&existing);
    let stderr = run(cmd, scratch)?.fails_with(1, "get onto an existing file")?;
    ensure!(stderr.contains("--force"), "{stderr}");
    ensure!(
        fs::read(&existing)? == b"precious",
        "the existing file changed"
    );

    // A home that exists but whose node is not running -> 4.
    let idle = scratch.join("idle-home");
    let password = scratch.join("idle-password");
    write_password_file(&password, "a long and random enough test password 8c1f")?;
    let mut cmd = datamesh(&idle);
    cmd.arg("init")
        .arg("--password-file")
        .arg(&password)
        .args(Kdf::FAST.args());
    run(cmd, scratch)?.ok("init of the idle home")?;
    let mut cmd = datamesh(&idle);
    cmd.arg("put").arg(&input);
    let stderr = run(cmd, scratch)?.fails_with(4, "put with no node running")?;
    ensure!(stderr.contains("node run"), "{stderr}");

    // Wrong password for `node run` -> 2 (and no node starts).
    let wrong = scratch.join("wrong-password");
    write_password_file(&wrong, "not the password of this home at all 17")?;
    let mut cmd = datamesh(&idle);
    cmd.args(["node", "run", "--password-file"]).arg(&wrong);
    run(cmd, scratch)?.fails_with(2, "node run with a wrong password")?;
    ensure!(
        !idle.join("node.json").exists(),
        "a node started with a wrong password"
    );

    // Missing home -> 3.
    let missing = scratch.join("no-such-home");
    let mut cmd = datamesh(&missing);
    cmd.args(["keys", "list", "--password-file"]).arg(&password);
    let stderr = run(cmd, scratch)?.fails_with(3, "keys list in a missing home")?;
    ensure!(stderr.contains("init"), "{stderr}");
    Ok(())
}

/// Every node's `(shards, bytes_stored)` (`datamesh --json status`).
fn holdings(net: &Testnet, scratch: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    (0..net.len())
        .map(|i| {
            let mut cmd = net.cli(i);
            cmd.args(["--json", "status"]);
            let out = run(cmd, scratch)?.ok(&format!("status of node {i}"))?;
            let status = datamesh_testnet::parse_status(&out)?;
            Ok((status.shards, status.bytes_stored))
        })
        .collect()
}

/// The ids `datamesh --json ls` lists on node `i`.
fn listed(net: &Testnet, i: usize, scratch: &Path) -> anyhow::Result<Vec<String>> {
    let mut cmd = net.cli(i);
    cmd.args(["--json", "ls"]);
    let files: serde_json::Value =
        serde_json::from_slice(&run(cmd, scratch)?.ok(&format!("ls on node {i}"))?)?;
    Ok(files
        .as_array()
        .context("ls --json is not an array")?
        .iter()
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect())
}

/// `datamesh rm ID` on node `i`, run to completion.
fn rm(net: &Testnet, i: usize, id: &str, scratch: &Path) -> anyhow::Result<Outcome> {
    let mut cmd = net.cli(i);
    cmd.args(["rm", id]);
    run(cmd, scratch)
}

/// `datamesh rm` through the binary (issue 18's bad input): an unknown well-formed id
/// exits 3 (not found) and malformed ids exit 1, each with one `error:` line and no
/// panic; node 1, which the file is shared with (it reads it), cannot remove node 0's
/// file: exit 3, one line saying only the node that put it can. None of them frees a
/// byte on any node, and the file still reads back byte-identical. The owner's `rm`
/// exits 0, `ls` forgets the file, a get of it exits 3 in one line, and every node's
/// shard count and stored bytes return to exactly what they were before the put.
#[test]
fn rm_refuses_bad_or_foreign_ids_and_the_owners_rm_frees_every_node() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = testnet(scratch, NODES)?;
    let node1_key = public_key(&net, 1, scratch)?;
    let before = holdings(&net, scratch)?;
    let input = make_file(scratch, 2 * MIB + 4321, 18)?;
    let id = put_to(&net, 0, &input, std::slice::from_ref(&node1_key), scratch)?;
    let with_file = holdings(&net, scratch)?;
    // Six nodes, six shards per stripe on six distinct peers: every node holds some.
    for i in 0..NODES {
        ensure!(
            with_file[i].0 > before[i].0 && with_file[i].1 > before[i].1,
            "node {i} holds nothing of the file: {before:?} -> {with_file:?}"
        );
    }
    let unchanged = |what: &str| -> anyhow::Result<()> {
        let now = holdings(&net, scratch)?;
        ensure!(
            now == with_file,
            "{what} changed what the nodes hold: {with_file:?} -> {now:?}"
        );
        Ok(())
    };

    // (a) A well-formed id (valid checksum) nobody ever put: not found, exit 3.
    let unknown = datamesh_core::FileId::of_manifest(b"never put anywhere").to_string();
    let line = rm(&net, 0, &unknown, scratch)?.fails_with(3, "rm of an unknown id")?;
    ensure!(
        line.contains(&unknown) && line.contains("not found"),
        "{line}"
    );
    unchanged("rm of an unknown id")?;

    // (b) Malformed ids: usage, exit 1, one line each (a panic would exit 101).
    let mut typo: Vec<char> = id.chars().collect();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == 'q' { 'p' } else { 'q' };
    let typo: String = typo.into_iter().collect();
    let long = format!("dm1{}", "q".repeat(10_000));
    for bad in [
        typo.as_str(),
        "dm1",
        "not-an-id",
        &id[..id.len() - 1],
        "dm1\u{e9}\u{1f600}",
        long.as_str(),
    ] {
        let line = rm(&net, 0, bad, scratch)?
            .fails_with(1, &format!("rm of the malformed id {bad:.40}"))?;
        ensure!(line.contains("not a valid file id"), "{line:.300}");
    }
    unchanged("rm of malformed ids")?;

    // (c) Someone else's file: node 1 can read it (shared with it) but did not put it.
    let shared = scratch.join("through-node-1");
    get(&net, 1, &id, &shared, scratch)?;
    assert_same_file(&input, &shared).context("get through node 1")?;
    let line = rm(&net, 1, &id, scratch)?.fails_with(3, "rm of node 0's file on node 1")?;
    ensure!(
        line.contains(&id) && line.contains("only the node that put a file can remove it"),
        "{line}"
    );
    unchanged("node 1's rm of node 0's file")?;
    ensure!(
        listed(&net, 0, scratch)?.contains(&id),
        "node 0 forgot the file"
    );
    let kept = scratch.join("kept");
    get(&net, 0, &id, &kept, scratch)?;
    assert_same_file(&input, &kept).context("after the refused rm")?;

    // (d) The owner's rm.
    let mut cmd = net.cli(0);
    cmd.args(["--json", "rm", &id]);
    let report: serde_json::Value =
        serde_json::from_slice(&run(cmd, scratch)?.ok("the owner's rm")?)?;
    ensure!(report["id"].as_str() == Some(id.as_str()), "{report}");
    let (asked, confirmed) = (
        report["asked"].as_u64().unwrap_or_default(),
        report["confirmed"].as_u64().unwrap_or_default(),
    );
    ensure!(
        asked >= NODES as u64 && confirmed == asked && report["failed"] == 0,
        "every node holds part of the file and is up: {report}"
    );
    ensure!(
        !listed(&net, 0, scratch)?.contains(&id),
        "ls still lists it"
    );
    // The holders drop it as they handle the removal; wait (bounded) for every node.
    let deadline = Instant::now() + COMMAND_DEADLINE;
    let mut now = holdings(&net, scratch)?;
    for _ in 0..600 {
        if now == before || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        now = holdings(&net, scratch)?;
    }
    ensure!(
        now == before,
        "after the owner's rm: {now:?}, before the put: {before:?} (with it: {with_file:?})"
    );
    let gone = scratch.join("gone");
    let mut cmd = net.cli(0);
    cmd.args(["get", &id, "-o"]).arg(&gone);
    let line = run(cmd, scratch)?.fails_with(3, "get after the rm")?;
    ensure!(line.contains("not found"), "{line}");
    ensure!(!gone.exists(), "a failed get left {}", gone.display());
    let line = rm(&net, 0, &id, scratch)?.fails_with(3, "a second rm of the file")?;
    ensure!(line.contains(&id), "{line}");
    Ok(())
}

/// Kills whatever nodes still run in a `datamesh testnet` folder: the CLI leaves them
/// running on purpose, so a failing test must not.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = datamesh_testnet::dashboard::stop(&self.0);
        if let Ok(mut net) = bin().and_then(|bin| Ok(Testnet::attach(bin, &self.0)?)) {
            for i in 0..net.len() {
                if net.is_running(i) {
                    let _ = net.kill(i);
                }
            }
        }
    }
}

/// `datamesh testnet demo` (the README's command) works and leaves the nodes running
/// after the command exits; `status`, `start`, `up` on a running testnet, `down` and
/// `destroy` then manage them from other invocations.
#[test]
fn testnet_command_demo_and_lifecycle() -> anyhow::Result<()> {
    let _serial = serial();
    bin()?; // fresh
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net_dir = scratch.join("tn");
    let _guard = KillOnDrop(net_dir.clone());
    let testnet_cmd = |args: &[&str]| {
        let mut cmd = datamesh(&scratch.join("unused-home"));
        cmd.arg("testnet").args(args).arg("--dir").arg(&net_dir);
        cmd
    };
    let demo = run(testnet_cmd(&["demo"]), scratch)?;
    let stderr = demo.stderr.clone();
    demo.ok("testnet demo")?;
    ensure!(stderr.contains("the copy is identical"), "{stderr}");
    ensure!(
        stderr.contains("dashboard of node 0: http://127.0.0.1:"),
        "the demo names node 0's dashboard: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    let running = datamesh_testnet::dashboard::running(&net_dir)?
        .context("the demo left no testnet dashboard running")?;
    ensure!(
        running.url.starts_with("http://127.0.0.1:")
            && running.url.ends_with("/testnet")
            && last.starts_with("dashboard of the testnet")
            && last.contains(&running.url),
        "the demo's last line names the testnet's dashboard ({}): {stderr}",
        running.url
    );

    let up_nodes = |scratch: &Path| -> anyhow::Result<Vec<bool>> {
        let json = run(testnet_cmd(&["--json", "status"]), scratch)?.ok("testnet status")?;
        let rows: serde_json::Value = serde_json::from_slice(&json)?;
        Ok(rows
            .as_array()
            .context("status --json is not an array")?
            .iter()
            .map(|r| r["up"].as_bool().unwrap_or(false))
            .collect())
    };
    let up = up_nodes(scratch)?;
    ensure!(up.len() == 8, "demo made {} nodes", up.len());
    ensure!(
        up.iter().filter(|u| **u).count() == 6,
        "after the demo, expected 6 of 8 nodes up: {up:?}"
    );
    let down: Vec<usize> = (0..up.len()).filter(|&i| !up[i]).collect();
    for i in &down {
        run(testnet_cmd(&["start", &i.to_string()]), scratch)?.ok("testnet start")?;
    }
    ensure!(
        up_nodes(scratch)?.iter().all(|u| *u),
        "not every node is up after start"
    );
    run(testnet_cmd(&["up"]), scratch)?.fails_with(1, "testnet up on a running testnet")?;
    run(testnet_cmd(&["kill", "9"]), scratch)?.fails_with(3, "testnet kill of node 9")?;

    run(testnet_cmd(&["down"]), scratch)?.ok("testnet down")?;
    ensure!(
        up_nodes(scratch)?.iter().all(|u| !*u),
        "a node still runs after down"
    );
    ensure!(
        datamesh_testnet::dashboard::running(&net_dir)?.is_none(),
        "the dashboard still runs after down"
    );
    ensure!(net_dir.join("node-0").is_dir(), "down deleted the homes");
    run(testnet_cmd(&["destroy"]), scratch)?.ok("testnet destroy")?;
    ensure!(!net_dir.exists(), "destroy left {}", net_dir.display());
    Ok(())
}

/// A rewrap that reaches fewer than three holders of the key envelope fails with exit 4
/// and one error line saying how many it reached (the data key lives only in the
/// envelope). It used to print "on 0 peers" and exit 0.
#[test]
fn a_rewrap_that_reaches_too_few_holders_exits_non_zero() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, NODES)?;
    let input = make_file(scratch, 1000, 5)?;
    let id = put(&net, 0, &input, scratch)?;
    let mut cmd = net.cli(0);
    cmd.args(["keys", "rewrap", &id]);
    run(cmd, scratch)?.ok("rewrap with every node up")?;
    // One other node left: at most one remote holder of the manifest.
    for i in 1..NODES - 1 {
        net.stop(i)?;
    }
    let mut cmd = net.cli(0);
    cmd.args(["keys", "rewrap", &id]);
    let stderr = run(cmd, scratch)?.fails_with(4, "rewrap with one other node up")?;
    ensure!(stderr.contains("reached only"), "{stderr}");
    Ok(())
}

/// `keys export-public NAME` on node `i`.
fn export_public(net: &Testnet, i: usize, name: &str, scratch: &Path) -> anyhow::Result<String> {
    let mut cmd = net.cli(i);
    cmd.args(["keys", "export-public", name, "--password-file"])
        .arg(net.password_file(i));
    let out = run(cmd, scratch)?.ok(&format!("export-public {name} on node {i}"))?;
    Ok(String::from_utf8(out)?.trim().to_string())
}

/// `keys show NAME --json` on node `i`: each version and its status.
fn key_statuses(
    net: &Testnet,
    i: usize,
    name: &str,
    scratch: &Path,
) -> anyhow::Result<Vec<(u64, String)>> {
    let mut cmd = net.cli(i);
    cmd.args(["keys", "show", name, "--json", "--password-file"])
        .arg(net.password_file(i));
    let versions: serde_json::Value =
        serde_json::from_slice(&run(cmd, scratch)?.ok(&format!("keys show {name}"))?)?;
    Ok(versions
        .as_array()
        .context("keys show --json is not an array")?
        .iter()
        .map(|k| {
            (
                k["version"].as_u64().unwrap_or_default(),
                k["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Hybrid recipients end to end: a file put on node 0 `--to` node 4's hybrid recipient
/// opens on node 4 and not on node 5; with node 0 restarted under
/// `DATAMESH_SECURITY_RECIPIENTS=pq-required`, a put or share to a classical recipient is
/// refused in one line (nothing stored), a hybrid one still works, and `keys rewrap
/// --all` moves the files to the hybrid key (envelopes only).
#[test]
fn hybrid_recipients_and_the_pq_required_policy() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net = testnet(scratch, NODES)?;
    let hybrid4 = export_public(&net, 4, "file-encryption-hybrid", scratch)?;
    ensure!(hybrid4.starts_with("dmpq1"), "{hybrid4}");
    let classical5 = export_public(&net, 5, "file-encryption", scratch)?;
    ensure!(classical5.len() == 66, "{classical5}");

    let input = make_file(scratch, 300_000, 9)?;
    let id = put_to(&net, 0, &input, std::slice::from_ref(&hybrid4), scratch)?;
    let out4 = scratch.join("out4");
    get(&net, 4, &id, &out4, scratch)?;
    assert_same_file(&input, &out4)?;
    let mut cmd = net.cli(5);
    cmd.args(["get", &id, "-o"]).arg(scratch.join("out5"));
    run(cmd, scratch)?.fails_with(2, "get on node 5, not shared with")?;

    net.set_node_env(0, "DATAMESH_SECURITY_RECIPIENTS", Some("pq-required"))?;
    net.stop(0)?;
    net.start(0)?;
    net.wait_ready()?;
    // A small file too: it is sent with no recipient check first (the node reads it
    // whole, then refuses it in its answer).
    let small = make_file(scratch, 1_000, 10)?;
    for args in [
        vec!["put".to_string(), input.display().to_string()],
        vec!["put".to_string(), small.display().to_string()],
        vec!["share".to_string(), id.clone()],
    ] {
        let mut cmd = net.cli(0);
        cmd.args(&args).args(["--to", &classical5]);
        let outcome = run(cmd, scratch)?;
        ensure!(
            outcome.code.is_some_and(|c| c != 0),
            "{args:?} to a classical key under pq-required: exit {:?}",
            outcome.code
        );
        ensure!(
            outcome.stderr.trim().lines().count() == 1 && outcome.stderr.contains("pq-required"),
            "{}",
            outcome.stderr
        );
    }
    let again = put_to(&net, 0, &input, std::slice::from_ref(&hybrid4), scratch)?;
    let mut cmd = net.cli(0);
    cmd.args(["keys", "rewrap", "--all"]);
    let report = String::from_utf8(run(cmd, scratch)?.ok("keys rewrap --all under pq-required")?)?;
    ensure!(
        report.contains(&id) && report.contains(&again) && report.contains("no shard moved"),
        "{report}"
    );
    let out4 = scratch.join("out4-again");
    get(&net, 4, &id, &out4, scratch)?;
    assert_same_file(&input, &out4)?;

    // The hybrid key compromised: revoked, every file re-wrapped to a fresh hybrid key,
    // the old one destroyed; the files still open on node 0 and node 4.
    let mut cmd = net.cli(0);
    cmd.args([
        "keys",
        "compromised",
        "file-encryption-hybrid",
        "1",
        "--password-file",
    ])
    .arg(net.password_file(0));
    run(cmd, scratch)?.ok("keys compromised file-encryption-hybrid 1")?;
    let statuses = key_statuses(&net, 0, "file-encryption-hybrid", scratch)?;
    ensure!(
        statuses == [(1, "destroyed".to_string()), (2, "active".to_string())],
        "{statuses:?}"
    );
    let out0 = scratch.join("out0-after-incident");
    get(&net, 0, &again, &out0, scratch)?;
    assert_same_file(&input, &out0)?;
    let out4 = scratch.join("out4-after-incident");
    get(&net, 4, &id, &out4, scratch)?;
    assert_same_file(&input, &out4)?;
    Ok(())
}

/// The fips profile end to end: six homes made by `datamesh init --security-profile
/// fips` (a P-256 file key, a PBKDF2-HMAC-SHA256 password slot at OWASP's count), put and
/// get byte-identical, `keys list` and `check` name P-256 / PBKDF2 / envelope v4; a file
/// put `--to` node 4's P-256 recipient opens there and not on node 5; a hybrid or
/// classical recipient is refused in one line (put, share), and so is a rewrap of a file
/// that an earlier share gave a hybrid recipient; `keys compromised` replaces the P-256
/// key (revoke, re-wrap to a fresh one, destroy) and the files still open.
#[test]
fn a_fips_profile_network_round_trips_and_refuses_other_recipients() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net_dir = scratch.join("net");
    for i in 0..NODES {
        let home = net_dir.join(format!("node-{i}"));
        fs::create_dir_all(&home)?;
        let password = home.join("password");
        write_password_file(&password, &format!("fips node {i} passphrase, long enough"))?;
        let mut cmd = datamesh(&home);
        cmd.args(["init", "--security-profile", "fips", "--password-file"])
            .arg(&password);
        run(cmd, scratch)?.ok(&format!("init --security-profile fips of node {i}"))?;
    }
    let mut net = Testnet::up_with(Config::new(bin()?, net_dir, NODES))
        .context("cannot start the fips testnet")?;

    let mut cmd = net.cli(0);
    cmd.args(["keys", "list", "--json", "--password-file"])
        .arg(net.password_file(0));
    let keys: serde_json::Value = serde_json::from_slice(&run(cmd, scratch)?.ok("keys list")?)?;
    let p256 = keys
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "file-encryption-p256"))
        .context("no P-256 key in a fips home")?;
    ensure!(p256["wraps_with"] == "ecies-p256", "{p256}");
    ensure!(
        p256["protected_by"][0]["kdf"]["algorithm"] == "pbkdf2-sha256",
        "{p256}"
    );

    let input = make_file(scratch, 300_000, 11)?;
    let id = put(&net, 0, &input, scratch)?;
    let out0 = scratch.join("out0");
    get(&net, 0, &id, &out0, scratch)?;
    assert_same_file(&input, &out0)?;
    let mut cmd = net.cli(0);
    cmd.args(["check", &id]);
    let text = String::from_utf8(run(cmd, scratch)?.ok("check")?)?;
    ensure!(
        text.contains("key envelope v4") && text.contains("p256") && text.contains("ecies-p256"),
        "{text}"
    );
    let mut cmd = net.cli(0);
    cmd.args(["--json", "check", &id]);
    let report: serde_json::Value =
        serde_json::from_slice(&run(cmd, scratch)?.ok("check --json")?)?;
    ensure!(
        report["envelope"]["version"] == 4
            && report["envelope"]["recipients"][0]["kind"] == "p256"
            && report["envelope"]["recipients"][0]["post_quantum"] == false,
        "{report}"
    );

    let p256_4 = export_public(&net, 4, "file-encryption-p256", scratch)?;
    ensure!(p256_4.starts_with("dmp256v1"), "{p256_4}");
    let shared = put_to(&net, 0, &input, std::slice::from_ref(&p256_4), scratch)?;
    let out4 = scratch.join("out4");
    get(&net, 4, &shared, &out4, scratch)?;
    assert_same_file(&input, &out4)?;
    let mut cmd = net.cli(5);
    cmd.args(["get", &shared, "-o"]).arg(scratch.join("out5"));
    run(cmd, scratch)?.fails_with(2, "get on node 5, not shared with")?;

    let hybrid5 = export_public(&net, 5, "file-encryption-hybrid", scratch)?;
    let classical5 = export_public(&net, 5, "file-encryption", scratch)?;
    for (args, to) in [
        (
            vec!["put".to_string(), input.display().to_string()],
            &hybrid5,
        ),
        (vec!["share".to_string(), id.clone()], &classical5),
    ] {
        let mut cmd = net.cli(0);
        cmd.args(&args).args(["--to", to]);
        let outcome = run(cmd, scratch)?;
        ensure!(
            outcome.code.is_some_and(|c| c != 0),
            "{args:?} to a non-P-256 key under the fips profile: exit {:?}",
            outcome.code
        );
        ensure!(
            outcome.stderr.trim().lines().count() == 1 && outcome.stderr.contains("p256-only"),
            "{}",
            outcome.stderr
        );
    }

    // The P-256 key compromised: revoked, files re-wrapped to a fresh one, destroyed.
    let mut cmd = net.cli(0);
    cmd.args([
        "keys",
        "compromised",
        "file-encryption-p256",
        "1",
        "--password-file",
    ])
    .arg(net.password_file(0));
    run(cmd, scratch)?.ok("keys compromised file-encryption-p256 1")?;
    let statuses = key_statuses(&net, 0, "file-encryption-p256", scratch)?;
    ensure!(
        statuses == [(1, "destroyed".to_string()), (2, "active".to_string())],
        "{statuses:?}"
    );
    let again = scratch.join("out0-again");
    get(&net, 0, &id, &again, scratch)?;
    assert_same_file(&input, &again)?;
    let again4 = scratch.join("out4-again");
    get(&net, 4, &shared, &again4, scratch)?;
    assert_same_file(&input, &again4)?;

    // A share recorded under another policy: the fips node refuses to re-wrap to it.
    net.set_node_env(0, "DATAMESH_SECURITY_PROFILE", Some("standard"))?;
    net.set_node_env(0, "DATAMESH_SECURITY_RECIPIENTS", Some("hybrid"))?;
    net.stop(0)?;
    net.start(0)?;
    net.wait_ready()?;
    let mut cmd = net.cli(0);
    cmd.args(["share", &id, "--to", &hybrid5]);
    run(cmd, scratch)?.ok("share to a hybrid recipient under the standard profile")?;
    net.set_node_env(0, "DATAMESH_SECURITY_PROFILE", None)?;
    net.set_node_env(0, "DATAMESH_SECURITY_RECIPIENTS", None)?;
    net.stop(0)?;
    net.start(0)?;
    net.wait_ready()?;
    let mut cmd = net.cli(0);
    cmd.args(["keys", "rewrap", &id]);
    let outcome = run(cmd, scratch)?;
    ensure!(
        outcome.code.is_some_and(|c| c != 0)
            && outcome.stderr.trim().lines().count() == 1
            && outcome.stderr.contains("p256-only"),
        "rewrap to a recorded hybrid share under fips: exit {:?}: {}",
        outcome.code,
        outcome.stderr
    );

    Ok(())
}
