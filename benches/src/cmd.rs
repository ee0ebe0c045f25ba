//! The node's local HTTP API, as the benchmark drives it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

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
