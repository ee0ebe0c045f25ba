//! Changes: rotation, revocation, destruction, policy, slots and passwords; a failure at
//! any write step; concurrent writers and following them.

use std::fs;

use datamesh_core::ecies;

use super::{TestResult, fingerprint, new_home, pw, small};
use crate::fsx::{self, Step};
use crate::*;

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
    // Both file-encryption keys follow the policy: the classical and the hybrid one.
    let names: Vec<(&str, DueReason, Option<u32>)> = due
        .iter()
        .map(|d| (d.name.as_str(), d.reason, d.rotated_to))
        .collect();
    assert_eq!(
        names,
        [
            (FILE_ENCRYPTION, DueReason::Interval, None),
            (FILE_ENCRYPTION_HYBRID, DueReason::Interval, None)
        ]
    );
    assert_eq!(
        keystore.generation(),
        generation + 1,
        "manual: nothing rotated"
    );
    keystore.set_policy(RotationPolicy::default())?;
    let much_later = now.checked_add(day * 400)?;
    let due = keystore.rotate_due(much_later)?;
    assert_eq!(due.len(), 2);
    for d in &due {
        assert_eq!(
            (d.reason, d.rotated_to),
            (DueReason::MaxAge, Some(2)),
            "{}",
            d.name
        );
    }
    assert_eq!(keystore.active_file_key()?.0, 2);
    // The hybrid key rotated like the classical one: v2 wraps, v1 still unwraps.
    assert_eq!(keystore.active_hybrid_key().map(|(v, _)| v), Some(2));
    assert_eq!(
        keystore
            .file_secrets(false)
            .iter()
            .filter(|(info, _)| info.purpose == Purpose::HybridFileEncryption)
            .count(),
        2
    );
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
fn a_symlink_planted_at_a_temp_name_is_never_followed() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious")?;
    // The keystore's own temp name.
    std::os::unix::fs::symlink(&victim, Layout::new(dir.path()).temp())?;
    keystore.rotate(FILE_ENCRYPTION)?;
    assert_eq!(fs::read(&victim)?, b"precious");
    // `<out>.tmp` next to a file written with write_private_file.
    let out = dir.path().join("bundle");
    let mut temp = out.as_os_str().to_owned();
    temp.push(".tmp");
    std::os::unix::fs::symlink(&victim, &temp)?;
    fsx::write_private_file(&out, b"new contents")?;
    assert_eq!(fs::read(&victim)?, b"precious");
    assert_eq!(fs::read(&out)?, b"new contents");
    // Scrubbing a file that is a symlink refuses, the target untouched.
    let link = dir.path().join("legacy.key");
    std::os::unix::fs::symlink(&victim, &link)?;
    assert!(fsx::scrub_and_remove(&link).is_err());
    assert_eq!(fs::read(&victim)?, b"precious");
    Ok(())
}
