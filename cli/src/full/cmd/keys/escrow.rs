//! `keys escrow split|verify|recover|open-share`: Shamir shares of the master key, their
//! files, and rebuilding a lost home from them.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use datamesh_core::FileId;
use datamesh_core::ecies::PublicKey;
use datamesh_keys::{
    AuditEvent, AuditOp, DEFAULT_TPM_TCTI, KdfParams, Keystore, Layout, NewSlot, Share, Timestamp,
    fsx,
};
use serde_json::json;
use zeroize::Zeroizing;

use super::list::parse_public_key;
use super::recovery;
use super::slots::SlotKindArgs;
use crate::Context;
use crate::home;
use crate::password::{KdfArgs, NewPasswordArgs, PasswordArgs};
use crate::view::keys::{key_table, keys_json};

#[derive(Debug, Subcommand)]
pub(super) enum EscrowCommand {
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
        /// The new slot's kind (a password by default; under an unlock policy that
        /// forbids password-only unlock, one it allows).
        #[command(flatten)]
        slot: Box<SlotKindArgs>,
        /// The TPM of a --tpm slot, as a TCTI [default: device:/dev/tpmrm0].
        #[arg(long, env = "DATAMESH_TPM_TCTI", value_name = "TCTI")]
        tpm_tcti: Option<String>,
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
fn share_file_text(share: &Share) -> Zeroizing<String> {
    const KEEP: &str =
        "# Keep it apart from the other shares. Check with `datamesh keys escrow verify`.\n";
    let comments = share_comments(share);
    let value = share.to_text();
    // Reserved to the final length up front: no reallocation leaves a copy of the share.
    let mut text = Zeroizing::new(String::with_capacity(
        comments.len() + KEEP.len() + value.len() + 1,
    ));
    text.push_str(&comments);
    text.push_str(KEEP);
    text.push_str(&value);
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

fn read_share_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read share file {}", path.display()))?
        .len();
    if len > MAX_SHARE_FILE {
        anyhow::bail!("{} is not a share file (too large)", path.display());
    }
    // Sized up front (the file's length and one byte to see the end) so that reading
    // never reallocates, which would leave a copy of the share behind.
    let context = || format!("cannot read share file {}", path.display());
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(path).with_context(context)?,
            MAX_SHARE_FILE,
        ),
        &mut bytes,
    )
    .with_context(context)?;
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            anyhow::bail!("{} is not a share file (not text)", path.display())
        }
    }
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

/// `keys escrow ...`.
pub(super) fn run(ctx: &Context, command: EscrowCommand) -> anyhow::Result<()> {
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
            let keystore = home::unlock(&ctx.home, &password, &ctx.out)?;
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
            slot,
            tpm_tcti,
            new_password,
            kdf,
        } => {
            let shares = read_shares(&files)?;
            // Combined first: too few, damaged or mixed shares fail in one line, before
            // any warning about the new slot's parameters and before any slot is made.
            drop(Keystore::recovery_key(&shares)?);
            let kdf = kdf
                .params(KdfParams::DEFAULT, &ctx.out)?
                .unwrap_or_default();
            let tcti = tpm_tcti.unwrap_or_else(|| DEFAULT_TPM_TCTI.to_owned());
            if Layout::new(&ctx.home).keystore().exists() {
                if keystore.is_some() || !bootstrap.is_empty() {
                    anyhow::bail!(
                        "{} already has a keystore: --keystore and --bootstrap rebuild a lost home into a new one (--home NEW); without them the shares add a password to this keystore",
                        ctx.home.display()
                    );
                }
                let new =
                    slot.new_slot(tcti, None, kdf, || new_password.get(&ctx.out), &ctx.out)?;
                let keystore = Keystore::recover_with(&ctx.home, &shares, &new)
                    .inspect_err(|_| slot.forget_generated())?;
                let id = keystore.unlocked_slot();
                if ctx.out.json() {
                    ctx.out
                        .json_value(&json!({ "slot": id, "kind": new.kind_name() }));
                } else {
                    ctx.out.result(id);
                }
                ctx.out.info(format_args!(
                    "master key recovered; {} opens the new unlock slot {id} ({}) (consider `datamesh keys slot remove` for the lost one)",
                    slot.describe(&new),
                    new.kind_name()
                ));
                return Ok(());
            }
            let new = slot.new_slot(tcti, None, kdf, || new_password.get(&ctx.out), &ctx.out)?;
            recover_home(ctx, &shares, keystore.as_deref(), &bootstrap, &new)
                .inspect_err(|_| slot.forget_generated())
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
            let keystore = home::unlock(&ctx.home, &password, &ctx.out)?;
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
    out_dir: &Path,
    contact: &[String],
    no_network_copy: bool,
    password: &PasswordArgs,
) -> anyhow::Result<()> {
    let contacts = parse_contacts(contact, shares)?;
    let keystore = home::unlock(&ctx.home, password, &ctx.out)?;
    split_with(
        ctx,
        &keystore,
        threshold,
        shares,
        out_dir,
        &contacts,
        no_network_copy,
    )
}

/// The contacts' keys, one per share.
pub(super) fn parse_contacts(contact: &[String], shares: u8) -> anyhow::Result<Vec<PublicKey>> {
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
    Ok(contacts)
}

/// A new escrow set of an unlocked keystore: its network copy through the running node
/// (if any), then the share files.
pub(super) fn split_with(
    ctx: &Context,
    keystore: &Keystore,
    threshold: u8,
    shares: u8,
    out_dir: &Path,
    contacts: &[PublicKey],
    no_network_copy: bool,
) -> anyhow::Result<()> {
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
    keystore_file: Option<&Path>,
    bootstrap: &[String],
    new: &NewSlot,
) -> anyhow::Result<()> {
    // Combining first: too few, damaged or mixed shares fail before anything else.
    let key = Keystore::recovery_key(shares)?;
    let source = match keystore_file {
        Some(path) => {
            let len = std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            if len > datamesh_keys::MAX_COPY_LEN {
                anyhow::bail!("{} is too large to be a keystore copy", path.display());
            }
            Zeroizing::new(
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
    let (keystore, catalog) = Keystore::recover_into_with(&ctx.home, shares, &source, new)?;
    home::write_home_files(&ctx.home, bootstrap)?;
    let files = match &catalog {
        Some(catalog) => recovery::restore(&ctx.home, catalog)?,
        None => 0,
    };
    let slot = keystore.unlocked_slot();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "home": ctx.home,
            "slot": slot,
            "keys": keys_json(&keystore.keys()),
            "catalog_files": files,
        }));
    } else {
        key_table(&ctx.out, &keystore.keys());
    }
    ctx.out.info(format_args!(
        "rebuilt the home {} from the escrow shares: keystore (new {} slot {slot}), config.toml, api-token{}; start it with `datamesh --home {} node run`",
        ctx.home.display(),
        new.kind_name(),
        if catalog.is_some() {
            format!(", catalog of {files} file(s)")
        } else {
            String::new()
        },
        ctx.home.display()
    ));
    Ok(())
}
