//! Rollback protection with a real node: an older keystore copied back under a running
//! `datamesh node run` (from before a `revoke`) is never adopted: the node refuses to
//! use it (a put fails), `keys audit verify` fails, and `keys accept-rollback` is the
//! documented way out, which the running node then follows.
//!
//! A test of the `datamesh-e2e` package (tests/Cargo.toml), on a testnet of seven real
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
    // The node says why in its log (the client may only see the upload cut short).
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.contains("is older (generation"),
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
