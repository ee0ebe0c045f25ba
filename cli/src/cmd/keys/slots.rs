//! `keys passwd` and `keys slot add|list|remove`: the passwords that unlock the keystore.

use clap::{Args, Subcommand};
use datamesh_keys::{KdfParams, Keystore, SlotKind};
use serde_json::json;

use crate::Context;
use crate::home;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs};

#[derive(Debug, Subcommand)]
pub(super) enum SlotCommand {
    /// Add a password slot; prints its id.
    #[command(after_help = "Example:\n  datamesh keys slot add --label backup-admin")]
    Add {
        /// A label for the slot.
        #[arg(long, default_value = "")]
        label: String,
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
        SlotCommand::Add { label, args } => {
            let mut keystore = home::unlock(&ctx.home, &args.password, &ctx.out)?;
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
