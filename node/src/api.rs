//! The local HTTP API (127.0.0.1 only), the CLI's way into the node.
//!
//! Every route needs `Authorization: Bearer <token>` with the token kept in the node's
//! home (`api-token`, 0600), compared in constant time. Bodies stream both ways: a put
//! is encoded while it uploads, a get is decoded while it downloads.
//!
//! The routes, their bodies and the error bodies are defined once, in `datamesh-api`
//! (its crate docs have the route table); this module serves them. The debug routes
//! exist only with test faults (see [`crate::faults`]). Errors are JSON
//! [`ErrorBody`]`{"error": "<one line>", "kind": "<machine name>"}` with the status of
//! their [`ErrorKind`] (400 bad input, 401 token, 403 no key, 404 not found, 422 integrity,
//! 503 not enough shards or peers, 500 anything else).

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
use datamesh_api::{self as wire, ErrorBody, ErrorKind};
use datamesh_core::{ByteRange, DecodeError, FileId};
use datamesh_core::{Recipient, RecipientError, SegmentSize};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use crate::check::{CheckError, Checker, RepairError};
use crate::faults::TestFaults;
use crate::files::{
    Files, GetError, KeyAccess, KeyUsageError, PutError, PutSession, ReencryptError, RemoveError,
    RewrapError, RewrapReport,
};
use crate::metrics::Metrics;
use crate::network::Network;
use crate::store::ShardStore;

mod upload;

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

    pub(crate) fn matches(&self, presented: &str) -> bool {
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
        .route(
            "/v1/recipients/check",
            axum::routing::post(check_recipients),
        )
        .route("/v1/files/{id}/check", axum::routing::post(check_file))
        .route("/v1/files/{id}", get(get_file))
        .route("/v1/files/{id}/envelope", axum::routing::post(rewrap_file))
        .route(
            "/v1/files/{id}/reencrypt",
            axum::routing::post(reencrypt_file),
        )
        .route("/v1/files/{id}/remove", axum::routing::post(remove_file))
        .route("/v1/files/{id}/audit", axum::routing::post(audit_file))
        .route("/v1/rewrap", axum::routing::post(rewrap_all))
        .route("/v1/key-usage", get(key_usage))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state.clone())
        .merge(crate::ui::router(state))
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
            ErrorKind::Unauthorized,
            "missing or wrong API token: use the token in the node's home (api-token)",
        ),
    }
}

fn error(kind: ErrorKind, message: &str) -> Response {
    let status = StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        error: message.to_string(),
        kind,
    };
    (status, axum::Json(body)).into_response()
}

/// A request the API refuses (a 400 kind): its kind and message.
struct BadRequest(ErrorKind, String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// A file id from the path.
fn parse_id(text: &str) -> Result<FileId, BadRequest> {
    text.parse()
        .map_err(|e: datamesh_core::IdError| BadRequest(ErrorKind::BadId, e.to_string()))
}

fn put_error(e: &PutError) -> Response {
    let kind = match e {
        PutError::NotEnoughPeers { .. }
        | PutError::ManifestCopies { .. }
        | PutError::EnvelopeCopies { .. } => ErrorKind::NotEnoughPeers,
        PutError::Encode(_) | PutError::SourceChanged { .. } => ErrorKind::Input,
        PutError::SessionBusy(_) => ErrorKind::BadQuery,
        PutError::Session(_) => ErrorKind::Input,
        PutError::Policy(_) => ErrorKind::BadKey,
        PutError::Keys(_) | PutError::Seal { .. } | PutError::NoAuthority => ErrorKind::Keystore,
        _ => ErrorKind::Internal,
    };
    error(kind, &e.to_string())
}

fn get_error(e: &GetError) -> Response {
    let kind = match e {
        GetError::NotFound(_) => ErrorKind::NotFound,
        GetError::NoKey(_) => ErrorKind::NoKey,
        GetError::InsufficientShards { .. } => ErrorKind::InsufficientShards,
        GetError::Decode(DecodeError::InsufficientShards { .. }) => ErrorKind::InsufficientShards,
        GetError::Decode(_) => ErrorKind::Integrity,
        _ => ErrorKind::Internal,
    };
    error(kind, &e.to_string())
}

/// A recipient from `?to=`: a hybrid recipient (`dmpq1...`) or a secp256k1 key (hex).
fn parse_key(text: &str) -> Result<Recipient, BadRequest> {
    text.parse().map_err(|e: RecipientError| {
        let shown: String = text.chars().take(24).collect();
        let more = if text.chars().count() > 24 { "..." } else { "" };
        BadRequest(ErrorKind::BadKey, format!("--to {shown}{more}: {e}"))
    })
}

fn rewrap_error(e: &RewrapError) -> Response {
    let kind = match e {
        RewrapError::NotFound(_) => ErrorKind::NotFound,
        RewrapError::NoKey(_) | RewrapError::NotOwner(_) => ErrorKind::NoKey,
        RewrapError::Policy(_) => ErrorKind::BadKey,
        RewrapError::EnvelopeCopies { .. } => ErrorKind::NotEnoughPeers,
        _ => ErrorKind::Internal,
    };
    error(kind, &e.to_string())
}

/// A check or repair that found no manifest (404), or failed otherwise (500).
fn check_error(not_found: bool, message: &str) -> Response {
    let kind = match not_found {
        true => ErrorKind::NotFound,
        false => ErrorKind::Internal,
    };
    error(kind, message)
}

async fn put_file(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
    body: Body,
) -> Response {
    let mut name = String::from("unnamed");
    let mut mtime = None;
    let mut recipients = Vec::new();
    let mut session = None;
    let mut segment = SegmentSize::DEFAULT;
    for (k, v) in query {
        match k.as_str() {
            "name" => name = v,
            "segment_size" => match v.parse::<u64>().map(SegmentSize::new) {
                Ok(Ok(size)) => segment = size,
                Ok(Err(e)) => return error(ErrorKind::BadQuery, &e.to_string()),
                Err(_) => {
                    return error(
                        ErrorKind::BadQuery,
                        &format!("segment_size={v}: not a number of bytes"),
                    );
                }
            },
            "session" => match v.parse::<PutSession>() {
                Ok(id) => session = Some(id),
                Err(e) => return error(ErrorKind::BadQuery, &e.to_string()),
            },
            "mtime" => match v.parse::<u64>() {
                Ok(t) => mtime = Some(t),
                Err(_) => {
                    return error(
                        ErrorKind::BadQuery,
                        &format!("mtime={v}: not a number of seconds since 1970"),
                    );
                }
            },
            "to" => match parse_key(&v) {
                Ok(pk) => recipients.push(pk),
                Err(e) => return e.into_response(),
            },
            _ => {}
        }
    }
    let input = upload::read(body, wire::PUT_READ_WHOLE).await;
    let put = state
        .files
        .put_resumable(input, name, mtime, recipients, session, segment)
        .await;
    match put {
        Ok(report) => axum::Json(wire::PutResult {
            resumed_stripes: report.resumed_stripes,
            id: report.id.to_string(),
            size: report.size,
            stripes: report.stripes,
            peers: report.peers,
            manifest_copies: report.manifest_copies,
            envelope_copies: report.envelope_copies,
        })
        .into_response(),
        Err(e) => put_error(&e),
    }
}

/// Whether a put to `?to=` recipients would pass the recipient policy: asked before a
/// put streams its body (a put refused before its body is read would reach the client
/// as a broken connection, not as the refusal).
async fn check_recipients(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let mut recipients = Vec::new();
    for (k, v) in query {
        if k == "to" {
            match parse_key(&v) {
                Ok(pk) => recipients.push(pk),
                Err(e) => return e.into_response(),
            }
        }
    }
    match state.files.check_recipients(&recipients) {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(e) => put_error(&e),
    }
}

fn rewrap_report(r: &RewrapReport) -> wire::RewrapReport {
    wire::RewrapReport {
        id: r.id.to_string(),
        sequence: r.sequence,
        recipients: r.recipients,
        peers: r.peers,
        bytes_sent: r.bytes_sent,
    }
}

/// Re-wraps one file's data key to the active key (and `?to=` keys: sharing).
async fn rewrap_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    let id = parse_id(&id)?;
    let access = access(&query)?;
    let mut add = Vec::new();
    for (k, v) in query {
        if k == "to" {
            add.push(parse_key(&v)?);
        }
    }
    Ok(match state.files.rewrap_with(id, add, access).await {
        Ok(report) => axum::Json(rewrap_report(&report)).into_response(),
        Err(e) => rewrap_error(&e),
    })
}

/// Re-wraps every file of the catalog to the active key.
async fn rewrap_all(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    let access = access(&query)?;
    let catalog = state.files.catalog().clone();
    let entries = match tokio::task::spawn_blocking(move || catalog.list()).await {
        Ok(Ok(entries)) => entries,
        Ok(Err(e)) => return Ok(error(ErrorKind::Catalog, &e.to_string())),
        Err(e) => return Ok(error(ErrorKind::Internal, &e.to_string())),
    };
    let mut all = wire::RewrapAll::default();
    for entry in entries {
        match state.files.rewrap_with(entry.id, Vec::new(), access).await {
            Ok(report) => all.rewrapped.push(rewrap_report(&report)),
            Err(e) => all.failed.push(wire::RewrapFailure {
                id: entry.id.to_string(),
                error: e.to_string(),
            }),
        }
    }
    Ok(axum::Json(all).into_response())
}

fn key_usage_error(e: &KeyUsageError) -> Response {
    error(ErrorKind::Internal, &e.to_string())
}

/// Which of this node's keys open each of its files (for `keys destroy`).
async fn key_usage(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    let access = access(&query)?;
    let files = state.files.clone();
    Ok(
        match tokio::task::spawn_blocking(move || files.key_usage(access)).await {
            Ok(Ok(usage)) => axum::Json(
                usage
                    .iter()
                    .map(|(id, keys)| wire::KeyUsage {
                        id: id.to_string(),
                        keys: keys.iter().map(ToString::to_string).collect(),
                    })
                    .collect::<Vec<_>>(),
            )
            .into_response(),
            Ok(Err(e)) => key_usage_error(&e),
            Err(e) => error(ErrorKind::Internal, &e.to_string()),
        },
    )
}

fn reencrypt_error(e: &ReencryptError) -> Response {
    let kind = match e {
        ReencryptError::NotFound(_) => ErrorKind::NotFound,
        ReencryptError::Get { source, .. } => return get_error(source),
        ReencryptError::Put { source, .. } => return put_error(source),
        _ => ErrorKind::Internal,
    };
    error(kind, &e.to_string())
}

/// Re-encrypts one file of the catalog under a fresh data key (a new file id; the old
/// copies released). Runs as its own task: a client that goes away does not cut it
/// short between the new copy's put and the catalog update.
async fn reencrypt_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, BadRequest> {
    let id = parse_id(&id)?;
    let access = access(&query)?;
    let files = state.files.clone();
    let task = tokio::spawn(async move { files.reencrypt(id, access).await });
    Ok(match task.await {
        Ok(Ok(r)) => axum::Json(wire::ReencryptReport {
            old: r.old.to_string(),
            new: r.new.to_string(),
            size: r.size,
            stripes: r.stripes,
            released: r.released,
            release_failures: r.release_failures,
        })
        .into_response(),
        Ok(Err(e)) => reencrypt_error(&e),
        Err(e) => error(ErrorKind::Internal, &e.to_string()),
    })
}

/// Removes one of the catalog's files from the network (owner only). Runs as its own
/// task: a client that goes away does not cut it short between the holders' removal and
/// the catalog update.
async fn remove_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, BadRequest> {
    let id = parse_id(&id)?;
    let files = state.files.clone();
    let task = tokio::spawn(async move { files.remove(id).await });
    Ok(match task.await {
        Ok(Ok(r)) => axum::Json(wire::RemoveReport {
            id: r.file.to_string(),
            asked: r.asked,
            confirmed: r.confirmed,
            failed: r.failed,
        })
        .into_response(),
        Ok(Err(e)) => {
            let kind = match e {
                RemoveError::NotFound(_) => ErrorKind::NotFound,
                RemoveError::NotOwner(_) => ErrorKind::NoKey,
                RemoveError::Keys(_) => ErrorKind::Keystore,
                RemoveError::Catalog(_) => ErrorKind::Catalog,
                _ => ErrorKind::Internal,
            };
            error(kind, &e.to_string())
        }
        Err(e) => error(ErrorKind::Internal, &e.to_string()),
    })
}

/// Audits every copy of a file's shards found (`datamesh check --audit`).
async fn audit_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, BadRequest> {
    let id = parse_id(&id)?;
    Ok(match state.checker.audit(id).await {
        Ok(r) => axum::Json(wire::AuditReport {
            id: r.id.to_string(),
            challenged: r.challenged,
            passed: r.passed,
            failed: r
                .failed
                .iter()
                .map(|(peer, shard)| wire::AuditFailure {
                    peer: peer.to_string(),
                    shard: shard.to_string(),
                })
                .collect(),
            unanswered: r.unanswered,
            proof_bytes: r.proof_bytes,
            shard_bytes: r.shard_bytes,
        })
        .into_response(),
        Err(e) => check_error(
            matches!(e, crate::check::CheckError::NotFound(_)),
            &e.to_string(),
        ),
    })
}

/// Sends what the decoder writes to the HTTP body in 256 KiB chunks, always holding the
/// last bytes back until [`Write::flush`], which the get calls only once the decoder has
/// verified the whole file (its BLAKE3 included). A file that fails that last check thus
/// never reaches its full `Content-Length`: the client sees a short body, never a
/// complete one (before, a size that is a multiple of the chunk had every byte sent
/// when the check failed).
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // Each byte is copied once, into a chunk-sized buffer; a full buffer is sent only
        // when another byte arrives, so the last bytes always stay for the final flush.
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == CHUNK {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
                self.send(full)?;
            }
            let n = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(chunk)
    }
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&self, chunk: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// Streams a file, or the one `Range` asked for (206, only the stripes covering it
/// fetched, each segment authenticated; the whole-file BLAKE3 cannot be checked for a
/// part).
async fn get_file(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    request_headers: HeaderMap,
) -> Response {
    let (id, access) = match parse_id(&id).and_then(|id| Ok((id, access(&query)?))) {
        Ok(parsed) => parsed,
        Err(e) => return e.into_response(),
    };
    // A read of the whole file needs stripe 0 first: it is fetched while the file opens.
    let opened = if request_headers.contains_key(header::RANGE) {
        state.files.open_to_read(id, access).await
    } else {
        state.files.open_to_read_whole(id, access).await
    };
    let mut file = match opened {
        Ok(file) => file,
        Err(e) => return get_error(&e),
    };
    let size = file.metadata.size;
    let range = match request_headers.get(header::RANGE) {
        None => None,
        Some(value) => {
            let parsed = value
                .to_str()
                .map_err(|_| "Range: not text".to_string())
                .and_then(|v| wire::parse_range(v, size))
                .and_then(|(start, last)| {
                    ByteRange::new(start, last, size).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(range) => Some(range),
                Err(message) => return error(ErrorKind::BadRange, &message),
            }
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(wire::FILE_SIZE_HEADER, HeaderValue::from(size));
    if let Ok(v) = HeaderValue::from_str(&wire::encode_name(&file.metadata.name)) {
        headers.insert(wire::NAME_HEADER, v);
    }
    headers.insert(
        wire::SEGMENT_SIZE_HEADER,
        HeaderValue::from(file.manifest.segment_size().bytes() as u64),
    );
    if let Some(mtime) = file.metadata.mtime {
        headers.insert(wire::MTIME_HEADER, HeaderValue::from(mtime));
    }
    if let Ok(v) = HeaderValue::from_str(&data_encoding::HEXLOWER.encode(&file.metadata.blake3)) {
        headers.insert(wire::BLAKE3_HEADER, v);
    }
    // A small file is decoded here and sent in one piece, with no task, thread or
    // channel between (its only stripe came while it was opened).
    if range.is_none()
        && let Some(read) = state.files.try_read_small(&mut file)
    {
        return match read {
            Ok(bytes) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                (StatusCode::OK, headers, Body::from(bytes)).into_response()
            }
            Err(e) => get_error(&e),
        };
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let files = state.files.clone();
    let status = match range {
        Some(range) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
            let content_range = format!("bytes {}-{}/{size}", range.start(), range.end() - 1);
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            tokio::spawn(async move {
                let writer = ChannelWriter::new(tx.clone());
                if let Err(e) = files.read_range(file, range, writer).await {
                    tracing::warn!(file = %id, "range get failed mid-stream: {e}");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            });
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            tokio::spawn(async move {
                let writer = ChannelWriter::new(tx.clone());
                if let Err(e) = files.read(file, writer).await {
                    tracing::warn!(file = %id, "get failed mid-stream: {e}");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            });
            StatusCode::OK
        }
    };
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (status, headers, Body::from_stream(stream)).into_response()
}

async fn list_files(State(state): State<ApiState>) -> Response {
    let catalog = state.files.catalog().clone();
    match tokio::task::spawn_blocking(move || catalog.list()).await {
        Ok(Ok(entries)) => axum::Json(
            entries
                .iter()
                .map(|e| wire::ListedFile {
                    id: e.id.to_string(),
                    name: e.name.clone(),
                    size: e.size,
                    stripes: e.stripes,
                    created: e.created,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Ok(Err(e)) => error(ErrorKind::Catalog, &e.to_string()),
        Err(e) => error(ErrorKind::Internal, &e.to_string()),
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    let info = match state.net.info().await {
        Ok(info) => info,
        Err(e) => return error(ErrorKind::Network, &e.to_string()),
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
    axum::Json(wire::Status {
        peer_id: info.peer_id.to_string(),
        listen_addresses: info
            .listen_addresses
            .iter()
            .map(ToString::to_string)
            .collect(),
        connected_peers: info.connected_peers as u64,
        routing_table_peers: info.routing_table_peers as u64,
        shards,
        bytes_stored: bytes,
        quota_bytes: state.store.config().max_bytes(),
        files_below_full_health: last_check
            .as_ref()
            .map(|c| c.below_full_health.len() as u64),
        below_full_health: last_check.as_ref().map(|c| {
            c.below_full_health
                .iter()
                .map(ToString::to_string)
                .collect()
        }),
        last_self_check: last_check.as_ref().map(|c| c.finished),
    })
    .into_response()
}

async fn peers(State(state): State<ApiState>) -> Response {
    match state.net.peers().await {
        Ok(peers) => axum::Json(
            peers
                .iter()
                .map(|p| wire::Peer {
                    peer_id: p.peer_id.to_string(),
                    addresses: p.addresses.iter().map(ToString::to_string).collect(),
                    connected: p.connected,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(ErrorKind::Network, &e.to_string()),
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
            ErrorKind::BadQuery,
            format!("{name}={other}: use 1 or 0"),
        )),
    }
}

/// `allow_revoked=1`: the explicit override of incident recovery (revoked keys may
/// decrypt for this one request; the node logs it).
fn access(query: &[(String, String)]) -> Result<KeyAccess, BadRequest> {
    Ok(match flag(query, "allow_revoked")? {
        true => KeyAccess::WithRevoked,
        false => KeyAccess::Live,
    })
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
        Ok(report) => axum::Json(report.to_api()).into_response(),
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
                v.parse::<u64>().map_err(|_| {
                    BadRequest(ErrorKind::BadQuery, format!("{name}={v}: not a number"))
                })
            })
            .transpose()
    };
    let (stripe, index) = (number("stripe")?, number("index")?);
    let mut targets: Vec<CorruptTarget> = Vec::new();
    match (get("shard"), get("file")) {
        (Some(shard), None) => {
            let id = shard
                .parse()
                .map_err(|e| BadRequest(ErrorKind::BadId, format!("shard {shard}: {e}")))?;
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
                ErrorKind::BadQuery,
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
            axum::Json(wire::CorruptedShard {
                shard: shard.to_string(),
                file: file.map(|f| f.to_string()),
                stripe: position.map(|p| p.0),
                index: position.map(|p| p.1),
                peer_id: state.net.peer_id().to_string(),
            })
            .into_response()
        }
        Ok(Ok(None)) => error(ErrorKind::NotFound, "this node holds no such shard"),
        Ok(Err(e)) => error(ErrorKind::Store, &e.to_string()),
        Err(e) => error(ErrorKind::Internal, &e.to_string()),
    })
}

/// Test faults only: replaces the set of blocked peers (see
/// [`Network::set_blocked_peers`]). Body `{"peers": [PEER, ...]}`; `[]` unblocks all.
async fn block_peers(State(state): State<ApiState>, body: Bytes) -> Result<Response, BadRequest> {
    let bad = |m: String| BadRequest(ErrorKind::BadBody, m);
    let request: wire::BlockPeers = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "body is not JSON {{\"peers\": [...]}} (a list of peer ids): {e}"
        ))
    })?;
    let mut peers = std::collections::HashSet::new();
    for text in &request.peers {
        let peer: libp2p::PeerId = text
            .parse()
            .map_err(|e| bad(format!("{text} is not a peer id: {e}")))?;
        peers.insert(peer);
    }
    Ok(match state.net.set_blocked_peers(peers).await {
        Ok(blocked) => axum::Json(wire::BlockedPeers {
            blocked: blocked.iter().map(ToString::to_string).collect(),
            peer_id: state.net.peer_id().to_string(),
        })
        .into_response(),
        Err(e) => error(ErrorKind::Network, &e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

    /// What the writer has sent so far, as one buffer.
    fn sent(rx: &mut mpsc::Receiver<Result<Bytes, std::io::Error>>) -> TestResult<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[test]
    fn the_writer_sends_every_byte_once_in_order_and_holds_the_last_back_until_flush() -> TestResult
    {
        // Writes of a decoder's segment, of odd sizes, and ones ending on a chunk's edge.
        for writes in [
            vec![1 << 20],
            vec![CHUNK, CHUNK],
            vec![3, CHUNK - 3, 1, 2 * CHUNK + 7],
            vec![1],
        ] {
            let (tx, mut rx) = mpsc::channel(64);
            let mut writer = ChannelWriter::new(tx);
            let mut data = Vec::new();
            for len in writes {
                let part: Vec<u8> = (0..len).map(|i| (i * 7 + data.len()) as u8).collect();
                writer.write_all(&part)?;
                data.extend_from_slice(&part);
            }
            let before = sent(&mut rx)?;
            assert!(
                before.len() < data.len(),
                "every byte was sent before the flush"
            );
            writer.flush()?;
            let mut all = before;
            all.extend_from_slice(&sent(&mut rx)?);
            assert!(all == data, "bytes differ");
        }
        Ok(())
    }
}
