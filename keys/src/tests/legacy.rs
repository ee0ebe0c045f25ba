//! Importing legacy plaintext keys.

use std::fs;

use datamesh_core::ecies;

use super::{TestResult, new_home};
use crate::*;

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
    assert_eq!(keystore.keys().len(), 4);
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
