//! `datamesh put` and `datamesh get`: one file or many in one command (one API
//! connection, one progress bar, a summary), pipes (`put -`, `get -o -`), byte ranges
//! (`get --range`), resumable gets (a partial file and its state, `crate::resume`) and
//! resumable puts of files of at least [`RESUMABLE_FROM`] bytes (a state in the home
//! naming the node's put session).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use datamesh_api::{Client, ClientError, Download, PutResult};
use datamesh_core::FileId;
use datamesh_core::Recipient;

use super::files::{client, progress_bar};
use crate::Context;
use crate::resume::{PutResume, ResumePaths, ResumeState};

/// Arguments of `datamesh put`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  id=$(datamesh put report.pdf)\n  datamesh put a.jpg b.jpg c.jpg --json\n  tar c dir | datamesh put - --name dir.tar\n  datamesh put notes.txt --to 02ab…(66 hex)"
)]
pub struct PutArgs {
    /// The files to store; `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Name to record [default: the file's name; `stdin` for `-`]. One file only.
    #[arg(long)]
    name: Option<String>,
    /// Also give this recipient access: a hybrid recipient (`dmpq1...`, from `datamesh
    /// keys export-public file-encryption-hybrid`), a P-256 recipient (`dmp256v1...`,
    /// the fips profile's) or a secp256k1 key (66 hex); repeat for more.
    #[arg(long = "to", value_name = "PUBKEY")]
    to: Vec<String>,
    /// Stop at the first file that fails (default: store the others, then fail).
    #[arg(long)]
    fail_fast: bool,
    /// Store folders: every file, and a directory object (names, modes, mtimes, links);
    /// prints one id per folder.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Cut each file into segments of SIZE: a power of two from 64KiB to 16MiB (`KiB`
    /// and `MiB` suffixes, or bytes) [default: 1MiB]. Larger segments put and get large
    /// files faster (fewer requests per byte); a range get then fetches whole segments.
    #[arg(long, value_name = "SIZE", value_parser = parse_segment_size)]
    segment_size: Option<u64>,
}

/// A `--segment-size`: bytes, or a number of `KiB` or `MiB`; a power of two from 64 KiB
/// to 16 MiB.
fn parse_segment_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => return Err(format!("{text}: give bytes, or a number of KiB or MiB")),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text}: give bytes, or a number of KiB or MiB"))?;
    datamesh_core::SegmentSize::new(bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Arguments of `datamesh get`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  datamesh get dm1… -o report.pdf\n  datamesh get dm1… -o - | tar x\n  datamesh get dm1… dm1… -o photos/\n  datamesh get dm1… --range 1048576-2097151 -o part.bin\n  datamesh get dm1… -o big.iso --resume"
)]
pub struct GetArgs {
    /// The file ids (`dm1…`).
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// Where to write; `-` for stdout (one id); an existing folder for several ids
    /// [default: the stored name, in the current folder].
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
    /// Only bytes START to END (inclusive; `START-` to the end): only the stripes that
    /// hold them are fetched, each segment authenticated. The whole file's checksum cannot
    /// be checked for a part. One id.
    #[arg(long, value_name = "START-END")]
    range: Option<String>,
    /// Continue an interrupted get into the same -o (also done without --resume when the
    /// interrupted get's files are there); fails if there is none.
    #[arg(long)]
    resume: bool,
    /// Stop at the first file that fails (default: get the others, then fail).
    #[arg(long)]
    fail_fast: bool,
    /// The id is a folder's (from `put -r`): restore it into -o DIR.
    #[arg(short = 'r', long)]
    recursive: bool,
}

/// Seconds since the Unix epoch of a file's modification time.
fn mtime_of(meta: &fs::Metadata) -> Option<u64> {
    meta.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Files at least this long are put resumably (smaller ones are quicker sent again).
pub(crate) const RESUMABLE_FROM: u64 = 4 << 20;

/// One input of a put.
struct Input {
    reader: Box<dyn Read + Send>,
    name: String,
    size: Option<u64>,
    mtime: Option<u64>,
    /// A regular file's metadata (of the open file).
    meta: Option<fs::Metadata>,
}

fn open_input(path: &Path, name: Option<&str>) -> anyhow::Result<Input> {
    if path == Path::new("-") {
        return Ok(Input {
            reader: Box::new(io::stdin()),
            name: name.unwrap_or("stdin").to_string(),
            size: None,
            mtime: None,
            meta: None,
        });
    }
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        !meta.is_dir(),
        "{} is a folder: give its files (folders are not stored yet)",
        path.display()
    );
    let default = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into());
    Ok(Input {
        reader: Box::new(file),
        name: name.map_or(default, str::to_string),
        size: Some(meta.len()),
        mtime: mtime_of(&meta),
        meta: meta.is_file().then_some(meta),
    })
}

/// Puts the open regular `file` at `path` under `(name, mtime)` (a folder's file),
/// resumably when it is large enough (see [`send_input`]).
pub(super) fn put_open_file(
    ctx: &Context,
    client: &Client,
    path: &Path,
    file: File,
    (name, mtime): (&str, u64),
    recipients: &[Recipient],
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<PutResult> {
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let input = Input {
        reader: Box::new(file),
        name: name.to_string(),
        size: Some(meta.len()),
        mtime: Some(mtime),
        meta: Some(meta),
    };
    send_input(ctx, client, path, input, recipients, bar)
}

/// Sends one input: resumably when it is a regular file of at least [`RESUMABLE_FROM`]
/// bytes (an interrupted put of it is continued; its state goes once it succeeded).
fn send_input(
    ctx: &Context,
    client: &Client,
    path: &Path,
    input: Input,
    recipients: &[Recipient],
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<PutResult> {
    let Input {
        reader,
        name,
        mtime,
        meta,
        ..
    } = input;
    let resumable = meta.filter(|m| m.len() >= RESUMABLE_FROM);
    let Some(meta) = resumable else {
        return client
            .put_with_mtime(bar.wrap_read(reader), &name, mtime, recipients)
            .map_err(|e| put_failed(path, e));
    };
    let state = PutResume::begin(
        &crate::home::put_resume_dir(&ctx.home),
        path,
        &meta,
        client.segment_size(),
    )?;
    // Said on the progress bar only: a failing command's stderr is its one error line,
    // and a finished resume says what it skipped ("resumed: N of M stripes ...").
    if state.resumed {
        bar.set_message("put (resuming)");
    }
    let result = client.put_resumable(
        bar.wrap_read(reader),
        &name,
        mtime,
        recipients,
        &state.state.session,
    );
    match result {
        Ok(result) => {
            let _ = fs::remove_file(&state.path);
            Ok(result)
        }
        // The node found the file different from the interrupted put's and dropped it.
        Err(
            e @ ClientError::Api {
                kind: datamesh_api::ErrorKind::Input,
                ..
            },
        ) if e.to_string().contains("source changed") => {
            let _ = fs::remove_file(&state.path);
            Err(anyhow::Error::new(e).context(format!("put {}", path.display())))
        }
        Err(e) => Err(put_failed(path, e).context(format!(
            "{} interrupted: run the same put again to continue it",
            path.display()
        ))),
    }
}

fn put_json(name: &str, result: &PutResult) -> serde_json::Value {
    serde_json::json!({
        "id": result.id,
        "name": name,
        "size": result.size,
        "stripes": result.stripes,
        "peers": result.peers,
        "manifest_copies": result.manifest_copies,
        "envelope_copies": result.envelope_copies,
        "resumed_stripes": result.resumed_stripes,
    })
}

pub(crate) fn put(ctx: &Context, args: PutArgs) -> anyhow::Result<()> {
    let recipients = super::files::parse_keys(&args.to)?;
    anyhow::ensure!(
        args.name.is_none() || args.paths.len() == 1,
        "--name names one file: give one path with it"
    );
    anyhow::ensure!(
        args.paths.iter().filter(|p| *p == Path::new("-")).count() <= 1,
        "stdin (`-`) can be read only once"
    );
    // The default given explicitly is the default: a put interrupted without the option
    // continues with it, and the other way round.
    let default = datamesh_core::SegmentSize::DEFAULT.bytes() as u64;
    let segment_size = args.segment_size.filter(|&bytes| bytes != default);
    let mut client = client(ctx)?.with_segment_size(segment_size);
    // Asked before a body is streamed: a refused put would only show as a broken pipe.
    // One small file needs no question first: the node reads its body whole before it
    // answers, so a refusal comes as the answer (one round trip fewer per `put`). Nor
    // does it need the client's large buffers.
    if read_whole_by_the_node(&args) {
        client = client.for_small_transfers();
    } else {
        client.check_recipients(&recipients)?;
    }
    if args.recursive {
        return put_trees(ctx, &client, &args, &recipients);
    }
    if let [path] = &args.paths[..] {
        return put_one(ctx, &client, path, args.name.as_deref(), &recipients);
    }
    put_many(ctx, &client, &args, &recipients)
}

/// Whether the put is one regular file the node reads whole before it answers
/// ([`datamesh_api::PUT_READ_WHOLE`]). A file that grows meanwhile is still put; a refusal
/// of it may then show as a broken connection rather than the node's reason.
fn read_whole_by_the_node(args: &PutArgs) -> bool {
    match &args.paths[..] {
        [path] if !args.recursive && path != Path::new("-") => fs::metadata(path)
            .is_ok_and(|m| m.is_file() && m.len() <= datamesh_api::PUT_READ_WHOLE as u64),
        _ => false,
    }
}

/// `put PATH`: the output of one file, as before several were possible.
fn put_one(
    ctx: &Context,
    client: &Client,
    path: &Path,
    name: Option<&str>,
    recipients: &[Recipient],
) -> anyhow::Result<()> {
    let input = open_input(path, name)?;
    let bar = progress_bar(ctx, input.size, "put");
    let name = input.name.clone();
    let result = send_input(ctx, client, path, input, recipients, &bar);
    bar.finish_and_clear();
    let result = result?;
    if ctx.out.json() {
        ctx.out.json_value(&put_json(&name, &result));
    } else {
        ctx.out.result(&result.id);
        ctx.out.info(format_args!(
            "stored {name}: {} bytes in {} stripes on {} peers",
            result.size, result.stripes, result.peers
        ));
        if result.resumed_stripes > 0 {
            ctx.out.info(format_args!(
                "resumed: {} of {} stripes were placed already and not sent again",
                result.resumed_stripes, result.stripes
            ));
        }
    }
    Ok(())
}

/// A failed put of `path`: reading stdin or the file, or the node's refusal.
fn put_failed(path: &Path, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Unreachable { .. } | ClientError::Api { .. } => e.into(),
        other => anyhow::Error::new(other).context(format!("put {}", path.display())),
    }
}

fn put_many(
    ctx: &Context,
    client: &Client,
    args: &PutArgs,
    recipients: &[Recipient],
) -> anyhow::Result<()> {
    let total = args
        .paths
        .iter()
        .map(|p| fs::metadata(p).ok().map(|m| m.len()))
        .sum::<Option<u64>>();
    let bar = progress_bar(ctx, total, "put");
    let mut results = Vec::new();
    let (mut failed, mut bytes) = (0usize, 0u64);
    for (n, path) in args.paths.iter().enumerate() {
        bar.set_message(format!("put {}/{}", n + 1, args.paths.len()));
        let outcome = open_input(path, None).and_then(|input| {
            let name = input.name.clone();
            send_input(ctx, client, path, input, recipients, &bar).map(|r| (name, r))
        });
        match outcome {
            Ok((name, result)) => {
                bytes += result.size;
                let mut json = put_json(&name, &result);
                json["path"] = serde_json::json!(path);
                if !ctx.out.json() {
                    bar.suspend(|| {
                        ctx.out
                            .result(format_args!("{}  {}", result.id, path.display()))
                    });
                }
                results.push(json);
            }
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}").replace(['\n', '\r'], " ");
                if !ctx.out.json() {
                    bar.suspend(|| ctx.out.warn(format_args!("{}: {message}", path.display())));
                }
                results.push(serde_json::json!({"path": path, "error": message}));
                if args.fail_fast {
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    summarize(ctx, "stored", &results, failed, args.paths.len(), bytes)
}

/// `put -r DIR...`: one id per folder.
fn put_trees(
    ctx: &Context,
    client: &Client,
    args: &PutArgs,
    recipients: &[Recipient],
) -> anyhow::Result<()> {
    anyhow::ensure!(args.name.is_none(), "--name names one file, not a folder");
    for path in &args.paths {
        let tree = super::tree::put_tree(ctx, client, path, recipients)?;
        if ctx.out.json() {
            ctx.out.json_value(&serde_json::json!({
                "id": tree.id, "path": path, "entries": tree.entries,
                "files_stored": tree.stored, "bytes": tree.bytes,
            }));
        } else {
            ctx.out.result(&tree.id);
            ctx.out.info(format_args!(
                "stored {}: {} entries, {} distinct files, {} bytes",
                path.display(),
                tree.entries,
                tree.stored,
                tree.bytes
            ));
        }
    }
    Ok(())
}

/// The summary of a command on many files; an error when any failed.
fn summarize(
    ctx: &Context,
    verb: &str,
    results: &[serde_json::Value],
    failed: usize,
    asked: usize,
    bytes: u64,
) -> anyhow::Result<()> {
    let done = results.len() - failed;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!(results));
    } else {
        ctx.out.info(format_args!(
            "{verb} {done} of {asked} files ({bytes} bytes)"
        ));
    }
    let skipped = asked - results.len();
    match (failed, skipped) {
        (0, _) => Ok(()),
        (f, 0) => anyhow::bail!("{f} of {asked} files failed"),
        (f, s) => anyhow::bail!("{f} of {asked} files failed, {s} not tried (--fail-fast)"),
    }
}

/// `--range START-END` (END inclusive) or `START-`.
fn parse_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let bad = || anyhow::anyhow!("--range {text}: use START-END (bytes, END inclusive) or START-");
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = match end.trim() {
        "" => u64::MAX,
        end => end.parse().map_err(|_| bad())?,
    };
    anyhow::ensure!(start <= end, "--range {text}: START is after END");
    Ok((start, end))
}

/// A name that is safe to create in a folder.
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

fn parse_id(text: &str) -> anyhow::Result<FileId> {
    text.parse()
        .with_context(|| format!("{text} is not a valid file id"))
}

/// Where one get writes.
enum Target {
    Stdout,
    /// This path.
    File(PathBuf),
    /// The stored name, in this folder.
    InFolder(PathBuf),
}

/// What one get wrote.
struct Got {
    path: Option<PathBuf>,
    bytes: u64,
    resumed_from: u64,
}

pub(crate) fn get(ctx: &Context, args: GetArgs) -> anyhow::Result<()> {
    if args.recursive {
        return get_tree(ctx, &args);
    }
    let range = args.range.as_deref().map(parse_range).transpose()?;
    let many = args.ids.len() > 1;
    let target = match args.output.as_deref() {
        Some(p) if p == Path::new("-") => {
            anyhow::ensure!(!many, "-o - writes one file: give one id");
            anyhow::ensure!(
                !args.resume,
                "--resume needs a file to continue, not stdout"
            );
            Target::Stdout
        }
        Some(p) if many => {
            anyhow::ensure!(
                p.is_dir(),
                "{}: with several ids, -o must be an existing folder",
                p.display()
            );
            Target::InFolder(p.to_path_buf())
        }
        Some(p) if p.is_dir() && !p.as_os_str().is_empty() => Target::InFolder(p.to_path_buf()),
        Some(p) => Target::File(p.to_path_buf()),
        None => Target::InFolder(PathBuf::from(".")),
    };
    anyhow::ensure!(
        range.is_none() || !many,
        "--range reads part of one file: give one id"
    );
    anyhow::ensure!(
        range.is_none() || !args.resume,
        "--range and --resume do not go together"
    );
    let client = client(ctx)?;
    if args.allow_revoked {
        ctx.out
            .warn("revoked keys may open this file (--allow-revoked; recorded in the audit log)");
    }
    if !many {
        let id = parse_id(&args.ids[0])?;
        let bar = progress_bar(ctx, None, "get");
        let got = get_one(&client, &id, &target, &args, range, &bar);
        bar.finish_and_clear();
        let got = got?;
        report_got(ctx, &id, &got);
        return Ok(());
    }
    let bar = progress_bar(ctx, None, "get");
    let mut results = Vec::new();
    let (mut failed, mut bytes) = (0usize, 0u64);
    for (n, text) in args.ids.iter().enumerate() {
        bar.set_message(format!("get {}/{}", n + 1, args.ids.len()));
        let got = parse_id(text)
            .and_then(|id| get_one(&client, &id, &target, &args, None, &bar).map(|got| (id, got)));
        match got {
            Ok((id, got)) => {
                bytes += got.bytes;
                results.push(serde_json::json!({
                    "id": id.to_string(), "path": got.path, "size": got.bytes,
                }));
                if !ctx.out.json() {
                    bar.suspend(|| report_got(ctx, &id, &got));
                }
            }
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}").replace(['\n', '\r'], " ");
                if !ctx.out.json() {
                    bar.suspend(|| ctx.out.warn(format_args!("{text}: {message}")));
                }
                results.push(serde_json::json!({"id": text, "error": message}));
                if args.fail_fast {
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    summarize(ctx, "got", &results, failed, args.ids.len(), bytes)
}

/// `get -r ID -o DIR`.
fn get_tree(ctx: &Context, args: &GetArgs) -> anyhow::Result<()> {
    let ([text], Some(out)) = (&args.ids[..], &args.output) else {
        anyhow::bail!("get -r restores one folder: give one id and -o DIR");
    };
    anyhow::ensure!(
        args.range.is_none() && !args.resume && out != Path::new("-"),
        "get -r writes a folder: no --range, --resume or -o -"
    );
    let id = parse_id(text)?;
    let client = client(ctx)?;
    let got = super::tree::get_tree(ctx, &client, &id, out, args.force, args.allow_revoked)?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!({
            "id": id.to_string(), "path": out, "entries": got.entries, "bytes": got.bytes,
        }));
    } else {
        ctx.out.info(format_args!(
            "restored {} entries ({} bytes) into {}",
            got.entries,
            got.bytes,
            out.display()
        ));
    }
    Ok(())
}

/// Gets a whole file into `path` (which must not exist), through a temp name; the bytes.
pub(super) fn get_file_to(
    client: &Client,
    id: &FileId,
    path: &Path,
    allow_revoked: bool,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    if let Some(state) = pending_resume(id, path)? {
        return resume(client, id, path, state, allow_revoked, bar).map(|g| g.bytes);
    }
    let download = client.get_with(id, allow_revoked)?;
    fresh(id, path, download, bar).map(|g| g.bytes)
}

fn report_got(ctx: &Context, id: &FileId, got: &Got) {
    let Some(path) = &got.path else { return };
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::json!({
            "id": id.to_string(), "path": path, "size": got.bytes,
        }));
    } else if got.resumed_from > 0 {
        ctx.out.info(format_args!(
            "wrote {} ({} bytes, resumed after {} bytes)",
            path.display(),
            got.bytes,
            got.resumed_from
        ));
    } else {
        ctx.out.info(format_args!(
            "wrote {} ({} bytes)",
            path.display(),
            got.bytes
        ));
    }
}

/// Gets one file (or its range) into `target`.
fn get_one(
    client: &Client,
    id: &FileId,
    target: &Target,
    args: &GetArgs,
    range: Option<(u64, u64)>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Got> {
    let path = match target {
        Target::Stdout => {
            let download = client.get_range(id, args.allow_revoked, range)?;
            bar.set_length(download.size);
            let mut out = io::stdout().lock();
            let bytes = copy_exact(download, bar, &mut out, Path::new("stdout"))?;
            out.flush().context("cannot write to stdout")?;
            return Ok(Got {
                path: None,
                bytes,
                resumed_from: 0,
            });
        }
        Target::File(path) => Some(path.clone()),
        Target::InFolder(_) => None,
    };
    if let Some(path) = &path {
        refuse_existing(path, args.force)?;
    }
    // A known target: resume what an interrupted get left there.
    let state = match &path {
        Some(path) => pending_resume(id, path)?,
        None => None,
    };
    if args.resume && state.is_none() && path.is_some() {
        anyhow::bail!(
            "nothing to resume for {}: no interrupted get of it",
            path.as_deref().unwrap_or(Path::new(".")).display()
        );
    }
    if let (Some(path), Some(state)) = (&path, state) {
        bar.set_length(state.1.size);
        return resume(client, id, path, state, args.allow_revoked, bar);
    }
    let download = client.get_range(id, args.allow_revoked, range)?;
    let path = match (path, target) {
        (Some(p), _) => p,
        (None, Target::InFolder(dir)) => {
            let path = dir.join(safe_name(&download.name, id));
            refuse_existing(&path, args.force)?;
            if let Some(state) = pending_resume(id, &path)? {
                drop(download);
                bar.set_length(state.1.size);
                return resume(client, id, &path, state, args.allow_revoked, bar);
            }
            if args.resume {
                anyhow::bail!(
                    "nothing to resume for {}: no interrupted get of it",
                    path.display()
                );
            }
            path
        }
        (None, _) => anyhow::bail!("no output path"),
    };
    bar.set_length(download.size);
    if range.is_some() {
        return write_range(download, &path, bar);
    }
    fresh(id, &path, download, bar)
}

fn refuse_existing(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && fs::symlink_metadata(path).is_ok() {
        anyhow::bail!("{} exists: pass --force to replace it", path.display());
    }
    Ok(())
}

/// The state of an interrupted get into `path`, if it is one of `id`.
fn pending_resume(id: &FileId, path: &Path) -> anyhow::Result<Option<(ResumePaths, ResumeState)>> {
    let paths = ResumePaths::of(path);
    let Some(state) = ResumeState::read(&paths.state)? else {
        return Ok(None);
    };
    state.check_for(id, &paths.state)?;
    Ok(Some((paths, state)))
}

/// Copies exactly `download.size` bytes to `out`: a short body is an interrupted
/// transfer, a write error names `path`.
fn copy_exact(
    download: Download,
    bar: &indicatif::ProgressBar,
    out: &mut impl Write,
    path: &Path,
) -> anyhow::Result<u64> {
    let expected = download.size;
    let mut body = download.body;
    let mut buf = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ClientError::Interrupted(format!(
                    "got {copied} of {expected} bytes: {e}"
                ))
                .into());
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| write_error(path, &e))?;
        copied += n as u64;
        bar.inc(n as u64);
    }
    if copied != expected {
        return Err(ClientError::Interrupted(format!("got {copied} of {expected} bytes")).into());
    }
    Ok(copied)
}

fn write_error(path: &Path, e: &io::Error) -> anyhow::Error {
    match e.kind() {
        io::ErrorKind::BrokenPipe => anyhow::anyhow!(
            "cannot write to {}: the reading end of the pipe was closed",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    }
}

/// Sets `path`'s modification time (best effort: the bytes are what matter).
fn set_mtime(path: &Path, mtime: Option<u64>) {
    if let (Some(t), Ok(file)) = (mtime, File::options().write(true).open(path)) {
        let _ = file.set_modified(UNIX_EPOCH + Duration::from_secs(t));
    }
}

/// A range, into a temp name renamed once complete.
fn write_range(
    download: Download,
    path: &Path,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Got> {
    let paths = ResumePaths::of(path);
    let result = write_part(&paths, download, bar, path);
    match result {
        Ok(bytes) => {
            fs::rename(&paths.part, path)
                .with_context(|| format!("cannot move the file to {}", path.display()))?;
            Ok(Got {
                path: Some(path.to_path_buf()),
                bytes,
                resumed_from: 0,
            })
        }
        Err(e) => {
            let _ = fs::remove_file(&paths.part);
            Err(e)
        }
    }
}

/// Writes `download` into the partial file of `path` and flushes it; the byte count.
fn write_part(
    paths: &ResumePaths,
    download: Download,
    bar: &indicatif::ProgressBar,
    path: &Path,
) -> anyhow::Result<u64> {
    let mut file = File::create(&paths.part)
        .with_context(|| format!("cannot create {}", paths.part.display()))?;
    let bytes = copy_exact(download, bar, &mut file, path)?;
    file.sync_all().map_err(|e| write_error(path, &e))?;
    Ok(bytes)
}

/// A whole file, from its first byte: the state is written first, then the partial file;
/// renamed into place once the node verified the whole file. An interrupted transfer
/// keeps them for a resume when a whole segment arrived, and removes them otherwise.
fn fresh(
    id: &FileId,
    path: &Path,
    download: Download,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Got> {
    let paths = ResumePaths::of(path);
    let state = match (download.blake3, download.segment_size) {
        (Some(hash), Some(segment)) => {
            let state = ResumeState::new(id, download.size, segment, &hash, download.mtime);
            state.write(&paths.state)?;
            Some(state)
        }
        _ => None,
    };
    let mtime = download.mtime;
    let result = write_part(&paths, download, bar, path);
    match result {
        Ok(bytes) => {
            finish(&paths, path, mtime)?;
            Ok(Got {
                path: Some(path.to_path_buf()),
                bytes,
                resumed_from: 0,
            })
        }
        Err(e) => Err(interrupted(&paths, state.as_ref(), path, e)),
    }
}

/// Renames the verified partial file into place and drops the state.
fn finish(paths: &ResumePaths, path: &Path, mtime: Option<u64>) -> anyhow::Result<()> {
    set_mtime(&paths.part, mtime);
    fs::rename(&paths.part, path)
        .with_context(|| format!("cannot move the file to {}", path.display()))?;
    let _ = fs::remove_file(&paths.state);
    Ok(())
}

/// After a failed transfer: keeps the partial file when a resume would keep some of it
/// (and says how to go on), removes it otherwise.
fn interrupted(
    paths: &ResumePaths,
    state: Option<&ResumeState>,
    path: &Path,
    e: anyhow::Error,
) -> anyhow::Error {
    let have = fs::metadata(&paths.part).map_or(0, |m| m.len());
    match state {
        Some(state) if state.kept(have) > 0 => e.context(format!(
            "{} interrupted after {} bytes: run the same get again (or add --resume) to continue",
            path.display(),
            state.kept(have)
        )),
        _ => {
            paths.remove();
            e
        }
    }
}

/// Continues an interrupted get: keeps the partial file's whole segments, fetches the
/// rest as a range, checks the whole file's BLAKE3, renames it into place.
fn resume(
    client: &Client,
    id: &FileId,
    path: &Path,
    (paths, state): (ResumePaths, ResumeState),
    allow_revoked: bool,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Got> {
    let expected = state
        .blake3_bytes()
        .context("resume state without a checksum")?;
    let have = fs::metadata(&paths.part).map_or(0, |m| m.len());
    let kept = state.kept(have);
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&paths.part)
        .with_context(|| format!("cannot open {}", paths.part.display()))?;
    file.set_len(kept)
        .map_err(|e| write_error(&paths.part, &e))?;
    file.seek(SeekFrom::End(0))
        .map_err(|e| write_error(&paths.part, &e))?;
    bar.inc(kept);
    if kept < state.size {
        let download = client.get_range(id, allow_revoked, Some((kept, state.size - 1)))?;
        if download.file_size != state.size || download.blake3 != Some(expected) {
            paths.remove();
            anyhow::bail!(
                "{}: the node describes file {id} differently than when the get began; removed the partial file, start again",
                paths.state.display()
            );
        }
        let result = copy_exact(download, bar, &mut file, path)
            .and_then(|_| file.sync_all().map_err(|e| write_error(path, &e)));
        if let Err(e) = result {
            return Err(interrupted(&paths, Some(&state), path, e));
        }
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| write_error(&paths.part, &e))?;
    let mut hasher = blake3::Hasher::new();
    let hashed = io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", paths.part.display()))?;
    drop(file);
    if hashed != state.size || *hasher.finalize().as_bytes() != expected {
        paths.remove();
        anyhow::bail!(
            "{}: the resumed file does not match its checksum; removed the partial file, start again",
            path.display()
        );
    }
    finish(&paths, path, state.mtime)?;
    Ok(Got {
        path: Some(path.to_path_buf()),
        bytes: state.size,
        resumed_from: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_inclusive_and_open_ended() {
        assert_eq!(parse_range("0-9").ok(), Some((0, 9)));
        assert_eq!(parse_range("5-").ok(), Some((5, u64::MAX)));
        for bad in ["", "5", "a-b", "9-3", "-5"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_sizes_parse_in_bytes_kib_and_mib_within_the_format() {
        assert_eq!(parse_segment_size("64KiB").ok(), Some(64 << 10));
        assert_eq!(parse_segment_size("2MiB").ok(), Some(2 << 20));
        assert_eq!(parse_segment_size("16MiB").ok(), Some(16 << 20));
        assert_eq!(parse_segment_size("1048576").ok(), Some(1 << 20));
        for bad in [
            "",
            "0",
            "MiB",
            "2 MiB",
            "2mib",
            "3MiB",
            "32KiB",
            "32MiB",
            "1GiB",
            "-2MiB",
            "18446744073709551615MiB",
            "99999999999999999999",
        ] {
            assert!(parse_segment_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_names_never_leave_the_folder() {
        let id = FileId::of_manifest(b"m");
        assert_eq!(safe_name("../../etc/passwd", &id), "passwd");
        assert!(safe_name("..", &id).starts_with("datamesh-"));
        assert!(safe_name("", &id).starts_with("datamesh-"));
        assert_eq!(safe_name("a/b.txt", &id), "b.txt");
    }

    #[test]
    fn mtimes_are_read_from_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        fs::write(&path, b"x")?;
        set_mtime(&path, Some(1_000_000_000));
        assert_eq!(mtime_of(&fs::metadata(&path)?), Some(1_000_000_000));
        Ok(())
    }
}
