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
    /// The `[security]` profile written to the new config.toml: `standard`, or `fips`
    /// (NIST P-256 file key and recipients, PBKDF2-HMAC-SHA256 password slot).
    #[arg(long, value_name = "PROFILE")]
    security_profile: Option<String>,
}

pub(crate) fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<()> {
    home::require_no_keystore(&ctx.home)?;
    if let Some(profile) = &args.security_profile {
        write_profile_config(ctx, profile)?;
    }
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
    let mut keystore = Keystore::create(&ctx.home, &password, kdf)?;
    ctx.out.detail(format_args!(
        "keystore sealed in {:.2} s ({kdf})",
        started.elapsed().as_secs_f64()
    ));
    if crate::security::current().recipients == datamesh_core::RecipientPolicy::P256Only {
        keystore.ensure_file_key(datamesh_keys::Purpose::P256FileEncryption)?;
    }

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

/// Writes the new home's config.toml with the `[security]` section of `profile` and
/// makes it this process's policy (the slot about to be made follows it).
fn write_profile_config(ctx: &Context, profile: &str) -> anyhow::Result<()> {
    let security = crate::security::profile_config(profile)?;
    let path = home::config(&ctx.home);
    if path.exists() {
        // A config of this profile (an init that stopped after writing it) is kept.
        if crate::config::Config::load(&path)?.security.profile == security.profile {
            return Ok(());
        }
        anyhow::bail!(
            "{} exists already with another profile: set profile = {profile:?} in its [security] section instead of --security-profile",
            path.display()
        );
    }
    fsx::ensure_dir(&ctx.home)
        .with_context(|| format!("cannot create the home {}", ctx.home.display()))?;
    let mut config = crate::config::Config::with_bootstrap(&[]);
    config.security = security;
    fsx::write_private_file(&path, config.to_toml()?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    crate::security::init(&ctx.home)?;
    Ok(())
}
