//! No secret in any `Debug` output, log line or file of a full session.

use std::fs;

use super::{TestResult, contains, pw, small};
use crate::*;

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
