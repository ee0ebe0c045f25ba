//! The commands that talk to a running node through its API: `ls`, `status` (with the
//! files below full health at the node's last self-check), `peers`, `share`; `put` and
//! `get` are in `transfer`.

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
pub struct NodeNotRunning {
    home: String,
}

/// A progress bar on stderr for `total` bytes (hidden unless [`Output::progress`]).
pub(super) fn progress_bar(
    ctx: &Context,
    total: Option<u64>,
    verb: &str,
) -> indicatif::ProgressBar {
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
pub fn client(ctx: &Context) -> anyhow::Result<Client> {
    home::client(&ctx.home)?.ok_or_else(|| {
        NodeNotRunning {
            home: ctx.home.display().to_string(),
        }
        .into()
    })
}

pub fn ls(ctx: &Context) -> anyhow::Result<()> {
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

pub fn status(ctx: &Context) -> anyhow::Result<()> {
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

pub fn peers(ctx: &Context) -> anyhow::Result<()> {
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
pub struct ShareArgs {
    /// The file id (`dm1…`), a file this node stored.
    id: String,
    /// The recipient to give access to: a hybrid recipient (`dmpq1...`), a P-256
    /// recipient (`dmp256v1...`) or a secp256k1 key (66 hex); repeat for more.
    #[arg(long = "to", value_name = "PUBKEY", required = true)]
    to: Vec<String>,
}

/// `--to` values: hybrid (`dmpq1...`) or P-256 (`dmp256v1...`) recipients, checksums
/// checked, or secp256k1 keys.
pub fn parse_keys(keys: &[String]) -> anyhow::Result<Vec<Recipient>> {
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

pub fn share(ctx: &Context, args: ShareArgs) -> anyhow::Result<()> {
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
pub fn rewrap(
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
pub fn files_needing_only(
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
