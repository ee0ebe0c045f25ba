//! Escrow shares are typed back in by people (text) or handed over sealed to a contact's
//! key. Must hold: parsing the text form, the sealed form and the binary form never
//! panics; a share that parses prints (text and binary) to what parses to the same share,
//! and its binary form is exactly the input. The harness also appends the right checksum
//! to the input, so that the fuzzer reaches the field checks behind it.
#![no_main]

use datamesh_fuzz::{fixture, with_share_checksum};
use datamesh_keys::Share;
use libfuzzer_sys::fuzz_target;

fn assert_round_trips(share: &Share) {
    let bytes = share.to_bytes();
    let again = Share::from_bytes(&bytes).expect("its own binary form parses");
    assert_eq!(again.to_bytes(), bytes);
    let text = share.to_text();
    let again = Share::from_text(&text).expect("its own text form parses");
    assert_eq!(again.to_bytes(), bytes);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(share) = Share::from_text(&text) {
        assert_round_trips(&share);
    }
    if let Ok(share) = fixture().keystore.open_sealed_share(&text) {
        assert_round_trips(&share);
    }
    for bytes in [data.to_vec(), with_share_checksum(data)] {
        if let Ok(share) = Share::from_bytes(&bytes) {
            assert_eq!(&share.to_bytes()[..], &bytes[..], "re-encoding differs");
            assert_round_trips(&share);
        }
    }
});
