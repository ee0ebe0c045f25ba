//! `keys passwd` and `keys slot add|list|remove`: the passwords that unlock the keystore.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use datamesh_keys::{
    DEFAULT_KEY_LABEL, KdfParams, KeyFile, Keystore, NewSlot, SlotKind, UnlockPolicy,
};
use serde_json::json;

use crate::Context;
use crate::home;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs, pin_from_file};

#[derive(Debug, Subcommand)]
pub(super) enum SlotCommand {
    /// Add an unlock slot (a password by default; a PKCS#11 token, the TPM, or a
    /// password and a key file); prints its id.
    #[command(
        after_help = "Examples:\n  datamesh keys slot add --label backup-admin\n  datamesh keys slot add --pkcs11 /usr/lib/softhsm/libsofthsm2.so --token node --pin-file pin.txt\n  datamesh keys slot add --tpm --pcrs 7\n  datamesh keys slot add --new-key-file usb/node.key --generate-key-file\n\nThe PIN is never stored: give it to unattended unlocks with --pkcs11-pin-file (or\nDATAMESH_PKCS11_PIN_FILE)."
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
            if kind.pkcs11.is_some() || kind.tpm {
                return add_hardware(ctx, &mut keystore, &label, &kind, &args);
            }
            if let Some(path) = &kind.new_key_file {
                return add_composite(
                    ctx,
                    &mut keystore,
                    &label,
                    path,
                    kind.generate_key_file,
                    &args,
                );
            }
            let kdf = args
                .kdf
                .params(KdfParams::DEFAULT, &ctx.out)?
                .unwrap_or_default();
            let new = args.new_password.get(&ctx.out)?;
            let id = keystore.add_password_slot(&new, kdf, &label)?;
            if ctx.out.json() {
                ctx.out.json_value(&json!({ "id": id, "label": label }));
            } else {
                ctx.out.result(id);
            }
            ctx.out.info(format_args!(
                "added unlock slot {id}: its password opens the same keys"
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

/// `slot add --pkcs11 ...` or `slot add --tpm`.
fn add_hardware(
    ctx: &Context,
    keystore: &mut Keystore,
    label: &str,
    kind: &SlotKindArgs,
    args: &NewSlotArgs,
) -> anyhow::Result<()> {
    let new = match (&kind.pkcs11, &kind.token) {
        (Some(module), Some(token)) => NewSlot::Pkcs11 {
            module: module.clone(),
            token: token.clone(),
            key_label: kind.key_label.clone(),
            pin: match &kind.pin_file {
                Some(path) => Some(pin_from_file(path, &ctx.out)?),
                None => args.password.pin(&ctx.out)?,
            },
        },
        _ => NewSlot::Tpm {
            tcti: args.password.tcti(),
            pcrs: kind.pcrs.clone(),
        },
    };
    let (id, made) = keystore.add_hardware_slot(&new, label)?;
    let what = match &new {
        NewSlot::Pkcs11 {
            token, key_label, ..
        } => {
            if made {
                ctx.out.info(format_args!(
                    "made a non-extractable AES-256 key \"{key_label}\" in token \"{token}\""
                ));
            }
            format!("token \"{token}\" (key \"{key_label}\")")
        }
        _ => "this machine's TPM".to_owned(),
    };
    if ctx.out.json() {
        ctx.out
            .json_value(&json!({ "id": id, "label": label, "key_made": made }));
    } else {
        ctx.out.result(id);
    }
    ctx.out.info(format_args!(
        "added unlock slot {id}: {what} opens the same keys"
    ));
    Ok(())
}

/// `slot add --new-key-file F [--generate-key-file]`.
fn add_composite(
    ctx: &Context,
    keystore: &mut Keystore,
    label: &str,
    path: &std::path::Path,
    generate: bool,
    args: &NewSlotArgs,
) -> anyhow::Result<()> {
    let kdf = args
        .kdf
        .params(KdfParams::DEFAULT, &ctx.out)?
        .unwrap_or_default();
    let new = args.new_password.get(&ctx.out)?;
    if generate {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut *bytes);
        if path.exists() {
            anyhow::bail!(
                "the key file {} exists; --generate-key-file never overwrites one",
                path.display()
            );
        }
        datamesh_keys::fsx::write_private_file(path, &*bytes)
            .with_context(|| format!("cannot write the key file {}", path.display()))?;
    }
    let added = KeyFile::read(path)
        .map_err(anyhow::Error::msg)
        .and_then(|key_file| Ok(keystore.add_composite_slot(&new, &key_file, kdf, label)?));
    let id = match added {
        Ok(id) => id,
        Err(e) => {
            if generate {
                // The key file made for a slot that was not added opens nothing.
                let _ = datamesh_keys::fsx::scrub_and_remove(path);
            }
            return Err(e);
        }
    };
    if ctx.out.json() {
        ctx.out.json_value(&json!({ "id": id, "label": label }));
    } else {
        ctx.out.result(id);
    }
    ctx.out.info(format_args!(
        "added unlock slot {id}: its password together with {} opens the same keys; keep the key file apart from the keystore",
        path.display()
    ));
    Ok(())
}

/// The unlock policy flags of `keys policy`.
#[derive(Debug, Args)]
pub(super) struct UnlockPolicyArgs {
    /// Allow only these slot kinds to unlock (password, pkcs11, tpm, password+keyfile),
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
