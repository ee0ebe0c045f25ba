//! Content addresses: shard ids, file ids and key ids.
//!
//! All three are 32-byte BLAKE3 digests wrapped in newtypes so one can never be passed
//! where another is expected. A [`FileId`] has a text form meant for people: a prefix,
//! the digest and a checksum, so a mistyped id is rejected as mistyped rather than
//! reported as "not found".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::IdError;

/// Length in bytes of every id.
pub const ID_LEN: usize = 32;

macro_rules! digest_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub struct $name([u8; ID_LEN]);

        /// The bytes' order. The first eight bytes, read as a big-endian number, order as
        /// those bytes do, and two digests rarely share them: most comparisons end in one
        /// integer comparison, not a call to `memcmp` (sorting a 1 GiB file's shard ids
        /// to ask their holders was 10% of the opening's CPU; benches/PROFILE.md, session
        /// 32).
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                let head = |id: &Self| {
                    let [a, b, c, d, e, f, g, h, ..] = id.0;
                    u64::from_be_bytes([a, b, c, d, e, f, g, h])
                };
                head(self)
                    .cmp(&head(other))
                    .then_with(|| self.0[8..].cmp(&other.0[8..]))
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl $name {
            /// Wraps raw digest bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// The first 8 hex digits, for logs and tables.
            pub fn short(&self) -> String {
                hex_lower(&self.0[..4])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }
    };
}

digest_newtype!(
    /// BLAKE3 of a shard's bytes. A shard that does not hash to its id is treated as missing.
    ShardId
);
digest_newtype!(
    /// BLAKE3 of a file's manifest bytes: the name of a stored file.
    FileId
);
digest_newtype!(
    /// BLAKE3 fingerprint of a recipient's compressed secp256k1 public key.
    KeyId
);

impl ShardId {
    /// The id of these shard bytes.
    pub fn of(shard: &[u8]) -> Self {
        Self(*blake3::hash(shard).as_bytes())
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_lower(&self.0))
    }
}

impl FromStr for ShardId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_hex32(s).map(Self)
    }
}

impl KeyId {
    /// The key id of a secp256k1 public key: BLAKE3 (key derivation mode, context
    /// "datamesh key id v1") of its compressed SEC1 form.
    pub fn of(key: &crate::ecies::PublicKey) -> Self {
        Self(blake3::derive_key(
            "datamesh key id v1",
            &key.to_compressed(),
        ))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_lower(&self.0))
    }
}

impl FromStr for KeyId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        parse_hex32(s).map(Self)
    }
}

/// Prefix of a file id's text form ("DataMesh, id format 1").
pub const FILE_ID_PREFIX: &str = "dm1";
const CHECKSUM_LEN: usize = 4;
const FILE_ID_ENCODING: &data_encoding::Encoding = &data_encoding::BASE32_DNSSEC;

impl FileId {
    /// The file id of these manifest bytes.
    pub fn of_manifest(manifest_bytes: &[u8]) -> Self {
        Self(*blake3::hash(manifest_bytes).as_bytes())
    }

    fn checksum(&self) -> [u8; CHECKSUM_LEN] {
        let full = blake3::derive_key("datamesh file id checksum v1", &self.0);
        let mut out = [0u8; CHECKSUM_LEN];
        out.copy_from_slice(&full[..CHECKSUM_LEN]);
        out
    }
}

/// `dm1` followed by lowercase base32 (RFC 4648 "base32hex", no padding) of the digest and
/// a 4-byte checksum: 61 characters in all.
impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; ID_LEN + CHECKSUM_LEN];
        raw[..ID_LEN].copy_from_slice(&self.0);
        raw[ID_LEN..].copy_from_slice(&self.checksum());
        f.write_str(FILE_ID_PREFIX)?;
        f.write_str(&FILE_ID_ENCODING.encode(&raw))
    }
}

/// Parses the text form; surrounding whitespace and upper case are accepted.
impl FromStr for FileId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let s = s.trim().to_ascii_lowercase();
        let body = s
            .strip_prefix(FILE_ID_PREFIX)
            .ok_or(IdError::MissingPrefix)?;
        let expected = FILE_ID_ENCODING.encode_len(ID_LEN + CHECKSUM_LEN);
        if body.len() != expected {
            return Err(IdError::WrongLength {
                found: body.len() + FILE_ID_PREFIX.len(),
                expected: expected + FILE_ID_PREFIX.len(),
            });
        }
        let raw = FILE_ID_ENCODING
            .decode(body.as_bytes())
            .map_err(|_| IdError::BadCharacter)?;
        let mut digest = [0u8; ID_LEN];
        digest.copy_from_slice(raw.get(..ID_LEN).ok_or(IdError::BadCharacter)?);
        let id = Self(digest);
        if raw.get(ID_LEN..) != Some(&id.checksum()[..]) {
            return Err(IdError::ChecksumMismatch);
        }
        Ok(id)
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn parse_hex32(s: &str) -> Result<[u8; ID_LEN], IdError> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() != 2 * ID_LEN {
        return Err(IdError::WrongLength {
            found: s.len(),
            expected: 2 * ID_LEN,
        });
    }
    let raw = data_encoding::HEXLOWER
        .decode(s.as_bytes())
        .map_err(|_| IdError::BadCharacter)?;
    let mut out = [0u8; ID_LEN];
    out.copy_from_slice(&raw);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn file_id_text_round_trips_and_has_the_documented_shape() -> Result<(), IdError> {
        let id = FileId::of_manifest(b"some manifest");
        let text = id.to_string();
        assert!(text.starts_with("dm1"));
        assert_eq!(text.len(), 61);
        assert_eq!(text.parse::<FileId>()?, id);
        assert_eq!(
            format!("  {}\n", text.to_uppercase()).parse::<FileId>()?,
            id
        );
        Ok(())
    }

    #[test]
    fn mistyped_file_ids_are_rejected_with_the_reason() {
        let text = FileId::of_manifest(b"m").to_string();
        assert_eq!(
            text[3..].parse::<FileId>(),
            Err(IdError::MissingPrefix),
            "no prefix"
        );
        assert!(matches!(
            text[..60].parse::<FileId>(),
            Err(IdError::WrongLength { .. })
        ));
        let mut bad = text.clone().into_bytes();
        bad[10] = b'z'; // not in the base32hex alphabet
        assert_eq!(
            String::from_utf8_lossy(&bad).parse::<FileId>(),
            Err(IdError::BadCharacter)
        );
        assert!(ShardId::from_str("xyz").is_err());
        assert!(KeyId::from_str(&"g".repeat(64)).is_err());
    }

    proptest! {
        /// Every single-character substitution of a file id is caught (by the checksum, the
        /// alphabet or, in the last character's unused bits, the canonical-encoding check).
        #[test]
        fn every_single_character_typo_is_rejected(seed in any::<[u8; 32]>(), pos in 3usize..61, c in "[0-9a-v]") {
            let id = FileId::from_bytes(seed);
            let text = id.to_string();
            let mut typo = text.clone();
            typo.replace_range(pos..pos + 1, &c);
            prop_assume!(typo != text);
            prop_assert!(typo.parse::<FileId>().is_err());
        }

        /// Ids order as their bytes do, as the derived order did: a shared head of any
        /// length (none, part of the first eight bytes, all of them, the whole id) and
        /// differing bytes before, at and after the eighth.
        #[test]
        fn ids_order_as_their_bytes(
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
            shared in 0usize..=32,
        ) {
            let mut b = b;
            b[..shared].copy_from_slice(&a[..shared]);
            let (x, y) = (ShardId::from_bytes(a), ShardId::from_bytes(b));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(y.cmp(&x), b.cmp(&a));
            prop_assert_eq!(x.partial_cmp(&y), Some(a.cmp(&b)));
            prop_assert_eq!(FileId::from_bytes(a).cmp(&FileId::from_bytes(b)), a.cmp(&b));
        }

        #[test]
        fn hex_ids_round_trip(seed in any::<[u8; 32]>()) {
            let s = ShardId::from_bytes(seed);
            prop_assert_eq!(s.to_string().parse::<ShardId>(), Ok(s));
            let k = KeyId::from_bytes(seed);
            prop_assert_eq!(k.to_string().parse::<KeyId>(), Ok(k));
        }
    }
}
