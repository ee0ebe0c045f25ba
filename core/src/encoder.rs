//! File -> stripes: read, seal, erasure-code and hash, segments in parallel, output in
//! order.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};

use bytes::Bytes;
use rayon::prelude::*;

use crate::aead::{DataKey, Nonce, SegmentCipher, TAG_LEN};
use crate::authority::FileAuthority;
use crate::erasure::{DATA_SHARDS, TOTAL_SHARDS, encode_parity, shard_len};
use crate::error::EncodeError;
use crate::hash::{SegmentDigest, TreeHasher};
use crate::ids::{FileId, ShardId};
use crate::manifest::{Manifest, Metadata, SegmentSize, max_name_len};

/// How to encode a file.
#[derive(Clone, Debug)]
pub struct EncodeOptions {
    name: String,
    mtime: Option<u64>,
    segment_size: SegmentSize,
    stripes_in_flight: usize,
}

impl EncodeOptions {
    /// Options for a file called `name` (kept in the sealed metadata; truncated to 4 KiB).
    pub fn new(name: impl Into<String>) -> Self {
        let mut name = name.into();
        if name.len() > max_name_len() {
            let mut end = max_name_len();
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        Self {
            name,
            mtime: None,
            segment_size: SegmentSize::DEFAULT,
            stripes_in_flight: default_in_flight(),
        }
    }

    /// Modification time (seconds since the Unix epoch). Default: none.
    pub fn with_mtime(mut self, mtime: u64) -> Self {
        self.mtime = Some(mtime);
        self
    }

    /// Segment size. Default: [`SegmentSize::DEFAULT`] (1 MiB).
    pub fn with_segment_size(mut self, size: SegmentSize) -> Self {
        self.segment_size = size;
        self
    }

    /// Stripes processed at once (memory is about `2.5 x segment size` per stripe: the
    /// batch being sealed and the next one being read).
    /// Default: the number of worker threads, at least 2 (one segment per thread: a
    /// batch of twice that held 4 MiB more of a gateway's memory during a put, at the
    /// same speed; benches/PROFILE.md). 1 means single-threaded.
    pub fn with_stripes_in_flight(mut self, n: usize) -> Self {
        self.stripes_in_flight = n.max(1);
        self
    }
}

fn default_in_flight() -> usize {
    rayon::current_num_threads().max(2)
}

/// One stripe: 4 data shards and 2 parity shards of equal length, with their ids.
#[derive(Clone, PartialEq, Eq)]
pub struct Stripe {
    index: u64,
    shard_len: usize,
    /// The four data shards, contiguous (sealed segment, zero-padded).
    data: Vec<u8>,
    parity: [Vec<u8>; 2],
    ids: [ShardId; TOTAL_SHARDS],
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("index", &self.index)
            .field("shard_len", &self.shard_len)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl Stripe {
    /// Position of the stripe in the file.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Bytes per shard.
    pub fn shard_len(&self) -> usize {
        self.shard_len
    }

    /// Shard `i` (0..4 data, 4..6 parity), or `None` for `i >= 6`.
    pub fn shard(&self, i: usize) -> Option<&[u8]> {
        match i {
            0..DATA_SHARDS => self.data.get(i * self.shard_len..(i + 1) * self.shard_len),
            DATA_SHARDS..TOTAL_SHARDS => self.parity.get(i - DATA_SHARDS).map(Vec::as_slice),
            _ => None,
        }
    }

    /// The ids of the six shards.
    pub fn ids(&self) -> &[ShardId; TOTAL_SHARDS] {
        &self.ids
    }

    /// The six shards as shared buffers, without a copy: the four data shards are
    /// slices of the stripe's one data buffer (what a put sends).
    pub fn into_shared_shards(self) -> [Bytes; TOTAL_SHARDS] {
        let l = self.shard_len;
        let data = Bytes::from(self.data);
        let [p0, p1] = self.parity.map(Bytes::from);
        [
            data.slice(..l),
            data.slice(l..2 * l),
            data.slice(2 * l..3 * l),
            data.slice(3 * l..4 * l),
            p0,
            p1,
        ]
    }

    /// The six shards as owned buffers.
    pub fn into_shards(self) -> [Vec<u8>; TOTAL_SHARDS] {
        let l = self.shard_len;
        let mut data = self.data;
        let d3 = data.split_off(3 * l);
        let d2 = data.split_off(2 * l);
        let d1 = data.split_off(l);
        let [p0, p1] = self.parity;
        [data, d1, d2, d3, p0, p1]
    }
}

/// What [`Encoder::finish`] returns: the manifest and the key that opens the file.
#[derive(Debug)]
pub struct EncodedFile {
    /// The manifest (its bytes are [`Manifest::to_bytes`]).
    pub manifest: Manifest,
    /// BLAKE3 of the manifest bytes.
    pub file_id: FileId,
    /// The file's data key, to wrap into a key envelope. Zeroized on drop.
    pub data_key: DataKey,
    /// The sealed metadata's contents.
    pub metadata: Metadata,
}

/// Streams a file into stripes.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use datamesh_core::{AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, Encoder};
/// let authority = AuthorityKey::derive(&AuthorityRoot::from_bytes(&[1; 32]), &AuthoritySalt::random())?;
/// let mut encoder = Encoder::new(&b"hello"[..], EncodeOptions::new("hello.txt"));
/// let stripes = encoder.by_ref().collect::<Result<Vec<_>, _>>()?;
/// let encoded = encoder.finish(authority.file_authority())?;
/// assert_eq!(stripes.len(), 1);
/// assert_eq!(encoded.manifest.stripes()[0], *stripes[0].ids());
/// # Ok(()) }
/// ```
///
/// Memory stays at about `stripes_in_flight x 2.5 x segment size`, whatever the input's
/// size: segments are read in batches, each batch is sealed, coded and hashed on all
/// worker threads while the next batch is read (so reading overlaps the work), and its
/// stripes are handed out in order before the batch after that is started.
#[derive(Debug)]
pub struct Encoder<R> {
    input: Input<R>,
    options: EncodeOptions,
    key: DataKey,
    cipher: SegmentCipher,
    /// The next batch, read while the previous one was being encoded (or its read error).
    prefetched: Option<std::io::Result<Vec<Segment>>>,
    failed: bool,
    /// Stripes sealed but not yet handed out: never more than one batch.
    pub(crate) ready: VecDeque<Stripe>,
    shard_ids: Vec<[ShardId; TOTAL_SHARDS]>,
    tree: TreeHasher,
}

/// The reading side of an [`Encoder`]: split off so a batch can be read while the
/// previous one is encoded on the worker threads.
#[derive(Debug)]
struct Input<R> {
    reader: R,
    segment_size: usize,
    batch_len: usize,
    /// The next segment, read ahead so the last one is known when it is sealed.
    lookahead: Option<Vec<u8>>,
    next_index: u64,
    file_len: u64,
    reached_end: bool,
}

#[derive(Debug)]
struct Segment {
    index: u64,
    last: bool,
    buf: Vec<u8>,
}

impl<R: Read> Encoder<R> {
    /// An encoder over `reader` with a fresh random data key.
    pub fn new(reader: R, options: EncodeOptions) -> Self {
        Self::with_key(reader, options, DataKey::generate())
    }

    /// An encoder with the data key of an interrupted put of the same file, so that the
    /// same plaintext gives the same stripes (same nonces, same shard ids) and the
    /// stripes already placed need not be sent again.
    ///
    /// A (key, nonce) pair must never seal two different plaintexts: the caller must
    /// compare every stripe that may have left the process before (its ids, recorded
    /// before it was sent) with the stripe this encoder gives at that index, and send
    /// nothing more of a file whose stripe differs. `datamesh-node`'s resumable put does.
    pub fn resume_with_key(reader: R, options: EncodeOptions, key: DataKey) -> Self {
        Self::with_key(reader, options, key)
    }

    /// An encoder with a given data key: frozen test vectors and resumed puts
    /// ([`Encoder::resume_with_key`]); a data key must never be used for two files.
    pub(crate) fn with_key(reader: R, options: EncodeOptions, key: DataKey) -> Self {
        let cipher = key.cipher();
        Self {
            input: Input {
                reader,
                segment_size: options.segment_size.bytes(),
                batch_len: options.stripes_in_flight,
                lookahead: None,
                next_index: 0,
                file_len: 0,
                reached_end: false,
            },
            options,
            key,
            cipher,
            prefetched: None,
            failed: false,
            ready: VecDeque::new(),
            shard_ids: Vec::new(),
            tree: TreeHasher::default(),
        }
    }

    fn encode_batch(&mut self) -> Result<(), EncodeError> {
        let batch = match self.prefetched.take() {
            Some(batch) => batch?,
            None => self.input.read_batch()?,
        };
        let segment_size = self.options.segment_size.bytes() as u64;
        let cipher = &self.cipher;
        let results: Vec<_> = if batch.len() > 1 {
            // Seal this batch on the worker threads while this thread reads the next.
            let input = &mut self.input;
            let mut sealed = Vec::new();
            let next = rayon::in_place_scope(|scope| {
                scope.spawn(|_| {
                    sealed = batch
                        .into_par_iter()
                        .map(|s| seal_stripe(cipher, s, segment_size))
                        .collect();
                });
                (!input.reached_end).then(|| input.read_batch())
            });
            self.prefetched = next;
            sealed
        } else {
            batch
                .into_iter()
                .map(|s| seal_stripe(cipher, s, segment_size))
                .collect()
        };
        for result in results {
            let (stripe, digest, last) = result?;
            self.tree.push(digest, last);
            self.shard_ids.push(stripe.ids);
            self.ready.push_back(stripe);
        }
        Ok(())
    }

    /// Builds the manifest once every stripe has been taken. It commits to `authority`,
    /// the file's envelope-signing key and salt ([`crate::AuthorityKey::file_authority`]).
    ///
    /// # Errors
    /// [`EncodeError::StripesPending`] if the iterator was not drained;
    /// [`EncodeError::AlreadyFailed`] if it returned an error.
    pub fn finish(self, authority: FileAuthority) -> Result<EncodedFile, EncodeError> {
        if self.failed {
            return Err(EncodeError::AlreadyFailed);
        }
        let Some(blake3) = self.tree.finalize().filter(|_| self.ready.is_empty()) else {
            return Err(EncodeError::StripesPending);
        };
        let metadata = Metadata {
            name: self.options.name,
            size: self.input.file_len,
            mtime: self.options.mtime,
            blake3,
        };
        let manifest = Manifest::build(
            self.input.file_len,
            self.options.segment_size,
            self.shard_ids,
            &metadata,
            &self.key,
            authority,
        )
        .map_err(|_| EncodeError::Seal)?;
        Ok(EncodedFile {
            file_id: manifest.file_id(),
            manifest,
            data_key: self.key,
            metadata,
        })
    }
}

impl<R: Read> Input<R> {
    /// Reads up to one segment into a buffer sized for the padded stripe (never zeroed
    /// first: `read_to_end` fills the spare capacity).
    fn read_segment(&mut self) -> std::io::Result<Vec<u8>> {
        let seg = self.segment_size;
        let mut buf = Vec::with_capacity(DATA_SHARDS * shard_len(seg + TAG_LEN));
        loop {
            let want = (seg - buf.len()) as u64;
            match (&mut self.reader).take(want).read_to_end(&mut buf) {
                Ok(_) => return Ok(buf),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn read_batch(&mut self) -> std::io::Result<Vec<Segment>> {
        let seg = self.segment_size;
        let mut batch = Vec::with_capacity(self.batch_len);
        while batch.len() < self.batch_len && !self.reached_end {
            let current = match self.lookahead.take() {
                Some(buf) => buf,
                None => self.read_segment()?,
            };
            let last = if current.len() < seg {
                true
            } else {
                let next = self.read_segment()?;
                let empty = next.is_empty();
                if !empty {
                    self.lookahead = Some(next);
                }
                empty
            };
            self.file_len += current.len() as u64;
            batch.push(Segment {
                index: self.next_index,
                last,
                buf: current,
            });
            self.next_index += 1;
            self.reached_end = last;
        }
        Ok(batch)
    }
}

impl<R: Read> Iterator for Encoder<R> {
    type Item = Result<Stripe, EncodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.ready.is_empty()
            && (self.prefetched.is_some() || !self.input.reached_end)
            && let Err(e) = self.encode_batch()
        {
            self.failed = true;
            return Some(Err(e));
        }
        self.ready.pop_front().map(Ok)
    }
}

fn seal_stripe(
    cipher: &SegmentCipher,
    segment: Segment,
    segment_size: u64,
) -> Result<(Stripe, SegmentDigest, bool), EncodeError> {
    let Segment {
        index,
        last,
        mut buf,
    } = segment;
    let digest = SegmentDigest::of(&buf, index, segment_size, last);
    let sealed_len = buf.len() + TAG_LEN;
    buf.resize(sealed_len, 0);
    cipher
        .seal(Nonce::segment(index, last), &[], &mut buf)
        .map_err(|_| EncodeError::Seal)?;
    let shard_len = shard_len(sealed_len);
    buf.resize(DATA_SHARDS * shard_len, 0);
    let parity = encode_parity(&buf, shard_len).map_err(|e| EncodeError::Erasure(e.0))?;
    let mut ids = [ShardId::from_bytes([0; 32]); TOTAL_SHARDS];
    for (i, shard) in buf
        .chunks_exact(shard_len)
        .chain(parity.iter().map(Vec::as_slice))
        .enumerate()
    {
        ids[i] = ShardId::of(shard);
    }
    Ok((
        Stripe {
            index,
            shard_len,
            data: buf,
            parity,
            ids,
        },
        digest,
        last,
    ))
}
