//! What the end-to-end test files (`e2e.rs`, `faults.rs`, `recovery.rs`) share: running
//! the `datamesh` binary under a deadline with its output captured, the outcome checks,
//! reproducible input files. Each test file is its own crate and uses part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_datamesh");
pub(crate) const MIB: usize = 1 << 20;

/// One test at a time: each starts a testnet of node processes; in parallel on a small
/// machine they would only contend.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A number no other call in this process returns (for scratch file names).
pub(crate) fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `datamesh --home HOME` with none of the caller's `DATAMESH_*` variables.
pub(crate) fn datamesh(home: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for var in datamesh_testnet::SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.arg("--home").arg(home);
    cmd
}

/// What a finished command left.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Outcome {
    /// Success; its stdout.
    pub(crate) fn ok(self, what: &str) -> anyhow::Result<Vec<u8>> {
        ensure!(
            self.code == Some(0),
            "{what} failed with {:?}: {}",
            self.code,
            self.stderr
        );
        Ok(self.stdout)
    }

    /// Success, and what it said on stderr.
    pub(crate) fn ok_stderr(self, what: &str) -> anyhow::Result<String> {
        let stderr = self.stderr.clone();
        self.ok(what).map(|_| stderr)
    }

    /// Exit `code` and exactly one line on stderr, `error: ...`; that line.
    pub(crate) fn fails_with(self, code: i32, what: &str) -> anyhow::Result<String> {
        ensure!(
            self.code == Some(code),
            "{what}: expected exit {code}, got {:?}; stderr: {}",
            self.code,
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        ensure!(
            lines.len() == 1 && lines[0].starts_with("error: "),
            "{what}: expected one `error: ` line on stderr, got {:?}",
            self.stderr
        );
        Ok(lines[0].to_string())
    }
}

/// A command running in the background, its output going to files (no pipe can fill);
/// killed when dropped unfinished.
pub(crate) struct Running {
    child: Child,
    what: String,
    out: PathBuf,
    err: PathBuf,
    deadline: Instant,
}

impl Running {
    /// Starts `cmd`; [`Running::finish`] kills it after `limit`.
    pub(crate) fn spawn(mut cmd: Command, scratch: &Path, limit: Duration) -> anyhow::Result<Self> {
        let n = unique();
        let (out, err) = (
            scratch.join(format!("cmd-{n}.out")),
            scratch.join(format!("cmd-{n}.err")),
        );
        let what = format!("{cmd:?}");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out)?)
            .stderr(fs::File::create(&err)?)
            .spawn()
            .with_context(|| format!("cannot run {what}"))?;
        Ok(Self {
            child,
            what,
            out,
            err,
            deadline: Instant::now() + limit,
        })
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Waits for it to finish; killed (and an error) at its deadline.
    pub(crate) fn finish(mut self) -> anyhow::Result<Outcome> {
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not finish within its deadline", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let outcome = Outcome {
            code: status.code(),
            stdout: fs::read(&self.out)?,
            stderr: fs::read_to_string(&self.err)?,
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

/// Runs `cmd` to completion within `limit` (killed after it).
pub(crate) fn run_within(cmd: Command, scratch: &Path, limit: Duration) -> anyhow::Result<Outcome> {
    Running::spawn(cmd, scratch, limit)?.finish()
}

/// splitmix64: reproducible pseudo-random numbers from a printed seed.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`), close enough for test schedules.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A file `dir/in-LEN-SEED` of `len` pseudo-random (incompressible, reproducible) bytes.
pub(crate) fn make_file(dir: &Path, len: usize, seed: u64) -> anyhow::Result<PathBuf> {
    let mut rng = SplitMix(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        bytes.extend_from_slice(&rng.next().to_le_bytes());
    }
    bytes.truncate(len);
    let path = dir.join(format!("in-{len}-{seed}"));
    fs::write(&path, bytes)?;
    Ok(path)
}

/// `actual` holds exactly the bytes of `expected`.
pub(crate) fn assert_same_file(expected: &Path, actual: &Path) -> anyhow::Result<()> {
    let (a, b) = (fs::read(expected)?, fs::read(actual)?);
    ensure!(
        a == b,
        "{} ({} bytes) differs from {} ({} bytes)",
        actual.display(),
        b.len(),
        expected.display(),
        a.len()
    );
    Ok(())
}
