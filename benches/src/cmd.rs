//! Running the `datamesh` binary with a deadline, and the node's local HTTP API.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

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

/// A client of one node's local HTTP API (address from its `node.json`, bearer token
/// from its home's `api-token`).
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
    fresh_connections: bool,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// The API of the node at `addr` (`host:port`) whose home is `home`.
    ///
    /// # Errors
    /// When the token cannot be read.
    pub fn new(addr: &str, home: &Path) -> anyhow::Result<Self> {
        let token_path = home.join("api-token");
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Ok(Self {
            base: format!("http://{addr}"),
            token: token.trim().to_string(),
            agent,
            fresh_connections: false,
        })
    }

    /// One new TCP connection per request (`Connection: close`), as the CLI makes one
    /// per command; the default keeps connections alive and reuses them.
    #[must_use]
    pub fn fresh_connections(mut self, fresh: bool) -> Self {
        self.fresh_connections = fresh;
        self
    }

    fn connection(&self) -> &'static str {
        if self.fresh_connections {
            "close"
        } else {
            "keep-alive"
        }
    }

    fn check(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let response = response.with_context(|| format!("{what}: no answer"))?;
        let status = response.status().as_u16();
        if status >= 400 {
            let body = response.into_body().read_to_string().unwrap_or_default();
            bail!("{what}: HTTP {status}: {}", body.trim());
        }
        Ok(response)
    }

    /// `POST /v1/files?name=NAME[&to=KEY]` with `body`; the new file id.
    ///
    /// # Errors
    /// Transport errors, an error answer, or no id in it.
    pub fn put(&self, name: &str, body: &[u8], to: Option<&str>) -> anyhow::Result<String> {
        let mut request = self
            .agent
            .post(format!("{}/v1/files", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("connection", self.connection())
            .query("name", name);
        if let Some(key) = to {
            request = request.query("to", key);
        }
        let json: Value = Self::check(request.send(body), "put")?
            .into_body()
            .read_json()?;
        json["id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("put answered {json} without an id"))
    }

    /// `GET /v1/files/ID`: the file's bytes.
    ///
    /// # Errors
    /// Transport errors or an error answer.
    pub fn get(&self, id: &str) -> anyhow::Result<Vec<u8>> {
        let response = Self::check(
            self.agent
                .get(format!("{}/v1/files/{id}", self.base))
                .header("authorization", format!("Bearer {}", self.token))
                .header("connection", self.connection())
                .call(),
            "get",
        )?;
        Ok(response
            .into_body()
            .into_with_config()
            .limit(1 << 30)
            .read_to_vec()?)
    }

    /// `GET PATH` as JSON.
    ///
    /// # Errors
    /// Transport errors or an error answer.
    pub fn json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(Self::check(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {}", self.token))
                .call(),
            path,
        )?
        .into_body()
        .read_json()?)
    }
}
