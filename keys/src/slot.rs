//! Unlock slots of the kinds beyond a password (see `docs/keystore.md`, "Slots"): a
//! PKCS#11 token (`pkcs11`), a TPM 2.0 (`tpm`, behind the default-on `tpm` feature) and a
//! password together with a key file, a token or the TPM (`composite`). Each wraps the
//! same master key as a password slot does; what differs is where the wrapping key lives.
//! [`NewSlot`] describes a slot to make, of any kind; [`seal_new`] makes it.
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

use crate::kdf::KdfParams;
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
/// Slot kind: a password and a factor sealed in a PKCS#11 token, both mixed into the
/// slot key.
pub(crate) const SLOT_PASSWORD_PKCS11: u8 = 5;
/// Slot kind: a password and a factor sealed to the TPM, both mixed into the slot key.
pub(crate) const SLOT_PASSWORD_TPM: u8 = 6;

/// Every slot kind this build knows, by the name `keys slot list` shows.
pub(crate) const KIND_NAMES: [(&str, u8); 6] = [
    ("password", crate::format::SLOT_PASSWORD),
    ("pkcs11", SLOT_PKCS11),
    ("tpm", SLOT_TPM),
    ("password+keyfile", SLOT_COMPOSITE),
    ("password+pkcs11", SLOT_PASSWORD_PKCS11),
    ("password+tpm", SLOT_PASSWORD_TPM),
];

/// The name of a known slot kind.
pub(crate) fn kind_name(kind: u8) -> Option<&'static str> {
    KIND_NAMES.iter().find(|(_, k)| *k == kind).map(|(n, _)| *n)
}

/// The kind of a slot kind's name.
fn kind_of_name(name: &str) -> Option<u8> {
    KIND_NAMES.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

/// The longest slot label (as [`crate::MAX_LABEL_LEN`]).
const MAX_CHOICE_LABEL: usize = 128;

/// Which slot to unlock through: `--unlock-slot`, `DATAMESH_UNLOCK_SLOT` or config.toml's
/// `unlock_slot`.
///
/// ```
/// use datamesh_keys::SlotChoice;
/// assert_eq!(SlotChoice::parse("auto"), Ok(SlotChoice::Auto));
/// assert_eq!(SlotChoice::parse("3"), Ok(SlotChoice::Id(3)));
/// assert!(matches!(SlotChoice::parse("tpm"), Ok(SlotChoice::Kind(_))));
/// assert_eq!(SlotChoice::parse("usb stick"), Ok(SlotChoice::Label("usb stick".into())));
/// assert_eq!(SlotChoice::parse("label:tpm"), Ok(SlotChoice::Label("tpm".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotChoice {
    /// The first slot, in the header's order, that the credentials open (the default).
    Auto,
    /// The slot of this id.
    Id(u32),
    /// The first slot of this kind that the credentials open.
    Kind(u8),
    /// The slot of this label. Labels are sealed in the keystore: the slots are tried in
    /// order and only the one of this label is accepted.
    Label(String),
}

impl SlotChoice {
    /// `auto` (or empty), a slot id, a kind name (`password`, `pkcs11`, `tpm`,
    /// `password+keyfile`, `password+pkcs11`, `password+tpm`), `label:LABEL`, or any
    /// other text as a label.
    ///
    /// # Errors
    ///
    /// A label longer than 128 bytes, or `label:` with none.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let label = |label: &str| {
            if label.is_empty() || label.len() > MAX_CHOICE_LABEL {
                Err(format!(
                    "a slot label has 1 to {MAX_CHOICE_LABEL} bytes (unlock slot {text:?})"
                ))
            } else {
                Ok(Self::Label(label.to_owned()))
            }
        };
        if text.is_empty() || text == "auto" {
            Ok(Self::Auto)
        } else if let Some(rest) = text.strip_prefix("label:") {
            label(rest)
        } else if let Ok(id) = text.parse::<u32>() {
            Ok(Self::Id(id))
        } else if let Some(kind) = kind_of_name(text) {
            Ok(Self::Kind(kind))
        } else {
            label(text)
        }
    }

    /// Whether a slot of this id and kind may be tried (a label is checked once open).
    pub(crate) fn admits(&self, id: u32, kind: u8) -> bool {
        match self {
            Self::Auto | Self::Label(_) => true,
            Self::Id(only) => *only == id,
            Self::Kind(only) => *only == kind,
        }
    }
}

impl fmt::Display for SlotChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Id(id) => write!(f, "slot {id}"),
            Self::Kind(kind) => write!(f, "a {} slot", kind_name(*kind).unwrap_or("?")),
            Self::Label(label) => write!(f, "the slot labelled {label:?}"),
        }
    }
}

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

    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0.clone())
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
    pub(crate) choice: SlotChoice,
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
            choice: SlotChoice::Auto,
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
    pub fn only_slot(self, id: u32) -> Self {
        self.choose(SlotChoice::Id(id))
    }

    /// Unlocks only through the slot `choice` names.
    #[must_use]
    pub fn choose(mut self, choice: SlotChoice) -> Self {
        self.choice = choice;
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

/// A slot to make (`keys slot add`, and the slot a recovery or a restore adds): what
/// its key comes from.
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
    /// A password (through Argon2id with `kdf`).
    Password {
        /// The password.
        password: Password,
        /// Its Argon2id parameters.
        kdf: KdfParams,
    },
    /// A password and a key file, both needed.
    PasswordKeyFile {
        /// The password.
        password: Password,
        /// The key file.
        key_file: KeyFile,
        /// The password's Argon2id parameters.
        kdf: KdfParams,
    },
    /// A password and a PKCS#11 token or the TPM (`hardware`, a [`NewSlot::Pkcs11`] or
    /// [`NewSlot::Tpm`]), both needed.
    PasswordAnd {
        /// The password.
        password: Password,
        /// Its Argon2id parameters.
        kdf: KdfParams,
        /// The hardware factor.
        hardware: Box<NewSlot>,
    },
}

impl NewSlot {
    /// The kind of slot this makes (`None`: a password+hardware slot whose hardware is
    /// not a token or a TPM).
    fn kind(&self) -> Option<u8> {
        match self {
            Self::Pkcs11 { .. } => Some(SLOT_PKCS11),
            Self::Tpm { .. } => Some(SLOT_TPM),
            Self::Password { .. } => Some(crate::format::SLOT_PASSWORD),
            Self::PasswordKeyFile { .. } => Some(SLOT_COMPOSITE),
            Self::PasswordAnd { hardware, .. } => match **hardware {
                Self::Pkcs11 { .. } => Some(SLOT_PASSWORD_PKCS11),
                Self::Tpm { .. } => Some(SLOT_PASSWORD_TPM),
                _ => None,
            },
        }
    }

    /// The name of the kind this makes (`password`, `pkcs11`, ...).
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        self.kind().and_then(kind_name).unwrap_or("unknown")
    }

    /// Whether `policy` lets a slot of this kind unlock.
    pub(crate) fn allowed_by(&self, policy: Option<&UnlockPolicy>) -> bool {
        self.kind()
            .is_some_and(|kind| policy.is_none_or(|p| p.allows(kind)))
    }
}

/// A new slot, sealed: its kind and data, what the audit line says of it, and whether a
/// key was made in a token.
pub(crate) struct SealedSlot {
    pub(crate) kind: u8,
    pub(crate) data: Vec<u8>,
    pub(crate) detail: String,
    pub(crate) key_made: bool,
}

/// Seals `master` in a slot as `new` says (the slow or hardware part of adding a slot;
/// each new hardware slot is opened once before it is returned).
pub(crate) fn seal_new(
    master: &Secret32,
    new: &NewSlot,
) -> Result<SealedSlot, crate::error::ChangeError> {
    use crate::error::ChangeError;
    use crate::kdf::KdfLimits;
    let backend = |problem| ChangeError::SlotBackend { problem };
    let checked = |password: &Password, kdf: &KdfParams| -> Result<(), ChangeError> {
        password.check_new()?;
        kdf.check(&KdfLimits::DEFAULT)?;
        Ok(())
    };
    let sealed = |kind: u8, data: Vec<u8>, detail: String| SealedSlot {
        kind,
        data,
        detail,
        key_made: false,
    };
    Ok(match new {
        NewSlot::Pkcs11 {
            module,
            token,
            key_label,
            pin,
        } => {
            let (slot, made) = pkcs11::Pkcs11Slot::seal(
                SLOT_PKCS11,
                master,
                module,
                token,
                key_label,
                pin.as_ref(),
            )
            .map_err(backend)?;
            SealedSlot {
                key_made: made,
                ..sealed(
                    SLOT_PKCS11,
                    slot.encode(),
                    format!("pkcs11 token \"{token}\" key \"{key_label}\""),
                )
            }
        }
        NewSlot::Tpm { tcti, pcrs } => {
            let slot = tpm::TpmSlot::seal(SLOT_TPM, master, tcti, pcrs).map_err(backend)?;
            let detail = format!("tpm, pcrs {:?}", slot.pcrs());
            sealed(SLOT_TPM, slot.encode(), detail)
        }
        NewSlot::Password { password, kdf } => {
            checked(password, kdf)?;
            let slot = crate::format::PasswordSlot::seal(master, password, *kdf)?;
            sealed(
                crate::format::SLOT_PASSWORD,
                slot.encode(),
                format!("password, {kdf}"),
            )
        }
        NewSlot::PasswordKeyFile {
            password,
            key_file,
            kdf,
        } => {
            checked(password, kdf)?;
            let slot = composite::CompositeSlot::seal(master, password, key_file, *kdf)?;
            sealed(
                SLOT_COMPOSITE,
                slot.encode(),
                format!("password+keyfile, {kdf}"),
            )
        }
        NewSlot::PasswordAnd {
            password,
            kdf,
            hardware,
        } => {
            checked(password, kdf)?;
            let kind = new.kind().ok_or_else(|| {
                backend("a password+hardware slot needs a PKCS#11 token or the TPM".to_owned())
            })?;
            let mut made = false;
            let slot = composite::PasswordHardwareSlot::seal(
                kind,
                master,
                password,
                *kdf,
                |kind, factor| match &**hardware {
                    NewSlot::Pkcs11 {
                        module,
                        token,
                        key_label,
                        pin,
                    } => {
                        let (slot, key_made) = pkcs11::Pkcs11Slot::seal(
                            kind,
                            factor,
                            module,
                            token,
                            key_label,
                            pin.as_ref(),
                        )?;
                        made = key_made;
                        Ok(composite::HardwareHalf::Pkcs11(slot))
                    }
                    NewSlot::Tpm { tcti, pcrs } => tpm::TpmSlot::seal(kind, factor, tcti, pcrs)
                        .map(composite::HardwareHalf::Tpm),
                    _ => Err("a password+hardware slot needs a PKCS#11 token or the TPM".into()),
                },
            )
            .map_err(backend)?;
            let detail = match &**hardware {
                NewSlot::Pkcs11 {
                    token, key_label, ..
                } => format!("password+pkcs11 token \"{token}\" key \"{key_label}\", {kdf}"),
                _ => format!("password+tpm, pcrs {:?}, {kdf}", tpm_pcrs_of(hardware)),
            };
            SealedSlot {
                key_made: made,
                ..sealed(kind, slot.encode(), detail)
            }
        }
    })
}

fn tpm_pcrs_of(new: &NewSlot) -> Vec<u8> {
    match new {
        NewSlot::Tpm { pcrs, .. } => {
            let mut pcrs = pcrs.clone();
            pcrs.sort_unstable();
            pcrs.dedup();
            pcrs
        }
        _ => Vec::new(),
    }
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
/// policy = count u8 (1..=8) | kind u8 per allowed kind, ascending, each of 1..=6
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockPolicy {
    kinds: Vec<u8>,
}

impl UnlockPolicy {
    /// Kind names as `keys slot list` shows them.
    const NAMES: [(&'static str, u8); 6] = KIND_NAMES;

    /// A policy allowing exactly the named kinds (`password`, `pkcs11`, `tpm`,
    /// `password+keyfile`, `password+pkcs11`, `password+tpm`).
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
                    format!(
                        "unknown slot kind {name:?} (password, pkcs11, tpm, password+keyfile, password+pkcs11, password+tpm)"
                    )
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

/// What re-wrapping one slot under a new master key (`keys rekey`) came to.
pub(crate) enum Rewrap {
    /// Sealed under the new master key: its new data, and which of the passwords given
    /// opened it (if it needs one).
    Done {
        data: Vec<u8>,
        password: Option<usize>,
    },
    /// Not re-wrapped: what it needs that was not given, or why its hardware failed.
    Dropped(String),
}

/// Re-wraps `raw` (a slot of the keystore whose master key is `old`) under `new`, when
/// `credentials` and `passwords` open it: a password slot with one of the passwords, a
/// password+keyfile slot with one of them and the key file, a PKCS#11 or TPM slot
/// through its hardware (opened first, so that a slot whose token key is gone or whose
/// PCRs moved is never sealed again), a password+hardware slot with both. Costs one
/// Argon2id derivation per password tried and per slot sealed.
pub(crate) fn rewrap(
    raw: &crate::format::RawSlot,
    old: &Secret32,
    new: &Secret32,
    credentials: &Credentials,
    passwords: &[&Password],
) -> Result<Rewrap, crate::error::KdfError> {
    use crate::format::{PasswordSlot, SLOT_PASSWORD};
    use crate::kdf::KdfLimits;
    let limits = KdfLimits::DEFAULT;
    let this_keystore = |master: &Secret32| master.same_as(old);
    let dropped = |why: &str| Ok(Rewrap::Dropped(why.to_owned()));
    let malformed = |e: String| Ok(Rewrap::Dropped(format!("its data is malformed ({e})")));
    let no_hardware = "hardware slots were not tried (--no-hardware)";
    match raw.kind {
        SLOT_PASSWORD => {
            let Ok(slot) = PasswordSlot::decode(&raw.data) else {
                return malformed("password slot".into());
            };
            for (i, password) in passwords.iter().enumerate() {
                if slot
                    .open(password, &limits)?
                    .is_some_and(|m| this_keystore(&m))
                {
                    let data = PasswordSlot::seal(new, password, slot.kdf)?.encode();
                    return Ok(Rewrap::Done {
                        data,
                        password: Some(i),
                    });
                }
            }
            dropped("its password was not given (keep it with --keep-slot-password-file)")
        }
        SLOT_COMPOSITE => {
            let slot = match composite::CompositeSlot::decode(&raw.data) {
                Ok(slot) => slot,
                Err(e) => return malformed(e),
            };
            let Some(key_file) = &credentials.key_file else {
                return dropped("its key file was not given (--key-file)");
            };
            for (i, password) in passwords.iter().enumerate() {
                if slot
                    .open(password, key_file, &limits)?
                    .is_some_and(|m| this_keystore(&m))
                {
                    let data =
                        composite::CompositeSlot::seal(new, password, key_file, slot.kdf)?.encode();
                    return Ok(Rewrap::Done {
                        data,
                        password: Some(i),
                    });
                }
            }
            dropped(
                "its password was not given with its key file (keep it with --keep-slot-password-file)",
            )
        }
        SLOT_PKCS11 | SLOT_TPM if !credentials.hardware => dropped(no_hardware),
        SLOT_PKCS11 => {
            let slot = match pkcs11::Pkcs11Slot::decode(&raw.data) {
                Ok(slot) => slot,
                Err(e) => return malformed(e),
            };
            let pin = credentials.pin.as_ref();
            match slot.open(pin) {
                Ok(m) if this_keystore(&m) => {}
                Ok(_) => return dropped("it opens another keystore"),
                Err(e) => return Ok(Rewrap::Dropped(e)),
            }
            Ok(
                match pkcs11::Pkcs11Slot::seal(
                    SLOT_PKCS11,
                    new,
                    &slot.module,
                    &slot.token,
                    &slot.key_label,
                    pin,
                ) {
                    Ok((sealed, _)) => Rewrap::Done {
                        data: sealed.encode(),
                        password: None,
                    },
                    Err(e) => Rewrap::Dropped(e),
                },
            )
        }
        SLOT_TPM => {
            let slot = match tpm::TpmSlot::decode(&raw.data) {
                Ok(slot) => slot,
                Err(e) => return malformed(e),
            };
            let tcti = credentials.tcti();
            match slot.open(tcti) {
                Ok(m) if this_keystore(&m) => {}
                Ok(_) => return dropped("it opens another keystore"),
                Err(e) => return Ok(Rewrap::Dropped(e)),
            }
            Ok(
                match tpm::TpmSlot::seal(SLOT_TPM, new, tcti, &slot.pcrs()) {
                    Ok(sealed) => Rewrap::Done {
                        data: sealed.encode(),
                        password: None,
                    },
                    Err(e) => Rewrap::Dropped(e),
                },
            )
        }
        SLOT_PASSWORD_PKCS11 | SLOT_PASSWORD_TPM if !credentials.hardware => dropped(no_hardware),
        SLOT_PASSWORD_PKCS11 | SLOT_PASSWORD_TPM => {
            let slot = match composite::PasswordHardwareSlot::decode(raw.kind, &raw.data) {
                Ok(slot) => slot,
                Err(e) => return malformed(e),
            };
            for (i, password) in passwords.iter().enumerate() {
                match slot.open(password, credentials, &limits) {
                    Err(e) => return Ok(Rewrap::Dropped(e)),
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(Some(m))) if this_keystore(&m) => {
                        let resealed = composite::PasswordHardwareSlot::seal(
                            raw.kind,
                            new,
                            password,
                            slot.kdf,
                            |kind, factor| match &slot.hardware {
                                composite::HardwareHalf::Pkcs11(hw) => pkcs11::Pkcs11Slot::seal(
                                    kind,
                                    factor,
                                    &hw.module,
                                    &hw.token,
                                    &hw.key_label,
                                    credentials.pin.as_ref(),
                                )
                                .map(|(s, _)| composite::HardwareHalf::Pkcs11(s)),
                                composite::HardwareHalf::Tpm(hw) => {
                                    tpm::TpmSlot::seal(kind, factor, credentials.tcti(), &hw.pcrs())
                                        .map(composite::HardwareHalf::Tpm)
                                }
                            },
                        );
                        return Ok(match resealed {
                            Ok(sealed) => Rewrap::Done {
                                data: sealed.encode(),
                                password: Some(i),
                            },
                            Err(e) => Rewrap::Dropped(e),
                        });
                    }
                    Ok(Ok(_)) => {}
                }
            }
            dropped("its password was not given (keep it with --keep-slot-password-file)")
        }
        _ => dropped("this build does not know its kind"),
    }
}

/// The record kind [`reencode_record`] reads as an unlock policy (no slot has kind 0).
pub const POLICY_RECORD: u8 = 0;

/// Parses one record as read from a keystore file — the data of a slot of `kind`, or,
/// with [`POLICY_RECORD`], an unlock policy and the padding after it — and encodes what
/// it parsed again. Every record has one encoding, so the bytes come back unchanged;
/// what does not parse is refused with one line. For the fuzz target of these parsers
/// (`fuzz/fuzz_targets/slot_records.rs`); [`crate::SlotKind::parse`] is the reading API.
///
/// # Errors
///
/// The record does not parse (malformed, or a kind this build does not know).
#[doc(hidden)]
pub fn reencode_record(kind: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    match kind {
        POLICY_RECORD => UnlockPolicy::decode(data).map(|(policy, rest)| {
            let mut out = policy.encode();
            out.extend_from_slice(rest);
            out
        }),
        crate::format::SLOT_PASSWORD => crate::format::PasswordSlot::decode(data)
            .map(|slot| slot.encode())
            .map_err(|e| e.describe()),
        SLOT_PKCS11 => pkcs11::Pkcs11Slot::decode(data).map(|slot| slot.encode()),
        SLOT_TPM => tpm::TpmSlot::decode(data).map(|slot| slot.encode()),
        SLOT_COMPOSITE => composite::CompositeSlot::decode(data).map(|slot| slot.encode()),
        SLOT_PASSWORD_PKCS11 | SLOT_PASSWORD_TPM => {
            composite::PasswordHardwareSlot::decode(kind, data).map(|slot| slot.encode())
        }
        other => Err(format!("slot kind {other} is unknown")),
    }
}
