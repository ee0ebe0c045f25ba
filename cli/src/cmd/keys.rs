//! `datamesh keys ...`: inspect and manage the keystore.

mod recovery;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use datamesh_core::FileId;
use datamesh_core::ecies::PublicKey;
use datamesh_keys::{
    AuditEvent, AuditOp, BackupKey, BackupSeal, ChangeError, FILE_ENCRYPTION, KeyInfo, KeyStatus,
    Keystore, Layout, OpenError, OpenedBackup, Purpose, RotationPolicy, SealedWith, Share,
    SlotKind, Timestamp, fsx,
};
use serde_json::{Value, json};

use crate::Context;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs};

/// Arguments of `datamesh keys`.
#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-wrap stored files' data keys to the active file-encryption key (through the
    /// running node; only key envelopes travel, no shard moves).
    #[command(after_help = "Example:\n  datamesh keys rotate && datamesh keys rewrap --all")]
    Rewrap {
        /// One file id; or --all.
        id: Option<String>,
        /// Every file in the node's catalog.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// List every version of every key (`--json`: with full public keys).
    #[command(after_help = "Example:\n  datamesh keys list --json --password-file pw")]
    List(PasswordArgs),
    /// Show every version of one key in detail.
    #[command(after_help = "Example:\n  datamesh keys show file-encryption")]
    Show {
        /// The key's name, e.g. file-encryption or node-identity.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Add a new active version of a key; the old one is deprecated and still decrypts.
    #[command(
        after_help = "Example:\n  datamesh keys rotate            # file-encryption\n  datamesh keys rotate node-identity   # changes the node's peer id"
    )]
    Rotate {
        /// The key to rotate.
        #[arg(default_value = FILE_ENCRYPTION)]
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Show or set the rotation policy (and what is due now).
    #[command(
        after_help = "Example:\n  datamesh keys policy --interval-days 30 --max-age-days 180 --auto on"
    )]
    Policy {
        /// Days between rotations.
        #[arg(long, value_name = "N")]
        interval_days: Option<u32>,
        /// Days an active key may live at most.
        #[arg(long, value_name = "N")]
        max_age_days: Option<u32>,
        /// Whether the node rotates due keys by itself.
        #[arg(long, value_name = "on|off")]
        auto: Option<OnOff>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Mark a key version compromised: never used to encrypt again.
    #[command(
        after_help = "Example:\n  datamesh keys revoke file-encryption 2 --reason \"laptop stolen\""
    )]
    Revoke {
        /// The key's name.
        name: String,
        /// The version to revoke (revoking the active one first rotates).
        version: u32,
        /// Why (kept in the keystore and the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Erase the secret of an old key version.
    #[command(after_help = "Example:\n  datamesh keys destroy file-encryption 1 --force")]
    Destroy {
        /// The key's name.
        name: String,
        /// The version to destroy (not the active one).
        version: u32,
        /// Destroy even if files may still need this version to be decrypted.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Change the password of the slot you unlock with (the keys stay the same).
    #[command(
        after_help = "Example:\n  datamesh keys passwd --password-file old.pw --new-password-file new.pw"
    )]
    Passwd(NewSlotArgs),
    /// Manage unlock slots (several passwords for the same keys).
    Slot {
        #[command(subcommand)]
        command: SlotCommand,
    },
    /// Report on the audit log; `verify` checks its hash chain.
    #[command(
        after_help = "Example:\n  datamesh keys audit --last 20\n  datamesh keys audit verify"
    )]
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// How many of the last lines to show.
        #[arg(long, value_name = "N", default_value_t = 10)]
        last: usize,
    },
    /// Print the active public key of a key (hex; secp256k1 compressed SEC1).
    #[command(after_help = "Example:\n  datamesh keys export-public > my-key.pub")]
    ExportPublic {
        /// The key's name.
        #[arg(default_value = FILE_ENCRYPTION)]
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Seal the plaintext NAME.key files of the old layout, then erase them.
    #[command(after_help = "Example:\n  datamesh keys import-legacy ~/.datamesh/keys")]
    ImportLegacy {
        /// The folder of the old NAME.key / NAME.info files.
        dir: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Write a backup bundle of every key version (but destroyed ones), the policy and the
    /// node's catalog of files, sealed with a backup password of its own or to a public
    /// key (`--to`); `verify` checks one without restoring.
    #[command(
        after_help = "Examples:\n  datamesh keys backup --out keys.dmbackup --backup-password-file backup.pw\n  datamesh keys backup verify keys.dmbackup --backup-password-file backup.pw\n  datamesh keys backup --out keys.dmbackup --to $(datamesh --home ~/other keys export-public)\n\nThe catalog is read from the running node's API, or from its database when it is stopped\n(then with manifests and sharing recipients too)."
    )]
    Backup {
        #[command(subcommand)]
        command: Option<BackupCommand>,
        /// The bundle to write (0600; an existing file is not overwritten).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Seal the bundle with ECIES to this secp256k1 public key (66 hex characters, as
        /// `keys export-public` prints it) instead of a backup password.
        #[arg(long, value_name = "PUBKEY", conflicts_with = "backup_password_file")]
        to: Option<String>,
        #[command(flatten)]
        backup_password: BackupPasswordArgs,
        #[command(flatten)]
        kdf: KdfArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Build a new home (keystore, config.toml, api-token, the node's catalog) from a
    /// backup bundle.
    #[command(
        after_help = "Examples:\n  datamesh --home ~/new-home keys restore keys.dmbackup --backup-password-file backup.pw\n  datamesh --home ~/new-home keys restore keys.dmbackup --identity-home ~/other   # sealed with --to"
    )]
    Restore {
        /// The bundle.
        file: PathBuf,
        #[command(flatten)]
        backup_password: BackupPasswordArgs,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        new_password: NewPasswordArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Shamir escrow of the master key: split it into shares, check them, recover with them.
    Escrow {
        #[command(subcommand)]
        command: EscrowCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
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
struct IdentityArgs {
    /// For a bundle sealed to a public key (`backup --to`): the recipient's home, whose
    /// keystore holds the matching private key [verify: default --home].
    #[arg(long, value_name = "DIR")]
    identity_home: Option<PathBuf>,
    /// The recipient keystore's password (first line of FILE) instead of a prompt.
    #[command(flatten)]
    password: PasswordArgs,
}

/// How the backup password is given.
#[derive(Debug, Args)]
struct BackupPasswordArgs {
    /// Read the backup password from the first line of FILE instead of prompting.
    #[arg(long, value_name = "FILE")]
    backup_password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum EscrowCommand {
    /// Split the master key into N shares, any K of which recover it (one 0600 file each).
    #[command(
        after_help = "Example:\n  datamesh keys escrow split --threshold 3 --shares 5 --out-dir ~/escrow\n\nSplitting again makes a new set; shares of an older set do not mix with it."
    )]
    Split {
        /// K: how many shares recover the key (at least 2).
        #[arg(long, value_name = "K")]
        threshold: u8,
        /// N: how many shares to make (at most 255).
        #[arg(long, value_name = "N")]
        shares: u8,
        /// Folder for the share files (created 0700 if missing; existing share files are
        /// never overwritten).
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Seal share i to the i-th contact's secp256k1 public key (give one per share, in
        /// order; `keys export-public` in the contact's home prints it).
        #[arg(long, value_name = "PUBKEY")]
        contact: Vec<String>,
        /// Do not store the network copy of the keystore even if the node is running.
        #[arg(long)]
        no_network_copy: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// The drill: check each share's checksum and that they combine to this keystore's
    /// master key, changing nothing.
    #[command(
        after_help = "Example:\n  datamesh keys escrow verify share-1.txt share-3.txt share-4.txt"
    )]
    Verify {
        /// Share files (K or more of one set).
        #[arg(required = true, value_name = "SHARE_FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Forgotten password, or the machine is gone: rebuild the master key from K shares
    /// and add a new password slot (into a new home: keystore from the network or a file).
    #[command(
        after_help = "Examples:\n  datamesh keys escrow recover s1.txt s3.txt s4.txt --new-password-file new.pw\n  datamesh --home ~/new keys escrow recover s1.txt s3.txt s4.txt --bootstrap /ip4/203.0.113.5/tcp/4001/p2p/12D3Koo...\n  datamesh --home ~/new keys escrow recover s1.txt s3.txt s4.txt --keystore ./keystore-copy\n\nWith a keystore in --home, that keystore gets the new password slot. Into a home without\none, the keystore comes from --keystore FILE or, with --bootstrap, from its network copy\n(the shares name its file id); the new home also gets config.toml (with those peers),\nan api-token and the node's catalog."
    )]
    Recover {
        /// Share files (K or more of one set).
        #[arg(required = true, value_name = "SHARE_FILE")]
        files: Vec<PathBuf>,
        /// A copy of the sealed keystore file (or of its network copy), for a new home.
        #[arg(long, value_name = "FILE")]
        keystore: Option<PathBuf>,
        /// A running node to join (multiaddr with /p2p/PEER_ID), to fetch the keystore's
        /// network copy for a new home; repeat for more. Written into the new config.toml.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        #[command(flatten)]
        new_password: NewPasswordArgs,
        #[command(flatten)]
        kdf: KdfArgs,
    },
    /// Open a share sealed to you (`escrow split --contact`) with your own home's keys;
    /// prints the plain share, or writes it to --out (0600).
    #[command(
        after_help = "Example:\n  datamesh keys escrow open-share dm-share-0b0a84d3-2-of-5.txt --out my-share.txt"
    )]
    OpenShare {
        /// The sealed share file.
        file: PathBuf,
        /// Write the plain share here (0600; never overwritten) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Debug, Subcommand)]
enum SlotCommand {
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
struct NewSlotArgs {
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    new_password: NewPasswordArgs,
    #[command(flatten)]
    kdf: KdfArgs,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the chain, and that the last key change sealed in the keystore is in the log.
    Verify(PasswordArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// Column names of [`key_row`].
pub(crate) const KEY_HEADER: [&str; 6] = [
    "NAME",
    "VERSION",
    "PURPOSE",
    "STATUS",
    "CREATED",
    "PUBLIC KEY",
];

/// A table row for a key version.
pub(crate) fn key_row(key: &KeyInfo, due: bool) -> Vec<String> {
    let status = if due {
        format!("{} (due)", key.status)
    } else {
        key.status.to_string()
    };
    vec![
        key.name.clone(),
        key.version.to_string(),
        format!("{} ({})", key.purpose, key.purpose.algorithm()),
        status,
        key.created.to_string(),
        key.public_key_hex(),
    ]
}

/// The JSON of a key version.
pub(crate) fn key_json(key: &KeyInfo) -> Value {
    let time = |t: Option<Timestamp>| t.map(|t| t.to_string());
    json!({
        "name": key.name,
        "purpose": key.purpose.as_str(),
        "algorithm": key.purpose.algorithm(),
        "version": key.version,
        "status": key.status.as_str(),
        "public_key": key.public_key_hex(),
        "key_id": key.key_id().map(|id| id.to_string()),
        "created": key.created.to_string(),
        "activated": time(key.activated),
        "deprecated": time(key.deprecated),
        "expires": time(key.expires),
        "revoked": time(key.revoked),
        "revoke_reason": key.revoke_reason,
        "destroyed": time(key.destroyed),
        "predecessor": key.predecessor,
        "successor": key.successor,
    })
}

/// Opens the keystore of the home (asking for the password only if there is one).
fn unlock(ctx: &Context, password: &PasswordArgs) -> anyhow::Result<Keystore> {
    if !Layout::new(&ctx.home).keystore().exists() {
        return Err(OpenError::NotInitialised {
            home: ctx.home.clone(),
        }
        .into());
    }
    let password = password.existing(&ctx.out)?;
    let started = Instant::now();
    let keystore = Keystore::open(&ctx.home, &password)?;
    ctx.out.detail(format_args!(
        "unlocked slot {} of {} in {:.2} s",
        keystore.unlocked_slot(),
        Layout::new(&ctx.home).keystore().display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(keystore)
}

pub(crate) fn run(ctx: &Context, args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Rewrap { id, all } => crate::cmd::files::rewrap(ctx, id.as_deref(), all),
        KeysCommand::List(password) => list(ctx, &unlock(ctx, &password)?, None),
        KeysCommand::Show { name, password } => list(ctx, &unlock(ctx, &password)?, Some(&name)),
        KeysCommand::Rotate { name, password } => rotate(ctx, &mut unlock(ctx, &password)?, &name),
        KeysCommand::Policy {
            interval_days,
            max_age_days,
            auto,
            password,
        } => {
            let mut keystore = unlock(ctx, &password)?;
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
            policy(ctx, &keystore);
            Ok(())
        }
        KeysCommand::Revoke {
            name,
            version,
            reason,
            password,
        } => revoke(ctx, &mut unlock(ctx, &password)?, &name, version, &reason),
        KeysCommand::Destroy {
            name,
            version,
            force,
            password,
        } => destroy(ctx, &mut unlock(ctx, &password)?, &name, version, force),
        KeysCommand::Passwd(args) => {
            let mut keystore = unlock(ctx, &args.password)?;
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
        KeysCommand::Slot { command } => slot(ctx, command),
        KeysCommand::Audit { command, last } => match command {
            None => audit_report(ctx, last),
            Some(AuditCommand::Verify(password)) => {
                let mut keystore = unlock(ctx, &password)?;
                let summary = keystore.verify_audit()?;
                if ctx.out.json() {
                    ctx.out
                        .json_value(&json!({ "intact": true, "lines": summary.lines }));
                } else {
                    ctx.out.result(format_args!(
                        "audit log intact: {} lines, chained, with the last key change in place",
                        summary.lines
                    ));
                }
                Ok(())
            }
        },
        KeysCommand::ExportPublic { name, password } => {
            let keystore = unlock(ctx, &password)?;
            let key = keystore.active(&name).ok_or_else(|| {
                if keystore.versions(&name).is_empty() {
                    ChangeError::NoSuchKey { name: name.clone() }
                } else {
                    ChangeError::NoActiveVersion { name: name.clone() }
                }
            })?;
            keystore.log(
                &AuditEvent::new(AuditOp::ExportPublic).with_key(&key.name, Some(key.version)),
            )?;
            if ctx.out.json() {
                ctx.out.json_value(&key_json(&key));
            } else {
                ctx.out.result(key.public_key_hex());
            }
            Ok(())
        }
        KeysCommand::Escrow { command } => escrow(ctx, command),
        KeysCommand::Backup {
            command:
                Some(BackupCommand::Verify {
                    file,
                    backup_password,
                    identity,
                }),
            ..
        } => verify_bundle(ctx, &file, &backup_password, &identity),
        KeysCommand::Backup {
            command: None,
            out,
            to,
            backup_password,
            kdf,
            password,
        } => make_bundle(ctx, out, to.as_deref(), &backup_password, &kdf, &password),
        KeysCommand::Restore {
            file,
            backup_password,
            identity,
            new_password,
            kdf,
        } => restore(ctx, &file, &backup_password, &identity, &new_password, &kdf),
        KeysCommand::ImportLegacy { dir, password } => {
            let mut keystore = unlock(ctx, &password)?;
            let report = keystore.import_legacy(&dir)?;
            if ctx.out.json() {
                ctx.out.json_value(&json!({
                    "imported": report.imported.iter().map(key_json).collect::<Vec<_>>(),
                    "already_present": report.already_present,
                    "removed": report.removed,
                }));
            } else {
                for key in &report.imported {
                    ctx.out
                        .result(format_args!("{} v{}", key.name, key.version));
                }
            }
            ctx.out.info(format_args!(
                "imported {} legacy key(s) (decrypt only), {} already present; overwrote and removed {} plaintext file(s)",
                report.imported.len(),
                report.already_present.len(),
                report.removed.len()
            ));
            Ok(())
        }
    }
}

fn list(ctx: &Context, keystore: &Keystore, name: Option<&str>) -> anyhow::Result<()> {
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
    let due = keystore.due(Timestamp::now());
    let is_due = |k: &KeyInfo| {
        due.iter()
            .any(|d| d.name == k.name && d.version == k.version)
    };
    if ctx.out.json() {
        ctx.out
            .json_value(&Value::Array(keys.iter().map(key_json).collect()));
    } else if name.is_some() {
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                ctx.out.result("");
            }
            show(ctx, key, is_due(key));
        }
    } else {
        let rows: Vec<Vec<String>> = keys.iter().map(|k| key_row(k, is_due(k))).collect();
        ctx.out.table(&KEY_HEADER, &rows);
    }
    Ok(())
}

fn show(ctx: &Context, key: &KeyInfo, due: bool) {
    let mut fields: Vec<(&str, String)> = vec![
        ("name", key.name.clone()),
        ("version", key.version.to_string()),
        (
            "purpose",
            format!("{} ({})", key.purpose, key.purpose.algorithm()),
        ),
        (
            "status",
            if due {
                format!("{} (due for rotation)", key.status)
            } else {
                key.status.to_string()
            },
        ),
        ("public key", key.public_key_hex()),
    ];
    if let Some(id) = key.key_id() {
        fields.push(("key id", id.to_string()));
    }
    fields.push(("created", key.created.to_string()));
    let optional = [
        ("activated", key.activated),
        ("deprecated", key.deprecated),
        ("expires", key.expires),
        ("revoked", key.revoked),
        ("destroyed", key.destroyed),
    ];
    for (label, time) in optional {
        if let Some(time) = time {
            fields.push((label, time.to_string()));
        }
    }
    if let Some(reason) = &key.revoke_reason {
        fields.push(("revoke reason", reason.clone()));
    }
    if let Some(v) = key.predecessor {
        fields.push(("predecessor", format!("v{v}")));
    }
    if let Some(v) = key.successor {
        fields.push(("successor", format!("v{v}")));
    }
    for (label, value) in fields {
        ctx.out
            .result(format_args!("{:<15}{value}", format!("{label}:")));
    }
}

fn rotate(ctx: &Context, keystore: &mut Keystore, name: &str) -> anyhow::Result<()> {
    let new = keystore.rotate(name)?;
    if ctx.out.json() {
        ctx.out.json_value(&key_json(&new));
    } else {
        ctx.out.table(&KEY_HEADER, &[key_row(&new, false)]);
    }
    if let Some(old) = new.predecessor {
        ctx.out.info(format_args!(
            "rotated {name}: v{} is active, v{old} is deprecated{}",
            new.version,
            if new.purpose == Purpose::FileEncryption {
                " and still decrypts"
            } else {
                " (the node's peer id changes at its next start)"
            }
        ));
    }
    Ok(())
}

fn policy(ctx: &Context, keystore: &Keystore) {
    let policy = keystore.policy();
    let due = keystore.due(Timestamp::now());
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "interval_days": policy.interval_days(),
            "max_age_days": policy.max_age_days(),
            "auto": policy.auto(),
            "due": due.iter().map(|d| json!({
                "name": d.name, "version": d.version, "reason": d.reason.as_str(),
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    ctx.out.result(format_args!(
        "interval: {} days\nmax age:  {} days\nauto:     {}",
        policy.interval_days(),
        policy.max_age_days(),
        if policy.auto() { "on" } else { "off" }
    ));
    for d in &due {
        ctx.out.result(format_args!(
            "due:      {} v{} ({})",
            d.name,
            d.version,
            d.reason.as_str()
        ));
    }
}

fn revoke(
    ctx: &Context,
    keystore: &mut Keystore,
    name: &str,
    version: u32,
    reason: &str,
) -> anyhow::Result<()> {
    let replacement = keystore.revoke(name, version, reason)?;
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

fn destroy(
    ctx: &Context,
    keystore: &mut Keystore,
    name: &str,
    version: u32,
    force: bool,
) -> anyhow::Result<()> {
    let info = keystore
        .versions(name)
        .into_iter()
        .find(|k| k.version == version);
    // A file-encryption version may be the last key that opens a file this node put:
    // ask the running node, which checks every file's envelopes for real.
    let still_needed = match info.filter(|k| k.purpose == Purpose::FileEncryption) {
        None => false,
        Some(k) => match crate::cmd::files::files_needing_only(ctx, &k.public_key) {
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

fn current_kdf(keystore: &Keystore) -> datamesh_keys::KdfParams {
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

fn slot(ctx: &Context, command: SlotCommand) -> anyhow::Result<()> {
    match command {
        SlotCommand::Add { label, args } => {
            let mut keystore = unlock(ctx, &args.password)?;
            let kdf = args
                .kdf
                .params(datamesh_keys::KdfParams::DEFAULT, &ctx.out)?
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
            let keystore = unlock(ctx, &password)?;
            let current = keystore.unlocked_slot();
            let slots = keystore.slots();
            let kind = |kind: &SlotKind| match kind {
                SlotKind::Password(kdf) => ("password".to_owned(), kdf.to_string()),
                SlotKind::Unknown(k) => (format!("unknown ({k})"), String::new()),
                _ => ("unknown".to_owned(), String::new()),
            };
            if ctx.out.json() {
                let list: Vec<Value> = slots
                    .iter()
                    .map(|s| {
                        let (kind, kdf) = kind(&s.kind);
                        json!({
                            "id": s.id, "kind": kind, "kdf": kdf, "label": s.label,
                            "created": s.created.to_string(), "current": s.id == current,
                        })
                    })
                    .collect();
                ctx.out.json_value(&Value::Array(list));
            } else {
                let rows: Vec<Vec<String>> = slots
                    .iter()
                    .map(|s| {
                        let (kind, kdf) = kind(&s.kind);
                        vec![
                            format!("{}{}", s.id, if s.id == current { " *" } else { "" }),
                            kind,
                            kdf,
                            s.created.to_string(),
                            s.label.clone(),
                        ]
                    })
                    .collect();
                ctx.out
                    .table(&["ID", "KIND", "KDF", "CREATED", "LABEL"], &rows);
            }
            Ok(())
        }
        SlotCommand::Remove { id, password } => {
            let mut keystore = unlock(ctx, &password)?;
            keystore.remove_slot(id)?;
            if ctx.out.json() {
                ctx.out.json_value(&json!({ "removed": id }));
            }
            ctx.out.info(format_args!("removed unlock slot {id}"));
            Ok(())
        }
    }
}

fn audit_report(ctx: &Context, last: usize) -> anyhow::Result<()> {
    let path = Layout::new(&ctx.home).audit_log();
    if !Layout::new(&ctx.home).keystore().exists() {
        return Err(OpenError::NotInitialised {
            home: ctx.home.clone(),
        }
        .into());
    }
    let report = datamesh_keys::report(&path, last)?;
    if ctx.out.json() {
        let counts: serde_json::Map<String, Value> = report
            .counts
            .iter()
            .map(|(op, c)| {
                (
                    op.clone(),
                    json!({ "ok": c.ok, "failed": c.failed, "warning": c.warning }),
                )
            })
            .collect();
        ctx.out.json_value(&json!({
            "path": path,
            "lines": report.lines,
            "chain": match &report.chain {
                Ok(_) => json!({ "intact": true }),
                Err(e) => json!({ "intact": false, "error": e }),
            },
            "counts": counts,
            "failures": report.failures,
            "last": report.last,
        }));
        return Ok(());
    }
    let chain = match &report.chain {
        Ok(_) => {
            "chain intact (run `keys audit verify` to check it against the keystore)".to_owned()
        }
        Err(e) => format!("CHAIN BROKEN: {e}"),
    };
    ctx.out.result(format_args!(
        "{}: {} lines, {chain}",
        path.display(),
        report.lines
    ));
    let rows: Vec<Vec<String>> = report
        .counts
        .iter()
        .map(|(op, c)| {
            vec![
                op.clone(),
                c.ok.to_string(),
                c.failed.to_string(),
                c.warning.to_string(),
            ]
        })
        .collect();
    ctx.out.result("");
    ctx.out
        .table(&["OPERATION", "OK", "FAILED", "WARNING"], &rows);
    let record_row = |r: &datamesh_keys::AuditRecord| {
        vec![
            r.seq.to_string(),
            r.time.clone(),
            r.op.clone(),
            match (&r.name, r.version) {
                (Some(n), Some(v)) => format!("{n} v{v}"),
                (Some(n), None) => n.clone(),
                _ => String::new(),
            },
            r.outcome.clone(),
            r.detail.clone().unwrap_or_default(),
        ]
    };
    let header = ["SEQ", "TIME", "OPERATION", "KEY", "OUTCOME", "DETAIL"];
    if !report.failures.is_empty() {
        ctx.out.result("");
        ctx.out.result("failures and warnings:");
        let rows: Vec<Vec<String>> = report.failures.iter().map(record_row).collect();
        ctx.out.table(&header, &rows);
    }
    ctx.out.result("");
    ctx.out.result(format_args!("last {}:", report.last.len()));
    let rows: Vec<Vec<String>> = report.last.iter().map(record_row).collect();
    ctx.out.table(&header, &rows);
    Ok(())
}

/// A share file larger than this is not a share (a share is about 300 bytes of text).
const MAX_SHARE_FILE: u64 = 64 * 1024;

/// The file name of share `index` of a set.
fn share_file_name(share: &Share) -> String {
    format!(
        "dm-share-{}-{}-of-{}.txt",
        share.set().short(),
        share.index(),
        share.shares()
    )
}

/// The comment lines above a share: which share it is, and where the keystore's network
/// copy is.
fn share_comments(share: &Share) -> String {
    let created = Timestamp::from_second(share.created())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut text = format!(
        "# DataMesh escrow share {} of {}: any {} shares of this set recover the keystore's master key.\n\
         # set {}, created {created}\n",
        share.index(),
        share.shares(),
        share.threshold(),
        share.set(),
    );
    if let Some(copy) = share.network_copy() {
        text.push_str(&format!(
            "# The keystore's network copy is file {} (its id is inside the share too):\n\
             # with K shares, `datamesh --home NEW keys escrow recover --bootstrap PEER SHARES...` rebuilds the home.\n",
            FileId::from_bytes(copy)
        ));
    }
    text
}

/// The text of a share file: comments a person can read, then the share.
fn share_file_text(share: &Share) -> zeroize::Zeroizing<String> {
    let mut text = zeroize::Zeroizing::new(share_comments(share));
    text.push_str(
        "# Keep it apart from the other shares. Check with `datamesh keys escrow verify`.\n",
    );
    text.push_str(&share.to_text());
    text.push('\n');
    text
}

/// The text of a share file sealed to a contact.
fn sealed_share_file_text(share: &Share, contact: &PublicKey) -> String {
    format!(
        "{}# Sealed to the contact key {} (key id {}): only that contact can open it, with\n\
         # `datamesh keys escrow open-share FILE` in their own home.\n{}\n",
        share_comments(share),
        contact,
        datamesh_core::KeyId::of(contact).short(),
        share.seal_to(contact)
    )
}

fn read_share_text(path: &std::path::Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read share file {}", path.display()))?
        .len();
    if len > MAX_SHARE_FILE {
        anyhow::bail!("{} is not a share file (too large)", path.display());
    }
    Ok(zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read share file {}", path.display()))?,
    ))
}

fn read_shares(files: &[PathBuf]) -> anyhow::Result<Vec<Share>> {
    files
        .iter()
        .map(|path| {
            let text = read_share_text(path)?;
            Share::from_text(&text).with_context(|| format!("share file {}", path.display()))
        })
        .collect()
}

fn parse_public_key(text: &str, what: &str) -> anyhow::Result<PublicKey> {
    text.trim().parse::<PublicKey>().map_err(|_| {
        anyhow::anyhow!(
            "{what} {text:?} is not a secp256k1 public key (66 hex characters, as `datamesh keys export-public` prints)"
        )
    })
}

fn escrow(ctx: &Context, command: EscrowCommand) -> anyhow::Result<()> {
    match command {
        EscrowCommand::Split {
            threshold,
            shares,
            out_dir,
            contact,
            no_network_copy,
            password,
        } => split(
            ctx,
            threshold,
            shares,
            &out_dir,
            &contact,
            no_network_copy,
            &password,
        ),
        EscrowCommand::Verify { files, password } => {
            let shares = read_shares(&files)?;
            let keystore = unlock(ctx, &password)?;
            let set = keystore.escrow_verify(&shares)?;
            if ctx.out.json() {
                ctx.out.json_value(
                    &json!({ "set": set.to_string(), "ok": true, "shares": shares.len() }),
                );
            } else {
                ctx.out.result(format_args!(
                    "ok: {} share(s) of set {set} combine to this keystore's master key",
                    shares.len()
                ));
            }
            Ok(())
        }
        EscrowCommand::Recover {
            files,
            keystore,
            bootstrap,
            new_password,
            kdf,
        } => {
            let shares = read_shares(&files)?;
            if Layout::new(&ctx.home).keystore().exists() {
                if keystore.is_some() || !bootstrap.is_empty() {
                    anyhow::bail!(
                        "{} already has a keystore: --keystore and --bootstrap rebuild a lost home into a new one (--home NEW); without them the shares add a password to this keystore",
                        ctx.home.display()
                    );
                }
                let kdf = kdf
                    .params(datamesh_keys::KdfParams::DEFAULT, &ctx.out)?
                    .unwrap_or_default();
                let new = new_password.get(&ctx.out)?;
                let keystore = Keystore::recover(&ctx.home, &shares, &new, kdf)?;
                let slot = keystore.unlocked_slot();
                if ctx.out.json() {
                    ctx.out.json_value(&json!({ "slot": slot }));
                } else {
                    ctx.out.result(slot);
                }
                ctx.out.info(format_args!(
                    "master key recovered; the new password opens unlock slot {slot} (consider `datamesh keys slot remove` for the forgotten one)"
                ));
                return Ok(());
            }
            recover_home(
                ctx,
                &shares,
                keystore.as_deref(),
                &bootstrap,
                &new_password,
                &kdf,
            )
        }
        EscrowCommand::OpenShare {
            file,
            out,
            password,
        } => {
            if let Some(out) = &out
                && out.exists()
            {
                anyhow::bail!("{} already exists; choose another --out", out.display());
            }
            let text = read_share_text(&file)?;
            let keystore = unlock(ctx, &password)?;
            let share = keystore
                .open_sealed_share(&text)
                .with_context(|| format!("sealed share file {}", file.display()))?;
            keystore.log(&AuditEvent::new(AuditOp::Escrow).with_detail(format!(
                "open-share: share {} of set {}",
                share.index(),
                share.set()
            )))?;
            let plain = share_file_text(&share);
            match &out {
                Some(out) => {
                    fsx::write_private_file(out, plain.as_bytes())
                        .with_context(|| format!("cannot write {}", out.display()))?;
                    ctx.out.info(format_args!(
                        "share {} of set {} written to {} (0600); keep it safe",
                        share.index(),
                        share.set(),
                        out.display()
                    ));
                }
                None => ctx.out.result(plain.trim_end()),
            }
            Ok(())
        }
    }
}

/// `escrow split`: the network copy first (when the node runs), then the shares.
fn split(
    ctx: &Context,
    threshold: u8,
    shares: u8,
    out_dir: &std::path::Path,
    contact: &[String],
    no_network_copy: bool,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let contacts: Vec<PublicKey> = contact
        .iter()
        .map(|c| parse_public_key(c, "--contact"))
        .collect::<anyhow::Result<_>>()?;
    if !contacts.is_empty() && contacts.len() != usize::from(shares) {
        anyhow::bail!(
            "give one --contact per share, in order: {} given for {shares} shares",
            contacts.len()
        );
    }
    let keystore = unlock(ctx, password)?;
    let node = if no_network_copy {
        None
    } else {
        recovery::running_node(&ctx.home)?
    };
    let copy = match &node {
        Some(client) => {
            let catalog = recovery::snapshot(&ctx.home)?;
            let bytes = keystore.network_copy(&catalog.bytes)?;
            let id = recovery::store_copy(client, bytes, &keystore.recovery_public_key())?;
            ctx.out.info(format_args!(
                "stored the keystore's network copy (with a catalog of {} file(s)) as file {id}",
                catalog.files
            ));
            Some(id)
        }
        None => {
            if !no_network_copy {
                ctx.out.warn(
                    "the node is not running, so no network copy of the keystore was stored: keep a copy of keys/keystore or a backup bundle, or split again with the node running",
                );
            }
            None
        }
    };
    let set = keystore.escrow_split_with_copy(threshold, shares, copy.map(|id| *id.as_bytes()))?;
    fsx::ensure_dir(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let paths: Vec<PathBuf> = set
        .iter()
        .map(|s| out_dir.join(share_file_name(s)))
        .collect();
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        anyhow::bail!("{} already exists; nothing written", existing.display());
    }
    for (i, (share, path)) in set.iter().zip(&paths).enumerate() {
        let written = match contacts.get(i) {
            Some(contact) => {
                fsx::write_private_file(path, sealed_share_file_text(share, contact).as_bytes())
            }
            None => fsx::write_private_file(path, share_file_text(share).as_bytes()),
        };
        written.with_context(|| format!("cannot write {}", path.display()))?;
    }
    let id = set.first().map(|s| s.set().to_string()).unwrap_or_default();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "set": id,
            "threshold": threshold,
            "shares": shares,
            "sealed_to_contacts": !contacts.is_empty(),
            "network_copy": copy.map(|c| c.to_string()),
            "files": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }));
    } else {
        for path in &paths {
            ctx.out.result(path.display());
        }
    }
    ctx.out.info(format_args!(
        "escrow set {id}: {shares} shares written (0600){}, any {threshold} recover the master key; give each to a different person or place",
        if contacts.is_empty() {
            ""
        } else {
            ", each sealed to its contact"
        }
    ));
    Ok(())
}

/// `escrow recover` into a home without a keystore: the machine is gone.
fn recover_home(
    ctx: &Context,
    shares: &[Share],
    keystore_file: Option<&std::path::Path>,
    bootstrap: &[String],
    new_password: &NewPasswordArgs,
    kdf: &KdfArgs,
) -> anyhow::Result<()> {
    // Combining first: too few, damaged or mixed shares fail before anything else.
    let key = Keystore::recovery_key(shares)?;
    let kdf = kdf
        .params(datamesh_keys::KdfParams::DEFAULT, &ctx.out)?
        .unwrap_or_default();
    let source = match keystore_file {
        Some(path) => {
            let len = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            if len > datamesh_keys::MAX_COPY_LEN {
                anyhow::bail!("{} is too large to be a keystore copy", path.display());
            }
            zeroize::Zeroizing::new(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
        }
        None => {
            let Some(copy) = shares.first().and_then(Share::network_copy) else {
                anyhow::bail!(
                    "these shares name no network copy of the keystore (the node was not running at the split): give --keystore FILE, a copy of keys/keystore"
                );
            };
            if bootstrap.is_empty() {
                anyhow::bail!(
                    "{} has no keystore: give --bootstrap MULTIADDR of a running node to fetch the keystore's network copy, or --keystore FILE",
                    ctx.home.display()
                );
            }
            let id = FileId::from_bytes(copy);
            ctx.out.info(format_args!(
                "fetching the keystore's network copy {id} ..."
            ));
            recovery::fetch_copy(ctx, bootstrap, id, &key)?
        }
    };
    drop(key);
    let new = new_password.get(&ctx.out)?;
    let (keystore, catalog) = Keystore::recover_into(&ctx.home, shares, &source, &new, kdf)?;
    recovery::write_config(&ctx.home, bootstrap)?;
    crate::cmd::init::write_home_files(&ctx.home)?;
    let files = match &catalog {
        Some(catalog) => recovery::restore(&ctx.home, catalog)?,
        None => 0,
    };
    let slot = keystore.unlocked_slot();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "home": ctx.home,
            "slot": slot,
            "keys": keystore.keys().iter().map(key_json).collect::<Vec<_>>(),
            "catalog_files": files,
        }));
    } else {
        let rows: Vec<Vec<String>> = keystore.keys().iter().map(|k| key_row(k, false)).collect();
        ctx.out.table(&KEY_HEADER, &rows);
    }
    ctx.out.info(format_args!(
        "rebuilt the home {} from the escrow shares: keystore (new password on slot {slot}), config.toml, api-token{}; start it with `datamesh --home {} node run`",
        ctx.home.display(),
        if catalog.is_some() {
            format!(", catalog of {files} file(s)")
        } else {
            String::new()
        },
        ctx.home.display()
    ));
    Ok(())
}

impl BackupPasswordArgs {
    /// The backup password from its file (first line), or asked for (twice if `new`).
    fn get(
        &self,
        new: bool,
        out: &crate::output::Output,
    ) -> anyhow::Result<datamesh_keys::Password> {
        match &self.backup_password_file {
            Some(path) => crate::password::from_file(path, out),
            None if new => crate::password::prompt_twice("Backup password: "),
            None => crate::password::prompt("Backup password: "),
        }
    }
}

fn read_bundle(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
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
    default_identity: Option<&std::path::Path>,
) -> anyhow::Result<OpenedBackup> {
    if !datamesh_keys::is_sealed_to_key(bytes) {
        return Ok(Keystore::verify_backup(
            bytes,
            BackupKey::Password(&backup_password.get(false, &ctx.out)?),
        )?);
    }
    let Some(home) = identity.identity_home.as_deref().or(default_identity) else {
        anyhow::bail!(
            "this backup bundle is sealed to a public key: give --identity-home DIR, the recipient's home"
        );
    };
    let identity_ctx = Context {
        home: home.to_owned(),
        out: ctx.out,
    };
    let recipient = unlock(&identity_ctx, &identity.password)?;
    Ok(Keystore::verify_backup(
        bytes,
        BackupKey::Recipient(&recipient),
    )?)
}

/// `keys backup --out FILE [--to PUBKEY]`.
fn make_bundle(
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
    let keystore = unlock(ctx, password)?;
    let catalog = recovery::snapshot(&ctx.home)?;
    let bytes = match &recipient {
        Some(key) => keystore.backup(BackupSeal::Recipient(key), &catalog.bytes)?,
        None => {
            let kdf = kdf
                .params(datamesh_keys::KdfParams::DEFAULT, &ctx.out)?
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
fn verify_bundle(
    ctx: &Context,
    file: &std::path::Path,
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
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "ok": true,
            "format_version": manifest.format_version,
            "created": created,
            "key_count": manifest.key_count,
            "catalog_files": files,
            "sealed_with": sealed,
            "content_blake3": data_encoding::HEXLOWER.encode(&manifest.content_blake3),
        }));
    } else {
        ctx.out.result(format_args!(
            "ok: backup bundle (format {}) of {} key version(s) and a catalog of {files} file(s), made {created}, {sealed}",
            manifest.format_version, manifest.key_count
        ));
    }
    Ok(())
}

/// `keys restore`: the keystore from the bundle (checked in full first), then the
/// config and API token a new home needs, as `datamesh init` writes them, and the node's
/// catalog.
fn restore(
    ctx: &Context,
    file: &std::path::Path,
    backup_password: &BackupPasswordArgs,
    identity: &IdentityArgs,
    new_password: &NewPasswordArgs,
    kdf: &KdfArgs,
) -> anyhow::Result<()> {
    let layout = Layout::new(&ctx.home);
    if layout.keystore().exists() {
        anyhow::bail!(datamesh_keys::CreateError::AlreadyExists {
            home: ctx.home.clone(),
        });
    }
    let bytes = read_bundle(file)?;
    // Check the bundle (and that its catalog decodes) before asking for anything else or
    // writing anything.
    let opened = open_bundle(ctx, &bytes, backup_password, identity, None)?;
    recovery::count(&opened.catalog)?;
    let catalog = opened.catalog.clone();
    let kdf = kdf
        .params(datamesh_keys::KdfParams::DEFAULT, &ctx.out)?
        .unwrap_or_default();
    let new = new_password.get(&ctx.out)?;
    let keystore = Keystore::restore(&ctx.home, opened, &new, kdf)?;
    crate::cmd::init::write_home_files(&ctx.home)?;
    let files = recovery::restore(&ctx.home, &catalog)?;
    let keys = keystore.keys();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "home": ctx.home,
            "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
            "catalog_files": files,
        }));
    } else {
        let rows: Vec<Vec<String>> = keys.iter().map(|k| key_row(k, false)).collect();
        ctx.out.table(&KEY_HEADER, &rows);
    }
    ctx.out.info(format_args!(
        "restored {} key version(s) and a catalog of {files} file(s) into the new home {}; it opens with the new password",
        keys.len(),
        ctx.home.display()
    ));
    Ok(())
}
