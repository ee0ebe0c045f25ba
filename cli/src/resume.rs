//! The resume state of an interrupted `get`: a small JSON file beside the partial file,
//! bound to the file id and the manifest format version (docs/format.md, "Resume state
//! of a get").
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

use std::fs;
use std::io::{self, Read};
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
    pub(crate) blake3: String,
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
        Self::parse(&bytes).map(Some).map_err(damaged)
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
        let text = serde_json::to_vec(self)?;
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
            file.write_all(&text)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", temp.display()))?;
        }
        fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
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
}
