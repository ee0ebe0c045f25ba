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
use datamesh_keys::{BackupSeal, Layout, Password};

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
