//! `keys passwd` and `keys slot add|list|remove`: the passwords that unlock the keystore.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use datamesh_keys::{
    DEFAULT_KEY_LABEL, KdfParams, KeyFile, Keystore, NewSlot, Password, Pin, SlotKind, UnlockPolicy,
};
use serde_json::json;

use crate::Context;
use crate::home;
use crate::output::Output;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs, pin_from_file};

#[derive(Debug, Subcommand)]
pub(super) enum SlotCommand {
    /// Add an unlock slot (a password by default; a PKCS#11 token, the TPM, or a
    /// password and a key file); prints its id.
    #[command(
        after_help = "Examples:\n  datamesh keys slot add --label backup-admin\n  datamesh keys slot add --pkcs11 /usr/lib/softhsm/libsofthsm2.so --token node --pin-file pin.txt\n  datamesh keys slot add --tpm --pcrs 7\n  datamesh keys slot add --new-key-file usb/node.key --generate-key-file\n  datamesh keys slot add --pkcs11 /usr/lib/softhsm/libsofthsm2.so --token node --with-password\n\nThe PIN is never stored: give it to unattended unlocks with --pkcs11-pin-file (or\nDATAMESH_PKCS11_PIN_FILE)."
    )]
    Add {
        /// A label for the slot.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        kind: Box<SlotKindArgs>,
        #[command(flatten)]
        args: NewSlotArgs,
    },
    /// List the unlock slots.
    List(PasswordArgs),
    /// Remove a slot (not the last one, nor the one you unlock with).
    #[command(after_help = "Example:\n  datamesh keys slot remove 2")]
    Remove {
        /// The slot's id (see `slot list`).
        id: u32,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

/// Which kind of slot `slot add` makes.
#[derive(Debug, Args)]
pub(super) struct SlotKindArgs {
    /// A PKCS#11 slot through this module (shared library): the master key is encrypted
    /// inside the token by a non-extractable AES-256 key.
    #[arg(long, value_name = "MODULE", requires = "token", conflicts_with_all = ["tpm", "new_key_file"])]
    pkcs11: Option<PathBuf>,
    /// The PKCS#11 token's label.
    #[arg(long, value_name = "LABEL", requires = "pkcs11")]
    token: Option<String>,
    /// The label of the token's AES key (made in the token if it has none).
    #[arg(long, value_name = "LABEL", default_value = DEFAULT_KEY_LABEL, requires = "pkcs11")]
    key_label: String,
    /// Read the token's PIN from the first line of FILE (else --pkcs11-pin-file).
    #[arg(long, value_name = "FILE", requires = "pkcs11")]
    pin_file: Option<PathBuf>,
    /// A TPM 2.0 slot: a slot key sealed to this machine's TPM (see --tpm-tcti).
    #[arg(long, conflicts_with = "new_key_file")]
    tpm: bool,
    /// Bind the TPM slot to these SHA-256 PCRs (e.g. 7 or 0,2,7): it opens only while
    /// they hold the values they hold now.
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "tpm")]
    pcrs: Vec<u8>,
    /// A password+keyfile slot: the new password and this key file together.
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
    /// Write 32 random bytes to --new-key-file first (0600; an existing file is refused).
    #[arg(long, requires = "new_key_file")]
    generate_key_file: bool,
    /// A password+pkcs11 or password+tpm slot: the token or the TPM *and* the new
    /// password, both needed (both mixed into the slot key).
    #[arg(long, conflicts_with = "new_key_file")]
    with_password: bool,
}

impl SlotKindArgs {
    /// The slot these flags describe. `tcti` is the TPM's, `pin` the PIN given to
    /// unlock (used when --pin-file is not given); `password` asks for the new password
    /// when the kind needs one. Writes the key file first with --generate-key-file (see
    /// [`Self::forget_generated`] when the slot is not added after all).
    pub(super) fn new_slot(
        &self,
        tcti: String,
        pin: Option<Pin>,
        kdf: KdfParams,
        password: impl FnOnce() -> anyhow::Result<Password>,
        out: &Output,
    ) -> anyhow::Result<NewSlot> {
        let hardware = match (&self.pkcs11, &self.token) {
            (Some(module), Some(token)) => Some(NewSlot::Pkcs11 {
                module: module.clone(),
                token: token.clone(),
                key_label: self.key_label.clone(),
                pin: match &self.pin_file {
                    Some(path) => Some(pin_from_file(path, out)?),
                    None => pin,
                },
            }),
            _ if self.tpm => Some(NewSlot::Tpm {
                tcti,
                pcrs: self.pcrs.clone(),
            }),
            _ => None,
        };
        if let Some(hardware) = hardware {
            if !self.with_password {
                return Ok(hardware);
            }
            return Ok(NewSlot::PasswordAnd {
                password: password()?,
                kdf,
                hardware: Box::new(hardware),
            });
        }
        if self.with_password {
            anyhow::bail!("--with-password goes with --pkcs11 or --tpm");
        }
        let password = password()?;
        let Some(path) = &self.new_key_file else {
            return Ok(NewSlot::Password { password, kdf });
        };
        if self.generate_key_file {
            if path.exists() {
                anyhow::bail!(
                    "the key file {} exists; --generate-key-file never overwrites one",
                    path.display()
                );
            }
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut *bytes);
            datamesh_keys::fsx::write_private_file(path, &*bytes)
                .with_context(|| format!("cannot write the key file {}", path.display()))?;
        }
        match KeyFile::read(path) {
            Ok(key_file) => Ok(NewSlot::PasswordKeyFile {
                password,
                key_file,
                kdf,
            }),
            Err(e) => {
                self.forget_generated();
                Err(anyhow::Error::msg(e))
            }
        }
    }

    /// Removes the key file --generate-key-file made (the slot was not added: it opens
    /// nothing).
    pub(super) fn forget_generated(&self) {
        if let (true, Some(path)) = (self.generate_key_file, &self.new_key_file) {
            let _ = datamesh_keys::fsx::scrub_and_remove(path);
        }
    }

    /// What the slot opens with, in words.
    pub(super) fn describe(&self, new: &NewSlot) -> String {
        let hardware = match new {
            NewSlot::PasswordAnd { hardware, .. } => hardware.as_ref(),
            other => other,
        };
        let what = match hardware {
            NewSlot::Pkcs11 {
                token, key_label, ..
            } => format!("token \"{token}\" (key \"{key_label}\")"),
            NewSlot::Tpm { .. } => "this machine's TPM".to_owned(),
            NewSlot::PasswordKeyFile { .. } => format!(
                "its password together with {} (keep the key file apart from the keystore)",
                self.new_key_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            _ => "its password".to_owned(),
        };
        if matches!(new, NewSlot::PasswordAnd { .. }) {
            format!("its password together with {what}")
        } else {
            what
        }
    }
}

/// The current password, a new one, and the new slot's KDF parameters.
#[derive(Debug, Args)]
pub(super) struct NewSlotArgs {
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    new_password: NewPasswordArgs,
    #[command(flatten)]
    kdf: KdfArgs,
}

/// `keys passwd`: a new password for the slot unlocked with.
pub(super) fn passwd(ctx: &Context, args: &NewSlotArgs) -> anyhow::Result<()> {
    let mut keystore = home::unlock(&ctx.home, &args.password, &ctx.out)?;
    let kdf = args.kdf.params(current_kdf(&keystore), &ctx.out)?;
    let new = args.new_password.get(&ctx.out)?;
    keystore.change_password(&new, kdf)?;
    let slot = keystore.unlocked_slot();
    if ctx.out.json() {
        ctx.out.json_value(&json!({ "slot": slot }));
    }
    ctx.out.info(format_args!(
        "password of slot {slot} changed; the keys are unchanged"
    ));
    Ok(())
}

/// The KDF parameters of the slot unlocked with.
fn current_kdf(keystore: &Keystore) -> KdfParams {
    keystore
        .slots()
        .into_iter()
        .find(|s| s.id == keystore.unlocked_slot())
        .and_then(|s| match s.kind {
            SlotKind::Password(kdf) => Some(kdf),
            _ => None,
        })
        .unwrap_or_default()
}

/// `keys slot ...`.
pub(super) fn run(ctx: &Context, command: SlotCommand) -> anyhow::Result<()> {
    match command {
        SlotCommand::Add { label, kind, args } => {
            let mut keystore = home::unlock(&ctx.home, &args.password, &ctx.out)?;
            let kdf = args
                .kdf
                .params(KdfParams::DEFAULT, &ctx.out)?
                .unwrap_or_default();
            let new = kind.new_slot(
                args.password.tcti(),
                args.password.pin(&ctx.out)?,
                kdf,
                || args.new_password.get(&ctx.out),
                &ctx.out,
            )?;
            let (id, made) = match keystore.add_slot(&new, &label) {
                Ok(added) => added,
                Err(e) => {
                    kind.forget_generated();
                    return Err(e.into());
                }
            };
            if let (
                true,
                NewSlot::Pkcs11 {
                    token, key_label, ..
                },
            ) = (made, &new)
            {
                ctx.out.info(format_args!(
                    "made a non-extractable AES-256 key \"{key_label}\" in token \"{token}\""
                ));
            }
            if let (true, NewSlot::PasswordAnd { hardware, .. }) = (made, &new)
                && let NewSlot::Pkcs11 {
                    token, key_label, ..
                } = hardware.as_ref()
            {
                ctx.out.info(format_args!(
                    "made a non-extractable AES-256 key \"{key_label}\" in token \"{token}\""
                ));
            }
            if ctx.out.json() {
                ctx.out.json_value(
                    &json!({ "id": id, "label": label, "kind": new.kind_name(), "key_made": made }),
                );
            } else {
                ctx.out.result(id);
            }
            ctx.out.info(format_args!(
                "added unlock slot {id} ({}): {} opens the same keys",
                new.kind_name(),
                kind.describe(&new)
            ));
            Ok(())
        }
        SlotCommand::List(password) => {
            let keystore = home::unlock(&ctx.home, &password, &ctx.out)?;
            crate::view::keys::slots(&ctx.out, &keystore.slots(), keystore.unlocked_slot());
            if let Some(policy) = keystore.unlock_policy() {
                ctx.out.info(format_args!(
                    "unlock policy: only {} slots may unlock",
                    policy.names().join(", ")
                ));
            }
            Ok(())
        }
        SlotCommand::Remove { id, password } => {
            let mut keystore = home::unlock(&ctx.home, &password, &ctx.out)?;
            keystore.remove_slot(id)?;
            if ctx.out.json() {
                ctx.out.json_value(&json!({ "removed": id }));
            }
            ctx.out.info(format_args!("removed unlock slot {id}"));
            Ok(())
        }
    }
}

/// The unlock policy flags of `keys policy`.
#[derive(Debug, Args)]
pub(super) struct UnlockPolicyArgs {
    /// Allow only these slot kinds to unlock (password, pkcs11, tpm, password+keyfile,
    /// password+pkcs11, password+tpm),
    /// e.g. `pkcs11,tpm,password+keyfile` to forbid password-only unlock. Refused while a
    /// slot of another kind exists.
    #[arg(
        long,
        value_name = "KINDS",
        value_delimiter = ',',
        conflicts_with = "no_unlock_policy"
    )]
    require: Vec<String>,
    /// Remove the unlock policy: every slot kind may unlock again.
    #[arg(long)]
    no_unlock_policy: bool,
}

impl UnlockPolicyArgs {
    pub(super) fn given(&self) -> bool {
        !self.require.is_empty() || self.no_unlock_policy
    }
}

/// `keys policy --require KINDS` / `--no-unlock-policy`.
pub(super) fn unlock_policy(
    ctx: &Context,
    args: &UnlockPolicyArgs,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let policy = if args.no_unlock_policy {
        None
    } else {
        Some(UnlockPolicy::allowing(&args.require).map_err(anyhow::Error::msg)?)
    };
    let mut keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    keystore.set_unlock_policy(policy)?;
    let allowed = keystore
        .unlock_policy()
        .map_or_else(|| "any".to_owned(), |p| p.names().join(", "));
    if ctx.out.json() {
        ctx.out.json_value(&json!({ "unlock": allowed }));
    }
    ctx.out
        .info(format_args!("slot kinds that may unlock: {allowed}"));
    Ok(())
}
