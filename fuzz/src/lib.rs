//! What the fuzz targets and the `seeds` program share: the fixture keystore, scratch homes,
//! and the few bytes a harness adds so that the fuzzer gets past a checksum it cannot
//! compute (the parsers behind a checksum are the interesting ones).
//!
//! The fixture is the frozen v1 keystore of `keys/tests/data`, opened in a private temp
//! home: every process has the same keys and the same master key, so a bundle or a network
//! copy that `seeds` made opens in a fuzz target, and escrow shares split in one process
//! combine to the master key of the other.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use datamesh_core::KeyId;
use datamesh_core::ecies::{self, PublicKey};
use datamesh_keys::{KdfLimits, KdfParams, Keystore, Layout, Password, Share};

/// The frozen v1 keystore file (`keys/tests/data/keystore_v1.bin`).
pub const FROZEN_KEYSTORE: &[u8] = include_bytes!("../../keys/tests/data/keystore_v1.bin");
/// What it holds, with its passwords (`keys/tests/data/keystore_v1.json`).
const FROZEN_KEYSTORE_JSON: &str = include_str!("../../keys/tests/data/keystore_v1.json");
/// The frozen core formats: a manifest and a key envelope, with the authority root and
/// salt that sign it (`core/tests/data/format_v2.json`).
pub const FORMAT_V2_JSON: &str = include_str!("../../core/tests/data/format_v2.json");

/// The password of password-sealed backups (seeds and targets alike) and of the slot a
/// recovery adds. Only its being non-empty is checked.
pub const BACKUP_PASSWORD: &str = "fuzzing fixture: quartz lantern over a mossy viaduct";

/// Argon2's minimum: new slots and password backups made here stay cheap.
///
/// # Panics
///
/// Never: 8 KiB, 1 pass, 1 lane is within every bound.
#[must_use]
pub fn cheap_kdf() -> KdfParams {
    KdfParams::new(8, 1, 1).expect("Argon2's minimum parameters are valid")
}

/// The most KDF work a target agrees to per input: the frozen keystore's two slots
/// (m=8 KiB t=1 and m=16 KiB t=2) and nothing much more, so that a fuzzed header never
/// buys a slow Argon2 run (larger parameters are refused, which is the path under test).
#[must_use]
pub fn cheap_limits() -> KdfLimits {
    KdfLimits::new(64, 2, 1)
}

/// A field of the frozen vectors' JSON files.
///
/// # Panics
///
/// If the field is missing: the vector files are part of the repository.
#[must_use]
pub fn json_field(json: &str, field: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).expect("frozen vector JSON");
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("frozen vector field {field}"))
        .to_owned()
}

/// Hex of a frozen vector field, decoded.
///
/// # Panics
///
/// If the field is missing or not hex.
#[must_use]
pub fn json_hex(json: &str, field: &str) -> Vec<u8> {
    data_encoding::HEXLOWER
        .decode(json_field(json, field).as_bytes())
        .expect("frozen vector hex")
}

/// The password of the frozen keystore's first slot.
///
/// # Panics
///
/// Never for the committed vector.
#[must_use]
pub fn frozen_password() -> Password {
    Password::new(&json_field(FROZEN_KEYSTORE_JSON, "password")).expect("frozen password")
}

/// Puts `bytes` as the keystore file of `home`, with the permissions opening insists on.
///
/// # Errors
///
/// I/O.
pub fn write_keystore(home: &Path, bytes: &[u8]) -> io::Result<()> {
    let layout = Layout::new(home);
    fs::create_dir_all(layout.keys_dir())?;
    fs::set_permissions(layout.keys_dir(), fs::Permissions::from_mode(0o700))?;
    fs::write(layout.keystore(), bytes)?;
    fs::set_permissions(layout.keystore(), fs::Permissions::from_mode(0o600))
}

/// The frozen keystore, opened in a private temp home, and a 2-of-3 escrow split of it.
#[derive(Debug)]
pub struct Fixture {
    dir: tempfile::TempDir,
    /// The opened frozen keystore.
    pub keystore: Keystore,
    /// Two shares of a 2-of-3 set: they combine to its master key.
    pub shares: Vec<Share>,
    next: AtomicU64,
}

impl Fixture {
    /// Opens the frozen keystore in a new temp home.
    ///
    /// # Panics
    ///
    /// If the frozen keystore does not open: the harness cannot work without it.
    #[must_use]
    pub fn new() -> Self {
        // Under TMPDIR: the keystore fsyncs every write, milliseconds per input on a disk
        // and nothing on tmpfs, so `.ci/run` points TMPDIR at a folder in /dev/shm. The
        // folder outlives the process (libFuzzer exits without dropping statics).
        let dir = tempfile::Builder::new()
            .prefix("datamesh-fuzz-")
            .tempdir()
            .expect("temp dir");
        let home = dir.path().join("fixture");
        write_keystore(&home, FROZEN_KEYSTORE).expect("write the frozen keystore");
        let keystore =
            Keystore::open(&home, &frozen_password()).expect("the frozen keystore opens");
        let mut shares = keystore.escrow_split(2, 3).expect("escrow split");
        shares.truncate(2);
        Self {
            dir,
            keystore,
            shares,
            next: AtomicU64::new(0),
        }
    }

    /// A path under the fixture's temp dir that does not exist yet.
    #[must_use]
    pub fn scratch_path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("scratch-{n}"))
    }

    /// The active file-encryption public key (what bundles and shares are sealed to).
    ///
    /// # Panics
    ///
    /// Never for the frozen keystore (it has an active file-encryption key).
    #[must_use]
    pub fn recipient(&self) -> PublicKey {
        let (_, key) = self
            .keystore
            .active_file_key()
            .expect("an active file-encryption key");
        key.public_key()
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's fixture, made on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new)
}

/// The checksum an escrow share ends with (`docs/keystore.md`, "Escrow": the first 4 bytes
/// of BLAKE3 derive_key("datamesh escrow v1 checksum", the bytes before it)).
#[must_use]
pub fn with_share_checksum(body: &[u8]) -> Vec<u8> {
    let digest = blake3::Hasher::new_derive_key("datamesh escrow v1 checksum")
        .update(body)
        .finalize();
    let mut out = body.to_vec();
    out.extend_from_slice(&digest.as_bytes()[..4]);
    out
}

/// `body` followed by the unkeyed BLAKE3 trailer every backup bundle ends with
/// (`docs/keystore.md`, "Backup bundles").
#[must_use]
pub fn with_backup_trailer(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(blake3::hash(body).as_bytes());
    out
}

/// Backup bundle header fields the harness reads: whether a password-sealed bundle names
/// KDF parameters within [`cheap_limits`] (a bundle's parameters are checked against the
/// default limits, up to 1 GiB, by `Keystore::verify_backup`; the harness only tries the
/// password on cheap ones).
#[must_use]
pub fn backup_kdf_is_cheap(bytes: &[u8]) -> bool {
    let at = match (bytes.get(..8), bytes.get(8), bytes.get(9)) {
        (Some(b"DMBACKUP"), Some(1), _) => 9,
        (Some(b"DMBACKUP"), Some(2 | 3), Some(1)) => 10,
        _ => return true,
    };
    let be32 = |i: usize| {
        bytes
            .get(at + 4 * i..at + 4 * i + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_be_bytes)
    };
    be32(0) <= 64 && be32(1) <= 2 && be32(2) <= 1
}

/// A version-2 bundle sealed to `recipient` whose plaintext is `manifest | content`, made
/// the way `docs/keystore.md` ("Backup bundles") describes, with a fixed content key and
/// nonce: the fuzzer chooses the plaintext, so it reaches the parsers behind AES-GCM.
/// (Version 3 adds an ed25519 signature the fuzzer cannot make; version 2 bundles are
/// still read, through the same manifest and content parsers.)
///
/// # Panics
///
/// Never: AES-GCM seals any plaintext below 64 GiB.
#[must_use]
pub fn seal_backup_plaintext(recipient: &PublicKey, wrapped_key: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = b"DMBACKUP".to_vec();
    out.extend_from_slice(&[2, 2]);
    out.extend_from_slice(KeyId::of(recipient).as_bytes());
    out.extend_from_slice(wrapped_key);
    out.extend_from_slice(&BACKUP_NONCE);
    let sealed = Aes256Gcm::new(GenericArray::from_slice(&BACKUP_CONTENT_KEY))
        .encrypt(
            GenericArray::from_slice(&BACKUP_NONCE),
            Payload {
                msg: plain,
                aad: &out,
            },
        )
        .expect("AES-GCM seals");
    out.extend_from_slice(&sealed);
    with_backup_trailer(&out)
}

/// The content key of [`seal_backup_plaintext`], wrapped to `recipient` (ECIES; once per
/// process, it is the slow part).
#[must_use]
pub fn wrap_backup_key(recipient: &PublicKey) -> Vec<u8> {
    ecies::encrypt(recipient, &BACKUP_CONTENT_KEY)
}

const BACKUP_CONTENT_KEY: [u8; 32] = [0x42; 32];
const BACKUP_NONCE: [u8; 12] = [0x24; 12];
