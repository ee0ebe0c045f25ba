//! The unlock slots' records, as read from a keystore file's header, are hostile bytes:
//! the first input byte is the record's kind (0: the unlock policy sealed after the body;
//! 1 to 6: password, pkcs11, tpm, password+keyfile, password+pkcs11, password+tpm), the
//! rest its data. Must hold: parsing never panics; a record that parses encodes back to
//! exactly its bytes (one encoding per record); `SlotKind::parse` agrees with it and
//! names the kind it was given, and describing the slot never panics.
#![no_main]

use datamesh_keys::{POLICY_RECORD, SlotKind, reencode_record};
use libfuzzer_sys::fuzz_target;

/// Kind names by kind number (1..=6).
const NAMES: [&str; 6] = [
    "password",
    "pkcs11",
    "tpm",
    "password+keyfile",
    "password+pkcs11",
    "password+tpm",
];

fuzz_target!(|input: &[u8]| {
    let Some((&kind, data)) = input.split_first() else {
        return;
    };
    let reencoded = reencode_record(kind, data);
    if let Ok(bytes) = &reencoded {
        assert_eq!(bytes.as_slice(), data, "kind {kind}: not the bytes read");
    }
    if kind == POLICY_RECORD {
        return;
    }
    let parsed = SlotKind::parse(kind, data);
    match (
        &parsed,
        usize::from(kind).checked_sub(1).and_then(|i| NAMES.get(i)),
    ) {
        (Ok(slot), Some(name)) => {
            assert!(reencoded.is_ok(), "kind {kind}: parsed but not re-encoded");
            assert_eq!(slot.name(), *name);
            let _ = slot.needs();
        }
        (Ok(slot), None) => {
            assert_eq!(slot, &SlotKind::Unknown(kind));
            assert!(reencoded.is_err());
        }
        (Err(e), _) => {
            assert!(
                reencoded.is_err(),
                "kind {kind}: re-encoded but not parsed ({e})"
            );
            assert!(!e.contains('\n'), "a multi-line error: {e:?}");
        }
    }
});
