//! The shard protocol: how peers store, fetch, probe and delete shards, and exchange the
//! small per-file records (manifest announcements, key envelopes).
//!
//! One request-response exchange per stream (`libp2p::request_response`), each message a
//! big-endian `u32` length followed by its postcard encoding. Every message has a hard size
//! limit checked before a byte of its body is read or allocated. Shard bytes travel only
//! here, never inside DHT records.

use std::io;

use datamesh_core::{FileId, MAX_MANIFEST_LEN, ShardId};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/datamesh/shard/1.0.0");

/// The largest blob a peer stores: a manifest (16 MiB cap) or a shard of a 16 MiB
/// segment (4 MiB), whichever is larger.
pub const MAX_BLOB_LEN: usize = MAX_MANIFEST_LEN;
/// Most ids in one `Has` request (a 64 GiB file at 1 MiB segments has 393,216 shards:
/// callers batch).
pub const MAX_IDS: usize = 65_536;
/// Largest key envelope accepted.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// Framing and enum overhead allowed on top of the payload.
const SLACK: usize = 1024;
/// Largest request on the wire.
pub const MAX_REQUEST_LEN: usize = MAX_BLOB_LEN + SLACK;
/// Largest response on the wire.
pub const MAX_RESPONSE_LEN: usize = MAX_BLOB_LEN + SLACK;

/// What one peer asks another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Keep these bytes under this id (refused unless they hash to it).
    Store {
        /// BLAKE3 of `bytes`.
        id: ShardId,
        /// The shard (or manifest) bytes.
        bytes: Vec<u8>,
    },
    /// Send the bytes stored under this id.
    Fetch {
        /// Which.
        id: ShardId,
    },
    /// Which of these ids do you hold?
    Has {
        /// At most [`MAX_IDS`].
        ids: Vec<ShardId>,
    },
    /// Drop this shard (only honoured for a peer that stored it).
    Delete {
        /// Which.
        id: ShardId,
    },
    /// Announce in the DHT that you hold shards of this file (sent by the putter once the
    /// file id is known).
    Announce {
        /// The file.
        file: FileId,
    },
    /// Keep this signed key envelope (kept if newer than the one held).
    PutEnvelope {
        /// The envelope's wire form.
        bytes: Vec<u8>,
    },
    /// Send every key envelope you hold for this file (the newest of each owner).
    GetEnvelope {
        /// The file.
        file: FileId,
    },
}

/// Why a store was refused.
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
    /// The request was well-formed but invalid (reason given).
    Invalid(String),
    /// The node failed on its side (disk error; reason given).
    Failed(String),
    /// The stored copy no longer matches its id (bit rot, a torn write): not served. Any
    /// peer may ask for such a copy to be deleted.
    Corrupt,
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
    /// The bytes asked for.
    Blob(Vec<u8>),
    /// Not held here.
    NotFound,
    /// One flag per id asked about, in order.
    Has(Vec<bool>),
    /// Done (delete, announce, envelope kept or older one ignored).
    Done,
    /// The envelopes held for a file, newest of each owner.
    Envelopes(Vec<Vec<u8>>),
}

/// The request-response codec: length-prefixed postcard with size caps.
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

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    body: &[u8],
    max: usize,
) -> io::Result<()> {
    if body.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes exceeds the {max}-byte limit",
                body.len()
            ),
        ));
    }
    io.write_all(&(body.len() as u32).to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

/// Decodes a message body, refusing trailing bytes.
pub fn decode<M: for<'de> Deserialize<'de>>(body: &[u8]) -> io::Result<M> {
    match postcard::take_from_bytes(body) {
        Ok((msg, [])) => Ok(msg),
        Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes")),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// Encodes a message body.
pub fn encode<M: Serialize>(msg: &M) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl libp2p::request_response::Codec for ShardCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let request: Request = decode(&read_frame(io, self.max_request).await?)?;
        if let Request::Has { ids } = &request
            && ids.len() > MAX_IDS
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too many ids"));
        }
        Ok(request)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io, self.max_response).await?)
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
        write_frame(io, &encode(&request)?, self.max_request).await
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
        write_frame(io, &encode(&response)?, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn requests_and_responses_round_trip() -> io::Result<()> {
        let id = ShardId::of(b"x");
        for request in [
            Request::Store {
                id,
                bytes: b"x".to_vec(),
            },
            Request::Fetch { id },
            Request::Has { ids: vec![id; 3] },
            Request::Delete { id },
            Request::Announce {
                file: FileId::of_manifest(b"m"),
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
            bytes: vec![0; MAX_BLOB_LEN + SLACK],
        };
        assert!(
            block_on(ShardCodec::default().write_request(&PROTOCOL, &mut Vec::new(), big)).is_err()
        );
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
