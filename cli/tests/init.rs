//! `datamesh init`: the home it makes, its modes whatever the umask, its refusals.

mod common;

use std::fs;

use common::*;
use predicates::prelude::*;

#[test]
fn init_makes_a_private_home_whatever_the_umask() -> TestResult {
    for umask in ["000", "022", "077"] {
        let (_dir, home, pw) = fresh()?;
        let script = format!("umask {umask}; exec \"$0\" \"$@\"");
        assert_cmd::Command::new("sh")
            .env_remove("DATAMESH_HOME")
            .env_remove("DATAMESH_PASSWORD_FILE")
            .arg("-c")
            .arg(&script)
            .arg(BIN)
            .arg("--home")
            .arg(&home)
            .arg("init")
            .arg("--password-file")
            .arg(&pw)
            .args(Kdf::FAST.args())
            .assert()
            .success();
        assert_eq!(mode(&home)?, 0o700, "home, umask {umask}");
        assert_eq!(mode(&home.join("keys"))?, 0o700, "keys/, umask {umask}");
        for file in [
            "keys/keystore",
            "keys/audit.log",
            "keys/lock",
            "config.toml",
            "api-token",
        ] {
            assert_eq!(mode(&home.join(file))?, 0o600, "{file}, umask {umask}");
        }
        // Later writes keep the modes too.
        let mut cmd = assert_cmd::Command::new("sh");
        cmd.env_remove("DATAMESH_HOME")
            .arg("-c")
            .arg(&script)
            .arg(BIN)
            .arg("--home")
            .arg(&home)
            .args(["keys", "rotate", "--password-file"])
            .arg(&pw)
            .assert()
            .success();
        assert_eq!(mode(&home.join("keys/keystore"))?, 0o600);
    }
    Ok(())
}

#[test]
fn init_writes_config_token_and_prints_the_keys() -> TestResult {
    let (_dir, home, pw) = fresh()?;
    let out = datamesh(&home)
        .args(["--json", "init", "--password-file"])
        .arg(&pw)
        .args(Kdf::FAST.args())
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)?;
    let keys = json["keys"].as_array().ok_or("keys")?;
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[0]["name"], "node-identity");
    assert_eq!(keys[0]["algorithm"], "ed25519");
    assert_eq!(keys[1]["name"], "file-encryption");
    assert_eq!(keys[1]["public_key"].as_str().map(str::len), Some(66));
    assert_eq!(keys[2]["name"], "file-authority");
    assert_eq!(keys[2]["purpose"], "file-authority");
    assert_eq!(keys[3]["name"], "file-encryption-hybrid");
    assert_eq!(keys[3]["algorithm"], "ml-kem-768+secp256k1");
    // 33-byte secp256k1 key and 1184-byte ML-KEM-768 key, in hex.
    assert_eq!(keys[3]["public_key"].as_str().map(str::len), Some(2 * 1217));

    let config: toml::Table = fs::read_to_string(home.join("config.toml"))?.parse()?;
    assert_eq!(
        config.get("listen_address").and_then(|v| v.as_str()),
        Some("/ip4/127.0.0.1/tcp/0")
    );
    assert_eq!(
        config.get("api_address").and_then(|v| v.as_str()),
        Some("127.0.0.1:0")
    );
    let token = fs::read_to_string(home.join("api-token"))?;
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    // A second init refuses and changes nothing.
    let before = fs::read(home.join("keys/keystore"))?;
    datamesh(&home)
        .args(["init", "--password-file"])
        .arg(&pw)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(fs::read(home.join("keys/keystore"))?, before);
    assert_eq!(fs::read_to_string(home.join("api-token"))?, token);
    Ok(())
}

#[test]
fn weak_and_missing_passwords_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let weak = password_file(dir.path(), "weak", "password1")?;
    datamesh(&home)
        .args(["init", "--password-file"])
        .arg(&weak)
        .args(Kdf::FAST.args())
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("too weak")
                .and(predicate::str::contains("--allow-weak-password")),
        );
    assert!(!home.join("keys/keystore").exists());
    let empty = password_file(dir.path(), "empty", "")?;
    datamesh(&home)
        .args(["init", "--allow-weak-password", "--password-file"])
        .arg(&empty)
        .args(Kdf::FAST.args())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty"));
    // No password file and no terminal (setsid drops the controlling terminal, so this
    // holds when the tests run from one): a clear error, not a hang.
    assert_cmd::Command::new("setsid")
        .args(["--wait", BIN, "--home"])
        .arg(&home)
        .arg("init")
        .args(Kdf::FAST.args())
        .env_remove("DATAMESH_PASSWORD_FILE")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--password-file"));
    datamesh(&home)
        .args(["init", "--allow-weak-password", "--password-file"])
        .arg(&weak)
        .args(Kdf::FAST.args())
        .assert()
        .success();
    Ok(())
}

#[test]
fn a_one_mebibyte_password_works_and_a_longer_one_is_refused() -> TestResult {
    let (dir, home, _) = fresh()?;
    let huge = password_file(dir.path(), "huge", &"x".repeat(1 << 20))?;
    datamesh(&home)
        .args(["init", "--allow-weak-password", "--password-file"])
        .arg(&huge)
        .args(Kdf::FAST.args())
        .assert()
        .success();
    datamesh(&home)
        .args(["keys", "list", "--password-file"])
        .arg(&huge)
        .assert()
        .success();
    let longer = password_file(dir.path(), "longer", &"x".repeat((1 << 20) + 1))?;
    datamesh(&home)
        .args(["keys", "list", "--password-file"])
        .arg(&longer)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("limit"));
    Ok(())
}

#[test]
fn kdf_parameters_are_bounded() -> TestResult {
    let (_dir, home, pw) = fresh()?;
    datamesh(&home)
        .args(["init", "--kdf-memory-kib", "4194304", "--password-file"])
        .arg(&pw)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exceeds the limit"));
    assert!(!home.exists());
    Ok(())
}

#[test]
fn password_file_from_the_environment() -> TestResult {
    let (_dir, home, pw) = fresh()?;
    assert_cmd::Command::new(BIN)
        .env("DATAMESH_HOME", &home)
        .env("DATAMESH_PASSWORD_FILE", &pw)
        .arg("init")
        .args(Kdf::FAST.args())
        .assert()
        .success();
    assert_cmd::Command::new(BIN)
        .env("DATAMESH_HOME", &home)
        .env("DATAMESH_PASSWORD_FILE", &pw)
        .args(["keys", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("file-encryption"));
    Ok(())
}

#[test]
fn help_and_usage_errors() -> TestResult {
    assert_cmd::Command::new(BIN)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("keys"));
    assert_cmd::Command::new(BIN)
        .args(["keys", "revoke", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Example"));
    let out = assert_cmd::Command::new(BIN)
        .args(["keys", "frobnicate"])
        .assert()
        .code(1);
    assert_eq!(stderr(out.get_output()).lines().count(), 1);
    Ok(())
}

#[test]
fn an_api_token_or_node_json_open_to_others_is_refused() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new()?;
    let token = home.home.join("api-token");
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644))?;
    // The node refuses to serve with a token others may have read (before binding).
    datamesh(&home.home)
        .args(["node", "run", "--password-file"])
        .arg(&home.password)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("api-token").and(predicate::str::contains("chmod 600")));
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600))?;
    // A node.json others can write could send the token anywhere: refused.
    let run = home.home.join("node.json");
    fs::write(
        &run,
        r#"{"pid": 1, "peer_id": "12D3Koo", "api": "127.0.0.1:9", "listen": []}"#,
    )?;
    fs::set_permissions(&run, fs::Permissions::from_mode(0o666))?;
    datamesh(&home.home)
        .arg("ls")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("node.json").and(predicate::str::contains("chmod 600")));
    Ok(())
}

#[test]
fn a_non_loopback_api_address_is_refused_without_the_explicit_option() -> TestResult {
    let home = Home::new()?;
    for api in ["0.0.0.0:0", "[::]:0"] {
        datamesh(&home.home)
            .args(["node", "run", "--api", api, "--password-file"])
            .arg(&home.password)
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains("not a loopback address")
                    .and(predicate::str::contains("--api-allow-remote")),
            );
    }
    // The same from config.toml.
    let config = home.home.join("config.toml");
    let text = fs::read_to_string(&config)?.replace(
        "api_address = \"127.0.0.1:0\"",
        "api_address = \"0.0.0.0:0\"",
    );
    fs::write(&config, text)?;
    datamesh(&home.home)
        .args(["node", "run", "--password-file"])
        .arg(&home.password)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("api_allow_remote = true"));
    Ok(())
}
