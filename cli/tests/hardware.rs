//! Unlock slots beyond a password, from the outside: a PKCS#11 token (a fresh SoftHSM2
//! token per test, in its own folder through `SOFTHSM2_CONF`), a TPM 2.0 (a swtpm per
//! test, on its own ports and state folder, stopped by its PID), and a password together
//! with a key file. Each failure is one line naming its cause, with a non-zero exit, and
//! changes nothing; the password slot keeps working.
//!
//! Needs the Debian packages `softhsm2`, `swtpm` and `tpm2-tools` (installed by `cargo
//! xtask check-prereqs --install`); without them the tests fail and name the package.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Home, TestResult, datamesh, stderr};
use datamesh_testnet::hardware::{SoftHsm, Swtpm};
use predicates::prelude::*;

/// One row of `keys slot list --json`: id, kind, what it needs.
type Listed = (u64, String, String);

/// `keys slot list --json` run with `extra` (no password), parsed: (id, kind, needs).
fn slots(
    home: &Home,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> Result<Vec<Listed>, Box<dyn std::error::Error>> {
    let mut cmd = datamesh(&home.home);
    cmd.args(["--json", "keys", "slot", "list"]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.assert().success();
    let list: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    Ok(list
        .as_array()
        .ok_or("not an array")?
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap_or(0),
                s["kind"].as_str().unwrap_or("").to_string(),
                s["needs"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Exactly one line on stderr, starting with `error:`.
fn one_line_error(output: &std::process::Output) -> String {
    let text = stderr(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {text:?}");
    assert!(lines[0].starts_with("error: "), "{text:?}");
    text
}

#[test]
fn a_pkcs11_slot_unlocks_and_each_failure_is_named() -> TestResult {
    let home = Home::new()?;
    let hsm = SoftHsm::new(&home.dir.path().join("hsm"), "node", "1234")?;
    let (conf_key, conf) = hsm.env();
    let module = hsm.module().display().to_string();
    let pin = hsm.pin_file().display().to_string();
    home.keys(&[
        "slot",
        "add",
        "--label",
        "hsm",
        "--pkcs11",
        &module,
        "--token",
        hsm.label(),
        "--pin-file",
        &pin,
    ])
    .env(conf_key, conf)
    .assert()
    .success()
    .stdout("2\n")
    .stderr(predicate::str::contains(
        "made a non-extractable AES-256 key",
    ));
    let listed = slots(
        &home,
        &["--pkcs11-pin-file", &hsm.pin_file().display().to_string()],
        &[(conf_key, conf)],
    )?;
    assert_eq!(listed[1].0, 2);
    assert_eq!(listed[1].1, "pkcs11");
    assert!(listed[1].2.contains("token \"node\""), "{listed:?}");
    let keystore = fs::read(home.keystore())?;
    assert!(
        !keystore.windows(4).any(|w| w == b"1234"),
        "the PIN is in the keystore"
    );

    // Wrong PIN, absent token, missing module: one line each, exit 1, nothing changed.
    let wrong = home.dir.path().join("wrong-pin");
    fs::write(&wrong, "9999\n")?;
    fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let out = datamesh(&home.home)
        .args([
            "keys",
            "slot",
            "list",
            "--unlock-slot",
            "2",
            "--pkcs11-pin-file",
        ])
        .arg(&wrong)
        .env(conf_key, conf)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("wrong PIN for token \"node\""));

    let other = SoftHsm::new(&home.dir.path().join("other"), "another", "1234")?;
    let (_, other_conf) = other.env();
    let out = datamesh(&home.home)
        .args(["keys", "slot", "list", "--pkcs11-pin-file"])
        .arg(hsm.pin_file())
        .env(conf_key, other_conf)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("no token labelled \"node\""));

    let out = datamesh(&home.home)
        .args(["keys", "slot", "add", "--password-file"])
        .arg(&home.password)
        .args(["--pkcs11", "/nonexistent/libpkcs11.so", "--token", "node"])
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("/nonexistent/libpkcs11.so does not exist"));
    assert_eq!(
        fs::read(home.keystore())?,
        keystore,
        "a failure changed the keystore"
    );

    // The password slot still works with the token gone.
    home.keys(&["slot", "list"])
        .env(conf_key, other_conf)
        .assert()
        .success();

    // Through the token alone, the password slot can go; then the token is the only way.
    datamesh(&home.home)
        .args(["keys", "slot", "remove", "1", "--pkcs11-pin-file"])
        .arg(hsm.pin_file())
        .env(conf_key, conf)
        .assert()
        .success();
    let out = home.keys(&["slot", "list"]).env(conf_key, conf).output()?;
    assert_ne!(
        out.status.code(),
        Some(0),
        "the removed password still opens"
    );
    Ok(())
}

/// Extends SHA-256 PCR `pcr` of the TPM at `tcti` (with tpm2-tools).
fn extend_pcr(tcti: &str, pcr: u8) -> TestResult {
    let status = Command::new("tpm2_pcrextend")
        .env("TSS2_LOG", "all+none")
        .args(["-T", tcti])
        .arg(format!("{pcr}:sha256={}", "01".repeat(32)))
        .status()
        .map_err(|e| format!("tpm2_pcrextend (Debian package tpm2-tools): {e}"))?;
    assert!(status.success());
    Ok(())
}

#[test]
fn a_tpm_slot_opens_on_its_own_tpm_only() -> TestResult {
    let home = Home::new()?;
    let tpm = Swtpm::start(&home.dir.path().join("tpm"))?;
    let tcti = tpm.tcti();
    home.keys(&[
        "slot",
        "add",
        "--tpm",
        "--label",
        "machine",
        "--tpm-tcti",
        &tcti,
    ])
    .env("TSS2_LOG", "all+none")
    .assert()
    .success()
    .stdout("2\n");
    home.keys(&["slot", "add", "--tpm", "--pcrs", "16", "--tpm-tcti", &tcti])
        .env("TSS2_LOG", "all+none")
        .assert()
        .success()
        .stdout("3\n");
    let listed = slots(&home, &["--tpm-tcti", &tcti, "--unlock-slot", "2"], &[])?;
    assert_eq!(listed[1].1, "tpm");
    assert!(listed[2].2.contains("PCRs 16 unchanged"), "{listed:?}");
    // Through the TPM alone, the password slot can go.
    datamesh(&home.home)
        .args(["keys", "slot", "remove", "1", "--tpm-tcti", &tcti])
        .env("TSS2_LOG", "all+none")
        .assert()
        .success();

    // The PCR-bound slot stops opening once PCR 16 moves; the other still opens.
    extend_pcr(&tcti, 16)?;
    let out = datamesh(&home.home)
        .args([
            "keys",
            "slot",
            "list",
            "--unlock-slot",
            "3",
            "--tpm-tcti",
            &tcti,
        ])
        .env("TSS2_LOG", "all+none")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("TPM policy mismatch"));
    slots(
        &home,
        &["--tpm-tcti", &tcti],
        &[("TSS2_LOG", Path::new("all+none"))],
    )?;

    // The keystore copied to another machine (another TPM) does not open through it.
    let other = Swtpm::start(&home.dir.path().join("other-tpm"))?;
    let out = datamesh(&home.home)
        .args(["keys", "slot", "list", "--tpm-tcti", &other.tcti()])
        .env("TSS2_LOG", "all+none")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("sealed by another TPM"));

    // No TPM at all: named as such.
    let mut tpm = tpm;
    tpm.stop()?;
    let out = datamesh(&home.home)
        .args([
            "keys",
            "slot",
            "list",
            "--unlock-slot",
            "2",
            "--tpm-tcti",
            &tcti,
        ])
        .env("TSS2_LOG", "all+none")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("is not reachable"));
    Ok(())
}

#[test]
fn a_composite_slot_needs_the_password_and_the_key_file() -> TestResult {
    let home = Home::new()?;
    let key_file = home.dir.path().join("node.key");
    let second = common::password_file(
        home.dir.path(),
        "second",
        "another long passphrase for slots",
    )?;
    let key_path = key_file.display().to_string();
    let second_path = second.display().to_string();
    let fast = common::Kdf::FAST.args();
    let mut args = vec![
        "slot",
        "add",
        "--label",
        "two factors",
        "--generate-key-file",
        "--new-key-file",
        &key_path,
        "--new-password-file",
        &second_path,
    ];
    args.extend(fast.iter().map(String::as_str));
    home.keys(&args).assert().success().stdout("2\n");
    assert_eq!(common::mode(&key_file)?, 0o600);
    assert_eq!(fs::read(&key_file)?.len(), 32);
    let listed = slots(
        &home,
        &["--password-file", &home.password.display().to_string()],
        &[],
    )?;
    assert_eq!(listed[1].1, "password+keyfile");
    // Both factors: opens. The password alone, or with another key file: refused.
    datamesh(&home.home)
        .args(["keys", "slot", "remove", "1", "--password-file"])
        .arg(&second)
        .arg("--key-file")
        .arg(&key_file)
        .assert()
        .success();
    datamesh(&home.home)
        .args(["keys", "list", "--password-file"])
        .arg(&second)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "needs its password and its key file",
        ));
    let other = home.dir.path().join("other.key");
    fs::write(&other, [7u8; 32])?;
    datamesh(&home.home)
        .args(["keys", "list", "--password-file"])
        .arg(&second)
        .arg("--key-file")
        .arg(&other)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("wrong password"));
    // A key file is never overwritten.
    datamesh(&home.home)
        .args([
            "keys",
            "slot",
            "add",
            "--generate-key-file",
            "--new-key-file",
        ])
        .arg(&key_file)
        .arg("--new-password-file")
        .arg(&second)
        .arg("--password-file")
        .arg(&second)
        .arg("--key-file")
        .arg(&key_file)
        .assert()
        .failure()
        .stderr(predicate::str::contains("never overwrites"));
    Ok(())
}
