//! Running the `datamesh` binary with a deadline. (The node's local HTTP API is reached
//! through `datamesh_api::Client`, the client the CLI uses.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use datamesh_api::{API_TOKEN_FILE, Client, RunFile};
use datamesh_core::FileId;

/// What a finished command left, and how long it took.
#[derive(Debug)]
pub struct Outcome {
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

/// Runs `cmd` to completion within `deadline` (killed after it), its output captured
/// through files in `scratch` so that no pipe can fill up. A non-zero exit is an error
/// carrying the stderr.
///
/// # Errors
/// Spawn failure, the deadline, or a failed exit.
pub fn run(mut cmd: Command, scratch: &Path, deadline: Duration) -> anyhow::Result<Outcome> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = scratch.join(format!("cmd-{n}.out"));
    let err_path = scratch.join(format!("cmd-{n}.err"));
    let line = format!("{cmd:?}");
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("cannot run {line}"))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{line} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let stdout = std::fs::read(&out_path)?;
    let stderr = std::fs::read_to_string(&err_path)?;
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    ensure!(
        status.success(),
        "{line} failed ({status}): {}",
        stderr.trim()
    );
    Ok(Outcome {
        stdout,
        stderr,
        elapsed,
    })
}

/// How long one call of the benchmark to a node's API may take.
const API_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of the node that published `run`, whose home is `home` (its token); calls
/// time out after two minutes.
///
/// # Errors
/// When the token cannot be read.
pub fn api_client(run: &RunFile, home: &Path) -> anyhow::Result<Client> {
    let token_path = home.join(API_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read {}", token_path.display()))?;
    Ok(Client::new(run.api, &token).with_timeout(API_TIMEOUT))
}

/// `GET /v1/files/ID` through `client`: the whole file, in memory.
///
/// # Errors
/// A malformed id, transport errors, an error answer, or a short body.
pub fn get_bytes(client: &Client, id: &str) -> anyhow::Result<Vec<u8>> {
    let id: FileId = id
        .parse()
        .with_context(|| format!("{id} is not a file id"))?;
    let mut bytes = Vec::new();
    client.get(&id)?.copy_to(&mut bytes)?;
    Ok(bytes)
}
