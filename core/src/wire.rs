//! The shard protocol's messages: what one peer asks another and what it answers, their
//! size limits, their postcard bodies and the length-prefixed frame around each body.
//!
//! ```
//! # fn main() -> Result<(), datamesh_core::wire::WireError> {
//! use datamesh_core::ShardId;
//! use datamesh_core::wire::{self, MAX_REQUEST_LEN, Request};
//!
//! let request = Request::Fetch { id: ShardId::of(b"shard") };
//! let body = wire::encode(&request)?;
//! let mut frame = wire::frame_header(body.len(), MAX_REQUEST_LEN)?.to_vec();
//! frame.extend_from_slice(&body);
//!
//! // The reader checks the length against its limit before it touches the body.
//! let (body, rest) = wire::split_frame(&frame, MAX_REQUEST_LEN)?;
//! assert!(rest.is_empty());
//! assert_eq!(wire::decode_request(body)?, request);
//! # Ok(()) }
//! ```
//!
//! One message per frame: a big-endian `u32` body length, then the body. Every message
//! has a hard size limit checked before a byte of its body is read or allocated. Shard
//! bytes travel only here, never inside DHT records. Wire form: `docs/format.md`.
//!
//! This module is the format only (pure, no I/O); the node's `protocol` module reads and
//! writes frames on libp2p streams with it. Every function here returns an error for any
//! input and never panics (fuzzed: `fuzz/fuzz_targets/shard_frames.rs`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{FileId, ShardId};
use crate::manifest::MAX_MANIFEST_LEN;

/// The largest blob a peer stores: a manifest (16 MiB cap) or a shard of a 16 MiB
/// segment (4 MiB), whichever is larger.
pub const MAX_BLOB_LEN: usize = MAX_MANIFEST_LEN;
/// Most ids in one `Has` request (a 64 GiB file at 1 MiB segments has 393,216 shards:
/// callers batch).
pub const MAX_IDS: usize = 65_536;
/// Largest key envelope accepted.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// Most shards in one [`Request::StoreBatch`] (the frame limit bounds their bytes).
pub const MAX_BATCH: usize = 64;
/// Framing and enum overhead allowed on top of the payload.
const SLACK: usize = 1024;
/// Largest request body on the wire: a blob, and a key envelope beside it (a
/// [`Request::StoreManifest`]).
pub const MAX_REQUEST_LEN: usize = MAX_BLOB_LEN + MAX_ENVELOPE_LEN + SLACK;
/// Largest response body on the wire.
pub const MAX_RESPONSE_LEN: usize = MAX_BLOB_LEN + SLACK;
/// Bytes of the length prefix in front of every body.
pub const LEN_PREFIX: usize = 4;

/// What one peer asks another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Keep these bytes under this id (refused unless they hash to it).
    Store {
        /// BLAKE3 of `bytes`.
        id: ShardId,
        /// The shard (or manifest) bytes: a shared handle, so the copy of the request
        /// kept for a retry on another peer does not copy the shard.
        #[serde(with = "byte_string")]
        bytes: Bytes,
    },
    /// Send the bytes stored under this id.
    Fetch {
        /// Which.
        id: ShardId,
    },
    /// Which of these ids do you hold?
    Has {
        /// At most [`MAX_IDS`], each at most once.
        ids: Vec<ShardId>,
    },
    /// Drop this shard (only honoured for a peer that stored it).
    Delete {
        /// Which.
        id: ShardId,
    },
    /// Announce in the DHT that you hold this file's manifest or shards of it (sent by
    /// the putter once the file id is known). Honoured only if the node holds the
    /// file's manifest, or if the sender holds a claim on `held` there not bound to
    /// another file (the claim is then bound to this one).
    Announce {
        /// The file.
        file: FileId,
        /// A blob the sender stored on this node for this file: the manifest (whose blob
        /// id is the file id) or one of its shards.
        held: ShardId,
    },
    /// Keep this signed key envelope. Kept only by a node that holds the file's manifest,
    /// if it verifies under the manifest's authority key and its sequence is higher than
    /// the one held; its bytes count against the node's quota.
    PutEnvelope {
        /// The envelope's wire form.
        #[serde(with = "byte_string")]
        bytes: Vec<u8>,
    },
    /// Send the key envelope you hold for this file (none or one).
    GetEnvelope {
        /// The file.
        file: FileId,
    },
    /// The owner removes a file (`datamesh rm`): drop the sender's claims and every
    /// claim bound to the file on the manifest and the shards it lists, the shards no
    /// claim is left on, and the file's key envelope. Honoured only if `signature` is
    /// the file's authority's (the key `manifest` commits to) over the file id and
    /// `issued_at`, and `issued_at` is within an hour of the holder's clock
    /// ([`crate::Removal`]).
    RemoveFile {
        /// The file's manifest (its BLAKE3 is the file id).
        #[serde(with = "byte_string")]
        manifest: Bytes,
        /// When the owner issued the removal (Unix seconds).
        issued_at: u64,
        /// The authority's signature ([`crate::REMOVAL_SIGNATURE_LEN`] bytes).
        #[serde(with = "byte_string")]
        signature: Vec<u8>,
    },
    /// Until when are these blobs kept? With `renew`, extend the sender's lease on each
    /// one it already claims (one it stored; a renewal never makes a claim: only the
    /// owner's signed [`Request::RenewLease`] does). Answered with [`Response::Leases`].
    Lease {
        /// At most [`MAX_IDS`], each at most once.
        ids: Vec<ShardId>,
        /// Renew the sender's lease on each one held.
        renew: bool,
    },
    /// Prove you hold this blob: answer with the chunk `nonce` picks and its BLAKE3 proof
    /// ([`crate::audit`]). Answered with [`Response::Proof`].
    Audit {
        /// Which blob.
        id: ShardId,
        /// The challenge: picks the chunk (`nonce mod chunks`).
        nonce: u64,
    },
    /// The owner (or whoever carries its signed order) renews its lease on the file's
    /// blobs held here: on each of `ids` held, the sender's claim is made (bound to the
    /// file) or kept, and leased for another lease. Honoured only if `signature` is the
    /// file's authority's ([`crate::Renewal`]: the key `manifest` commits to) over the
    /// file id and `issued_at`, `issued_at` is within an hour of the holder's clock, and
    /// every id is the manifest's own or one it lists. Answered with
    /// [`Response::Leases`].
    RenewLease {
        /// The file's manifest (its BLAKE3 is the file id).
        #[serde(with = "byte_string")]
        manifest: Bytes,
        /// When the owner issued the renewal (Unix seconds).
        issued_at: u64,
        /// The authority's signature ([`crate::REMOVAL_SIGNATURE_LEN`] bytes).
        #[serde(with = "byte_string")]
        signature: Vec<u8>,
        /// At most [`MAX_IDS`], each at most once.
        ids: Vec<ShardId>,
    },
    /// A [`Request::Store`] for a known file (a repair's shard or manifest copy): the
    /// sender's claim is bound to `file` as it is made, so the owner's `RemoveFile` drops
    /// it whenever it reaches the holder. Refused with [`InvalidReason::Removed`] by a
    /// holder that honoured the file's removal lately.
    StoreFor {
        /// The file the blob belongs to.
        file: FileId,
        /// BLAKE3 of `bytes`.
        id: ShardId,
        /// The shard (or manifest) bytes.
        #[serde(with = "byte_string")]
        bytes: Bytes,
    },
    /// A put's copy of a file's manifest and the file's key envelope in one request: a
    /// [`Request::Store`] of the manifest, then, once it is held, a
    /// [`Request::PutEnvelope`] of `envelope`, which must be the envelope of that very
    /// file. Answered with [`Response::ManifestStored`] when the manifest is held, or with
    /// the manifest store's refusal (the envelope is then not looked at).
    StoreManifest {
        /// BLAKE3 of `bytes`: the file id.
        id: ShardId,
        /// The key envelope's wire form (at most [`MAX_ENVELOPE_LEN`] bytes).
        #[serde(with = "byte_string")]
        envelope: Vec<u8>,
        /// The manifest bytes.
        #[serde(with = "byte_string")]
        bytes: Bytes,
    },
    /// Several [`Request::Store`]s to one peer in one request (protocol 9): at most
    /// [`MAX_BATCH`], each id at most once, their bytes within the frame limit. Each shard
    /// is stored, refused or found held as its own `Store` would be, and the answers are
    /// acknowledged together, after one synced write. Answered with
    /// [`Response::BatchStored`], or, for the whole batch, with a refusal of the request
    /// itself (`Busy`).
    StoreBatch {
        /// The shards.
        shards: Vec<BatchShard>,
    },
    /// A put's shard and its copy of the file's manifest (with the key envelope) for one
    /// peer in one request (protocol 10: each holder of a one-stripe file's shards gets
    /// its manifest too, and provides the file on keeping the envelope). The shard is
    /// stored, refused or found held as by its own [`Request::Store`], then the manifest
    /// and the envelope are handled as by a [`Request::StoreManifest`] (a refusal of the
    /// shard does not stop them); both are acknowledged together, once the shard's write
    /// is synced. Answered with [`Response::ShardAndManifest`], or, for the whole request,
    /// with a refusal of the request itself (`Busy`).
    StoreWithManifest {
        /// BLAKE3 of `manifest`: the file id.
        id: ShardId,
        /// The key envelope's wire form (at most [`MAX_ENVELOPE_LEN`] bytes).
        #[serde(with = "byte_string")]
        envelope: Vec<u8>,
        /// The manifest bytes.
        #[serde(with = "byte_string")]
        manifest: Bytes,
        /// The shard.
        shard: BatchShard,
    },
}

/// One shard of a [`Request::StoreBatch`] (or a [`Request::StoreWithManifest`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchShard {
    /// BLAKE3 of `bytes`.
    pub id: ShardId,
    /// The shard bytes (a slice of the frame when read by [`decode_request_shared`]).
    #[serde(with = "byte_string")]
    pub bytes: Bytes,
}

/// What became of one shard of a [`Request::StoreBatch`]: the answer its own `Store`
/// would have had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreOutcome {
    /// Stored now.
    Stored,
    /// Already held: the sender's claim is made or kept.
    AlreadyHeld,
    /// Not stored, and why.
    Refused(Refusal),
}

impl From<StoreOutcome> for Response {
    fn from(outcome: StoreOutcome) -> Self {
        match outcome {
            StoreOutcome::Stored => Self::Stored,
            StoreOutcome::AlreadyHeld => Self::AlreadyHeld,
            StoreOutcome::Refused(refusal) => Self::Refused(refusal),
        }
    }
}

impl Request {
    /// The request's kind in snake case (`store`, `put_envelope`, ...), for metrics and
    /// logs: never its content.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store { .. } => "store",
            Self::Fetch { .. } => "fetch",
            Self::Has { .. } => "has",
            Self::Delete { .. } => "delete",
            Self::Announce { .. } => "announce",
            Self::PutEnvelope { .. } => "put_envelope",
            Self::GetEnvelope { .. } => "get_envelope",
            Self::RemoveFile { .. } => "remove_file",
            Self::Lease { .. } => "lease",
            Self::Audit { .. } => "audit",
            Self::RenewLease { .. } => "renew_lease",
            Self::StoreFor { .. } => "store_for",
            Self::StoreManifest { .. } => "store_manifest",
            Self::StoreBatch { .. } => "store_batch",
            Self::StoreWithManifest { .. } => "store_with_manifest",
        }
    }
}

/// A holder's answer to an audit challenge ([`crate::audit`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProof {
    /// The blob's length.
    pub len: u64,
    /// The chunk the challenge picked (at most 1 KiB).
    #[serde(with = "byte_string")]
    pub chunk: Vec<u8>,
    /// Chaining values of the sibling subtrees, from the root down to the chunk.
    pub siblings: Vec<[u8; 32]>,
}

/// Why a request was refused. What a peer learns is coarse on purpose: the refusing
/// node's own error text (paths, disk errors) stays in its log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The node's quota is used up.
    Full {
        /// Bytes in use.
        used: u64,
        /// Quota.
        max: u64,
    },
    /// The bytes do not hash to the id.
    Mismatch,
    /// Not allowed (e.g. deleting someone else's shard).
    Denied,
    /// The request was well-formed but invalid.
    Invalid(InvalidReason),
    /// The node failed on its side.
    Failed(FailureReason),
    /// The stored copy no longer matches its id (bit rot, a torn write): not served. Any
    /// peer may ask for such a copy to be deleted.
    Corrupt,
    /// The node's inbound byte budget (this peer's share or its total) is in use: the
    /// request's body was read and discarded, not kept. Try again later or elsewhere.
    Busy,
}

/// Why a well-formed request is invalid ([`Refusal::Invalid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InvalidReason {
    /// A key envelope longer than [`MAX_ENVELOPE_LEN`].
    #[error("envelope too large")]
    EnvelopeTooLarge,
    /// A key envelope that does not parse, whose signature does not verify under the
    /// authority key of the file's manifest, or (in a `StoreManifest`) that is not the
    /// envelope of the manifest beside it.
    #[error("envelope does not parse or verify")]
    BadEnvelope,
    /// A key envelope or an `Announce` for a file the node does not hold: no manifest
    /// (envelopes), neither the manifest nor a blob the sender stored for it (announces).
    #[error("the file is not held here")]
    UnknownFile,
    /// A key envelope whose sequence is not higher than the one held (or equal with
    /// other bytes).
    #[error("envelope sequence is not newer than the one held")]
    StaleEnvelope,
    /// A `Has` request that names an id more than once.
    #[error("an id is asked about more than once")]
    DuplicateIds,
    /// A `RemoveFile` whose manifest does not parse, or whose signature is not the
    /// file's authority's.
    #[error("the removal does not verify under the file's authority key")]
    BadRemoval,
    /// A `RemoveFile` issued too long before or after the holder's clock (a replay).
    #[error("the removal is not fresh")]
    StaleRemoval,
    /// A `RenewLease` whose manifest does not parse, whose signature is not the file's
    /// authority's, or that names a blob the manifest does not list.
    #[error("the renewal does not verify under the file's authority key")]
    BadRenewal,
    /// A `RenewLease` issued too long before or after the holder's clock (a replay).
    #[error("the renewal is not fresh")]
    StaleRenewal,
    /// A `StoreFor`, `Announce` or `PutEnvelope` for a file, or a `Store` or
    /// `StoreManifest` of its manifest, whose removal the holder honoured lately (a
    /// repair racing the owner's `rm`).
    #[error("the file was removed by its owner")]
    Removed,
}

/// Which part of the refusing node failed ([`Refusal::Failed`]); the detail is in its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FailureReason {
    /// Its storage (a database read or write).
    #[error("storage failure")]
    Storage,
    /// Announcing in the DHT.
    #[error("dht failure")]
    Dht,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Stored now.
    Stored,
    /// Already held: nothing to do.
    AlreadyHeld,
    /// Not done, and why.
    Refused(Refusal),
    /// The bytes asked for: read by [`decode_response_shared`] as a slice of the frame.
    Blob(#[serde(with = "byte_string")] Bytes),
    /// Not held here.
    NotFound,
    /// One flag per id asked about, in order.
    Has(Vec<bool>),
    /// Done (delete, announce, envelope kept or the same one already held).
    Done,
    /// The envelope held for a file: none or one (a list, for a later format).
    Envelopes(#[serde(with = "byte_strings")] Vec<Vec<u8>>),
    /// Per id of a `Lease` request, in order: until when (Unix seconds) the blob is kept
    /// (its latest lease; `u64::MAX`: held without a lease, never collected), 0 if not
    /// held.
    Leases(Vec<u64>),
    /// The answer to an `Audit`.
    Proof(AuditProof),
    /// The answer to a `StoreManifest`: the manifest is held (stored now or before), and
    /// the envelope was kept (`None`) or refused, and why.
    ManifestStored {
        /// Why the envelope was not kept; `None` if it was (or the same one was held).
        envelope_refused: Option<Refusal>,
    },
    /// The answer to a `StoreBatch`: per shard, in order, what became of it.
    BatchStored(Vec<StoreOutcome>),
    /// The answer to a `StoreWithManifest`: what became of the shard, and of the manifest
    /// and its envelope.
    ShardAndManifest {
        /// What the shard's own `Store` would have been answered.
        shard: StoreOutcome,
        /// What the manifest's own `StoreManifest` would have been answered.
        manifest: ManifestOutcome,
    },
}

/// What became of the manifest (and envelope) of a [`Request::StoreWithManifest`]: the
/// answer its own [`Request::StoreManifest`] would have had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestOutcome {
    /// The manifest is held (stored now or before); the envelope was kept (`None`) or
    /// refused, and why.
    Stored {
        /// Why the envelope was not kept; `None` if it was (or the same one was held).
        envelope_refused: Option<Refusal>,
    },
    /// The manifest was not stored, and why (the envelope was not looked at).
    Refused(Refusal),
}

impl From<ManifestOutcome> for Response {
    fn from(outcome: ManifestOutcome) -> Self {
        match outcome {
            ManifestOutcome::Stored { envelope_refused } => {
                Self::ManifestStored { envelope_refused }
            }
            ManifestOutcome::Refused(refusal) => Self::Refused(refusal),
        }
    }
}

/// A message or frame that breaks the format or its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame's length is over the reader's (or writer's) limit.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The length claimed or written.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Fewer bytes than the frame claims.
    #[error("frame truncated: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes the frame needs (prefix and body).
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The body does not decode.
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// The body decodes but bytes are left over.
    #[error("trailing bytes")]
    Trailing {
        /// How many.
        len: usize,
    },
    /// A `Has` request with more than [`MAX_IDS`] ids.
    #[error("too many ids")]
    TooManyIds {
        /// How many were asked about.
        count: usize,
    },
    /// A `StoreBatch` of more than [`MAX_BATCH`] shards.
    #[error("too many shards in one batch")]
    TooManyShards {
        /// How many were sent.
        count: usize,
    },
    /// A `Has` request (or a `StoreBatch`) that names an id more than once.
    #[error("duplicate ids: {id} is asked about more than once")]
    DuplicateIds {
        /// One of the ids repeated.
        id: ShardId,
    },
    /// The message cannot be encoded.
    #[error("cannot encode the message: {0}")]
    Encode(postcard::Error),
}

/// Decodes a message body, refusing trailing bytes.
///
/// # Errors
/// [`WireError::Malformed`] or [`WireError::Trailing`]; never panics.
pub fn decode<M: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<M, WireError> {
    match postcard::take_from_bytes(body) {
        Ok((msg, [])) => Ok(msg),
        Ok((_, rest)) => Err(WireError::Trailing { len: rest.len() }),
        Err(e) => Err(WireError::Malformed(e)),
    }
}

/// Decodes a request body and checks the limits that are not about bytes (ids per `Has`,
/// each id at most once: a `Has` costs the node at most [`MAX_IDS`] distinct lookups;
/// shards per `StoreBatch`, each id at most once).
///
/// # Errors
/// As [`decode`], [`WireError::TooManyIds`], [`WireError::TooManyShards`] and
/// [`WireError::DuplicateIds`].
pub fn decode_request(body: &[u8]) -> Result<Request, WireError> {
    let request: Request = decode(body)?;
    if let Request::StoreBatch { shards } = &request {
        if shards.len() > MAX_BATCH {
            return Err(WireError::TooManyShards {
                count: shards.len(),
            });
        }
        let ids: Vec<ShardId> = shards.iter().map(|s| s.id).collect();
        if let Some(id) = first_duplicate(&ids) {
            return Err(WireError::DuplicateIds { id });
        }
    }
    if let Request::Has { ids } | Request::Lease { ids, .. } | Request::RenewLease { ids, .. } =
        &request
    {
        if ids.len() > MAX_IDS {
            return Err(WireError::TooManyIds { count: ids.len() });
        }
        if let Some(id) = first_duplicate(ids) {
            return Err(WireError::DuplicateIds { id });
        }
    }
    Ok(request)
}

/// As [`decode_request`], for a body held in a shared buffer: the byte strings of
/// `Bytes` fields (a `Store`'s shard, a manifest) are slices of `body`, not copies.
///
/// # Errors
/// As [`decode_request`].
pub fn decode_request_shared(body: &Bytes) -> Result<Request, WireError> {
    shared_body::while_decoding(body, || decode_request(body))
}

/// As [`decode`] of a [`Response`], for a body held in a shared buffer: a `Blob`'s bytes
/// are a slice of `body`, not a copy.
///
/// # Errors
/// As [`decode`].
pub fn decode_response_shared(body: &Bytes) -> Result<Response, WireError> {
    shared_body::while_decoding(body, || decode(body))
}

/// The body [`decode_request_shared`] or [`decode_response_shared`] is decoding, for the
/// `Bytes` fields read from it. A serde visitor sees only the borrowed slice of a byte
/// string; this gives it the buffer that slice lies in.
mod shared_body {
    use std::cell::RefCell;

    use bytes::Bytes;

    thread_local! {
        static BODY: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    }

    /// Runs `decode` with `body` as the shared body of this thread.
    pub(super) fn while_decoding<T>(body: &Bytes, decode: impl FnOnce() -> T) -> T {
        /// Clears the body when the decoding ends, a panic included.
        struct Clear;
        impl Drop for Clear {
            fn drop(&mut self) {
                BODY.with(|b| b.borrow_mut().take());
            }
        }
        BODY.with(|b| *b.borrow_mut() = Some(body.clone()));
        let _clear = Clear;
        decode()
    }

    /// `part` as a slice of the shared body, if one is set and `part` lies within it.
    pub(super) fn slice(part: &[u8]) -> Option<Bytes> {
        BODY.with(|b| {
            let b = b.borrow();
            let body = b.as_ref()?;
            let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            let end = start.checked_add(part.len())?;
            (end <= body.len()).then(|| body.slice(start..end))
        })
    }
}

/// A byte vector type a byte string decodes into.
pub trait ByteField: Sized {
    /// The field, taking `v`.
    fn from_vec(v: Vec<u8>) -> Self;

    /// The field, from bytes borrowed from the decoder's input.
    fn from_borrowed(v: &[u8]) -> Self {
        Self::from_vec(v.to_vec())
    }
}

impl ByteField for Vec<u8> {
    fn from_vec(v: Vec<u8>) -> Self {
        v
    }
}

impl ByteField for Bytes {
    fn from_vec(v: Vec<u8>) -> Self {
        v.into()
    }

    /// A slice of the body [`decode_request_shared`] or [`decode_response_shared`] is
    /// decoding, else a copy.
    fn from_borrowed(v: &[u8]) -> Self {
        shared_body::slice(v).unwrap_or_else(|| Bytes::copy_from_slice(v))
    }
}

/// An id that occurs more than once in `ids`, if any (sorts a list of references:
/// O(n log n), no hashing of peer-chosen keys).
pub fn first_duplicate(ids: &[ShardId]) -> Option<ShardId> {
    let mut sorted: Vec<&ShardId> = ids.iter().collect();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| *w[0])
}

/// Encodes a message body.
///
/// # Errors
/// [`WireError::Encode`] (not for the messages of this module, which always encode).
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, WireError> {
    postcard::to_stdvec(msg).map_err(WireError::Encode)
}

/// The body length a frame's prefix announces, checked against `max` before anything
/// is read or allocated.
///
/// # Errors
/// [`WireError::TooLarge`].
pub fn body_len(prefix: [u8; LEN_PREFIX], max: usize) -> Result<usize, WireError> {
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    Ok(len)
}

/// The prefix of a frame whose body is `len` bytes long.
///
/// # Errors
/// [`WireError::TooLarge`] if `len` is over `max` (or does not fit the prefix).
pub fn frame_header(len: usize, max: usize) -> Result<[u8; LEN_PREFIX], WireError> {
    match u32::try_from(len) {
        Ok(n) if len <= max => Ok(n.to_be_bytes()),
        _ => Err(WireError::TooLarge { len, max }),
    }
}

/// Splits the first frame off `bytes`: its body and what follows it.
///
/// # Errors
/// [`WireError::TooLarge`] if the prefix announces more than `max` (checked first, as a
/// stream reader does), [`WireError::Truncated`] if `bytes` ends early.
pub fn split_frame(bytes: &[u8], max: usize) -> Result<(&[u8], &[u8]), WireError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<LEN_PREFIX>() else {
        return Err(WireError::Truncated {
            need: LEN_PREFIX,
            have: bytes.len(),
        });
    };
    let len = body_len(*prefix, max)?;
    if rest.len() < len {
        return Err(WireError::Truncated {
            need: LEN_PREFIX + len,
            have: bytes.len(),
        });
    }
    Ok(rest.split_at(len))
}

/// A message body as parts to write one after the other: each part an encoded head and
/// then a byte string's bytes, written from their shared buffer instead of being copied
/// into an encoded body first. Their concatenation is exactly [`encode`]'s bytes (tested).
pub type Parts<'a> = Vec<(Vec<u8>, &'a [u8])>;

/// A request's body as [`Parts`]: a `Store` (or `StoreFor`, or `StoreManifest`, or
/// `StoreWithManifest`, whose manifest is in the head) is its postcard head (variant,
/// ids, length) and then its shard bytes; a `StoreBatch` is one
/// such pair per shard (the first head also holds the variant and the count); any other
/// request is one part, its encoding.
///
/// # Errors
/// [`WireError::Encode`].
pub fn request_parts(request: &Request) -> Result<Parts<'_>, WireError> {
    let (empty, bytes) = match request {
        Request::Store { id, bytes } => (
            Request::Store {
                id: *id,
                bytes: Bytes::new(),
            },
            bytes,
        ),
        Request::StoreFor { file, id, bytes } => (
            Request::StoreFor {
                file: *file,
                id: *id,
                bytes: Bytes::new(),
            },
            bytes,
        ),
        Request::StoreManifest {
            id,
            envelope,
            bytes,
        } => (
            Request::StoreManifest {
                id: *id,
                envelope: envelope.clone(),
                bytes: Bytes::new(),
            },
            bytes,
        ),
        Request::StoreWithManifest {
            id,
            envelope,
            manifest,
            shard,
        } => (
            Request::StoreWithManifest {
                id: *id,
                envelope: envelope.clone(),
                manifest: manifest.clone(),
                shard: BatchShard {
                    id: shard.id,
                    bytes: Bytes::new(),
                },
            },
            &shard.bytes,
        ),
        Request::StoreBatch { shards } => return batch_parts(request, shards),
        _ => return Ok(vec![(encode(request)?, &[])]),
    };
    match head_before(&empty, bytes.len())? {
        Some(head) => Ok(vec![(head, &bytes[..])]),
        None => Ok(vec![(encode(request)?, &[])]),
    }
}

/// A `StoreBatch`'s parts: the variant and the count (an empty batch's encoding, its
/// count replaced), then per shard its id and length, then its bytes.
fn batch_parts<'a>(request: &'a Request, shards: &'a [BatchShard]) -> Result<Parts<'a>, WireError> {
    let Some(mut prefix) = head_before(&Request::StoreBatch { shards: Vec::new() }, shards.len())?
    else {
        return Ok(vec![(encode(request)?, &[])]);
    };
    let mut parts = Vec::with_capacity(shards.len());
    for shard in shards {
        let empty = BatchShard {
            id: shard.id,
            bytes: Bytes::new(),
        };
        let Some(head) = head_before(&empty, shard.bytes.len())? else {
            return Ok(vec![(encode(request)?, &[])]);
        };
        prefix.extend_from_slice(&head);
        parts.push((std::mem::take(&mut prefix), &shard.bytes[..]));
    }
    if parts.is_empty() {
        parts.push((prefix, &[][..]));
    }
    Ok(parts)
}

/// A response's body as [`Parts`], as [`request_parts`]: a `Blob` is its head and then
/// its bytes, which are not copied into an encoded body first.
///
/// # Errors
/// [`WireError::Encode`].
pub fn response_parts(response: &Response) -> Result<Parts<'_>, WireError> {
    if let Response::Blob(bytes) = response
        && let Some(head) = head_before(&Response::Blob(Bytes::new()), bytes.len())?
    {
        return Ok(vec![(head, bytes)]);
    }
    Ok(vec![(encode(response)?, &[])])
}

/// The encoding of `empty`, a message whose last field is an empty byte string, with
/// that field's length set to `len`: what comes before `len` bytes of that field. `None`
/// if the encoding does not end with a byte string's empty length (not postcard 1.x's
/// layout; the plain encoding is then still right).
fn head_before<M: Serialize>(empty: &M, len: usize) -> Result<Option<Vec<u8>>, WireError> {
    // The encoding of an empty byte string ends with its length, a one-byte varint 0,
    // which is replaced by the real length.
    let mut head = encode(empty)?;
    if head.pop() != Some(0) {
        return Ok(None);
    }
    let mut len = len as u64;
    while len >= 0x80 {
        head.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    head.push(len as u8);
    Ok(Some(head))
}

/// `#[serde(with = "byte_string")]`: a byte vector written as a byte string
/// (`serialize_bytes`), not as a sequence of `u8`. Postcard writes both the same way (a
/// varint length, then the bytes), so the wire format is unchanged, but a byte string is
/// moved in one copy instead of one `u8` at a time. Reads either form. Public so that the
/// benchmark measures this very code (`benches/src/wire.rs`).
pub mod byte_string {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    /// Writes `v` as a byte string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    /// Reads a byte string (or a sequence of `u8`).
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: super::ByteField,
    {
        d.deserialize_bytes(ByteVisitor(PhantomData))
    }

    struct ByteVisitor<T>(PhantomData<T>);

    impl<'de, T: super::ByteField> Visitor<'de> for ByteVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<T, E> {
            Ok(T::from_borrowed(v))
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<T, E> {
            Ok(T::from_vec(v.to_vec()))
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<T, E> {
            Ok(T::from_vec(v))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            // The size hint comes from the peer: never trust it for more than a bounded
            // first allocation (the frame limit bounds the real length).
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(T::from_vec(out))
        }
    }
}

/// `#[serde(with = "byte_strings")]`: a list of byte vectors, each a byte string.
mod byte_strings {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
    use serde::ser::{Serialize, Serializer};

    struct Out<'a>(&'a [u8]);

    impl Serialize for Out<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct In(Vec<u8>);

    impl<'de> Deserialize<'de> for In {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::byte_string::deserialize(d).map(In)
        }
    }

    pub(super) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| Out(b)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        struct List(PhantomData<In>);
        impl<'de> Visitor<'de> for List {
            type Value = Vec<Vec<u8>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of byte strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(In(b)) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(List(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// The messages as they were before their byte vectors were written as byte strings:
    /// serde's derive writes a `Vec<u8>` as a sequence of `u8`.
    mod old {
        use crate::{FileId, ShardId};
        use serde::{Deserialize, Serialize};

        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub(super) enum Request {
            Store { id: ShardId, bytes: Vec<u8> },
            Fetch { id: ShardId },
            Has { ids: Vec<ShardId> },
            Delete { id: ShardId },
            Announce { file: FileId, held: ShardId },
            PutEnvelope { bytes: Vec<u8> },
            GetEnvelope { file: FileId },
        }

        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub(super) enum Response {
            Stored,
            AlreadyHeld,
            Refused(super::Refusal),
            Blob(Vec<u8>),
            NotFound,
            Has(Vec<bool>),
            Done,
            Envelopes(Vec<Vec<u8>>),
        }
    }

    fn shard_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn byte_strings_have_the_old_sequence_wire_form() -> TestResult {
        let id = ShardId::of(b"s");
        let file = FileId::of_manifest(b"m");
        // Lengths on both sides of postcard's varint steps (1, 2 and 3 length bytes).
        for len in [0, 1, 127, 128, 16_383, 16_384, 256 * 1024] {
            let bytes = shard_bytes(len);
            let pairs = [
                (
                    Request::Store {
                        id,
                        bytes: bytes.clone().into(),
                    },
                    old::Request::Store {
                        id,
                        bytes: bytes.clone(),
                    },
                ),
                (
                    Request::PutEnvelope {
                        bytes: bytes.clone(),
                    },
                    old::Request::PutEnvelope {
                        bytes: bytes.clone(),
                    },
                ),
            ];
            for (new, old) in pairs {
                let new_wire = encode(&new)?;
                assert_eq!(new_wire, encode(&old)?, "{len} bytes");
                assert_eq!(decode::<old::Request>(&new_wire)?, old);
                assert_eq!(decode::<Request>(&encode(&old)?)?, new);
            }
            let envelopes = vec![bytes.clone(), Vec::new(), shard_bytes(len / 2 + 1)];
            let pairs = [
                (
                    Response::Blob(bytes.clone().into()),
                    old::Response::Blob(bytes.clone()),
                ),
                (
                    Response::Envelopes(envelopes.clone()),
                    old::Response::Envelopes(envelopes),
                ),
                (
                    Response::Envelopes(Vec::new()),
                    old::Response::Envelopes(Vec::new()),
                ),
            ];
            for (new, old) in pairs {
                let new_wire = encode(&new)?;
                assert_eq!(new_wire, encode(&old)?, "{len} bytes");
                assert_eq!(decode::<old::Response>(&new_wire)?, old);
                assert_eq!(decode::<Response>(&encode(&old)?)?, new);
            }
        }
        // The messages without byte vectors are untouched too.
        assert_eq!(
            encode(&Request::GetEnvelope { file })?,
            encode(&old::Request::GetEnvelope { file })?
        );
        Ok(())
    }

    #[test]
    fn a_byte_string_is_read_from_a_sequence_by_a_self_describing_format() -> TestResult {
        // JSON writes bytes as a sequence of numbers: the visitor's `visit_seq` path.
        let request = Request::Store {
            id: ShardId::of(b"j"),
            bytes: Bytes::from_static(&[0, 1, 255]),
        };
        let json = serde_json::to_string(&request)?;
        assert!(json.contains("[0,1,255]"), "{json}");
        let back: Request = serde_json::from_str(&json)?;
        assert_eq!(back, request);
        let envelopes = Response::Envelopes(vec![vec![9, 8], vec![]]);
        let json = serde_json::to_string(&envelopes)?;
        let back: Response = serde_json::from_str(&json)?;
        assert_eq!(back, envelopes);
        Ok(())
    }

    #[test]
    fn a_byte_string_longer_than_its_body_is_an_error() -> TestResult {
        // A body whose byte string claims more bytes than the frame holds is an error,
        // not an allocation of the claimed size.
        let mut lying = encode(&Request::Store {
            id: ShardId::of(b""),
            bytes: Bytes::from_static(b"abc"),
        })?;
        lying.truncate(lying.len() - 3);
        lying.pop(); // the length varint (3)
        lying.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // u32::MAX
        assert!(decode::<Request>(&lying).is_err());
        Ok(())
    }

    #[test]
    fn refusals_have_a_frozen_wire_form() -> TestResult {
        // Variant index, then the reason's variant index: never free text.
        let cases = [
            (Refusal::Full { used: 1, max: 300 }, vec![0, 1, 0xac, 0x02]),
            (Refusal::Mismatch, vec![1]),
            (Refusal::Denied, vec![2]),
            (
                Refusal::Invalid(InvalidReason::EnvelopeTooLarge),
                vec![3, 0],
            ),
            (Refusal::Invalid(InvalidReason::BadEnvelope), vec![3, 1]),
            (Refusal::Invalid(InvalidReason::UnknownFile), vec![3, 2]),
            (Refusal::Invalid(InvalidReason::StaleEnvelope), vec![3, 3]),
            (Refusal::Invalid(InvalidReason::DuplicateIds), vec![3, 4]),
            (Refusal::Invalid(InvalidReason::BadRemoval), vec![3, 5]),
            (Refusal::Invalid(InvalidReason::StaleRemoval), vec![3, 6]),
            (Refusal::Invalid(InvalidReason::BadRenewal), vec![3, 7]),
            (Refusal::Invalid(InvalidReason::StaleRenewal), vec![3, 8]),
            (Refusal::Invalid(InvalidReason::Removed), vec![3, 9]),
            (Refusal::Failed(FailureReason::Storage), vec![4, 0]),
            (Refusal::Failed(FailureReason::Dht), vec![4, 1]),
            (Refusal::Corrupt, vec![5]),
        ];
        for (refusal, wire) in cases {
            let response = Response::Refused(refusal);
            let mut expected = vec![2];
            expected.extend_from_slice(&wire);
            assert_eq!(encode(&response)?, expected, "{response:?}");
            assert_eq!(decode::<Response>(&expected)?, response);
        }
        // A reason index this build does not know is an error, not a guess.
        assert!(decode::<Response>(&[2, 3, 99]).is_err());
        Ok(())
    }

    #[test]
    fn a_remove_file_request_has_a_frozen_wire_form() -> TestResult {
        let request = Request::RemoveFile {
            manifest: Bytes::from_static(&[9, 8]),
            issued_at: 300,
            signature: vec![1; 3],
        };
        // Variant 7, manifest (len 2), issued_at varint, signature (len 3).
        let wire = vec![7, 2, 9, 8, 0xac, 0x02, 3, 1, 1, 1];
        assert_eq!(encode(&request)?, wire);
        assert_eq!(decode_request(&wire)?, request);
        Ok(())
    }

    #[test]
    fn a_store_manifest_request_and_its_answer_have_a_frozen_wire_form() -> TestResult {
        let id = ShardId::of(b"m");
        let request = Request::StoreManifest {
            id,
            envelope: vec![5, 6],
            bytes: Bytes::from_static(&[9, 8, 7]),
        };
        // Variant 12, the id, the envelope (len 2), the manifest bytes (len 3).
        let mut wire = vec![12];
        wire.extend_from_slice(id.as_bytes());
        wire.extend_from_slice(&[2, 5, 6, 3, 9, 8, 7]);
        assert_eq!(encode(&request)?, wire);
        assert_eq!(decode_request(&wire)?, request);
        let parts = request_parts(&request)?;
        assert_eq!(concat(&parts), wire);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, &[9, 8, 7]);
        assert_eq!(request.kind(), "store_manifest");
        // Variant 10, then the option: 0 (kept) or 1 and the refusal.
        let kept = Response::ManifestStored {
            envelope_refused: None,
        };
        assert_eq!(encode(&kept)?, vec![10, 0]);
        let refused = Response::ManifestStored {
            envelope_refused: Some(Refusal::Invalid(InvalidReason::BadEnvelope)),
        };
        assert_eq!(encode(&refused)?, vec![10, 1, 3, 1]);
        assert_eq!(decode::<Response>(&[10, 1, 3, 1])?, refused);
        assert!(decode::<Response>(&[10, 2]).is_err());
        Ok(())
    }

    #[test]
    fn a_store_with_manifest_request_and_its_answer_have_a_frozen_wire_form() -> TestResult {
        let (id, shard) = (ShardId::of(b"m"), ShardId::of(b"s"));
        let request = Request::StoreWithManifest {
            id,
            envelope: vec![5, 6],
            manifest: Bytes::from_static(&[9, 8, 7]),
            shard: BatchShard {
                id: shard,
                bytes: Bytes::from_static(&[4, 4]),
            },
        };
        // Variant 14, the file id, the envelope (len 2), the manifest (len 3), the shard's
        // id and bytes (len 2).
        let mut wire = vec![14];
        wire.extend_from_slice(id.as_bytes());
        wire.extend_from_slice(&[2, 5, 6, 3, 9, 8, 7]);
        wire.extend_from_slice(shard.as_bytes());
        wire.extend_from_slice(&[2, 4, 4]);
        assert_eq!(encode(&request)?, wire);
        assert_eq!(decode_request(&wire)?, request);
        // The shard's bytes are the part written from their own buffer.
        let parts = request_parts(&request)?;
        assert_eq!(concat(&parts), wire);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, &[4, 4]);
        assert_eq!(request.kind(), "store_with_manifest");
        // Variant 12, the shard's outcome, the manifest's: stored (0) with the envelope
        // kept (0), or refused (1) and why.
        let both = Response::ShardAndManifest {
            shard: StoreOutcome::Stored,
            manifest: ManifestOutcome::Stored {
                envelope_refused: None,
            },
        };
        assert_eq!(encode(&both)?, vec![12, 0, 0, 0]);
        let refused = Response::ShardAndManifest {
            shard: StoreOutcome::Refused(Refusal::Mismatch),
            manifest: ManifestOutcome::Refused(Refusal::Busy),
        };
        let wire = encode(&refused)?;
        assert_eq!(decode::<Response>(&wire)?, refused);
        assert!(decode::<Response>(&[12, 0, 2]).is_err());
        assert_eq!(
            Response::from(ManifestOutcome::Refused(Refusal::Busy)),
            Response::Refused(Refusal::Busy)
        );
        Ok(())
    }

    /// The body a list of parts writes.
    fn concat(parts: &Parts<'_>) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|(head, tail)| head.iter().chain(tail.iter()))
            .copied()
            .collect()
    }

    #[test]
    fn a_store_batch_and_its_answer_have_a_frozen_wire_form_and_write_in_parts() -> TestResult {
        let (a, b) = (ShardId::of(b"a"), ShardId::of(b"b"));
        let request = Request::StoreBatch {
            shards: vec![
                BatchShard {
                    id: a,
                    bytes: Bytes::from_static(&[1, 2]),
                },
                BatchShard {
                    id: b,
                    bytes: Bytes::from(vec![7; 200]),
                },
            ],
        };
        // Variant 13, the count, then per shard its id and its bytes (len 2; len 200 as a
        // two-byte varint).
        let mut wire = vec![13, 2];
        wire.extend_from_slice(a.as_bytes());
        wire.extend_from_slice(&[2, 1, 2]);
        wire.extend_from_slice(b.as_bytes());
        wire.extend_from_slice(&[0xc8, 0x01]);
        wire.extend_from_slice(&[7; 200]);
        assert_eq!(encode(&request)?, wire);
        assert_eq!(decode_request(&wire)?, request);
        let parts = request_parts(&request)?;
        assert_eq!(concat(&parts), wire);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1, &[7; 200][..]);
        assert_eq!(request.kind(), "store_batch");
        // A shared decode slices each shard out of the body.
        let body = Bytes::from(wire);
        let Request::StoreBatch { shards } = decode_request_shared(&body)? else {
            return Err("not a batch".into());
        };
        let inside = body.as_ptr_range();
        for shard in &shards {
            assert!(inside.contains(&shard.bytes.as_ptr()));
        }
        // An empty batch is one part; its encoding is the variant and a zero count.
        let empty = Request::StoreBatch { shards: vec![] };
        assert_eq!(concat(&request_parts(&empty)?), vec![13, 0]);
        // Variant 11, the count, then per shard 0 (stored), 1 (held) or 2 and the refusal.
        let answer = Response::BatchStored(vec![
            StoreOutcome::Stored,
            StoreOutcome::AlreadyHeld,
            StoreOutcome::Refused(Refusal::Mismatch),
        ]);
        assert_eq!(encode(&answer)?, vec![11, 3, 0, 1, 2, 1]);
        assert_eq!(decode::<Response>(&[11, 3, 0, 1, 2, 1])?, answer);
        assert_eq!(
            Response::from(StoreOutcome::Refused(Refusal::Busy)),
            Response::Refused(Refusal::Busy)
        );
        Ok(())
    }

    #[test]
    fn a_store_batch_over_its_count_or_naming_an_id_twice_is_refused() -> TestResult {
        let shard = |i: u32| {
            let bytes = Bytes::from(i.to_be_bytes().to_vec());
            BatchShard {
                id: ShardId::of(&bytes),
                bytes,
            }
        };
        let full = Request::StoreBatch {
            shards: (0..MAX_BATCH as u32).map(shard).collect(),
        };
        assert_eq!(decode_request(&encode(&full)?)?, full);
        let over = Request::StoreBatch {
            shards: (0..=MAX_BATCH as u32).map(shard).collect(),
        };
        assert_eq!(
            decode_request(&encode(&over)?),
            Err(WireError::TooManyShards {
                count: MAX_BATCH + 1
            })
        );
        let twice = Request::StoreBatch {
            shards: vec![shard(1), shard(2), shard(1)],
        };
        assert_eq!(
            decode_request(&encode(&twice)?),
            Err(WireError::DuplicateIds { id: shard(1).id })
        );
        // A count the body does not hold is malformed, not an allocation.
        assert!(matches!(
            decode_request(&[13, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(WireError::Malformed(_))
        ));
        Ok(())
    }

    #[test]
    fn a_renew_lease_request_has_a_frozen_wire_form_and_the_limits_of_has() -> TestResult {
        let a = ShardId::of(b"a");
        let request = Request::RenewLease {
            manifest: Bytes::from_static(&[9, 8]),
            issued_at: 300,
            signature: vec![1; 3],
            ids: vec![a],
        };
        // Variant 10, manifest (len 2), issued_at varint, signature (len 3), one id.
        let mut wire = vec![10, 2, 9, 8, 0xac, 0x02, 3, 1, 1, 1, 1];
        wire.extend_from_slice(a.as_bytes());
        assert_eq!(encode(&request)?, wire);
        assert_eq!(decode_request(&wire)?, request);
        let twice = Request::RenewLease {
            manifest: Bytes::new(),
            issued_at: 0,
            signature: Vec::new(),
            ids: vec![a, a],
        };
        assert_eq!(
            decode_request(&encode(&twice)?),
            Err(WireError::DuplicateIds { id: a })
        );
        Ok(())
    }

    #[test]
    fn lease_requests_have_the_limits_of_has() -> TestResult {
        let a = ShardId::of(b"a");
        let body = encode(&Request::Lease {
            ids: vec![a, ShardId::of(b"b"), a],
            renew: true,
        })?;
        assert_eq!(
            decode_request(&body),
            Err(WireError::DuplicateIds { id: a })
        );
        let ids: Vec<ShardId> = (0..=MAX_IDS as u32)
            .map(|i| ShardId::of(&i.to_be_bytes()))
            .collect();
        let body = encode(&Request::Lease { ids, renew: false })?;
        assert_eq!(
            decode_request(&body),
            Err(WireError::TooManyIds { count: MAX_IDS + 1 })
        );
        let request = Request::Lease {
            ids: vec![a],
            renew: true,
        };
        assert_eq!(decode_request(&encode(&request)?)?, request);
        assert_eq!(
            encode(&Response::Leases(vec![300]))?,
            vec![8, 1, 0xac, 0x02]
        );
        Ok(())
    }

    #[test]
    fn frames_split_and_check_their_limit_first() -> TestResult {
        let body = encode(&Request::Fetch {
            id: ShardId::of(b"f"),
        })?;
        let mut wire = frame_header(body.len(), 100)?.to_vec();
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b"next");
        assert_eq!(split_frame(&wire, 100)?, (&body[..], &b"next"[..]));
        // The limit is checked before the length of what is present.
        let claim = u32::MAX.to_be_bytes();
        assert!(matches!(
            split_frame(&claim, MAX_REQUEST_LEN),
            Err(WireError::TooLarge { .. })
        ));
        assert!(
            split_frame(&claim, MAX_REQUEST_LEN).is_err_and(|e| e.to_string().contains("exceeds"))
        );
        assert!(matches!(
            split_frame(&wire[..wire.len() - 5], 100),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            split_frame(&wire[..3], 100),
            Err(WireError::Truncated { need: 4, have: 3 })
        ));
        assert!(matches!(
            frame_header(101, 100),
            Err(WireError::TooLarge { len: 101, max: 100 })
        ));
        assert_eq!(body_len([0, 0, 0, 100], 100)?, 100);
        assert!(body_len([0, 0, 0, 101], 100).is_err());
        Ok(())
    }

    #[test]
    fn too_many_ids_are_refused_by_the_request_decoder() -> TestResult {
        let ids = vec![ShardId::of(b""); MAX_IDS + 1];
        let body = encode(&Request::Has { ids })?;
        assert!(decode::<Request>(&body).is_ok());
        assert!(matches!(
            decode_request(&body),
            Err(WireError::TooManyIds { count }) if count == MAX_IDS + 1
        ));
        Ok(())
    }

    #[test]
    fn duplicate_ids_are_refused_by_the_request_decoder() -> TestResult {
        let a = ShardId::of(b"a");
        let b = ShardId::of(b"b");
        // 65,536 copies of one id: the whole request is refused, whatever its size.
        let body = encode(&Request::Has {
            ids: vec![a; MAX_IDS],
        })?;
        assert_eq!(
            decode_request(&body),
            Err(WireError::DuplicateIds { id: a })
        );
        // One repeat anywhere is enough.
        let mut ids: Vec<ShardId> = (0..1000u32)
            .map(|i| ShardId::of(&i.to_be_bytes()))
            .collect();
        ids.push(ids[17]);
        let body = encode(&Request::Has { ids: ids.clone() })?;
        assert_eq!(
            decode_request(&body),
            Err(WireError::DuplicateIds { id: ids[17] })
        );
        assert!(decode_request(&body).is_err_and(|e| e.to_string().contains("duplicate")));
        // Distinct ids, up to the limit, and the empty list are fine.
        let ids: Vec<ShardId> = (0..MAX_IDS as u32)
            .map(|i| ShardId::of(&i.to_be_bytes()))
            .collect();
        let body = encode(&Request::Has { ids })?;
        assert!(matches!(decode_request(&body)?, Request::Has { ids } if ids.len() == MAX_IDS));
        assert_eq!(first_duplicate(&[]), None);
        assert_eq!(first_duplicate(&[a, b]), None);
        assert_eq!(first_duplicate(&[b, a, b]), Some(b));
        Ok(())
    }

    /// Whether `part` lies in `body`'s memory.
    fn within(part: &[u8], body: &[u8]) -> bool {
        let (start, base) = (part.as_ptr() as usize, body.as_ptr() as usize);
        start >= base && start + part.len() <= base + body.len()
    }

    #[test]
    fn a_shared_decode_slices_the_body_and_reads_what_the_plain_one_reads() -> TestResult {
        let shard = Bytes::from(shard_bytes(3000));
        let (file, id) = (FileId::from_bytes([9; 32]), ShardId::of(&shard));
        let requests = [
            Request::Store {
                id,
                bytes: shard.clone(),
            },
            Request::StoreFor {
                file,
                id,
                bytes: shard.clone(),
            },
            Request::StoreManifest {
                id,
                envelope: vec![5; 300],
                bytes: shard.clone(),
            },
            Request::RemoveFile {
                manifest: shard.clone(),
                issued_at: 7,
                signature: vec![1; 64],
            },
            Request::RenewLease {
                manifest: shard.clone(),
                issued_at: 7,
                signature: vec![1; 64],
                ids: vec![id],
            },
            Request::PutEnvelope {
                bytes: vec![3; 100],
            },
            Request::Has { ids: vec![id] },
            Request::StoreWithManifest {
                id,
                envelope: vec![5; 300],
                manifest: shard.clone(),
                shard: BatchShard {
                    id,
                    bytes: shard.clone(),
                },
            },
        ];
        for request in requests {
            let body = Bytes::from(encode(&request)?);
            let shared = decode_request_shared(&body)?;
            assert_eq!(shared, request);
            assert_eq!(decode_request(&body)?, request);
            let sliced = match &shared {
                Request::Store { bytes, .. }
                | Request::StoreFor { bytes, .. }
                | Request::StoreManifest { bytes, .. } => Some(bytes),
                Request::StoreWithManifest {
                    manifest, shard, ..
                } => {
                    assert!(within(manifest, &body), "the manifest was copied");
                    Some(&shard.bytes)
                }
                Request::RemoveFile { manifest, .. } | Request::RenewLease { manifest, .. } => {
                    Some(manifest)
                }
                _ => None,
            };
            if let Some(bytes) = sliced {
                assert!(within(bytes, &body), "{} copied its bytes", request.kind());
            }
        }
        // A blob answer, the same way.
        let blob = Response::Blob(shard.clone());
        let body = Bytes::from(encode(&blob)?);
        let Response::Blob(bytes) = decode_response_shared(&body)? else {
            return Err("not a blob".into());
        };
        assert_eq!(bytes, shard);
        assert!(within(&bytes, &body), "the blob was copied");
        // Outside a shared decode, a `Bytes` field is a copy: the body is not kept.
        let body = encode(&Request::Store { id, bytes: shard })?;
        let Request::Store { bytes, .. } = decode_request(&body)? else {
            return Err("not a store".into());
        };
        assert!(!within(&bytes, &body));
        Ok(())
    }

    proptest! {
        #[test]
        fn has_requests_decode_exactly_when_their_ids_are_distinct(
            picks in proptest::collection::vec(0u8..40, 0..60)
        ) {
            let ids: Vec<ShardId> = picks.iter().map(|p| ShardId::of(&[*p])).collect();
            let distinct = picks.iter().collect::<std::collections::HashSet<_>>().len() == picks.len();
            let body = encode(&Request::Has { ids }).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decode_request(&body).is_ok(), distinct);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode::<Request>(&bytes);
            let plain = decode_request(&bytes);
            prop_assert_eq!(decode_request_shared(&Bytes::from(bytes.clone())), plain);
            let _ = decode::<Response>(&bytes);
            let _ = split_frame(&bytes, MAX_RESPONSE_LEN);
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let (body, rest) = split_frame(&framed, MAX_REQUEST_LEN)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(body, &bytes[..]);
            prop_assert!(rest.is_empty());
        }
    }
}
