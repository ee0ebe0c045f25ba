//! The network copy (sealed keystore + catalog, MACed under the master key) is fetched
//! from the network by `escrow recover --bootstrap` on a new machine. Must hold:
//! recovering from any bytes with the fixture's escrow shares never panics (this is also
//! the path of a plain keystore file read with the master key: header, slots, sealed
//! body); and a copy made of the fixture keystore with the input as its catalog recovers,
//! handing the catalog back unchanged.
#![no_main]

use std::fs;

use datamesh_fuzz::{BACKUP_PASSWORD, cheap_kdf, fixture};
use datamesh_keys::{Keystore, Password};
use libfuzzer_sys::fuzz_target;

fn recover(source: &[u8]) -> Option<Option<Vec<u8>>> {
    let fixture = fixture();
    let home = fixture.scratch_path();
    fs::create_dir(&home).expect("a scratch home");
    let password = Password::new(BACKUP_PASSWORD).expect("a password");
    let result = Keystore::recover_into(&home, &fixture.shares, source, &password, cheap_kdf());
    let _ = fs::remove_dir_all(&home);
    result.ok().map(|(_, catalog)| catalog)
}

fuzz_target!(|data: &[u8]| {
    let _ = recover(data);

    let copy = fixture()
        .keystore
        .network_copy(data)
        .expect("the fixture's keystore file reads");
    let catalog = recover(&copy).expect("a copy of the fixture keystore recovers");
    assert_eq!(catalog.as_deref(), Some(data));
});
