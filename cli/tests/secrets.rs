//! Everything a full CLI session prints or logs holds no secret byte and no password.

mod common;

use std::fs;

use common::*;
use datamesh_keys::{Keystore, Password};

#[test]
fn a_full_session_prints_and_logs_no_secret() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    let first = "first Secret passphrase 9471";
    let second = "second Secret passphrase 1862";
    let pw1 = password_file(dir.path(), "pw1", first)?;
    let pw2 = password_file(dir.path(), "pw2", second)?;
    let wrong = password_file(dir.path(), "wrong", "wrong Secret passphrase 5550")?;
    let legacy = dir.path().join("legacy");
    fs::create_dir(&legacy)?;
    let legacy_key = datamesh_core::ecies::SecretKey::generate();
    fs::write(legacy.join("old.key"), *legacy_key.to_bytes())?;

    let mut printed = String::new();
    let mut run = |args: &[&str], extra: &[&std::path::Path]| {
        for json in [false, true] {
            let mut cmd = datamesh(&home);
            cmd.arg("-vv");
            if json {
                cmd.arg("--json");
            }
            cmd.args(args).args(extra);
            let output = cmd.output();
            if let Ok(output) = output {
                printed.push_str(&String::from_utf8_lossy(&output.stdout));
                printed.push_str(&String::from_utf8_lossy(&output.stderr));
            }
            if args.first() == Some(&"init") {
                break;
            }
        }
    };
    let kdf = Kdf::FAST.args();
    let init: Vec<&str> = ["init"]
        .into_iter()
        .chain(kdf.iter().map(String::as_str))
        .chain(["--password-file"])
        .collect();
    run(&init, &[&pw1]);
    run(&["keys", "list", "--password-file"], &[&pw1]);
    run(&["keys", "list", "--password-file"], &[&wrong]);
    run(
        &["keys", "show", "file-encryption", "--password-file"],
        &[&pw1],
    );
    run(&["keys", "rotate", "--password-file"], &[&pw1]);
    run(
        &[
            "keys",
            "revoke",
            "file-encryption",
            "1",
            "--reason",
            "test",
            "--password-file",
        ],
        &[&pw1],
    );
    run(
        &["keys", "destroy", "file-encryption", "2", "--password-file"],
        &[&pw1],
    );
    run(
        &["keys", "policy", "--auto", "off", "--password-file"],
        &[&pw1],
    );
    run(
        &["keys", "slot", "add", "--label", "two", "--password-file"],
        &[&pw1, std::path::Path::new("--new-password-file"), &pw2],
    );
    run(&["keys", "slot", "list", "--password-file"], &[&pw1]);
    run(
        &["keys", "passwd", "--password-file"],
        &[&pw2, std::path::Path::new("--new-password-file"), &pw1],
    );
    run(&["keys", "export-public", "--password-file"], &[&pw1]);
    run(
        &["keys", "export-public", "node-identity", "--password-file"],
        &[&pw1],
    );
    run(
        &["keys", "import-legacy"],
        &[&legacy, std::path::Path::new("--password-file"), &pw1],
    );
    run(&["keys", "audit"], &[]);
    run(&["keys", "audit", "verify", "--password-file"], &[&pw1]);
    printed.push_str(&fs::read_to_string(home.join("keys/audit.log"))?);
    assert!(
        printed.contains("file-encryption"),
        "the session ran: {printed}"
    );

    let keystore = Keystore::open(&home, &Password::new(first)?)?;
    let mut secrets: Vec<Vec<u8>> = keystore
        .decryption_keys(true)
        .iter()
        .map(|(_, sk)| sk.to_bytes().to_vec())
        .collect();
    secrets.push(keystore.node_identity_seed().to_vec());
    secrets.push(legacy_key.to_bytes().to_vec());
    assert!(secrets.len() >= 4);
    let raw = printed.as_bytes();
    for secret in &secrets {
        let lower = data_encoding::HEXLOWER.encode(secret);
        let upper = data_encoding::HEXUPPER.encode(secret);
        assert!(!printed.contains(&lower) && !printed.contains(&upper));
        assert!(!raw.windows(secret.len()).any(|w| w == secret.as_slice()));
        let prefix = data_encoding::HEXLOWER.encode(&secret[..8]);
        assert!(!printed.contains(&prefix));
    }
    for password in [first, second, "wrong Secret passphrase 5550"] {
        assert!(!printed.contains(password));
        assert!(!printed.to_lowercase().contains(&password.to_lowercase()));
    }
    // The sealed file holds neither either.
    let sealed = fs::read(home.join("keys/keystore"))?;
    for secret in &secrets {
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
    }
    Ok(())
}
