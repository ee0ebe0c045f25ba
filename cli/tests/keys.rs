//! `datamesh keys ...` from the outside: output, exit codes, error lines, refusals.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use predicates::prelude::*;

#[test]
fn list_json_has_every_version_with_hex_public_keys() -> TestResult {
    let h = Home::new()?;
    h.keys(&["rotate"]).assert().success();
    let keys = h.list()?;
    assert_eq!(keys.len(), 5);
    for key in &keys {
        for field in ["name", "purpose", "version", "status", "public_key"] {
            assert!(!key[field].is_null(), "{field} in {key}");
        }
        let hex = key["public_key"].as_str().ok_or("public_key")?;
        // The file-authority root is listed by its 32-byte fingerprint, never itself.
        let expected_len = match key["purpose"].as_str() {
            Some("node-identity" | "file-authority") => 64,
            Some("file-encryption-hybrid") => 2 * 1217,
            _ => 66,
        };
        assert_eq!(hex.len(), expected_len);
        if key["purpose"] == "file-encryption" {
            assert!(
                hex.starts_with("02") || hex.starts_with("03"),
                "compressed SEC1"
            );
            assert!(key["key_id"].is_string());
        }
    }
    let statuses: Vec<(&str, u64, &str)> = keys
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap_or_default(),
                k["version"].as_u64().unwrap_or_default(),
                k["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("node-identity", 1, "active"),
            ("file-encryption", 1, "deprecated"),
            ("file-authority", 1, "active"),
            ("file-encryption-hybrid", 1, "active"),
            ("file-encryption", 2, "active"),
        ]
    );
    // The table: results only on stdout, one line per version plus the header.
    let out = h.keys(&["list"]).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone())?;
    // (Unlock-slot lines follow the key table: count the key versions' rows.)
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with("node-identity") || l.starts_with("file-"))
        .count();
    assert_eq!(rows, 5, "{stdout}");
    assert!(stdout.starts_with("NAME"));
    Ok(())
}

#[test]
fn wrong_password_is_one_line_exit_2_and_changes_nothing() -> TestResult {
    let h = Home::new()?;
    let wrong = password_file(h.dir.path(), "wrong", "not the password at all")?;
    let before = fs::read(h.keystore())?;
    for args in [
        vec!["keys", "rotate"],
        vec!["keys", "list"],
        vec!["keys", "revoke", "file-encryption", "1", "--reason", "x"],
        vec!["keys", "passwd", "--new-password-file"],
    ] {
        let mut cmd = datamesh(&h.home);
        cmd.args(&args);
        if args.last() == Some(&"--new-password-file") {
            cmd.arg(&h.password);
        }
        let out = cmd.arg("--password-file").arg(&wrong).assert().code(2);
        let err = stderr(out.get_output());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: wrong password"), "{err}");
        assert!(out.get_output().stdout.is_empty());
        assert_eq!(fs::read(h.keystore())?, before, "{args:?}");
    }
    Ok(())
}

#[test]
fn missing_home_and_unknown_names_are_not_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pw = password_file(dir.path(), "pw", PASSWORD)?;
    let missing = dir.path().join("nowhere");
    datamesh(&missing)
        .args(["keys", "list", "--password-file"])
        .arg(&pw)
        .assert()
        .code(3)
        .stderr(predicate::str::contains("datamesh init"));
    // Not even a prompt is shown for a home without a keystore.
    datamesh(&missing).args(["keys", "list"]).assert().code(3);
    let h = Home::new()?;
    h.keys(&["show", "nope"]).assert().code(3);
    h.keys(&["rotate", "nope"]).assert().code(3);
    h.keys(&["destroy", "file-encryption", "9"])
        .assert()
        .code(3);
    h.keys(&["slot", "remove", "9"]).assert().code(3);
    h.keys(&["export-public", "nope"]).assert().code(3);
    Ok(())
}

#[test]
fn rotate_revoke_destroy_through_the_binary() -> TestResult {
    let h = Home::new()?;
    h.keys(&["rotate"])
        .assert()
        .success()
        .stderr(predicate::str::contains("still decrypts"));
    h.keys(&[
        "revoke",
        "file-encryption",
        "2",
        "--reason",
        "laptop stolen",
    ])
    .assert()
    .success()
    .stderr(predicate::str::contains("v3 is the new active version"));
    let out = h.keys(&["export-public", "--json"]).assert().success();
    let active: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    assert_eq!(active["version"], 3);
    let out = h.keys(&["export-public"]).assert().success();
    assert_eq!(
        String::from_utf8(out.get_output().stdout.clone())?.trim(),
        active["public_key"].as_str().ok_or("hex")?
    );
    // Destroying a file-encryption version needs --force while files may need it.
    h.keys(&["destroy", "file-encryption", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--force"));
    h.keys(&["destroy", "file-encryption", "3", "--force"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("active"));
    h.keys(&["destroy", "file-encryption", "1", "--force"])
        .assert()
        .success();
    let keys = h.list()?;
    let status = |v: u64| {
        keys.iter()
            .find(|k| k["name"] == "file-encryption" && k["version"] == v)
            .map(|k| k["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(status(1).as_deref(), Some("destroyed"));
    assert_eq!(status(2).as_deref(), Some("revoked"));
    assert_eq!(status(3).as_deref(), Some("active"));
    let out = h.keys(&["show", "file-encryption"]).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone())?;
    assert!(text.contains("revoke reason: laptop stolen"), "{text}");
    Ok(())
}

#[test]
fn policy_show_and_set() -> TestResult {
    let h = Home::new()?;
    let out = h.keys(&["policy", "--json"]).assert().success();
    let policy: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    assert_eq!(policy["interval_days"], 90);
    assert_eq!(policy["max_age_days"], 365);
    assert_eq!(policy["auto"], true);
    h.keys(&["policy", "--interval-days", "30", "--auto", "off"])
        .assert()
        .success()
        .stdout(predicate::str::contains("interval: 30 days"))
        .stdout(predicate::str::contains("auto:     off"));
    h.keys(&["policy", "--interval-days", "400"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("maximum age"));
    h.keys(&["policy", "--auto", "maybe"]).assert().code(1);
    Ok(())
}

#[test]
fn passwd_and_slots() -> TestResult {
    let h = Home::new()?;
    let second = password_file(h.dir.path(), "second", "second correct horse battery")?;
    let second_path = second.to_str().ok_or("path")?;
    let out = h
        .keys(&[
            "slot",
            "add",
            "--label",
            "backup admin",
            "--new-password-file",
            second_path,
        ])
        .args(Kdf::FAST.args())
        .assert()
        .success();
    assert_eq!(
        String::from_utf8(out.get_output().stdout.clone())?.trim(),
        "2"
    );
    let out = h.keys(&["slot", "list", "--json"]).assert().success();
    let slots: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    assert_eq!(slots.as_array().map(Vec::len), Some(2));
    assert_eq!(slots[1]["label"], "backup admin");
    assert_eq!(slots[0]["current"], true);
    h.keys(&["slot", "remove", "1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unlocked with"));
    // Change the first password; the second slot still opens the same keys.
    let new = password_file(h.dir.path(), "new", "a brand new correct horse battery")?;
    let keys_before = h.list()?;
    h.keys(&["passwd", "--new-password-file", new.to_str().ok_or("path")?])
        .assert()
        .success();
    h.keys(&["list"]).assert().code(2);
    let out = datamesh(&h.home)
        .args(["keys", "list", "--json", "--password-file"])
        .arg(&new)
        .assert()
        .success();
    let keys_after: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout)?;
    assert_eq!(keys_before, keys_after);
    datamesh(&h.home)
        .args(["keys", "slot", "remove", "1", "--password-file"])
        .arg(&second)
        .assert()
        .success();
    datamesh(&h.home)
        .args(["keys", "slot", "remove", "2", "--password-file"])
        .arg(&second)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("last unlock slot"));
    // A weak new password is refused unless allowed.
    let weak = password_file(h.dir.path(), "weak", "abc123")?;
    datamesh(&h.home)
        .args(["keys", "passwd", "--password-file"])
        .arg(&second)
        .arg("--new-password-file")
        .arg(&weak)
        .assert()
        .code(2);
    Ok(())
}

#[test]
fn audit_report_and_verify_find_tampering() -> TestResult {
    let h = Home::new()?;
    h.keys(&["rotate"]).assert().success();
    let _ = datamesh(&h.home)
        .args(["keys", "list", "--password-file"])
        .arg(h.dir.path().join("no-such-file"))
        .assert()
        .code(1);
    let wrong = password_file(h.dir.path(), "wrong", "nope nope nope nope")?;
    datamesh(&h.home)
        .args(["keys", "list", "--password-file"])
        .arg(&wrong)
        .assert()
        .code(2);
    let out = datamesh(&h.home)
        .args(["keys", "audit", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    assert_eq!(report["chain"]["intact"], true);
    assert_eq!(report["counts"]["rotate"]["ok"], 1);
    assert_eq!(report["counts"]["unlock"]["failed"], 1);
    datamesh(&h.home)
        .args(["keys", "audit"])
        .assert()
        .success()
        .stdout(predicate::str::contains("failures and warnings"));
    h.keys(&["audit", "verify"])
        .assert()
        .success()
        .stdout(predicate::str::contains("intact"));
    // Edit one line in the middle: verify fails with exit code 5.
    let log = fs::read_to_string(h.audit_log())?;
    let edited = log.replacen("\"op\":\"rotate\"", "\"op\":\"policy\"", 1);
    assert_ne!(edited, log);
    fs::write(h.audit_log(), edited)?;
    let out = h.keys(&["audit", "verify"]).assert().code(5);
    assert!(stderr(out.get_output()).contains("broken at line"));
    datamesh(&h.home)
        .args(["keys", "audit"])
        .assert()
        .success()
        .stdout(predicate::str::contains("CHAIN BROKEN"));
    Ok(())
}

#[test]
fn tampered_keystore_is_an_integrity_error() -> TestResult {
    let h = Home::new()?;
    let mut bytes = fs::read(h.keystore())?;
    let i = bytes.len() / 2 + 40;
    if let Some(b) = bytes.get_mut(i) {
        *b ^= 0x20;
    }
    fs::write(h.keystore(), &bytes)?;
    let out = h.keys(&["list"]).assert().code(5);
    let err = stderr(out.get_output());
    assert!(err.contains("damaged or was tampered with"), "{err}");
    assert_eq!(err.lines().count(), 1);
    Ok(())
}

#[test]
fn loose_permissions_are_refused_naming_the_fix() -> TestResult {
    let h = Home::new()?;
    fs::set_permissions(h.keystore(), fs::Permissions::from_mode(0o644))?;
    h.keys(&["list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "chmod 600 {}",
            h.keystore().display()
        )));
    fs::set_permissions(h.keystore(), fs::Permissions::from_mode(0o600))?;
    let keys_dir = h.home.join("keys");
    fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o750))?;
    h.keys(&["list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "chmod 700 {}",
            keys_dir.display()
        )));
    fs::set_permissions(&keys_dir, fs::Permissions::from_mode(0o700))?;
    h.keys(&["list"]).assert().success();
    Ok(())
}

#[test]
fn import_legacy_seals_then_erases() -> TestResult {
    let h = Home::new()?;
    let legacy = h.dir.path().join("legacy");
    fs::create_dir(&legacy)?;
    let secret = datamesh_core::ecies::SecretKey::generate();
    fs::write(legacy.join("default.key"), *secret.to_bytes())?;
    fs::write(
        legacy.join("default.info"),
        format!(r#"{{"public_key":"{}"}}"#, secret.public_key()),
    )?;
    h.keys(&["import-legacy"])
        .arg(&legacy)
        .assert()
        .success()
        .stdout(predicate::str::contains("legacy-default v1"));
    assert!(!legacy.join("default.key").exists());
    assert!(!legacy.join("default.info").exists());
    let keys = h.list()?;
    let imported = keys
        .iter()
        .find(|k| k["name"] == "legacy-default")
        .ok_or("imported key")?;
    assert_eq!(imported["public_key"], secret.public_key().to_string());
    assert_eq!(imported["status"], "deprecated");
    h.keys(&["import-legacy"]).arg(&legacy).assert().code(3);
    Ok(())
}

#[test]
fn quiet_and_verbose() -> TestResult {
    let h = Home::new()?;
    let out = h.keys(&["rotate", "-q"]).assert().success();
    assert!(out.get_output().stderr.is_empty());
    h.keys(&["list", "-v"])
        .assert()
        .success()
        .stderr(predicate::str::contains("unlocked slot 1"));
    Ok(())
}
