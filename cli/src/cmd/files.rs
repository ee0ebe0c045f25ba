//! The commands that talk to a running node through its API: `put`, `get`, `ls`,
//! `status` (with the files below full health at the node's last self-check), `peers`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use datamesh_api::{Client, Peer, RewrapReport, Status};
use datamesh_core::FileId;
use datamesh_core::Recipient;

use crate::Context;
use crate::home;

/// The node of this home is not running (no `node.json`); exit code 4.
#[derive(Debug, thiserror::Error)]
#[error(
    "the node of {home} is not running (no node.json): start it with `datamesh --home {home} node run`"
)]
pub(crate) struct NodeNotRunning {
    home: String,
}

/// A progress bar on stderr for `total` bytes (hidden unless [`Output::progress`]).
fn progress_bar(ctx: &Context, total: Option<u64>, verb: &str) -> indicatif::ProgressBar {
    if !ctx.out.progress() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_string());
    bar
}

/// The client of this home's running node.
pub(crate) fn client(ctx: &Context) -> anyhow::Result<Client> {
    home::client(&ctx.home)?.ok_or_else(|| {
        NodeNotRunning {
            home: ctx.home.display().to_string(),
        }
        .into()
    })
}

/// Arguments of `datamesh put`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  id=$(datamesh put report.pdf)\n  tar c dir | datamesh put - --name dir.tar\n  datamesh put notes.txt --to 02ab…(66 hex)"
)]
pub(crate) struct PutArgs {
    /// The file to store; `-` reads stdin.
    path: PathBuf,
    /// Name to record [default: the file's name].
    #[arg(long)]
    name: Option<String>,
    /// Also give this recipient access: a hybrid recipient (`dmpq1...`, from `datamesh
    /// keys export-public file-encryption-hybrid`) or a secp256k1 key (66 hex); repeat
    /// for more.
    #[arg(long = "to", value_name = "PUBKEY")]
    to: Vec<String>,
}

pub(crate) fn put(ctx: &Context, args: PutArgs) -> anyhow::Result<()> {
    let recipients = parse_keys(&args.to)?;
    let (reader, default_name, size): (Box<dyn Read + Send>, String, Option<u64>) =
        if args.path == Path::new("-") {
            (Box::new(io::stdin()), "stdin".into(), None)
        } else {
            let file = File::open(&args.path)
                .with_context(|| format!("cannot open {}", args.path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            let name = args
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unnamed".into());
            (Box::new(file), name, size)
        };
    let name = args.name.unwrap_or(default_name);
    let client = client(ctx)?;
    // The node's recipient policy first: a refusal is then its one-line message.
    client.check_recipients(&recipients)?;
    let bar = progress_bar(ctx, size, "put");
    let result = client.put(bar.wrap_read(reader), &name, &recipients);
    bar.finish_and_clear();
    let result = result?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!({
            "id": result.id,
            "name": name,
            "size": result.size,
            "stripes": result.stripes,
            "peers": result.peers,
            "manifest_copies": result.manifest_copies,
            "envelope_copies": result.envelope_copies,
        }));
    } else {
        ctx.out.result(&result.id);
        ctx.out.info(format_args!(
            "stored {name}: {} bytes in {} stripes on {} peers",
            result.size, result.stripes, result.peers
        ));
    }
    Ok(())
}

/// Arguments of `datamesh get`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  datamesh get dm1… -o report.pdf\n  datamesh get dm1… -o - | tar x"
)]
pub(crate) struct GetArgs {
    /// The file id (`dm1…`).
    id: String,
    /// Where to write; `-` for stdout [default: the stored name, in the current folder].
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
    /// Let revoked key versions open the file too (incident recovery: a file only a
    /// revoked version opens). Explicit and logged: the node writes it in the keystore's
    /// audit log.
    #[arg(long)]
    allow_revoked: bool,
}

/// A name that is safe to create in the current folder.
fn safe_name(stored: &str, id: &FileId) -> String {
    let base = Path::new(stored)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.is_empty() || base == "." || base == ".." {
        format!("datamesh-{}", id.short())
    } else {
        base
    }
}

pub(crate) fn get(ctx: &Context, args: GetArgs) -> anyhow::Result<()> {
    let id: FileId = args
        .id
        .parse()
        .with_context(|| format!("{} is not a valid file id", args.id))?;
    if let Some(path) = &args.output
        && path != Path::new("-")
        && path.exists()
        && !args.force
    {
        anyhow::bail!("{} exists: pass --force to replace it", path.display());
    }
    let client = client(ctx)?;
    if args.allow_revoked {
        ctx.out
            .warn("revoked keys may open this file (--allow-revoked; recorded in the audit log)");
    }
    let mut download = client.get_with(&id, args.allow_revoked)?;
    let bar = progress_bar(ctx, Some(download.size), "get");
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    if to_stdout {
        download.body = Box::new(bar.wrap_read(download.body));
        download.copy_to(&mut io::stdout().lock())?;
        return Ok(());
    }
    let target = args
        .output
        .unwrap_or_else(|| PathBuf::from(safe_name(&download.name, &id)));
    if target.exists() && !args.force {
        anyhow::bail!("{} exists: pass --force to replace it", target.display());
    }
    // Into a temp file beside the target, renamed only once complete: a failed get
    // leaves nothing behind.
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".datamesh-get-{}-{}",
        id.short(),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<u64> {
        let mut file =
            File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
        let copied = download.copy_to(&mut file)?;
        file.sync_all().context("cannot flush the file to disk")?;
        Ok(copied)
    })();
    bar.finish_and_clear();
    match result {
        Ok(bytes) => {
            std::fs::rename(&temp, &target)
                .with_context(|| format!("cannot move the file to {}", target.display()))?;
            if ctx.out.json() {
                ctx.out.json_value(&serde_json::json!({
                    "id": id.to_string(), "path": target, "size": bytes,
                }));
            } else {
                ctx.out
                    .info(format_args!("wrote {} ({bytes} bytes)", target.display()));
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

pub(crate) fn ls(ctx: &Context) -> anyhow::Result<()> {
    let files = client(ctx)?.list()?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&files)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            let when = jiff::Timestamp::from_second(f.created as i64)
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            vec![f.id.clone(), f.size.to_string(), when, f.name.clone()]
        })
        .collect();
    ctx.out.table(&["ID", "SIZE", "STORED", "NAME"], &rows);
    Ok(())
}

pub(crate) fn status(ctx: &Context) -> anyhow::Result<()> {
    let status = client(ctx)?.status()?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&status)?);
        return Ok(());
    }
    ctx.out.table(&["FIELD", "VALUE"], &status_rows(&status));
    for id in status.below_full_health.iter().flatten() {
        ctx.out.warn(format_args!(
            "below full health: {id} (run `datamesh check {id} --verify --repair`)"
        ));
    }
    Ok(())
}

/// One row per field of the status (but the list of files below full health, warned
/// about after the table), in the order of the field names.
fn status_rows(status: &Status) -> Vec<Vec<String>> {
    const NOT_CHECKED: &str = "not checked yet (see check_interval)";
    let last_check = status.last_self_check.map_or_else(
        || NOT_CHECKED.to_string(),
        |t| {
            i64::try_from(t)
                .ok()
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| t.to_string())
        },
    );
    let addresses = serde_json::to_string(&status.listen_addresses).unwrap_or_default();
    [
        ("bytes_stored", status.bytes_stored.to_string()),
        ("connected_peers", status.connected_peers.to_string()),
        (
            "files_below_full_health",
            status
                .files_below_full_health
                .map_or_else(|| NOT_CHECKED.to_string(), |n| n.to_string()),
        ),
        ("last_self_check", last_check),
        ("listen_addresses", addresses),
        ("peer_id", status.peer_id.clone()),
        ("quota_bytes", status.quota_bytes.to_string()),
        (
            "routing_table_peers",
            status.routing_table_peers.to_string(),
        ),
        ("shards", status.shards.to_string()),
    ]
    .into_iter()
    .map(|(field, value)| vec![field.to_string(), value])
    .collect()
}

pub(crate) fn peers(ctx: &Context) -> anyhow::Result<()> {
    let peers = client(ctx)?.peers()?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&peers)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p: &Peer| {
            vec![
                p.peer_id.clone(),
                if p.connected { "yes" } else { "no" }.to_string(),
                p.addresses.join(" "),
            ]
        })
        .collect();
    ctx.out.table(&["PEER", "CONNECTED", "ADDRESSES"], &rows);
    Ok(())
}

/// Arguments of `datamesh share`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  datamesh share dm1… --to dmpq1…(from the friend's `datamesh keys export-public file-encryption-hybrid`)"
)]
pub(crate) struct ShareArgs {
    /// The file id (`dm1…`), a file this node stored.
    id: String,
    /// The recipient to give access to: a hybrid recipient (`dmpq1...`) or a secp256k1
    /// key (66 hex); repeat for more.
    #[arg(long = "to", value_name = "PUBKEY", required = true)]
    to: Vec<String>,
}

/// `--to` values: hybrid recipients (`dmpq1...`, checksum checked) or secp256k1 keys.
fn parse_keys(keys: &[String]) -> anyhow::Result<Vec<Recipient>> {
    keys.iter()
        .map(|key| {
            key.parse::<Recipient>().map_err(|e| {
                let shown: String = key.trim().chars().take(24).collect();
                let more = if key.trim().chars().count() > 24 {
                    "..."
                } else {
                    ""
                };
                anyhow::anyhow!("--to {shown}{more}: {e}")
            })
        })
        .collect()
}

fn report_rewrap(ctx: &Context, report: &RewrapReport) -> anyhow::Result<()> {
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(report)?);
    } else {
        ctx.out.result(format_args!(
            "{}  envelope #{} to {} keys, on {} peers ({} bytes sent, no shard moved)",
            report.id, report.sequence, report.recipients, report.peers, report.bytes_sent,
        ));
    }
    Ok(())
}

pub(crate) fn share(ctx: &Context, args: ShareArgs) -> anyhow::Result<()> {
    let to = parse_keys(&args.to)?;
    let id: FileId = args
        .id
        .parse()
        .with_context(|| format!("{} is not a valid file id", args.id))?;
    let report = client(ctx)?.rewrap(&id, &to)?;
    report_rewrap(ctx, &report)
}

/// `datamesh keys rewrap [ID | --all] [--allow-revoked]`: moves files to the active
/// file-encryption key.
pub(crate) fn rewrap(
    ctx: &Context,
    id: Option<&str>,
    all: bool,
    allow_revoked: bool,
) -> anyhow::Result<()> {
    let client = client(ctx)?;
    if allow_revoked {
        ctx.out.warn(
            "revoked keys may open the current envelopes (--allow-revoked; recorded in the audit log)",
        );
    }
    match (id, all) {
        (Some(id), false) => {
            let id: FileId = id
                .parse()
                .with_context(|| format!("{id} is not a valid file id"))?;
            report_rewrap(ctx, &client.rewrap_with(&id, &[], allow_revoked)?)
        }
        (None, true) => {
            let result = client.rewrap_all(allow_revoked)?;
            if ctx.out.json() {
                ctx.out.json_value(&serde_json::to_value(&result)?);
            } else {
                for report in &result.rewrapped {
                    report_rewrap(ctx, report)?;
                }
                for f in &result.failed {
                    ctx.out.warn(format_args!("{}: {}", f.id, f.error));
                }
            }
            if result.failed.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} files could not be re-wrapped", result.failed.len())
            }
        }
        _ => anyhow::bail!("give a file id or --all"),
    }
}

/// The files of the running node that only the key with this id (classical or hybrid)
/// opens: destroying it would make them unreadable.
pub(crate) fn files_needing_only(
    ctx: &Context,
    key_id: datamesh_core::KeyId,
) -> anyhow::Result<Vec<String>> {
    let id = key_id.to_string();
    let usage = client(ctx)?.key_usage(false)?;
    Ok(usage
        .into_iter()
        .filter(|file| file.keys.is_empty() || (file.keys.len() == 1 && file.keys[0] == id))
        .map(|file| file.id)
        .collect())
}
