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

/// `init --security-profile fips`: the config says so, the keystore has a P-256
/// file-encryption key and one PBKDF2-HMAC-SHA256 password slot (OWASP's 600,000
/// iterations), and `keys list` (text and JSON) and `export-public` say so.
#[test]
fn a_fips_home_has_a_p256_key_and_a_pbkdf2_slot() -> TestResult {
    let (_dir, home, pw) = fresh()?;
    datamesh(&home)
        .args(["init", "--security-profile", "fips", "--password-file"])
        .arg(&pw)
        .assert()
        .success();
    let config = fs::read_to_string(home.join("config.toml"))?;
    assert!(
        config.contains("profile = \"fips\"")
            && config.contains("recipients = \"p256-only\"")
            && config.contains("kdf = \"pbkdf2-sha256\""),
        "{config}"
    );
    let keys_cmd = |args: &[&str]| {
        let mut cmd = datamesh(&home);
        cmd.arg("keys").args(args).arg("--password-file").arg(&pw);
        cmd
    };
    let out = keys_cmd(&["list", "--json"]).assert().success();
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.get_output().stdout)?;
    let p256 = keys
        .iter()
        .find(|k| k["name"] == "file-encryption-p256")
        .ok_or("no P-256 key after a fips init")?;
    assert_eq!(p256["algorithm"], "p256");
    assert_eq!(p256["wraps_with"], "ecies-p256");
    assert_eq!(p256["post_quantum"], false);
    let slots = p256["protected_by"].as_array().ok_or("no protected_by")?;
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0]["kind"], "password");
    assert_eq!(slots[0]["kdf"]["algorithm"], "pbkdf2-sha256");
    assert_eq!(slots[0]["kdf"]["iterations"], 600_000);
    let hybrid = keys
        .iter()
        .find(|k| k["name"] == "file-encryption-hybrid")
        .ok_or("no hybrid key")?;
    assert_eq!(hybrid["wraps_with"], "ml-kem-768+ecies-secp256k1");

    let table = keys_cmd(&["list"]).assert().success();
    let table = String::from_utf8(table.get_output().stdout.clone())?;
    assert!(
        table.contains("file-encryption-p256 (p256)")
            && table
                .contains("slot 1 (password): password -> pbkdf2-sha256 i=600000 -> AES-256-GCM"),
        "{table}"
    );
    let out = keys_cmd(&["export-public", "file-encryption-p256"])
        .assert()
        .success();
    let recipient = String::from_utf8(out.get_output().stdout.clone())?;
    let recipient = recipient.trim();
    assert!(
        recipient.starts_with("dmp256v1") && recipient.len() == 68,
        "{recipient}"
    );
    assert_eq!(p256["recipient"], recipient);

    // A typo'd P-256 recipient: one line, exit 1.
    let mut typo: Vec<char> = recipient.chars().collect();
    typo[30] = if typo[30] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let file = home.join("f.txt");
    fs::write(&file, b"hello")?;
    let out = datamesh(&home)
        .arg("put")
        .arg(&file)
        .args(["--to", &typo])
        .assert()
        .code(1);
    let err = stderr(out.get_output());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("P-256 recipient checksum does not match"),
        "{err}"
    );
    Ok(())
}

/// The fips profile refuses Argon2id: a new slot with Argon2id flags, fewer PBKDF2
/// iterations than OWASP's count, and unlocking a home through an Argon2id slot; each
/// one line, exit 1. A profile that contradicts an explicit recipient policy is refused.
#[test]
fn the_fips_profile_refuses_argon2id_and_weak_pbkdf2() -> TestResult {
    let (_dir, home, pw) = fresh()?;
    for (args, expected) in [
        (
            vec!["--kdf-memory-kib", "8"],
            "pbkdf2-sha256 (the security policy's kdf) has no memory",
        ),
        (
            vec!["--kdf-iterations", "100000"],
            "pbkdf2-sha256 iterations = 100000 is below the minimum of 600000",
        ),
    ] {
        let out = datamesh(&home)
            .args(["init", "--security-profile", "fips", "--password-file"])
            .arg(&pw)
            .args(&args)
            .assert()
            .code(1);
        let err = stderr(out.get_output());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !home.join("keys").exists(),
            "a refused init made a keystore"
        );
    }

    // A standard home (an Argon2id slot), unlocked under the fips profile: refused.
    let standard = Home::new()?;
    let out = standard
        .keys(&["list"])
        .env("DATAMESH_SECURITY_PROFILE", "fips")
        .assert()
        .code(1);
    let err = stderr(out.get_output());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("profile fips") && err.contains("argon2id is not an approved password KDF"),
        "{err}"
    );
    // Under the standard profile it still opens; a new slot follows the policy's kdf.
    standard.keys(&["list"]).assert().success();

    let out = standard
        .keys(&["list"])
        .env("DATAMESH_SECURITY_PROFILE", "fips")
        .env("DATAMESH_SECURITY_RECIPIENTS", "pq-required")
        .assert()
        .code(1);
    let err = stderr(out.get_output());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("contradicts recipients"), "{err}");
    let out = standard
        .keys(&["list"])
        .env("DATAMESH_SECURITY_PROFILE", "nist-ish")
        .assert()
        .code(1);
    assert_eq!(stderr(out.get_output()).lines().count(), 1);
    Ok(())
}
