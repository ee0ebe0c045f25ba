//! The commands that talk to a running node through its API: `put`, `get`, `ls`,
//! `status` (with the files below full health at the node's last self-check), `peers`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use datamesh_core::FileId;
use datamesh_core::ecies::PublicKey;
use datamesh_node::client::{Client, ClientError};

use crate::Context;
use crate::home;
use crate::home::{RunFile, run_file};

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
    let path = run_file(&ctx.home);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(NodeNotRunning {
                home: ctx.home.display().to_string(),
            }
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let run: RunFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; restart the node", path.display()))?;
    let token = std::fs::read_to_string(home::api_token(&ctx.home))
        .context("cannot read the API token of this home")?;
    Ok(Client::new(run.api, &token))
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
    /// Also give this secp256k1 public key (hex, from `datamesh keys export-public`)
    /// access; repeat for more.
    #[arg(long = "to", value_name = "PUBKEY")]
    to: Vec<String>,
}

pub(crate) fn put(ctx: &Context, args: PutArgs) -> anyhow::Result<()> {
    let mut recipients = Vec::new();
    for key in &args.to {
        recipients.push(key.parse::<PublicKey>().map_err(|_| {
            anyhow::anyhow!("--to {key}: not a secp256k1 public key (66 hex characters)")
        })?);
    }
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
    let download = client.get(&id)?;
    let expected = download.size;
    let bar = progress_bar(ctx, Some(expected), "get");
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    if to_stdout {
        let mut body = bar.wrap_read(download.body);
        let copied = io::copy(&mut body, &mut io::stdout().lock())
            .map_err(|e| ClientError::Interrupted(e.to_string()))?;
        if copied != expected {
            return Err(
                ClientError::Interrupted(format!("got {copied} of {expected} bytes")).into(),
            );
        }
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
        let mut body = download.body;
        let copied =
            io::copy(&mut body, &mut file).map_err(|e| ClientError::Interrupted(e.to_string()))?;
        if copied != expected {
            return Err(
                ClientError::Interrupted(format!("got {copied} of {expected} bytes")).into(),
            );
        }
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
        let rows: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({"id": f.id, "name": f.name, "size": f.size, "stripes": f.stripes, "created": f.created}))
            .collect();
        ctx.out.json_value(&serde_json::Value::Array(rows));
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
        ctx.out.json_value(&status);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = status
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "below_full_health")
                .map(|(k, v)| {
                    let value = match (k.as_str(), v) {
                        (
                            "files_below_full_health" | "last_self_check",
                            serde_json::Value::Null,
                        ) => "not checked yet (see check_interval)".to_string(),
                        ("last_self_check", serde_json::Value::Number(n)) => n
                            .as_i64()
                            .and_then(|t| jiff::Timestamp::from_second(t).ok())
                            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                            .unwrap_or_else(|| n.to_string()),
                        _ => v.to_string().trim_matches('"').to_string(),
                    };
                    vec![k.clone(), value]
                })
                .collect()
        })
        .unwrap_or_default();
    ctx.out.table(&["FIELD", "VALUE"], &rows);
    for id in status["below_full_health"].as_array().into_iter().flatten() {
        ctx.out.warn(format_args!(
            "below full health: {} (run `datamesh check {} --verify --repair`)",
            id.as_str().unwrap_or_default(),
            id.as_str().unwrap_or_default()
        ));
    }
    Ok(())
}

pub(crate) fn peers(ctx: &Context) -> anyhow::Result<()> {
    let peers = client(ctx)?.peers()?;
    if ctx.out.json() {
        ctx.out.json_value(&peers);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = peers
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    vec![
                        p["peer_id"].as_str().unwrap_or_default().to_string(),
                        if p["connected"].as_bool().unwrap_or(false) {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_string(),
                        p["addresses"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    ctx.out.table(&["PEER", "CONNECTED", "ADDRESSES"], &rows);
    Ok(())
}

/// Arguments of `datamesh share`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  datamesh share dm1… --to 02ab…(66 hex, from the friend's `datamesh keys export-public`)"
)]
pub(crate) struct ShareArgs {
    /// The file id (`dm1…`), a file this node stored.
    id: String,
    /// The public key to give access to; repeat for more.
    #[arg(long = "to", value_name = "PUBKEY", required = true)]
    to: Vec<String>,
}

fn parse_keys(keys: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    keys.iter()
        .map(|key| {
            key.parse::<PublicKey>().map_err(|_| {
                anyhow::anyhow!("--to {key}: not a secp256k1 public key (66 hex characters)")
            })
        })
        .collect()
}

fn report_rewrap(ctx: &Context, report: &serde_json::Value) {
    if ctx.out.json() {
        ctx.out.json_value(report);
    } else {
        ctx.out.result(format_args!(
            "{}  envelope #{} to {} keys, on {} peers ({} bytes sent, no shard moved)",
            report["id"].as_str().unwrap_or_default(),
            report["sequence"],
            report["recipients"],
            report["peers"],
            report["bytes_sent"],
        ));
    }
}

pub(crate) fn share(ctx: &Context, args: ShareArgs) -> anyhow::Result<()> {
    let to = parse_keys(&args.to)?;
    let id: FileId = args
        .id
        .parse()
        .with_context(|| format!("{} is not a valid file id", args.id))?;
    let report = client(ctx)?.rewrap(&id, &to)?;
    report_rewrap(ctx, &report);
    Ok(())
}

/// `datamesh keys rewrap [ID | --all]`: moves files to the active file-encryption key.
pub(crate) fn rewrap(ctx: &Context, id: Option<&str>, all: bool) -> anyhow::Result<()> {
    let client = client(ctx)?;
    match (id, all) {
        (Some(id), false) => {
            let id: FileId = id
                .parse()
                .with_context(|| format!("{id} is not a valid file id"))?;
            report_rewrap(ctx, &client.rewrap(&id, &[])?);
            Ok(())
        }
        (None, true) => {
            let result = client.rewrap_all()?;
            if ctx.out.json() {
                ctx.out.json_value(&result);
                return Ok(());
            }
            for report in result["rewrapped"].as_array().into_iter().flatten() {
                report_rewrap(ctx, report);
            }
            let failed = result["failed"].as_array().cloned().unwrap_or_default();
            for f in &failed {
                ctx.out.warn(format_args!(
                    "{}: {}",
                    f["id"].as_str().unwrap_or_default(),
                    f["error"].as_str().unwrap_or_default()
                ));
            }
            if failed.is_empty() {
                Ok(())
            } else {
                anyhow::bail!("{} files could not be re-wrapped", failed.len())
            }
        }
        _ => anyhow::bail!("give a file id or --all"),
    }
}

/// The files of the running node that only the key with this public key (compressed
/// SEC1) opens: destroying it would make them unreadable.
pub(crate) fn files_needing_only(ctx: &Context, public_key: &[u8]) -> anyhow::Result<Vec<String>> {
    let key = PublicKey::from_sec1_bytes(public_key)
        .map_err(|_| anyhow::anyhow!("the keystore holds an invalid public key"))?;
    let id = datamesh_core::KeyId::of(&key).to_string();
    let usage = client(ctx)?.key_usage()?;
    Ok(usage
        .into_iter()
        .filter(|(_, keys)| keys.is_empty() || (keys.len() == 1 && keys[0] == id))
        .map(|(file, _)| file)
        .collect())
}
