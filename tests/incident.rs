//! A stolen file-encryption key, end to end, on a testnet of seven real node processes.
//!
//! Node 0 stores files. The thief copies node 0's keystore file (and its password) into
//! node 6's home and gives it a node identity of its own: node 6 now holds node 0's file
//! key v1 and reads node 0's files. Node 0 runs `keys compromised file-encryption 1`
//! (revoke, re-wrap, destroy), then `--reencrypt`, which is killed part-way and finished
//! by running it again. Afterwards node 0 reads every file back byte-identical under new
//! file ids, v1 is destroyed and the audit log says so, and the thief opens nothing:
//! the new files' envelopes are not wrapped to v1 (exit 2) and the old files' shards
//! and manifests are released (not found).
//!
//! A test of the `datamesh-e2e` package; the binary under test is the `datamesh` of the
//! same cargo build (`support::bin`). Every command runs under a deadline; the testnet
//! SIGKILLs its nodes on drop, also when the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, Running, run_within};
use datamesh_testnet::{Config, Kdf, Testnet};

mod support;
use support::bin;

/// Six nodes hold shards; node 6 becomes the thief.
const NODES: usize = 7;
const THIEF: usize = 6;
/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(240);

fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

/// `ls --json` of node `i`: id -> name.
fn listed(net: &Testnet, i: usize, scratch: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut cmd = net.cli(i);
    cmd.args(["ls", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&run(cmd, scratch)?.ok("ls")?)?;
    rows.iter()
        .map(|r| {
            Ok((
                r["id"].as_str().context("no id")?.to_owned(),
                r["name"].as_str().context("no name")?.to_owned(),
            ))
        })
        .collect()
}

/// `get ID` on node `i` into `out`: the outcome (the file is written only on success).
fn get(net: &Testnet, i: usize, id: &str, out: &Path, scratch: &Path) -> anyhow::Result<Outcome> {
    let mut cmd = net.cli(i);
    cmd.args(["get", id, "--force", "-o"]).arg(out);
    run(cmd, scratch)
}

/// `keys compromised file-encryption 1 ARGS... --json --password-file PW` on node 0.
fn compromised(net: &Testnet, args: &[&str]) -> Command {
    let mut cmd = net.cli(0);
    cmd.args(["--json", "keys", "compromised", "file-encryption", "1"])
        .args(args)
        .arg("--password-file")
        .arg(net.password_file(0));
    cmd
}

/// The incident state file of node 0, parsed (None while there is none).
fn state(net: &Testnet) -> anyhow::Result<Option<serde_json::Value>> {
    let path = net.home(0).join("incident-file-encryption-v1.json");
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[test]
fn a_compromised_key_is_revoked_rewrapped_destroyed_and_reencrypted_after_an_interruption()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    // The incident is about the classical `file-encryption` key: the nodes wrap new
    // files to it (recipient policy `classical`) instead of the default hybrid key.
    let config = (0..NODES).fold(
        Config::new(bin()?, scratch.join("net"), NODES).with_kdf(Kdf::FAST),
        |config, i| config.with_node_env(i, "DATAMESH_SECURITY_RECIPIENTS", "classical"),
    );
    let mut net = Testnet::up_with(config).context("cannot start the testnet")?;

    // Node 0's files, by name.
    let mut originals: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut old_ids = Vec::new();
    let mut paths = Vec::new();
    for (seed, len) in [
        (11u64, 1usize),
        (12, 300_001),
        (13, 1 << 20),
        (14, (2 << 20) + 17),
        (15, 700_000),
        (16, 1 << 19),
    ] {
        let path = make_file(scratch, len, seed)?;
        let mut cmd = net.cli(0);
        cmd.arg("put").arg(&path);
        let id = String::from_utf8(run(cmd, scratch)?.ok("put")?)?
            .trim()
            .to_owned();
        let name = path
            .file_name()
            .context("no file name")?
            .to_string_lossy()
            .into_owned();
        originals.insert(name, path.clone());
        paths.push(path);
        old_ids.push(id);
    }

    // The theft: node 6 becomes a node holding a copy of node 0's keystore (with a node
    // identity of its own, so it joins as another peer).
    net.stop(THIEF)?;
    let thief = net.home(THIEF);
    for file in ["keys/keystore", "keys/audit.log", "keys/audit.head"] {
        fs::copy(net.home(0).join(file), thief.join(file))?;
        fs::set_permissions(thief.join(file), fs::Permissions::from_mode(0o600))?;
    }
    fs::copy(net.password_file(0), net.password_file(THIEF))?;
    let mut cmd = net.cli(THIEF);
    cmd.args(["keys", "rotate", "node-identity", "--password-file"])
        .arg(net.password_file(THIEF));
    run(cmd, scratch)?.ok("thief: rotate node-identity")?;
    net.start(THIEF)?;
    let stolen = scratch.join("stolen");
    get(&net, THIEF, &old_ids[1], &stolen, scratch)?.ok("the thief reads a file before")?;
    assert_same_file(&paths[1], &stolen)?;

    // Revoked first (the usual first reflex): node 0's own files open only with v1, so
    // they need the explicit override, which the audit log records.
    let mut cmd = net.cli(0);
    cmd.args([
        "keys",
        "revoke",
        "file-encryption",
        "1",
        "--reason",
        "laptop stolen",
    ])
    .arg("--password-file")
    .arg(net.password_file(0));
    run(cmd, scratch)?.ok("keys revoke")?;
    let back = scratch.join("back-revoked");
    get(&net, 0, &old_ids[3], &back, scratch)?
        .fails_with(2, "get of a file only a revoked key opens")?;
    ensure!(!back.exists(), "a failed get left {}", back.display());
    let mut cmd = net.cli(0);
    cmd.args(["get", &old_ids[3], "--allow-revoked", "-o"])
        .arg(&back);
    let said = run(cmd, scratch)?.ok_stderr("get --allow-revoked")?;
    ensure!(said.contains("revoked keys"), "{said}");
    assert_same_file(&paths[3], &back)?;
    let mut cmd = net.cli(0);
    cmd.args(["keys", "audit", "--last", "50"]);
    let audit = String::from_utf8(run(cmd, scratch)?.ok("keys audit")?)?;
    ensure!(audit.contains("revoked keys released"), "{audit}");

    // The incident, without re-encryption: v1 already revoked (v2 active), every file
    // re-wrapped, v1 destroyed.
    let report: serde_json::Value =
        serde_json::from_slice(&run(compromised(&net, &[]), scratch)?.ok("keys compromised")?)?;
    ensure!(report["affected"] == 6, "{report}");
    ensure!(report["rewrapped"] == 6, "{report}");
    ensure!(
        report["destroyed"] == true && report["finished"] == true,
        "{report}"
    );
    ensure!(report["replacement"] == 2, "{report}");
    let mut cmd = net.cli(0);
    cmd.args(["keys", "list", "--json", "--password-file"])
        .arg(net.password_file(0));
    let keys: serde_json::Value = serde_json::from_slice(&run(cmd, scratch)?.ok("keys list")?)?;
    let status = |version: u64| {
        keys.as_array()
            .into_iter()
            .flatten()
            .find(|k| k["name"] == "file-encryption" && k["version"] == version)
            .map(|k| k["status"].clone())
    };
    ensure!(status(1) == Some("destroyed".into()), "{keys}");
    ensure!(status(2) == Some("active".into()), "{keys}");
    // Holders keep one envelope per file, replaced by the rewrap: the thief's copy of v1
    // no longer opens any file, even before re-encryption.
    for id in &old_ids {
        let out = get(&net, THIEF, id, &stolen, scratch)?;
        ensure!(
            out.code == Some(2),
            "thief get {id} after the rewrap: {:?} {}",
            out.code,
            out.stderr
        );
    }

    // Now with re-encryption, killed after its first file, then run again.
    let mut first = Running::spawn(
        compromised(&net, &["--reencrypt"]),
        scratch,
        COMMAND_DEADLINE,
    )?;
    let started = Instant::now();
    let mut interrupted = false;
    while started.elapsed() < COMMAND_DEADLINE && first.running()? {
        let done = state(&net)?
            .and_then(|s| s["reencrypted"].as_object().map(serde_json::Map::len))
            .unwrap_or(0);
        if done >= 1 {
            drop(first); // SIGKILL
            interrupted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ensure!(
        interrupted,
        "the first --reencrypt run ended before it could be interrupted"
    );
    let cut = state(&net)?.context("no state after the interrupted run")?;
    ensure!(cut["finished"] == false, "{cut}");
    let report: serde_json::Value = serde_json::from_slice(
        &run(compromised(&net, &["--reencrypt"]), scratch)?
            .ok("keys compromised --reencrypt, resumed")?,
    )?;
    ensure!(
        report["resumed"] == true && report["finished"] == true,
        "{report}"
    );
    let pairs = report["reencrypted"]
        .as_array()
        .context("no reencrypted list")?;
    ensure!(pairs.len() == 6, "{report}");
    let olds: BTreeSet<&str> = pairs.iter().filter_map(|p| p["old"].as_str()).collect();
    ensure!(
        olds == old_ids.iter().map(String::as_str).collect(),
        "{report}"
    );

    // Node 0: the same files under new ids, byte-identical.
    let now = listed(&net, 0, scratch)?;
    ensure!(now.len() == 6, "{now:?}");
    for (id, name) in &now {
        ensure!(!old_ids.contains(id), "{id} was not replaced");
        let out = scratch.join(format!("back-{name}"));
        get(&net, 0, id, &out, scratch)?.ok(&format!("get {id}"))?;
        assert_same_file(originals.get(name).context("unknown name")?, &out)?;
    }
    let mut cmd = net.cli(0);
    cmd.args(["keys", "audit", "--last", "50"]);
    let audit = String::from_utf8(run(cmd, scratch)?.ok("keys audit")?)?;
    ensure!(audit.contains("incident"), "{audit}");

    // The thief's copy of v1 opens no current file, and the old files are gone.
    for id in now.keys() {
        let out = get(&net, THIEF, id, &stolen, scratch)?;
        ensure!(
            out.code == Some(2),
            "thief get {id}: {:?} {}",
            out.code,
            out.stderr
        );
    }
    // The old files open nothing either: released where the owner could reach their
    // holders (not found: 3 or 4), and where the thief's own node still holds copies it
    // stored under its old identity (a holder cannot be made to delete), their envelopes
    // open with no key the thief has (2).
    for id in &old_ids {
        let out = get(&net, THIEF, id, &stolen, scratch)?;
        ensure!(
            matches!(out.code, Some(2..=4)),
            "thief get of the old {id}: {:?} {}",
            out.code,
            out.stderr
        );
    }
    Ok(())
}
