//! `datamesh init`: a new home with its keystore, config and API token.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use datamesh_keys::{KdfParams, Keystore, Layout, fsx};

use crate::Context;
use crate::home;
use crate::password::{KdfArgs, PasswordArgs};
use crate::view::keys::{key_table, keys_json};

/// Arguments of `datamesh init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// Accept a password that zxcvbn rates as weak (score below 3 of 4).
    #[arg(long)]
    allow_weak_password: bool,
    #[command(flatten)]
    kdf: KdfArgs,
}

pub(crate) fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<()> {
    home::require_no_keystore(&ctx.home)?;
    let kdf = args
        .kdf
        .params(KdfParams::DEFAULT, &ctx.out)?
        .unwrap_or_default();
    let password = args
        .password
        .new_password(args.allow_weak_password, &ctx.out)?;

    fsx::ensure_dir(&ctx.home)
        .with_context(|| format!("cannot create the home {}", ctx.home.display()))?;
    home::write_home_files(&ctx.home, &[])?;

    let started = Instant::now();
    let keystore = Keystore::create(&ctx.home, &password, kdf)?;
    ctx.out.detail(format_args!(
        "keystore sealed in {:.2} s ({kdf})",
        started.elapsed().as_secs_f64()
    ));

    let keys = keystore.keys();
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!({
            "home": ctx.home,
            "keystore": Layout::new(&ctx.home).keystore(),
            "config": home::config(&ctx.home),
            "api_token_file": home::api_token(&ctx.home),
            "keys": keys_json(&keys),
        }));
    } else {
        key_table(&ctx.out, &keys);
    }
    ctx.out.info(format_args!(
        "initialised the DataMesh home {}; keep the password safe: without it the keys cannot be recovered",
        ctx.home.display()
    ));
    Ok(())
}
