//! Creating and unlocking: files and modes, passwords, KDF limits, damaged and tampered
//! files, permissions, the failed-unlock delay.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use super::{TestResult, contains, fingerprint, mode, new_home, pw, small, tight};
use crate::ring::UnsealError;
use crate::*;

#[test]
fn create_and_open_round_trip() -> TestResult {
    let (dir, keystore) = new_home()?;
    let layout = Layout::new(dir.path());
    assert_eq!(mode(&layout.keys_dir())?, 0o700);
    for file in [layout.keystore(), layout.audit_log(), layout.lock_file()] {
        assert_eq!(mode(&file)?, 0o600, "{}", file.display());
    }
    let names: Vec<(String, Purpose, KeyStatus)> = keystore
        .keys()
        .into_iter()
        .map(|k| (k.name, k.purpose, k.status))
        .collect();
    assert_eq!(
        names,
        [
            (
                NODE_IDENTITY.into(),
                Purpose::NodeIdentity,
                KeyStatus::Active
            ),
            (
                FILE_ENCRYPTION.into(),
                Purpose::FileEncryption,
                KeyStatus::Active
            ),
            (
                FILE_AUTHORITY.into(),
                Purpose::FileAuthority,
                KeyStatus::Active
            ),
            (
                FILE_ENCRYPTION_HYBRID.into(),
                Purpose::HybridFileEncryption,
                KeyStatus::Active
            ),
        ]
    );
    // The authority root's listed "public key" is its fingerprint, never the root.
    let roots = keystore.authority_roots(false);
    assert_eq!(roots.len(), 1);
    assert_eq!(
        keystore.active(FILE_AUTHORITY).map(|k| k.public_key),
        Some(roots[0].1.fingerprint().to_vec())
    );
    let reopened = Keystore::open(dir.path(), &pw("old password"))?;
    assert_eq!(fingerprint(&reopened), fingerprint(&keystore));
    assert_eq!(reopened.node_identity_seed(), keystore.node_identity_seed());
    let seed = keystore.node_identity_seed();
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(
        keystore.active(NODE_IDENTITY).map(|k| k.public_key),
        Some(public.to_bytes().to_vec())
    );
    assert!(matches!(
        Keystore::create(dir.path(), &pw("x"), small()),
        Err(CreateError::AlreadyExists { .. })
    ));
    Ok(())
}

#[test]
fn wrong_empty_and_huge_passwords() -> TestResult {
    let (dir, _) = new_home()?;
    let home = dir.path();
    assert!(matches!(
        Keystore::open(home, &pw("wrong password")),
        Err(OpenError::WrongPassword { .. })
    ));
    assert!(matches!(
        Keystore::open(home, &pw("")),
        Err(OpenError::WrongPassword { .. })
    ));
    let other = tempfile::tempdir()?;
    assert!(matches!(
        Keystore::create(other.path(), &pw(""), small()),
        Err(CreateError::Password(PasswordError::Empty))
    ));
    assert!(!Layout::new(other.path()).keystore().exists());
    // A 1 MiB password works end to end.
    let huge = pw(&"\u{e9}x".repeat(MAX_PASSWORD_LEN / 3));
    let big = tempfile::tempdir()?;
    Keystore::create(big.path(), &huge, small())?;
    Keystore::open(big.path(), &huge)?;
    assert!(Keystore::open(big.path(), &pw("x")).is_err());
    Ok(())
}

#[test]
fn kdf_parameters_above_the_readers_limits_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    Keystore::create(dir.path(), &pw("p"), KdfParams::new(1024, 1, 1)?)?;
    let err = Keystore::open_with_limits(dir.path(), &pw("p"), &KdfLimits::new(512, 4, 4));
    assert!(matches!(
        err,
        Err(OpenError::Kdf {
            source: KdfError::AboveLimit { .. },
            ..
        })
    ));
    // A file claiming m = 4 GiB: patch the slot's m field (header offset 18 + 7).
    let path = Layout::new(dir.path()).keystore();
    let mut bytes = fs::read(&path)?;
    let m = 4u32 * 1024 * 1024;
    bytes
        .get_mut(25..29)
        .ok_or("short file")?
        .copy_from_slice(&m.to_be_bytes());
    let started = Instant::now();
    assert!(matches!(
        KeyRing::unseal(&bytes, &Credentials::password(pw("p")), &KdfLimits::DEFAULT),
        Err(UnsealError::Kdf(KdfError::AboveLimit {
            param: "memory_kib",
            ..
        }))
    ));
    assert!(
        started.elapsed().as_millis() < 100,
        "refused before any work"
    );
    Ok(())
}

#[test]
fn every_flipped_byte_and_every_truncation_fails_cleanly() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.add_password_slot(&pw("second"), small(), "spare")?;
    let bytes = fs::read(Layout::new(dir.path()).keystore())?;
    let password = pw("old password");
    assert!(
        KeyRing::unseal(
            &bytes,
            &Credentials::password(password.duplicate()),
            &tight()
        )
        .is_ok()
    );
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut mutated = bytes.clone();
            if let Some(b) = mutated.get_mut(i) {
                *b ^= bit;
            }
            assert!(
                KeyRing::unseal(
                    &mutated,
                    &Credentials::password(password.duplicate()),
                    &tight()
                )
                .is_err(),
                "flipping bit {bit:#x} of byte {i} went unnoticed"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(
            KeyRing::unseal(
                bytes.get(..len).ok_or("len")?,
                &Credentials::password(password.duplicate()),
                &tight()
            )
            .is_err(),
            "truncation to {len} bytes went unnoticed"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(
        KeyRing::unseal(
            &longer,
            &Credentials::password(password.duplicate()),
            &tight()
        )
        .is_err()
    );
    Ok(())
}

#[test]
fn a_tampered_file_is_reported_as_damaged_through_open() -> TestResult {
    let (dir, _) = new_home()?;
    let path = Layout::new(dir.path()).keystore();
    let mut bytes = fs::read(&path)?;
    let last = bytes.len() - 1;
    if let Some(b) = bytes.get_mut(last) {
        *b ^= 1;
    }
    fs::write(&path, &bytes)?;
    let err = Keystore::open(dir.path(), &pw("old password"));
    assert!(matches!(err, Err(OpenError::Corrupt { .. })), "{err:?}");
    fs::write(&path, b"hello")?;
    assert!(matches!(
        Keystore::open(dir.path(), &pw("old password")),
        Err(OpenError::Corrupt { .. })
    ));
    let mut future = bytes.clone();
    if let Some(b) = future.get_mut(8) {
        *b = 3;
    }
    fs::write(&path, &future)?;
    assert!(matches!(
        Keystore::open(dir.path(), &pw("old password")),
        Err(OpenError::UnsupportedVersion { version: 3, .. })
    ));
    // A version 1 file relabelled 2 (the version is authenticated with the header).
    let mut relabelled = bytes.clone();
    if let Some(b) = relabelled.get_mut(8) {
        *b = 2;
    }
    fs::write(&path, &relabelled)?;
    assert!(matches!(
        Keystore::open(dir.path(), &pw("old password")),
        Err(OpenError::Corrupt { .. })
    ));
    Ok(())
}

#[test]
fn nothing_but_the_header_is_in_the_clear() -> TestResult {
    let (dir, keystore) = new_home()?;
    let bytes = fs::read(Layout::new(dir.path()).keystore())?;
    let needles: Vec<Vec<u8>> = keystore
        .keys()
        .into_iter()
        .flat_map(|k| [k.public_key, k.name.into_bytes()])
        .chain([b"old password".to_vec(), b"initial password".to_vec()])
        .collect();
    for needle in needles {
        assert!(!contains(&bytes, &needle));
    }
    Ok(())
}

#[test]
fn loose_permissions_are_refused_with_the_fix() -> TestResult {
    let (dir, _) = new_home()?;
    let layout = Layout::new(dir.path());
    for (path, loose, fix) in [
        (layout.keystore(), 0o644, "chmod 600"),
        (layout.audit_log(), 0o640, "chmod 600"),
        (layout.keys_dir(), 0o755, "chmod 700"),
    ] {
        fs::set_permissions(&path, fs::Permissions::from_mode(loose))?;
        let err = Keystore::open(dir.path(), &pw("old password"));
        let message = err
            .as_ref()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(
            matches!(
                err,
                Err(OpenError::Permission(PermissionError::TooOpen { .. }))
            ),
            "{message}"
        );
        assert!(
            message.contains(fix) && message.contains(&*path.to_string_lossy()),
            "{message}"
        );
        let tight = if loose == 0o755 { 0o700 } else { 0o600 };
        fs::set_permissions(&path, fs::Permissions::from_mode(tight))?;
    }
    Keystore::open(dir.path(), &pw("old password"))?;
    Ok(())
}

#[test]
fn failed_unlocks_are_logged_and_slowed_down() -> TestResult {
    let (dir, _) = new_home()?;
    let home = dir.path();
    let started = Instant::now();
    for _ in 0..3 {
        assert!(Keystore::open(home, &pw("guess")).is_err());
    }
    assert!(
        started.elapsed().as_millis() >= 1000,
        "the third failure waits 1 s"
    );
    let report = report(&Layout::new(home).audit_log(), 10)?;
    let unlock = report.counts.get("unlock").copied().unwrap_or_default();
    assert_eq!((unlock.failed, unlock.warning), (3, 1));
    assert!(report.chain.is_ok());
    // A success resets the count.
    Keystore::open(home, &pw("old password"))?;
    let started = Instant::now();
    assert!(Keystore::open(home, &pw("guess")).is_err());
    assert!(started.elapsed().as_millis() < 1000);
    Ok(())
}
