//! The manifest: everything about a stored file that never changes.
//!
//! Wire form (see docs/format.md): one format-version byte, then the postcard encoding of
//! [`ManifestBody`]. The file id is the BLAKE3 of these exact bytes, so a manifest can be
//! fetched from anyone and checked against the id the user holds.
//!
//! Version 2 commits to the file's authority ([`FileAuthority`]: the verifying key of
//! its key envelopes and the salt it was derived with), so every holder of the manifest
//! can tell the owner's envelopes from anyone else's.

use serde::{Deserialize, Serialize};

use crate::aead::{DataKey, Nonce, SealError, TAG_LEN};
use crate::authority::{AUTHORITY_SALT_LEN, AuthorityPublic, AuthoritySalt, FileAuthority};
use crate::erasure::{DATA_SHARDS, PARITY_SHARDS, TOTAL_SHARDS, shard_len};
use crate::error::{ManifestError, ParamError};
use crate::ids::{FileId, ShardId};

/// The manifest format this build writes and reads.
pub const MANIFEST_VERSION: u8 = 2;

/// Largest manifest accepted (16 MiB): about 87,000 stripes, an 85 GiB file at the
/// default segment size or 1.4 TiB at 16 MiB segments.
pub const MAX_MANIFEST_LEN: usize = 16 << 20;

/// Metadata is padded to a multiple of this many bytes so its sealed length says little
/// about the name's length.
const METADATA_PAD: usize = 64;
const MAX_NAME_LEN: usize = 4096;

/// The plaintext segment size: a power of two from 64 KiB to 16 MiB (default 1 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentSize(u32);

impl SegmentSize {
    /// Smallest segment size, 64 KiB.
    pub const MIN: Self = Self(64 << 10);
    /// Largest segment size, 16 MiB.
    pub const MAX: Self = Self(16 << 20);
    /// The default, 1 MiB.
    pub const DEFAULT: Self = Self(1 << 20);

    /// Validates a segment size in bytes.
    ///
    /// # Errors
    /// [`ParamError::SegmentSize`] unless `bytes` is a power of two in `MIN..=MAX`.
    pub fn new(bytes: u64) -> Result<Self, ParamError> {
        if bytes.is_power_of_two()
            && (u64::from(Self::MIN.0)..=u64::from(Self::MAX.0)).contains(&bytes)
        {
            Ok(Self(bytes as u32))
        } else {
            Err(ParamError::SegmentSize(bytes))
        }
    }

    /// Bytes per segment.
    pub const fn bytes(self) -> usize {
        self.0 as usize
    }
}

impl Default for SegmentSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the owner knows about a file, sealed under its data key inside the manifest:
/// a storage node sees only its padded length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// File name as given at put time (no directories).
    pub name: String,
    /// Plaintext length in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch, if known.
    pub mtime: Option<u64>,
    /// BLAKE3 of the whole plaintext.
    pub blake3: [u8; 32],
}

/// Where a stripe's bytes sit inside the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeLayout {
    /// Plaintext bytes in this stripe's segment.
    pub plaintext_len: usize,
    /// Sealed bytes (plaintext + tag): the true length of the data shards' content.
    pub sealed_len: usize,
    /// Bytes per shard.
    pub shard_len: usize,
    /// Whether this is the final segment.
    pub last: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestBody {
    file_len: u64,
    segment_size: u32,
    data_shards: u8,
    parity_shards: u8,
    stripes: Vec<[ShardId; TOTAL_SHARDS]>,
    sealed_metadata: Vec<u8>,
    /// Compressed SEC1 verifying key of the file's key envelopes (33 bytes).
    authority_key: Vec<u8>,
    /// The salt the authority key was derived with.
    authority_salt: [u8; AUTHORITY_SALT_LEN],
}

/// A parsed, validated manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    body: ManifestBody,
    segment_size: SegmentSize,
    authority: FileAuthority,
}

impl Manifest {
    pub(crate) fn build(
        file_len: u64,
        segment_size: SegmentSize,
        stripes: Vec<[ShardId; TOTAL_SHARDS]>,
        metadata: &Metadata,
        key: &DataKey,
        authority: FileAuthority,
    ) -> Result<Self, SealError> {
        let mut plain = postcard::to_stdvec(metadata).unwrap_or_default();
        plain.resize(plain.len().next_multiple_of(METADATA_PAD) + TAG_LEN, 0);
        key.cipher().seal(
            Nonce::metadata(),
            &metadata_aad(file_len, segment_size),
            &mut plain,
        )?;
        Ok(Self {
            body: ManifestBody {
                file_len,
                segment_size: segment_size.0,
                data_shards: DATA_SHARDS as u8,
                parity_shards: PARITY_SHARDS as u8,
                stripes,
                sealed_metadata: plain,
                authority_key: authority.key.to_bytes().to_vec(),
                authority_salt: *authority.salt.as_bytes(),
            },
            segment_size,
            authority,
        })
    }

    /// The wire form: version byte, then the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![MANIFEST_VERSION];
        // Serialising plain integers, arrays and byte vectors into a Vec cannot fail.
        if let Ok(body) = postcard::to_stdvec(&self.body) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// The id of this manifest (BLAKE3 of [`Manifest::to_bytes`]).
    pub fn file_id(&self) -> FileId {
        FileId::of_manifest(&self.to_bytes())
    }

    /// Parses and validates manifest bytes from anywhere (untrusted).
    ///
    /// # Errors
    /// [`ManifestError::UnsupportedVersion`] for another format version;
    /// [`ManifestError::Malformed`] for anything inconsistent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::Malformed("too large"));
        }
        let (&version, rest) = bytes
            .split_first()
            .ok_or(ManifestError::Malformed("empty"))?;
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                found: version,
                supported: MANIFEST_VERSION,
            });
        }
        let (body, trailing): (ManifestBody, _) = postcard::take_from_bytes(rest)
            .map_err(|_| ManifestError::Malformed("undecodable body"))?;
        if !trailing.is_empty() {
            return Err(ManifestError::Malformed("trailing bytes"));
        }
        let segment_size = SegmentSize::new(u64::from(body.segment_size))
            .map_err(|_| ManifestError::Malformed("invalid segment size"))?;
        if usize::from(body.data_shards) != DATA_SHARDS
            || usize::from(body.parity_shards) != PARITY_SHARDS
        {
            return Err(ManifestError::Malformed("unsupported shard counts"));
        }
        if body.stripes.len() as u64 != stripe_count(body.file_len, segment_size) {
            return Err(ManifestError::Malformed(
                "stripe count does not match file length",
            ));
        }
        if body.sealed_metadata.len() < TAG_LEN + METADATA_PAD
            || !(body.sealed_metadata.len() - TAG_LEN).is_multiple_of(METADATA_PAD)
        {
            return Err(ManifestError::Malformed("bad metadata length"));
        }
        let key = AuthorityPublic::from_bytes(&body.authority_key)
            .map_err(|_| ManifestError::Malformed("bad authority key"))?;
        let authority = FileAuthority {
            key,
            salt: AuthoritySalt::from_bytes(body.authority_salt),
        };
        let manifest = Self {
            body,
            segment_size,
            authority,
        };
        if manifest.to_bytes() != bytes {
            // postcard varints have one canonical form; refuse any other so one manifest
            // has exactly one id.
            return Err(ManifestError::Malformed("non-canonical encoding"));
        }
        Ok(manifest)
    }

    /// The file's authority: the key its envelopes must verify under, and its salt.
    pub fn authority(&self) -> &FileAuthority {
        &self.authority
    }

    /// Plaintext length of the file.
    pub fn file_len(&self) -> u64 {
        self.body.file_len
    }

    /// The segment size the file was cut with.
    pub fn segment_size(&self) -> SegmentSize {
        self.segment_size
    }

    /// Number of stripes (at least 1: the empty file has one empty segment).
    pub fn stripe_count(&self) -> u64 {
        self.body.stripes.len() as u64
    }

    /// Shard ids of every stripe, in order; shards 0..4 are data, 4..6 parity.
    pub fn stripes(&self) -> &[[ShardId; TOTAL_SHARDS]] {
        &self.body.stripes
    }

    /// Size and position of stripe `index`, or `None` past the end.
    pub fn layout(&self, index: u64) -> Option<StripeLayout> {
        layout(self.body.file_len, self.segment_size, index)
    }

    /// Opens the sealed metadata.
    ///
    /// # Errors
    /// `None` if it does not authenticate under `key` or does not match the manifest.
    pub fn open_metadata(&self, key: &DataKey) -> Option<Metadata> {
        let mut sealed = self.body.sealed_metadata.clone();
        let plain = key
            .cipher()
            .open(
                Nonce::metadata(),
                &metadata_aad(self.body.file_len, self.segment_size),
                &mut sealed,
            )
            .ok()?;
        let (metadata, padding): (Metadata, _) = postcard::take_from_bytes(plain).ok()?;
        let ok = padding.iter().all(|&b| b == 0)
            && metadata.size == self.body.file_len
            && metadata.name.len() <= MAX_NAME_LEN;
        ok.then_some(metadata)
    }
}

/// Binds the metadata to the manifest fields it describes.
fn metadata_aad(file_len: u64, segment_size: SegmentSize) -> Vec<u8> {
    let mut aad = b"datamesh metadata v1".to_vec();
    aad.extend_from_slice(&file_len.to_be_bytes());
    aad.extend_from_slice(&segment_size.0.to_be_bytes());
    aad
}

/// Stripes in a file of `file_len` bytes: one per segment, and one for the empty file.
pub(crate) fn stripe_count(file_len: u64, segment_size: SegmentSize) -> u64 {
    file_len.div_ceil(segment_size.0 as u64).max(1)
}

pub(crate) fn layout(file_len: u64, segment_size: SegmentSize, index: u64) -> Option<StripeLayout> {
    let count = stripe_count(file_len, segment_size);
    if index >= count {
        return None;
    }
    let seg = segment_size.0 as u64;
    let last = index + 1 == count;
    let plaintext_len = if last { file_len - index * seg } else { seg } as usize;
    let sealed_len = plaintext_len + TAG_LEN;
    Some(StripeLayout {
        plaintext_len,
        sealed_len,
        shard_len: shard_len(sealed_len),
        last,
    })
}

/// Longest name kept in metadata, in bytes.
pub(crate) const fn max_name_len() -> usize {
    MAX_NAME_LEN
}
