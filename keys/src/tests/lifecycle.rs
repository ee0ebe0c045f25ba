//! Revoking what old copies hold: rekey (old shares, old keystore files, dropped slots)
//! and rollback protection (an old keystore put back).

use std::fs;

use super::{TestResult, new_home, pw, small};
use crate::*;

#[test]
fn after_a_rekey_old_shares_and_old_copies_open_nothing_new() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let set_a = keystore.escrow_split(2, 3)?;
    let old_copy = fs::read(Layout::new(home).keystore())?;
    let report = keystore.rekey(&pw("old password"), &[])?;
    assert_eq!(report.kept, vec![1]);
    let (v2, _) = (keystore.rotate(FILE_ENCRYPTION)?.version, ());

    // Set A's shares no longer open this keystore: not the drill, not the recovery.
    assert!(matches!(
        keystore.escrow_verify(&set_a[..2]),
        Err(EscrowError::WrongKeystore { .. })
    ));
    assert!(matches!(
        Keystore::recover(home, &set_a[..2], &pw("a new password 42"), small()),
        Err(EscrowError::WrongKeystore { .. })
    ));
    let other = tempfile::tempdir()?;
    let current = fs::read(Layout::new(home).keystore())?;
    assert!(matches!(
        Keystore::recover_into(
            &other.path().join("h"),
            &set_a[..2],
            &current,
            &pw("a new password 42"),
            small()
        ),
        Err(EscrowError::WrongKeystore { .. })
    ));
    // ... they open the old copy, which holds only what it held: no v2.
    let (old, _) = Keystore::recover_into(
        &other.path().join("old"),
        &set_a[..2],
        &old_copy,
        &pw("a new password 42"),
        small(),
    )?;
    assert!(old.versions(FILE_ENCRYPTION).iter().all(|k| k.version < v2));
    // A new set opens the current keystore.
    let set_b = keystore.escrow_split(2, 3)?;
    keystore.escrow_verify(&set_b[1..])?;
    // The password still opens it, and the audit log verifies across the rekey.
    drop(keystore);
    let mut reopened = Keystore::open(home, &pw("old password"))?;
    assert_eq!(
        reopened.active(FILE_ENCRYPTION).map(|k| k.version),
        Some(v2)
    );
    reopened.verify_audit()?;
    Ok(())
}

#[test]
fn a_rekey_drops_slots_whose_password_is_not_given_and_keeps_the_others() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let kept = keystore.add_password_slot(&pw("second password"), small(), "second")?;
    let dropped = keystore.add_password_slot(&pw("third password"), small(), "third")?;
    assert!(matches!(
        keystore.rekey(&pw("not the password"), &[]),
        Err(ChangeError::RekeyPassword(_))
    ));
    assert!(matches!(
        keystore.rekey(&pw("old password"), &[pw("unknown")]),
        Err(ChangeError::RekeyPassword(_))
    ));
    let report = keystore.rekey(&pw("old password"), &[pw("second password")])?;
    assert_eq!(report.kept, vec![1, kept]);
    assert_eq!(
        report.dropped.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![dropped]
    );
    drop(keystore);
    Keystore::open(home, &pw("second password"))?;
    assert!(matches!(
        Keystore::open(home, &pw("third password")),
        Err(OpenError::WrongPassword { .. })
    ));
    Ok(())
}

#[test]
fn an_old_keystore_put_back_is_refused_by_open_reload_and_verify() -> TestResult {
    let (dir, mut node) = new_home()?;
    let home = dir.path();
    let path = Layout::new(home).keystore();
    let before_revoke = fs::read(&path)?;
    let (v1, _) = node.active_file_key()?;
    node.revoke(FILE_ENCRYPTION, v1, "laptop stolen")?;
    // The old file copied back under the running process (which holds the newer one).
    fs::write(&path, &before_revoke)?;
    assert!(matches!(node.reload(), Err(OpenError::RolledBack { .. })));
    assert!(node.verify_audit().is_err());
    assert!(
        node.rotate(FILE_ENCRYPTION).is_err(),
        "no change on top of it"
    );
    // A new process (the CLI) refuses it too.
    assert!(matches!(
        Keystore::open(home, &pw("old password")),
        Err(OpenError::RolledBack { .. })
    ));
    // The deliberate way out: accepted, logged, and newer than anything seen.
    let accepted = Keystore::open_accepting_rollback(home, &pw("old password"))?;
    assert!(accepted.generation() > node.generation());
    assert_eq!(
        accepted.active(FILE_ENCRYPTION).map(|k| k.version),
        Some(v1)
    );
    drop(accepted);
    let mut reopened = Keystore::open(home, &pw("old password"))?;
    reopened.verify_audit()?;
    // The running process follows the accepted keystore (it moved forward).
    assert!(node.reload()?);
    Ok(())
}

#[test]
fn a_keystore_from_before_a_rekey_put_back_is_refused() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let path = Layout::new(home).keystore();
    let old = fs::read(&path)?;
    keystore.rekey(&pw("old password"), &[])?;
    fs::write(&path, &old)?;
    assert!(Keystore::open(home, &pw("old password")).is_err());
    // Even with the generation forged upward in the old copy (the header is
    // authenticated: the body no longer opens).
    let mut forged = old.clone();
    forged[9..17].copy_from_slice(&u64::MAX.to_be_bytes());
    fs::write(&path, &forged)?;
    assert!(Keystore::open(home, &pw("old password")).is_err());
    Ok(())
}

#[test]
fn a_process_holding_the_old_master_key_is_told_of_a_rekey() -> TestResult {
    let (dir, mut node) = new_home()?;
    let mut cli = Keystore::open(dir.path(), &pw("old password"))?;
    cli.rekey(&pw("old password"), &[])?;
    assert!(matches!(node.reload(), Err(OpenError::Rekeyed { .. })));
    // Its keys stay usable in memory, and it cannot write with the old master key.
    assert!(node.active_file_key().is_ok());
    assert!(node.rotate(FILE_ENCRYPTION).is_err());
    Ok(())
}

#[test]
fn a_password_change_or_slot_removal_does_not_revoke_an_old_copy() -> TestResult {
    // What the README says: only a rekey revokes the master key.
    let (dir, mut keystore) = new_home()?;
    let old = fs::read(Layout::new(dir.path()).keystore())?;
    keystore.change_password(&pw("a brand new password"), None)?;
    let elsewhere = tempfile::tempdir()?;
    let layout = Layout::new(elsewhere.path());
    crate::fsx::create_private_dir(&layout.keys_dir())?;
    crate::fsx::write_private_file(&layout.keystore(), &old)?;
    let thief = Keystore::open(elsewhere.path(), &pw("old password"))?;
    assert_eq!(thief.node_identity_seed(), keystore.node_identity_seed());
    Ok(())
}

#[test]
fn an_old_keystore_put_back_with_its_old_head_is_refused() -> TestResult {
    // The head alone would agree with the old keystore; the log records (sealed) the
    // later change.
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let layout = Layout::new(home);
    let old = fs::read(layout.keystore())?;
    let old_head = fs::read(layout.audit_head())?;
    let (v1, _) = keystore.active_file_key()?;
    keystore.revoke(FILE_ENCRYPTION, v1, "laptop stolen")?;
    fs::write(layout.keystore(), &old)?;
    fs::write(layout.audit_head(), &old_head)?;
    assert!(matches!(
        Keystore::open(home, &pw("old password")),
        Err(OpenError::Superseded { .. })
    ));
    // Removing the head instead: refused too.
    fs::remove_file(layout.audit_head())?;
    assert!(matches!(
        Keystore::open(home, &pw("old password")),
        Err(OpenError::ForeignHead { .. })
    ));
    Ok(())
}
