//! The PKCS#11 slot (kind 2): the master key encrypted with AES-256-GCM *inside* a token,
//! under a sensitive, never-extractable AES-256 key found by its label.
//!
//! ```text
//! data = module path (u16 length | UTF-8) | token label (u8 length | UTF-8, <= 32 B)
//!        | key label (u8 length | UTF-8, <= 64 B) | iv (12) | ciphertext and tag (48)
//! aad  = "datamesh keystore slot v1" | 0x02 | token label (u8 length | ..) | key label (u8 length | ..)
//! ```
//!
//! The PIN is never stored. One PKCS#11 context per module and process (`C_Initialize`
//! may run once per process), kept for the life of the process.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::{NONCE_LEN, Pin, SLOT_AAD_LABEL, SLOT_PKCS11, SlotReader, WRAPPED_LEN, put_short_str};
use crate::secret::{SECRET_LEN, Secret32};

/// The longest token label (PKCS#11 fixes 32 bytes).
const MAX_TOKEN_LABEL: usize = 32;
/// The longest key label.
const MAX_KEY_LABEL: usize = 64;
/// The longest module path.
const MAX_MODULE_PATH: usize = 512;
/// The key label `slot add --pkcs11` uses unless told otherwise.
pub const DEFAULT_KEY_LABEL: &str = "datamesh-keystore";

/// A PKCS#11 slot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pkcs11Slot {
    /// The slot kind in the associated data (not stored: [`SLOT_PKCS11`], or the kind of
    /// the password+pkcs11 slot this one is the hardware half of).
    kind: u8,
    pub(crate) module: PathBuf,
    pub(crate) token: String,
    pub(crate) key_label: String,
    iv: [u8; NONCE_LEN],
    wrapped: [u8; WRAPPED_LEN],
}

impl Pkcs11Slot {
    /// Encrypts `master` in the token under the key labelled `key_label`, made there
    /// first if the token has none. Returns the slot and whether the key was made.
    pub(crate) fn seal(
        kind: u8,
        master: &Secret32,
        module: &Path,
        token: &str,
        key_label: &str,
        pin: Option<&Pin>,
    ) -> Result<(Self, bool), String> {
        let module_text = module
            .to_str()
            .filter(|m| m.len() <= MAX_MODULE_PATH)
            .ok_or_else(|| format!("the module path {} is not usable", module.display()))?;
        if token.is_empty() || token.len() > MAX_TOKEN_LABEL {
            return Err(format!("a token label has 1 to {MAX_TOKEN_LABEL} bytes"));
        }
        if key_label.is_empty() || key_label.len() > MAX_KEY_LABEL {
            return Err(format!("a key label has 1 to {MAX_KEY_LABEL} bytes"));
        }
        let session = open_session(module, token, pin)?;
        let (key, made) = match find_key(&session, token, key_label)? {
            Some(key) => (key, false),
            None => (generate_key(&session, token, key_label)?, true),
        };
        let mut iv = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut iv);
        let aad = aad(kind, token, key_label);
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, &aad, 128.into()).map_err(|e| e.to_string())?;
        let out = session
            .encrypt(&Mechanism::AesGcm(params), key, master.expose())
            .map_err(|e| describe(&e, module, token))?;
        let wrapped: [u8; WRAPPED_LEN] = out.as_slice().try_into().map_err(|_| {
            format!(
                "token \"{token}\" returned {} bytes for AES-GCM of 32 (expected {WRAPPED_LEN})",
                out.len()
            )
        })?;
        let slot = Self {
            kind,
            module: PathBuf::from(module_text),
            token: token.to_owned(),
            key_label: key_label.to_owned(),
            iv,
            wrapped,
        };
        // Check it opens before it is written: a token that cannot decrypt what it
        // encrypted would leave a slot that opens nothing.
        slot.open_in(&session)
            .map_err(|e| format!("the new slot does not open: {e}"))?;
        Ok((slot, made))
    }

    /// Decrypts the master key in the token.
    pub(crate) fn open(&self, pin: Option<&Pin>) -> Result<Secret32, String> {
        let session = open_session(&self.module, &self.token, pin)?;
        self.open_in(&session)
    }

    fn open_in(&self, session: &Session) -> Result<Secret32, String> {
        let key = find_key(session, &self.token, &self.key_label)?.ok_or_else(|| {
            format!(
                "token \"{}\" has no key labelled \"{}\" (was it deleted, or is this another token of the same label?)",
                self.token, self.key_label
            )
        })?;
        let aad = aad(self.kind, &self.token, &self.key_label);
        let mut iv = self.iv;
        let params = GcmParams::new(&mut iv, &aad, 128.into()).map_err(|e| e.to_string())?;
        let plain = Zeroizing::new(
            session
                .decrypt(&Mechanism::AesGcm(params), key, &self.wrapped)
                .map_err(|e| match e {
                    // SoftHSM answers a bad tag with CKR_GENERAL_ERROR.
                    CkError::Pkcs11(
                        RvError::GeneralError
                        | RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange,
                        _,
                    ) => format!(
                        "the key \"{}\" of token \"{}\" does not open this slot (another key of the same label?)",
                        self.key_label, self.token
                    ),
                    other => describe(&other, &self.module, &self.token),
                })?,
        );
        let bytes: &[u8; SECRET_LEN] = plain.as_slice().try_into().map_err(|_| {
            format!(
                "token \"{}\" returned a key of the wrong length",
                self.token
            )
        })?;
        Ok(Secret32::copy_from(bytes))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let module = self.module.to_string_lossy();
        let mut out = Vec::with_capacity(2 + module.len() + 2 + 96 + NONCE_LEN + WRAPPED_LEN);
        super::put_blob(&mut out, module.as_bytes());
        put_short_str(&mut out, &self.token);
        put_short_str(&mut out, &self.key_label);
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.wrapped);
        out
    }

    /// A PKCS#11 slot's data.
    pub(crate) fn decode(data: &[u8]) -> Result<Self, String> {
        Self::decode_as(SLOT_PKCS11, data)
    }

    /// Slot data whose associated data names `kind`.
    pub(crate) fn decode_as(kind: u8, data: &[u8]) -> Result<Self, String> {
        let mut reader = SlotReader::new(data);
        let module = reader.blob()?;
        if module.is_empty() || module.len() > MAX_MODULE_PATH {
            return Err("a PKCS#11 slot with a bad module path".into());
        }
        let module = String::from_utf8(module.to_vec())
            .map_err(|_| "a PKCS#11 slot's module path is not UTF-8".to_owned())?;
        let token = reader.short_str(MAX_TOKEN_LABEL)?;
        let key_label = reader.short_str(MAX_KEY_LABEL)?;
        let slot = Self {
            kind,
            module: PathBuf::from(module),
            token,
            key_label,
            iv: reader.array()?,
            wrapped: reader.array()?,
        };
        reader.finish()?;
        Ok(slot)
    }
}

fn aad(kind: u8, token: &str, key_label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SLOT_AAD_LABEL.len() + 3 + token.len() + key_label.len());
    aad.extend_from_slice(SLOT_AAD_LABEL);
    aad.push(kind);
    put_short_str(&mut aad, token);
    put_short_str(&mut aad, key_label);
    aad
}

/// The process's context for `module`, initialised once.
fn context(module: &Path) -> Result<Pkcs11, String> {
    static CONTEXTS: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| Mutex::new(Vec::new()));
    let mut contexts = contexts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, ctx)) = contexts.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    if !module.exists() {
        return Err(format!(
            "the PKCS#11 module {} does not exist (is the token's software installed?)",
            module.display()
        ));
    }
    let ctx = Pkcs11::new(module)
        .map_err(|e| format!("cannot load the PKCS#11 module {}: {e}", module.display()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(format!(
                "cannot initialise the PKCS#11 module {}: {e}",
                module.display()
            ));
        }
    }
    contexts.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

/// A read-write session with the token labelled `token`, logged in as the user.
fn open_session(module: &Path, token: &str, pin: Option<&Pin>) -> Result<Session, String> {
    let ctx = context(module)?;
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| describe(&e, module, token))?;
    let slot = slots
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == token)
        })
        .ok_or_else(|| {
            format!(
                "no token labelled \"{token}\" in the PKCS#11 module {} (is it plugged in and initialised?)",
                module.display()
            )
        })?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| describe(&e, module, token))?;
    let pin = pin.filter(|p| !p.is_empty());
    match session.login(UserType::User, pin.map(Pin::secret)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
            Err(format!("wrong PIN for token \"{token}\""))
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
            Err(format!("the PIN of token \"{token}\" is locked"))
        }
        Err(CkError::Pkcs11(RvError::ArgumentsBad | RvError::PinLenRange, _)) if pin.is_none() => {
            Err(format!(
                "token \"{token}\" needs a PIN: pass --pkcs11-pin-file F (or set DATAMESH_PKCS11_PIN_FILE)"
            ))
        }
        Err(e) => Err(describe(&e, module, token)),
    }
}

fn find_key(session: &Session, token: &str, label: &str) -> Result<Option<ObjectHandle>, String> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| format!("cannot search token \"{token}\": {e}"))?;
    match found.as_slice() {
        [] => Ok(None),
        [key] => Ok(Some(*key)),
        _ => Err(format!(
            "token \"{token}\" has {} secret keys labelled \"{label}\"; remove all but one",
            found.len()
        )),
    }
}

fn generate_key(session: &Session, token: &str, label: &str) -> Result<ObjectHandle, String> {
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .map_err(|e| format!("cannot make an AES-256 key in token \"{token}\": {e}"))
}

/// One line for a PKCS#11 error: the return value's name, not its paragraph.
fn describe(e: &CkError, module: &Path, token: &str) -> String {
    match e {
        CkError::Pkcs11(RvError::TokenNotPresent, _) => {
            format!("token \"{token}\" is not present (unplugged?)")
        }
        CkError::Pkcs11(rv, function) => format!(
            "PKCS#11 module {} failed ({function:?}: {rv:?}) on token \"{token}\"",
            module.display()
        ),
        other => format!("PKCS#11 module {}: {other}", module.display()),
    }
}

#[cfg(test)]
mod tests {
    //! The token operations are tested against SoftHSM2 from `cli/tests/hardware.rs`
    //! (one process per test, each with its own `SOFTHSM2_CONF`): a process can
    //! configure SoftHSM only through its environment, which this crate's tests may not
    //! change (`unsafe_code` is forbidden).

    use super::*;

    #[test]
    fn slot_data_round_trips_and_bad_data_is_refused() -> Result<(), String> {
        let slot = Pkcs11Slot {
            kind: SLOT_PKCS11,
            module: PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"),
            token: "node".into(),
            key_label: DEFAULT_KEY_LABEL.into(),
            iv: [7; NONCE_LEN],
            wrapped: [9; WRAPPED_LEN],
        };
        let data = slot.encode();
        assert_eq!(Pkcs11Slot::decode(&data)?, slot);
        for cut in 0..data.len() {
            assert!(Pkcs11Slot::decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(Pkcs11Slot::decode(&longer).is_err());
        Ok(())
    }

    #[test]
    fn a_missing_module_is_named() {
        let missing = Path::new("/nonexistent/libpkcs11.so");
        let Err(e) = open_session(missing, "node", None) else {
            panic!("opened a session with a missing module");
        };
        assert!(
            e.contains("/nonexistent/libpkcs11.so does not exist"),
            "{e}"
        );
    }
}
