//! Key envelopes come from any peer, next to the manifest. Must hold: parsing never
//! panics; an envelope that parses re-encodes to the same bytes; verifying it against the
//! frozen vector's authority key never panics, and one that verifies there does not
//! verify under another file's key; opening it with the frozen vector's owner key or a
//! stranger's never panics, and a key it is not wrapped to opens nothing.
#![no_main]

use std::sync::OnceLock;

use datamesh_core::ecies::SecretKey;
use datamesh_core::{AuthorityKey, AuthorityPublic, AuthorityRoot, AuthoritySalt, KeyEnvelope};
use datamesh_fuzz::{FORMAT_V2_JSON, json_hex};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [SecretKey; 2] {
    static KEYS: OnceLock<[SecretKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let owner: [u8; 32] = json_hex(FORMAT_V2_JSON, "owner_secret")
            .try_into()
            .expect("a 32-byte owner secret");
        [
            SecretKey::from_bytes(&owner).expect("the frozen owner key"),
            SecretKey::from_bytes(&[3; 32]).expect("a valid scalar"),
        ]
    })
}

/// The frozen vector's authority key, and another file's key of the same root.
fn authorities() -> &'static [AuthorityPublic; 2] {
    static KEYS: OnceLock<[AuthorityPublic; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let frozen = AuthorityPublic::from_bytes(&json_hex(FORMAT_V2_JSON, "authority_key"))
            .expect("the frozen authority key");
        let root = AuthorityRoot::from_bytes(&[8; 32]);
        let other = AuthorityKey::derive(&root, &AuthoritySalt::from_bytes([0xee; 32]))
            .expect("a valid derivation")
            .public();
        [frozen, other]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = KeyEnvelope::from_bytes(data) else {
        return;
    };
    assert_eq!(envelope.to_bytes(), data, "re-encoding differs");
    let [frozen, other] = authorities();
    if envelope.verify(frozen).is_ok() {
        assert!(envelope.verify(other).is_err(), "verified under two keys");
    }
    assert!(!envelope.wrapped().is_empty());
    for key in keys() {
        let opened = envelope.open([key]);
        if !envelope.is_recipient(&key.public_key()) {
            assert!(opened.is_err(), "a key that is not a recipient opened it");
        }
    }
});
