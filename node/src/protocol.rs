//! The shard protocol: how peers store, fetch, probe and delete shards, and exchange the
//! small per-file records (manifest announcements, key envelopes).
//!
//! One request-response exchange per stream (`libp2p::request_response`), each message a
//! big-endian `u32` length followed by its postcard encoding. Every message has a hard size
//! limit checked before a byte of its body is read or allocated. Shard bytes travel only
//! here, never inside DHT records.

use std::io;

use bytes::Bytes;
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
        /// The shard (or manifest) bytes: a shared handle, so the copy of the request
        /// kept for a retry on another peer does not copy the shard.
        #[serde(with = "bytes_as_str")]
        bytes: Bytes,
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
        #[serde(with = "bytes_as_str")]
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
    Blob(#[serde(with = "bytes_as_str")] Vec<u8>),
    /// Not held here.
    NotFound,
    /// One flag per id asked about, in order.
    Has(Vec<bool>),
    /// Done (delete, announce, envelope kept or older one ignored).
    Done,
    /// The envelopes held for a file, newest of each owner.
    Envelopes(#[serde(with = "byte_strings")] Vec<Vec<u8>>),
}

/// `#[serde(with = "bytes_as_str")]`: a byte vector written as a byte string
/// (`serialize_bytes`), not as a sequence of `u8`. Postcard writes both the same way (a
/// varint length, then the bytes), so the wire format is unchanged, but a byte string is
/// moved in one copy instead of one `u8` at a time. Reads either form.
mod bytes_as_str {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub(super) fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v.as_ref())
    }

    pub(super) fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: From<Vec<u8>>,
    {
        d.deserialize_byte_buf(ByteVisitor(PhantomData))
    }

    struct ByteVisitor<T>(PhantomData<T>);

    impl<'de, T: From<Vec<u8>>> Visitor<'de> for ByteVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<T, E> {
            Ok(v.to_vec().into())
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<T, E> {
            Ok(v.into())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            // The size hint comes from the peer: never trust it for more than a bounded
            // first allocation (the frame limit bounds the real length).
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out.into())
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
            super::bytes_as_str::deserialize(d).map(In)
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

/// Writes one frame whose body is `head` followed by `tail`.
async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    head: &[u8],
    tail: &[u8],
    max: usize,
) -> io::Result<()> {
    let len = head.len() + tail.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    io.write_all(&(len as u32).to_be_bytes()).await?;
    io.write_all(head).await?;
    if !tail.is_empty() {
        io.write_all(tail).await?;
    }
    io.close().await
}

/// A request's body as two parts to write one after the other: a `Store` is its
/// postcard header (variant, id, length) and then its shard bytes, written from the
/// shared buffer instead of being copied into an encoded body first. The two parts are
/// exactly [`encode`]'s bytes (tested).
fn request_parts(request: &Request) -> io::Result<(Vec<u8>, &[u8])> {
    let Request::Store { id, bytes } = request else {
        return Ok((encode(request)?, &[]));
    };
    // `bytes` is the last field: the encoding of an empty one ends with its length, a
    // one-byte varint 0, which is replaced by the real length.
    let mut head = encode(&Request::Store {
        id: *id,
        bytes: Bytes::new(),
    })?;
    if head.pop() != Some(0) {
        return Err(io::Error::other("unexpected encoding of a Store header"));
    }
    let mut len = bytes.len() as u64;
    while len >= 0x80 {
        head.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    head.push(len as u8);
    Ok((head, &bytes[..]))
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
        let (head, tail) = request_parts(&request)?;
        write_frame(io, &head, tail, self.max_request).await
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
        write_frame(io, &encode(&response)?, &[], self.max_response).await
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
                bytes: Bytes::from_static(b"x"),
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
            bytes: vec![0; MAX_BLOB_LEN + SLACK].into(),
        };
        assert!(
            block_on(ShardCodec::default().write_request(&PROTOCOL, &mut Vec::new(), big)).is_err()
        );
    }

    /// The messages as they were before their byte vectors were written as byte strings:
    /// serde's derive writes a `Vec<u8>` as a sequence of `u8`.
    mod old {
        use datamesh_core::{FileId, ShardId};
        use serde::{Deserialize, Serialize};

        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub(super) enum Request {
            Store { id: ShardId, bytes: Vec<u8> },
            Fetch { id: ShardId },
            Has { ids: Vec<ShardId> },
            Delete { id: ShardId },
            Announce { file: FileId },
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
    fn byte_strings_have_the_old_sequence_wire_form() -> io::Result<()> {
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
                    Response::Blob(bytes.clone()),
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
    fn a_byte_string_is_read_from_a_sequence_by_a_self_describing_format() -> io::Result<()> {
        // JSON writes bytes as a sequence of numbers: the visitor's `visit_seq` path.
        let request = Request::Store {
            id: ShardId::of(b"j"),
            bytes: Bytes::from_static(&[0, 1, 255]),
        };
        let json = serde_json::to_string(&request).map_err(io::Error::other)?;
        assert!(json.contains("[0,1,255]"), "{json}");
        let back: Request = serde_json::from_str(&json).map_err(io::Error::other)?;
        assert_eq!(back, request);
        let envelopes = Response::Envelopes(vec![vec![9, 8], vec![]]);
        let json = serde_json::to_string(&envelopes).map_err(io::Error::other)?;
        let back: Response = serde_json::from_str(&json).map_err(io::Error::other)?;
        assert_eq!(back, envelopes);
        Ok(())
    }

    #[test]
    fn frame_limits_hold_for_byte_strings() -> io::Result<()> {
        // The largest blob fits in a request and in a response, both ways.
        let largest = Request::Store {
            id: ShardId::of(b""),
            bytes: vec![7; MAX_BLOB_LEN].into(),
        };
        assert_eq!(round_trip(largest.clone())?, largest);
        let blob = Response::Blob(vec![7; MAX_BLOB_LEN]);
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
        let old_over = encode(&old::Request::Store {
            id: ShardId::of(b""),
            bytes: vec![1; 1000],
        })?;
        let mut framed = (old_over.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&old_over);
        let err = block_on(codec.read_request(&PROTOCOL, &mut &framed[..])).err();
        assert!(err.is_some_and(|e| e.to_string().contains("exceeds")));

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
    fn a_store_request_is_written_as_its_encoding_without_copying_the_shard() -> io::Result<()> {
        let id = ShardId::of(b"w");
        for len in [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152] {
            let request = Request::Store {
                id,
                bytes: shard_bytes(len).into(),
            };
            let (head, tail) = request_parts(&request)?;
            assert_eq!([&head[..], tail].concat(), encode(&request)?, "{len} bytes");
            assert_eq!(tail.len(), len);
            let mut wire = Vec::new();
            block_on(ShardCodec::default().write_request(&PROTOCOL, &mut wire, request.clone()))?;
            assert_eq!(&wire[..4], &((head.len() + len) as u32).to_be_bytes());
            assert_eq!(round_trip(request.clone())?, request);
        }
        // Other requests go through the plain encoding.
        let fetch = Request::Fetch { id };
        let (head, tail) = request_parts(&fetch)?;
        assert_eq!((head, tail.len()), (encode(&fetch)?, 0));
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
