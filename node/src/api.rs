//! The local HTTP API (127.0.0.1 only), the CLI's way into the node.
//!
//! Every route needs `Authorization: Bearer <token>` with the token kept in the node's
//! home (`api-token`, 0600), compared in constant time. Bodies stream both ways: a put
//! is encoded while it uploads, a get is decoded while it downloads.
//!
//! | route                  | what                                                     |
//! |------------------------|----------------------------------------------------------|
//! | `POST /v1/files?name=` | store the body; answers `{"id", "size", "stripes", ...}` |
//! | `GET /v1/files/{id}`   | the file's bytes (`Content-Length` set; a broken stream means the get failed) |
//! | `GET /v1/files`        | the catalog                                              |
//! | `POST /v1/files/{id}/envelope?to=` | re-wrap the data key (to the active key, and `to` keys: sharing) |
//! | `POST /v1/rewrap`      | re-wrap every file of the catalog                        |
//! | `GET /v1/key-usage`    | per file, the key ids of this node's keys that open it   |
//! | `POST /v1/files/{id}/check?verify=1&repair=1` | check (verify, repair) a file: the JSON report of [`crate::check::CheckReport::to_json`] |
//! | `GET /v1/status`       | peer id, addresses, peers, shards, bytes stored, quota, files below full health |
//! | `GET /v1/peers`        | the routing table                                        |
//! | `GET /metrics`         | Prometheus text                                          |
//! | `POST /v1/debug/corrupt-shard?shard=HEX` or `?file=ID[&stripe=N][&index=N]` | test faults only (see [`crate::faults`]): flip bytes of a stored shard |
//! | `POST /v1/debug/block-peers` body `{"peers": [PEER, ...]}` | test faults only: block exactly these peers (`[]`: none); answers `{"blocked": [...], "peer_id"}` |
//!
//! Errors are JSON `{"error": "<one line>", "kind": "<machine name>"}` with a status that
//! tells the kind (400 bad input, 401 token, 403 no key, 404 not found, 503 not enough
//! shards or peers, 507 storage full, 500 anything else).

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use datamesh_core::ecies::PublicKey;
use datamesh_core::{DecodeError, FileId};
use futures::TryStreamExt;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::check::{CheckError, Checker, RepairError};
use crate::faults::TestFaults;
use crate::files::{Files, GetError, KeyUsageError, PutError, RewrapError};
use crate::metrics::Metrics;
use crate::network::Network;
use crate::store::ShardStore;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) files: Files,
    pub(crate) checker: Checker,
    pub(crate) net: Network,
    pub(crate) store: Arc<ShardStore>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Arc<ApiToken>,
    pub(crate) faults: TestFaults,
}

/// The bearer token. Never printed.
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps the token text (surrounding whitespace ignored).
    pub fn new(token: &str) -> Self {
        Self(token.trim().to_string())
    }

    fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes())) && !self.0.is_empty()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

pub(crate) fn router(state: ApiState) -> Router {
    let mut routes = Router::new();
    if state.faults.debug_api() {
        routes = routes.route(
            "/v1/debug/corrupt-shard",
            axum::routing::post(corrupt_shard),
        );
        routes = routes.route("/v1/debug/block-peers", axum::routing::post(block_peers));
    }
    routes
        .route("/v1/files", get(list_files).post(put_file))
        .route("/v1/files/{id}/check", axum::routing::post(check_file))
        .route("/v1/files/{id}", get(get_file))
        .route("/v1/files/{id}/envelope", axum::routing::post(rewrap_file))
        .route("/v1/rewrap", axum::routing::post(rewrap_all))
        .route("/v1/key-usage", get(key_usage))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if state.token.matches(token) => next.run(request).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token: use the token in the node's home (api-token)",
        ),
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": message, "kind": kind })),
    )
        .into_response()
}

/// A request the API refuses with 400: its kind and message.
struct BadRequest(&'static str, String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0, &self.1)
    }
}

/// A file id from the path.
fn parse_id(text: &str) -> Result<FileId, BadRequest> {
    text.parse()
        .map_err(|e: datamesh_core::IdError| BadRequest("bad_id", e.to_string()))
}

fn put_error(e: &PutError) -> Response {
    let (status, kind) = match e {
        PutError::NotEnoughPeers { .. } | PutError::ManifestCopies { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "not_enough_peers")
        }
        PutError::Encode(_) => (StatusCode::BAD_REQUEST, "input"),
        PutError::Keys(_) | PutError::Seal { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "keystore")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, kind, &e.to_string())
}

fn get_error(e: &GetError) -> Response {
    let (status, kind) = match e {
        GetError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        GetError::NoKey(_) => (StatusCode::FORBIDDEN, "no_key"),
        GetError::InsufficientShards { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "insufficient_shards")
        }
        GetError::Decode(DecodeError::InsufficientShards { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, "insufficient_shards")
        }
        GetError::Decode(_) => (StatusCode::UNPROCESSABLE_ENTITY, "integrity"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, kind, &e.to_string())
}

fn rewrap_error(e: &RewrapError) -> Response {
    let (status, kind) = match e {
        RewrapError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        RewrapError::NoKey(_) => (StatusCode::FORBIDDEN, "no_key"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, kind, &e.to_string())
}

/// A check or repair that found no manifest (404), or failed otherwise (500).
fn check_error(not_found: bool, message: &str) -> Response {
    let (status, kind) = match not_found {
        true => (StatusCode::NOT_FOUND, "not_found"),
        false => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, kind, message)
}

async fn put_file(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
    body: Body,
) -> Response {
    let mut name = String::from("unnamed");
    let mut recipients = Vec::new();
    for (k, v) in query {
        match k.as_str() {
            "name" => name = v,
            "to" => match v.parse::<PublicKey>() {
                Ok(pk) => recipients.push(pk),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_key",
                        &format!("--to {v}: not a secp256k1 public key (66 hex characters)"),
                    );
                }
            },
            _ => {}
        }
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    match state.files.put(reader, name, recipients).await {
        Ok(report) => axum::Json(json!({
            "id": report.id.to_string(),
            "size": report.size,
            "stripes": report.stripes,
            "peers": report.peers,
            "manifest_copies": report.manifest_copies,
        }))
        .into_response(),
        Err(e) => put_error(&e),
    }
}

fn rewrap_json(r: &crate::files::RewrapReport) -> serde_json::Value {
    json!({
        "id": r.id.to_string(),
        "sequence": r.sequence,
        "recipients": r.recipients,
        "peers": r.peers,
        "bytes_sent": r.bytes_sent,
    })
}

/// Re-wraps one file's data key to the active key (and `?to=` keys: sharing).
async fn rewrap_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let mut add = Vec::new();
    for (k, v) in query {
        if k == "to" {
            match v.parse::<PublicKey>() {
                Ok(pk) => add.push(pk),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_key",
                        &format!("--to {v}: not a secp256k1 public key (66 hex characters)"),
                    );
                }
            }
        }
    }
    match state.files.rewrap(id, add).await {
        Ok(report) => axum::Json(rewrap_json(&report)).into_response(),
        Err(e) => rewrap_error(&e),
    }
}

/// Re-wraps every file of the catalog to the active key.
async fn rewrap_all(State(state): State<ApiState>) -> Response {
    let catalog = state.files.catalog().clone();
    let entries = match tokio::task::spawn_blocking(move || catalog.list()).await {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "catalog", &e.to_string()),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for entry in entries {
        match state.files.rewrap(entry.id, Vec::new()).await {
            Ok(report) => done.push(rewrap_json(&report)),
            Err(e) => failed.push(json!({"id": entry.id.to_string(), "error": e.to_string()})),
        }
    }
    axum::Json(json!({"rewrapped": done, "failed": failed})).into_response()
}

fn key_usage_error(e: &KeyUsageError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        &e.to_string(),
    )
}

/// Which of this node's keys open each of its files (for `keys destroy`).
async fn key_usage(State(state): State<ApiState>) -> Response {
    let files = state.files.clone();
    match tokio::task::spawn_blocking(move || files.key_usage()).await {
        Ok(Ok(usage)) => axum::Json(
            usage
                .iter()
                .map(|(id, keys)| {
                    json!({
                        "id": id.to_string(),
                        "keys": keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Ok(Err(e)) => key_usage_error(&e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

/// Sends what the decoder writes to the HTTP body in 256 KiB chunks.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

async fn get_file(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let file = match state.files.open(id).await {
        Ok(file) => file,
        Err(e) => return get_error(&e),
    };
    let size = file.metadata.size;
    let name = file.metadata.name.clone();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let files = state.files.clone();
    tokio::spawn(async move {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = files.read(file, writer).await {
            tracing::warn!(file = %id, "get failed mid-stream: {e}");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&name)) {
        headers.insert("x-datamesh-name", v);
    }
    (headers, Body::from_stream(stream)).into_response()
}

/// Percent-encodes everything but unreserved ASCII, so any name fits in a header.
fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn list_files(State(state): State<ApiState>) -> Response {
    let catalog = state.files.catalog().clone();
    match tokio::task::spawn_blocking(move || catalog.list()).await {
        Ok(Ok(entries)) => axum::Json(
            entries
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id.to_string(),
                        "name": e.name,
                        "size": e.size,
                        "stripes": e.stripes,
                        "created": e.created,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "catalog", &e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    let info = match state.net.info().await {
        Ok(info) => info,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "network", &e.to_string()),
    };
    state.metrics.dht_peers.set(info.routing_table_peers as i64);
    let store = Arc::clone(&state.store);
    let stored = tokio::task::spawn_blocking(move || (store.used_bytes(), store.shard_count()))
        .await
        .ok();
    let (bytes, shards) = match stored {
        Some((Ok(b), Ok(s))) => (b, s),
        _ => (0, 0),
    };
    let last_check = state.checker.last_self_check();
    axum::Json(json!({
        "peer_id": info.peer_id.to_string(),
        "listen_addresses": info.listen_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "connected_peers": info.connected_peers,
        "routing_table_peers": info.routing_table_peers,
        "shards": shards,
        "bytes_stored": bytes,
        "quota_bytes": state.store.config().max_bytes(),
        "files_below_full_health": last_check.as_ref().map(|c| c.below_full_health.len()),
        "below_full_health": last_check.as_ref().map(|c| c.below_full_health.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "last_self_check": last_check.as_ref().map(|c| c.finished),
    }))
    .into_response()
}

async fn peers(State(state): State<ApiState>) -> Response {
    match state.net.peers().await {
        Ok(peers) => axum::Json(
            peers
                .iter()
                .map(|p| {
                    json!({
                        "peer_id": p.peer_id.to_string(),
                        "addresses": p.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "connected": p.connected,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "network", &e.to_string()),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    (headers, state.metrics.render()).into_response()
}

fn flag(query: &[(String, String)], name: &str) -> Result<bool, BadRequest> {
    match query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
    {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true" | "") => Ok(true),
        Some(other) => Err(BadRequest(
            "bad_query",
            format!("{name}={other}: use 1 or 0"),
        )),
    }
}

/// Checks a file (`verify=1`: fetch and hash every copy; `repair=1`: rebuild what is
/// missing). Answers the report whatever the file's state; errors only when the file
/// cannot be found at all.
async fn check_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    let id = parse_id(&id)?;
    let (verify, repair) = (flag(&query, "verify")?, flag(&query, "repair")?);
    let result = if repair {
        (state.checker.repair(id, verify).await)
            .map_err(|e| check_error(matches!(e, RepairError::NotFound(_)), &e.to_string()))
    } else {
        (state.checker.check(id, verify).await)
            .map_err(|e| check_error(matches!(e, CheckError::NotFound(_)), &e.to_string()))
    };
    Ok(match result {
        Ok(report) => axum::Json(report.to_json()).into_response(),
        Err(response) => response,
    })
}

/// A shard the debug route may corrupt: its file and (stripe, index) when known.
type CorruptTarget = (Option<FileId>, Option<(u64, usize)>, datamesh_core::ShardId);

/// Test faults only: flips bytes of one stored shard (by id, or any held shard of a file).
async fn corrupt_shard(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    let get = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let number = |name: &str| -> Result<Option<u64>, BadRequest> {
        get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| BadRequest("bad_query", format!("{name}={v}: not a number")))
            })
            .transpose()
    };
    let (stripe, index) = (number("stripe")?, number("index")?);
    let mut targets: Vec<CorruptTarget> = Vec::new();
    match (get("shard"), get("file")) {
        (Some(shard), None) => {
            let id = shard
                .parse()
                .map_err(|e| BadRequest("bad_id", format!("shard {shard}: {e}")))?;
            targets.push((None, None, id));
        }
        (None, Some(file)) => {
            let id = parse_id(&file)?;
            let manifest = match state.files.manifest_of(id).await {
                Ok(m) => m,
                Err(e) => return Ok(get_error(&e)),
            };
            for (s, row) in manifest.stripes().iter().enumerate() {
                for (i, shard) in row.iter().enumerate() {
                    if stripe.is_none_or(|x| x == s as u64) && index.is_none_or(|x| x == i as u64) {
                        targets.push((Some(id), Some((s as u64, i)), *shard));
                    }
                }
            }
        }
        _ => {
            return Err(BadRequest(
                "bad_query",
                "give exactly one of shard=HEX or file=ID".into(),
            ));
        }
    }
    let store = Arc::clone(&state.store);
    let done = tokio::task::spawn_blocking(move || {
        for (file, position, shard) in targets {
            match store.corrupt_for_test(&shard) {
                Ok(true) => return Ok(Some((file, position, shard))),
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    })
    .await;
    Ok(match done {
        Ok(Ok(Some((file, position, shard)))) => {
            tracing::warn!(shard = %shard.short(), "TEST FAULT: corrupted a stored shard");
            axum::Json(json!({
                "shard": shard.to_string(),
                "file": file.map(|f| f.to_string()),
                "stripe": position.map(|p| p.0),
                "index": position.map(|p| p.1),
                "peer_id": state.net.peer_id().to_string(),
            }))
            .into_response()
        }
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this node holds no such shard",
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", &e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        ),
    })
}

/// Test faults only: replaces the set of blocked peers (see
/// [`Network::set_blocked_peers`]). Body `{"peers": [PEER, ...]}`; `[]` unblocks all.
async fn block_peers(State(state): State<ApiState>, body: Bytes) -> Result<Response, BadRequest> {
    let bad = |m: String| BadRequest("bad_body", m);
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("body is not JSON {{\"peers\": [...]}}: {e}")))?;
    let list = value
        .get("peers")
        .and_then(|p| p.as_array())
        .ok_or_else(|| bad("body needs \"peers\": a list of peer ids".into()))?;
    let mut peers = std::collections::HashSet::new();
    for p in list {
        let text = p
            .as_str()
            .ok_or_else(|| bad(format!("peer {p} is not a string")))?;
        let peer: libp2p::PeerId = text
            .parse()
            .map_err(|e| bad(format!("{text} is not a peer id: {e}")))?;
        peers.insert(peer);
    }
    Ok(match state.net.set_blocked_peers(peers).await {
        Ok(blocked) => axum::Json(json!({
            "blocked": blocked.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "peer_id": state.net.peer_id().to_string(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "network", &e.to_string()),
    })
}
