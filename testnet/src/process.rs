//! Signals to node processes by pid: the nodes of a testnet attached from another
//! process are not our children, so they are watched and signalled by pid alone.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::error::{Error, Result};

/// How often waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(100);

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Whether a process with this id exists and has not exited. A zombie (exited, not yet
/// reaped by its parent: a node started by another process that has not waited for it
/// yet) has exited.
pub(crate) fn pid_alive(pid: u32) -> bool {
    to_pid(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok()) && !zombie(pid)
}

/// Whether process `pid` is a zombie (`/proc/PID/stat`'s state, after the name in
/// parentheses, is `Z`).
fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The arguments of process `pid` (`/proc/PID/cmdline`), empty if it is gone or
/// unreadable.
fn arguments(pid: u32) -> Vec<Vec<u8>> {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Whether process `pid` runs with `flag PATH` among its arguments, PATH naming the same
/// file as `path` (a relative PATH resolved against the process's working directory).
/// A pid read from a file left behind (a `node.json` after a SIGKILL) may by now belong
/// to another program, which must never be signalled.
pub(crate) fn runs_with_path(pid: u32, flag: &str, path: &Path) -> bool {
    let Ok(want) = path.canonicalize() else {
        return false;
    };
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    arguments(pid).windows(2).any(|w| {
        let arg = Path::new(OsStr::from_bytes(&w[1]));
        let full = match &cwd {
            Some(cwd) if arg.is_relative() => cwd.join(arg),
            _ => arg.to_path_buf(),
        };
        w[0] == flag.as_bytes() && full.canonicalize().is_ok_and(|f| f == want)
    })
}

/// Whether process `pid` has `words`, one after the other, among its arguments (e.g.
/// `testnet ui`): the same guard as [`runs_with_path`] for a pid from a file.
pub(crate) fn runs_with_words(pid: u32, words: &[&str]) -> bool {
    arguments(pid)
        .windows(words.len().max(1))
        .any(|w| w.iter().zip(words).all(|(a, b)| a == b.as_bytes()))
}

/// Sends `sig` to process `pid`.
pub(crate) fn signal(pid: u32, sig: Signal) -> io::Result<()> {
    let pid = to_pid(pid).ok_or_else(|| io::Error::other(format!("{pid} is not a pid")))?;
    rustix::process::kill_process(pid, sig).map_err(io::Error::from)
}

/// Waits until a process that is not our child is gone; SIGKILLs it at the deadline.
pub(crate) fn wait_gone(pid: u32, timeout: Duration, index: usize) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            let _ = signal(pid, Signal::KILL);
            return Err(Error::Timeout {
                what: format!("node {index} (pid {pid}) to exit"),
                waited: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_taken_for_a_node_only_with_its_home_in_its_arguments() -> io::Result<()> {
        let dir = std::env::temp_dir();
        // A shell that stays the process (a second command after the sleep), with the
        // arguments a node of `dir` would have and `testnet ui`.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; :", "sh", "--home"])
            .arg(&dir)
            .args(["testnet", "ui"])
            .spawn()?;
        let pid = child.id();
        let mut seen = false;
        for _ in 0..50 {
            seen = runs_with_path(pid, "--home", &dir);
            if seen {
                break;
            }
            std::thread::sleep(POLL);
        }
        assert!(seen, "the child's own home");
        assert!(runs_with_words(pid, &["testnet", "ui"]));
        assert!(!runs_with_words(pid, &["ui", "testnet"]));
        assert!(!runs_with_path(pid, "--home", Path::new("/")));
        assert!(!runs_with_path(pid, "--dir", &dir));
        // This test's own process is no node of `dir`.
        assert!(!runs_with_path(std::process::id(), "--home", &dir));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!runs_with_path(pid, "--home", &dir), "a reaped process");
        Ok(())
    }

    #[test]
    fn a_killed_process_not_yet_reaped_is_not_alive() -> io::Result<()> {
        let mut child = std::process::Command::new("sleep").arg("30").spawn()?;
        let pid = child.id();
        assert!(pid_alive(pid));
        signal(pid, Signal::KILL)?;
        // Not reaped yet: a zombie, which a wait for it to be gone must take as gone.
        let mut gone = false;
        for _ in 0..50 {
            gone = !pid_alive(pid);
            if gone {
                break;
            }
            std::thread::sleep(POLL);
        }
        assert!(gone, "a zombie counted as alive");
        wait_gone(pid, Duration::from_secs(5), 0).map_err(io::Error::other)?;
        child.wait()?;
        Ok(())
    }
}
