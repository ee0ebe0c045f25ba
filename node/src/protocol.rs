//! The shard protocol on libp2p: its name and [`ShardCodec`], which reads and writes the
//! length-prefixed frames of [`datamesh_core::wire`] on request-response streams.
//!
//! One request-response exchange per stream (`libp2p::request_response`). The messages,
//! their limits and their byte form are defined once, in `datamesh_core::wire` (re-exported
//! here); this module only moves frames: it reads a frame's 4-byte length, refuses it if
//! it is over the limit before a byte of the body is read or allocated, then reads and
//! decodes the body.
//!
//! Parts: this file is the frame reader/writer and [`ShardCodec`] (plain messages, for a
//! client or a test peer); `budget.rs` is [`InboundBudget`], the bytes of inbound work a
//! node holds per peer and in total; `budgeted.rs` is [`BudgetedCodec`], the node's own
//! codec, which takes a permit of that budget for every inbound frame before reading its
//! body and answers `Busy` when there is none.

use std::io;

use datamesh_core::wire::{self, LEN_PREFIX, WireError};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

mod budget;
mod budgeted;

pub use budget::{
    DEFAULT_NODE_BUDGET, DEFAULT_PEER_BUDGET, InboundBudget, MIN_PEER_BUDGET, OverBudget, Permit,
};
pub use budgeted::{BudgetedCodec, RequestFrame, ResponseFrame, response_bytes};
pub use datamesh_core::wire::{
    BatchShard, FailureReason, InvalidReason, MAX_BATCH, MAX_BLOB_LEN, MAX_ENVELOPE_LEN, MAX_IDS,
    MAX_REQUEST_LEN, MAX_RESPONSE_LEN, ManifestOutcome, Refusal, Request, Response, StoreOutcome,
};

/// The protocol name. Version 2: refusals carry typed reasons instead of the refusing
/// node's error text. Version 3: key envelopes v2 (signed by the file's authority key,
/// one per file, kept only by a manifest holder) and their refusals; `Announce` names a
/// blob the sender stored for the file; `Has` ids are distinct (`docs/format.md`).
/// Version 4: `RemoveFile`, the owner's signed removal of a file (`datamesh rm`), and
/// `Lease` (until when blobs are kept; renewing the sender's lease), `Audit` (a chunk and
/// its BLAKE3 proof). Version 5: `RenewLease`, the owner's signed renewal; a plain
/// `Lease { renew: true }` only extends a claim the sender already has (it made one
/// before, so anyone could keep a file alive past its owner's `rm`). Version 6:
/// `StoreFor`, a store whose claim is born bound to a file (a repair's), and the refusal
/// `Removed` (a file whose removal the holder honoured lately). Version 7: the same
/// messages; a holder that keeps a `PutEnvelope` as the file's first envelope also
/// provides the file, as for an `Announce`, so a put sends no `Announce` to a manifest
/// holder that kept its envelope. Version 8: `StoreManifest`, a put's manifest copy and
/// the file's key envelope in one request (answered `ManifestStored`), so a put sends
/// each manifest holder one request where it sent two. Version 9: `StoreBatch`, several
/// shards for one peer in one request, acknowledged after one synced write (answered
/// `BatchStored`, an outcome per shard), which a node sends when stores to that peer
/// queue up behind the ones in flight. Version 10: `StoreWithManifest`, a put's shard and
/// its manifest copy (with the envelope) for one peer in one request (answered
/// `ShardAndManifest`), which a put of a one-stripe file sends to each remote holder of
/// its shards (each then provides the file on keeping the envelope: no `Announce`).
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/shard/10.0.0");

/// The request-response codec: length-prefixed postcard with size caps. For a client or
/// a test peer; the node's own swarm uses [`BudgetedCodec`], which reads the same frames
/// and also holds inbound requests to the node's byte budget.
#[derive(Clone, Copy, Debug)]
pub struct ShardCodec {
    max_request: usize,
    max_response: usize,
}

impl Default for ShardCodec {
    fn default() -> Self {
        Self {
            max_request: MAX_REQUEST_LEN,
            max_response: MAX_RESPONSE_LEN,
        }
    }
}

impl ShardCodec {
    /// A codec with other limits: only for tests that play a misbehaving peer.
    pub fn with_limits(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
        }
    }
}

/// A frame or body that breaks the format: the peer sent bad data.
fn invalid_data(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A message this node cannot send (over the limit).
fn invalid_input(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// Reads a frame's length prefix and checks it against `max`.
async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<usize> {
    let mut prefix = [0u8; LEN_PREFIX];
    io.read_exact(&mut prefix).await?;
    wire::body_len(prefix, max).map_err(invalid_data)
}

/// Reads a body of `len` bytes (already checked).
async fn read_body<T: AsyncRead + Unpin + Send>(io: &mut T, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let len = read_len(io, max).await?;
    read_body(io, len).await
}

/// Writes one frame whose body is `parts`, each head followed by its tail.
async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    parts: &wire::Parts<'_>,
    max: usize,
) -> io::Result<()> {
    let len = parts
        .iter()
        .map(|(head, tail)| head.len() + tail.len())
        .sum();
    let prefix = wire::frame_header(len, max).map_err(invalid_input)?;
    io.write_all(&prefix).await?;
    for (head, tail) in parts {
        io.write_all(head).await?;
        if !tail.is_empty() {
            io.write_all(tail).await?;
        }
    }
    io.close().await
}

impl libp2p::request_response::Codec for ShardCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = bytes::Bytes::from(read_frame(io, self.max_request).await?);
        wire::decode_request_shared(&frame).map_err(invalid_data)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = bytes::Bytes::from(read_frame(io, self.max_response).await?);
        wire::decode_response_shared(&frame).map_err(invalid_data)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let parts = wire::request_parts(&request).map_err(invalid_input)?;
        write_frame(io, &parts, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let parts = wire::response_parts(&response).map_err(invalid_input)?;
        write_frame(io, &parts, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use datamesh_core::wire::{encode, request_parts, response_parts};
    use datamesh_core::{FileId, ShardId};
    use futures::executor::block_on;
    use libp2p::request_response::Codec;
    use proptest::prelude::*;

    fn round_trip(request: Request) -> io::Result<Request> {
        block_on(async {
            let mut wire = Vec::new();
            ShardCodec::default()
                .write_request(&PROTOCOL, &mut wire, request)
                .await?;
            ShardCodec::default()
                .read_request(&PROTOCOL, &mut &wire[..])
                .await
        })
    }

    /// The same message without byte strings, as a sequence of `u8` (serde's derive for
    /// a `Vec<u8>`): the old form of a `Store`, still read.
    #[derive(serde::Serialize)]
    enum OldRequest {
        Store { id: ShardId, bytes: Vec<u8> },
    }

    fn shard_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    fn other(e: WireError) -> io::Error {
        io::Error::other(e)
    }

    #[test]
    fn requests_and_responses_round_trip() -> io::Result<()> {
        let id = ShardId::of(b"x");
        for request in [
            Request::Store {
                id,
                bytes: Bytes::from_static(b"x"),
            },
            Request::Fetch { id },
            Request::Has {
                ids: vec![id, ShardId::of(b"y"), ShardId::of(b"z")],
            },
            Request::Delete { id },
            Request::Announce {
                file: FileId::of_manifest(b"m"),
                held: id,
            },
            Request::PutEnvelope { bytes: vec![1, 2] },
            Request::GetEnvelope {
                file: FileId::of_manifest(b"m"),
            },
        ] {
            assert_eq!(round_trip(request.clone())?, request);
        }
        let response = Response::Refused(Refusal::Full { used: 1, max: 2 });
        let back = block_on(async {
            let mut wire = Vec::new();
            ShardCodec::default()
                .write_response(&PROTOCOL, &mut wire, response.clone())
                .await?;
            ShardCodec::default()
                .read_response(&PROTOCOL, &mut &wire[..])
                .await
        })?;
        assert_eq!(back, response);
        Ok(())
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read() {
        // Claims 4 GiB; only the 4-byte header exists. Refused by the length check, not
        // by running out of input or memory.
        let wire = u32::MAX.to_be_bytes();
        let err = block_on(ShardCodec::default().read_request(&PROTOCOL, &mut &wire[..])).err();
        assert!(err.is_some_and(|e| e.to_string().contains("exceeds")));
        let big = Request::Store {
            id: ShardId::of(b""),
            bytes: vec![0; MAX_REQUEST_LEN].into(),
        };
        assert!(
            block_on(ShardCodec::default().write_request(&PROTOCOL, &mut Vec::new(), big)).is_err()
        );
    }

    #[test]
    fn frame_limits_hold_for_byte_strings() -> io::Result<()> {
        // The largest blob fits in a request and in a response, both ways.
        let largest = Request::Store {
            id: ShardId::of(b""),
            bytes: vec![7; MAX_BLOB_LEN].into(),
        };
        assert_eq!(round_trip(largest.clone())?, largest);
        // So does the largest manifest with the largest envelope beside it.
        let largest = Request::StoreManifest {
            id: ShardId::of(b""),
            envelope: vec![8; MAX_ENVELOPE_LEN],
            bytes: vec![7; MAX_BLOB_LEN].into(),
        };
        assert_eq!(round_trip(largest.clone())?, largest);
        let blob = Response::Blob(vec![7; MAX_BLOB_LEN].into());
        let back = block_on(async {
            let mut wire = Vec::new();
            ShardCodec::default()
                .write_response(&PROTOCOL, &mut wire, blob.clone())
                .await?;
            ShardCodec::default()
                .read_response(&PROTOCOL, &mut &wire[..])
                .await
        })?;
        assert_eq!(back, blob);

        // One byte over the limit is refused on write, and on read before the body is
        // read, in the new form and in the old one.
        let mut codec = ShardCodec::with_limits(1000, 1000);
        let over = Request::Store {
            id: ShardId::of(b""),
            bytes: vec![1; 1000].into(),
        };
        assert!(block_on(codec.write_request(&PROTOCOL, &mut Vec::new(), over)).is_err());
        let old_over = encode(&OldRequest::Store {
            id: ShardId::of(b""),
            bytes: vec![1; 1000],
        })
        .map_err(other)?;
        let mut framed = (old_over.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&old_over);
        let err = block_on(codec.read_request(&PROTOCOL, &mut &framed[..])).err();
        assert!(err.is_some_and(|e| e.to_string().contains("exceeds")));
        Ok(())
    }

    #[test]
    fn a_store_request_is_written_as_its_encoding_without_copying_the_shard() -> io::Result<()> {
        let id = ShardId::of(b"w");
        let lens = [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152];
        let requests = lens.iter().flat_map(|&len| {
            [
                (
                    len,
                    Request::Store {
                        id,
                        bytes: shard_bytes(len).into(),
                    },
                ),
                (
                    len,
                    Request::StoreFor {
                        file: FileId::of_manifest(b"f"),
                        id,
                        bytes: shard_bytes(len).into(),
                    },
                ),
                (
                    len,
                    Request::StoreManifest {
                        id,
                        envelope: shard_bytes(len % 1000),
                        bytes: shard_bytes(len).into(),
                    },
                ),
                (
                    len,
                    Request::StoreWithManifest {
                        id,
                        envelope: shard_bytes(len % 1000),
                        manifest: shard_bytes(len % 5000).into(),
                        shard: BatchShard {
                            id,
                            bytes: shard_bytes(len).into(),
                        },
                    },
                ),
            ]
        });
        for (len, request) in requests {
            let body = written_in_parts(&request_parts(&request).map_err(other)?, len)?;
            assert_eq!(body, encode(&request).map_err(other)?, "{len} bytes");
            let mut wire = Vec::new();
            block_on(ShardCodec::default().write_request(&PROTOCOL, &mut wire, request.clone()))?;
            assert_eq!(&wire[..4], &(body.len() as u32).to_be_bytes());
            assert_eq!(round_trip(request.clone())?, request);
        }
        // A batch: one part per shard, each shard's bytes its tail.
        let shards: Vec<BatchShard> = lens
            .iter()
            .map(|&len| {
                let bytes = Bytes::from(shard_bytes(len));
                BatchShard {
                    id: ShardId::of(&bytes),
                    bytes,
                }
            })
            .collect();
        let batch = Request::StoreBatch { shards };
        let parts = request_parts(&batch).map_err(other)?;
        assert_eq!(parts.len(), lens.len());
        for ((_, tail), len) in parts.iter().zip(lens) {
            assert_eq!(tail.len(), len);
        }
        let body = written_in_parts(&parts, lens.iter().sum())?;
        assert_eq!(body, encode(&batch).map_err(other)?);
        assert_eq!(round_trip(batch.clone())?, batch);
        // Other requests go through the plain encoding.
        let fetch = Request::Fetch { id };
        let body = written_in_parts(&request_parts(&fetch).map_err(other)?, 0)?;
        assert_eq!(body, encode(&fetch).map_err(other)?);
        Ok(())
    }

    /// The body `parts` write, checking that their tails hold `tails` bytes in all.
    fn written_in_parts(parts: &wire::Parts<'_>, tails: usize) -> io::Result<Vec<u8>> {
        assert_eq!(
            parts.iter().map(|(_, tail)| tail.len()).sum::<usize>(),
            tails
        );
        Ok(parts
            .iter()
            .flat_map(|(head, tail)| head.iter().chain(tail.iter()))
            .copied()
            .collect())
    }

    #[test]
    fn a_blob_answer_is_written_as_its_encoding_without_copying_the_blob() -> io::Result<()> {
        let lens = [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152];
        for len in lens {
            let blob = Response::Blob(shard_bytes(len).into());
            let body = written_in_parts(&response_parts(&blob).map_err(other)?, len)?;
            assert_eq!(body, encode(&blob).map_err(other)?, "{len} bytes");
            let mut wire = Vec::new();
            block_on(ShardCodec::default().write_response(&PROTOCOL, &mut wire, blob.clone()))?;
            assert_eq!(&wire[..4], &(body.len() as u32).to_be_bytes());
            let back = block_on(ShardCodec::default().read_response(&PROTOCOL, &mut &wire[..]))?;
            assert_eq!(back, blob);
        }
        // Other answers go through the plain encoding.
        for answer in [Response::Stored, Response::Has(vec![true, false])] {
            let body = written_in_parts(&response_parts(&answer).map_err(other)?, 0)?;
            assert_eq!(body, encode(&answer).map_err(other)?);
        }
        Ok(())
    }

    #[test]
    fn too_many_ids_are_refused() -> io::Result<()> {
        let ids = vec![ShardId::of(b""); MAX_IDS + 1];
        assert!(round_trip(Request::Has { ids }).is_err());
        Ok(())
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let _ = block_on(ShardCodec::default().read_request(&PROTOCOL, &mut &framed[..]));
            let _ = block_on(ShardCodec::default().read_response(&PROTOCOL, &mut &framed[..]));
        }
    }
}
