//! Slots beyond a password that need no hardware (the password+keyfile slot) and the
//! unlock policy; the PKCS#11 and TPM slots are tested against SoftHSM2 and swtpm in
//! `cli/tests/hardware.rs` and `tests/hardware.rs`.

use std::fs;

use super::{TestResult, new_home, pw, small};
use crate::*;

fn two_factors(password: &str, key: &[u8]) -> Credentials {
    Credentials::password(pw(password)).with_key_file(KeyFile::from_bytes(key))
}

#[test]
fn an_unlock_policy_forbids_password_only_unlock_and_is_sealed_as_version_2() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let file = || fs::read(home.join("keys/keystore"));
    assert_eq!(file()?[8], 1, "a keystore without a policy stays version 1");
    let policy = UnlockPolicy::allowing(&["password+keyfile".into()])?;
    let id = keystore.add_composite_slot(
        &pw("second factor pass"),
        &KeyFile::from_bytes(&[5; 32]),
        small(),
        "two factors",
    )?;
    // Refused while the password slot exists: it would still open the keystore.
    let Err(ChangeError::UnlockPolicy { problem }) =
        keystore.set_unlock_policy(Some(policy.clone()))
    else {
        return Err("a policy was set while a forbidden slot exists".into());
    };
    assert!(problem.contains("slot 1 (password)"), "{problem}");
    assert_eq!(file()?[8], 1);

    let mut keystore = Keystore::open_with(home, &two_factors("second factor pass", &[5; 32]))?;
    assert_eq!(keystore.unlocked_slot(), id);
    keystore.remove_slot(1)?;
    keystore.set_unlock_policy(Some(policy.clone()))?;
    assert_eq!(file()?[8], 2, "a keystore with a policy is version 2");

    let reopened = Keystore::open_with(home, &two_factors("second factor pass", &[5; 32]))?;
    assert_eq!(reopened.unlock_policy(), Some(&policy));
    // The password alone opens nothing; a password slot cannot be added back.
    let Err(OpenError::NothingToTry { .. }) =
        Keystore::open_with(home, &Credentials::password(pw("second factor pass")))
    else {
        return Err("the password alone was tried".into());
    };
    let mut reopened = reopened;
    let Err(ChangeError::UnlockPolicy { .. }) =
        reopened.add_password_slot(&pw("a new password slot"), small(), "")
    else {
        return Err("a password slot was added under a policy forbidding it".into());
    };
    // The last slot that can open the keystore cannot go.
    assert!(matches!(
        reopened.remove_slot(id),
        Err(ChangeError::LastSlot { .. } | ChangeError::CurrentSlot { .. })
    ));
    // Removing the policy writes version 1 again.
    reopened.set_unlock_policy(None)?;
    assert_eq!(file()?[8], 1);
    Ok(())
}

#[test]
fn a_slot_the_policy_does_not_allow_does_not_unlock() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    // A policy written around the check (as by a tampering tool holding the master key,
    // or a bug): the password slot it forbids still opens AES-GCM, but not the keystore.
    let policy = UnlockPolicy::allowing(&["tpm".into()])?;
    keystore.change(AuditEvent::new(AuditOp::Policy), |ring, _| {
        ring.unlock_policy = Some(policy);
        Ok(())
    })?;
    let Err(OpenError::SlotFailed { problem, .. }) = Keystore::open(home, &pw("old password"))
    else {
        return Err("a forbidden slot unlocked".into());
    };
    assert!(
        problem.contains("unlock policy allows only tpm slots"),
        "{problem}"
    );
    Ok(())
}

#[test]
fn unlock_policies_parse_and_round_trip() -> TestResult {
    let policy = UnlockPolicy::allowing(&["tpm".into(), "pkcs11".into(), "tpm".into()])?;
    assert_eq!(policy.names(), ["pkcs11", "tpm"]);
    let bytes = policy.encode();
    assert_eq!(bytes, [2, 2, 3]);
    assert_eq!(UnlockPolicy::decode(&bytes)?.0, policy);
    assert!(UnlockPolicy::allowing(&["totp".into()]).is_err());
    assert!(UnlockPolicy::allowing(&[]).is_err());
    for bad in [
        &[0u8][..],
        &[1, 9],
        &[2, 3, 2],
        &[2, 2],
        &[9, 1, 2, 3, 4, 1, 2, 3, 4, 1],
    ] {
        assert!(UnlockPolicy::decode(bad).is_err(), "{bad:?}");
    }
    Ok(())
}

#[test]
fn a_slot_is_chosen_by_id_kind_or_label() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let usb = keystore.add_composite_slot(
        &pw("second factor pass"),
        &KeyFile::from_bytes(&[5; 32]),
        small(),
        "usb",
    )?;
    // Another slot with the same password: only the label tells them apart.
    let spare = keystore.add_password_slot(&pw("old password"), small(), "spare")?;
    drop(keystore);
    let open = |choice: &str, credentials: Credentials| {
        Keystore::open_with(home, &credentials.choose(SlotChoice::parse(choice)?))
            .map(|k| k.unlocked_slot())
            .map_err(|e| e.to_string())
    };
    let password = || Credentials::password(pw("old password"));
    assert_eq!(open("auto", password()), Ok(1));
    assert_eq!(open("spare", password()), Ok(spare));
    assert_eq!(open(&format!("{spare}"), password()), Ok(spare));
    assert_eq!(open("password", password()), Ok(1));
    assert_eq!(
        open(
            "password+keyfile",
            two_factors("second factor pass", &[5; 32])
        ),
        Ok(usb)
    );
    assert_eq!(
        open("label:usb", two_factors("second factor pass", &[5; 32])),
        Ok(usb)
    );
    let Err(e) = open("nobody", password()) else {
        return Err("a label no slot has unlocked".into());
    };
    assert!(e.contains("no slot labelled \"nobody\" opened"), "{e}");
    let Err(e) = open("tpm", password()) else {
        return Err("a kind no slot has unlocked".into());
    };
    assert!(e.contains("no such slot (a tpm slot)"), "{e}");
    assert!(SlotChoice::parse("label:").is_err());
    assert!(SlotChoice::parse(&"x".repeat(129)).is_err());
    Ok(())
}

#[test]
fn a_rekey_keeps_a_password_keyfile_slot_given_its_key_file() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let home = dir.path();
    let usb = keystore.add_composite_slot(
        &pw("second factor pass"),
        &KeyFile::from_bytes(&[5; 32]),
        small(),
        "usb",
    )?;
    // Without the key file: dropped, with the reason.
    let mut copy = Keystore::open(home, &pw("old password"))?;
    let report = copy.rekey(&pw("old password"), &[])?;
    assert_eq!(report.kept, [1]);
    assert_eq!(report.reasons.len(), 1);
    assert!(
        report.reasons[0].1.contains("key file"),
        "{:?}",
        report.reasons
    );
    drop(copy);
    let mut keystore = Keystore::open(home, &pw("old password"))?;
    let usb2 = keystore.add_composite_slot(
        &pw("second factor pass"),
        &KeyFile::from_bytes(&[5; 32]),
        small(),
        "usb again",
    )?;
    assert_ne!(usb, usb2);
    let with_file =
        Credentials::password(pw("old password")).with_key_file(KeyFile::from_bytes(&[5; 32]));
    let report = keystore.rekey_with(&with_file, &[pw("second factor pass")])?;
    assert_eq!(report.kept, [1, usb2]);
    assert!(report.dropped.is_empty());
    drop(keystore);
    let reopened = Keystore::open_with(home, &two_factors("second factor pass", &[5; 32]))?;
    assert_eq!(reopened.unlocked_slot(), usb2);
    Ok(())
}
