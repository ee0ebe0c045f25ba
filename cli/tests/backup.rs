//! `datamesh keys backup` / `restore` from the outside: round trip into a new home,
//! tampering, wrong password, nothing written on error.

mod common;

use std::fs;

use common::*;

fn arg(name: &str, path: &std::path::Path) -> String {
    format!("--{name}={}", path.display())
}

/// `keys backup` of `h` into `keys.dmbackup` beside it, sealed with the password in
/// `backup_pw`.
fn backup(
    h: &Home,
    backup_pw: &std::path::Path,
) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let bundle = h.dir.path().join("keys.dmbackup");
    h.keys(&[
        "backup",
        &arg("out", &bundle),
        &arg("backup-password-file", backup_pw),
    ])
    .args(Kdf::FAST.args())
    .assert()
    .success();
    Ok(bundle)
}

#[test]
fn backup_verify_and_restore_into_a_new_home() -> TestResult {
    let h = Home::new()?;
    h.keys(&["rotate"]).assert().success();
    let backup_pw = password_file(h.dir.path(), "backup-pw", "a separate backup passphrase")?;
    let new_pw = password_file(h.dir.path(), "new-pw", "the restored home's passphrase")?;
    let bundle = backup(&h, &backup_pw)?;
    assert_eq!(mode(&bundle)?, 0o600);
    // Never overwrites.
    h.keys(&[
        "backup",
        &arg("out", &bundle),
        &arg("backup-password-file", &backup_pw),
    ])
    .assert()
    .code(1);

    let out = datamesh(&h.home)
        .args(["keys", "backup", "verify"])
        .arg(&bundle)
        .arg(arg("backup-password-file", &backup_pw))
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone())?;
    // node-identity, file-encryption v1 and v2, file-authority, file-encryption-hybrid.
    assert!(stdout.contains("5 key version(s)"), "{stdout}");

    let new_home = h.dir.path().join("new-home");
    datamesh(&new_home)
        .args(["keys", "restore", "--trust-on-first-use"])
        .arg(&bundle)
        .arg(arg("backup-password-file", &backup_pw))
        .arg(arg("new-password-file", &new_pw))
        .args(Kdf::FAST.args())
        .assert()
        .success();
    for (path, want) in [
        (new_home.join("config.toml"), 0o600),
        (new_home.join("api-token"), 0o600),
        (new_home.join("keys/keystore"), 0o600),
    ] {
        assert_eq!(mode(&path)?, want, "{}", path.display());
    }
    assert_eq!(fs::read_to_string(new_home.join("api-token"))?.len(), 64);
    let restored = Home {
        dir: tempfile::tempdir()?,
        home: new_home.clone(),
        password: new_pw.clone(),
    };
    assert_eq!(restored.list()?, h.list()?);
    restored.keys(&["audit", "verify"]).assert().success();

    // Restoring over an existing home is refused.
    datamesh(&new_home)
        .args(["keys", "restore", "--trust-on-first-use"])
        .arg(&bundle)
        .arg(arg("backup-password-file", &backup_pw))
        .arg(arg("new-password-file", &new_pw))
        .assert()
        .failure();
    Ok(())
}

#[test]
fn bad_bundles_give_clear_errors_and_write_nothing() -> TestResult {
    let h = Home::new()?;
    let backup_pw = password_file(h.dir.path(), "backup-pw", "a separate backup passphrase")?;
    let wrong_pw = password_file(h.dir.path(), "wrong-pw", "not the backup passphrase")?;
    let new_pw = password_file(h.dir.path(), "new-pw", "the restored home's passphrase")?;
    let bundle = backup(&h, &backup_pw)?;
    let good = fs::read(&bundle)?;

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    let mut newer = good.clone();
    newer[8] = 9;
    let cases: [(&str, Vec<u8>, &std::path::Path, i32, &str); 4] = [
        ("wrong", good.clone(), &wrong_pw, 2, "wrong backup password"),
        ("flipped", flipped, &backup_pw, 5, "damaged or truncated"),
        (
            "truncated",
            good[..good.len() - 10].to_vec(),
            &backup_pw,
            5,
            "damaged or truncated",
        ),
        (
            "newer",
            newer,
            &backup_pw,
            5,
            "format version 9 is not supported",
        ),
    ];
    for (name, bytes, pw, code, message) in cases {
        let file = h.dir.path().join(name);
        fs::write(&file, &bytes)?;
        let out = datamesh(&h.home)
            .args(["keys", "backup", "verify"])
            .arg(&file)
            .arg(arg("backup-password-file", pw))
            .assert()
            .code(code);
        assert!(stderr(out.get_output()).contains(message), "{name}");
        let target = h.dir.path().join(format!("home-{name}"));
        let out = datamesh(&target)
            .args(["keys", "restore", "--trust-on-first-use"])
            .arg(&file)
            .arg(arg("backup-password-file", pw))
            .arg(arg("new-password-file", &new_pw))
            .args(Kdf::FAST.args())
            .assert()
            .code(code);
        assert!(stderr(out.get_output()).contains(message), "{name}");
        assert!(!target.exists(), "{name}: nothing may be written");
    }
    Ok(())
}

/// `keys export-public` of `h`: its active file-encryption public key.
fn export_public(h: &Home) -> Result<String, Box<dyn std::error::Error>> {
    let out = h.keys(&["export-public"]).assert().success();
    let key = String::from_utf8(out.get_output().stdout.clone())?
        .trim()
        .to_owned();
    assert_eq!(key.len(), 66, "{key}");
    Ok(key)
}

#[test]
fn bundle_sealed_to_a_recipient_key_opens_only_in_the_recipients_home() -> TestResult {
    let h = Home::new()?;
    let recipient = Home::new()?;
    let other = Home::new()?;
    let to = export_public(&recipient)?;
    let bundle = h.dir.path().join("to.dmbackup");
    let out = h
        .keys(&["backup", &arg("out", &bundle), "--to", &to])
        .assert()
        .success();
    assert!(stderr(out.get_output()).contains("catalog is empty"));
    assert_eq!(mode(&bundle)?, 0o600);
    // A malformed --to key: one line, nothing written.
    let bad = h.dir.path().join("bad.dmbackup");
    let out = h
        .keys(&["backup", &arg("out", &bad), "--to", "02abcd"])
        .assert()
        .code(1);
    assert!(stderr(out.get_output()).contains("not a secp256k1 public key"));
    assert!(!bad.exists());

    // verify in the recipient's home (its --home is the default identity).
    let out = recipient
        .keys(&["backup", "verify"])
        .arg(&bundle)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone())?;
    // The four keys of a new home, the hybrid file-encryption key included.
    assert!(stdout.contains("4 key version(s)"), "{stdout}");
    assert!(stdout.contains("sealed to key id"), "{stdout}");

    // The wrong recipient, or a backup password: clear errors.
    let out = other
        .keys(&["backup", "verify"])
        .arg(&bundle)
        .assert()
        .failure();
    assert!(
        stderr(out.get_output()).contains("which this keystore does not hold"),
        "{}",
        stderr(out.get_output())
    );
    let backup_pw = password_file(h.dir.path(), "backup-pw", "a separate backup passphrase")?;
    let out = datamesh(&h.home)
        .args(["keys", "backup", "verify"])
        .arg(&bundle)
        .arg(arg("backup-password-file", &backup_pw))
        .arg(arg("identity-home", &other.home))
        .arg(arg("password-file", &other.password))
        .assert()
        .failure();
    assert!(stderr(out.get_output()).contains("does not hold"));

    // Restore into a new home with the recipient's home as identity.
    let new_pw = password_file(h.dir.path(), "new-pw", "the restored home's passphrase")?;
    let restore = |target: &std::path::Path, identity: &Home| {
        let mut cmd = datamesh(target);
        cmd.args(["keys", "restore", "--trust-on-first-use"])
            .arg(&bundle)
            .arg(arg("identity-home", &identity.home))
            .arg(arg("password-file", &identity.password))
            .arg(arg("new-password-file", &new_pw))
            .args(Kdf::FAST.args());
        cmd
    };
    let wrong_target = h.dir.path().join("wrong");
    let out = restore(&wrong_target, &other).assert().failure();
    assert!(stderr(out.get_output()).contains("does not hold"));
    assert!(!wrong_target.exists(), "nothing may be written");
    // Without --identity-home: it says what to give.
    let out = datamesh(&wrong_target)
        .args(["keys", "restore", "--trust-on-first-use"])
        .arg(&bundle)
        .arg(arg("new-password-file", &new_pw))
        .assert()
        .failure();
    assert!(stderr(out.get_output()).contains("--identity-home"));
    assert!(!wrong_target.exists());

    let target = h.dir.path().join("restored");
    restore(&target, &recipient).assert().success();
    let restored = Home {
        dir: tempfile::tempdir()?,
        home: target.clone(),
        password: new_pw.clone(),
    };
    assert_eq!(restored.list()?, h.list()?);
    assert_eq!(mode(&target.join("keys/keystore"))?, 0o600);

    // Tampering: a flipped bit, a truncation. Integrity errors, nothing written.
    let good = fs::read(&bundle)?;
    for (name, bytes) in [
        ("flipped", {
            let mut b = good.clone();
            let at = b.len() / 3;
            b[at] ^= 0x01;
            b
        }),
        ("truncated", good[..good.len() - 1].to_vec()),
    ] {
        let file = h.dir.path().join(name);
        fs::write(&file, &bytes)?;
        let out = recipient
            .keys(&["backup", "verify"])
            .arg(&file)
            .assert()
            .code(5);
        assert!(
            stderr(out.get_output()).contains("damaged or truncated"),
            "{name}"
        );
    }
    Ok(())
}

/// A file-encryption secret the test knows (imported from the legacy layout) never
/// appears in the clear, raw or in hex, in a password bundle, a bundle sealed to a key,
/// plain escrow shares or shares sealed to a contact. (The master key cannot be seen from
/// outside; the keys crate's tests scan for it and every key's secret byte for byte.)
#[test]
fn bundles_and_shares_never_hold_a_key_in_the_clear() -> TestResult {
    let h = Home::new()?;
    let legacy = h.dir.path().join("legacy");
    fs::create_dir(&legacy)?;
    let secret = datamesh_core::ecies::SecretKey::generate();
    let raw = *secret.to_bytes();
    fs::write(legacy.join("old.key"), raw)?;
    h.keys(&["import-legacy"]).arg(&legacy).assert().success();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();

    let recipient = Home::new()?;
    let to = export_public(&recipient)?;
    let backup_pw = password_file(h.dir.path(), "backup-pw", "a separate backup passphrase")?;
    let mut files = vec![backup(&h, &backup_pw)?];
    let sealed = h.dir.path().join("to.dmbackup");
    h.keys(&["backup", &arg("out", &sealed), "--to", &to])
        .assert()
        .success();
    files.push(sealed);
    for (dir, contact) in [("plain", None), ("sealed", Some(&to))] {
        let out_dir = h.dir.path().join(dir);
        let mut cmd = h.keys(&["escrow", "split", "--threshold", "2", "--shares", "2"]);
        cmd.arg(arg("out-dir", &out_dir));
        if let Some(key) = contact {
            cmd.args(["--contact", key, "--contact", key]);
        }
        cmd.assert().success();
        for entry in fs::read_dir(&out_dir)? {
            files.push(entry?.path());
        }
    }
    assert_eq!(files.len(), 6);
    for file in &files {
        let bytes = fs::read(file)?;
        assert!(
            !bytes.windows(32).any(|w| w == raw),
            "{} holds the key",
            file.display()
        );
        assert!(
            !String::from_utf8_lossy(&bytes)
                .to_lowercase()
                .contains(&hex),
            "{} holds the key in hex",
            file.display()
        );
    }
    // The key is really in the bundles: restored, the legacy key is back.
    let new_pw = password_file(h.dir.path(), "new-pw", "the restored home's passphrase")?;
    let target = h.dir.path().join("restored");
    datamesh(&target)
        .args(["keys", "restore", "--trust-on-first-use"])
        .arg(&files[0])
        .arg(arg("backup-password-file", &backup_pw))
        .arg(arg("new-password-file", &new_pw))
        .args(Kdf::FAST.args())
        .assert()
        .success();
    let restored = Home {
        dir: tempfile::tempdir()?,
        home: target,
        password: new_pw,
    };
    assert!(
        restored
            .list()?
            .iter()
            .any(|k| k["public_key"] == secret.public_key().to_string())
    );
    Ok(())
}
