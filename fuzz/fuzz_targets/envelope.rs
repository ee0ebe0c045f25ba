//! Key envelopes come from any peer, next to the manifest. Must hold: parsing never
//! panics; an envelope that parses (its signature verified) re-encodes to the same bytes;
//! opening it with the frozen vector's owner key or a stranger's never panics, and a key
//! it is not wrapped to opens nothing.
#![no_main]

use std::sync::OnceLock;

use datamesh_core::KeyEnvelope;
use datamesh_core::ecies::SecretKey;
use datamesh_fuzz::{FORMAT_V1_JSON, json_hex};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [SecretKey; 2] {
    static KEYS: OnceLock<[SecretKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let owner: [u8; 32] = json_hex(FORMAT_V1_JSON, "owner_secret")
            .try_into()
            .expect("a 32-byte owner secret");
        [
            SecretKey::from_bytes(&owner).expect("the frozen owner key"),
            SecretKey::from_bytes(&[3; 32]).expect("a valid scalar"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = KeyEnvelope::from_bytes(data) else {
        return;
    };
    assert_eq!(envelope.to_bytes(), data, "re-encoding differs");
    assert!(!envelope.wrapped().is_empty());
    for key in keys() {
        let opened = envelope.open([key]);
        if !envelope.is_recipient(&key.public_key()) {
            assert!(opened.is_err(), "a key that is not a recipient opened it");
        }
    }
});
