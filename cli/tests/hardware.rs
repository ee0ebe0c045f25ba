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

/// The one `error:` line on stderr (warnings may come before it).
fn error_line(output: &std::process::Output) -> String {
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "not one error line: {text:?}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("error: ")),
        "{text:?}"
    );
    errors[0].to_owned()
}

/// The audit log's lines, parsed.
fn audit_lines(home: &Home) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    fs::read_to_string(home.audit_log())?
        .lines()
        .map(|line| Ok(serde_json::from_str(line)?))
        .collect()
}

/// The detail of the last audit line of `op` and `outcome`.
fn last_detail(home: &Home, op: &str, outcome: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(audit_lines(home)?
        .iter()
        .rev()
        .find(|l| l["op"] == op && l["outcome"] == outcome)
        .and_then(|l| l["detail"].as_str())
        .ok_or_else(|| format!("no {op} {outcome} line in the audit log"))?
        .to_owned())
}

/// What `node run` did: `Ok(())` once it published its node.json (then it is stopped),
/// or its stderr when it exited first.
fn run_node(
    home: &Home,
    configure: impl FnOnce(&mut Command),
) -> Result<Result<(), String>, Box<dyn std::error::Error>> {
    let run_file = home.home.join("node.json");
    let _ = fs::remove_file(&run_file);
    let mut cmd = common::datamesh_std(&home.home);
    cmd.args(["node", "run"])
        .env("TSS2_LOG", "all+none")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let outcome = loop {
        if let Some(_status) = child.try_wait()? {
            let mut text = String::new();
            if let Some(mut err) = child.stderr.take() {
                std::io::Read::read_to_string(&mut err, &mut text)?;
            }
            break Err(text);
        }
        if run_file.exists() {
            break Ok(());
        }
        if std::time::Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Err("node run neither started nor exited within 90 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if outcome.is_ok() {
        child.kill()?; // the child this test started, by its pid
        child.wait()?;
        let _ = fs::remove_file(&run_file);
    }
    Ok(outcome)
}

/// Sets config.toml's unlock_slot.
fn set_unlock_slot(home: &Home, value: &str) -> TestResult {
    let path = home.home.join("config.toml");
    let text = fs::read_to_string(&path)?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("unlock_slot"))
        .map(str::to_owned)
        .collect();
    // Top-level keys go before the first table.
    let at = lines
        .iter()
        .position(|l| l.starts_with('['))
        .unwrap_or(lines.len());
    lines.insert(at, format!("unlock_slot = {value:?}"));
    fs::write(&path, lines.join("\n") + "\n")?;
    Ok(())
}

/// A home with a password slot (1), a SoftHSM2 slot labelled "hsm" (2) and a swtpm slot
/// labelled "machine" (3).
struct ThreeSlots {
    home: Home,
    hsm: SoftHsm,
    tpm: Swtpm,
}

impl ThreeSlots {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let home = Home::new()?;
        let hsm = SoftHsm::new(&home.dir.path().join("hsm"), "node", "1234")?;
        let tpm = Swtpm::start(&home.dir.path().join("tpm"))?;
        let this = Self { home, hsm, tpm };
        this.keys(&["slot", "add", "--label", "hsm", "--pkcs11"])
            .arg(this.hsm.module())
            .args(["--token", "node"])
            .assert()
            .success()
            .stdout("2\n");
        this.keys(&["slot", "add", "--label", "machine", "--tpm"])
            .assert()
            .success()
            .stdout("3\n");
        Ok(this)
    }

    /// `keys ARGS` with every credential: the password, the PIN, the TPM.
    fn keys(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.keys_without_password(args);
        cmd.env("DATAMESH_PASSWORD_FILE", &self.home.password);
        cmd
    }

    /// `keys ARGS` with the PIN and the TPM but no password.
    fn keys_without_password(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = datamesh(&self.home.home);
        cmd.arg("keys").args(args);
        for (key, value) in self.hardware() {
            cmd.env(key, value);
        }
        cmd
    }

    /// The variables that give the token store, its PIN and the TPM.
    fn hardware(&self) -> Vec<(&'static str, String)> {
        let (key, conf) = self.hsm.env();
        vec![
            (key, conf.display().to_string()),
            (
                "DATAMESH_PKCS11_PIN_FILE",
                self.hsm.pin_file().display().to_string(),
            ),
            ("DATAMESH_TPM_TCTI", self.tpm.tcti()),
            ("TSS2_LOG", "all+none".to_owned()),
        ]
    }

    /// `node run` with the hardware and, if `password`, the password file.
    fn run_node(
        &self,
        password: bool,
        extra: &[(&str, &str)],
    ) -> Result<Result<(), String>, Box<dyn std::error::Error>> {
        run_node(&self.home, |cmd| {
            for (key, value) in self.hardware() {
                cmd.env(key, value);
            }
            if password {
                cmd.env("DATAMESH_PASSWORD_FILE", &self.home.password);
            }
            for (key, value) in extra {
                cmd.env(key, value);
            }
        })
    }
}

/// `node run` unlocks through the slot config.toml's unlock_slot names (by kind, label
/// or id), DATAMESH_UNLOCK_SLOT overrides it, and the default is the first slot it can
/// open without a prompt.
#[test]
fn node_run_unlocks_through_the_slot_the_config_names() -> TestResult {
    let t = ThreeSlots::new()?;
    let unlocked = |t: &ThreeSlots| last_detail(&t.home, "unlock", "ok");
    // The default, auto: every credential at hand, the first slot opens.
    let config = fs::read_to_string(t.home.home.join("config.toml"))?;
    assert!(config.contains("unlock_slot = \"auto\""), "{config}");
    t.run_node(true, &[])?.map_err(|e| format!("auto: {e}"))?;
    assert_eq!(unlocked(&t)?, "slot 1 (password)");
    // Without the password, auto takes the first slot that needs no prompt.
    t.run_node(false, &[])?.map_err(|e| format!("auto: {e}"))?;
    assert_eq!(unlocked(&t)?, "slot 2 (pkcs11)");
    for (choice, expected) in [
        ("tpm", "slot 3 (tpm)"),
        ("machine", "slot 3 (tpm)"),
        ("label:hsm", "slot 2 (pkcs11)"),
        ("2", "slot 2 (pkcs11)"),
    ] {
        set_unlock_slot(&t.home, choice)?;
        t.run_node(true, &[])?
            .map_err(|e| format!("unlock_slot = {choice}: {e}"))?;
        assert_eq!(unlocked(&t)?, expected, "unlock_slot = {choice}");
    }
    // The environment overrides the config.
    t.run_node(true, &[("DATAMESH_UNLOCK_SLOT", "password")])?
        .map_err(|e| format!("DATAMESH_UNLOCK_SLOT: {e}"))?;
    assert_eq!(unlocked(&t)?, "slot 1 (password)");
    // A slot that does not open stops the node with one line naming it.
    set_unlock_slot(&t.home, "nobody's label")?;
    let Err(said) = t.run_node(true, &[])? else {
        return Err("the node started through a label no slot has".into());
    };
    assert!(
        said.contains("no slot labelled \"nobody's label\""),
        "{said}"
    );
    set_unlock_slot(&t.home, "tpm")?;
    let Err(said) = t.run_node(
        true,
        &[("DATAMESH_TPM_TCTI", "swtpm:host=127.0.0.1,port=1")],
    )?
    else {
        return Err("the node started through an unreachable TPM".into());
    };
    assert!(said.contains("is not reachable"), "{said}");
    // A bad value is refused when the config is read.
    set_unlock_slot(&t.home, "label:")?;
    let Err(said) = t.run_node(true, &[])? else {
        return Err("the node started with unlock_slot = \"label:\"".into());
    };
    assert!(said.contains("unlock_slot"), "{said}");
    Ok(())
}

/// Splits the master key into a 2-of-2 escrow set in `dir`; returns the share files.
fn split(t: &ThreeSlots, dir: &str) -> Result<Vec<std::path::PathBuf>, Box<dyn std::error::Error>> {
    let out = t.home.dir.path().join(dir);
    t.keys(&[
        "escrow",
        "split",
        "--threshold",
        "2",
        "--shares",
        "2",
        "--out-dir",
    ])
    .arg(&out)
    .assert()
    .success();
    let mut files: Vec<_> = fs::read_dir(&out)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    Ok(files)
}

/// `keys rekey` re-wraps the PKCS#11, TPM and password+keyfile slots (their credentials
/// at hand) besides the password slot, and drops, with a warning naming why, the slots
/// whose credentials are not given; afterwards the node unlocks through each hardware
/// slot alone, and the old master key (an escrow set of before) opens nothing.
#[test]
fn rekey_keeps_hardware_and_key_file_slots() -> TestResult {
    let t = ThreeSlots::new()?;
    let key_file = t.home.dir.path().join("node.key");
    let second = common::password_file(t.home.dir.path(), "second", "a password with a key file")?;
    let spare = common::password_file(t.home.dir.path(), "spare", "a spare password, not kept")?;
    let fast = common::Kdf::FAST.args();
    t.keys(&[
        "slot",
        "add",
        "--label",
        "usb",
        "--generate-key-file",
        "--new-key-file",
    ])
    .arg(&key_file)
    .arg("--new-password-file")
    .arg(&second)
    .args(&fast)
    .assert()
    .success()
    .stdout("4\n");
    t.keys(&["slot", "add", "--label", "spare", "--new-password-file"])
        .arg(&spare)
        .args(&fast)
        .assert()
        .success()
        .stdout("5\n");
    let old_set = split(&t, "old-set")?;

    let out = t
        .keys(&["rekey", "--key-file"])
        .arg(&key_file)
        .arg("--keep-slot-password-file")
        .arg(&second)
        .assert()
        .success();
    let said = stderr(out.get_output());
    assert!(
        said.contains("slot 5 (spare) was dropped: its password was not given"),
        "{said}"
    );
    assert_eq!(said.matches("was dropped").count(), 1, "{said}");
    let password = t.home.password.display().to_string();
    let listed = slots(&t.home, &["--password-file", &password], &[])?;
    let kinds: Vec<(u64, &str)> = listed.iter().map(|(id, k, _)| (*id, k.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (1, "password"),
            (2, "pkcs11"),
            (3, "tpm"),
            (4, "password+keyfile")
        ]
    );
    let rekey = last_detail(&t.home, "rekey", "ok")?;
    assert!(rekey.contains("slot(s) [1, 2, 3, 4] re-wrapped"), "{rekey}");

    // Each hardware slot alone starts the node; the key-file slot opens with its file.
    for kind in ["pkcs11", "tpm"] {
        t.run_node(false, &[("DATAMESH_UNLOCK_SLOT", kind)])?
            .map_err(|e| format!("node run through the {kind} slot after the rekey: {e}"))?;
        assert!(last_detail(&t.home, "unlock", "ok")?.contains(kind));
    }
    datamesh(&t.home.home)
        .args(["keys", "list", "--password-file"])
        .arg(&second)
        .arg("--key-file")
        .arg(&key_file)
        .assert()
        .success();
    datamesh(&t.home.home)
        .args(["keys", "list", "--no-hardware", "--password-file"])
        .arg(&spare)
        .assert()
        .code(2);

    // The old master key opens nothing: not the drill, not a recovery.
    let before = fs::read(t.home.keystore())?;
    t.keys(&["escrow", "verify"])
        .args(&old_set)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("another keystore"));
    let new_pw = common::password_file(t.home.dir.path(), "new-pw", "recovered with old shares")?;
    datamesh(&t.home.home)
        .args(["keys", "escrow", "recover"])
        .args(&old_set)
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(&fast)
        .assert()
        .code(2);
    assert_eq!(fs::read(t.home.keystore())?, before);

    // Without the PIN and with another TPM, the hardware slots cannot be re-wrapped:
    // dropped, each with its reason, never silently.
    let other = Swtpm::start(&t.home.dir.path().join("other-tpm"))?;
    let out = t
        .keys(&["rekey", "--unlock-slot", "1", "--key-file"])
        .arg(&key_file)
        .arg("--keep-slot-password-file")
        .arg(&second)
        .env_remove("DATAMESH_PKCS11_PIN_FILE")
        .env("DATAMESH_TPM_TCTI", other.tcti())
        .assert()
        .success();
    let said = stderr(out.get_output());
    assert!(
        said.contains("slot 2 (hsm) was dropped") && said.contains("needs a PIN"),
        "{said}"
    );
    assert!(
        said.contains("slot 3 (machine) was dropped") && said.contains("sealed by another TPM"),
        "{said}"
    );
    Ok(())
}

/// Under an unlock policy that forbids password-only unlock, an escrow recovery (the
/// token lost) adds a slot the policy allows instead of being refused: a password and a
/// key file in place, a PKCS#11 slot into a new home; a password slot is refused with
/// one line saying what to use, and nothing changes.
#[test]
fn escrow_recovery_under_a_policy_adds_a_slot_the_policy_allows() -> TestResult {
    let t = ThreeSlots::new()?;
    let set = split(&t, "set")?;
    // Only the token and the TPM open the keystore from now on.
    t.keys_without_password(&["slot", "remove", "1"])
        .assert()
        .success();
    t.keys_without_password(&["policy", "--require", "pkcs11,tpm,password+keyfile"])
        .assert()
        .success();
    let before = fs::read(t.home.keystore())?;
    let new_pw = common::password_file(t.home.dir.path(), "new-pw", "a recovered passphrase 77")?;
    let fast = common::Kdf::FAST.args();
    let out = datamesh(&t.home.home)
        .args(["keys", "escrow", "recover"])
        .args(&set)
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(&fast)
        .output()?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = error_line(&out);
    assert!(
        said.contains("allows only pkcs11, tpm, password+keyfile")
            && said.contains("--new-key-file"),
        "{said}"
    );
    assert_eq!(
        fs::read(t.home.keystore())?,
        before,
        "a refused recovery changed the keystore"
    );

    // The token and the TPM are gone; the shares add a password+keyfile slot.
    let key_file = t.home.dir.path().join("recovered.key");
    datamesh(&t.home.home)
        .args(["keys", "escrow", "recover"])
        .args(&set)
        .arg("--new-password-file")
        .arg(&new_pw)
        .arg("--new-key-file")
        .arg(&key_file)
        .arg("--generate-key-file")
        .args(&fast)
        .assert()
        .success()
        .stdout("4\n");
    datamesh(&t.home.home)
        .args(["--json", "keys", "slot", "list", "--password-file"])
        .arg(&new_pw)
        .arg("--key-file")
        .arg(&key_file)
        .assert()
        .success()
        .stdout(predicate::str::contains("password+keyfile"));
    datamesh(&t.home.home)
        .args(["keys", "list", "--password-file"])
        .arg(&new_pw)
        .assert()
        .failure();
    assert!(last_detail(&t.home, "recover", "ok")?.contains("new slot 4, password+keyfile"));

    // The machine is gone: into a new home, from a copy of the keystore, with a slot in
    // a new token.
    let copy = t.home.dir.path().join("keystore-copy");
    fs::write(&copy, fs::read(t.home.keystore())?)?;
    let spare = SoftHsm::new(&t.home.dir.path().join("spare-hsm"), "spare", "5678")?;
    let (conf_key, conf) = spare.env();
    let target = t.home.dir.path().join("new-home");
    datamesh(&target)
        .args(["keys", "escrow", "recover"])
        .args(&set)
        .arg("--keystore")
        .arg(&copy)
        .arg("--pkcs11")
        .arg(spare.module())
        .args(["--token", "spare", "--pin-file"])
        .arg(spare.pin_file())
        .env(conf_key, conf)
        .assert()
        .success();
    datamesh(&target)
        .args(["keys", "list", "--pkcs11-pin-file"])
        .arg(spare.pin_file())
        .env(conf_key, conf)
        .assert()
        .success();
    Ok(())
}

/// A password+pkcs11 and a password+tpm slot need both factors: the password alone, or
/// the token or the TPM alone, is refused.
#[test]
fn password_and_hardware_slots_need_both_factors() -> TestResult {
    let t = ThreeSlots::new()?;
    let both = common::password_file(t.home.dir.path(), "both", "a password beside the token")?;
    let fast = common::Kdf::FAST.args();
    for (kind, id) in [("--pkcs11", "4"), ("--tpm", "5")] {
        let mut cmd = t.keys(&["slot", "add", "--with-password", kind]);
        if kind == "--pkcs11" {
            cmd.arg(t.hsm.module())
                .args(["--token", "node", "--key-label", "second"]);
        }
        cmd.arg("--new-password-file")
            .arg(&both)
            .args(&fast)
            .assert()
            .success()
            .stdout(format!("{id}\n"));
    }
    let listed = slots(
        &t.home,
        &["--password-file", &t.home.password.display().to_string()],
        &[],
    )?;
    assert_eq!(listed[3].1, "password+pkcs11");
    assert!(listed[3].2.contains("its password and token"), "{listed:?}");
    assert_eq!(listed[4].1, "password+tpm");
    for id in ["4", "5"] {
        // Both: opens.
        t.keys_without_password(&["list", "--unlock-slot", id, "--password-file"])
            .arg(&both)
            .assert()
            .success();
        // The password alone (no hardware): refused.
        datamesh(&t.home.home)
            .args([
                "keys",
                "list",
                "--unlock-slot",
                id,
                "--no-hardware",
                "--password-file",
            ])
            .arg(&both)
            .assert()
            .failure()
            .stderr(predicate::str::contains("needs its password and"));
        // The hardware alone: refused, naming the password it needs.
        t.keys_without_password(&["list", "--unlock-slot", id])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .failure();
        // The hardware and a wrong password: refused as a wrong password.
        t.keys_without_password(&["list", "--unlock-slot", id, "--password-file"])
            .arg(&t.home.password)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("wrong password"));
    }
    // The token's PIN wrong: the password+pkcs11 slot fails, naming the PIN.
    let wrong = t.home.dir.path().join("wrong-pin");
    fs::write(&wrong, "9999\n")?;
    fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    t.keys_without_password(&["list", "--unlock-slot", "4", "--password-file"])
        .arg(&both)
        .arg("--pkcs11-pin-file")
        .arg(&wrong)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("wrong PIN"));
    Ok(())
}

/// Every slot operation is in the audit log: each add (with its kind), a remove, an
/// unlock-policy change, and an unlock that failed in the hardware (with its cause).
#[test]
fn every_slot_operation_is_in_the_audit_log() -> TestResult {
    let t = ThreeSlots::new()?;
    let adds: Vec<String> = audit_lines(&t.home)?
        .iter()
        .filter(|l| l["op"] == "slot-add" && l["outcome"] == "ok")
        .filter_map(|l| l["detail"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(adds.len(), 2, "{adds:?}");
    assert!(
        adds[0].starts_with("slot 2 (\"hsm\"), pkcs11 token \"node\""),
        "{adds:?}"
    );
    assert!(adds[1].starts_with("slot 3 (\"machine\"), tpm"), "{adds:?}");
    // A failed add is logged too.
    t.keys(&[
        "slot",
        "add",
        "--pkcs11",
        "/nonexistent/libpkcs11.so",
        "--token",
        "node",
    ])
    .assert()
    .failure();
    let failed = last_detail(&t.home, "slot-add", "failed")?;
    assert!(failed.contains("does not exist"), "{failed}");

    t.keys_without_password(&["slot", "remove", "1"])
        .assert()
        .success();
    assert_eq!(
        last_detail(&t.home, "slot-remove", "ok")?,
        "slot 1 (password, \"initial password\")"
    );
    t.keys_without_password(&["policy", "--require", "pkcs11,tpm"])
        .assert()
        .success();
    assert_eq!(last_detail(&t.home, "policy", "ok")?, "unlock: pkcs11, tpm");
    // A wrong PIN, then an unreachable TPM: each unlock failure names its cause.
    let wrong = t.home.dir.path().join("wrong-pin");
    fs::write(&wrong, "9999\n")?;
    fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    t.keys_without_password(&["list", "--unlock-slot", "2", "--pkcs11-pin-file"])
        .arg(&wrong)
        .assert()
        .code(1);
    let failed = last_detail(&t.home, "unlock", "failed")?;
    assert!(failed.contains("slot 2 (pkcs11): wrong PIN"), "{failed}");
    t.keys_without_password(&["list", "--unlock-slot", "3"])
        .env("DATAMESH_TPM_TCTI", "swtpm:host=127.0.0.1,port=1")
        .assert()
        .code(1);
    let failed = last_detail(&t.home, "unlock", "failed")?;
    assert!(failed.contains("slot 3 (tpm): the TPM at"), "{failed}");
    // The log's chain and anchor verify.
    t.keys_without_password(&["audit", "verify"])
        .assert()
        .success();
    Ok(())
}

/// A backup restored under an unlock policy: the new home's first slot is a token slot
/// and the policy is sealed at once, so it never has a password slot; a password slot
/// asked for under that policy is refused and nothing is written.
#[test]
fn a_backup_is_restored_with_a_token_slot_under_a_policy() -> TestResult {
    let t = ThreeSlots::new()?;
    let backup_pw = common::password_file(t.home.dir.path(), "backup-pw", "a backup passphrase 9")?;
    let bundle = t.home.dir.path().join("keys.dmbackup");
    t.keys(&["backup", "--out"])
        .arg(&bundle)
        .arg("--backup-password-file")
        .arg(&backup_pw)
        .args(common::Kdf::FAST.args())
        .assert()
        .success();
    let target = t.home.dir.path().join("restored");
    let new_pw = common::password_file(t.home.dir.path(), "new-pw", "a restored passphrase 21")?;
    let restore = || {
        let mut cmd = datamesh(&target);
        cmd.args([
            "keys",
            "restore",
            "--trust-on-first-use",
            "--require",
            "pkcs11,tpm",
        ])
        .arg(&bundle)
        .arg("--backup-password-file")
        .arg(&backup_pw);
        for (key, value) in t.hardware() {
            cmd.env(key, value);
        }
        cmd
    };
    let out = restore()
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(common::Kdf::FAST.args())
        .output()?;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(error_line(&out).contains("allows only pkcs11, tpm"));
    assert!(!target.join("keys/keystore").exists());

    restore()
        .arg("--pkcs11")
        .arg(t.hsm.module())
        .args(["--token", "node", "--key-label", "restored"])
        .assert()
        .success();
    let mut list = datamesh(&target);
    list.args(["keys", "slot", "list"]);
    for (key, value) in t.hardware() {
        list.env(key, value);
    }
    list.assert().success().stderr(predicate::str::contains(
        "only pkcs11, tpm slots may unlock",
    ));
    assert!(
        last_detail(
            &Home {
                dir: tempfile::tempdir()?,
                home: target.clone(),
                password: new_pw.clone(),
            },
            "restore",
            "ok"
        )?
        .contains("unlock: pkcs11, tpm")
    );
    Ok(())
}
