//! `datamesh keys ...`: inspect and manage the keystore. This module is the clap enum and
//! the dispatch; each family of commands has its own file, and how keys look on screen is
//! `crate::view::keys`.

mod audit;
mod backup;
mod compromised;
mod escrow;
mod legacy;
mod list;
mod recovery;
mod rekey;
mod rollback;
mod rotate;
mod slots;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use datamesh_keys::FILE_ENCRYPTION;

use crate::Context;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs};

use self::audit::AuditCommand;
use self::backup::{BackupCommand, BackupPasswordArgs, IdentityArgs, SignerArgs};
use self::escrow::EscrowCommand;
use self::rekey::RekeyArgs;
use self::rotate::OnOff;
use self::slots::{NewSlotArgs, SlotCommand, SlotKindArgs};

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
        /// Let revoked key versions open the current envelopes (incident recovery: files
        /// only a revoked version opens). Explicit and recorded in the audit log; the new
        /// envelopes are wrapped to the active key only.
        #[arg(long)]
        allow_revoked: bool,
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
    /// Show or set the rotation policy (and what is due now), or the unlock policy.
    #[command(
        after_help = "Examples:\n  datamesh keys policy --interval-days 30 --max-age-days 180 --auto on\n  datamesh keys policy --require pkcs11,tpm,password+keyfile   (no password-only unlock)\n  datamesh keys policy --no-unlock-policy"
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
        unlock: slots::UnlockPolicyArgs,
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
    /// Handle a stolen file-encryption key in one step: revoke it (rotating first if it
    /// is active), re-wrap every file of the catalog to the active key, destroy it, log
    /// it; with --reencrypt, also store every file it opened again under a fresh data key.
    /// Needs the running node; an interrupted run is finished by running it again.
    #[command(after_help = "Examples:
  datamesh keys compromised file-encryption 2
  datamesh keys compromised file-encryption 2 --reencrypt --json

Progress is kept in HOME/incident-NAME-vVERSION.json (0600). Without --reencrypt the
files keep their data keys: whoever holds the old key and an old envelope of a file
still reads it. With it, every file the key opened gets new shards and a new file id
(printed old -> new) and its old copies are released.")]
    Compromised {
        /// The key's name.
        name: String,
        /// The compromised version.
        version: u32,
        /// Also re-encrypt every file the version opened under a fresh data key.
        #[arg(long)]
        reencrypt: bool,
        /// Why (kept in the keystore and the audit log).
        #[arg(long, default_value = "compromised (keys compromised)")]
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
    /// Replace the master key: old escrow shares, network copies and old copies of the
    /// keystore file (with an old password) open nothing written from now on.
    #[command(
        after_help = "Examples:\n  datamesh keys rekey\n  datamesh keys rekey --keep-slot-password-file admin.pw --escrow-threshold 3 --escrow-shares 5 --escrow-out-dir ~/escrow\n\nThe slot you unlock with is re-wrapped; other slots are kept only with their password\n(--keep-slot-password-file), else dropped. Keys are not changed: files stay readable with\nthe key versions an old copy holds until you rotate and rewrap (or `keys compromised`)."
    )]
    Rekey(RekeyArgs),
    /// Accept the keystore file as it is now although it is older than the newest this
    /// home has seen (a deliberate restore of an older copy).
    #[command(
        after_help = "Example:\n  cp ~/safe/keystore ~/.local/share/datamesh/keys/keystore && datamesh keys accept-rollback"
    )]
    AcceptRollback(PasswordArgs),
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
        after_help = "Examples:\n  datamesh --home ~/new-home keys restore keys.dmbackup --from $(datamesh keys export-public node-identity) --backup-password-file backup.pw\n  datamesh --home ~/new-home keys restore keys.dmbackup --from 3f1c... --identity-home ~/other   # sealed with --to\n\nThe bundle must be signed by the --from key (the source home's node identity), or\n--trust-on-first-use accepts the signer it shows."
    )]
    Restore {
        /// The bundle.
        file: PathBuf,
        #[command(flatten)]
        backup_password: BackupPasswordArgs,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        signer: SignerArgs,
        /// The new home's first slot (a password by default).
        #[command(flatten)]
        slot: Box<SlotKindArgs>,
        /// Seal an unlock policy at once: only these slot kinds may unlock (e.g.
        /// `pkcs11,tpm,password+keyfile`: never a password alone). A bundle carries no
        /// policy.
        #[arg(long, value_name = "KINDS", value_delimiter = ',')]
        require: Vec<String>,
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

pub(crate) fn run(ctx: &Context, args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Rewrap {
            id,
            all,
            allow_revoked,
        } => crate::cmd::files::rewrap(ctx, id.as_deref(), all, allow_revoked),
        KeysCommand::List(password) => list::list(ctx, &password, None),
        KeysCommand::Show { name, password } => list::list(ctx, &password, Some(&name)),
        KeysCommand::Rotate { name, password } => rotate::rotate(ctx, &password, &name),
        KeysCommand::Policy {
            interval_days,
            max_age_days,
            auto,
            unlock,
            password,
        } => {
            if unlock.given() {
                slots::unlock_policy(ctx, &unlock, &password)
            } else {
                rotate::policy(ctx, interval_days, max_age_days, auto, &password)
            }
        }
        KeysCommand::Revoke {
            name,
            version,
            reason,
            password,
        } => rotate::revoke(ctx, &password, &name, version, &reason),
        KeysCommand::Destroy {
            name,
            version,
            force,
            password,
        } => rotate::destroy(ctx, &password, &name, version, force),
        KeysCommand::Compromised {
            name,
            version,
            reencrypt,
            reason,
            password,
        } => compromised::compromised(ctx, &password, &name, version, reencrypt, &reason),
        KeysCommand::Passwd(args) => slots::passwd(ctx, &args),
        KeysCommand::Rekey(args) => rekey::rekey(ctx, &args),
        KeysCommand::AcceptRollback(password) => rollback::accept(ctx, &password),
        KeysCommand::Slot { command } => slots::run(ctx, command),
        KeysCommand::Audit { command, last } => audit::run(ctx, command, last),
        KeysCommand::ExportPublic { name, password } => list::export_public(ctx, &name, &password),
        KeysCommand::ImportLegacy { dir, password } => legacy::import(ctx, &dir, &password),
        KeysCommand::Escrow { command } => escrow::run(ctx, command),
        KeysCommand::Backup {
            command:
                Some(BackupCommand::Verify {
                    file,
                    backup_password,
                    identity,
                }),
            ..
        } => backup::verify_bundle(ctx, &file, &backup_password, &identity),
        KeysCommand::Backup {
            command: None,
            out,
            to,
            backup_password,
            kdf,
            password,
        } => backup::make_bundle(ctx, out, to.as_deref(), &backup_password, &kdf, &password),
        KeysCommand::Restore {
            file,
            backup_password,
            identity,
            signer,
            slot,
            require,
            new_password,
            kdf,
        } => backup::restore(
            ctx,
            &file,
            &backup::RestoreArgs {
                backup_password: &backup_password,
                identity: &identity,
                signer: &signer,
                slot: &slot,
                require: &require,
                new_password: &new_password,
                kdf: &kdf,
            },
        ),
    }
}
