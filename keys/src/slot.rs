//! Unlock slots of the kinds beyond a password (see `docs/keystore.md`, "Slots"): a
//! PKCS#11 token (`pkcs11`), a TPM 2.0 (`tpm`, behind the default-on `tpm` feature) and a
//! password together with a key file (`composite`). Each wraps the same master key as a
//! password slot does; what differs is where the wrapping key lives.
//!
//! [`Credentials`] is what a caller offers to unlock with; the key ring tries every slot
//! it offers something for, in the header's order.

use core::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::password::Password;
use crate::secret::{SECRET_LEN, Secret32};

pub(crate) mod composite;
pub(crate) mod pkcs11;
pub(crate) mod tpm;

/// Slot kind: the master key encrypted (AES-256-GCM) by a key inside a PKCS#11 token.
pub(crate) const SLOT_PKCS11: u8 = 2;
/// Slot kind: a slot key sealed to a TPM 2.0 (optionally under a PCR policy).
pub(crate) const SLOT_TPM: u8 = 3;
/// Slot kind: a password and a key file, both mixed into the slot key.
pub(crate) const SLOT_COMPOSITE: u8 = 4;

/// Label of every slot's associated data (as the password slot's).
pub(crate) const SLOT_AAD_LABEL: &[u8] = b"datamesh keystore slot v1";
/// The AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// The wrapped master key: 32 bytes and the 16-byte tag.
pub(crate) const WRAPPED_LEN: usize = SECRET_LEN + 16;
/// The largest key file read (64 KiB): key files are small random files.
pub const MAX_KEY_FILE_LEN: u64 = 64 << 10;
/// The TCTI used when none is given: the kernel's TPM resource manager.
pub const DEFAULT_TPM_TCTI: &str = "device:/dev/tpmrm0";

/// A PKCS#11 user PIN. Zeroized on drop; `Debug` prints `Pin(..)`.
pub struct Pin(SecretString);

impl Pin {
    /// A PIN from its text.
    #[must_use]
    pub fn new(text: &str) -> Self {
        Self(SecretString::from(text.to_owned()))
    }

    pub(crate) fn secret(&self) -> &SecretString {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

/// A key file reduced to its BLAKE3 digest (the file's bytes are not kept).
pub struct KeyFile(Secret32);

impl KeyFile {
    /// Reads a key file (at most [`MAX_KEY_FILE_LEN`] bytes, at least 16).
    ///
    /// # Errors
    ///
    /// A one-line description: unreadable, empty or too short, too large.
    pub fn read(path: &Path) -> Result<Self, String> {
        let context =
            |e: std::io::Error| format!("cannot read the key file {}: {e}", path.display());
        let file = File::open(path).map_err(context)?;
        let len = file.metadata().map_err(context)?.len();
        if len > MAX_KEY_FILE_LEN {
            return Err(format!(
                "the key file {} is larger than {MAX_KEY_FILE_LEN} bytes",
                path.display()
            ));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(usize::try_from(len).unwrap_or(0) + 1));
        file.take(MAX_KEY_FILE_LEN)
            .read_to_end(&mut bytes)
            .map_err(context)?;
        if bytes.len() < 16 {
            return Err(format!(
                "the key file {} holds {} bytes; a key file needs at least 16 (make one with `datamesh keys slot add --key-file F --generate-key-file`)",
                path.display(),
                bytes.len()
            ));
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// A key file's digest from its bytes.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Secret32::init_with(|out| {
            *out = *blake3::Hasher::new_derive_key("datamesh key file v1")
                .update(bytes)
                .finalize()
                .as_bytes();
        }))
    }

    pub(crate) fn digest(&self) -> &Secret32 {
        &self.0
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFile(..)")
    }
}

/// What a caller offers to unlock a keystore with. Every slot the credentials can open is
/// tried in the header's order: password slots with a password, composite slots with a
/// password and a key file, PKCS#11 and TPM slots when hardware is allowed (the default).
///
/// ```
/// use datamesh_keys::{Credentials, Password};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let with_password = Credentials::password(Password::new("correct horse")?);
/// let unattended = Credentials::new().with_tpm_tcti("swtpm:host=127.0.0.1,port=2321");
/// # let _ = (with_password, unattended); Ok(()) }
/// ```
#[derive(Debug)]
pub struct Credentials {
    pub(crate) password: Option<Password>,
    pub(crate) key_file: Option<KeyFile>,
    pub(crate) pin: Option<Pin>,
    pub(crate) hardware: bool,
    pub(crate) tpm_tcti: Option<String>,
    pub(crate) only_slot: Option<u32>,
}

impl Default for Credentials {
    fn default() -> Self {
        Self::new()
    }
}

impl Credentials {
    /// No password or key file; hardware slots allowed (they need no secret from the user,
    /// or only a PIN).
    #[must_use]
    pub fn new() -> Self {
        Self {
            password: None,
            key_file: None,
            pin: None,
            hardware: true,
            tpm_tcti: None,
            only_slot: None,
        }
    }

    /// A password only (hardware slots are not tried).
    #[must_use]
    pub fn password(password: Password) -> Self {
        Self::new().with_password(password).with_hardware(false)
    }

    /// Adds a password (for password and composite slots).
    #[must_use]
    pub fn with_password(mut self, password: Password) -> Self {
        self.password = Some(password);
        self
    }

    /// Adds a key file (for composite slots).
    #[must_use]
    pub fn with_key_file(mut self, key_file: KeyFile) -> Self {
        self.key_file = Some(key_file);
        self
    }

    /// Adds the PIN of PKCS#11 tokens.
    #[must_use]
    pub fn with_pin(mut self, pin: Pin) -> Self {
        self.pin = Some(pin);
        self
    }

    /// Whether PKCS#11 and TPM slots are tried (default: yes).
    #[must_use]
    pub fn with_hardware(mut self, hardware: bool) -> Self {
        self.hardware = hardware;
        self
    }

    /// The TPM to use (a TCTI string such as `device:/dev/tpmrm0` or
    /// `swtpm:host=127.0.0.1,port=2321`; default [`DEFAULT_TPM_TCTI`]).
    #[must_use]
    pub fn with_tpm_tcti(mut self, tcti: impl Into<String>) -> Self {
        self.tpm_tcti = Some(tcti.into());
        self
    }

    /// Tries only slot `id`.
    #[must_use]
    pub fn only_slot(mut self, id: u32) -> Self {
        self.only_slot = Some(id);
        self
    }

    /// Whether a password was given.
    #[must_use]
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(crate) fn tcti(&self) -> &str {
        self.tpm_tcti.as_deref().unwrap_or(DEFAULT_TPM_TCTI)
    }
}

/// Where a new hardware slot's wrapping key is.
#[derive(Debug)]
#[non_exhaustive]
pub enum NewSlot {
    /// A key in a PKCS#11 token (made there if absent: AES-256, sensitive, never
    /// extractable).
    Pkcs11 {
        /// The module (shared library) path.
        module: PathBuf,
        /// The token's label.
        token: String,
        /// The key's label.
        key_label: String,
        /// The user PIN.
        pin: Option<Pin>,
    },
    /// A slot key sealed to a TPM 2.0, optionally under a policy on these SHA-256 PCRs.
    Tpm {
        /// The TCTI.
        tcti: String,
        /// PCR indexes (0..=23) the slot is bound to; empty: none.
        pcrs: Vec<u8>,
    },
}

/// AES-256-GCM of the master key under a slot key: a random nonce and 48 bytes.
pub(crate) fn wrap(
    key: &Secret32,
    aad: &[u8],
    master: &Secret32,
) -> ([u8; NONCE_LEN], [u8; WRAPPED_LEN]) {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut wrapped = [0u8; WRAPPED_LEN];
    let (body, tag_out) = wrapped.split_at_mut(SECRET_LEN);
    body.copy_from_slice(master.expose());
    let cipher = Aes256Gcm::new(GenericArray::from_slice(key.expose()));
    // 32 bytes never reach AES-GCM's length limit.
    if let Ok(tag) = cipher.encrypt_in_place_detached(GenericArray::from_slice(&nonce), aad, body) {
        tag_out.copy_from_slice(&tag);
    }
    (nonce, wrapped)
}

/// The master key [`wrap`] sealed, or `None` if `key` or `aad` is not the one used.
pub(crate) fn unwrap(
    key: &Secret32,
    aad: &[u8],
    nonce: &[u8; NONCE_LEN],
    wrapped: &[u8; WRAPPED_LEN],
) -> Option<Secret32> {
    let (body, tag) = wrapped.split_at(SECRET_LEN);
    let mut ok = false;
    let master = Secret32::init_with(|out| {
        out.copy_from_slice(body);
        ok = Aes256Gcm::new(GenericArray::from_slice(key.expose()))
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                aad,
                out,
                GenericArray::from_slice(tag),
            )
            .is_ok();
    });
    ok.then_some(master)
}

/// A bounded reader of slot data (big-endian).
pub(crate) struct SlotReader<'a> {
    bytes: &'a [u8],
}

impl<'a> SlotReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self
            .bytes
            .split_at_checked(n)
            .ok_or_else(|| "truncated slot".to_owned())?;
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_be_bytes)
    }

    /// A string of at most `max` bytes after a one-byte length.
    pub(crate) fn short_str(&mut self, max: usize) -> Result<String, String> {
        let len = usize::from(self.u8()?);
        if len > max {
            return Err("a slot field is too long".into());
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a slot field is not UTF-8".into())
    }

    /// Bytes after a two-byte length.
    pub(crate) fn blob(&mut self) -> Result<&'a [u8], String> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    pub(crate) fn finish(self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes after a slot".into())
        }
    }
}

/// Appends a string after a one-byte length (the caller checked it fits).
pub(crate) fn put_short_str(out: &mut Vec<u8>, text: &str) {
    out.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(text.as_bytes());
}

/// Appends bytes after a two-byte length (the caller checked they fit).
pub(crate) fn put_blob(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The PCRs a TPM slot is bound to (its data parsed, no TPM needed).
pub(crate) fn tpm_pcrs(data: &[u8]) -> Result<Vec<u8>, String> {
    tpm::TpmSlot::decode(data).map(|slot| slot.pcrs())
}

/// Opens a TPM slot through the TPM at `tcti`.
pub(crate) fn open_tpm(data: &[u8], tcti: &str) -> Result<Secret32, String> {
    tpm::TpmSlot::decode(data)?.open(tcti)
}

/// The slot kinds that may unlock a keystore (sealed with it, version 2): e.g. only
/// hardware and two-factor slots, so that a password alone opens nothing.
///
/// ```text
/// policy = count u8 (1..=8) | kind u8 per allowed kind, ascending, each of 1..=4
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockPolicy {
    kinds: Vec<u8>,
}

impl UnlockPolicy {
    /// Kind names as `keys slot list` shows them.
    const NAMES: [(&'static str, u8); 4] = [
        ("password", crate::format::SLOT_PASSWORD),
        ("pkcs11", SLOT_PKCS11),
        ("tpm", SLOT_TPM),
        ("password+keyfile", SLOT_COMPOSITE),
    ];

    /// A policy allowing exactly the named kinds (`password`, `pkcs11`, `tpm`,
    /// `password+keyfile`).
    ///
    /// # Errors
    ///
    /// An unknown name, or none.
    pub fn allowing(names: &[String]) -> Result<Self, String> {
        let mut kinds = Vec::with_capacity(names.len());
        for name in names {
            let kind = Self::NAMES
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    format!("unknown slot kind {name:?} (password, pkcs11, tpm, password+keyfile)")
                })?;
            kinds.push(kind);
        }
        kinds.sort_unstable();
        kinds.dedup();
        if kinds.is_empty() {
            return Err("an unlock policy allows at least one slot kind".into());
        }
        Ok(Self { kinds })
    }

    /// Whether slots of `kind` may unlock.
    pub(crate) fn allows(&self, kind: u8) -> bool {
        self.kinds.contains(&kind)
    }

    /// The allowed kinds' names.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, k)| self.kinds.contains(k))
            .map(|(n, _)| *n)
            .collect()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.kinds.len());
        out.push(u8::try_from(self.kinds.len()).unwrap_or(0));
        out.extend_from_slice(&self.kinds);
        out
    }

    /// The policy at the start of `bytes`, and the bytes after it.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), String> {
        let mut reader = SlotReader::new(bytes);
        let count = usize::from(reader.u8()?);
        if count == 0 || count > 8 {
            return Err("an unlock policy of no or too many kinds".into());
        }
        let kinds = reader.take(count)?.to_vec();
        if kinds.windows(2).any(|w| w[0] >= w[1])
            || kinds
                .iter()
                .any(|k| !Self::NAMES.iter().any(|(_, known)| known == k))
        {
            return Err("an unlock policy with unknown or unsorted kinds".into());
        }
        Ok((Self { kinds }, reader.bytes))
    }
}
