//! The files of a testnet folder that belong to its dashboard (`datamesh testnet ui`,
//! served by the CLI): its login token and where it runs.
//!
//! * `D/dashboard-token`: 64 random hex characters and a newline, 0600, made on first
//!   use; the dashboard's login token (the nodes' API tokens never reach a browser).
//! * `D/dashboard.json`: `{"pid": P, "url": "http://127.0.0.1:PORT/testnet"}` while a
//!   dashboard runs (written by it once it listens, removed when it stops).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use serde_json::json;

use crate::error::{Error, Result, io_err};
use crate::process::{POLL, pid_alive, runs_with_words, signal};

/// The token file's name in the testnet folder.
pub const TOKEN_FILE: &str = "dashboard-token";
/// The running dashboard's file in the testnet folder.
pub const RUN_FILE: &str = "dashboard.json";

/// The dashboard's token file in `dir`.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join(TOKEN_FILE)
}

/// The dashboard's login token of the testnet in `dir`: read from `D/dashboard-token`,
/// made first (random, 0600) if there is none.
///
/// # Errors
/// [`Error::Io`] when it cannot be written or read; [`Error::Invalid`] when the file
/// holds something else than 64 hex characters.
pub fn token(dir: &Path) -> Result<String> {
    let path = token_path(dir);
    if !path.exists() {
        crate::home::write_random_password(&path)?;
    }
    let text =
        fs::read_to_string(&path).map_err(io_err(format!("cannot read {}", path.display())))?;
    let token = text.trim().to_string();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid {
            what: path.display().to_string(),
            reason: "not a dashboard token (64 hex characters); delete it to get a new one".into(),
        });
    }
    Ok(token)
}

/// A running dashboard, as its `D/dashboard.json` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// Its process id.
    pub pid: u32,
    /// The page's address.
    pub url: String,
}

/// Records that this process serves the dashboard of `dir` at `url`.
///
/// # Errors
/// [`Error::Io`].
pub fn write_running(dir: &Path, url: &str) -> Result<()> {
    let path = dir.join(RUN_FILE);
    let body = json!({ "pid": std::process::id(), "url": url }).to_string();
    let tmp = dir.join(format!("{RUN_FILE}.tmp"));
    fs::write(&tmp, body)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(io_err(format!("cannot write {}", path.display())))
}

/// Forgets this process's dashboard of `dir` (when it stops).
pub fn remove_running(dir: &Path) {
    if let Ok(Some(r)) = recorded(dir)
        && r.pid == std::process::id()
    {
        let _ = fs::remove_file(dir.join(RUN_FILE));
    }
}

/// The dashboard running for `dir`, if `D/dashboard.json` names a live process that
/// runs `testnet ui` (a file left behind by a killed dashboard may name a pid that is
/// another program's by now, which `stop` must not signal).
///
/// # Errors
/// [`Error::Invalid`] when the file is not what a dashboard writes.
pub fn running(dir: &Path) -> Result<Option<Running>> {
    Ok(recorded(dir)?.filter(|r| pid_alive(r.pid) && runs_with_words(r.pid, &["testnet", "ui"])))
}

/// What `D/dashboard.json` says, whether or not that process still runs.
fn recorded(dir: &Path) -> Result<Option<Running>> {
    let path = dir.join(RUN_FILE);
    let Ok(text) = fs::read(&path) else {
        return Ok(None);
    };
    let invalid = |reason: &str| Error::Invalid {
        what: path.display().to_string(),
        reason: reason.to_string(),
    };
    if text.len() > 4096 {
        return Err(invalid("too long"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(&e.to_string()))?;
    let pid = value["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| invalid("no pid"))?;
    let url = value["url"]
        .as_str()
        .filter(|u| u.starts_with("http://"))
        .ok_or_else(|| invalid("no url"))?
        .to_string();
    Ok(Some(Running { pid, url }))
}

/// Stops the dashboard of `dir` if one runs (SIGTERM, then SIGKILL after 10 s); whether
/// there was one.
///
/// # Errors
/// [`Error::Io`] when it cannot be signalled; [`Error::Timeout`] when it had to be
/// killed.
pub fn stop(dir: &Path) -> Result<bool> {
    let Some(r) = running(dir)? else {
        return Ok(false);
    };
    signal(r.pid, Signal::TERM)
        .map_err(io_err(format!("cannot stop the dashboard (pid {})", r.pid)))?;
    let waited = Duration::from_secs(10);
    let deadline = Instant::now() + waited;
    while pid_alive(r.pid) {
        if Instant::now() >= deadline {
            let _ = signal(r.pid, Signal::KILL);
            let _ = fs::remove_file(dir.join(RUN_FILE));
            return Err(Error::Timeout {
                what: format!("the dashboard (pid {}) to exit", r.pid),
                waited,
            });
        }
        std::thread::sleep(POLL);
    }
    let _ = fs::remove_file(dir.join(RUN_FILE));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn the_token_is_made_once_private_and_then_kept() -> TestResult {
        let dir = tempfile::tempdir()?;
        let first = token(dir.path())?;
        assert_eq!(first.len(), 64);
        let mode = fs::metadata(token_path(dir.path()))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(token(dir.path())?, first);
        fs::write(token_path(dir.path()), "short\n")?;
        assert!(matches!(token(dir.path()), Err(Error::Invalid { .. })));
        Ok(())
    }

    #[test]
    fn the_running_file_counts_only_for_a_live_testnet_ui() -> TestResult {
        let dir = tempfile::tempdir()?;
        assert_eq!(running(dir.path())?, None);
        // This test is no `testnet ui`: its own record is not taken for a dashboard (as
        // a stale record naming a reused pid is not), and it removes it.
        write_running(dir.path(), "http://127.0.0.1:9/testnet")?;
        assert_eq!(
            recorded(dir.path())?.map(|r| r.pid),
            Some(std::process::id())
        );
        assert_eq!(running(dir.path())?, None);
        remove_running(dir.path());
        assert_eq!(recorded(dir.path())?, None);
        // A live process with `testnet ui` in its arguments is.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", "sh", "testnet", "ui"])
            .spawn()?;
        let record = json!({ "pid": child.id(), "url": "http://127.0.0.1:9/testnet" });
        fs::write(dir.path().join(RUN_FILE), record.to_string())?;
        let mut seen = None;
        for _ in 0..50 {
            seen = running(dir.path())?;
            if seen.is_some() {
                break;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen.map(|r| r.pid), Some(child.id()));
        assert_eq!(running(dir.path())?, None, "once it is gone");
        fs::write(dir.path().join(RUN_FILE), "{\"pid\": \"x\"}")?;
        assert!(running(dir.path()).is_err());
        Ok(())
    }
}
