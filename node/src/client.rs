//! A blocking client of a node's local API, for the CLI (and anyone scripting a node).

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use datamesh_core::FileId;
use datamesh_core::ecies::PublicKey;
use serde::Deserialize;

/// What `POST /v1/files` answers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PutResult {
    /// The file id (text form).
    pub id: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes.
    pub stripes: u64,
    /// Distinct peers holding shards.
    pub peers: usize,
    /// Manifest copies stored.
    pub manifest_copies: usize,
}

/// One catalog entry as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ListedFile {
    /// The file id (text form).
    pub id: String,
    /// Name given at put time.
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes.
    pub stripes: u64,
    /// Put time, seconds since the Unix epoch.
    pub created: u64,
}

/// A client error: the node's own message when it answered, otherwise why it could not
/// be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node is not running (or not at this address).
    #[error("cannot reach the node's API at {addr}: {reason} (is `datamesh node run` running?)")]
    Unreachable {
        /// The API address tried.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable kind (`not_found`, `insufficient_shards`, ...).
        kind: String,
        /// The node's one-line message.
        message: String,
    },
    /// The transfer broke off (the node failed mid-stream).
    #[error("transfer interrupted: {0}")]
    Interrupted(String),
}

/// A streaming download.
pub struct Download {
    /// The file's size.
    pub size: u64,
    /// The stored file name.
    pub name: String,
    /// The body.
    pub body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The API client.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    kind: String,
}

impl Client {
    /// A client of the node whose API is at `addr`, authenticating with `token`.
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        Self {
            addr,
            token: token.trim().to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let response = result.map_err(|e| ClientError::Unreachable {
            addr: self.addr,
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status < 400 {
            return Ok(response);
        }
        let body: Option<ErrorBody> = response.into_body().read_json().ok();
        Err(match body {
            Some(b) => ClientError::Api {
                status,
                kind: b.kind,
                message: b.error,
            },
            None => ClientError::Api {
                status,
                kind: "http".into(),
                message: format!("the node answered HTTP {status}"),
            },
        })
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.answer(
            self.agent
                .get(self.url(path))
                .header("authorization", format!("Bearer {}", self.token))
                .call(),
        )?;
        response
            .into_body()
            .read_json()
            .map_err(|e| ClientError::Interrupted(e.to_string()))
    }

    /// `POST path?query` with an empty body, answering JSON.
    fn post_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<serde_json::Value, ClientError> {
        let mut request = self
            .agent
            .post(self.url(path))
            .header("authorization", format!("Bearer {}", self.token));
        for (key, value) in query {
            request = request.query(*key, value);
        }
        let response = self.answer(request.send_empty())?;
        response
            .into_body()
            .read_json()
            .map_err(|e| ClientError::Interrupted(e.to_string()))
    }

    /// Stores a file, streaming `body`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put(
        &self,
        body: impl Read + Send + 'static,
        name: &str,
        to: &[PublicKey],
    ) -> Result<PutResult, ClientError> {
        let mut request = self
            .agent
            .post(self.url("/v1/files"))
            .header("authorization", format!("Bearer {}", self.token))
            .query("name", name);
        for key in to {
            request = request.query("to", key.to_string());
        }
        let mut body = body;
        let response = self.answer(request.send(ureq::SendBody::from_reader(&mut body)))?;
        response
            .into_body()
            .read_json()
            .map_err(|e| ClientError::Interrupted(e.to_string()))
    }

    /// Starts a download; the caller streams [`Download::body`] and must check that it
    /// yields exactly [`Download::size`] bytes.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn get(&self, id: &FileId) -> Result<Download, ClientError> {
        let response = self.answer(
            self.agent
                .get(self.url(&format!("/v1/files/{id}")))
                .header("authorization", format!("Bearer {}", self.token))
                .call(),
        )?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let size = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let name = header("x-datamesh-name")
            .map(|n| percent_decode(&n))
            .unwrap_or_default();
        let body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        Ok(Download {
            size,
            name,
            body: Box::new(body),
        })
    }

    /// Re-wraps one file's data key to the node's active key and to `to` (sharing).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn rewrap(&self, id: &FileId, to: &[PublicKey]) -> Result<serde_json::Value, ClientError> {
        let query: Vec<(&str, String)> = to.iter().map(|k| ("to", k.to_string())).collect();
        self.post_json(&format!("/v1/files/{id}/envelope"), &query)
    }

    /// Re-wraps every file of the node's catalog to its active key.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn rewrap_all(&self) -> Result<serde_json::Value, ClientError> {
        self.post_json("/v1/rewrap", &[])
    }

    /// Per file of the catalog, the key ids (hex) of the node's keys that open it.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn key_usage(&self) -> Result<Vec<(String, Vec<String>)>, ClientError> {
        #[derive(Deserialize)]
        struct Row {
            id: String,
            keys: Vec<String>,
        }
        let rows: Vec<Row> = self.get_json("/v1/key-usage")?;
        Ok(rows.into_iter().map(|r| (r.id, r.keys)).collect())
    }

    /// The catalog.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn list(&self) -> Result<Vec<ListedFile>, ClientError> {
        self.get_json("/v1/files")
    }

    /// Checks a file: which shards are healthy on which peers; `verify` fetches and
    /// hashes every copy, `repair` rebuilds and re-places what is missing. Answers the
    /// report of [`crate::health::CheckReport::to_json`].
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn check(
        &self,
        id: &FileId,
        verify: bool,
        repair: bool,
    ) -> Result<serde_json::Value, ClientError> {
        let flag = |on: bool| if on { "1" } else { "0" }.to_string();
        self.post_json(
            &format!("/v1/files/{id}/check"),
            &[("verify", flag(verify)), ("repair", flag(repair))],
        )
    }

    /// Test faults only (the node must run with `DATAMESH_TEST_FAULTS=1`): flips bytes of
    /// a stored shard, given by id (`shard`) or as any held shard of `file` (optionally of
    /// one stripe and index). Answers `{"shard", "file", "stripe", "index", "peer_id"}`.
    ///
    /// # Errors
    /// See [`ClientError`]; a node without test faults answers 404.
    pub fn debug_corrupt_shard(
        &self,
        shard: Option<&str>,
        file: Option<&FileId>,
        stripe: Option<u64>,
        index: Option<u64>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(shard) = shard {
            query.push(("shard", shard.to_string()));
        }
        if let Some(file) = file {
            query.push(("file", file.to_string()));
        }
        if let Some(stripe) = stripe {
            query.push(("stripe", stripe.to_string()));
        }
        if let Some(index) = index {
            query.push(("index", index.to_string()));
        }
        self.post_json("/v1/debug/corrupt-shard", &query)
    }

    /// Test faults only (the node must run with `DATAMESH_TEST_FAULTS=1`): makes `peers`
    /// (peer ids) the node's set of blocked peers; an empty list unblocks all. Answers
    /// `{"blocked": [PEER, ...], "peer_id"}`.
    ///
    /// # Errors
    /// See [`ClientError`]; a node without test faults answers 404.
    pub fn debug_block_peers(&self, peers: &[String]) -> Result<serde_json::Value, ClientError> {
        let response = self.answer(
            self.agent
                .post(self.url("/v1/debug/block-peers"))
                .header("authorization", format!("Bearer {}", self.token))
                .send_json(serde_json::json!({ "peers": peers })),
        )?;
        response
            .into_body()
            .read_json()
            .map_err(|e| ClientError::Interrupted(e.to_string()))
    }

    /// `GET /v1/status` as JSON.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn status(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/status")
    }

    /// `GET /v1/peers` as JSON.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn peers(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/peers")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
