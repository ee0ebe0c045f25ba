//! `keys rekey`: a new master key, so that whatever was made with the old one (escrow
//! sets, network copies, old copies of the keystore file with an old password) opens
//! nothing written from now on.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{escrow, recovery};
use crate::Context;
use crate::home;
use crate::password::{self, PasswordArgs};

/// Arguments of `keys rekey`.
#[derive(Debug, Args)]
pub(super) struct RekeyArgs {
    /// Keep another password (or password+...) slot: FILE's first line is its password
    /// (repeat for more). Hardware slots are re-wrapped through their token or TPM, a
    /// password+keyfile slot with --key-file; every slot that cannot be is dropped, with
    /// a warning.
    #[arg(long, value_name = "FILE")]
    keep_slot_password_file: Vec<PathBuf>,
    /// Make a new escrow set right away: K shares recover the new master key (with the
    /// node running, its network copy is stored too).
    #[arg(long, value_name = "K", requires_all = ["escrow_shares", "escrow_out_dir"])]
    escrow_threshold: Option<u8>,
    /// N: how many shares the new set has.
    #[arg(long, value_name = "N", requires = "escrow_threshold")]
    escrow_shares: Option<u8>,
    /// Folder for the new set's share files.
    #[arg(long, value_name = "DIR", requires = "escrow_threshold")]
    escrow_out_dir: Option<PathBuf>,
    #[command(flatten)]
    password: PasswordArgs,
}

/// `keys rekey`.
pub(super) fn rekey(ctx: &Context, args: &RekeyArgs) -> anyhow::Result<()> {
    home::require_keystore(&ctx.home)?;
    let keep = args
        .keep_slot_password_file
        .iter()
        .map(|f| password::from_file(f, &ctx.out))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let (mut keystore, credentials) = home::unlock_with(&ctx.home, &args.password, &ctx.out)?;
    let report = keystore.rekey_with(&credentials, &keep)?;
    ctx.out.detail(format_args!(
        "unlocked and rekeyed in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    for slot in &report.dropped {
        let why = report
            .reasons
            .iter()
            .find(|(id, _)| *id == slot.id)
            .map_or("", |(_, why)| why.as_str());
        ctx.out.warn(format_args!(
            "slot {} ({}) was dropped: {why}; the {} slot no longer opens the keystore",
            slot.id,
            if slot.label.is_empty() {
                "no label"
            } else {
                &slot.label
            },
            slot.kind.name()
        ));
    }
    let node = recovery::running_node(&ctx.home)?;
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "kept_slots": report.kept,
            "dropped_slots": report.dropped.iter().map(|s| s.id).collect::<Vec<_>>(),
            "generation": keystore.generation(),
        }));
    }
    ctx.out.info(format_args!(
        "new master key in place (slots {:?} re-wrapped): old copies of the keystore file open only the keys they held, and every escrow set and network copy made before opens nothing new",
        report.kept
    ));
    match (args.escrow_threshold, args.escrow_shares, &args.escrow_out_dir) {
        (Some(threshold), Some(shares), Some(dir)) => {
            escrow::split_with(ctx, &keystore, threshold, shares, dir, &[], false)?;
        }
        _ => ctx.out.warn(
            "the old escrow shares are revoked: make a new set with `datamesh keys escrow split` (with the node running, it stores a new network copy too)",
        ),
    }
    if node.is_some() {
        ctx.out.warn(
            "the running node still holds the old master key: it keeps serving its keys but follows no later key change until it is restarted",
        );
    }
    Ok(())
}
