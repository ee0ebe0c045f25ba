//! `seeds <dir>`: writes a seed corpus for every fuzz target into `<dir>/<target>/`: the
//! frozen vectors of `core/tests/data` and `keys/tests/data`, and formats made by the
//! public APIs (fresh manifests and envelopes of a few sizes, escrow shares in every form,
//! backup bundles sealed both ways, network copies). Made at run time so that no binary
//! seed is committed; the fixture is the frozen keystore, so what is sealed here opens in
//! the targets.

use std::error::Error;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

use datamesh_core::ecies::SecretKey;
use datamesh_core::{
    AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, Encoder, KeyEnvelope,
};
use datamesh_fuzz::{
    BACKUP_PASSWORD, FORMAT_V2_JSON, FROZEN_KEYSTORE, cheap_kdf, fixture, json_hex,
};
use datamesh_keys::{BackupSeal, KeyFile, Keystore, Layout, Password, UnlockPolicy};

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: seeds <dir>");
        return ExitCode::from(2);
    };
    match write_all(Path::new(&dir)) {
        Ok(count) => {
            println!("seeds: {count} files in {}", Path::new(&dir).display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seeds: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Corpus<'a> {
    dir: &'a Path,
    count: usize,
}

impl Corpus<'_> {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        self.count += 1;
        Ok(())
    }
}

fn write_all(dir: &Path) -> Result<usize, Box<dyn Error>> {
    let mut corpus = Corpus { dir, count: 0 };

    // Core formats: the frozen vector, then fresh files of interesting sizes.
    corpus.put(
        "manifest",
        "frozen_v2",
        &json_hex(FORMAT_V2_JSON, "manifest"),
    )?;
    corpus.put(
        "envelope",
        "frozen_v2",
        &json_hex(FORMAT_V2_JSON, "envelope"),
    )?;
    corpus.put(
        "ids",
        "frozen_v2_file_id",
        datamesh_fuzz::json_field(FORMAT_V2_JSON, "file_id").as_bytes(),
    )?;
    let mut folder = datamesh_core::Directory {
        root: None,
        entries: vec![
            datamesh_core::Entry {
                path: "photos".into(),
                mode: 0o755,
                mtime: 1_700_000_000,
                kind: datamesh_core::EntryKind::Dir,
            },
            datamesh_core::Entry {
                path: "photos/a.jpg".into(),
                mode: 0o644,
                mtime: 1_700_000_001,
                kind: datamesh_core::EntryKind::File {
                    size: 4096,
                    id: datamesh_fuzz::json_field(FORMAT_V2_JSON, "file_id"),
                },
            },
            datamesh_core::Entry {
                path: "photos/latest".into(),
                mode: 0o777,
                mtime: 1_700_000_002,
                kind: datamesh_core::EntryKind::Symlink {
                    target: "a.jpg".into(),
                },
            },
        ],
    };
    corpus.put("directory", "three_entries", &folder.to_bytes())?;
    folder.root = Some(datamesh_core::Root {
        mode: 0o750,
        mtime: 1_699_999_999,
    });
    corpus.put("directory", "three_entries_v2", &folder.to_bytes())?;
    let owner = SecretKey::from_bytes(&[9; 32])?;
    // The frozen vector's authority root: the envelope target verifies against its keys.
    let root = AuthorityRoot::from_bytes(&[8; 32]);
    let others = [
        SecretKey::from_bytes(&[5; 32])?,
        SecretKey::from_bytes(&[6; 32])?,
    ];
    for (i, len) in [0usize, 1, 65_535, 65_537, 300_000].into_iter().enumerate() {
        let body = vec![0x5a; len];
        let mut encoder = Encoder::new(&body[..], EncodeOptions::new(format!("seed-{len}.bin")));
        let stripes: Vec<_> = encoder.by_ref().collect::<Result<_, _>>()?;
        let authority = AuthorityKey::derive(&root, &AuthoritySalt::from_bytes([i as u8; 32]))?;
        let file = encoder.finish(authority.file_authority())?;
        corpus.put("manifest", &format!("len_{len}"), &file.manifest.to_bytes())?;
        let mut recipients = vec![owner.public_key()];
        recipients.extend(others.iter().take(i % 3).map(SecretKey::public_key));
        let envelope = KeyEnvelope::seal(
            file.file_id,
            i as u64,
            &file.data_key,
            &recipients,
            &authority,
        )?;
        corpus.put("envelope", &format!("len_{len}"), &envelope.to_bytes())?;
        corpus.put(
            "ids",
            &format!("file_id_{len}"),
            file.file_id.to_string().as_bytes(),
        )?;
        if let Some(stripe) = stripes.first() {
            let id = stripe.ids()[0];
            corpus.put("ids", &format!("shard_id_{len}"), id.to_string().as_bytes())?;
        }
    }
    corpus.put(
        "ids",
        "key_id",
        datamesh_core::KeyId::of(&owner.public_key())
            .to_string()
            .as_bytes(),
    )?;

    // Keys formats, from the frozen keystore.
    let fixture = fixture();
    let keystore = &fixture.keystore;
    corpus.put("keystore_file", "frozen_v1", FROZEN_KEYSTORE)?;
    corpus.put("network_copy", "frozen_v1_keystore", FROZEN_KEYSTORE)?;
    {
        // A later generation of the same keystore (what a reload follows).
        let home = fixture.scratch_path();
        datamesh_fuzz::write_keystore(&home, FROZEN_KEYSTORE)?;
        let mut later = datamesh_keys::Keystore::open(&home, &datamesh_fuzz::frozen_password())?;
        later.rotate("file-encryption")?;
        corpus.put(
            "keystore_file",
            "rotated",
            &fs::read(Layout::new(&home).keystore())?,
        )?;
        fs::remove_dir_all(&home)?;
    }
    for (name, catalog) in [("empty", &b""[..]), ("catalog", b"files: seed catalog\n")] {
        corpus.put("network_copy", name, &keystore.network_copy(catalog)?)?;
    }

    let shares = keystore.escrow_split(2, 3)?;
    let with_copy = keystore.escrow_split_with_copy(3, 5, Some([0x11; 32]))?;
    for (i, share) in shares.iter().chain(&with_copy).enumerate() {
        corpus.put(
            "escrow_share",
            &format!("text_{i}"),
            share.to_text().as_bytes(),
        )?;
        corpus.put("escrow_share", &format!("bytes_{i}"), &share.to_bytes())?;
        let body = share.to_bytes();
        corpus.put(
            "escrow_share",
            &format!("body_{i}"),
            &body[..body.len() - 4],
        )?;
        corpus.put(
            "escrow_share",
            &format!("sealed_{i}"),
            share.seal_to(&fixture.recipient()).as_bytes(),
        )?;
    }

    slot_records(&mut corpus)?;

    let password = Password::new(BACKUP_PASSWORD)?;
    for (name, catalog) in [("empty", &b""[..]), ("catalog", b"files: seed catalog\n")] {
        let sealed = keystore.backup(
            BackupSeal::Password {
                password: &password,
                kdf: cheap_kdf(),
            },
            catalog,
        )?;
        corpus.put("backup_bundle", &format!("password_{name}"), &sealed)?;
        let recipient = fixture.recipient();
        let sealed = keystore.backup(BackupSeal::Recipient(&recipient), catalog)?;
        corpus.put("backup_bundle", &format!("recipient_{name}"), &sealed)?;
    }
    Ok(corpus.count)
}

/// The slot records of a keystore file's header (see `docs/keystore.md`): (kind, data).
fn header_slots(file: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let Some(&count) = file.get(17) else {
        return out;
    };
    let mut at = 18;
    for _ in 0..count {
        let Some(head) = file.get(at..at + 7) else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([head[5], head[6]]));
        let Some(data) = file.get(at + 7..at + 7 + len) else {
            break;
        };
        out.push((head[4], data));
        at += 7 + len;
    }
    out
}

/// `bytes` after a two-byte length.
fn blob(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// `bytes` after a one-byte length.
fn short(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![bytes.len() as u8];
    out.extend_from_slice(bytes);
    out
}

/// Seeds of `slot_records`: the records of a keystore with a password, a
/// password+keyfile slot and an unlock policy, as written by the public API; the
/// hardware kinds by their documented layout (no token or TPM is needed to parse one).
fn slot_records(corpus: &mut Corpus<'_>) -> Result<(), Box<dyn Error>> {
    let fixture = fixture();
    let home = fixture.scratch_path();
    datamesh_fuzz::write_keystore(&home, FROZEN_KEYSTORE)?;
    let mut keystore = Keystore::open(&home, &datamesh_fuzz::frozen_password())?;
    keystore.add_composite_slot(
        &Password::new(BACKUP_PASSWORD)?,
        &KeyFile::from_bytes(&[7; 32]),
        cheap_kdf(),
        "seed",
    )?;
    keystore.set_unlock_policy(Some(UnlockPolicy::allowing(&[
        "password".to_owned(),
        "password+keyfile".to_owned(),
    ])?))?;
    let file = fs::read(Layout::new(&home).keystore())?;
    for (i, (kind, data)) in header_slots(&file).into_iter().enumerate() {
        corpus.put(
            "slot_records",
            &format!("header_{i}"),
            &[&[kind][..], data].concat(),
        )?;
    }
    drop(keystore);
    fs::remove_dir_all(&home)?;
    // The unlock policy (record kind 0) with padding after it.
    corpus.put("slot_records", "policy", &[0, 2, 1, 4, 0, 0, 0])?;
    corpus.put("slot_records", "policy_hardware", &[0, 3, 2, 3, 5])?;
    let sealed = [[0x5a; 12].as_slice(), &[0xa5; 48]].concat();
    let pkcs11 = [
        blob(b"/usr/lib/softhsm/libsofthsm2.so"),
        short(b"node"),
        short(b"datamesh-keystore"),
        sealed.clone(),
    ]
    .concat();
    // PCR 16, a sealed object's public and private parts (sizes as a TPM makes them).
    let tpm = [
        (1u32 << 16).to_be_bytes().to_vec(),
        blob(&[0x23; 78]),
        blob(&[0x42; 126]),
        sealed.clone(),
    ]
    .concat();
    let password_part = [
        8u32.to_be_bytes().as_slice(),
        &1u32.to_be_bytes(),
        &1u32.to_be_bytes(),
        &[0x33; 32],
        &sealed,
    ]
    .concat();
    corpus.put("slot_records", "pkcs11", &[&[2][..], &pkcs11].concat())?;
    corpus.put("slot_records", "tpm", &[&[3][..], &tpm].concat())?;
    corpus.put(
        "slot_records",
        "password_pkcs11",
        &[&[5][..], &password_part, &blob(&pkcs11)].concat(),
    )?;
    corpus.put(
        "slot_records",
        "password_tpm",
        &[&[6][..], &password_part, &blob(&tpm)].concat(),
    )?;
    Ok(())
}
