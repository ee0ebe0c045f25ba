//! `datamesh init`: a new home with its keystore, config and API token.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use datamesh_keys::{KdfParams, Keystore, Layout, fsx};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::Context;
use crate::cmd::keys::{KEY_HEADER, key_json, key_row};
use crate::home;
use crate::password::{KdfArgs, PasswordArgs};

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

/// The config a new home starts with. The node reads it; every value can be overridden
/// by environment variables and flags of `datamesh node run`.
pub(crate) const DEFAULT_CONFIG: &str = r#"# DataMesh node configuration, written by `datamesh init`.
# The defaults need no editing for a node on this machine.

# libp2p listen address of the node (port 0: any free port).
listen_address = "/ip4/127.0.0.1/tcp/0"
# Local HTTP API (the CLI's way in), with the bearer token in ./api-token.
api_address = "127.0.0.1:0"
# Multiaddrs (with /p2p/PEER_ID) of nodes to join at start.
bootstrap = []
# Bytes of shards this node stores for others at most (10 GiB).
storage_quota_bytes = 10737418240
# error, warn, info, debug or trace.
log_level = "info"
# The key rotation policy lives in the sealed keystore: `datamesh keys policy`.
"#;

/// Writes `config.toml` (the defaults) and `api-token` (32 random bytes, hex) into a home,
/// leaving either alone if it exists. Used by `init` and by `keys restore`.
pub(crate) fn write_home_files(home: &std::path::Path) -> anyhow::Result<()> {
    let config = home::config(home);
    if !config.exists() {
        fsx::write_private_file(&config, DEFAULT_CONFIG.as_bytes())
            .with_context(|| format!("cannot write {}", config.display()))?;
    }
    let token_path = home::api_token(home);
    if !token_path.exists() {
        let mut token = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut token[..]);
        let hex = Zeroizing::new(data_encoding::HEXLOWER.encode(&token[..]));
        fsx::write_private_file(&token_path, hex.as_bytes())
            .with_context(|| format!("cannot write {}", token_path.display()))?;
    }
    Ok(())
}

pub(crate) fn run(ctx: &Context, args: InitArgs) -> anyhow::Result<()> {
    let layout = Layout::new(&ctx.home);
    if layout.keystore().exists() {
        anyhow::bail!(datamesh_keys::CreateError::AlreadyExists {
            home: ctx.home.clone(),
        });
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
    write_home_files(&ctx.home)?;

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
            "keystore": layout.keystore(),
            "config": home::config(&ctx.home),
            "api_token_file": home::api_token(&ctx.home),
            "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
        }));
    } else {
        let rows: Vec<Vec<String>> = keys.iter().map(|k| key_row(k, false)).collect();
        ctx.out.table(&KEY_HEADER, &rows);
    }
    ctx.out.info(format_args!(
        "initialised the DataMesh home {}; keep the password safe: without it the keys cannot be recovered",
        ctx.home.display()
    ));
    Ok(())
}
