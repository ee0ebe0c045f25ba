//! Key lifecycle with real nodes. Rollback protection: an older keystore copied back
//! under a running `datamesh node run` (from before a `revoke`) is never adopted: the
//! node refuses to use it (a put fails), `keys audit verify` fails, and `keys
//! accept-rollback` is the documented way out, which the running node then follows.
//! Rekey: with the node running, `keys rekey --escrow-*` stores a new network copy that
//! the new shares recover in full, while the old set opens only its old copy.
//!
//! A test of the `datamesh-e2e` package (tests/Cargo.toml), on testnets of seven real
//! node processes, killed on drop.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use datamesh_testnet::input::make_file;
use datamesh_testnet::run::{Outcome, run_within};
use datamesh_testnet::{Config, Kdf, Testnet};

mod support;
use support::bin;

const NODES: usize = 7;
const COMMAND_DEADLINE: Duration = Duration::from_secs(240);

fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

#[test]
fn an_old_keystore_copied_back_under_a_running_node_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = Testnet::up_with(Config::new(bin()?, scratch.join("net"), NODES).with_kdf(Kdf::FAST))
        .context("cannot start the testnet")?;
    let keystore = net.home(0).join("keys/keystore");
    let pw = net.password_file(0);
    let keys = |args: &[&str]| {
        let mut cmd = net.cli(0);
        cmd.arg("keys").args(args).arg("--password-file").arg(&pw);
        cmd
    };
    let put = |seed: u64| -> anyhow::Result<Outcome> {
        let file = make_file(scratch, 1000, seed)?;
        let mut cmd = net.cli(0);
        cmd.arg("put").arg(&file);
        run(cmd, scratch)
    };

    let before_revoke = fs::read(&keystore)?;
    run(
        keys(&[
            "revoke",
            "file-encryption",
            "1",
            "--reason",
            "laptop stolen",
        ]),
        scratch,
    )?
    .ok("keys revoke")?;
    put(1)?.ok("put after the revocation")?;

    // The old file, copied back under the running node.
    fs::write(&keystore, &before_revoke)?;
    let refused = put(2)?;
    ensure!(refused.code != Some(0), "the node used the old keystore");
    // The user is told why: by the client (the put asks the node before it uploads) or,
    // when the upload was cut short, in the node's log.
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.contains("is older (generation") || refused.stderr.contains("is older (generation"),
        "the node's log does not say why: {}",
        refused.stderr
    );
    let line = run(keys(&["list"]), scratch)?.fails_with(5, "keys list")?;
    ensure!(line.contains("accept-rollback"), "{line}");
    run(keys(&["audit", "verify"]), scratch)?.fails_with(5, "keys audit verify")?;

    // The way out; the running node follows the accepted keystore.
    run(keys(&["accept-rollback"]), scratch)?.ok("keys accept-rollback")?;
    put(3)?.ok("put after accept-rollback")?;
    run(keys(&["audit", "verify"]), scratch)?.ok("keys audit verify")?;
    Ok(())
}

/// The share files in `dir`, sorted.
fn shares(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    Ok(files)
}

#[test]
fn a_rekey_with_the_node_running_replaces_the_network_copy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let net = Testnet::up_with(Config::new(bin()?, scratch.join("net"), NODES).with_kdf(Kdf::FAST))
        .context("cannot start the testnet")?;
    let pw = net.password_file(0);
    let keys = |args: &[&str]| {
        let mut cmd = net.cli(0);
        cmd.arg("keys").args(args).arg("--password-file").arg(&pw);
        cmd
    };
    let set_a = scratch.join("set-a");
    let mut split = keys(&["escrow", "split", "--threshold", "2", "--shares", "3"]);
    split.arg("--out-dir").arg(&set_a);
    run(split, scratch)?.ok("escrow split")?;
    run(keys(&["rotate"]), scratch)?.ok("keys rotate")?;

    let set_b = scratch.join("set-b");
    let mut rekey = keys(&["rekey", "--escrow-threshold", "2", "--escrow-shares", "3"]);
    rekey.arg("--escrow-out-dir").arg(&set_b);
    let said = run(rekey, scratch)?.ok_stderr("keys rekey")?;
    ensure!(
        said.contains("stored the keystore's network copy"),
        "{said}"
    );
    ensure!(said.contains("still holds the old master key"), "{said}");
    // The running node keeps serving its keys.
    let file = make_file(scratch, 1000, 7)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&file);
    run(put, scratch)?.ok("put after rekey")?;

    let bootstrap = net
        .run_file(1)?
        .and_then(|r| r.listen.into_iter().next())
        .context("node 1 publishes no listen address")?;
    let new_pw = scratch.join("new-pw");
    datamesh_testnet::write_password_file(&new_pw, "the recovered node's passphrase 9")?;
    let recover = |set: &Path, home: &Path| -> anyhow::Result<Command> {
        let mut cmd = support::datamesh(home);
        cmd.args(["keys", "escrow", "recover"])
            .args(&shares(set)?[..2])
            .arg("--bootstrap")
            .arg(&bootstrap)
            .arg("--new-password-file")
            .arg(&new_pw)
            .args(Kdf::FAST.args());
        Ok(cmd)
    };
    let versions = |home: &Path| -> anyhow::Result<usize> {
        let mut cmd = support::datamesh(home);
        cmd.args(["keys", "list", "--json", "--password-file"])
            .arg(&new_pw);
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&run(cmd, scratch)?.ok("keys list")?)?;
        Ok(rows.len())
    };
    // The new set and the new network copy: the keystore as it is now (node identity,
    // file-authority root, file-encryption v1 and v2, file-encryption-hybrid v1).
    let from_b = scratch.join("from-b");
    run(recover(&set_b, &from_b)?, scratch)?.ok("recover with set B")?;
    ensure!(versions(&from_b)? == 5, "set B's copy lacks a key version");
    // The old set opens only its old copy: the keystore as it was, without v2.
    let from_a = scratch.join("from-a");
    run(recover(&set_a, &from_a)?, scratch)?.ok("recover with set A")?;
    ensure!(
        versions(&from_a)? == 4,
        "set A's copy holds a later key version"
    );
    Ok(())
}
