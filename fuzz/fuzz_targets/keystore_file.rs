//! The keystore file is read from disk, where anything may have damaged it. Must hold:
//! reading its generation, opening it (password slots, KDF limits, the sealed body) and
//! following it from an open keystore (`reload`, with the master key in memory) never
//! panic; a file that opens reports the generation its header carries.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use datamesh_fuzz::{FROZEN_KEYSTORE, cheap_limits, fixture, frozen_password, write_keystore};
use datamesh_keys::{Keystore, Layout, Password};
use libfuzzer_sys::fuzz_target;

struct State {
    /// Where a fuzzed file is opened with a password.
    scratch: PathBuf,
    password: Password,
    /// An open keystore whose file the fuzzer replaces before each reload.
    follower: Mutex<Keystore>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let fixture = fixture();
        let home = fixture.scratch_path();
        write_keystore(&home, FROZEN_KEYSTORE).expect("write the frozen keystore");
        let follower = Keystore::open(&home, &frozen_password()).expect("the frozen keystore");
        State {
            scratch: fixture.scratch_path(),
            password: frozen_password(),
            follower: Mutex::new(follower),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    write_keystore(&state.scratch, data).expect("write the input");
    let generation = Keystore::generation(&state.scratch);
    let opened = Keystore::open_with_limits(&state.scratch, &state.password, &cheap_limits());
    if let Ok(keystore) = &opened {
        assert_eq!(generation.ok(), Some(keystore.generation()));
    }
    drop(opened);
    // A failed unlock is logged, and after three in a row the next one waits (1 s, 2 s,
    // ...): every input starts from no log.
    let _ = fs::remove_file(Layout::new(&state.scratch).audit_log());

    let mut follower = state.follower.lock().unwrap_or_else(|e| e.into_inner());
    write_keystore(follower.layout().home(), data).expect("write the input");
    if let Ok(true) = follower.reload() {
        let on_disk = Keystore::generation(follower.layout().home());
        assert_eq!(on_disk.ok(), Some(follower.generation()));
    }
});
