//! Running the `datamesh` binary (or any command) from tests and benches: with none of
//! the caller's `DATAMESH_*` variables, under a deadline, its output captured in files
//! (no pipe can fill up), and the checks of how it ended.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use datamesh_testnet::run::{datamesh, run_within};
//!
//! # fn main() -> datamesh_testnet::Result<()> {
//! let binary = Path::new("target/release/datamesh");
//! let mut put = datamesh(binary, Path::new("/tmp/home"));
//! put.arg("put").arg("photo.jpg");
//! let id = run_within(put, Path::new("/tmp"), Duration::from_secs(60))?.ok("put")?;
//! let mut get = datamesh(binary, Path::new("/tmp/home"));
//! get.args(["get", "dm1nope"]);
//! let line = run_within(get, Path::new("/tmp"), Duration::from_secs(60))?
//!     .fails_with(1, "get of a mistyped id")?; // exit 1 and one `error: ` line
//! # Ok(()) }
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::error::{Error, Result, io_err};

/// The `DATAMESH_*` variables that would change what the binary does; removed from
/// every command this crate runs, so the caller's environment cannot leak in.
pub const SCRUBBED_ENV: [&str; 12] = [
    "DATAMESH_HOME",
    "DATAMESH_PASSWORD_FILE",
    "DATAMESH_KEY_FILE",
    "DATAMESH_PKCS11_PIN_FILE",
    "DATAMESH_TPM_TCTI",
    "DATAMESH_UNLOCK_SLOT",
    "DATAMESH_NEW_PASSWORD_FILE",
    "DATAMESH_LISTEN",
    "DATAMESH_API",
    "DATAMESH_QUOTA",
    "DATAMESH_PASSWORD",
    "DATAMESH_LOG",
];

/// How often a command under a deadline is polled where the kernel cannot wake the
/// waiter at its exit (no pidfd: Linux before 5.3).
const POLL: Duration = Duration::from_millis(5);

/// `BINARY --home HOME`, ready for arguments, with none of the caller's `DATAMESH_*`
/// variables ([`SCRUBBED_ENV`]; a variable set on the command afterwards is kept).
pub fn datamesh(binary: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(binary);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.arg("--home").arg(home);
    cmd
}

/// The binary `name` of the cargo build that built the running program: next to it, or
/// one folder up when the program is a test in `<target>/<profile>/deps/`. Whether it
/// exists is for the caller to see.
///
/// # Errors
/// [`Error::Io`] when the running program's path is unknown.
pub fn cargo_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(io_err("cannot find the running program"))?;
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    Ok(dir.join(name))
}

/// Runs `cmd` to completion without a deadline; its stdout, or [`Error::Command`] with
/// its stderr.
///
/// # Errors
/// [`Error::Io`] when it cannot run; [`Error::Command`] when it exits with a failure.
pub fn output(cmd: &mut Command) -> Result<Vec<u8>> {
    let line = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("cannot run {line}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Command {
            command: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// What a finished command left, and how long it took.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Outcome {
    /// Exit 0; the whole outcome.
    ///
    /// # Errors
    /// [`Error::Failed`] naming `what`, with the stderr.
    pub fn success(self, what: &str) -> Result<Self> {
        if self.code == Some(0) {
            Ok(self)
        } else {
            Err(Error::Failed {
                what: what.to_string(),
                code: self.code,
                stderr: self.stderr,
            })
        }
    }

    /// Exit 0; its stdout.
    ///
    /// # Errors
    /// As [`Outcome::success`].
    pub fn ok(self, what: &str) -> Result<Vec<u8>> {
        self.success(what).map(|o| o.stdout)
    }

    /// Exit 0; what it said on stderr.
    ///
    /// # Errors
    /// As [`Outcome::success`].
    pub fn ok_stderr(self, what: &str) -> Result<String> {
        self.success(what).map(|o| o.stderr)
    }

    /// Exit `code` and exactly one line on stderr, `error: ...`; that line.
    ///
    /// # Errors
    /// [`Error::WrongExit`]; [`Error::NotOneErrorLine`].
    pub fn fails_with(self, code: i32, what: &str) -> Result<String> {
        if self.code != Some(code) {
            return Err(Error::WrongExit {
                what: what.to_string(),
                expected: code,
                code: self.code,
                stderr: self.stderr,
            });
        }
        match self.stderr.lines().collect::<Vec<_>>()[..] {
            [line] if line.starts_with("error: ") => Ok(line.to_string()),
            _ => Err(Error::NotOneErrorLine {
                what: what.to_string(),
                stderr: self.stderr,
            }),
        }
    }
}

/// A command running in the background, its output going to files in a scratch folder;
/// killed when dropped unfinished.
#[derive(Debug)]
pub struct Running {
    child: Child,
    what: String,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
    limit: Duration,
}

impl Running {
    /// Starts `cmd` (stdin empty); [`Running::finish`] kills it `limit` after the start.
    ///
    /// # Errors
    /// [`Error::Io`] when the output files cannot be made or the command cannot run.
    pub fn spawn(mut cmd: Command, scratch: &Path, limit: Duration) -> Result<Self> {
        let n = unique();
        let (out, err) = (
            scratch.join(format!("cmd-{n}.out")),
            scratch.join(format!("cmd-{n}.err")),
        );
        let create = |path: &Path| {
            fs::File::create(path).map_err(io_err(format!("cannot create {}", path.display())))
        };
        let what = format!("{cmd:?}");
        // From before the fork: the time a user waits for the command.
        let started = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(create(&out)?)
            .stderr(create(&err)?)
            .spawn()
            .map_err(io_err(format!("cannot run {what}")))?;
        Ok(Self {
            child,
            what,
            out,
            err,
            started,
            limit,
        })
    }

    /// Whether it is still running.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be waited for.
    pub fn running(&mut self) -> Result<bool> {
        let status = self.child.try_wait();
        Ok(status
            .map_err(io_err(format!("cannot wait for {}", self.what)))?
            .is_none())
    }

    /// Waits for it to finish; killed at its deadline.
    ///
    /// # Errors
    /// [`Error::Timeout`] when it was killed at its deadline; [`Error::Io`] when it cannot
    /// be waited for or its output cannot be read.
    pub fn finish(mut self) -> Result<Outcome> {
        // Woken by the exit itself (a pidfd turns readable), so a command of a few
        // milliseconds is timed to the microsecond; polling every few milliseconds would
        // round it up by as much (the benchmark times `datamesh put` processes this way).
        let exit = pidfd_open(Pid::from_child(&self.child), PidfdFlags::empty()).ok();
        let status = loop {
            let status = self.child.try_wait();
            if let Some(status) =
                status.map_err(io_err(format!("cannot wait for {}", self.what)))?
            {
                break status;
            }
            let left = self.limit.saturating_sub(self.started.elapsed());
            if left.is_zero() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(Error::Timeout {
                    what: format!("{} to finish (killed it)", self.what),
                    waited: self.limit,
                });
            }
            // Readable at the exit. Interrupted, or failing (then never a busy loop), the
            // wait falls back to one poll interval and the loop asks again.
            let woken = match (&exit, Timespec::try_from(left)) {
                (Some(exit), Ok(left)) => {
                    poll(&mut [PollFd::new(exit, PollFlags::IN)], Some(&left)).is_ok()
                }
                _ => false,
            };
            if !woken {
                std::thread::sleep(POLL.min(left));
            }
        };
        let elapsed = self.started.elapsed();
        let read =
            |path: &Path| fs::read(path).map_err(io_err(format!("cannot read {}", path.display())));
        let outcome = Outcome {
            code: status.code(),
            stdout: read(&self.out)?,
            stderr: String::from_utf8_lossy(&read(&self.err)?).into_owned(),
            elapsed,
        };
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
        Ok(outcome)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion within `limit` (killed after it), its output captured
/// through files in `scratch`.
///
/// # Errors
/// As [`Running::spawn`] and [`Running::finish`]; a failed exit is not an error here
/// (check it with [`Outcome::ok`] or [`Outcome::fails_with`]).
pub fn run_within(cmd: Command, scratch: &Path, limit: Duration) -> Result<Outcome> {
    Running::spawn(cmd, scratch, limit)?.finish()
}

/// A number no other call in this process returns (for scratch file names).
pub fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One at a time: a test holding this guard is the only one of its process that runs a
/// testnet (several testnets in parallel on a small machine would only contend).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn outcomes_are_checked() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let limit = Duration::from_secs(30);
        let ok = run_within(sh("echo out; echo note >&2"), dir.path(), limit)?;
        assert_eq!(
            (ok.code, &ok.stdout[..], &ok.stderr[..]),
            (Some(0), &b"out\n"[..], "note\n")
        );
        assert_eq!(
            run_within(sh("echo out"), dir.path(), limit)?.ok("echo")?,
            b"out\n"
        );
        let failed = run_within(sh("echo 'error: no' >&2; exit 3"), dir.path(), limit)?;
        assert!(matches!(
            failed.success("x"),
            Err(Error::Failed { code: Some(3), .. })
        ));
        let failed = run_within(sh("echo 'error: no' >&2; exit 3"), dir.path(), limit)?;
        assert_eq!(failed.fails_with(3, "x")?, "error: no");
        let two = run_within(sh("echo a >&2; echo b >&2; exit 3"), dir.path(), limit)?;
        assert!(matches!(
            two.fails_with(3, "x"),
            Err(Error::NotOneErrorLine { .. })
        ));
        let other = run_within(sh("exit 4"), dir.path(), limit)?;
        assert!(matches!(
            other.fails_with(3, "x"),
            Err(Error::WrongExit {
                expected: 3,
                code: Some(4),
                ..
            })
        ));
        // The output files are gone.
        assert_eq!(
            fs::read_dir(dir.path())
                .map_err(io_err("read_dir"))?
                .count(),
            0
        );
        Ok(())
    }

    #[test]
    fn a_command_past_its_deadline_is_killed() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let started = Instant::now();
        let slow = run_within(sh("sleep 30"), dir.path(), Duration::from_millis(200));
        assert!(matches!(slow, Err(Error::Timeout { .. })), "{slow:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let mut running = Running::spawn(sh("sleep 30"), dir.path(), Duration::from_secs(60))?;
        assert!(running.running()?);
        drop(running); // killed, not waited for 30 s
        assert!(started.elapsed() < Duration::from_secs(10));
        Ok(())
    }

    #[test]
    fn datamesh_commands_get_no_datamesh_variables() {
        let cmd = datamesh(Path::new("/bin/datamesh"), Path::new("/h"));
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(removed.len(), SCRUBBED_ENV.len());
        assert_eq!(
            cmd.get_args().collect::<Vec<_>>(),
            [std::ffi::OsStr::new("--home"), std::ffi::OsStr::new("/h")]
        );
    }
}
