//! What each command revokes, from the outside: `keys rekey` (old escrow shares, old
//! keystore copies, dropped slots), rollback protection (an old keystore put back, a cut
//! audit log, `keys accept-rollback`), signed backup bundles (`restore --from`), and
//! temp names that are never followed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn arg(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

/// Splits `h`'s master key into a 2-of-3 set in `out`; returns the share files.
fn split(h: &Home, out: &str) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let dir = h.dir.path().join(out);
    h.keys(&["escrow", "split", "--threshold", "2", "--shares", "3"])
        .arg(arg("out-dir", &dir))
        .assert()
        .success();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    Ok(files)
}

/// `keys export-public node-identity` of `h`.
fn node_identity(h: &Home) -> Result<String, Box<dyn std::error::Error>> {
    let out = h
        .keys(&["export-public", "node-identity"])
        .assert()
        .success();
    let key = String::from_utf8(out.get_output().stdout.clone())?
        .trim()
        .to_owned();
    assert_eq!(key.len(), 64, "{key}");
    Ok(key)
}

#[test]
fn rekey_revokes_old_escrow_sets_old_keystore_copies_and_dropped_slots() -> TestResult {
    let h = Home::new()?;
    let set_a = split(&h, "set-a")?;
    let second = password_file(h.dir.path(), "second", "a second slot's passphrase")?;
    let third = password_file(h.dir.path(), "third", "a third slot's passphrase")?;
    for (pw, label) in [(&second, "second"), (&third, "third")] {
        h.keys(&["slot", "add", "--label", label])
            .arg(arg("new-password-file", pw))
            .args(Kdf::FAST.args())
            .assert()
            .success();
    }
    let old_copy = fs::read(h.keystore())?;
    let out = h
        .keys(&["rekey"])
        .arg(arg("keep-slot-password-file", &second))
        .assert()
        .success();
    let said = stderr(out.get_output());
    assert!(said.contains("slot 3 (third) was dropped"), "{said}");
    assert!(said.contains("make a new set"), "{said}");
    h.keys(&["rotate"]).assert().success();

    // Set A: the drill and the forgotten-password recovery are refused.
    let out = h
        .keys(&["escrow", "verify"])
        .args(&set_a[..2])
        .assert()
        .code(2);
    assert!(
        stderr(out.get_output()).contains("another keystore"),
        "{}",
        stderr(out.get_output())
    );
    let new_pw = password_file(h.dir.path(), "new-pw", "a recovered passphrase 123")?;
    let before = fs::read(h.keystore())?;
    datamesh(&h.home)
        .args(["keys", "escrow", "recover"])
        .args(&set_a[..2])
        .arg(arg("new-password-file", &new_pw))
        .args(Kdf::FAST.args())
        .assert()
        .code(2);
    assert_eq!(fs::read(h.keystore())?, before);
    // Set A with the current keystore file into a new home: refused too.
    let current = h.dir.path().join("current-keystore");
    fs::write(&current, &before)?;
    let target = h.dir.path().join("new-home");
    datamesh(&target)
        .args(["keys", "escrow", "recover"])
        .args(&set_a[..2])
        .arg(arg("keystore", &current))
        .arg(arg("new-password-file", &new_pw))
        .args(Kdf::FAST.args())
        .assert()
        .code(2);
    assert!(!target.join("keys/keystore").exists());
    // With the old copy, set A opens only what that copy held (no v2).
    let old = h.dir.path().join("old-keystore");
    fs::write(&old, &old_copy)?;
    datamesh(&target)
        .args(["keys", "escrow", "recover"])
        .args(&set_a[..2])
        .arg(arg("keystore", &old))
        .arg(arg("new-password-file", &new_pw))
        .args(Kdf::FAST.args())
        .assert()
        .success();
    let thief = Home {
        dir: tempfile::tempdir()?,
        home: target,
        password: new_pw,
    };
    assert_eq!(
        thief.list()?.len(),
        4,
        "node-identity v1, file-encryption v1, file-authority v1 and file-encryption-hybrid v1 only"
    );
    assert_eq!(h.list()?.len(), 5);

    // The kept slot opens, the dropped one does not; the audit log verifies.
    let with = |pw: &Path| {
        let mut cmd = datamesh(&h.home);
        cmd.args(["keys", "list"]).arg(arg("password-file", pw));
        cmd
    };
    with(&second).assert().success();
    with(&third).assert().code(2);
    h.keys(&["audit", "verify"]).assert().success();
    Ok(())
}

#[test]
fn rekey_can_split_a_new_set_right_away() -> TestResult {
    let h = Home::new()?;
    let dir = h.dir.path().join("set-b");
    h.keys(&["rekey", "--escrow-threshold", "2", "--escrow-shares", "3"])
        .arg(arg("escrow-out-dir", &dir))
        .assert()
        .success();
    let shares: Vec<PathBuf> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    assert_eq!(shares.len(), 3);
    h.keys(&["escrow", "verify"])
        .args(&shares[..2])
        .assert()
        .success();
    Ok(())
}

#[test]
fn an_old_keystore_put_back_is_refused_until_accepted() -> TestResult {
    let h = Home::new()?;
    let before_revoke = fs::read(h.keystore())?;
    h.keys(&[
        "revoke",
        "file-encryption",
        "1",
        "--reason",
        "laptop stolen",
    ])
    .assert()
    .success();
    fs::write(h.keystore(), &before_revoke)?;
    let out = h.keys(&["list"]).assert().code(5);
    let said = stderr(out.get_output());
    assert!(said.contains("older (generation"), "{said}");
    assert!(said.contains("accept-rollback"), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    h.keys(&["audit", "verify"]).assert().code(5);
    // The documented way out.
    h.keys(&["accept-rollback"]).assert().success();
    let list = h.list()?;
    assert!(
        list.iter().any(|k| k["name"] == "file-encryption"
            && k["version"] == 1
            && k["status"] == "active")
    );
    h.keys(&["audit", "verify"]).assert().success();
    Ok(())
}

#[test]
fn a_cut_audit_tail_is_detected() -> TestResult {
    let h = Home::new()?;
    h.keys(&["rotate"]).assert().success();
    node_identity(&h)?; // an export-public line after the last key change
    let text = fs::read_to_string(h.audit_log())?;
    let kept: String = text
        .lines()
        .take_while(|l| !l.contains("\"op\":\"export-public\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(kept.len() < text.len());
    fs::write(h.audit_log(), kept)?;
    let out = h.keys(&["audit", "verify"]).assert().code(5);
    assert!(
        stderr(out.get_output()).contains("tampered"),
        "{}",
        stderr(out.get_output())
    );
    // It stays detected.
    h.keys(&["audit", "verify"]).assert().code(5);
    Ok(())
}

#[test]
fn restore_requires_the_bundle_to_be_signed_by_the_from_key() -> TestResult {
    let source = Home::new()?;
    let recipient = Home::new()?;
    let forger = Home::new()?;
    let to = {
        let out = recipient.keys(&["export-public"]).assert().success();
        String::from_utf8(out.get_output().stdout.clone())?
            .trim()
            .to_owned()
    };
    let genuine = source.dir.path().join("genuine.dmbackup");
    source
        .keys(&["backup", &arg("out", &genuine), "--to", &to])
        .assert()
        .success();
    let forged = forger.dir.path().join("forged.dmbackup");
    forger
        .keys(&["backup", &arg("out", &forged), "--to", &to])
        .assert()
        .success();
    let source_key = node_identity(&source)?;
    let forger_key = node_identity(&forger)?;
    let new_pw = password_file(recipient.dir.path(), "new-pw", "the restored passphrase 77")?;
    let restore = |bundle: &Path, target: &Path, from: &[&str]| {
        let mut cmd = datamesh(target);
        cmd.args(["keys", "restore"])
            .arg(bundle)
            .args(from)
            .arg(arg("identity-home", &recipient.home))
            .arg(arg("password-file", &recipient.password))
            .arg(arg("new-password-file", &new_pw))
            .args(Kdf::FAST.args());
        cmd
    };
    // The forged bundle opens with the recipient's keys, but is not signed by the source.
    let target = recipient.dir.path().join("target");
    let out = restore(&forged, &target, &["--from", &source_key])
        .assert()
        .code(5);
    let said = stderr(out.get_output());
    assert!(
        said.contains(&format!("signed by node identity {forger_key}")),
        "{said}"
    );
    assert!(!target.exists(), "nothing written");
    // The genuine bundle with the wrong --from: refused.
    restore(&genuine, &target, &["--from", &forger_key])
        .assert()
        .code(5);
    assert!(!target.exists());
    // Neither --from nor --trust-on-first-use: a usage error.
    restore(&genuine, &target, &[]).assert().code(1);
    // verify shows the signer.
    let out = recipient
        .keys(&["backup", "verify"])
        .arg(&genuine)
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone())?;
    assert!(
        stdout.contains(&format!("signed by node identity {source_key}")),
        "{stdout}"
    );
    // The right key restores.
    restore(&genuine, &target, &["--from", &source_key])
        .assert()
        .success();
    assert!(target.join("keys/keystore").exists());
    Ok(())
}

#[test]
fn a_symlink_at_the_output_temp_name_is_never_followed() -> TestResult {
    let h = Home::new()?;
    let victim = h.dir.path().join("victim");
    fs::write(&victim, b"precious")?;
    let bundle = h.dir.path().join("keys.dmbackup");
    std::os::unix::fs::symlink(&victim, h.dir.path().join("keys.dmbackup.tmp"))?;
    let backup_pw = password_file(h.dir.path(), "backup-pw", "a separate backup passphrase")?;
    h.keys(&[
        "backup",
        &arg("out", &bundle),
        &arg("backup-password-file", &backup_pw),
    ])
    .args(Kdf::FAST.args())
    .assert()
    .success();
    assert_eq!(fs::read(&victim)?, b"precious");
    // The keystore's own temp name.
    std::os::unix::fs::symlink(&victim, h.home.join("keys/keystore.tmp"))?;
    h.keys(&["rotate"]).assert().success();
    assert_eq!(fs::read(&victim)?, b"precious");
    Ok(())
}
