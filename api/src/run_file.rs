//! `<home>/node.json`: what a running node publishes so that other programs find it.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a running node publishes in `<home>/node.json` (0600, written aside and renamed
/// into place, removed on a clean stop; a SIGKILLed node leaves it behind, stale).
///
/// ```text
/// {"pid": 4242, "peer_id": "12D3Koo…", "api": "127.0.0.1:7070",
///  "listen": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3Koo…"]}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFile {
    /// The node's process id.
    pub pid: u32,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its API address.
    pub api: SocketAddr,
    /// Its listen addresses, each ending in `/p2p/<peer id>`.
    pub listen: Vec<String>,
}

/// `node.json` could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunFileError {
    /// The file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is open to other users, or not a regular file.
    #[error(transparent)]
    NotPrivate(#[from] crate::PrivateFileError),
    /// The file is not a `node.json`.
    #[error("{} is damaged; restart the node", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl RunFile {
    /// Its name inside the home.
    pub const FILE_NAME: &str = "node.json";

    /// `<home>/node.json`.
    pub fn path(home: &Path) -> PathBuf {
        home.join(Self::FILE_NAME)
    }

    /// The `node.json` of `home`; `None` when there is none (the node is not running).
    ///
    /// # Errors
    /// [`RunFileError`] when it exists but cannot be read or parsed, or group or others
    /// may read it ([`RunFileError::NotPrivate`]: it tells where the API and its token
    /// are used, and a planted one would send the token elsewhere).
    pub fn read(home: &Path) -> Result<Option<Self>, RunFileError> {
        let path = Self::path(home);
        match crate::check_private_file(&path) {
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RunFileError::Damaged { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RunFileError::Read { path, source }),
        }
    }

    /// The file's text (pretty JSON).
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn read_round_trips_and_tells_missing_from_damaged() -> TestResult {
        let home = tempfile::tempdir()?;
        assert_eq!(RunFile::read(home.path())?, None);
        let run = RunFile {
            pid: 42,
            peer_id: "12D3Koo".into(),
            api: "127.0.0.1:7070".parse()?,
            listen: vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3Koo".into()],
        };
        let path = RunFile::path(home.path());
        std::fs::write(&path, run.to_json())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        assert!(matches!(
            RunFile::read(home.path()),
            Err(RunFileError::NotPrivate(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(RunFile::read(home.path())?, Some(run));
        let text = std::fs::read_to_string(RunFile::path(home.path()))?;
        assert!(text.contains(r#""api": "127.0.0.1:7070""#), "{text}");
        std::fs::write(RunFile::path(home.path()), "{")?;
        assert!(matches!(
            RunFile::read(home.path()),
            Err(RunFileError::Damaged { .. })
        ));
        Ok(())
    }
}
