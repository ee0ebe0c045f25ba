//! The cost of how a byte vector crosses the wire: postcard with serde's derive writes a
//! `Vec<u8>` field as a sequence, one `u8` at a time; written as a byte string
//! (`serialize_bytes`) it is the same bytes on the wire (a varint length, then the bytes)
//! moved in one copy.
//!
//! The node's shard protocol (`node/src/protocol.rs`) writes every byte vector as a byte
//! string (`Request::Store`'s shard, `Request::PutEnvelope`, `Response::Blob`,
//! `Response::Envelopes`) and reads either form; [`AsSeq`] is the form it used before,
//! kept here to measure what the byte string saves. [`byte_string`] does what the node's
//! private `with` module does (this package does not link the node). The node also writes
//! a `Store`'s shard straight from its shared buffer after the encoded header; these
//! figures time postcard alone.

use serde::{Deserialize, Serialize};

/// A shard message as serde derives it: `bytes` is a sequence of `u8` (the node's former
/// wire form, byte for byte the same as today's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsSeq {
    /// The shard id.
    pub id: [u8; 32],
    /// The shard.
    pub bytes: Vec<u8>,
}

/// The same message with `bytes` written as a byte string, as the node writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsBytes {
    /// The shard id.
    pub id: [u8; 32],
    /// The shard.
    #[serde(with = "byte_string")]
    pub bytes: Vec<u8>,
}

/// `#[serde(with = "byte_string")]` for a `Vec<u8>`: `serialize_bytes` and a visitor
/// that takes bytes (and, for other formats, a sequence).
pub mod byte_string {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    /// Writes `v` as a byte string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads a byte string (or a sequence of `u8`).
    ///
    /// # Errors
    /// The deserializer's.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// Encodes then decodes `msg` with postcard; the decoded message.
///
/// # Errors
/// Postcard's.
pub fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(msg: &T) -> anyhow::Result<T> {
    let wire = postcard::to_stdvec(msg)?;
    Ok(postcard::from_bytes(&wire)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_the_same_bytes_on_the_wire() -> anyhow::Result<()> {
        for len in [0usize, 1, 127, 128, 300, 262_144] {
            let bytes = crate::pipeline::input(len);
            let seq = AsSeq {
                id: [7; 32],
                bytes: bytes.clone(),
            };
            let str = AsBytes { id: [7; 32], bytes };
            let (a, b) = (postcard::to_stdvec(&seq)?, postcard::to_stdvec(&str)?);
            assert_eq!(a, b, "length {len}");
            // Each side reads the other's frames.
            let read_as_bytes: AsBytes = postcard::from_bytes(&a)?;
            let read_as_seq: AsSeq = postcard::from_bytes(&b)?;
            assert_eq!(read_as_bytes, str);
            assert_eq!(read_as_seq, seq);
            assert_eq!(round_trip(&str)?, str);
        }
        Ok(())
    }
}
