//! `keys backup`, `keys backup verify` and `keys restore`: bundles of every key version,
//! the policy and the node's catalog.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use datamesh_keys::{
    BackupKey, BackupSeal, KdfParams, Keystore, OpenedBackup, SealedWith, Timestamp, TrustedSigner,
    UnlockPolicy, fsx,
};
use serde_json::json;

use super::list::parse_public_key;
use super::recovery;
use super::slots::SlotKindArgs;
use crate::Context;
use crate::home;
use crate::output::Output;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs};
use crate::view::keys::{key_table, keys_json};

#[derive(Debug, Subcommand)]
pub(super) enum BackupCommand {
    /// Open and check a bundle (checksum, password, manifest, keys) without restoring it.
    #[command(
        after_help = "Examples:\n  datamesh keys backup verify keys.dmbackup --backup-password-file backup.pw\n  datamesh --home ~/other keys backup verify keys.dmbackup   # sealed to ~/other's key"
    )]
    Verify {
        /// The bundle.
        file: PathBuf,
        #[command(flatten)]
        backup_password: BackupPasswordArgs,
        #[command(flatten)]
        identity: IdentityArgs,
    },
}

/// The recipient's home, for a bundle sealed to a public key.
#[derive(Debug, Args)]
pub(super) struct IdentityArgs {
    /// For a bundle sealed to a public key (`backup --to`): the recipient's home, whose
    /// keystore holds the matching private key [verify: default --home].
    #[arg(long, value_name = "DIR")]
    identity_home: Option<PathBuf>,
    /// The recipient keystore's password (first line of FILE) instead of a prompt.
    #[command(flatten)]
    password: PasswordArgs,
}

/// Whose bundle `restore` accepts.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct SignerArgs {
    /// The source home's node identity (64 hex characters, as `datamesh keys
    /// export-public node-identity` prints it there): the bundle must be signed by it.
    #[arg(long, value_name = "KEY")]
    from: Option<String>,
    /// Accept whatever node identity signed the bundle (shown), without --from.
    #[arg(long)]
    trust_on_first_use: bool,
}

impl SignerArgs {
    fn key(&self) -> anyhow::Result<Option<[u8; 32]>> {
        let Some(hex) = &self.from else {
            return Ok(None);
        };
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.trim().as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--from {hex:?} is not a node identity key (64 hex characters, as `datamesh keys export-public node-identity` prints it)"
                )
            })?;
        Ok(Some(bytes))
    }
}

/// The arguments of `keys restore` but the bundle.
pub(super) struct RestoreArgs<'a> {
    pub(super) backup_password: &'a BackupPasswordArgs,
    pub(super) identity: &'a IdentityArgs,
    pub(super) signer: &'a SignerArgs,
    pub(super) slot: &'a SlotKindArgs,
    pub(super) require: &'a [String],
    pub(super) new_password: &'a NewPasswordArgs,
    pub(super) kdf: &'a KdfArgs,
}

/// How the backup password is given.
#[derive(Debug, Args)]
pub(super) struct BackupPasswordArgs {
    /// Read the backup password from the first line of FILE instead of prompting.
    #[arg(long, value_name = "FILE")]
    backup_password_file: Option<PathBuf>,
}

impl BackupPasswordArgs {
    /// The backup password from its file (first line), or asked for (twice if `new`).
    fn get(&self, new: bool, out: &Output) -> anyhow::Result<datamesh_keys::Password> {
        match &self.backup_password_file {
            Some(path) => crate::password::from_file(path, out),
            None if new => crate::password::prompt_twice("Backup password: "),
            None => crate::password::prompt("Backup password: "),
        }
    }
}

fn read_bundle(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read the backup bundle {}", path.display()))?
        .len();
    if len > datamesh_keys::MAX_BACKUP_LEN {
        anyhow::bail!(datamesh_keys::BackupError::Damaged {
            problem: format!("{len} bytes, above the 16 MiB limit"),
        });
    }
    std::fs::read(path).with_context(|| format!("cannot read the backup bundle {}", path.display()))
}

/// Opens a bundle: with the backup password, or, when it is sealed to a public key, with
/// the keystore of the recipient's home (`--identity-home`, else `default_identity`).
fn open_bundle(
    ctx: &Context,
    bytes: &[u8],
    backup_password: &BackupPasswordArgs,
    identity: &IdentityArgs,
    default_identity: Option<&Path>,
) -> anyhow::Result<OpenedBackup> {
    if !datamesh_keys::is_sealed_to_key(bytes) {
        return Ok(Keystore::verify_backup(
            bytes,
            BackupKey::Password(&backup_password.get(false, &ctx.out)?),
        )?);
    }
    let Some(recipient_home) = identity.identity_home.as_deref().or(default_identity) else {
        anyhow::bail!(
            "this backup bundle is sealed to a public key: give --identity-home DIR, the recipient's home"
        );
    };
    let recipient = home::unlock(recipient_home, &identity.password, &ctx.out)?;
    Ok(Keystore::verify_backup(
        bytes,
        BackupKey::Recipient(&recipient),
    )?)
}

/// `keys backup --out FILE [--to PUBKEY]`.
pub(super) fn make_bundle(
    ctx: &Context,
    out: Option<PathBuf>,
    to: Option<&str>,
    backup_password: &BackupPasswordArgs,
    kdf: &KdfArgs,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let out = out.ok_or_else(|| {
        anyhow::anyhow!("keys backup needs --out FILE (see `datamesh keys backup --help`)")
    })?;
    if out.exists() {
        anyhow::bail!("{} already exists; choose another --out", out.display());
    }
    let recipient = to.map(|k| parse_public_key(k, "--to")).transpose()?;
    let keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    let catalog = recovery::snapshot(&ctx.home)?;
    let bytes = match &recipient {
        Some(key) => keystore.backup(BackupSeal::Recipient(key), &catalog.bytes)?,
        None => {
            let kdf = kdf
                .params(KdfParams::DEFAULT, &ctx.out)?
                .unwrap_or_default();
            let backup_password = backup_password.get(true, &ctx.out)?;
            keystore.backup(
                BackupSeal::Password {
                    password: &backup_password,
                    kdf,
                },
                &catalog.bytes,
            )?
        }
    };
    fsx::write_private_file(&out, &bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "file": out,
            "bytes": bytes.len(),
            "catalog_files": catalog.files,
            "catalog_source": catalog.source,
            "sealed_to": recipient.map(|k| k.to_string()),
        }));
    } else {
        ctx.out.result(out.display());
    }
    let catalog_note = match catalog.source {
        "api" => format!(
            "the catalog of {} file(s) came from the running node's API (ids, names, sizes; stop the node first for manifests and sharing recipients too)",
            catalog.files
        ),
        "database" => format!(
            "the catalog of {} file(s) came from the node's database",
            catalog.files
        ),
        _ => "this home's node never ran: the catalog is empty".to_owned(),
    };
    ctx.out.info(format_args!(
        "backup bundle written (0600); {catalog_note}. {}. Check it with `datamesh keys backup verify {}`",
        if recipient.is_some() {
            "Only the holder of the recipient key can open it"
        } else {
            "Without its backup password it cannot be opened"
        },
        out.display()
    ));
    Ok(())
}

/// `keys backup verify FILE`.
pub(super) fn verify_bundle(
    ctx: &Context,
    file: &Path,
    backup_password: &BackupPasswordArgs,
    identity: &IdentityArgs,
) -> anyhow::Result<()> {
    let bytes = read_bundle(file)?;
    let opened = open_bundle(ctx, &bytes, backup_password, identity, Some(&ctx.home))?;
    let files = recovery::count(&opened.catalog)?;
    let manifest = &opened.manifest;
    let created = Timestamp::from_second(manifest.created)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let sealed = match &opened.sealed_with {
        SealedWith::Password => "backup password".to_owned(),
        SealedWith::Recipient(id) => format!("sealed to key id {id}"),
        _ => "unknown".to_owned(),
    };
    let signer = opened.signer_hex();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "ok": true,
            "format_version": manifest.format_version,
            "created": created,
            "key_count": manifest.key_count,
            "catalog_files": files,
            "sealed_with": sealed,
            "signed_by": signer,
            "content_blake3": data_encoding::HEXLOWER.encode(&manifest.content_blake3),
        }));
    } else {
        ctx.out.result(format_args!(
            "ok: backup bundle (format {}) of {} key version(s) and a catalog of {files} file(s), made {created}, {sealed}, {}",
            manifest.format_version,
            manifest.key_count,
            signer.map_or_else(
                || "unsigned".to_owned(),
                |s| format!("signed by node identity {s}")
            )
        ));
    }
    Ok(())
}

/// `keys restore`: the keystore from the bundle (checked in full first), then the
/// config and API token a new home needs, as `datamesh init` writes them, and the node's
/// catalog.
pub(super) fn restore(ctx: &Context, file: &Path, args: &RestoreArgs<'_>) -> anyhow::Result<()> {
    let RestoreArgs {
        backup_password,
        identity,
        signer,
        slot,
        require,
        new_password,
        kdf,
    } = args;
    home::require_no_keystore(&ctx.home)?;
    let unlock_policy = if require.is_empty() {
        None
    } else {
        Some(UnlockPolicy::allowing(require).map_err(anyhow::Error::msg)?)
    };
    let from = signer.key()?;
    let bytes = read_bundle(file)?;
    // Check the bundle (its signer, and that its catalog decodes) before asking for
    // anything else or writing anything.
    let opened = open_bundle(ctx, &bytes, backup_password, identity, None)?;
    ctx.out.info(format_args!(
        "the bundle is {}",
        opened.signer_hex().map_or_else(
            || "unsigned".to_owned(),
            |s| format!("signed by node identity {s}")
        )
    ));
    let trust = match &from {
        Some(key) => TrustedSigner::Key(key),
        None => TrustedSigner::FirstUse,
    };
    opened.check_signer(trust)?;
    recovery::count(&opened.catalog)?;
    let catalog = opened.catalog.clone();
    let kdf = kdf
        .params(KdfParams::DEFAULT, &ctx.out)?
        .unwrap_or_default();
    let new = slot.new_slot(
        identity.password.tcti(),
        identity.password.pin(&ctx.out)?,
        kdf,
        || new_password.get(&ctx.out),
        &ctx.out,
    )?;
    if let Some(policy) = &unlock_policy
        && !policy.names().contains(&new.kind_name())
    {
        slot.forget_generated();
        anyhow::bail!(
            "the unlock policy asked for (--require) allows only {} slots, not a {} slot: restore with a slot it allows (--new-key-file F, --pkcs11 MODULE --token LABEL, --tpm, or one of them --with-password)",
            policy.names().join(", "),
            new.kind_name()
        );
    }
    let keystore = Keystore::restore_with(&ctx.home, opened, trust, &new, unlock_policy)
        .inspect_err(|_| slot.forget_generated())?;
    home::write_home_files(&ctx.home, &[])?;
    let files = recovery::restore(&ctx.home, &catalog)?;
    let keys = keystore.keys();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "home": ctx.home,
            "keys": keys_json(&keys),
            "catalog_files": files,
        }));
    } else {
        key_table(&ctx.out, &keys);
    }
    ctx.out.info(format_args!(
        "restored {} key version(s) and a catalog of {files} file(s) into the new home {}; {} opens its slot 1 ({})",
        keys.len(),
        ctx.home.display(),
        slot.describe(&new),
        new.kind_name()
    ));
    Ok(())
}
