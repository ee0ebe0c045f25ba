//! Tests of the keystore with access to its internals (fail points, master key), one
//! module per part of the crate they exercise; the helpers below are shared by all.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::*;

mod audit;
mod backup;
mod change;
mod escrow;
mod legacy;
mod lifecycle;
mod open;
mod parsers;
mod secrets;
mod slots;

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

/// Asserts that `bytes` hold neither the master key nor any key's secret in the clear.
fn assert_no_secret_in(keystore: &Keystore, bytes: &[u8]) {
    let mut secrets: Vec<[u8; 32]> = vec![*keystore.master().expose()];
    secrets.extend(
        keystore
            .body
            .entries
            .iter()
            .filter_map(|e| e.secret.as_ref().map(|s| *s.expose())),
    );
    for secret in &secrets {
        assert!(!bytes.windows(32).any(|w| w == secret));
    }
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
