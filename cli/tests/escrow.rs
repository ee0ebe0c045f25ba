//! `datamesh keys escrow ...` from the outside: split, the drill, recovery, refusals.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

/// The share files of `dir`, sorted by index.
fn share_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut files: Vec<(u32, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let index: u32 = name.split('-').nth(3).ok_or("name")?.parse()?;
        files.push((index, path));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn split(h: &Home, out: &str) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let dir = h.dir.path().join(out);
    let out_dir = format!("--out-dir={}", dir.display());
    h.keys(&[
        "escrow",
        "split",
        "--threshold",
        "3",
        "--shares",
        "5",
        &out_dir,
    ])
    .assert()
    .success();
    share_files(&dir)
}

fn escrow(h: &Home, command: &str, files: &[&PathBuf]) -> assert_cmd::Command {
    let mut cmd = h.keys(&["escrow", command]);
    cmd.args(files);
    cmd
}

#[test]
fn split_writes_private_printable_shares_and_verify_passes() -> TestResult {
    let h = Home::new()?;
    let files = split(&h, "escrow")?;
    assert_eq!(files.len(), 5);
    assert_eq!(mode(&h.dir.path().join("escrow"))?, 0o700);
    for file in &files {
        assert_eq!(mode(file)?, 0o600);
        let text = fs::read_to_string(file)?;
        assert!(text.is_ascii());
        assert!(text.lines().any(|l| l.starts_with("dm-share1-")));
    }
    let out = escrow(&h, "verify", &[&files[0], &files[2], &files[4]])
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone())?;
    assert!(stdout.starts_with("ok: 3 share(s) of set"), "{stdout}");
    // Splitting again makes a new set, whose shares do not mix with the old ones.
    let again = split(&h, "escrow2")?;
    let out = escrow(&h, "verify", &[&files[0], &files[1], &again[2]])
        .assert()
        .code(1);
    assert!(stderr(out.get_output()).contains("different escrow sets"));
    // Bounds.
    for (k, n) in [("1", "5"), ("6", "5")] {
        let out_dir = format!("--out-dir={}", h.dir.path().join("bad").display());
        let out = h
            .keys(&["escrow", "split", "--threshold", k, "--shares", n, &out_dir])
            .assert()
            .code(1);
        assert!(stderr(out.get_output()).contains("2 <= threshold <= shares <= 255"));
    }
    h.keys(&[
        "escrow",
        "split",
        "--threshold",
        "2",
        "--shares",
        "256",
        "--out-dir",
        "x",
    ])
    .assert()
    .code(1);
    Ok(())
}

#[test]
fn the_drill_reports_damage_and_too_few_shares() -> TestResult {
    let h = Home::new()?;
    let files = split(&h, "escrow")?;
    let before = fs::read(h.keystore())?;

    let out = escrow(&h, "verify", &[&files[0], &files[1]])
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("2 share(s) given, 3 needed"));

    let out = escrow(&h, "verify", &[&files[0], &files[1], &files[1]])
        .assert()
        .code(1);
    assert!(stderr(out.get_output()).contains("given twice"));

    // One mistyped character.
    let text = fs::read_to_string(&files[3])?;
    let line = text
        .lines()
        .find(|l| l.starts_with("dm-share1-"))
        .ok_or("line")?;
    let pos = line.len() - 7;
    let c = line.as_bytes()[pos];
    let typo = if c == b'A' { "B" } else { "A" };
    let damaged = text.replacen(
        line,
        &format!("{}{typo}{}", &line[..pos], &line[pos + 1..]),
        1,
    );
    fs::write(&files[3], damaged)?;
    let out = escrow(&h, "verify", &[&files[0], &files[1], &files[3]])
        .assert()
        .code(5);
    let err = stderr(out.get_output());
    assert!(err.contains("checksum does not match"), "{err}");
    assert!(err.contains(&files[3].display().to_string()), "{err}");

    // Shares of another keystore.
    let other = Home::new()?;
    let foreign = split(&other, "escrow")?;
    let out = escrow(&h, "verify", &[&foreign[0], &foreign[1], &foreign[2]])
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("belong to another keystore"));
    assert_eq!(fs::read(h.keystore())?, before);
    Ok(())
}

#[test]
fn recover_adds_a_password_slot_for_a_forgotten_password() -> TestResult {
    let h = Home::new()?;
    let files = split(&h, "escrow")?;
    let keys_before = h.list()?;
    let new_pw = password_file(
        h.dir.path(),
        "new-pw",
        "a brand new passphrase for recovery",
    )?;

    // Two shares: refused, nothing changed.
    let before = fs::read(h.keystore())?;
    let out = datamesh(&h.home)
        .args(["keys", "escrow", "recover"])
        .args([&files[1], &files[3]])
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(Kdf::FAST.args())
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("3 needed"));
    assert_eq!(fs::read(h.keystore())?, before);

    let out = datamesh(&h.home)
        .args(["keys", "escrow", "recover"])
        .args([&files[4], &files[1], &files[3]])
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(Kdf::FAST.args())
        .assert()
        .success();
    assert_eq!(
        String::from_utf8(out.get_output().stdout.clone())?.trim(),
        "2"
    );

    let recovered = Home {
        dir: tempfile::tempdir()?,
        home: h.home.clone(),
        password: new_pw,
    };
    assert_eq!(without_slots(recovered.list()?), without_slots(keys_before));
    recovered.keys(&["audit", "verify"]).assert().success();
    let log = fs::read_to_string(h.audit_log())?;
    assert!(log.contains("\"op\":\"recover\""));
    // No share text and no share value ever reaches the log.
    for file in &files {
        let text = fs::read_to_string(file)?;
        let line = text
            .lines()
            .find(|l| l.starts_with("dm-share1-"))
            .ok_or("line")?;
        assert!(!log.contains(&line[10..30]));
    }
    Ok(())
}

fn arg(name: &str, path: &std::path::Path) -> String {
    format!("--{name}={}", path.display())
}

/// `keys export-public` of `h`.
fn export_public(h: &Home) -> Result<String, Box<dyn std::error::Error>> {
    let out = h.keys(&["export-public"]).assert().success();
    Ok(String::from_utf8(out.get_output().stdout.clone())?
        .trim()
        .to_owned())
}

#[test]
fn shares_sealed_to_contacts_open_only_in_each_contacts_home() -> TestResult {
    let h = Home::new()?;
    let contacts = [Home::new()?, Home::new()?, Home::new()?];
    let keys: Vec<String> = contacts
        .iter()
        .map(export_public)
        .collect::<Result<_, _>>()?;
    let dir = h.dir.path().join("sealed");

    // One contact per share, or nothing is written.
    let out = h
        .keys(&["escrow", "split", "--threshold", "2", "--shares", "3"])
        .arg(arg("out-dir", &dir))
        .args(["--contact", &keys[0], "--contact", &keys[1]])
        .assert()
        .code(1);
    assert!(stderr(out.get_output()).contains("one --contact per share"));
    assert!(!dir.exists());

    let mut cmd = h.keys(&["escrow", "split", "--threshold", "2", "--shares", "3"]);
    cmd.arg(arg("out-dir", &dir));
    for key in &keys {
        cmd.args(["--contact", key]);
    }
    let out = cmd.assert().success();
    // The node is not running: the split says there is no network copy.
    assert!(stderr(out.get_output()).contains("no network copy"));
    let files = share_files(&dir)?;
    assert_eq!(files.len(), 3);
    for file in &files {
        assert_eq!(mode(file)?, 0o600);
        let text = fs::read_to_string(file)?;
        assert!(text.lines().any(|l| l.starts_with("dm-sealed-share1-")));
        assert!(!text.lines().any(|l| l.starts_with("dm-share1-")));
    }

    // Sealed shares cannot be used as they are.
    let out = escrow(&h, "verify", &[&files[0], &files[1]])
        .assert()
        .failure();
    assert!(stderr(out.get_output()).contains("sealed to a contact"));

    // Each contact opens their own share, and only theirs.
    let out = contacts[1]
        .keys(&["escrow", "open-share"])
        .arg(&files[0])
        .assert()
        .failure();
    assert!(stderr(out.get_output()).contains("does not hold"));
    let opened0 = h.dir.path().join("opened-0.txt");
    contacts[0]
        .keys(&["escrow", "open-share"])
        .arg(&files[0])
        .arg(arg("out", &opened0))
        .assert()
        .success();
    assert_eq!(mode(&opened0)?, 0o600);
    // Never overwritten.
    contacts[0]
        .keys(&["escrow", "open-share"])
        .arg(&files[0])
        .arg(arg("out", &opened0))
        .assert()
        .code(1);
    let out = contacts[2]
        .keys(&["escrow", "open-share"])
        .arg(&files[2])
        .assert()
        .success();
    let printed = String::from_utf8(out.get_output().stdout.clone())?;
    assert!(
        printed.lines().any(|l| l.starts_with("dm-share1-")),
        "{printed}"
    );
    let opened2 = h.dir.path().join("opened-2.txt");
    fs::write(&opened2, printed)?;
    assert!(
        fs::read_to_string(contacts[2].audit_log())?.contains("open-share"),
        "opening is logged"
    );

    // The opened shares combine to the owner's master key.
    let out = escrow(&h, "verify", &[&opened0, &opened2])
        .assert()
        .success();
    assert!(String::from_utf8(out.get_output().stdout.clone())?.starts_with("ok: 2 share(s)"));
    Ok(())
}

#[test]
fn a_lost_home_is_rebuilt_from_shares_and_a_keystore_copy() -> TestResult {
    let h = Home::new()?;
    h.keys(&["rotate"]).assert().success();
    let files = split(&h, "escrow")?;
    let keys_before = h.list()?;
    let copy = h.dir.path().join("keystore-copy");
    fs::copy(h.keystore(), &copy)?;
    let new_pw = password_file(
        h.dir.path(),
        "new-pw",
        "a brand new passphrase for recovery",
    )?;
    let target = h.dir.path().join("new-home");
    let recover = |shares: &[&PathBuf], extra: &[String]| {
        let mut cmd = datamesh(&target);
        cmd.args(["keys", "escrow", "recover"])
            .args(shares)
            .args(extra)
            .arg(arg("new-password-file", &new_pw))
            .args(Kdf::FAST.args());
        cmd
    };
    let with_copy = [arg("keystore", &copy)];

    // Two shares: refused, nothing written.
    let out = recover(&[&files[0], &files[4]], &with_copy)
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("3 needed"));
    assert!(!target.exists());
    // No keystore copy and shares without a network copy: says what to give.
    let out = recover(&[&files[0], &files[1], &files[4]], &[])
        .assert()
        .code(1);
    assert!(stderr(out.get_output()).contains("--keystore FILE"));
    assert!(!target.exists());
    // Another keystore's shares against this copy.
    let other = Home::new()?;
    let foreign = split(&other, "escrow")?;
    let out = recover(&[&foreign[0], &foreign[1], &foreign[2]], &with_copy)
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("another keystore"));
    assert!(!target.exists());

    // Three shares and the copy: a working home with the same keys.
    recover(&[&files[3], &files[0], &files[2]], &with_copy)
        .assert()
        .success();
    for (path, want) in [
        (target.join("config.toml"), 0o600),
        (target.join("api-token"), 0o600),
        (target.join("keys/keystore"), 0o600),
        (target.join("keys"), 0o700),
    ] {
        assert_eq!(mode(&path)?, want, "{}", path.display());
    }
    let rebuilt = Home {
        dir: tempfile::tempdir()?,
        home: target.clone(),
        password: new_pw.clone(),
    };
    assert_eq!(
        without_slots(rebuilt.list()?),
        without_slots(keys_before.clone())
    );
    rebuilt.keys(&["audit", "verify"]).assert().success();
    assert!(fs::read_to_string(rebuilt.audit_log())?.contains("\"op\":\"recover\""));
    // The shares still belong to the rebuilt keystore.
    escrow(&rebuilt, "verify", &[&files[1], &files[2], &files[3]])
        .assert()
        .success();
    // A home with a keystore does not take --keystore (it would be the forgotten-password case).
    let out = recover(&[&files[3], &files[0], &files[2]], &with_copy)
        .assert()
        .code(1);
    assert!(stderr(out.get_output()).contains("already has a keystore"));
    Ok(())
}

/// `keys list --json` without each key's `protected_by` (its unlock slots): recovery adds a
/// slot by design, while the keys themselves must come back unchanged.
fn without_slots(mut keys: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    for key in &mut keys {
        if let Some(key) = key.as_object_mut() {
            key.remove("protected_by");
        }
    }
    keys
}
