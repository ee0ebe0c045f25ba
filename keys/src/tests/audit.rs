//! The audit log: the chain and the anchor, the report, a torn last line.

use std::fs;

use super::{TestResult, new_home, pw};
use crate::*;

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
        Err(AuditError::AnchorMissing { .. } | AuditError::Tampered { .. })
    ));
    // Editing the anchor line itself (the last key change) is caught the same way.
    let mut edited_anchor = lines[..=anchor_index].to_vec();
    let forged = lines[anchor_index].replace("v2 -> v3", "v2 -> v9");
    edited_anchor[anchor_index] = &forged;
    fs::write(&path, rejoin(&edited_anchor))?;
    assert!(matches!(
        keystore.verify_audit(),
        Err(AuditError::AnchorMissing { .. } | AuditError::Tampered { .. })
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

#[test]
fn a_crash_in_the_middle_of_an_audit_append_is_repaired_on_open() -> TestResult {
    // A kill -9 while the line of a key change is being appended leaves half a line with
    // no newline. Opening must cut it and re-append the whole line sealed in the
    // keystore, so the next lines do not glue onto the fragment and `verify` passes.
    let (dir, mut keystore) = new_home()?;
    // The crash comes before the head is advanced past the torn line: put back the head
    // as it was before the rotation.
    let head = fs::read(Layout::new(dir.path()).audit_head())?;
    keystore.rotate(FILE_ENCRYPTION)?;
    drop(keystore);
    fs::write(Layout::new(dir.path()).audit_head(), head)?;
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

#[test]
fn a_cut_tail_is_detected_even_after_the_last_key_change() -> TestResult {
    // Lines after the last change (an export, a backup, unlocks) are not in the
    // keystore's anchor; the sealed head pins them.
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    keystore.log(&AuditEvent::new(AuditOp::Backup).with_detail("a bundle"))?;
    keystore.log(&AuditEvent::new(AuditOp::ExportPublic))?;
    let path = Layout::new(dir.path()).audit_log();
    let text = fs::read_to_string(&path)?;
    let kept: String = text
        .lines()
        .take_while(|l| !l.contains("\"op\":\"backup\""))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&path, &kept)?;
    assert!(verify_chain(&path).is_ok(), "the chain alone cannot see it");
    assert!(matches!(
        keystore.verify_audit(),
        Err(AuditError::Tampered { .. })
    ));
    // Opening again (which appends an unlock line) does not heal it: the evidence stays.
    drop(keystore);
    let mut reopened = Keystore::open(dir.path(), &pw("old password"))?;
    assert!(matches!(
        reopened.verify_audit(),
        Err(AuditError::Tampered { .. })
    ));
    Ok(())
}

#[test]
fn a_cut_anchor_is_not_re_appended_when_the_head_sealed_later_lines() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    keystore.log(&AuditEvent::new(AuditOp::Escrow).with_detail("split"))?;
    drop(keystore);
    let path = Layout::new(dir.path()).audit_log();
    let text = fs::read_to_string(&path)?;
    let lines: Vec<&str> = text.lines().collect();
    // Cut the rotation (the anchor) and everything after it.
    let cut: String = lines[..lines.len() - 2]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&path, &cut)?;
    let mut reopened = Keystore::open(dir.path(), &pw("old password"))?;
    assert!(!fs::read_to_string(&path)?.contains("\"op\":\"rotate\""));
    assert!(reopened.verify_audit().is_err());
    Ok(())
}

#[test]
fn lines_added_without_the_key_are_detected_but_failed_unlocks_are_not() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    let path = Layout::new(dir.path()).audit_log();
    // Failed unlocks are written before any key is known: they pass.
    assert!(Keystore::open(dir.path(), &pw("wrong password")).is_err());
    assert!(keystore.verify_audit().is_ok());
    // A forged "ok" line appended by someone without the key does not.
    let text = fs::read_to_string(&path)?;
    let last = text.lines().last().ok_or("a line")?;
    let record: AuditRecord = serde_json::from_str(last)?;
    let forged = format!(
        "{{\"seq\":{},\"time\":\"2030-01-01T00:00:00.000Z\",\"op\":\"rotate\",\"outcome\":\"ok\",\"prev\":\"{}\"}}\n",
        record.seq + 1,
        blake3::hash(last.as_bytes()).to_hex()
    );
    fs::write(&path, format!("{text}{forged}"))?;
    assert!(verify_chain(&path).is_ok());
    assert!(matches!(
        keystore.verify_audit(),
        Err(AuditError::Tampered { .. })
    ));
    Ok(())
}

#[test]
fn sealed_lines_carry_a_mac_and_failed_unlocks_do_not() -> TestResult {
    let (dir, _keystore) = new_home()?;
    assert!(Keystore::open(dir.path(), &pw("wrong password")).is_err());
    let text = fs::read_to_string(Layout::new(dir.path()).audit_log())?;
    for line in text.lines() {
        let record: AuditRecord = serde_json::from_str(line)?;
        assert_eq!(record.mac.is_some(), record.outcome == "ok", "{line}");
    }
    Ok(())
}

#[test]
fn a_lost_anchor_is_re_appended_even_after_failed_unlocks_with_the_old_password() -> TestResult {
    // kill -9 of `keys passwd` after the rename, before the append: the keystore opens
    // only with the new password, and its anchor line is not in the log. Trying the old
    // password then logs a failed unlock (without the key, so without the anchor) where
    // the anchor belongs; the next unlock must still put the anchor back.
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    fsx::fail_at(Some(fsx::Step::AuditAppend));
    let result = keystore.change_password(&pw("new password"), None);
    fsx::fail_at(None);
    result?;
    drop(keystore);
    let path = Layout::new(dir.path()).audit_log();
    assert!(!fs::read_to_string(&path)?.contains("\"op\":\"passwd\""));
    for _ in 0..2 {
        assert!(Keystore::open(dir.path(), &pw("old password")).is_err());
    }
    let mut reopened = Keystore::open(dir.path(), &pw("new password"))?;
    reopened.verify_audit()?;
    assert!(verify_chain(&path).is_ok());
    // The failed unlocks are kept, after the change they followed.
    let text = fs::read_to_string(&path)?;
    let ops: Vec<AuditRecord> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let tail: Vec<(&str, &str)> = ops[ops.len() - 5..]
        .iter()
        .map(|r| (r.op.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            ("passwd", "ok"),
            ("unlock", "failed"),
            ("unlock", "failed"),
            ("unlock", "ok"),
            ("audit-verify", "ok")
        ]
    );
    // And they stay: the next open and change keep the log whole.
    drop(reopened);
    let mut again = Keystore::open(dir.path(), &pw("new password"))?;
    again.rotate(FILE_ENCRYPTION)?;
    again.verify_audit()?;
    Ok(())
}

#[test]
fn a_torn_anchor_is_cut_before_a_failed_unlock_is_logged() -> TestResult {
    // kill -9 of `keys passwd` in the middle of appending its line: half a line, no
    // newline, and the head not advanced. A failed unlock with the old password must not
    // turn the fragment into a line of its own: it is cut, and the next unlock puts the
    // whole anchor back.
    let (dir, mut keystore) = new_home()?;
    let layout = Layout::new(dir.path());
    let head = fs::read(layout.audit_head())?;
    keystore.change_password(&pw("new password"), None)?;
    drop(keystore);
    fs::write(layout.audit_head(), head)?;
    let path = layout.audit_log();
    let text = fs::read_to_string(&path)?;
    let last_start = text.trim_end().rfind('\n').map_or(0, |i| i + 1);
    fs::write(&path, &text[..last_start + (text.len() - last_start) / 2])?;
    assert!(Keystore::open(dir.path(), &pw("old password")).is_err());
    let mut reopened = Keystore::open(dir.path(), &pw("new password"))?;
    reopened.verify_audit()?;
    assert!(verify_chain(&path).is_ok());
    Ok(())
}
