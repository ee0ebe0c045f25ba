//! Backup bundles: round trip, every tamper refused, version 1 bundles, bundles sealed to
//! a recipient.

use std::fs;

use super::{Fingerprint, TestResult, assert_no_secret_in, fingerprint, new_home, pw, small};
use crate::*;

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
    assert_no_secret_in(&keystore, &bundle);

    let opened = open_pw(&bundle)?;
    // node-identity v1, file-encryption v2 and v3, file-authority v1,
    // file-encryption-hybrid v1
    assert_eq!(opened.manifest.key_count, 5);
    assert_eq!(opened.manifest.format_version, BACKUP_VERSION);
    assert_eq!(opened.catalog, catalog);
    assert_eq!(opened.sealed_with, SealedWith::Password);

    let target = tempfile::tempdir()?;
    let home = target.path().join("restored");
    let source = node_identity(&keystore)?;
    assert_eq!(opened.signer, Some(source));
    let restored = Keystore::restore(
        &home,
        opened,
        TrustedSigner::Key(&source),
        &pw("new password"),
        small(),
    )?;
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
        Keystore::restore(
            &home,
            open_pw(&bundle)?,
            TrustedSigner::FirstUse,
            &pw("new password"),
            small()
        ),
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
    newer[8] = 4;
    assert!(matches!(
        open_pw(&newer),
        Err(BackupError::UnsupportedVersion { version: 4 })
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
        key_count: keystore.body.entries.len() as u32,
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
    // The four keys of a new home (the hybrid file-encryption key included).
    assert_eq!(opened.manifest.key_count, 4);
    assert!(opened.catalog.is_empty());
    assert!(matches!(
        Keystore::verify_backup(&bundle, BackupKey::Password(&pw("wrong"))),
        Err(BackupError::WrongPassword)
    ));
    let target = tempfile::tempdir()?;
    assert_eq!(opened.signer, None);
    // Unsigned: only on first use (a backup password sealed it).
    assert!(matches!(
        opened.check_signer(TrustedSigner::Key(&node_identity(&keystore)?)),
        Err(BackupError::Unsigned(_))
    ));
    let restored = Keystore::restore(
        &target.path().join("h"),
        opened,
        TrustedSigner::FirstUse,
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
    assert_no_secret_in(&keystore, &bundle);

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
    let restored = Keystore::restore(
        &home,
        opened,
        TrustedSigner::Key(&node_identity(&keystore)?),
        &pw("new password"),
        small(),
    )?;
    assert_eq!(restored.node_identity_seed(), keystore.node_identity_seed());
    Ok(())
}

/// The active node identity's public key, as `keys export-public node-identity` prints it.
fn node_identity(keystore: &Keystore) -> Result<[u8; 32], Box<dyn std::error::Error>> {
    let info = keystore.active(NODE_IDENTITY).ok_or("node identity")?;
    Ok(info.public_key.as_slice().try_into()?)
}

#[test]
fn a_forged_recipient_bundle_is_refused() -> TestResult {
    // Anyone with the recipient's public key can seal a bundle to it; only the source's
    // node identity can sign one.
    let (_sdir, source) = new_home()?;
    let (_rdir, recipient) = new_home()?;
    let (_fdir, forger) = new_home()?;
    let (_, recipient_key) = recipient.active_file_key()?;
    let forged = forger.backup(BackupSeal::Recipient(&recipient_key.public_key()), b"")?;
    let opened = Keystore::verify_backup(&forged, BackupKey::Recipient(&recipient))?;
    let expected = node_identity(&source)?;
    let target = tempfile::tempdir()?;
    assert!(matches!(
        Keystore::restore(
            &target.path().join("h"),
            opened,
            TrustedSigner::Key(&expected),
            &pw("new password"),
            small()
        ),
        Err(BackupError::WrongSigner { .. })
    ));
    assert!(!target.path().join("h").exists());
    // The forger signs the source's own keys with its key: not one of the bundle's node
    // identities.
    let forger_signer = ed25519_dalek::SigningKey::from_bytes(&forger.node_identity_seed());
    let bytes = crate::backup::seal(
        &source.body.entries,
        source.policy(),
        b"",
        BackupSeal::Recipient(&recipient_key.public_key()),
        &forger_signer,
        0,
    )?;
    assert!(matches!(
        Keystore::verify_backup(&bytes, BackupKey::Recipient(&recipient)),
        Err(BackupError::Damaged { .. })
    ));
    // A correctly signed bundle with the wrong --from is refused too.
    let genuine = source.backup(BackupSeal::Recipient(&recipient_key.public_key()), b"")?;
    let opened = Keystore::verify_backup(&genuine, BackupKey::Recipient(&recipient))?;
    assert!(matches!(
        opened.check_signer(TrustedSigner::Key(&node_identity(&forger)?)),
        Err(BackupError::WrongSigner { .. })
    ));
    opened.check_signer(TrustedSigner::Key(&expected))?;
    Ok(())
}
