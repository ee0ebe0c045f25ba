//! Folders: `put -r DIR` stores every file as usual plus a directory object (the core's
//! `Directory`: names, sizes, modes, mtimes, symlinks as links, the files' ids) stored
//! as a file of its own, so storage nodes learn no names; its id is the folder's id.
//! Identical files are stored once. `get -r ID -o DIR` restores the tree inside DIR only;
//! `ls ID` lists a folder's entries without fetching file bodies.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context as _;
use clap::Args;
use datamesh_api::{Client, ClientError, ErrorKind};
use datamesh_core::Recipient;
use datamesh_core::{
    DIRECTORY_MAGIC, Directory, Entry, EntryKind, FileId, MAX_DIRECTORY_LEN, Root,
    link_stays_inside,
};

use super::files::progress_bar;
use super::transfer::{get_file_to, put_open_file};
use crate::Context;

/// Arguments of `datamesh ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// A folder's id (`dm1…`, from `put -r`): list its entries instead of the catalog.
    id: Option<String>,
}

/// A file of the tree still to store.
struct Pending {
    path: PathBuf,
    index: usize,
}

fn mtime_of(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The UTF-8 name of `path`'s last component, or an error naming the path.
fn utf8_name(path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: no file name", path.display()))?;
    name.to_str().map(str::to_string).with_context(|| {
        format!(
            "{}: the name is not valid UTF-8 (rename it to store the folder)",
            path.display()
        )
    })
}

/// Lists `dir` into `entries` (parents first, names sorted), the files into `pending`.
fn walk(
    ctx: &Context,
    dir: &Path,
    prefix: &str,
    entries: &mut Vec<Entry>,
    pending: &mut Vec<Pending>,
) -> anyhow::Result<()> {
    let mut children: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read the folder {}", dir.display()))?;
    children.sort();
    for path in children {
        let name = utf8_name(&path)?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (mode, mtime) = (meta.permissions().mode() & 0o7777, mtime_of(&meta));
        let kind = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read the link {}", path.display()))?;
            let target = target.to_str().map(str::to_string).with_context(|| {
                format!("{}: the link's target is not valid UTF-8", path.display())
            })?;
            EntryKind::Symlink { target }
        } else if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            pending.push(Pending {
                path: path.clone(),
                index: entries.len(),
            });
            EntryKind::File {
                size: meta.len(),
                id: String::new(),
            }
        } else {
            ctx.out.warn(format_args!(
                "{}: not a file, folder or link; skipped",
                path.display()
            ));
            continue;
        };
        let is_dir = matches!(kind, EntryKind::Dir);
        entries.push(Entry {
            path: rel.clone(),
            mode,
            mtime,
            kind,
        });
        if is_dir {
            walk(ctx, &path, &rel, entries, pending)?;
        }
    }
    Ok(())
}

/// What a folder put stored.
pub(crate) struct TreePut {
    /// The folder's id.
    pub(crate) id: String,
    /// Entries.
    pub(crate) entries: usize,
    /// Files stored (identical ones once).
    pub(crate) stored: usize,
    /// Bytes of the files.
    pub(crate) bytes: u64,
}

/// `put -r DIR`.
pub(crate) fn put_tree(
    ctx: &Context,
    client: &Client,
    root: &Path,
    recipients: &[Recipient],
) -> anyhow::Result<TreePut> {
    let meta = fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a folder", root.display());
    let root_name = fs::canonicalize(root)
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .unwrap_or_else(|| "folder".into());
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    walk(ctx, root, "", &mut entries, &mut pending)?;
    let total: u64 = pending
        .iter()
        .filter_map(|p| match &entries[p.index].kind {
            EntryKind::File { size, .. } => Some(*size),
            _ => None,
        })
        .sum();
    let bar = progress_bar(ctx, Some(total), "put -r");
    let mut by_hash: HashMap<[u8; 32], String> = HashMap::new();
    let (mut stored, mut bytes) = (0usize, 0u64);
    let result = (|| -> anyhow::Result<()> {
        for (n, file) in pending.iter().enumerate() {
            bar.set_message(format!("put -r {}/{}", n + 1, pending.len()));
            let open = || {
                File::open(&file.path)
                    .with_context(|| format!("cannot open {}", file.path.display()))
            };
            let mut hasher = blake3::Hasher::new();
            let size = std::io::copy(&mut open()?, &mut hasher)
                .with_context(|| format!("cannot read {}", file.path.display()))?;
            let hash = *hasher.finalize().as_bytes();
            let id = match by_hash.get(&hash) {
                Some(id) => {
                    bar.inc(size);
                    id.clone()
                }
                None => {
                    let entry = &entries[file.index];
                    let name = entry
                        .path
                        .rsplit('/')
                        .next()
                        .unwrap_or(&entry.path)
                        .to_string();
                    let put = put_open_file(
                        ctx,
                        client,
                        &file.path,
                        open()?,
                        (&name, entry.mtime),
                        recipients,
                        &bar,
                    )
                    .with_context(|| format!("put {}", file.path.display()))?;
                    anyhow::ensure!(
                        put.size == size,
                        "{} changed while it was stored; try again",
                        file.path.display()
                    );
                    stored += 1;
                    bytes += size;
                    by_hash.insert(hash, put.id.clone());
                    put.id
                }
            };
            entries[file.index].kind = EntryKind::File { size, id };
        }
        Ok(())
    })();
    bar.finish_and_clear();
    result?;
    let directory = Directory {
        root: Some(Root {
            mode: meta.permissions().mode() & 0o7777,
            mtime: mtime_of(&meta),
        }),
        entries,
    };
    directory
        .check()
        .with_context(|| format!("{}: cannot describe the folder", root.display()))?;
    let object = directory.to_bytes();
    anyhow::ensure!(
        object.len() <= MAX_DIRECTORY_LEN,
        "{}: the folder has too many entries to store as one",
        root.display()
    );
    let put = client.put_with_mtime(&object[..], &root_name, Some(mtime_of(&meta)), recipients)?;
    Ok(TreePut {
        id: put.id,
        entries: directory.entries.len(),
        stored,
        bytes,
    })
}

/// Fetches and checks the directory object `id`.
fn fetch_directory(client: &Client, id: &FileId, allow_revoked: bool) -> anyhow::Result<Directory> {
    let not_a_folder = || anyhow::anyhow!("{id} is a file, not a folder: get it without -r");
    let head = match client.get_range(
        id,
        allow_revoked,
        Some((0, DIRECTORY_MAGIC.len() as u64 - 1)),
    ) {
        // An empty file: no byte to range over.
        Err(ClientError::Api {
            kind: ErrorKind::BadRange,
            ..
        }) => return Err(not_a_folder()),
        other => other?,
    };
    let mut start = Vec::new();
    head.body
        .take(DIRECTORY_MAGIC.len() as u64)
        .read_to_end(&mut start)
        .context("transfer interrupted")?;
    if !Directory::looks_like(&start) || head.file_size > MAX_DIRECTORY_LEN as u64 {
        return Err(not_a_folder());
    }
    let download = client.get_with(id, allow_revoked)?;
    let mut bytes = Vec::new();
    let size = download.size;
    download
        .body
        .take(MAX_DIRECTORY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .context("transfer interrupted")?;
    anyhow::ensure!(
        bytes.len() as u64 == size,
        "transfer interrupted: got {} of {size} bytes",
        bytes.len()
    );
    Directory::from_bytes(&bytes).with_context(|| format!("folder {id}"))
}

/// Sets `path`'s mtime, of a link itself (never followed); the access time is left.
///
/// # Errors
/// One line naming the path.
fn set_times(path: &Path, mtime: u64) -> anyhow::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| anyhow::anyhow!("cannot set the mtime of {}: {e}", path.display()))
}

/// Refuses to write at `path` when something is there (unless `force` and it is a file
/// or link, which is removed), and always when it is a folder or a link to one.
fn make_room(path: &Path, force: bool) -> anyhow::Result<()> {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    anyhow::ensure!(
        force,
        "{} exists: pass --force to replace it",
        path.display()
    );
    anyhow::ensure!(
        !meta.is_dir(),
        "{} is a folder: not replaced",
        path.display()
    );
    fs::remove_file(path).with_context(|| format!("cannot replace {}", path.display()))
}

/// What a folder get wrote.
pub(crate) struct TreeGet {
    pub(crate) entries: usize,
    pub(crate) bytes: u64,
}

/// `get -r ID -o DIR`: every entry inside DIR only.
pub(crate) fn get_tree(
    ctx: &Context,
    client: &Client,
    id: &FileId,
    out: &Path,
    force: bool,
    allow_revoked: bool,
) -> anyhow::Result<TreeGet> {
    let directory = fetch_directory(client, id, allow_revoked)?;
    match fs::symlink_metadata(out) {
        Ok(meta) => {
            anyhow::ensure!(meta.is_dir(), "{} is not a folder", out.display());
            let empty = fs::read_dir(out)
                .with_context(|| format!("cannot read {}", out.display()))?
                .next()
                .is_none();
            anyhow::ensure!(
                empty || force,
                "{} is not empty: pass --force to write into it",
                out.display()
            );
        }
        Err(_) => {
            fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?
        }
    }
    let root = fs::canonicalize(out).with_context(|| format!("cannot read {}", out.display()))?;
    let total = directory
        .entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    let bar = progress_bar(ctx, Some(total), "get -r");
    let mut first_copy: HashMap<String, PathBuf> = HashMap::new();
    let mut bytes = 0u64;
    let result = (|| -> anyhow::Result<()> {
        for entry in &directory.entries {
            // A plain relative path (checked by the parser): lexically inside root, and
            // every parent is a folder this get created or found as a real folder.
            let path = root.join(&entry.path);
            match &entry.kind {
                EntryKind::Dir => match fs::symlink_metadata(&path) {
                    Ok(meta) => anyhow::ensure!(
                        meta.is_dir() && !meta.file_type().is_symlink(),
                        "{} exists and is not a folder: not replaced",
                        path.display()
                    ),
                    Err(_) => fs::create_dir(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                },
                EntryKind::File { size, id: file } => {
                    make_room(&path, force)?;
                    match first_copy.get(file) {
                        Some(copy) => {
                            fs::copy(copy, &path)
                                .with_context(|| format!("cannot write {}", path.display()))?;
                            bar.inc(*size);
                        }
                        None => {
                            let file_id: FileId = file
                                .parse()
                                .with_context(|| format!("{}: bad id", entry.path))?;
                            get_file_to(client, &file_id, &path, allow_revoked, &bar)
                                .with_context(|| format!("get {}", path.display()))?;
                            first_copy.insert(file.clone(), path.clone());
                        }
                    }
                    bytes += size;
                    fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
                    set_times(&path, entry.mtime)?;
                }
                EntryKind::Symlink { target } => {
                    anyhow::ensure!(
                        link_stays_inside(&entry.path, target),
                        "{}: a link to {target} would leave {}; refused",
                        path.display(),
                        root.display()
                    );
                    make_room(&path, force)?;
                    std::os::unix::fs::symlink(target, &path)
                        .with_context(|| format!("cannot create the link {}", path.display()))?;
                    set_times(&path, entry.mtime)?;
                }
            }
        }
        Ok(())
    })();
    bar.finish_and_clear();
    result?;
    // Folders last, deepest first, the folder itself at the end: writing their entries
    // changed their mtimes.
    for entry in directory.entries.iter().rev() {
        if matches!(entry.kind, EntryKind::Dir) {
            let path = root.join(&entry.path);
            fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))
                .with_context(|| format!("cannot set the mode of {}", path.display()))?;
            set_times(&path, entry.mtime)?;
        }
    }
    if let Some(Root { mode, mtime }) = directory.root {
        fs::set_permissions(&root, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", root.display()))?;
        set_times(&root, mtime)?;
    }
    Ok(TreeGet {
        entries: directory.entries.len(),
        bytes,
    })
}

/// `ls ID`: a folder's entries, from its directory object only.
pub(crate) fn ls(ctx: &Context, args: LsArgs) -> anyhow::Result<()> {
    let Some(text) = args.id else {
        return super::files::ls(ctx);
    };
    let id: FileId = text
        .parse()
        .with_context(|| format!("{text} is not a valid file id"))?;
    let client = super::files::client(ctx)?;
    let directory = fetch_directory(&client, &id, false)?;
    if ctx.out.json() {
        ctx.out
            .json_value(&serde_json::to_value(&directory.entries)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = directory
        .entries
        .iter()
        .map(|e| {
            let when = jiff::Timestamp::from_second(e.mtime as i64)
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            let (kind, size, what) = match &e.kind {
                EntryKind::Dir => ("dir", String::new(), e.path.clone() + "/"),
                EntryKind::File { size, id } => {
                    ("file", size.to_string(), format!("{}  {id}", e.path))
                }
                EntryKind::Symlink { target } => {
                    ("link", String::new(), format!("{} -> {target}", e.path))
                }
            };
            vec![kind.into(), format!("{:04o}", e.mode), size, when, what]
        })
        .collect();
    ctx.out
        .table(&["KIND", "MODE", "SIZE", "MTIME", "PATH"], &rows);
    Ok(())
}
