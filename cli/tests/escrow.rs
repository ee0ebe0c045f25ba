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
        .args(SMALL_KDF)
        .assert()
        .code(2);
    assert!(stderr(out.get_output()).contains("3 needed"));
    assert_eq!(fs::read(h.keystore())?, before);

    let out = datamesh(&h.home)
        .args(["keys", "escrow", "recover"])
        .args([&files[4], &files[1], &files[3]])
        .arg("--new-password-file")
        .arg(&new_pw)
        .args(SMALL_KDF)
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
    assert_eq!(recovered.list()?, keys_before);
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
