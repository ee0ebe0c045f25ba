//! The resume states of interrupted transfers (docs/format.md, "Resume state of a get",
//! "Resume state of a put").
//!
//! A get's: a small JSON file beside the partial file, bound to the file id and the
//! manifest format version.
//!
//! ```text
//! <dir>/.datamesh-get-<name>.part      the bytes received so far (a prefix of the file)
//! <dir>/.datamesh-resume-<name>.json   {"format": "datamesh get resume", "version": 1,
//!                                       "file": "dm1…", "manifest_version": 2,
//!                                       "size": N, "segment_size": N, "blake3": "64 hex",
//!                                       "mtime": N or null}
//! ```
//!
//! The state file is written (aside, renamed) before the first byte of the partial file,
//! so a partial file without one is never resumed. A resumed get keeps the whole segments
//! of the partial file (each was authenticated by the node before it was sent), fetches
//! the rest as a range and checks the whole file's BLAKE3 before renaming it into place.
//!
//! A put's ([`PutResume`]): `<home>/put-resume/<32 hex>.json` (folder 0700, file 0600;
//! the name is the BLAKE3 of the source's absolute path), written before the first byte
//! is sent and removed once the put succeeded. It names the source (path, size, mtime,
//! inode, device) and the put session the node keeps the rest under (the node's
//! `put-sessions/`: the data key sealed to the keystore's key, the stripes placed). It
//! holds no key. Running the same put again sends the file again with the same session:
//! the node re-encodes it and sends only the stripes it had not placed.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use datamesh_core::{FileId, MANIFEST_VERSION};
use serde::{Deserialize, Serialize};

/// What a state file is called in its `format` field.
const FORMAT: &str = "datamesh get resume";
/// The version of the state file's format this build reads and writes.
const VERSION: u32 = 1;
/// A state file longer than this is not one (it is read from disk: hostile until checked).
const MAX_STATE_LEN: u64 = 4096;
/// Largest segment size a manifest allows (16 MiB); a state naming a larger one is damaged.
const MAX_SEGMENT: u64 = 16 << 20;

/// Where a get into `target` keeps its partial bytes and its state.
#[derive(Clone, Debug)]
pub(crate) struct ResumePaths {
    /// The partial file.
    pub(crate) part: PathBuf,
    /// The state file.
    pub(crate) state: PathBuf,
}

impl ResumePaths {
    /// The paths beside `target` (in its folder).
    pub(crate) fn of(target: &Path) -> Self {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unnamed".into());
        Self {
            part: dir.join(format!(".datamesh-get-{name}.part")),
            state: dir.join(format!(".datamesh-resume-{name}.json")),
        }
    }

    /// Removes both files (those that exist).
    pub(crate) fn remove(&self) {
        let _ = fs::remove_file(&self.part);
        let _ = fs::remove_file(&self.state);
    }
}

/// The state of one interrupted get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeState {
    format: String,
    version: u32,
    /// The file id (text form).
    pub(crate) file: String,
    /// The manifest format version of the build that started the get.
    pub(crate) manifest_version: u8,
    /// The whole file's length.
    pub(crate) size: u64,
    /// Its segment size.
    pub(crate) segment_size: u64,
    /// The BLAKE3 of the whole file, 64 lowercase hex.
    pub blake3: String,
    /// Its modification time (seconds since the Unix epoch), if it has one.
    pub(crate) mtime: Option<u64>,
}

/// A state file that cannot be used for this get.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResumeError {
    /// Not a state file this build reads.
    #[error("{path} is not a resume state of datamesh get ({reason}): remove it to start over")]
    Damaged {
        /// The state file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The state of another file or manifest version.
    #[error(
        "{path} resumes file {file} (manifest version {version}), not {wanted} (version {MANIFEST_VERSION}): remove it, or use another -o"
    )]
    Other {
        /// The state file.
        path: String,
        /// The file it names.
        file: String,
        /// The manifest version it names.
        version: u8,
        /// The file asked for.
        wanted: String,
    },
}

impl ResumeState {
    /// The state of a get of `id`, from what the node said of the file.
    pub(crate) fn new(
        id: &FileId,
        size: u64,
        segment_size: u64,
        blake3: &[u8; 32],
        mtime: Option<u64>,
    ) -> Self {
        Self {
            format: FORMAT.into(),
            version: VERSION,
            file: id.to_string(),
            manifest_version: MANIFEST_VERSION,
            size,
            segment_size,
            blake3: data_encoding::HEXLOWER.encode(blake3),
            mtime,
        }
    }

    /// Parses state bytes (untrusted): the format, version, bounds and hash are checked.
    ///
    /// # Errors
    /// A one-line reason.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > MAX_STATE_LEN {
            return Err("too large".into());
        }
        let state: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.format != FORMAT || state.version != VERSION {
            return Err(format!(
                "format {:?} version {}, this build reads {FORMAT:?} version {VERSION}",
                state.format, state.version
            ));
        }
        if !state.segment_size.is_power_of_two() || state.segment_size > MAX_SEGMENT {
            return Err(format!("segment size {}", state.segment_size));
        }
        if state.blake3_bytes().is_none() {
            return Err("blake3 is not 64 hex".into());
        }
        Ok(state)
    }

    /// The whole file's BLAKE3.
    pub(crate) fn blake3_bytes(&self) -> Option<[u8; 32]> {
        let bytes = data_encoding::HEXLOWER
            .decode(self.blake3.as_bytes())
            .ok()?;
        <[u8; 32]>::try_from(bytes).ok()
    }

    /// Reads the state at `path`: `None` when there is none.
    ///
    /// # Errors
    /// [`ResumeError::Damaged`] when it cannot be read or parsed.
    pub(crate) fn read(path: &Path) -> Result<Option<Self>, ResumeError> {
        read_state(path, Self::parse)
    }

    /// Checks that this state is of `id` and of this build's manifest version.
    ///
    /// # Errors
    /// [`ResumeError::Other`].
    pub(crate) fn check_for(&self, id: &FileId, path: &Path) -> Result<(), ResumeError> {
        if self.file != id.to_string() || self.manifest_version != MANIFEST_VERSION {
            return Err(ResumeError::Other {
                path: path.display().to_string(),
                file: self.file.clone(),
                version: self.manifest_version,
                wanted: id.to_string(),
            });
        }
        Ok(())
    }

    /// Writes the state to `path`, aside and renamed (0600).
    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_state(path, &serde_json::to_vec(self)?)
    }

    /// The bytes of a partial file of `len` bytes that a resume keeps: its whole
    /// segments, at most the file's size.
    pub(crate) fn kept(&self, len: u64) -> u64 {
        if len >= self.size {
            return self.size;
        }
        len - len % self.segment_size
    }
}

/// Reads a state file (bounded) and parses it with `parse`: `None` when there is none.
fn read_state<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Option<T>, ResumeError> {
    let damaged = |reason: String| ResumeError::Damaged {
        path: path.display().to_string(),
        reason,
    };
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(damaged(e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STATE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| damaged(e.to_string()))?;
    parse(&bytes).map(Some).map_err(damaged)
}

/// Writes a state file aside and renames it (0600).
fn write_state(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("json.tmp");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        file.write_all(text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temp.display()))?;
    }
    fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// What a put's state file is called in its `format` field.
const PUT_FORMAT: &str = "datamesh put resume";
/// The version of the put state's format this build reads and writes.
const PUT_VERSION: u32 = 1;

/// The state of one interrupted put of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutResume {
    format: String,
    version: u32,
    /// The source's absolute path (lossy UTF-8).
    path: String,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    inode: u64,
    device: u64,
    /// The put session the node keeps the rest under (32 lowercase hex).
    pub(crate) session: String,
    /// The `--segment-size` the put was started with (absent: the default); a session
    /// is continued only with the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segment_size: Option<u64>,
}

/// A put's resume state and where it is.
pub(crate) struct PutResumeFile {
    /// The state file.
    pub(crate) path: PathBuf,
    /// Its contents.
    pub(crate) state: PutResume,
    /// It was there before (an interrupted put is continued).
    pub(crate) resumed: bool,
}

impl PutResume {
    fn of(source: &Path, meta: &fs::Metadata, session: String, segment_size: Option<u64>) -> Self {
        Self {
            format: PUT_FORMAT.into(),
            version: PUT_VERSION,
            path: source.to_string_lossy().into_owned(),
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            inode: meta.ino(),
            device: meta.dev(),
            session,
            segment_size,
        }
    }

    /// Parses state bytes (untrusted): the format, version and session are checked.
    ///
    /// # Errors
    /// A one-line reason.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > MAX_STATE_LEN {
            return Err("too large".into());
        }
        let state: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.format != PUT_FORMAT || state.version != PUT_VERSION {
            return Err(format!(
                "format {:?} version {}, this build reads {PUT_FORMAT:?} version {PUT_VERSION}",
                state.format, state.version
            ));
        }
        if state.session.len() != 32
            || !state
                .session
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err("session is not 32 lowercase hex".into());
        }
        Ok(state)
    }

    /// The state of a put of `source` (opened; `meta` from the open file) in segments of
    /// `segment_size` in `dir` (`<home>/put-resume`): the one an interrupted put left, or
    /// a new one, written before anything is sent.
    ///
    /// # Errors
    /// A state of another file (the path it names differs), of another segment size, a
    /// source that changed since the interruption (size, mtime, inode or device), or a
    /// damaged state: one line naming the state and the source; nothing is sent.
    pub(crate) fn begin(
        dir: &Path,
        source: &Path,
        meta: &fs::Metadata,
        segment_size: Option<u64>,
    ) -> anyhow::Result<PutResumeFile> {
        let absolute = std::path::absolute(source)
            .with_context(|| format!("cannot resolve {}", source.display()))?;
        let key = blake3::hash(absolute.as_os_str().as_encoded_bytes());
        let path = dir.join(format!(
            "{}.json",
            &data_encoding::HEXLOWER.encode(key.as_bytes())[..32]
        ));
        if let Some(state) = read_state(&path, Self::parse)? {
            let now = Self::of(&absolute, meta, state.session.clone(), segment_size);
            anyhow::ensure!(
                state.path == now.path,
                "{} is the resume state of a put of {}, not of {}: remove it to store this file",
                path.display(),
                state.path,
                source.display()
            );
            anyhow::ensure!(
                state.segment_size == now.segment_size,
                "the interrupted put of {} used --segment-size {}: give the same to continue it, or remove {} to store the file anew",
                source.display(),
                state
                    .segment_size
                    .map_or("(the default)".into(), |b| b.to_string()),
                path.display()
            );
            anyhow::ensure!(
                state == now,
                "{} changed since its put was interrupted (size, mtime or inode differ from {}): remove that state to store the file anew",
                source.display(),
                path.display()
            );
            return Ok(PutResumeFile {
                path,
                state,
                resumed: true,
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot protect {}", dir.display()))?;
        let mut session = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut session);
        let state = Self::of(
            &absolute,
            meta,
            data_encoding::HEXLOWER.encode(&session),
            segment_size,
        );
        write_state(&path, &serde_json::to_vec(&state)?)?;
        Ok(PutResumeFile {
            path,
            state,
            resumed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn id(n: u8) -> FileId {
        FileId::of_manifest(&[n])
    }

    #[test]
    fn a_state_round_trips_and_binds_its_file_and_version() -> TestResult {
        let dir = tempfile::tempdir()?;
        let paths = ResumePaths::of(&dir.path().join("movie.mkv"));
        assert!(ResumeState::read(&paths.state)?.is_none());
        let state = ResumeState::new(&id(1), 5 << 20, 1 << 20, &[7; 32], Some(5));
        state.write(&paths.state)?;
        let read = ResumeState::read(&paths.state)?.ok_or("gone")?;
        assert_eq!(read, state);
        read.check_for(&id(1), &paths.state)?;
        let other = read
            .check_for(&id(2), &paths.state)
            .err()
            .ok_or("accepted")?;
        assert!(other.to_string().contains(&id(1).to_string()), "{other}");
        let mut old = read.clone();
        old.manifest_version = MANIFEST_VERSION - 1;
        assert!(old.check_for(&id(1), &paths.state).is_err());
        assert_eq!(read.kept(0), 0);
        assert_eq!(read.kept((3 << 20) + 5), 3 << 20);
        assert_eq!(read.kept(6 << 20), 5 << 20);
        Ok(())
    }

    #[test]
    fn damaged_states_are_one_line_errors_naming_the_path() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.json");
        let good = serde_json::to_value(ResumeState::new(&id(1), 1, 1 << 16, &[0; 32], None))?;
        let mut bad = Vec::new();
        for (field, value) in [
            ("version", serde_json::json!(2)),
            ("format", serde_json::json!("other")),
            ("segment_size", serde_json::json!(3)),
            ("segment_size", serde_json::json!(1u64 << 40)),
            ("blake3", serde_json::json!("zz")),
            ("extra", serde_json::json!(1)),
        ] {
            let mut v = good.clone();
            v[field] = value;
            bad.push(serde_json::to_vec(&v)?);
        }
        bad.push(vec![b' '; 5000]);
        bad.push(b"{".to_vec());
        for bytes in bad {
            fs::write(&path, &bytes)?;
            let e = ResumeState::read(&path)
                .err()
                .ok_or("accepted")?
                .to_string();
            assert!(
                e.contains(&path.display().to_string()) && !e.contains('\n'),
                "{e}"
            );
        }
        Ok(())
    }

    proptest! {
        /// Any bytes: a state or an error, never a panic; a parsed state is within bounds.
        #[test]
        fn parsing_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(state) = ResumeState::parse(&bytes) {
                prop_assert!(state.segment_size.is_power_of_two());
                prop_assert!(state.blake3_bytes().is_some());
            }
        }

        /// Any bytes as a put's state: a state or an error, never a panic.
        #[test]
        fn parsing_any_put_state_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(state) = PutResume::parse(&bytes) {
                prop_assert_eq!(state.session.len(), 32);
            }
        }

        /// Mutated valid states: never a panic.
        #[test]
        fn mutated_states_never_panic(at in any::<usize>(), to in any::<u8>()) {
            let mut bytes = serde_json::to_vec(&ResumeState::new(&FileId::of_manifest(b"x"), 9, 1 << 20, &[1; 32], None))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let n = bytes.len();
            bytes[at % n] = to;
            let _ = ResumeState::parse(&bytes);
        }
    }

    #[test]
    fn a_put_state_binds_its_source_and_refuses_another_or_a_changed_one() -> TestResult {
        let dir = tempfile::tempdir()?;
        let states = dir.path().join("put-resume");
        let source = dir.path().join("big.iso");
        fs::write(&source, b"0123456789")?;
        let meta = fs::metadata(&source)?;
        let first = PutResume::begin(&states, &source, &meta, None)?;
        assert!(!first.resumed);
        assert_eq!(
            fs::metadata(&first.path)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::metadata(&states)?.permissions().mode() & 0o777, 0o700);
        let again = PutResume::begin(&states, &source, &meta, None)?;
        assert!(again.resumed);
        assert_eq!(again.state.session, first.state.session);

        // Another segment size: refused in one line naming the state's size and the state.
        let e = PutResume::begin(&states, &source, &meta, Some(2 << 20))
            .err()
            .ok_or("a put in other segments was resumed")?
            .to_string();
        assert!(
            e.contains("--segment-size (the default)")
                && e.contains(&first.path.display().to_string()),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        // Changed: a one-line error naming the source and the state.
        fs::write(&source, b"0123456789abc")?;
        let e = PutResume::begin(&states, &source, &fs::metadata(&source)?, None)
            .err()
            .ok_or("a changed source was resumed")?
            .to_string();
        assert!(
            e.contains("big.iso") && e.contains(&first.path.display().to_string()),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        // Another file's state under this file's name.
        let mut other: serde_json::Value = serde_json::from_slice(&fs::read(&first.path)?)?;
        other["path"] = serde_json::json!("/somewhere/else.iso");
        fs::write(&first.path, serde_json::to_vec(&other)?)?;
        let e = PutResume::begin(&states, &source, &fs::metadata(&source)?, None)
            .err()
            .ok_or("another file's state was used")?
            .to_string();
        assert!(
            e.contains("/somewhere/else.iso") && e.contains("big.iso"),
            "{e}"
        );

        // Another version, a bad session, junk: damaged, naming the state.
        for (field, value) in [
            ("version", serde_json::json!(2)),
            ("session", serde_json::json!("../x")),
            ("extra", serde_json::json!(1)),
        ] {
            let mut v = other.clone();
            v[field] = value;
            fs::write(&first.path, serde_json::to_vec(&v)?)?;
            let e = PutResume::begin(&states, &source, &fs::metadata(&source)?, None)
                .err()
                .ok_or("accepted")?
                .to_string();
            assert!(e.contains(&first.path.display().to_string()), "{e}");
        }
        Ok(())
    }
}
