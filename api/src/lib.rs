//! The formats DataMesh programs share, defined once: the node's local HTTP API (request
//! and response bodies, error bodies, the file-name header) and `<home>/node.json`, with
//! the blocking [`Client`] the CLI, the benches and the node's tests use.
//!
//! ```no_run
//! use datamesh_api::{Client, RunFile};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = std::path::Path::new("/home/me/.datamesh");
//! let run = RunFile::read(home)?.ok_or("the node is not running")?;
//! let token = std::fs::read_to_string(home.join(datamesh_api::API_TOKEN_FILE))?;
//! let client = Client::new(run.api, &token);
//! let put = client.put(std::io::Cursor::new(b"hello".to_vec()), "hello.txt", &[])?;
//! println!("{} ({} bytes)", put.id, put.size);
//! # Ok(()) }
//! ```
//!
//! Gotchas first:
//! - The server (`datamesh-node`'s `api` module) serializes these types and the client
//!   deserializes them: a field renamed here changes the wire format and the CLI's
//!   `--json` output. Ids, keys and peers travel in their text forms (`dm1…`, hex,
//!   `12D3Koo…`).
//! - A download's body ends early when the node fails mid-stream: check that it yields
//!   [`Download::size`] bytes ([`Download::copy_to`] does).
//! - Every route needs `Authorization: Bearer <token>`, the token kept in the home's
//!   [`API_TOKEN_FILE`].
//!
//! | route                  | body / query                 | answers                         |
//! |------------------------|------------------------------|---------------------------------|
//! | `POST /v1/files`       | the file; `?name=`, `?mtime=SECS`, `?to=KEY` (repeatable), `?session=32HEX` (resumable), `?segment_size=BYTES` (64 KiB to 16 MiB, a power of two) | [`PutResult`] |
//! | `GET /v1/files/{id}`   | `?allow_revoked=1`; `Range: bytes=START-END` | the bytes (206 and `Content-Range` for a range); `Content-Length`, [`NAME_HEADER`], [`MTIME_HEADER`], [`BLAKE3_HEADER`], [`FILE_SIZE_HEADER`], [`SEGMENT_SIZE_HEADER`] |
//! | `GET /v1/files`        |                              | `[`[`ListedFile`]`]`            |
//! | `POST /v1/files/{id}/envelope` | `?to=KEY` (repeatable): sharing; `?allow_revoked=1` | [`RewrapReport`] |
//! | `POST /v1/files/{id}/reencrypt` | `?allow_revoked=1`  | [`ReencryptReport`]             |
//! | `POST /v1/files/{id}/remove` | (owner only)           | [`RemoveReport`]                |
//! | `POST /v1/files/{id}/audit` |                         | [`AuditReport`]                 |
//! | `POST /v1/rewrap`      | `?allow_revoked=1`           | [`RewrapAll`]                   |
//! | `GET /v1/key-usage`    | `?allow_revoked=1`           | `[`[`KeyUsage`]`]`              |
//! | `POST /v1/files/{id}/check` | `?verify=1&repair=1`    | [`CheckReport`]                 |
//! | `GET /v1/status`       |                              | [`Status`]                      |
//! | `GET /v1/peers`        |                              | `[`[`Peer`]`]`                  |
//! | `GET /metrics`         |                              | Prometheus text                 |
//! | `POST /v1/debug/corrupt-shard` | `?shard=HEX` or `?file=ID[&stripe=N][&index=N]` | [`CorruptedShard`] |
//! | `POST /v1/debug/block-peers` | [`BlockPeers`]         | [`BlockedPeers`]                |
//!
//! `allow_revoked=1` is the explicit override of incident recovery: revoked key versions
//! may decrypt for that one request (the node logs it, the keystore records it in its
//! audit log). The debug routes exist only on a node run with test faults. Errors answer an
//! [`ErrorBody`] with the status of its [`ErrorKind`].

mod check;
mod client;
mod debug;
mod error;
mod files;
mod private;
mod run_file;
mod status;

pub use check::{
    AuditFailure, AuditReport, BadCopy, BadReason, CheckReport, CheckSummary, EnvelopeProtection,
    Health, RecipientProtection, RepairedShard, StripeCheck, StripeCounts,
};
pub use client::{Client, Download};
pub use debug::{BlockPeers, BlockedPeers, CorruptedShard};
pub use error::{ClientError, ErrorBody, ErrorKind};
pub use files::{
    BLAKE3_HEADER, FILE_SIZE_HEADER, KeyUsage, ListedFile, MTIME_HEADER, NAME_HEADER,
    PUT_READ_WHOLE, PutResult, ReencryptReport, RemoveReport, RewrapAll, RewrapFailure,
    RewrapReport, SEGMENT_SIZE_HEADER, decode_name, encode_name, parse_range,
};
pub use private::{PrivateFileError, check_private_file};
pub use run_file::{RunFile, RunFileError};
pub use status::{Peer, Status};

/// The API's bearer token inside a node's home (0600, written by `datamesh init`).
pub const API_TOKEN_FILE: &str = "api-token";
