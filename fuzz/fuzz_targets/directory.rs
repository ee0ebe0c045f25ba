//! Directory objects come from the network (whoever can open the folder's file). Must
//! hold: parsing never panics; what parses re-encodes to the same bytes and passes every
//! check (plain relative paths, parents first, no duplicates, bounded counts).
#![no_main]

use datamesh_core::{Directory, is_plain_relative};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = Directory::from_bytes(data) else {
        return;
    };
    assert_eq!(dir.to_bytes(), data, "re-encoding differs");
    assert!(dir.check().is_ok());
    for entry in &dir.entries {
        assert!(is_plain_relative(&entry.path), "{:?}", entry.path);
    }
});
