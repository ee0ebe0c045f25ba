//! Nodes that unlock without a password on disk: through a SoftHSM2 token (PKCS#11) and
//! through a software TPM (swtpm), as real `datamesh node run` processes that are killed
//! with SIGKILL and started again unattended.
//!
//! Needs the Debian packages `softhsm2`, `swtpm` and `swtpm-tools` (installed by `cargo
//! xtask check-prereqs --install`); without them the tests fail and name the package.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use datamesh_testnet::hardware::{SoftHsm, Swtpm};
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::{Outcome, run_within, serial};
use datamesh_testnet::{Config, Kdf, Testnet};

mod support;
use support::bin;

/// The fewest nodes a put accepts (6 shards on 6 distinct peers).
const NODES: usize = 6;
/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?)
}

fn testnet(dir: &Path) -> anyhow::Result<Testnet> {
    Testnet::up_with(Config::new(bin()?, dir.join("net"), NODES).with_kdf(Kdf::FAST))
        .context("cannot start the testnet")
}

/// Every file below `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], found: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_containing(&path, needle, found)?;
        } else if fs::read(&path)?.windows(needle.len()).any(|w| w == needle) {
            found.push(path.display().to_string());
        }
    }
    Ok(())
}

/// Node 0 gets a slot in a SoftHSM2 token, its password slot and password file are
/// removed, and the node, SIGKILLed, starts again on its own: unlocked by the token, it
/// serves the file it put before the crash and puts a new one.
#[test]
fn a_node_restarts_after_a_crash_unlocked_by_softhsm2() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let hsm = SoftHsm::new(&scratch.join("softhsm"), "node-0", "4711")?;
    let (conf_key, conf) = hsm.env();
    let mut net = testnet(scratch)?;
    let home = net.home(0);
    let password_file = net.password_file(0);
    let password = fs::read(&password_file)?;
    let password = password.strip_suffix(b"\n").unwrap_or(&password).to_vec();

    let mut add = net.cli(0);
    add.env(conf_key, conf)
        .args(["keys", "slot", "add", "--label", "hsm", "--password-file"])
        .arg(&password_file)
        .arg("--pkcs11")
        .arg(hsm.module())
        .args(["--token", hsm.label(), "--pin-file"])
        .arg(hsm.pin_file());
    let id = String::from_utf8(run(add, scratch)?.ok("slot add --pkcs11")?)?;
    ensure!(id.trim() == "2", "slot add printed {id:?}");

    // Unlocked through the token (no password given), the password slot goes.
    let mut remove = net.cli(0);
    remove
        .env(conf_key, conf)
        .args(["keys", "slot", "remove", "1", "--pkcs11-pin-file"])
        .arg(hsm.pin_file());
    run(remove, scratch)?.ok("slot remove 1 through the token")?;
    fs::remove_file(&password_file)?;
    let mut leftover = Vec::new();
    files_containing(&home, &password, &mut leftover)?;
    ensure!(
        leftover.is_empty(),
        "the password is still on disk: {leftover:?}"
    );

    let mut list = net.cli(0);
    list.env(conf_key, conf)
        .args(["--json", "keys", "slot", "list", "--pkcs11-pin-file"])
        .arg(hsm.pin_file());
    let slots: serde_json::Value = serde_json::from_slice(&run(list, scratch)?.ok("slot list")?)?;
    let kinds: Vec<&str> = slots
        .as_array()
        .context("slot list --json is not an array")?
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    ensure!(kinds == ["pkcs11"], "slots left: {kinds:?}");

    let before = make_file(scratch, 2 * MIB + 77, 1)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&before);
    let id = String::from_utf8(run(put, scratch)?.ok("put before the crash")?)?;
    let id = id.trim().to_string();

    net.set_node_env(0, conf_key, Some(&conf.display().to_string()))?;
    net.set_node_env(
        0,
        "DATAMESH_PKCS11_PIN_FILE",
        Some(&hsm.pin_file().display().to_string()),
    )?;
    net.kill(0)?;
    net.start(0)?;

    let out = scratch.join("after-crash");
    let mut get = net.cli(0);
    get.args(["get", &id, "-o"]).arg(&out);
    run(get, scratch)?.ok("get after the restart")?;
    assert_same_file(&before, &out).context("the file put before the crash")?;
    let after = make_file(scratch, MIB + 1, 2)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&after);
    run(put, scratch)?.ok("put after the restart")?;

    // Without the PIN the node does not start, and says why in one line.
    net.set_node_env(0, "DATAMESH_PKCS11_PIN_FILE", None)?;
    net.kill(0)?;
    ensure!(
        net.start(0).is_err(),
        "the node started without the token's PIN"
    );
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.contains("token \"node-0\" needs a PIN"),
        "the log does not name the missing PIN: {}",
        log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    );
    Ok(())
}

/// The same with the TPM: node 0's password slot and file are removed after a TPM slot is
/// added; SIGKILLed, the node starts again unlocked by its (software) TPM and serves its
/// file; pointed at another TPM (the keystore on another machine), it does not start.
#[test]
fn a_node_restarts_after_a_crash_unlocked_by_its_tpm() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let scratch = dir.path();
    let tpm = Swtpm::start(&scratch.join("tpm"))?;
    let tcti = tpm.tcti();
    let mut net = testnet(scratch)?;
    let password_file = net.password_file(0);

    let mut add = net.cli(0);
    add.env("TSS2_LOG", "all+none")
        .args([
            "keys",
            "slot",
            "add",
            "--tpm",
            "--tpm-tcti",
            &tcti,
            "--password-file",
        ])
        .arg(&password_file);
    let id = String::from_utf8(run(add, scratch)?.ok("slot add --tpm")?)?;
    ensure!(id.trim() == "2", "slot add printed {id:?}");
    let mut remove = net.cli(0);
    remove
        .env("TSS2_LOG", "all+none")
        .args(["keys", "slot", "remove", "1", "--tpm-tcti", &tcti]);
    run(remove, scratch)?.ok("slot remove 1 through the TPM")?;
    fs::remove_file(&password_file)?;

    let before = make_file(scratch, MIB + 5, 3)?;
    let mut put = net.cli(0);
    put.arg("put").arg(&before);
    let id = String::from_utf8(run(put, scratch)?.ok("put before the crash")?)?;
    let id = id.trim().to_string();

    net.set_node_env(0, "DATAMESH_TPM_TCTI", Some(&tcti))?;
    net.set_node_env(0, "TSS2_LOG", Some("all+none"))?;
    net.kill(0)?;
    net.start(0)?;
    let out = scratch.join("after-crash");
    let mut get = net.cli(0);
    get.args(["get", &id, "-o"]).arg(&out);
    run(get, scratch)?.ok("get after the restart")?;
    assert_same_file(&before, &out).context("the file put before the crash")?;

    // Another machine's TPM does not open the slot: the node refuses to start.
    let other = Swtpm::start(&scratch.join("other-tpm"))?;
    net.set_node_env(0, "DATAMESH_TPM_TCTI", Some(&other.tcti()))?;
    net.kill(0)?;
    ensure!(
        net.start(0).is_err(),
        "the node started through another TPM"
    );
    let log = fs::read_to_string(net.log_file(0))?;
    ensure!(
        log.contains("sealed by another TPM"),
        "the log does not name the other TPM: {}",
        log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    );
    Ok(())
}
