//! The algorithm policy and hybrid recipients from the outside: `init` makes a hybrid
//! file-encryption key, `keys export-public` prints its checksummed recipient, a typo'd
//! recipient is refused in one line, and every `[security]` violation (config or
//! environment) is a one-line error with a non-zero exit.

mod common;

use std::fs;

use common::{Home, Kdf, TestResult, datamesh, fresh, stderr};
use predicates::prelude::*;

#[test]
fn init_makes_a_hybrid_key_and_export_public_prints_its_recipient() -> TestResult {
    let home = Home::new()?;
    let keys = home.list()?;
    let hybrid = keys
        .iter()
        .find(|k| k["name"] == "file-encryption-hybrid")
        .ok_or("no hybrid key after init")?;
    assert_eq!(hybrid["algorithm"], "ml-kem-768+secp256k1");
    assert_eq!(hybrid["post_quantum"], true);
    let classical = keys
        .iter()
        .find(|k| k["name"] == "file-encryption")
        .ok_or("no classical key")?;
    assert_eq!(classical["post_quantum"], false);

    let out = home
        .keys(&["export-public", "file-encryption-hybrid"])
        .assert()
        .success();
    let recipient = String::from_utf8(out.get_output().stdout.clone())?;
    let recipient = recipient.trim();
    assert!(recipient.starts_with("dmpq1"), "{recipient}");
    assert_eq!(recipient.len(), 1959);
    assert_eq!(hybrid["recipient"], recipient);
    // The table shortens it; `keys show` prints it whole.
    let table = home.keys(&["list"]).assert().success();
    let table = String::from_utf8(table.get_output().stdout.clone())?;
    assert!(table.contains("ml-kem-768+secp256k1") && !table.contains(recipient));
    home.keys(&["show", "file-encryption-hybrid"])
        .assert()
        .success()
        .stdout(predicate::str::contains(recipient));

    // A typo'd recipient: one line, exit 1, before any node is asked.
    let mut typo: Vec<char> = recipient.chars().collect();
    typo[900] = if typo[900] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let file = home.dir.path().join("f.txt");
    fs::write(&file, b"hello")?;
    for cmd in [
        vec!["put", file.to_str().ok_or("path")?],
        vec!["share", "dm1x"],
    ] {
        let out = datamesh(&home.home)
            .args(&cmd)
            .args(["--to", &typo])
            .assert()
            .code(1);
        let err = stderr(out.get_output());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("checksum does not match"), "{err}");
    }
    Ok(())
}

#[test]
fn a_kdf_floor_refuses_weak_slots_when_created_and_when_unlocked() -> TestResult {
    // Creating: the floor from the environment refuses the fast test parameters.
    let (_dir, home, pw) = fresh()?;
    let out = datamesh(&home)
        .env("DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB", "65536")
        .arg("init")
        .arg("--password-file")
        .arg(&pw)
        .args(Kdf::FAST.args())
        .assert()
        .code(1);
    let err = stderr(out.get_output());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("below kdf_min_memory_kib = 65536"), "{err}");
    assert!(
        !home.join("keys").exists(),
        "a refused init made a keystore"
    );

    // Unlocking: a home made with them is refused once config.toml sets a floor.
    let home = Home::new()?;
    let config = home.home.join("config.toml");
    let text = fs::read_to_string(&config)?;
    assert!(text.contains("[security]") && text.contains("kdf_min_iterations = 0"));
    fs::write(
        &config,
        text.replace("kdf_min_iterations = 0", "kdf_min_iterations = 2"),
    )?;
    let out = home.keys(&["list"]).assert().code(1);
    let err = stderr(out.get_output());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("below kdf_min_iterations = 2"), "{err}");
    // The environment overrides the file.
    home.keys(&["list"])
        .env("DATAMESH_SECURITY_KDF_MIN_ITERATIONS", "0")
        .assert()
        .success();
    Ok(())
}

#[test]
fn invalid_policy_values_and_forbidden_binds_are_one_line_errors() -> TestResult {
    let home = Home::new()?;
    for (key, value) in [
        ("DATAMESH_SECURITY_RECIPIENTS", "quantum-ish"),
        ("DATAMESH_SECURITY_KDF", "pbkdf2-sha1"),
        ("DATAMESH_SECURITY_KDF_MIN_MEMORY_KIB", "-5"),
        ("DATAMESH_SECURITY_ALLOW_REMOTE_API", "perhaps"),
    ] {
        let out = home.keys(&["list"]).env(key, value).assert().code(1);
        let err = stderr(out.get_output());
        assert_eq!(err.lines().count(), 1, "{key}: {err}");
        assert!(err.contains("security policy"), "{key}: {err}");
    }
    let config = home.home.join("config.toml");
    let text = fs::read_to_string(&config)?;
    fs::write(
        &config,
        text.replace("recipients = \"hybrid\"", "recipients = \"none\""),
    )?;
    let out = home.keys(&["list"]).assert().code(1);
    assert_eq!(stderr(out.get_output()).lines().count(), 1);
    fs::write(&config, &text)?;

    // allow_remote_api = false: a non-loopback API is refused even with the flag.
    let out = datamesh(&home.home)
        .env("DATAMESH_SECURITY_ALLOW_REMOTE_API", "false")
        .args(["node", "run", "--api", "0.0.0.0:0", "--api-allow-remote"])
        .arg("--password-file")
        .arg(&home.password)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1);
    let err = stderr(out.get_output());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("allow_remote_api = false"), "{err}");
    Ok(())
}
