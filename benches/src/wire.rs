//! The cost of how a byte vector crosses the wire: postcard with serde's derive writes a
//! `Vec<u8>` field as a sequence, one `u8` at a time; written as a byte string
//! (`serialize_bytes`) it is the same bytes on the wire (a varint length, then the bytes)
//! moved in one copy.
//!
//! The shard protocol's format (`datamesh_core::wire`) writes every byte vector as a byte
//! string (`Request::Store`'s shard, `Request::PutEnvelope`, `Response::Blob`,
//! `Response::Envelopes`) and reads either form; [`AsSeq`] is the form it used before,
//! kept here to measure what the byte string saves. [`AsBytes`] uses the protocol's own
//! `datamesh_core::wire::byte_string`. The node also writes a `Store`'s shard straight from
//! its shared buffer after the encoded header; these figures time postcard alone.

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
    #[serde(with = "datamesh_core::wire::byte_string")]
    pub bytes: Vec<u8>,
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
