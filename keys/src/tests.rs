//! Tests of the keystore with access to its internals (fail points, master key).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use datamesh_core::ecies;
use proptest::prelude::*;

use crate::fsx::{self, Step};
use crate::ring::UnsealError;
use crate::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn small() -> KdfParams {
    KdfParams::unchecked(8, 1, 1)
}

/// Limits for reading mutated files: a flipped parameter byte cannot make a test slow.
fn tight() -> KdfLimits {
    KdfLimits::new(64, 2, 1)
}

fn pw(text: &str) -> Password {
    match Password::new(text) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn new_home() -> Result<(tempfile::TempDir, Keystore), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let keystore = Keystore::create(dir.path(), &pw("old password"), small())?;
    Ok((dir, keystore))
}

/// One key ring for the property tests (made once: Argon2id is slow).
fn test_ring() -> &'static KeyRing {
    static RING: std::sync::OnceLock<KeyRing> = std::sync::OnceLock::new();
    RING.get_or_init(|| match KeyRing::new(&pw("ring"), small(), 0) {
        Ok(ring) => ring,
        Err(e) => panic!("{e}"),
    })
}

fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Name, version, status, public key and secret bytes of one version.
type Fingerprint = (String, u32, KeyStatus, Vec<u8>, Option<[u8; 32]>);

/// Every version, to check that nothing was lost.
fn fingerprint(ring: &KeyRing) -> Vec<Fingerprint> {
    ring.body
        .entries
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.version,
                e.status,
                e.public_key.clone(),
                e.secret.as_ref().map(|s| *s.expose()),
            )
        })
        .collect()
}

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
        ]
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
        KeyRing::unseal(&bytes, &pw("p"), &KdfLimits::DEFAULT),
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
    assert!(KeyRing::unseal(&bytes, &password, &tight()).is_ok());
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut mutated = bytes.clone();
            if let Some(b) = mutated.get_mut(i) {
                *b ^= bit;
            }
            assert!(
                KeyRing::unseal(&mutated, &password, &tight()).is_err(),
                "flipping bit {bit:#x} of byte {i} went unnoticed"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(
            KeyRing::unseal(bytes.get(..len).ok_or("len")?, &password, &tight()).is_err(),
            "truncation to {len} bytes went unnoticed"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(KeyRing::unseal(&longer, &password, &tight()).is_err());
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
        *b = 2;
    }
    fs::write(&path, &future)?;
    assert!(matches!(
        Keystore::open(dir.path(), &pw("old password")),
        Err(OpenError::UnsupportedVersion { version: 2, .. })
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn rotate_keeps_old_versions_decrypting() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let (v1, key1) = keystore.active_file_key()?;
    let wrapped = ecies::encrypt(&key1.public_key(), b"data key for an old file");
    let new = keystore.rotate(FILE_ENCRYPTION)?;
    assert_eq!((v1, new.version, new.predecessor), (1, 2, Some(1)));
    let (v2, key2) = keystore.active_file_key()?;
    assert_eq!(v2, 2);
    assert_ne!(key1.public_key(), key2.public_key());
    let reopened = Keystore::open(dir.path(), &pw("old password"))?;
    let keys = reopened.decryption_keys(false);
    assert_eq!(keys.len(), 2);
    let opened = keys
        .iter()
        .find_map(|(_, sk)| ecies::decrypt(sk, &wrapped).ok())
        .ok_or("no key opens the old file")?;
    assert_eq!(&opened[..], b"data key for an old file");
    let v1_info = reopened
        .versions(FILE_ENCRYPTION)
        .into_iter()
        .find(|k| k.version == 1)
        .ok_or("v1")?;
    assert_eq!(
        (v1_info.status, v1_info.successor),
        (KeyStatus::Deprecated, Some(2))
    );
    assert!(v1_info.deprecated.is_some() && v1_info.expires.is_none());
    // The node identity rotates on request too.
    keystore.rotate(NODE_IDENTITY)?;
    assert_eq!(keystore.active(NODE_IDENTITY).map(|k| k.version), Some(2));
    assert!(matches!(
        keystore.rotate("nope"),
        Err(ChangeError::NoSuchKey { .. })
    ));
    Ok(())
}

#[test]
fn revoked_versions_never_encrypt() -> TestResult {
    let (_dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    // Revoking the active version rotates to a fresh one first.
    let replacement = keystore.revoke(FILE_ENCRYPTION, 2, "laptop stolen")?;
    assert_eq!(replacement.map(|k| k.version), Some(3));
    let (active, _) = keystore.active_file_key()?;
    assert_eq!(active, 3);
    keystore.revoke(FILE_ENCRYPTION, 1, "same incident")?;
    let usable: Vec<u32> = keystore
        .decryption_keys(false)
        .iter()
        .map(|(k, _)| k.version)
        .collect();
    assert_eq!(usable, [3]);
    let mut with_revoked: Vec<u32> = keystore
        .decryption_keys(true)
        .iter()
        .map(|(k, _)| k.version)
        .collect();
    with_revoked.sort_unstable();
    assert_eq!(with_revoked, [1, 2, 3]);
    let v2 = keystore
        .versions(FILE_ENCRYPTION)
        .into_iter()
        .find(|k| k.version == 2)
        .ok_or("v2")?;
    assert_eq!(v2.status, KeyStatus::Revoked);
    assert_eq!(v2.revoke_reason.as_deref(), Some("laptop stolen"));
    assert!(matches!(
        keystore.revoke(FILE_ENCRYPTION, 2, "again"),
        Err(ChangeError::AlreadyRevoked { .. })
    ));
    assert!(matches!(
        keystore.revoke(FILE_ENCRYPTION, 3, "  "),
        Err(ChangeError::BadReason { .. })
    ));
    // Many rotations later, a revoked version is still never the active one.
    for _ in 0..5 {
        keystore.rotate(FILE_ENCRYPTION)?;
        let (active, _) = keystore.active_file_key()?;
        assert!(![1, 2].contains(&active));
    }
    Ok(())
}

#[test]
fn destroy_erases_and_respects_still_needed() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    assert!(matches!(
        keystore.destroy(FILE_ENCRYPTION, 2, false, true),
        Err(ChangeError::DestroyActive { .. })
    ));
    assert!(matches!(
        keystore.destroy(FILE_ENCRYPTION, 1, true, false),
        Err(ChangeError::StillNeeded { .. })
    ));
    assert!(matches!(
        keystore.destroy(FILE_ENCRYPTION, 9, false, false),
        Err(ChangeError::NoSuchVersion { .. })
    ));
    let v1_secret = keystore
        .decryption_keys(false)
        .into_iter()
        .find(|(k, _)| k.version == 1)
        .map(|(_, sk)| sk.to_bytes())
        .ok_or("v1")?;
    keystore.destroy(FILE_ENCRYPTION, 1, true, true)?;
    assert!(matches!(
        keystore.destroy(FILE_ENCRYPTION, 1, false, false),
        Err(ChangeError::AlreadyDestroyed { .. })
    ));
    let reopened = Keystore::open(dir.path(), &pw("old password"))?;
    assert_eq!(reopened.decryption_keys(true).len(), 1);
    let v1 = reopened
        .versions(FILE_ENCRYPTION)
        .into_iter()
        .find(|k| k.version == 1)
        .ok_or("v1")?;
    assert_eq!(v1.status, KeyStatus::Destroyed);
    assert!(v1.destroyed.is_some());
    assert!(
        reopened
            .body
            .entries
            .iter()
            .all(|e| e.secret.as_ref().map(|s| *s.expose()) != Some(*v1_secret))
    );
    Ok(())
}

#[test]
fn policy_marks_keys_due_and_rotates_them() -> TestResult {
    let (_dir, mut keystore) = new_home()?;
    let now = Timestamp::now();
    assert!(keystore.rotate_due(now)?.is_empty());
    let generation = keystore.generation();
    let day = jiff::SignedDuration::from_hours(24);
    let later = now.checked_add(day * 91)?;
    keystore.set_policy(RotationPolicy::new(90, 365, false)?)?;
    let due = keystore.rotate_due(later)?;
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].name.as_str(), due[0].reason, due[0].rotated_to),
        (FILE_ENCRYPTION, DueReason::Interval, None)
    );
    assert_eq!(
        keystore.generation(),
        generation + 1,
        "manual: nothing rotated"
    );
    keystore.set_policy(RotationPolicy::default())?;
    let much_later = now.checked_add(day * 400)?;
    let due = keystore.rotate_due(much_later)?;
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].reason, due[0].rotated_to),
        (DueReason::MaxAge, Some(2))
    );
    assert_eq!(keystore.active_file_key()?.0, 2);
    // The node identity does not follow the policy (a new one changes the peer id).
    assert_eq!(keystore.active(NODE_IDENTITY).map(|k| k.version), Some(1));
    assert!(matches!(
        keystore.set_policy(RotationPolicy::unchecked(0, 365, true)),
        Err(ChangeError::BadPolicy { .. })
    ));
    let active = keystore.active(FILE_ENCRYPTION).ok_or("active")?;
    let expires = active.expires.ok_or("expires")?;
    let activated = active.activated.ok_or("activated")?;
    assert_eq!(expires.as_second() - activated.as_second(), 365 * 86_400);
    keystore.set_policy(RotationPolicy::new(30, 60, true)?)?;
    let active = keystore.active(FILE_ENCRYPTION).ok_or("active")?;
    let expires = active.expires.ok_or("expires")?;
    assert_eq!(expires.as_second() - activated.as_second(), 60 * 86_400);
    Ok(())
}

#[test]
fn slots_add_list_remove_and_passwd() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let before = fingerprint(&keystore);
    let id = keystore.add_password_slot(&pw("second password"), small(), "laptop")?;
    assert_eq!(id, 2);
    let slots = keystore.slots();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[1].label, "laptop");
    assert_eq!(slots[1].kind, SlotKind::Password(small()));
    let second = Keystore::open(home, &pw("second password"))?;
    assert_eq!(second.unlocked_slot(), 2);
    assert_eq!(fingerprint(&second), before);
    assert!(matches!(
        keystore.remove_slot(1),
        Err(ChangeError::CurrentSlot { id: 1 })
    ));
    assert!(matches!(
        keystore.remove_slot(7),
        Err(ChangeError::NoSuchSlot { id: 7 })
    ));
    // Change slot 1's password: slot 2 is untouched, the keys are the same.
    keystore.change_password(&pw("new password"), None)?;
    assert!(matches!(
        Keystore::open(home, &pw("old password")),
        Err(OpenError::WrongPassword { .. })
    ));
    let mut via_second = Keystore::open(home, &pw("second password"))?;
    let reopened = Keystore::open(home, &pw("new password"))?;
    assert_eq!(fingerprint(&reopened), before);
    via_second.remove_slot(1)?;
    assert!(matches!(
        via_second.remove_slot(2),
        Err(ChangeError::LastSlot { id: 2 })
    ));
    assert!(Keystore::open(home, &pw("new password")).is_err());
    assert!(matches!(
        via_second.change_password(&pw(""), None),
        Err(ChangeError::Password(PasswordError::Empty))
    ));
    // New KDF parameters can be set with a password change (raise them later).
    via_second.change_password(&pw("third"), Some(KdfParams::new(16, 2, 1)?))?;
    let reopened = Keystore::open(home, &pw("third"))?;
    assert_eq!(
        reopened.slots()[0].kind,
        SlotKind::Password(KdfParams::new(16, 2, 1)?)
    );
    Ok(())
}

#[test]
fn a_failure_at_any_write_step_leaves_the_old_or_the_new_keystore() -> TestResult {
    for step in Step::ALL {
        let (dir, mut keystore) = new_home()?;
        let home = dir.path();
        let before = fingerprint(&keystore);
        fsx::fail_at(Some(step));
        let result = keystore.rotate(FILE_ENCRYPTION);
        fsx::fail_at(None);
        match step {
            Step::AuditAppend => assert!(result.is_ok(), "{step:?}: {result:?}"),
            Step::SyncDir => assert!(
                matches!(result, Err(ChangeError::Unsynced { .. })),
                "{step:?}: {result:?}"
            ),
            _ => assert!(
                matches!(result, Err(ChangeError::Io { .. })),
                "{step:?}: {result:?}"
            ),
        }
        let committed = matches!(step, Step::AuditAppend | Step::SyncDir);
        // In memory: unchanged, or the committed new state.
        assert_eq!(fingerprint(&keystore) == before, !committed, "{step:?}");
        // On disk: the old or the new keystore, which opens.
        let mut reopened = Keystore::open(home, &pw("old password"))?;
        assert_eq!(fingerprint(&reopened), fingerprint(&keystore), "{step:?}");
        assert!(!Layout::new(home).temp().exists(), "{step:?}");
        // The audit log is whole again (a lost anchor line is re-appended on open).
        reopened.verify_audit()?;
        keystore.rotate(FILE_ENCRYPTION)?;
        keystore.change_password(&pw("old password"), None)?;
    }
    // The same for a password change: the old or the new password opens it.
    for step in Step::ALL {
        let (dir, mut keystore) = new_home()?;
        fsx::fail_at(Some(step));
        let result = keystore.change_password(&pw("new password"), None);
        fsx::fail_at(None);
        let committed = matches!(step, Step::AuditAppend | Step::SyncDir);
        assert_eq!(result.is_ok(), step == Step::AuditAppend, "{step:?}");
        let (good, bad) = if committed {
            ("new password", "old password")
        } else {
            ("old password", "new password")
        };
        Keystore::open(dir.path(), &pw(good))?;
        assert!(Keystore::open(dir.path(), &pw(bad)).is_err(), "{step:?}");
    }
    Ok(())
}

#[test]
fn a_stale_temp_file_from_a_crash_is_cleared() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let temp = Layout::new(dir.path()).temp();
    fs::write(&temp, b"half a keystore")?;
    Keystore::open(dir.path(), &pw("old password"))?;
    keystore.rotate(FILE_ENCRYPTION)?;
    assert!(!temp.exists());
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
fn two_writers_never_lose_a_change() -> TestResult {
    let (dir, _) = new_home()?;
    let home = dir.path().to_owned();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let home = home.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut keystore =
                    Keystore::open(&home, &pw("old password")).map_err(|e| e.to_string())?;
                for _ in 0..10 {
                    keystore
                        .rotate(FILE_ENCRYPTION)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "thread panicked")??;
    }
    let mut keystore = Keystore::open(&home, &pw("old password"))?;
    let versions: Vec<u32> = keystore
        .versions(FILE_ENCRYPTION)
        .iter()
        .map(|k| k.version)
        .collect();
    assert_eq!(versions, (1..=21).collect::<Vec<_>>());
    assert_eq!(keystore.decryption_keys(false).len(), 21);
    // init, two unlocks, 20 rotations, the last unlock.
    assert_eq!(keystore.verify_audit()?.lines, 1 + 2 + 20 + 1);
    Ok(())
}

#[test]
fn generation_and_reload_follow_other_writers() -> TestResult {
    let (dir, mut first) = new_home()?;
    let home = dir.path();
    let mut second = Keystore::open(home, &pw("old password"))?;
    assert_eq!(Keystore::generation(home)?, first.generation());
    second.rotate(FILE_ENCRYPTION)?;
    assert_eq!(Keystore::generation(home)?, first.generation() + 1);
    assert!(first.reload()?);
    assert!(!first.reload()?);
    assert_eq!(first.active_file_key()?.0, 2);
    first.rotate(FILE_ENCRYPTION)?;
    assert_eq!(first.active_file_key()?.0, 3);
    let empty = tempfile::tempdir()?;
    assert!(matches!(
        Keystore::generation(empty.path()),
        Err(OpenError::NotInitialised { .. })
    ));
    Ok(())
}

#[test]
fn audit_chain_finds_edited_removed_reordered_and_cut_lines() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    keystore.set_policy(RotationPolicy::new(10, 20, false)?)?;
    keystore.rotate(FILE_ENCRYPTION)?;
    let path = Layout::new(dir.path()).audit_log();
    let original = fs::read_to_string(&path)?;
    assert_eq!(keystore.verify_audit()?.lines, original.lines().count());
    let original = fs::read_to_string(&path)?;
    let lines: Vec<&str> = original.lines().collect();
    let rejoin = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();

    let mut edited = lines.clone();
    let changed = lines[2].replace("\"ok\"", "\"failed\"");
    edited[2] = &changed;
    let mut removed = lines.clone();
    removed.remove(2);
    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    for (what, text) in [
        ("edited", rejoin(&edited)),
        ("removed", rejoin(&removed)),
        ("reordered", rejoin(&reordered)),
        ("incomplete", original.trim_end().to_owned()),
    ] {
        fs::write(&path, &text)?;
        assert!(
            matches!(verify_chain(&path), Err(AuditError::Broken { .. })),
            "{what}"
        );
        assert!(keystore.verify_audit().is_err(), "{what}");
    }
    // Cutting the tail back past the last key change: the chain alone cannot see it,
    // the anchor sealed in the keystore does.
    let anchor_index = lines
        .iter()
        .rposition(|l| l.contains("\"op\":\"rotate\""))
        .ok_or("rotate line")?;
    fs::write(&path, rejoin(&lines[..anchor_index - 1]))?;
    assert!(verify_chain(&path).is_ok());
    assert!(matches!(
        keystore.verify_audit(),
        Err(AuditError::AnchorMissing { .. })
    ));
    // Editing the anchor line itself (the last key change) is caught the same way.
    let mut edited_anchor = lines[..=anchor_index].to_vec();
    let forged = lines[anchor_index].replace("v2 -> v3", "v2 -> v9");
    edited_anchor[anchor_index] = &forged;
    fs::write(&path, rejoin(&edited_anchor))?;
    assert!(matches!(
        keystore.verify_audit(),
        Err(AuditError::AnchorMissing { .. })
    ));
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

#[test]
fn debug_and_logs_of_a_full_session_hold_no_secret() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = dir.path();
    let password = "s3cret-Passphrase-for-the-test";
    let mut keystore = Keystore::create(home, &pw(password), small())?;
    keystore.rotate(FILE_ENCRYPTION)?;
    keystore.revoke(FILE_ENCRYPTION, 1, "test")?;
    keystore.add_password_slot(&pw("another-secret-passphrase"), small(), "two")?;
    keystore.change_password(&pw(password), None)?;
    let _ = Keystore::open(home, &pw("wrong-guess-passphrase"));
    let mut keystore = Keystore::open(home, &pw(password))?;
    keystore.verify_audit()?;
    let mut secrets: Vec<Vec<u8>> = keystore
        .body
        .entries
        .iter()
        .filter_map(|e| e.secret.as_ref().map(|s| s.expose().to_vec()))
        .collect();
    secrets.push(keystore.master().expose().to_vec());
    secrets.push(keystore.node_identity_seed().to_vec());
    let mut text = String::new();
    text.push_str(&format!("{keystore:?}\n{:?}\n", *keystore));
    text.push_str(&format!("{:?}\n", keystore.keys()));
    text.push_str(&format!("{:?}\n", keystore.slots()));
    text.push_str(&format!("{:?}\n", keystore.body));
    text.push_str(&format!("{:?}\n", keystore.active_file_key()?));
    text.push_str(&format!("{:?}\n", keystore.decryption_keys(true)));
    text.push_str(&format!("{:?}\n", pw(password)));
    text.push_str(&format!("{:?}\n", Keystore::open(home, &pw("wrong"))));
    text.push_str(&fs::read_to_string(Layout::new(home).audit_log())?);
    let file = fs::read(Layout::new(home).keystore())?;
    for secret in &secrets {
        let lower = data_encoding::HEXLOWER.encode(secret);
        let upper = data_encoding::HEXUPPER.encode(secret);
        assert!(!text.contains(&lower) && !text.contains(&upper));
        assert!(!contains(text.as_bytes(), secret));
        assert!(!contains(&file, secret));
        let decimal = format!("{:?}", &secret[..8]).replace(['[', ']'], "");
        assert!(!text.contains(&decimal), "a secret printed as a byte list");
    }
    for p in [
        password,
        "another-secret-passphrase",
        "wrong-guess-passphrase",
    ] {
        assert!(!text.contains(p));
        assert!(!contains(&file, p.as_bytes()));
    }
    Ok(())
}

#[test]
fn legacy_keys_are_sealed_then_erased() -> TestResult {
    let (_dir, mut keystore) = new_home()?;
    let legacy = tempfile::tempdir()?;
    let alice = ecies::SecretKey::generate();
    let bob = ecies::SecretKey::generate();
    fs::write(legacy.path().join("alice.key"), *alice.to_bytes())?;
    fs::write(legacy.path().join("bob.key"), *bob.to_bytes())?;
    fs::write(
        legacy.path().join("bob.info"),
        format!(
            r#"{{"name":"bob","public_key":"{}","created":"2024-05-01T12:00:00Z"}}"#,
            bob.public_key()
        ),
    )?;
    fs::write(legacy.path().join("notes.txt"), "not a key")?;
    // A bad file stops everything: nothing imported, nothing removed.
    fs::write(legacy.path().join("broken.key"), [1u8; 31])?;
    let err = keystore.import_legacy(legacy.path());
    assert!(matches!(err, Err(ImportError::BadKey { .. })), "{err:?}");
    assert!(legacy.path().join("alice.key").exists());
    assert_eq!(keystore.keys().len(), 2);
    fs::remove_file(legacy.path().join("broken.key"))?;

    let wrapped = ecies::encrypt(&bob.public_key(), b"old file key");
    let report = keystore.import_legacy(legacy.path())?;
    let names: Vec<&str> = report.imported.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["legacy-alice", "legacy-bob"]);
    assert!(
        report
            .imported
            .iter()
            .all(|k| k.status == KeyStatus::Deprecated)
    );
    assert_eq!(
        report.imported[1].created,
        "2024-05-01T12:00:00Z".parse::<Timestamp>()?
    );
    assert_eq!(report.removed.len(), 3);
    for file in ["alice.key", "bob.key", "bob.info"] {
        assert!(!legacy.path().join(file).exists(), "{file}");
    }
    assert!(legacy.path().join("notes.txt").exists());
    let opened = keystore
        .decryption_keys(false)
        .iter()
        .find_map(|(_, sk)| ecies::decrypt(sk, &wrapped).ok())
        .ok_or("legacy key does not decrypt")?;
    assert_eq!(&opened[..], b"old file key");
    assert_eq!(
        keystore.active_file_key()?.0,
        1,
        "legacy keys never encrypt"
    );
    // Importing the same key again (an interrupted earlier run) only erases the file.
    fs::write(legacy.path().join("alice.key"), *alice.to_bytes())?;
    let again = keystore.import_legacy(legacy.path())?;
    assert!(again.imported.is_empty());
    assert_eq!(again.already_present.len(), 1);
    assert!(!legacy.path().join("alice.key").exists());
    // A .info naming another key is refused.
    fs::write(legacy.path().join("carol.key"), *alice.to_bytes())?;
    fs::write(
        legacy.path().join("carol.info"),
        format!(r#"{{"public_key":"{}"}}"#, bob.public_key()),
    )?;
    assert!(matches!(
        keystore.import_legacy(legacy.path()),
        Err(ImportError::BadKey { .. })
    ));
    let empty = tempfile::tempdir()?;
    assert!(matches!(
        keystore.import_legacy(empty.path()),
        Err(ImportError::NothingToImport { .. })
    ));
    Ok(())
}

#[test]
fn audit_report_counts_operations() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    let _ = keystore.destroy(FILE_ENCRYPTION, 1, true, false);
    keystore.log(&AuditEvent::new(AuditOp::ExportPublic).with_key(FILE_ENCRYPTION, Some(2)))?;
    let report = report(&Layout::new(dir.path()).audit_log(), 2)?;
    assert_eq!(report.counts.get("init").map(|c| c.ok), Some(1));
    assert_eq!(report.counts.get("rotate").map(|c| c.ok), Some(1));
    assert_eq!(report.counts.get("destroy").map(|c| c.failed), Some(1));
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.last.len(), 2);
    assert_eq!(report.last[1].op, "export-public");
    assert_eq!(report.chain.as_ref().map(|s| s.lines), Ok(report.lines));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The parsers of bundles, network copies and sealed shares never panic on bytes
    /// that start like the real thing.
    #[test]
    fn random_bundles_copies_and_sealed_shares_never_panic(
        kind in 0u8..4,
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let ring = test_ring();
        let mut bundle = b"DMBACKUP\x02".to_vec();
        bundle.push(kind);
        bundle.extend_from_slice(&tail);
        let password = pw("x");
        prop_assert!(backup::open(&bundle, BackupKey::Password(&password), &tight()).is_err());
        prop_assert!(backup::open(&bundle, BackupKey::Recipient(ring), &tight()).is_err());
        let mut copy = b"DMRECOV\0\x01".to_vec();
        copy.extend_from_slice(&tail);
        prop_assert!(crate::recovery::open_copy(ring.master(), &copy).is_err());
        let text = format!(
            "{SEALED_SHARE_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&tail)
        );
        prop_assert!(Share::open_sealed(&text, ring).is_err());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(KeyRing::unseal(&bytes, &pw("x"), &tight()).is_err());
    }

    #[test]
    fn random_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"DMKEYST\0\x01".to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(KeyRing::unseal(&bytes, &pw("x"), &tight()).is_err());
    }
}

// ----- escrow -----

#[test]
fn escrow_verify_and_recover_through_the_keystore() -> TestResult {
    let (dir, keystore) = new_home()?;
    let seed = keystore.node_identity_seed();
    let shares = keystore.escrow_split(3, 5)?;
    let set = keystore.escrow_verify(&shares[1..4])?;
    assert_eq!(set, shares[0].set());
    let before = fs::read(dir.path().join("keys/keystore"))?;

    // The drill with too few shares, or shares of another keystore: errors, no change.
    assert!(matches!(
        keystore.escrow_verify(&shares[..2]),
        Err(EscrowError::Share(ShareError::NotEnoughShares {
            have: 2,
            need: 3
        }))
    ));
    let (_other_dir, other) = new_home()?;
    let foreign = other.escrow_split(2, 2)?;
    assert!(matches!(
        keystore.escrow_verify(&foreign),
        Err(EscrowError::WrongKeystore { .. })
    ));
    assert!(matches!(
        Keystore::recover(dir.path(), &foreign, &pw("new password"), small()),
        Err(EscrowError::WrongKeystore { .. })
    ));
    assert!(matches!(
        Keystore::recover(dir.path(), &shares[..2], &pw("new password"), small()),
        Err(EscrowError::Share(ShareError::NotEnoughShares { .. }))
    ));
    assert_eq!(fs::read(dir.path().join("keys/keystore"))?, before);

    // Forgotten password: three shares add a slot for a new one; the old one still works.
    let chosen = [shares[4].clone(), shares[0].clone(), shares[2].clone()];
    let recovered = Keystore::recover(dir.path(), &chosen, &pw("new password"), small())?;
    assert_eq!(recovered.node_identity_seed(), seed);
    assert_eq!(recovered.unlocked_slot(), 2);
    let reopened = Keystore::open(dir.path(), &pw("new password"))?;
    assert_eq!(reopened.node_identity_seed(), seed);
    assert_eq!(reopened.unlocked_slot(), 2);
    Keystore::open(dir.path(), &pw("old password"))?;
    let log = fs::read_to_string(dir.path().join("keys/audit.log"))?;
    assert!(log.contains("\"op\":\"recover\""));
    assert!(log.contains("\"op\":\"escrow\""));
    let hex = data_encoding::HEXLOWER.encode(keystore.master().expose());
    assert!(!log.contains(&hex));
    let mut reopened = reopened;
    reopened.verify_audit()?;

    // A new split is a new set; its shares do not mix with the old ones.
    let again = keystore.escrow_split(3, 5)?;
    assert_ne!(again[0].set(), shares[0].set());
    let mixed = [again[0].clone(), again[1].clone(), shares[2].clone()];
    assert!(matches!(
        keystore.escrow_verify(&mixed),
        Err(EscrowError::Share(ShareError::MixedSets { .. }))
    ));
    Ok(())
}

#[test]
fn sealed_shares_open_only_in_the_contacts_home() -> TestResult {
    let (_dir, keystore) = new_home()?;
    let (_cdir, contact) = new_home()?;
    let (_odir, other) = new_home()?;
    let copy = [9u8; 32];
    let shares = keystore.escrow_split_with_copy(2, 3, Some(copy))?;
    let (_, contact_key) = contact.active_file_key()?;
    let sealed = shares[1].seal_to(&contact_key.public_key());
    assert!(sealed.starts_with(SEALED_SHARE_PREFIX));
    // Neither the share value nor the master key is in the sealed text or its bytes.
    assert!(!sealed.contains(&*shares[1].to_text()));
    let opened = Share::open_sealed(&sealed, &contact)?;
    assert_eq!(*opened.to_bytes(), *shares[1].to_bytes());
    assert_eq!(opened.network_copy(), Some(copy));
    assert!(matches!(
        Share::open_sealed(&sealed, &other),
        Err(ShareError::NotForThisKey { .. })
    ));
    // A sealed share where a plain one is needed: a clear error.
    assert_eq!(Share::from_text(&sealed).err(), Some(ShareError::Sealed));
    // A changed character: refused.
    let mut damaged = sealed.clone();
    let at = damaged.len() - 3;
    let c = if &damaged[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    damaged.replace_range(at..at + 1, c);
    assert!(Share::open_sealed(&damaged, &contact).is_err());
    // The opened shares combine with the others.
    keystore.escrow_verify(&[opened, shares[2].clone()])?;
    Ok(())
}

#[test]
fn a_lost_machine_is_rebuilt_from_shares_and_the_network_copy() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    let seed = keystore.node_identity_seed();
    let copy = keystore.network_copy(b"the catalog")?;
    // The copy holds neither the master key nor a key's secret in the clear.
    let mut secrets: Vec<[u8; 32]> = vec![*keystore.master().expose()];
    secrets.extend(
        keystore
            .body
            .entries
            .iter()
            .filter_map(|e| e.secret.as_ref().map(|s| *s.expose())),
    );
    for secret in &secrets {
        assert!(!copy.windows(32).any(|w| w == secret));
    }
    let shares = keystore.escrow_split_with_copy(3, 5, Some([7u8; 32]))?;
    assert!(shares.iter().all(|s| s.network_copy() == Some([7u8; 32])));
    // The recovery key from shares is the one the copy is wrapped to.
    assert_eq!(
        Keystore::recovery_key(&shares[2..])?.public_key(),
        keystore.recovery_public_key()
    );
    let target = tempfile::tempdir()?;
    let home = target.path().join("new");

    // Too few shares, another keystore's shares, a damaged copy: errors, nothing written.
    assert!(matches!(
        Keystore::recover_into(&home, &shares[..2], &copy, &pw("new password"), small()),
        Err(EscrowError::Share(ShareError::NotEnoughShares {
            have: 2,
            need: 3
        }))
    ));
    let (_odir, other) = new_home()?;
    let foreign = other.escrow_split(2, 2)?;
    assert!(matches!(
        Keystore::recover_into(&home, &foreign, &copy, &pw("new password"), small()),
        Err(EscrowError::Copy(CopyError::Mac))
    ));
    let bare = fs::read(dir.path().join("keys/keystore"))?;
    assert!(matches!(
        Keystore::recover_into(&home, &foreign, &bare, &pw("new password"), small()),
        Err(EscrowError::WrongKeystore { .. })
    ));
    let mut damaged = copy.clone();
    damaged[copy.len() / 2] ^= 4;
    assert!(matches!(
        Keystore::recover_into(&home, &shares[..3], &damaged, &pw("new password"), small()),
        Err(EscrowError::Copy(CopyError::Mac))
    ));
    assert!(!home.exists());

    // Three shares and the copy: the same keys, a new password, the catalog back.
    let chosen = [shares[4].clone(), shares[1].clone(), shares[3].clone()];
    let (recovered, catalog) =
        Keystore::recover_into(&home, &chosen, &copy, &pw("new password"), small())?;
    assert_eq!(catalog.as_deref(), Some(&b"the catalog"[..]));
    assert_eq!(recovered.node_identity_seed(), seed);
    assert_eq!(fingerprint(&recovered), fingerprint(&keystore));
    let mut reopened = Keystore::open(&home, &pw("new password"))?;
    reopened.verify_audit()?;
    // The old password still opens it too (it was not lost, the machine was).
    Keystore::open(&home, &pw("old password"))?;
    // The shares still work on the rebuilt home, and a second recovery into it is refused.
    reopened.escrow_verify(&shares[..3])?;
    assert!(matches!(
        Keystore::recover_into(&home, &chosen, &copy, &pw("new password"), small()),
        Err(EscrowError::Create(CreateError::AlreadyExists { .. }))
    ));
    assert_eq!(mode(&home.join("keys/keystore"))?, 0o600);

    // A plain keystore file works as well (no catalog).
    let home2 = target.path().join("new2");
    let (_, catalog) =
        Keystore::recover_into(&home2, &chosen, &bare, &pw("new password"), small())?;
    assert!(catalog.is_none());
    Keystore::open(&home2, &pw("new password"))?;
    Ok(())
}

// ----- backup bundles -----

#[test]
fn backup_round_trip_and_every_tamper_is_refused() -> TestResult {
    let (_dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    keystore.rotate(FILE_ENCRYPTION)?;
    keystore.destroy(FILE_ENCRYPTION, 1, true, true)?;
    keystore.set_policy(RotationPolicy::new(30, 180, false)?)?;
    let backup_pw = pw("backup password");
    let catalog = b"{\"files\": [\"the catalog section\"]}".to_vec();
    let bundle = keystore.backup(
        BackupSeal::Password {
            password: &backup_pw,
            kdf: small(),
        },
        &catalog,
    )?;
    let open_pw = |bytes: &[u8]| Keystore::verify_backup(bytes, BackupKey::Password(&backup_pw));

    // No secret in the clear: neither the master key nor any key's secret.
    let mut secrets: Vec<[u8; 32]> = vec![*keystore.master().expose()];
    secrets.extend(
        keystore
            .body
            .entries
            .iter()
            .filter_map(|e| e.secret.as_ref().map(|s| *s.expose())),
    );
    for secret in &secrets {
        assert!(!bundle.windows(32).any(|w| w == secret));
    }

    let opened = open_pw(&bundle)?;
    assert_eq!(opened.manifest.key_count, 3); // node-identity v1, file-encryption v2 and v3
    assert_eq!(opened.manifest.format_version, BACKUP_VERSION);
    assert_eq!(opened.catalog, catalog);
    assert_eq!(opened.sealed_with, SealedWith::Password);

    let target = tempfile::tempdir()?;
    let home = target.path().join("restored");
    let restored = Keystore::restore(&home, opened, &pw("new password"), small())?;
    assert_eq!(restored.node_identity_seed(), keystore.node_identity_seed());
    assert_eq!(restored.policy(), keystore.policy());
    assert_eq!(restored.active_file_key()?.0, 3);
    let want: Vec<Fingerprint> = fingerprint(&keystore)
        .into_iter()
        .filter(|f| f.2 != KeyStatus::Destroyed)
        .collect();
    assert_eq!(fingerprint(&restored), want);
    assert_ne!(restored.master().expose(), keystore.master().expose());
    let mut reopened = Keystore::open(&home, &pw("new password"))?;
    reopened.verify_audit()?;
    assert!(fs::read_to_string(home.join("keys/audit.log"))?.contains("\"op\":\"restore\""));

    // A second restore into the same home is refused.
    assert!(matches!(
        Keystore::restore(&home, open_pw(&bundle)?, &pw("new password"), small()),
        Err(BackupError::Create(CreateError::AlreadyExists { .. }))
    ));

    // Wrong password, every flipped bit, every truncation, a newer version: errors.
    let nothing = target.path().join("nothing");
    assert!(matches!(
        Keystore::verify_backup(&bundle, BackupKey::Password(&pw("wrong"))),
        Err(BackupError::WrongPassword)
    ));
    // A password bundle offered to a recipient key: a clear error.
    assert!(matches!(
        Keystore::verify_backup(&bundle, BackupKey::Recipient(&keystore)),
        Err(BackupError::WrongSealKind(_))
    ));
    for bit in (0..bundle.len() * 8).step_by(7) {
        let mut damaged = bundle.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let result = open_pw(&damaged);
        assert!(
            matches!(
                result,
                Err(BackupError::Damaged { .. }
                    | BackupError::NotABackup
                    | BackupError::UnsupportedVersion { .. })
            ),
            "bit {bit}: {result:?}"
        );
    }
    for len in [0, 8, 9, 40, bundle.len() / 2, bundle.len() - 1] {
        assert!(open_pw(&bundle[..len]).is_err(), "len {len}");
    }
    let mut newer = bundle.clone();
    newer[8] = 3;
    assert!(matches!(
        open_pw(&newer),
        Err(BackupError::UnsupportedVersion { version: 3 })
    ));
    assert!(!nothing.exists());
    Ok(())
}

/// A version 1 bundle, laid out as the previous build wrote it (before catalogs and
/// recipients): magic | 0x01 | m | t | p | salt | nonce | AES-256-GCM | BLAKE3.
fn version_one_bundle(keystore: &Keystore, password: &Password) -> Vec<u8> {
    use aes_gcm::aead::generic_array::GenericArray;
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit};
    #[derive(serde::Serialize)]
    struct ContentV1 {
        created: i64,
        policy: RotationPolicy,
        entries: Vec<crate::model::Entry>,
    }
    let content = postcard::to_allocvec(&ContentV1 {
        created: 1_700_000_000,
        policy: keystore.policy(),
        entries: keystore.body.entries.clone(),
    })
    .unwrap_or_default();
    let manifest = Manifest {
        format_version: 1,
        created: 1_700_000_000,
        key_count: 2,
        content_blake3: *blake3::hash(&content).as_bytes(),
    };
    let mut plain = postcard::to_allocvec(&manifest).unwrap_or_default();
    plain.extend_from_slice(&content);
    let salt = [5u8; SALT_LEN];
    let kek = crate::kdf::derive_kek(password, &salt, small(), &KdfLimits::DEFAULT)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = b"DMBACKUP\x01".to_vec();
    for v in [8u32, 1, 1] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&salt);
    out.extend_from_slice(&[6u8; 12]);
    let sealed = Aes256Gcm::new(GenericArray::from_slice(kek.expose()))
        .encrypt(
            GenericArray::from_slice(&[6u8; 12]),
            Payload {
                msg: &plain,
                aad: &out,
            },
        )
        .unwrap_or_default();
    out.extend_from_slice(&sealed);
    let trailer = blake3::hash(&out);
    out.extend_from_slice(trailer.as_bytes());
    out
}

#[test]
fn version_one_bundles_still_open() -> TestResult {
    let (_dir, keystore) = new_home()?;
    let password = pw("old backup password");
    let bundle = version_one_bundle(&keystore, &password);
    let opened = Keystore::verify_backup(&bundle, BackupKey::Password(&password))?;
    assert_eq!(opened.manifest.format_version, 1);
    assert_eq!(opened.manifest.key_count, 2);
    assert!(opened.catalog.is_empty());
    assert!(matches!(
        Keystore::verify_backup(&bundle, BackupKey::Password(&pw("wrong"))),
        Err(BackupError::WrongPassword)
    ));
    let target = tempfile::tempdir()?;
    let restored = Keystore::restore(
        &target.path().join("h"),
        opened,
        &pw("new password"),
        small(),
    )?;
    assert_eq!(fingerprint(&restored), fingerprint(&keystore));
    Ok(())
}

#[test]
fn bundles_sealed_to_a_recipient_open_only_with_its_keys() -> TestResult {
    let (_dir, keystore) = new_home()?;
    let (_rdir, mut recipient) = new_home()?;
    let (_odir, other) = new_home()?;
    let (_, recipient_key) = recipient.active_file_key()?;
    let recipient_public = recipient_key.public_key();
    // The recipient rotates after the bundle was made: its older version still opens it.
    let bundle = keystore.backup(BackupSeal::Recipient(&recipient_public), b"catalog")?;
    recipient.rotate(FILE_ENCRYPTION)?;
    let opened = Keystore::verify_backup(&bundle, BackupKey::Recipient(&recipient))?;
    assert_eq!(opened.catalog, b"catalog");
    assert_eq!(opened.manifest.format_version, BACKUP_VERSION);
    let key_id = datamesh_core::KeyId::of(&recipient_public).to_string();
    assert_eq!(opened.sealed_with, SealedWith::Recipient(key_id.clone()));
    assert!(is_sealed_to_key(&bundle));

    // No secret in the clear.
    let mut secrets: Vec<[u8; 32]> = vec![*keystore.master().expose()];
    secrets.extend(
        keystore
            .body
            .entries
            .iter()
            .filter_map(|e| e.secret.as_ref().map(|s| *s.expose())),
    );
    for secret in &secrets {
        assert!(!bundle.windows(32).any(|w| w == secret));
    }

    // Another keystore: the wrong recipient, named by key id.
    match Keystore::verify_backup(&bundle, BackupKey::Recipient(&other)) {
        Err(BackupError::WrongRecipient { key_id: named }) => assert_eq!(named, key_id),
        other => panic!("expected WrongRecipient, got {other:?}"),
    }
    // A password for a bundle sealed to a key: a clear error.
    assert!(matches!(
        Keystore::verify_backup(&bundle, BackupKey::Password(&pw("anything"))),
        Err(BackupError::WrongSealKind(_))
    ));
    // Every flipped bit and truncation is refused.
    for bit in (0..bundle.len() * 8).step_by(5) {
        let mut damaged = bundle.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            Keystore::verify_backup(&damaged, BackupKey::Recipient(&recipient)).is_err(),
            "bit {bit}"
        );
    }
    for len in [0, 9, 10, 100, bundle.len() - 1] {
        assert!(Keystore::verify_backup(&bundle[..len], BackupKey::Recipient(&recipient)).is_err());
    }
    // Restored, the new home holds the same keys.
    let target = tempfile::tempdir()?;
    let home = target.path().join("restored");
    let restored = Keystore::restore(&home, opened, &pw("new password"), small())?;
    assert_eq!(restored.node_identity_seed(), keystore.node_identity_seed());
    Ok(())
}

#[test]
fn a_crash_in_the_middle_of_an_audit_append_is_repaired_on_open() -> TestResult {
    // A kill -9 while the line of a key change is being appended leaves half a line with
    // no newline. Opening must cut it and re-append the whole line sealed in the
    // keystore, so the next lines do not glue onto the fragment and `verify` passes.
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    drop(keystore);
    let path = Layout::new(dir.path()).audit_log();
    let text = fs::read_to_string(&path)?;
    let last_start = text.trim_end().rfind('\n').map_or(0, |i| i + 1);
    let torn = &text[..last_start + (text.len() - last_start) / 2];
    fs::write(&path, torn)?;
    assert!(
        verify_chain(&path).is_err(),
        "the torn log is broken as it is"
    );
    let mut reopened = Keystore::open(dir.path(), &pw("old password"))?;
    assert!(reopened.verify_audit().is_ok());
    assert!(verify_chain(&path).is_ok());
    Ok(())
}
