//! Backup bundles are files a user brings back, from anywhere. Must hold: opening one
//! never panics, with the recipient's keys or (when its KDF parameters are cheap) the
//! backup password; nor does opening what the harness makes of the input so that the
//! fuzzer gets past the checksum (the BLAKE3 trailer appended) and past AES-GCM (the input
//! as key count + content, under a manifest with the content's hash, sealed to the
//! fixture's key): the postcard content and every keystore check on its entries.
#![no_main]

use std::sync::OnceLock;

use datamesh_fuzz::{
    BACKUP_PASSWORD, backup_kdf_is_cheap, fixture, seal_backup_plaintext, with_backup_trailer,
    wrap_backup_key,
};
use datamesh_keys::{BackupKey, Keystore, Password, SealedWith};
use libfuzzer_sys::fuzz_target;

struct State {
    password: Password,
    recipient: datamesh_core::ecies::PublicKey,
    wrapped_key: Vec<u8>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let recipient = fixture().recipient();
        State {
            password: Password::new(BACKUP_PASSWORD).expect("a password"),
            wrapped_key: wrap_backup_key(&recipient),
            recipient,
        }
    })
}

fn open(bytes: &[u8], state: &State) {
    let ring = BackupKey::Recipient(&fixture().keystore);
    if let Ok(opened) = Keystore::verify_backup(bytes, ring) {
        assert!(matches!(opened.sealed_with, SealedWith::Recipient(_)));
        assert!(datamesh_keys::is_sealed_to_key(bytes));
    }
    if backup_kdf_is_cheap(bytes)
        && let Ok(opened) = Keystore::verify_backup(bytes, BackupKey::Password(&state.password))
    {
        assert_eq!(opened.sealed_with, SealedWith::Password);
        assert!(!datamesh_keys::is_sealed_to_key(bytes));
    }
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    open(data, state);
    open(&with_backup_trailer(data), state);

    let Some((&key_count, content)) = data.split_first() else {
        return;
    };
    // Version 2, as `seal_backup_plaintext` writes (unsigned; same parsers as version 3).
    let manifest = datamesh_keys::Manifest {
        format_version: 2,
        created: 0,
        key_count: u32::from(key_count),
        content_blake3: *blake3::hash(content).as_bytes(),
    };
    let mut plain = postcard::to_allocvec(&manifest).expect("postcard encodes a manifest");
    plain.extend_from_slice(content);
    let bundle = seal_backup_plaintext(&state.recipient, &state.wrapped_key, &plain);
    if let Ok(opened) = Keystore::verify_backup(&bundle, BackupKey::Recipient(&fixture().keystore))
    {
        assert_eq!(opened.manifest, manifest);
    }
});
