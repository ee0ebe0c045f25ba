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
    .args(SMALL_KDF)
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
    assert!(stdout.contains("3 key version(s)"), "{stdout}");

    let new_home = h.dir.path().join("new-home");
    datamesh(&new_home)
        .args(["keys", "restore"])
        .arg(&bundle)
        .arg(arg("backup-password-file", &backup_pw))
        .arg(arg("new-password-file", &new_pw))
        .args(SMALL_KDF)
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
        .args(["keys", "restore"])
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
            .args(["keys", "restore"])
            .arg(&file)
            .arg(arg("backup-password-file", pw))
            .arg(arg("new-password-file", &new_pw))
            .args(SMALL_KDF)
            .assert()
            .code(code);
        assert!(stderr(out.get_output()).contains(message), "{name}");
        assert!(!target.exists(), "{name}: nothing may be written");
    }
    Ok(())
}
