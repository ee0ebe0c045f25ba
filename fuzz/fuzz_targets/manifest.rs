//! Manifests come from any peer (a get fetches them by file id). Must hold: parsing never
//! panics; a manifest that parses re-encodes to the same bytes (one manifest, one id), its
//! id is the hash of those bytes, every stripe it lists has a layout, and its authority
//! key re-encodes to the bytes it was read from.
#![no_main]

use datamesh_core::{AuthorityPublic, DataKey, FileId, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::from_bytes(data) else {
        return;
    };
    assert_eq!(manifest.to_bytes(), data, "re-encoding differs");
    assert_eq!(manifest.file_id(), FileId::of_manifest(data));
    let key = manifest.authority().key;
    assert_eq!(AuthorityPublic::from_bytes(&key.to_bytes()), Ok(key));
    let count = manifest.stripe_count();
    assert_eq!(count, manifest.stripes().len() as u64);
    for index in (0..count).take(64).chain(count.checked_sub(1)) {
        assert!(
            manifest.layout(index).is_some(),
            "stripe {index} has no layout"
        );
    }
    assert!(manifest.layout(count).is_none());
    // The metadata is sealed: a wrong key opens nothing, and never panics.
    let _ = manifest.open_metadata(&DataKey::from_bytes(&[7; 32]));
});
