//! `keys rotate`, `keys policy`, `keys revoke`, `keys destroy`: the life of a key version.

use clap::ValueEnum;
use datamesh_keys::{KeyStatus, Purpose, RotationPolicy, Timestamp};
use serde_json::json;

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;
use crate::view::keys::{key_json, key_table};

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum OnOff {
    On,
    Off,
}

/// `keys rotate NAME`.
pub(super) fn rotate(ctx: &Context, password: &PasswordArgs, name: &str) -> anyhow::Result<()> {
    let new = home::unlock(&ctx.home, password, &ctx.out)?.rotate(name)?;
    if ctx.out.json() {
        ctx.out.json_value(&key_json(&new));
    } else {
        key_table(&ctx.out, std::slice::from_ref(&new));
    }
    if let Some(old) = new.predecessor {
        ctx.out.info(format_args!(
            "rotated {name}: v{} is active, v{old} is deprecated{}",
            new.version,
            match new.purpose {
                Purpose::FileEncryption => " and still decrypts",
                Purpose::FileAuthority => {
                    " and still signs for the files made under it (new files use the new version)"
                }
                _ => " (the node's peer id changes at its next start)",
            }
        ));
    }
    Ok(())
}

/// `keys policy [--interval-days N] [--max-age-days N] [--auto on|off]`: sets what is
/// given, then shows the policy.
pub(super) fn policy(
    ctx: &Context,
    interval_days: Option<u32>,
    max_age_days: Option<u32>,
    auto: Option<OnOff>,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let mut keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    if interval_days.is_some() || max_age_days.is_some() || auto.is_some() {
        let old = keystore.policy();
        let policy = RotationPolicy::new(
            interval_days.unwrap_or(old.interval_days()),
            max_age_days.unwrap_or(old.max_age_days()),
            auto.map_or(old.auto(), |a| a == OnOff::On),
        )?;
        keystore.set_policy(policy)?;
        ctx.out.info("rotation policy updated");
    }
    crate::view::keys::policy(
        &ctx.out,
        &keystore.policy(),
        &keystore.due(Timestamp::now()),
    );
    Ok(())
}

/// `keys revoke NAME VERSION --reason TEXT`.
pub(super) fn revoke(
    ctx: &Context,
    password: &PasswordArgs,
    name: &str,
    version: u32,
    reason: &str,
) -> anyhow::Result<()> {
    let replacement = home::unlock(&ctx.home, password, &ctx.out)?.revoke(name, version, reason)?;
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "name": name,
            "version": version,
            "status": KeyStatus::Revoked.as_str(),
            "replacement": replacement.as_ref().map(key_json),
        }));
    }
    ctx.out.info(format_args!(
        "revoked {name} v{version}: it will never encrypt again, and decrypts only on explicit override"
    ));
    if let Some(new) = replacement {
        ctx.out.info(format_args!(
            "{name} v{} is the new active version",
            new.version
        ));
    }
    Ok(())
}

/// `keys destroy NAME VERSION [--force]`.
pub(super) fn destroy(
    ctx: &Context,
    password: &PasswordArgs,
    name: &str,
    version: u32,
    force: bool,
) -> anyhow::Result<()> {
    let mut keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    let info = keystore
        .versions(name)
        .into_iter()
        .find(|k| k.version == version);
    // A file-encryption version may be the last key that opens a file this node put:
    // ask the running node, which checks every file's envelopes for real.
    let still_needed = match info.filter(|k| k.purpose != Purpose::NodeIdentity) {
        None => false,
        // A file-authority root signs the envelopes of every file made under it: without
        // it those files can never get a new envelope (share, rewrap).
        Some(k) if k.purpose == Purpose::FileAuthority => {
            ctx.out.warn(format_args!(
                "{name} v{version} signs the key envelopes of the files made under it: without it they cannot be shared or re-wrapped again"
            ));
            true
        }
        Some(k) => match k
            .key_id()
            .ok_or_else(|| anyhow::anyhow!("the keystore holds an invalid public key"))
            .and_then(|id| crate::cmd::files::files_needing_only(ctx, id))
        {
            Ok(files) if files.is_empty() => false,
            Ok(files) => {
                ctx.out.warn(format_args!(
                    "{} files open only with {name} v{version} (e.g. {}): run `datamesh keys rewrap --all` first",
                    files.len(),
                    files[0]
                ));
                true
            }
            Err(e) => {
                ctx.out.warn(format_args!(
                    "cannot check which files need {name} v{version}: {e:#}"
                ));
                true
            }
        },
    };
    keystore.destroy(name, version, still_needed, force)?;
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "name": name, "version": version, "status": KeyStatus::Destroyed.as_str(),
        }));
    }
    ctx.out.info(format_args!(
        "destroyed the secret of {name} v{version} (the sealed keystore no longer holds it; \
         copies in old backups or on the disk's free blocks are not reached)"
    ));
    Ok(())
}
