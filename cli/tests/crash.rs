//! `kill -9` of the binary in the middle of 50 rotations and password changes: after each,
//! the keystore opens with the old or the new password and every key version is intact.

mod common;

use std::process::Stdio;
use std::thread;
use std::time::Instant;

use common::*;
use datamesh_keys::{FILE_ENCRYPTION, Keystore, NODE_IDENTITY, Password};

/// (name, version, public key, secret bytes) of every version with a secret.
type Snapshot = Vec<(String, u32, Vec<u8>, Vec<u8>)>;

fn snapshot(keystore: &Keystore) -> Snapshot {
    let mut out: Snapshot = keystore
        .decryption_keys(true)
        .into_iter()
        .map(|(info, secret)| {
            (
                info.name,
                info.version,
                info.public_key,
                secret.to_bytes().to_vec(),
            )
        })
        .collect();
    out.push((
        NODE_IDENTITY.into(),
        0,
        Vec::new(),
        keystore.node_identity_seed().to_vec(),
    ));
    out
}

#[test]
fn kill_9_during_rotations_and_password_changes_loses_nothing() -> TestResult {
    let h = Home::new()?;
    let passwords = [(h.password.clone(), PASSWORD.to_owned()), {
        let other = "the other correct horse battery";
        (password_file(h.dir.path(), "pw2", other)?, other.to_owned())
    }];
    let mut current = 0usize;
    let open = |i: usize| -> Result<Keystore, Box<dyn std::error::Error>> {
        Ok(Keystore::open(&h.home, &Password::new(&passwords[i].1)?)?)
    };
    // How long one rotation takes, to spread the kills over its whole run.
    let started = Instant::now();
    for _ in 0..3 {
        h.keys(&["rotate"]).assert().success();
    }
    let typical = started.elapsed() / 3;
    let mut expected = snapshot(&open(current)?);

    let mut killed = 0;
    for i in 0..50usize {
        let passwd = i % 2 == 1;
        let mut cmd = datamesh_std(&h.home);
        cmd.arg("-q").arg("keys");
        if passwd {
            cmd.args(["passwd", "--allow-weak-password", "--new-password-file"])
                .arg(&passwords[1 - current].0);
        } else {
            cmd.arg("rotate");
        }
        cmd.arg("--password-file")
            .arg(&passwords[current].0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn()?;
        // Delays spread from 0 to past the end of a typical run (a password change also
        // scores the new password with zxcvbn first, so it runs about twice as long).
        let span = if passwd { 2.4 } else { 1.2 };
        let delay = typical.mul_f64(span * ((i * 37) % 50) as f64 / 50.0);
        thread::sleep(delay);
        if child.try_wait()?.is_none() {
            child.kill()?; // SIGKILL
            killed += 1;
        }
        child.wait()?;

        // The keystore opens with exactly one of the two passwords.
        let now_current = match open(current) {
            Ok(_) => current,
            Err(_) => 1 - current,
        };
        let keystore = open(now_current)?;
        if now_current != current {
            assert!(passwd, "run {i}: the password changed during a rotation");
            current = now_current;
        }
        // Every version known before is intact; at most one new one appeared.
        let now = snapshot(&keystore);
        for version in &expected {
            assert!(
                now.contains(version),
                "run {i}: lost {} v{}",
                version.0,
                version.1
            );
        }
        let added = now.len() - expected.len();
        assert!(
            added <= 1 && (added == 0 || !passwd),
            "run {i}: {added} new versions"
        );
        if added == 1 {
            let (v, _) = keystore.active_file_key()?;
            assert!(now.iter().any(|k| k.0 == FILE_ENCRYPTION && k.1 == v));
        }
        expected = now;
    }
    assert!(killed > 10, "only {killed} of 50 runs were killed mid-way");

    // Afterwards everything still works and the audit log is whole.
    datamesh(&h.home)
        .args(["keys", "audit", "verify", "--password-file"])
        .arg(&passwords[current].0)
        .assert()
        .success();
    datamesh(&h.home)
        .args(["keys", "rotate", "--password-file"])
        .arg(&passwords[current].0)
        .assert()
        .success();
    assert!(!h.home.join("keys/keystore.tmp").exists());
    Ok(())
}
