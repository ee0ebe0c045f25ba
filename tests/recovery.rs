//! Disaster recovery, end to end: a testnet of eight real `datamesh node run` processes;
//! node 0 stores files, is backed up (a bundle) and escrowed (3 of 5 shares, with the
//! keystore's network copy), then its whole home is deleted. It comes back (1) from the
//! bundle and (2) from three shares and the network alone; each time `ls` lists its
//! files and `get` returns every one byte-identical. Two shares: a clear error, nothing
//! written.
//!
//! A test of the `datamesh-e2e` package (tests/Cargo.toml); the binary under test is the
//! `datamesh` of the same cargo build (`support::bin`). Every command runs under a
//! deadline; the testnet SIGKILLs its nodes on drop, also when the test fails.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::{assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, run_within};
use datamesh_testnet::{Config, Kdf, Testnet, write_password_file};

mod support;
use support::{bin, datamesh};

/// Eight nodes: node 0's own shards are lost with its disk, the others hold the rest.
const NODES: usize = 8;
/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(240);

/// Runs `cmd` to completion within [`COMMAND_DEADLINE`] (killed after it).
fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

/// The file ids `datamesh ls --json` of node `i` lists.
fn listed(net: &Testnet, i: usize, scratch: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut cmd = net.cli(i);
    cmd.args(["ls", "--json"]);
    let stdout = run(cmd, scratch)?.ok(&format!("ls on node {i}"))?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&stdout)?;
    rows.iter()
        .map(|r| {
            r["id"]
                .as_str()
                .map(str::to_owned)
                .context("ls --json row without an id")
        })
        .collect()
}

/// Node `i` lists exactly `files` and gives every one back byte-identical.
fn check_files(
    net: &Testnet,
    i: usize,
    files: &[(String, PathBuf)],
    scratch: &Path,
    case: &str,
) -> anyhow::Result<()> {
    let want: BTreeSet<String> = files.iter().map(|(id, _)| id.clone()).collect();
    let got = listed(net, i, scratch)?;
    ensure!(got == want, "{case}: ls lists {got:?}, expected {want:?}");
    for (n, (id, original)) in files.iter().enumerate() {
        let out = scratch.join(format!("{case}-out-{n}"));
        let mut cmd = net.cli(i);
        cmd.args(["get", id, "-o"]).arg(&out);
        run(cmd, scratch)?.ok(&format!("{case}: get {id}"))?;
        assert_same_file(original, &out)
            .with_context(|| format!("{case}: {id} came back different"))?;
    }
    Ok(())
}

/// Makes `home` runnable by the testnet: its node password in `home/password`.
fn install_password(home: &Path, password: &Path) -> anyhow::Result<()> {
    let target = home.join("password");
    fs::copy(password, &target)?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[test]
fn a_lost_node_comes_back_from_its_bundle_or_from_three_shares_and_the_network()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let mut net =
        Testnet::up_with(Config::new(bin()?, scratch.join("net"), NODES).with_kdf(Kdf::FAST))
            .context("cannot start the testnet")?;

    // Node 0 stores files of interesting sizes (empty, one byte, one segment, several
    // stripes).
    let mut files = Vec::new();
    for (seed, len) in [(1u64, 0usize), (2, 1), (3, 1 << 20), (4, (3 << 20) + 17)] {
        let path = make_file(scratch, len, seed)?;
        let mut cmd = net.cli(0);
        cmd.arg("put").arg(&path);
        let id = String::from_utf8(run(cmd, scratch)?.ok("put")?)?
            .trim()
            .to_owned();
        ensure!(id.starts_with("dm1"), "put printed {id:?}");
        files.push((id, path));
    }
    let home0 = net.home(0);
    let node_pw = net.password_file(0);

    // The safety nets: two bundles, one made while the node runs (its catalog comes
    // from the API), one while it is down (from its database, with manifests), and
    // 3-of-5 shares with the keystore's network copy (needs the running node).
    let backup_pw = scratch.join("backup-pw");
    write_password_file(&backup_pw, "a separate backup passphrase for node zero")?;
    let backup = |net: &Testnet, bundle: &Path| -> anyhow::Result<String> {
        let mut cmd = net.cli(0);
        cmd.args(["keys", "backup", "--out"])
            .arg(bundle)
            .arg("--backup-password-file")
            .arg(&backup_pw)
            .arg("--password-file")
            .arg(&node_pw)
            .args(Kdf::FAST.args());
        Ok(run(cmd, scratch)?.ok_stderr("keys backup")?)
    };
    let from_api = scratch.join("node0-api.dmbackup");
    let said = backup(&net, &from_api)?;
    ensure!(
        said.contains("catalog of 4 file(s) came from the running node's API"),
        "{said}"
    );
    // Killed, not stopped: its node.json stays behind, stale; the backup must see that
    // the node does not answer and read the database.
    net.kill(0)?;
    let from_db = scratch.join("node0-db.dmbackup");
    let said = backup(&net, &from_db)?;
    ensure!(
        said.contains("catalog of 4 file(s) came from the node's database"),
        "{said}"
    );
    net.start(0)?;

    let escrow = scratch.join("escrow");
    let mut cmd = net.cli(0);
    cmd.args([
        "--json",
        "keys",
        "escrow",
        "split",
        "--threshold",
        "3",
        "--shares",
        "5",
    ])
    .arg("--out-dir")
    .arg(&escrow)
    .arg("--password-file")
    .arg(&node_pw);
    let split: serde_json::Value = serde_json::from_slice(&run(cmd, scratch)?.ok("escrow split")?)?;
    let copy = split["network_copy"]
        .as_str()
        .context("escrow split stored no network copy although the node runs")?
        .to_owned();
    let shares: Vec<PathBuf> = split["files"]
        .as_array()
        .context("no share files listed")?
        .iter()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .collect();
    ensure!(shares.len() == 5, "{} share files", shares.len());
    for share in &shares {
        ensure!(
            fs::read_to_string(share)?.contains(&copy),
            "{} does not name the network copy {copy}",
            share.display()
        );
    }

    // The machine is gone.
    net.kill(0)?;
    fs::remove_dir_all(&home0)?;

    // Case 1: a new home from a bundle (each kind), started, joining the testnet.
    let new_pw = scratch.join("new-pw");
    write_password_file(&new_pw, "the restored node's new passphrase")?;
    for (case, bundle) in [("bundle-db", &from_db), ("bundle-api", &from_api)] {
        let mut cmd = datamesh(&home0);
        cmd.args(["keys", "restore", "--trust-on-first-use"])
            .arg(bundle)
            .arg("--backup-password-file")
            .arg(&backup_pw)
            .arg("--new-password-file")
            .arg(&new_pw)
            .args(Kdf::FAST.args());
        let said = run(cmd, scratch)?.ok_stderr(&format!("{case}: keys restore"))?;
        ensure!(said.contains("a catalog of 4 file(s)"), "{case}: {said}");
        install_password(&home0, &new_pw)?;
        net.start(0)?;
        check_files(&net, 0, &files, scratch, case)?;
        if case == "bundle-db" {
            // The database's catalog came back whole (manifests, envelope sequence):
            // rewrapping every file works right away.
            let mut cmd = net.cli(0);
            cmd.args(["keys", "rewrap", "--all"]);
            run(cmd, scratch)?.ok("rewrap after restore")?;
            check_files(&net, 0, &files, scratch, "rewrapped")?;
        }
        // Gone again.
        net.kill(0)?;
        fs::remove_dir_all(&home0)?;
    }
    let bootstrap = net
        .run_file(1)?
        .and_then(|r| r.listen.into_iter().next())
        .context("node 1 publishes no listen address")?;
    let recover = |chosen: &[&PathBuf]| {
        let mut cmd = datamesh(&home0);
        cmd.args(["keys", "escrow", "recover"])
            .args(chosen)
            .arg("--bootstrap")
            .arg(&bootstrap)
            .arg("--new-password-file")
            .arg(&new_pw)
            .args(Kdf::FAST.args());
        cmd
    };

    // Two shares: a clear error, nothing written.
    let two = run(recover(&[&shares[1], &shares[3]]), scratch)?;
    ensure!(
        two.code == Some(2),
        "two shares: exit {:?}: {}",
        two.code,
        two.stderr
    );
    ensure!(
        two.stderr.lines().count() == 1 && two.stderr.contains("2 share(s) given, 3 needed"),
        "two shares: {}",
        two.stderr
    );
    ensure!(!home0.exists(), "two shares wrote {}", home0.display());

    // A bootstrap peer that does not answer: a clear error, nothing written.
    let peer = bootstrap
        .rsplit('/')
        .next()
        .context("bootstrap without a peer id")?;
    let mut cmd = datamesh(&home0);
    cmd.args(["keys", "escrow", "recover"])
        .args([&shares[0], &shares[1], &shares[2]])
        .arg("--bootstrap")
        .arg(format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}"))
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(Kdf::FAST.args());
    let dead = run(cmd, scratch)?;
    ensure!(
        dead.code == Some(1) && dead.stderr.contains("no bootstrap peer answered"),
        "dead bootstrap: exit {:?}: {}",
        dead.code,
        dead.stderr
    );
    ensure!(!home0.exists(), "a failed fetch wrote {}", home0.display());

    // Case 2: three shares and the network alone.
    run(recover(&[&shares[4], &shares[0], &shares[2]]), scratch)?.ok("escrow recover")?;
    let config = fs::read_to_string(home0.join("config.toml"))?;
    ensure!(
        config.contains(&bootstrap),
        "config.toml does not name the bootstrap peer: {config}"
    );
    install_password(&home0, &new_pw)?;
    net.start(0)?;
    check_files(&net, 0, &files, scratch, "shares")?;
    // The rebuilt keystore is the same: the old shares still pass the drill.
    let mut cmd = net.cli(0);
    cmd.args(["keys", "escrow", "verify"])
        .args([&shares[1], &shares[2], &shares[3]])
        .arg("--password-file")
        .arg(&new_pw);
    run(cmd, scratch)?.ok("escrow verify on the rebuilt home")?;
    net.down()?;
    Ok(())
}
