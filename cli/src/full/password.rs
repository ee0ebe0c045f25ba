//! Getting passwords: `--password-file F` (or `$DATAMESH_PASSWORD_FILE`), else a prompt
//! on the terminal that does not echo. New passwords are asked twice and must pass the
//! strength check unless `--allow-weak-password`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use datamesh_keys::{
    Credentials, DEFAULT_TPM_TCTI, KdfParams, KeyFile, MAX_PASSWORD_LEN, Password, Pin, SlotChoice,
};
use zeroize::Zeroizing;

use crate::output::Output;

/// How the keystore is unlocked: its password, or another slot's factors.
#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// Read the keystore password from the first line of FILE instead of prompting.
    #[arg(long, env = "DATAMESH_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The key file of a password+keyfile slot.
    #[arg(long, env = "DATAMESH_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Read the PIN of a PKCS#11 slot's token from the first line of FILE.
    #[arg(long, env = "DATAMESH_PKCS11_PIN_FILE", value_name = "FILE")]
    pkcs11_pin_file: Option<PathBuf>,
    /// The TPM of TPM slots, as a TCTI [default: device:/dev/tpmrm0].
    #[arg(long, env = "DATAMESH_TPM_TCTI", value_name = "TCTI")]
    tpm_tcti: Option<String>,
    /// Unlock through this slot only: its id, its kind (password, pkcs11, tpm,
    /// password+keyfile, password+pkcs11, password+tpm), its label (or label:LABEL), or
    /// auto (the first slot that opens) [`node run`: config.toml's unlock_slot].
    #[arg(long, env = "DATAMESH_UNLOCK_SLOT", value_name = "SLOT")]
    unlock_slot: Option<String>,
    /// Do not try PKCS#11 and TPM slots.
    #[arg(long)]
    no_hardware: bool,
}

/// How a new password is given (`passwd`, `slot add`).
#[derive(Debug, Args)]
pub(crate) struct NewPasswordArgs {
    /// Read the new password from the first line of FILE instead of prompting.
    #[arg(long, env = "DATAMESH_NEW_PASSWORD_FILE", value_name = "FILE")]
    new_password_file: Option<PathBuf>,
    /// Accept a password that zxcvbn rates as weak (score below 3 of 4).
    #[arg(long)]
    allow_weak_password: bool,
}

/// Argon2id parameters of a new password slot.
#[derive(Debug, Args)]
pub(crate) struct KdfArgs {
    /// Argon2id memory in KiB [default: 65536, i.e. 64 MiB; at most 1 GiB].
    #[arg(long, value_name = "KIB")]
    kdf_memory_kib: Option<u32>,
    /// Argon2id passes [default: 3; at most 32].
    #[arg(long, value_name = "N")]
    kdf_iterations: Option<u32>,
    /// Argon2id lanes [default: 4; at most 16].
    #[arg(long, value_name = "N")]
    kdf_parallelism: Option<u32>,
}

/// A password that cannot be used; exit code 2.
#[derive(Debug)]
pub(crate) enum PasswordProblem {
    NoTerminal(String),
    Mismatch,
    Weak { score: u8, warning: Option<String> },
    Empty,
}

impl std::fmt::Display for PasswordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoTerminal(e) => write!(
                f,
                "no password given and no terminal to ask on ({e}); pass --password-file FILE or set DATAMESH_PASSWORD_FILE"
            ),
            Self::Mismatch => f.write_str("the two passwords differ; nothing was changed"),
            Self::Weak { score, warning } => {
                write!(f, "the password is too weak (zxcvbn score {score} of 4")?;
                if let Some(warning) = warning {
                    write!(f, ": {warning}")?;
                }
                f.write_str("); choose a longer passphrase, or pass --allow-weak-password")
            }
            Self::Empty => f.write_str("the password is empty"),
        }
    }
}

impl std::error::Error for PasswordProblem {}

impl PasswordArgs {
    /// The current password (to unlock).
    pub(crate) fn existing(&self, out: &Output) -> anyhow::Result<Password> {
        match &self.password_file {
            Some(path) => from_file(path, out),
            None => prompt("Keystore password: "),
        }
    }

    /// What is given to unlock with, without prompting: the password file, the key file,
    /// the PIN, the TPM, the slot.
    pub(crate) fn credentials(&self, out: &Output) -> anyhow::Result<Credentials> {
        let mut credentials = Credentials::new().with_hardware(!self.no_hardware);
        if let Some(path) = &self.password_file {
            credentials = credentials.with_password(from_file(path, out)?);
        }
        if let Some(path) = &self.key_file {
            credentials =
                credentials.with_key_file(KeyFile::read(path).map_err(anyhow::Error::msg)?);
        }
        if let Some(path) = &self.pkcs11_pin_file {
            credentials = credentials.with_pin(pin_from_file(path, out)?);
        }
        if let Some(tcti) = &self.tpm_tcti {
            credentials = credentials.with_tpm_tcti(tcti.clone());
        }
        if let Some(choice) = &self.unlock_slot {
            credentials = credentials.choose(
                SlotChoice::parse(choice)
                    .map_err(|e| anyhow::anyhow!("--unlock-slot / DATAMESH_UNLOCK_SLOT: {e}"))?,
            );
        }
        Ok(credentials)
    }

    /// Unlocks through `choice` unless --unlock-slot or DATAMESH_UNLOCK_SLOT says
    /// otherwise (`node run` and config.toml's `unlock_slot`).
    pub(crate) fn or_unlock_slot(mut self, choice: &str) -> Self {
        if self.unlock_slot.is_none() {
            self.unlock_slot = Some(choice.to_owned());
        }
        self
    }

    /// Whether the password comes from a file (else it may be asked for).
    pub(crate) fn has_password_file(&self) -> bool {
        self.password_file.is_some()
    }

    /// The PIN file given to unlock, if any.
    pub(crate) fn pin(&self, out: &Output) -> anyhow::Result<Option<Pin>> {
        self.pkcs11_pin_file
            .as_deref()
            .map(|path| pin_from_file(path, out))
            .transpose()
    }

    /// The TCTI given, or the default.
    pub(crate) fn tcti(&self) -> String {
        self.tpm_tcti
            .clone()
            .unwrap_or_else(|| DEFAULT_TPM_TCTI.to_owned())
    }

    /// A new password given the `init` way (`--password-file`, or asked twice).
    pub(crate) fn new_password(&self, allow_weak: bool, out: &Output) -> anyhow::Result<Password> {
        let password = match &self.password_file {
            Some(path) => from_file(path, out)?,
            None => prompt_twice("New keystore password: ")?,
        };
        check_new(password, allow_weak)
    }
}

impl NewPasswordArgs {
    /// The new password (`--new-password-file`, or asked twice).
    pub(crate) fn get(&self, out: &Output) -> anyhow::Result<Password> {
        let password = match &self.new_password_file {
            Some(path) => from_file(path, out)?,
            None => prompt_twice("New password: ")?,
        };
        check_new(password, self.allow_weak_password)
    }
}

impl KdfArgs {
    /// The parameters asked for, each missing one taken from `base`; `None` if no flag
    /// was given and `base` is of the policy's KDF. A `base` of another KDF than the
    /// `[security]` policy's is replaced by the policy's defaults (`Some`): new slots and
    /// backups use the policy's KDF.
    pub(crate) fn params(
        &self,
        base: KdfParams,
        out: &Output,
    ) -> anyhow::Result<Option<KdfParams>> {
        let security = crate::security::current();
        let (base, changed) = if base.algorithm() == security.kdf {
            (base, false)
        } else {
            (security.default_kdf(), true)
        };
        if self.kdf_memory_kib.is_none()
            && self.kdf_iterations.is_none()
            && self.kdf_parallelism.is_none()
        {
            security.check_kdf(&base, "the password's KDF parameters")?;
            return Ok(changed.then_some(base));
        }
        let params = if base.algorithm() == datamesh_keys::KdfAlgorithm::Pbkdf2Sha256 {
            if self.kdf_memory_kib.is_some() || self.kdf_parallelism.is_some() {
                anyhow::bail!(
                    "invalid --kdf-* parameters: pbkdf2-sha256 (the security policy's kdf) has no memory or lanes; give --kdf-iterations only"
                );
            }
            KdfParams::pbkdf2(self.kdf_iterations.unwrap_or(base.iterations()))
        } else {
            KdfParams::new(
                self.kdf_memory_kib.unwrap_or(base.memory_kib()),
                self.kdf_iterations.unwrap_or(base.iterations()),
                self.kdf_parallelism.unwrap_or(base.parallelism()),
            )
        }
        .context("invalid --kdf-* parameters")?;
        security.check_kdf(&params, "the --kdf-* parameters")?;
        if params.is_below_default() {
            out.warn(format_args!(
                "{params} is below the default ({}): the password is easier to guess from a stolen keystore",
                security.default_kdf()
            ));
        }
        Ok(Some(params))
    }
}

fn check_new(password: Password, allow_weak: bool) -> anyhow::Result<Password> {
    if password.is_empty() {
        return Err(PasswordProblem::Empty.into());
    }
    let strength = password.strength();
    if !strength.is_strong() && !allow_weak {
        return Err(PasswordProblem::Weak {
            score: strength.score,
            warning: strength.warning,
        }
        .into());
    }
    Ok(password)
}

/// The first line of a password file (without `\n` / `\r\n`).
pub(crate) fn from_file(path: &Path, out: &Output) -> anyhow::Result<Password> {
    let bytes = first_line(path, "password", MAX_PASSWORD_LEN, out)?.ok_or_else(|| {
        datamesh_keys::PasswordError::TooLong {
            len: fs_len(path),
            max: MAX_PASSWORD_LEN,
        }
    })?;
    Ok(Password::from_utf8(bytes)?)
}

/// The longest PIN read from a file.
const MAX_PIN_LEN: usize = 256;

/// The first line of a PIN file (without `\n` / `\r\n`).
pub(crate) fn pin_from_file(path: &Path, out: &Output) -> anyhow::Result<Pin> {
    let bytes = first_line(path, "PIN", MAX_PIN_LEN, out)?.ok_or_else(|| {
        anyhow::anyhow!(
            "the PIN file {} is longer than {MAX_PIN_LEN} bytes",
            path.display()
        )
    })?;
    let text = core::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("the PIN in {} is not UTF-8", path.display()))?;
    Ok(Pin::new(text))
}

fn fs_len(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
}

/// The first line (without `\n` / `\r\n`) of the `what` file at `path`, or `None` if
/// the file is longer than `max` bytes and a line end. Warns when group or others can
/// read it.
fn first_line(
    path: &Path,
    what: &str,
    max: usize,
    out: &Output,
) -> anyhow::Result<Option<Zeroizing<Vec<u8>>>> {
    let context = || format!("cannot read the {what} file {}", path.display());
    let file = File::open(path).with_context(context)?;
    let meta = file.metadata().with_context(context)?;
    if meta.permissions().mode() & 0o077 != 0 {
        out.warn(format_args!(
            "the {what} file {} is readable by group or others; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    // The longest content, plus "\r\n".
    let limit = max as u64 + 2;
    if meta.len() > limit {
        return Ok(None);
    }
    // Sized up front so that reading never reallocates (which would leave a copy behind).
    let capacity = usize::try_from(meta.len()).unwrap_or(0) + 1;
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit)
        .read_to_end(&mut bytes)
        .with_context(context)?;
    let mut end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    if end > 0 && bytes.get(end - 1) == Some(&b'\r') {
        end -= 1;
    }
    bytes.truncate(end);
    Ok(Some(bytes))
}

pub(crate) fn prompt(label: &str) -> anyhow::Result<Password> {
    let text = Zeroizing::new(
        rpassword::prompt_password(label)
            .map_err(|e| PasswordProblem::NoTerminal(e.to_string()))?,
    );
    Ok(Password::new(&text)?)
}

pub(crate) fn prompt_twice(label: &str) -> anyhow::Result<Password> {
    let first = prompt(label)?;
    let second = prompt("Repeat it: ")?;
    if !first.ct_eq(&second) {
        return Err(PasswordProblem::Mismatch.into());
    }
    Ok(first)
}
