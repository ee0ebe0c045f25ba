//! `keys list`, `keys show` and `keys export-public`: reading the keys (and reading back
//! a public key as `export-public` prints it).

use anyhow::Context as _;
use datamesh_core::ecies::PublicKey;
use datamesh_keys::{AuditEvent, AuditOp, ChangeError, Timestamp};

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;
use crate::view::keys::key_json;

/// `keys list` (every key) and `keys show NAME` (`name`: its versions in detail).
pub(super) fn list(
    ctx: &Context,
    password: &PasswordArgs,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    let keys = match name {
        Some(name) => {
            let versions = keystore.versions(name);
            if versions.is_empty() {
                return Err(ChangeError::NoSuchKey { name: name.into() }.into());
            }
            versions
        }
        None => keystore.keys(),
    };
    crate::view::keys::key_list(
        &ctx.out,
        &keys,
        &keystore.due(Timestamp::now()),
        name.is_some(),
        &keystore.slots(),
    );
    Ok(())
}

/// `keys export-public NAME`: the active public key (hex), logged in the audit log.
pub(super) fn export_public(
    ctx: &Context,
    name: &str,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    let key = keystore.active(name).ok_or_else(|| {
        if keystore.versions(name).is_empty() {
            ChangeError::NoSuchKey {
                name: name.to_owned(),
            }
        } else {
            ChangeError::NoActiveVersion {
                name: name.to_owned(),
            }
        }
    })?;
    keystore.log(&AuditEvent::new(AuditOp::ExportPublic).with_key(&key.name, Some(key.version)))?;
    if ctx.out.json() {
        ctx.out.json_value(&key_json(&key));
    } else {
        ctx.out.result(key.public_text());
    }
    Ok(())
}

/// A public key given on the command line to seal something to with ECIES on secp256k1
/// (a backup's `--to`, an escrow `--contact`; `what` names the flag in the error).
///
/// # Errors
/// Not a secp256k1 public key, or a `[security]` recipient policy that refuses
/// classical-only recipients (`pq-required`, `p256-only`): one line.
pub(super) fn parse_public_key(text: &str, what: &str) -> anyhow::Result<PublicKey> {
    let key = text.trim().parse::<PublicKey>().map_err(|_| {
        anyhow::anyhow!(
            "{what} {text:?} is not a secp256k1 public key (66 hex characters, as `datamesh keys export-public` prints)"
        )
    })?;
    let policy = crate::security::current().recipients;
    policy
        .check(&[datamesh_core::Recipient::Classical(key)])
        .with_context(|| format!("{what} seals with ECIES on secp256k1"))?;
    Ok(key)
}
