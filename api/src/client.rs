//! The blocking client of a node's local API.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use datamesh_core::FileId;
use datamesh_core::Recipient;
use serde::de::DeserializeOwned;

use crate::{
    BLAKE3_HEADER, BlockPeers, BlockedPeers, CheckReport, ClientError, CorruptedShard, ErrorBody,
    ErrorKind, FILE_SIZE_HEADER, KeyUsage, ListedFile, MTIME_HEADER, NAME_HEADER, Peer, PutResult,
    ReencryptReport, RemoveReport, RewrapAll, RewrapReport, SEGMENT_SIZE_HEADER, Status,
    decode_name,
};

/// A streaming download.
pub struct Download {
    /// The bytes the body carries: the file's size, or the range's length.
    pub size: u64,
    /// The stored file name.
    pub name: String,
    /// The whole file's size (also for a range).
    pub file_size: u64,
    /// The file's modification time as sealed in its metadata, if any.
    pub mtime: Option<u64>,
    /// The BLAKE3 of the whole file (from its sealed metadata), if the node sent it.
    pub blake3: Option<[u8; 32]>,
    /// The file's segment size, if the node sent it.
    pub segment_size: Option<u64>,
    /// The body: it ends early when the node fails mid-stream.
    pub body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("name", &self.name)
            .field("file_size", &self.file_size)
            .field("mtime", &self.mtime)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Copies the whole body to `out`; the bytes copied.
    ///
    /// # Errors
    /// [`ClientError::Interrupted`] when reading or writing fails, or the body is not
    /// exactly [`Download::size`] bytes.
    pub fn copy_to(self, out: &mut impl Write) -> Result<u64, ClientError> {
        let expected = self.size;
        let mut body = self.body;
        let copied =
            std::io::copy(&mut body, out).map_err(|e| ClientError::Interrupted(e.to_string()))?;
        if copied != expected {
            return Err(ClientError::Interrupted(format!(
                "got {copied} of {expected} bytes"
            )));
        }
        Ok(copied)
    }
}

/// The query of a call that may ask for revoked keys.
fn revoked_query(allow_revoked: bool) -> Vec<(&'static str, String)> {
    match allow_revoked {
        true => vec![("allow_revoked", "1".to_string())],
        false => Vec::new(),
    }
}

/// The API client: one node, one token.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    token: String,
    agent: ureq::Agent,
    timeout: Option<Duration>,
    buffer_bytes: usize,
    fresh_connections: bool,
    segment_size: Option<u64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The size of each of a connection's two buffers (what is read from and written to the
/// socket at most per call) by default: ureq's own.
const BUFFER_BYTES: usize = 128 * 1024;

/// The buffers of [`Client::for_small_transfers`]: enough for the API's response headers
/// (a few hundred bytes) and a small body in a few writes.
const SMALL_BUFFER_BYTES: usize = 16 * 1024;

fn agent(timeout: Option<Duration>, buffer_bytes: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(timeout)
        .input_buffer_size(buffer_bytes)
        .output_buffer_size(buffer_bytes)
        .build()
        .new_agent()
}

impl Client {
    /// A client of the node whose API is at `addr`, authenticating with `token`
    /// (surrounding whitespace ignored). Connecting times out after 5 s; a call has no
    /// deadline (a put or get streams as long as the file) unless
    /// [`Client::with_timeout`] sets one.
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            token: token.trim().to_string(),
            agent: agent(None, BUFFER_BYTES),
            timeout: None,
            buffer_bytes: BUFFER_BYTES,
            fresh_connections: false,
            segment_size: None,
        }
    }

    /// Every call must finish within `timeout` (default: no deadline).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.agent = agent(self.timeout, self.buffer_bytes);
        self
    }

    /// Connections with 16 KiB buffers instead of 128 KiB, for a process that sends or
    /// receives a few KiB: each connection allocates and zeroes its two buffers, which
    /// cost a one-shot `datamesh put` of 4 KiB 60 of its 220 page faults. Any size still
    /// goes through, in more reads and writes: a 256 MiB get took about twice the
    /// system time.
    #[must_use]
    pub fn for_small_transfers(mut self) -> Self {
        self.buffer_bytes = SMALL_BUFFER_BYTES;
        self.agent = agent(self.timeout, self.buffer_bytes);
        self
    }

    /// One new TCP connection per call (`Connection: close`), as the CLI makes one per
    /// command; by default connections are kept alive and reused.
    #[must_use]
    pub fn with_fresh_connections(mut self, fresh: bool) -> Self {
        self.fresh_connections = fresh;
        self
    }

    /// Puts cut their files into segments of `bytes` (a power of two from 64 KiB to
    /// 16 MiB, checked by the node; `None`, the default: the node's, 1 MiB). Larger
    /// segments mean fewer requests per byte, a faster large put; a resumable put's
    /// session is continued only with the size it began with.
    #[must_use]
    pub fn with_segment_size(mut self, bytes: Option<u64>) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The segment size puts ask for ([`Client::with_segment_size`]).
    pub fn segment_size(&self) -> Option<u64> {
        self.segment_size
    }

    fn request<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let request = request.header("authorization", format!("Bearer {}", self.token));
        if self.fresh_connections {
            request.header("connection", "close")
        } else {
            request
        }
    }

    fn get_request(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.request(self.agent.get(format!("http://{}{path}", self.addr)))
    }

    fn post_request(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.request(self.agent.post(format!("http://{}{path}", self.addr)))
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
                kind: ErrorKind::Http,
                message: format!("the node answered HTTP {status}"),
            },
        })
    }

    fn json<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        self.answer(result)?
            .into_body()
            .read_json()
            .map_err(|e| ClientError::Interrupted(e.to_string()))
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(self.get_request(path).call())
    }

    /// `POST path?query` with an empty body, answering JSON.
    fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut request = self.post_request(path);
        for (key, value) in query {
            request = request.query(*key, value);
        }
        self.json(request.send_empty())
    }

    fn put_request(
        &self,
        name: &str,
        to: &[Recipient],
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut request = self.post_request("/v1/files").query("name", name);
        if let Some(bytes) = self.segment_size {
            request = request.query("segment_size", bytes.to_string());
        }
        for key in to {
            request = request.query("to", key.to_string());
        }
        request
    }

    /// Asks whether a put to `to` would pass the node's recipient policy (before a body
    /// is streamed: a refused put would only show as a broken connection).
    ///
    /// # Errors
    /// See [`ClientError`]; the refusal is an API error with the node's message.
    pub fn check_recipients(&self, to: &[Recipient]) -> Result<(), ClientError> {
        let query: Vec<(&str, String)> = to.iter().map(|k| ("to", k.to_string())).collect();
        self.post_json::<serde_json::Value>("/v1/recipients/check", &query)
            .map(|_| ())
    }

    /// Stores a file, streaming `body`, under `name`; `to` are further keys to give
    /// access (sharing).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put(
        &self,
        mut body: impl Read,
        name: &str,
        to: &[Recipient],
    ) -> Result<PutResult, ClientError> {
        let body = ureq::SendBody::from_reader(&mut body);
        self.json(self.put_request(name, to).send(body))
    }

    /// As [`Client::put`], sealing `mtime` (seconds since the Unix epoch: the real file's
    /// modification time) in the file's metadata instead of the put time.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put_with_mtime(
        &self,
        mut body: impl Read,
        name: &str,
        mtime: Option<u64>,
        to: &[Recipient],
    ) -> Result<PutResult, ClientError> {
        let body = ureq::SendBody::from_reader(&mut body);
        let mut request = self.put_request(name, to);
        if let Some(mtime) = mtime {
            request = request.query("mtime", mtime.to_string());
        }
        self.json(request.send(body))
    }

    /// As [`Client::put_with_mtime`], resumable: `session` (32 lowercase hex, chosen by
    /// the caller and kept until the put succeeds) names the put, so that running it
    /// again with the same session and the same bytes after an interruption continues it
    /// (the node does not send again the stripes it placed;
    /// [`PutResult::resumed_stripes`]).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put_resumable(
        &self,
        mut body: impl Read,
        name: &str,
        mtime: Option<u64>,
        to: &[Recipient],
        session: &str,
    ) -> Result<PutResult, ClientError> {
        let body = ureq::SendBody::from_reader(&mut body);
        let mut request = self.put_request(name, to).query("session", session);
        if let Some(mtime) = mtime {
            request = request.query("mtime", mtime.to_string());
        }
        self.json(request.send(body))
    }

    /// Stores a file held in memory (sent with its `Content-Length`, not chunked).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn put_bytes(
        &self,
        body: &[u8],
        name: &str,
        to: &[Recipient],
    ) -> Result<PutResult, ClientError> {
        self.json(self.put_request(name, to).send(body))
    }

    /// Starts a download; the caller streams [`Download::body`] and must check that it
    /// yields exactly [`Download::size`] bytes ([`Download::copy_to`] does).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn get(&self, id: &FileId) -> Result<Download, ClientError> {
        self.get_with(id, false)
    }

    /// As [`Client::get`]; `allow_revoked` asks for the explicit override of incident
    /// recovery (revoked keys may open the file, and the node logs it).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn get_with(&self, id: &FileId, allow_revoked: bool) -> Result<Download, ClientError> {
        self.get_range(id, allow_revoked, None)
    }

    /// As [`Client::get_with`], of bytes `start..=last` only when `range` is
    /// `Some((start, last))` (`last` past the end is cut to the end): the node fetches
    /// only the stripes that cover them, each segment authenticated; the whole file's
    /// BLAKE3 cannot be checked for a part.
    ///
    /// # Errors
    /// See [`ClientError`]; a range outside the file is [`ErrorKind::BadRange`].
    pub fn get_range(
        &self,
        id: &FileId,
        allow_revoked: bool,
        range: Option<(u64, u64)>,
    ) -> Result<Download, ClientError> {
        let mut request = self.get_request(&format!("/v1/files/{id}"));
        if allow_revoked {
            request = request.query("allow_revoked", "1");
        }
        if let Some((start, last)) = range {
            request = request.header("range", format!("bytes={start}-{last}"));
        }
        let response = self.answer(request.call())?;
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
        let name = header(NAME_HEADER)
            .map(|n| decode_name(&n))
            .unwrap_or_default();
        let file_size = header(FILE_SIZE_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(size);
        let mtime = header(MTIME_HEADER).and_then(|v| v.parse().ok());
        let segment_size = header(SEGMENT_SIZE_HEADER).and_then(|v| v.parse().ok());
        let blake3 = header(BLAKE3_HEADER)
            .and_then(|v| data_encoding::HEXLOWER.decode(v.as_bytes()).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok());
        let body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        Ok(Download {
            size,
            name,
            file_size,
            mtime,
            blake3,
            segment_size,
            body: Box::new(body),
        })
    }

    /// Re-wraps one file's data key to the node's active key and to `to` (sharing).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn rewrap(&self, id: &FileId, to: &[Recipient]) -> Result<RewrapReport, ClientError> {
        self.rewrap_with(id, to, false)
    }

    /// As [`Client::rewrap`]; `allow_revoked`: revoked keys may open the current
    /// envelope (the explicit override of incident recovery).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn rewrap_with(
        &self,
        id: &FileId,
        to: &[Recipient],
        allow_revoked: bool,
    ) -> Result<RewrapReport, ClientError> {
        let mut query: Vec<(&str, String)> = to.iter().map(|k| ("to", k.to_string())).collect();
        query.extend(revoked_query(allow_revoked));
        self.post_json(&format!("/v1/files/{id}/envelope"), &query)
    }

    /// Re-wraps every file of the node's catalog to its active key; `allow_revoked` as
    /// in [`Client::rewrap_with`].
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn rewrap_all(&self, allow_revoked: bool) -> Result<RewrapAll, ClientError> {
        self.post_json("/v1/rewrap", &revoked_query(allow_revoked))
    }

    /// Re-encrypts one file of the node's catalog under a fresh data key (new shards, a
    /// new file id; the old copies released); `allow_revoked` as in
    /// [`Client::rewrap_with`].
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn reencrypt(
        &self,
        id: &FileId,
        allow_revoked: bool,
    ) -> Result<ReencryptReport, ClientError> {
        self.post_json(
            &format!("/v1/files/{id}/reencrypt"),
            &revoked_query(allow_revoked),
        )
    }

    /// Removes one of the node's files from the network (owner only).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn remove(&self, id: &FileId) -> Result<RemoveReport, ClientError> {
        self.post_json(&format!("/v1/files/{id}/remove"), &[])
    }

    /// Per file of the catalog, the key ids of the node's keys that open it (revoked
    /// versions too with `allow_revoked`).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn key_usage(&self, allow_revoked: bool) -> Result<Vec<KeyUsage>, ClientError> {
        let mut request = self.get_request("/v1/key-usage");
        if allow_revoked {
            request = request.query("allow_revoked", "1");
        }
        self.json(request.call())
    }

    /// The catalog.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn list(&self) -> Result<Vec<ListedFile>, ClientError> {
        self.get_json("/v1/files")
    }

    /// Checks a file: which shards are healthy on which peers; `verify` fetches and
    /// hashes every copy, `repair` rebuilds and re-places what is missing.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn check(
        &self,
        id: &FileId,
        verify: bool,
        repair: bool,
    ) -> Result<CheckReport, ClientError> {
        let flag = |on: bool| if on { "1" } else { "0" }.to_string();
        self.post_json(
            &format!("/v1/files/{id}/check"),
            &[("verify", flag(verify)), ("repair", flag(repair))],
        )
    }

    /// Audits every copy of a file's shards found (a random chunk and its proof each).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn audit(&self, id: &FileId) -> Result<crate::AuditReport, ClientError> {
        self.post_json(&format!("/v1/files/{id}/audit"), &[])
    }

    /// Test faults only (the node must run with `DATAMESH_TEST_FAULTS=1`): flips bytes of
    /// a stored shard, given by id (`shard`) or as any held shard of `file` (optionally of
    /// one stripe and index).
    ///
    /// # Errors
    /// See [`ClientError`]; a node without test faults answers 404.
    pub fn debug_corrupt_shard(
        &self,
        shard: Option<&str>,
        file: Option<&FileId>,
        stripe: Option<u64>,
        index: Option<u64>,
    ) -> Result<CorruptedShard, ClientError> {
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
    /// (peer ids) the node's set of blocked peers; an empty list unblocks all.
    ///
    /// # Errors
    /// See [`ClientError`]; a node without test faults answers 404.
    pub fn debug_block_peers(&self, peers: &[String]) -> Result<BlockedPeers, ClientError> {
        let body = BlockPeers {
            peers: peers.to_vec(),
        };
        self.json(self.post_request("/v1/debug/block-peers").send_json(&body))
    }

    /// The node's state.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn status(&self) -> Result<Status, ClientError> {
        self.get_json("/v1/status")
    }

    /// The node's Prometheus text (`GET /metrics`).
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.answer(self.get_request("/metrics").call())?
            .into_body()
            .read_to_string()
            .map_err(|e| ClientError::Interrupted(e.to_string()))
    }

    /// The node's routing table.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub fn peers(&self) -> Result<Vec<Peer>, ClientError> {
        self.get_json("/v1/peers")
    }
}
