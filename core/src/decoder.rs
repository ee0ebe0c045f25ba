//! Stripes -> file: verify shards against their ids, rebuild missing data shards, open
//! every segment, stream the plaintext out in order.

use std::io::Write;
use std::ops::Range;

use bytes::Bytes;
use rayon::prelude::*;

use crate::aead::{DataKey, Nonce, SegmentCipher};
use crate::erasure::{DATA_SHARDS, TOTAL_SHARDS, reconstruct_data};
use crate::error::DecodeError;
use crate::hash::{SegmentDigest, TreeHasher};
use crate::ids::ShardId;
use crate::manifest::{Manifest, Metadata};

/// The shards of one stripe as fetched: `None` where a shard could not be had.
pub type StripeShards = [Option<Vec<u8>>; TOTAL_SHARDS];

/// Shard bytes that hashed to their id when they arrived: made only by
/// [`VerifiedShard::check`]. A decoder given one compares that id with the manifest's
/// instead of hashing the bytes again, so a get hashes each shard byte once per hop (the
/// holder reading it from disk, the getter receiving it), not a third time here.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedShard {
    id: ShardId,
    bytes: Bytes,
}

impl VerifiedShard {
    /// `bytes` if they hash to `id`; the bytes back otherwise. A `Bytes` (a shard read
    /// out of its frame) is kept as it is, not copied.
    ///
    /// # Errors
    /// The bytes, when they do not hash to `id`.
    pub fn check(bytes: impl Into<Bytes>, id: &ShardId) -> Result<Self, Bytes> {
        let bytes = bytes.into();
        if ShardId::of(&bytes) == *id {
            Ok(Self { id: *id, bytes })
        } else {
            Err(bytes)
        }
    }

    /// The id the bytes hash to.
    pub fn id(&self) -> &ShardId {
        &self.id
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for VerifiedShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedShard")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The shards of one stripe, each verified on receipt: `None` where a shard could not be
/// had.
pub type VerifiedStripe = [Option<VerifiedShard>; TOTAL_SHARDS];

/// A shard given to a decoder: its bytes, and the id they hashed to if the caller checked.
pub(crate) struct Given {
    bytes: Bytes,
    verified: Option<ShardId>,
}

impl std::fmt::Debug for Given {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Given")
            .field("len", &self.bytes.len())
            .field("verified", &self.verified)
            .finish()
    }
}

/// One stripe's shards as given to a decoder.
pub(crate) type GivenStripe = [Option<Given>; TOTAL_SHARDS];

/// Shards nobody has checked: the decoder hashes each.
pub(crate) fn unchecked(shards: StripeShards) -> GivenStripe {
    shards.map(|s| {
        s.map(|bytes| Given {
            bytes: Bytes::from(bytes),
            verified: None,
        })
    })
}

/// Shards checked on receipt: the decoder compares ids.
pub(crate) fn checked(shards: VerifiedStripe) -> GivenStripe {
    shards.map(|s| {
        s.map(|v| Given {
            bytes: v.bytes,
            verified: Some(v.id),
        })
    })
}

/// A shard that was present but did not hash to its id (or had the wrong length): it was
/// treated as missing. The caller can report the peer that served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadShard {
    /// Stripe index.
    pub stripe: u64,
    /// Shard index within the stripe (0..4 data, 4..6 parity).
    pub index: usize,
    /// The id the manifest expects.
    pub expected: ShardId,
}

/// What a finished decode reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeReport {
    /// The file's metadata.
    pub metadata: Metadata,
    /// Every shard that was given but did not verify.
    pub bad_shards: Vec<BadShard>,
}

/// Rebuilds a file from its stripes, given in order, into any [`Write`].
///
/// Every segment is authenticated before a byte of it is written; a stripe with fewer
/// than four intact shards is refused with [`DecodeError::InsufficientShards`] before
/// anything of it is written. Stripes are buffered in batches and opened in parallel, so
/// memory is about `stripes_in_flight x 1.5 x segment size`; the first stripe is opened
/// and written alone, as soon as it is given.
#[derive(Debug)]
pub struct Decoder {
    manifest: Manifest,
    metadata: Metadata,
    cipher: SegmentCipher,
    next_stripe: u64,
    pending: Vec<(u64, GivenStripe)>,
    stripes_in_flight: usize,
    tree: TreeHasher,
    bad_shards: Vec<BadShard>,
}

pub(crate) struct Opened {
    stripe: u64,
    pub(crate) plaintext: Vec<u8>,
    pub(crate) plaintext_len: usize,
    digest: SegmentDigest,
    last: bool,
    bad: Vec<BadShard>,
}

impl Decoder {
    /// A decoder for `manifest`'s file under data key `key`.
    ///
    /// # Errors
    /// [`DecodeError::TamperedMetadata`] if the metadata does not open under `key`.
    pub fn new(manifest: Manifest, key: &DataKey) -> Result<Self, DecodeError> {
        let metadata = manifest
            .open_metadata(key)
            .ok_or(DecodeError::TamperedMetadata)?;
        Ok(Self {
            manifest,
            metadata,
            cipher: key.cipher(),
            next_stripe: 0,
            pending: Vec::new(),
            stripes_in_flight: 2 * rayon::current_num_threads(),
            tree: TreeHasher::default(),
            bad_shards: Vec::new(),
        })
    }

    /// Stripes opened at once. Default: twice the number of worker threads.
    pub fn with_stripes_in_flight(mut self, n: usize) -> Self {
        self.stripes_in_flight = n.max(1);
        self
    }

    /// The file's metadata (name, size, mtime, BLAKE3).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The manifest being decoded.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Shards seen so far that did not verify.
    pub fn bad_shards(&self) -> &[BadShard] {
        &self.bad_shards
    }

    /// Adds stripe `index` (which must be the next one) and writes out whatever is ready.
    ///
    /// # Errors
    /// [`DecodeError::OutOfOrder`], [`DecodeError::InsufficientShards`],
    /// [`DecodeError::TamperedSegment`] or [`DecodeError::Io`]. After an error the
    /// decoder's output is incomplete and it should be dropped.
    pub fn push<W: Write>(
        &mut self,
        index: u64,
        shards: StripeShards,
        out: &mut W,
    ) -> Result<(), DecodeError> {
        self.push_given(index, unchecked(shards), out)
    }

    /// As [`Decoder::push`], for shards verified on receipt: their ids are compared with
    /// the manifest's, the bytes are not hashed again.
    ///
    /// # Errors
    /// As [`Decoder::push`].
    pub fn push_verified<W: Write>(
        &mut self,
        index: u64,
        shards: VerifiedStripe,
        out: &mut W,
    ) -> Result<(), DecodeError> {
        self.push_given(index, checked(shards), out)
    }

    fn push_given<W: Write>(
        &mut self,
        index: u64,
        shards: GivenStripe,
        out: &mut W,
    ) -> Result<(), DecodeError> {
        check_next(index, self.next_stripe, 0..self.manifest.stripe_count())?;
        let have = shards.iter().filter(|s| s.is_some()).count();
        if have < DATA_SHARDS {
            return Err(DecodeError::InsufficientShards {
                stripe: index,
                have,
                need: DATA_SHARDS,
            });
        }
        self.next_stripe += 1;
        self.pending.push((index, shards));
        // The first stripe is opened alone, as soon as it is given: a reader gets the
        // file's first bytes after one segment's work, not a whole batch's.
        if self.pending.len() >= self.stripes_in_flight || index == 0 {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Writes the remaining stripes and checks the whole file.
    ///
    /// # Errors
    /// As [`Decoder::push`], plus [`DecodeError::Truncated`] if stripes are missing at the
    /// end and [`DecodeError::ChecksumMismatch`] if the plaintext digest differs from the
    /// metadata.
    pub fn finish<W: Write>(mut self, out: &mut W) -> Result<DecodeReport, DecodeError> {
        self.flush(out)?;
        if self.next_stripe != self.manifest.stripe_count() {
            return Err(DecodeError::Truncated {
                have: self.next_stripe,
                expected: self.manifest.stripe_count(),
            });
        }
        if self.tree.finalize() != Some(self.metadata.blake3) {
            return Err(DecodeError::ChecksumMismatch);
        }
        Ok(DecodeReport {
            metadata: self.metadata,
            bad_shards: self.bad_shards,
        })
    }

    fn flush<W: Write>(&mut self, out: &mut W) -> Result<(), DecodeError> {
        let pending = std::mem::take(&mut self.pending);
        let manifest = &self.manifest;
        let cipher = &self.cipher;
        let opened: Vec<Result<Opened, DecodeError>> = if pending.len() > 1 {
            pending
                .into_par_iter()
                .map(|(i, s)| open_stripe(manifest, cipher, i, s))
                .collect()
        } else {
            pending
                .into_iter()
                .map(|(i, s)| open_stripe(manifest, cipher, i, s))
                .collect()
        };
        for result in opened {
            let opened = result?;
            out.write_all(&opened.plaintext[..opened.plaintext_len])?;
            self.tree.push(opened.digest, opened.last);
            self.bad_shards.extend(opened.bad);
            debug_assert!(opened.stripe < self.next_stripe);
        }
        Ok(())
    }
}

/// Refuses stripe `index` unless it is `next`, the one a decoder expects, and one of
/// `stripes`, the ones it decodes.
pub(crate) fn check_next(index: u64, next: u64, stripes: Range<u64>) -> Result<(), DecodeError> {
    if index != next || !stripes.contains(&index) {
        return Err(DecodeError::OutOfOrder {
            expected: next,
            got: index,
        });
    }
    Ok(())
}

pub(crate) fn open_stripe(
    manifest: &Manifest,
    cipher: &SegmentCipher,
    stripe: u64,
    given: GivenStripe,
) -> Result<Opened, DecodeError> {
    let (Some(layout), Some(ids)) = (
        manifest.layout(stripe),
        manifest.stripes().get(stripe as usize),
    ) else {
        return Err(DecodeError::OutOfOrder {
            expected: manifest.stripe_count(),
            got: stripe,
        });
    };
    let mut bad = Vec::new();
    let mut shards: [Option<Bytes>; TOTAL_SHARDS] = Default::default();
    for (index, (slot, id)) in given.into_iter().zip(ids).enumerate() {
        let Some(Given { bytes, verified }) = slot else {
            continue;
        };
        let intact = bytes.len() == layout.shard_len
            && match verified {
                Some(verified) => verified == *id,
                None => ShardId::of(&bytes) == *id,
            };
        if intact {
            shards[index] = Some(bytes);
        } else {
            bad.push(BadShard {
                stripe,
                index,
                expected: *id,
            });
        }
    }
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < DATA_SHARDS {
        return Err(DecodeError::InsufficientShards {
            stripe,
            have,
            need: DATA_SHARDS,
        });
    }
    reconstruct_data(&mut shards, layout.shard_len)
        .map_err(|_| DecodeError::TamperedSegment { stripe })?;
    let [Some(d0), Some(d1), Some(d2), Some(d3), _, _] = shards else {
        return Err(DecodeError::TamperedSegment { stripe });
    };
    // The segment is opened in place: one buffer for the four data shards.
    let mut sealed = Vec::with_capacity(DATA_SHARDS * layout.shard_len);
    for d in [d0, d1, d2, d3] {
        sealed.extend_from_slice(&d);
    }
    sealed.truncate(layout.sealed_len);
    let plaintext_len = cipher
        .open(Nonce::segment(stripe, layout.last), &[], &mut sealed)
        .map_err(|_| DecodeError::TamperedSegment { stripe })?
        .len();
    let digest = SegmentDigest::of(
        &sealed[..plaintext_len],
        stripe,
        manifest.segment_size().bytes() as u64,
        layout.last,
    );
    Ok(Opened {
        stripe,
        plaintext: sealed,
        plaintext_len,
        digest,
        last: layout.last,
        bad,
    })
}
