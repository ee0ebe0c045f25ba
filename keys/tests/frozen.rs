//! A keystore written by this version (format 1) must open in every later version:
//! `data/keystore_v1.bin` was made once with `datamesh init` (m=8 KiB t=1 p=1), a rotation,
//! a revocation and a second slot (m=16 KiB t=2 p=1); `data/keystore_v1.json` says what
//! it holds.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use datamesh_keys::{KdfParams, Keystore, Layout, Password, SlotKind};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn the_frozen_v1_keystore_opens_with_both_passwords() -> TestResult {
    let expected: serde_json::Value = serde_json::from_str(include_str!("data/keystore_v1.json"))?;
    let dir = tempfile::tempdir()?;
    let layout = Layout::new(dir.path());
    fs::create_dir(layout.keys_dir())?;
    fs::set_permissions(layout.keys_dir(), fs::Permissions::from_mode(0o700))?;
    fs::write(layout.keystore(), include_bytes!("data/keystore_v1.bin"))?;
    fs::set_permissions(layout.keystore(), fs::Permissions::from_mode(0o600))?;

    assert_eq!(
        Some(Keystore::generation(dir.path())?),
        expected["generation"].as_u64()
    );
    for (field, slot) in [("password", 1), ("second_password", 2)] {
        let password = Password::new(expected[field].as_str().ok_or(field)?)?;
        let keystore = Keystore::open(dir.path(), &password)?;
        assert_eq!(keystore.unlocked_slot(), slot);
        let keys: Vec<serde_json::Value> = keystore
            .keys()
            .iter()
            .map(|k| {
                serde_json::json!({
                    "name": k.name,
                    "purpose": k.purpose.as_str(),
                    "version": k.version,
                    "status": k.status.as_str(),
                    "public_key": k.public_key_hex(),
                    "revoke_reason": k.revoke_reason,
                })
            })
            .collect();
        assert_eq!(serde_json::Value::Array(keys), expected["keys"]);
        let seed = keystore.node_identity_seed();
        let public = ed25519_public(&seed);
        assert_eq!(
            Some(public.as_str()),
            expected["keys"][0]["public_key"].as_str()
        );
        assert_eq!(keystore.decryption_keys(false).len(), 1);
        assert_eq!(keystore.decryption_keys(true).len(), 2);
        let kinds: Vec<SlotKind> = keystore.slots().into_iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SlotKind::Password(KdfParams::new(8, 1, 1)?),
                SlotKind::Password(KdfParams::new(16, 2, 1)?),
            ]
        );
    }
    assert!(Keystore::open(dir.path(), &Password::new("frozen")?).is_err());

    // Made before file-authority roots existed: it gets one on first use, once.
    let password = Password::new(expected["password"].as_str().ok_or("password")?)?;
    let mut keystore = Keystore::open(dir.path(), &password)?;
    assert!(keystore.authority_roots(false).is_empty());
    assert!(keystore.ensure_file_authority()?);
    assert!(!keystore.ensure_file_authority()?);
    let roots = keystore.authority_roots(false);
    assert_eq!(roots.len(), 1);
    let reopened = Keystore::open(dir.path(), &password)?;
    assert_eq!(
        reopened.authority_roots(false)[0].1.fingerprint(),
        roots[0].1.fingerprint()
    );
    Ok(())
}

fn ed25519_public(seed: &[u8; 32]) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    data_encoding::HEXLOWER.encode(key.verifying_key().as_bytes())
}
