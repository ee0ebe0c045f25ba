//! Private files and folders: 0700 / 0600 whatever the umask, checked before use, replaced
//! atomically (temp file, fsync, rename, fsync folder), old contents overwritten before
//! they are let go.
//!
//! Overwriting is best effort: on SSDs (wear levelling, over-provisioning) and on
//! copy-on-write or journaling file systems (btrfs, ZFS, APFS, ext4 with `data=journal`),
//! and with snapshots or backups, old blocks can survive anywhere. The keystore's real
//! protection is that everything on disk is sealed; overwriting only shortens the life
//! of the replaced copies.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{OpenError, PermissionError};

/// Mode of private folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// `O_NOFOLLOW`: opening a symlink fails instead of opening its target.
const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// The steps of a write, where tests inject failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    CreateTemp,
    WriteTemp,
    SyncTemp,
    Rename,
    SyncDir,
    AuditAppend,
}

impl Step {
    #[cfg(test)]
    pub(crate) const ALL: [Step; 6] = [
        Step::CreateTemp,
        Step::WriteTemp,
        Step::SyncTemp,
        Step::Rename,
        Step::SyncDir,
        Step::AuditAppend,
    ];
}

#[cfg(test)]
thread_local! {
    static FAIL_AT: core::cell::Cell<Option<Step>> = const { core::cell::Cell::new(None) };
}

/// Makes the next writes on this thread fail at `step` (tests only).
#[cfg(test)]
pub(crate) fn fail_at(step: Option<Step>) {
    FAIL_AT.with(|cell| cell.set(step));
}

/// Returns the injected failure for `step`, if any (always `Ok` outside tests).
pub(crate) fn step(step: Step) -> io::Result<()> {
    #[cfg(test)]
    if FAIL_AT.with(core::cell::Cell::get) == Some(step) {
        return Err(io::Error::other(format!("injected failure at {step:?}")));
    }
    let _ = step;
    Ok(())
}

/// Creates the folder `path` (and any missing parents) with mode 0700, or tightens an
/// existing one to 0700.
///
/// # Errors
///
/// The underlying I/O error.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    match DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(e) => return Err(e),
    }
    // The umask may have removed bits from the mode asked for; set it exactly.
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
}

/// Creates the folder `path` with mode 0700 if it does not exist; leaves an existing one as
/// it is.
///
/// # Errors
///
/// The underlying I/O error.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    create_private_dir(path)
}

/// Refuses a private file or folder that is a symlink, not ours, or open to group/others.
pub(crate) fn check_private(path: &Path, dir: bool) -> Result<(), OpenError> {
    let meta = fs::symlink_metadata(path).map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (expected, ok_type, fix) = if dir {
        ("folder", meta.is_dir(), DIR_MODE)
    } else {
        ("file", meta.is_file(), FILE_MODE)
    };
    if !ok_type {
        return Err(PermissionError::NotRegular {
            path: path.to_owned(),
            expected,
        }
        .into());
    }
    let me = rustix::process::getuid().as_raw();
    if meta.uid() != me {
        return Err(PermissionError::NotOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        }
        .into());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PermissionError::TooOpen {
            path: path.to_owned(),
            mode,
            fix,
        }
        .into());
    }
    Ok(())
}

/// Reads a file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, larger than the {max}-byte limit"),
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {max}-byte limit"),
        ));
    }
    Ok(out)
}

/// A failed atomic write: before the rename the old file is untouched; after it the new
/// file is in place but possibly not durable.
#[derive(Debug)]
pub(crate) enum WriteError {
    BeforeRename(io::Error),
    AfterRename(io::Error),
}

/// Replaces `path` by a 0600 file holding `bytes`: writes `temp`, fsyncs it, renames it
/// over `path`, fsyncs the folder, then overwrites the replaced file's old contents
/// (best effort, only if no other link to it remains). A crash at any point leaves
/// either the old or the new file at `path`.
pub(crate) fn write_private_atomic(
    path: &Path,
    temp: &Path,
    bytes: &[u8],
) -> Result<(), WriteError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // A temp file left by a crashed writer (we hold the lock, so it is nobody's). A
    // symlink planted there is removed, never followed: its target stays untouched.
    match fs::symlink_metadata(temp) {
        Ok(meta) if meta.is_file() => scrub_and_remove(temp).map_err(WriteError::BeforeRename)?,
        Ok(_) => fs::remove_file(temp).map_err(WriteError::BeforeRename)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(WriteError::BeforeRename(e)),
    }
    let result = write_temp(temp, bytes);
    if let Err(e) = result {
        let _ = fs::remove_file(temp);
        return Err(WriteError::BeforeRename(e));
    }
    let old = OpenOptions::new()
        .write(true)
        .custom_flags(NOFOLLOW)
        .open(path)
        .ok();
    if let Err(e) = step(Step::Rename).and_then(|()| fs::rename(temp, path)) {
        let _ = fs::remove_file(temp);
        return Err(WriteError::BeforeRename(e));
    }
    step(Step::SyncDir)
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(WriteError::AfterRename)?;
    if let Some(old) = old {
        // Best effort (see the module docs); the new file is already durable.
        let _ = scrub_unlinked(old);
    }
    Ok(())
}

fn write_temp(temp: &Path, bytes: &[u8]) -> io::Result<()> {
    step(Step::CreateTemp)?;
    // O_CREAT | O_EXCL | O_NOFOLLOW: a name someone planted (a symlink included) is
    // refused, never followed.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(NOFOLLOW)
        .mode(FILE_MODE)
        .open(temp)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    step(Step::WriteTemp)?;
    file.write_all(bytes)?;
    step(Step::SyncTemp)?;
    file.sync_all()
}

/// Overwrites the contents of an open file that no longer has a name, then syncs it.
fn scrub_unlinked(file: File) -> io::Result<()> {
    if file.metadata()?.nlink() == 0 {
        overwrite(file)?;
    }
    Ok(())
}

fn overwrite(mut file: File) -> io::Result<()> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all(zeros.get(..n).unwrap_or(&zeros))?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Overwrites a file's contents with zeros, syncs, and removes it (best effort; see the
/// module docs). A file with other hard links is only unlinked.
///
/// # Errors
///
/// The underlying I/O error.
pub fn scrub_and_remove(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(NOFOLLOW)
        .open(path)?;
    if file.metadata()?.nlink() == 1 {
        overwrite(file)?;
    }
    fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Appends one line (a `\n` is added) to a 0600 file in a single write, and syncs it.
pub(crate) fn append_line(path: &Path, line: &str) -> io::Result<()> {
    step(Step::AuditAppend)?;
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)?;
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    file.write_all(&buf)?;
    file.sync_data()
}

/// Writes a new private file atomically (for the API token and similar small files).
///
/// # Errors
///
/// The underlying I/O error; the previous file, if any, is unchanged when the error
/// happened before the rename.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A random temp name next to `path`: nothing anyone planted is ever opened (and the
    // exclusive, no-follow create refuses a collision anyway).
    let mut random = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", data_encoding::HEXLOWER.encode(&random)));
    write_private_atomic(path, Path::new(&temp), bytes).map_err(|e| match e {
        WriteError::BeforeRename(e) | WriteError::AfterRename(e) => e,
    })
}
