//! Part of a file: the stripes that cover a byte range, each opened and authenticated on
//! its own (its AES-GCM tag), and exactly the range's bytes written out.
//!
//! A range cannot be checked against the file's BLAKE3 (that needs every byte): each
//! segment's tag proves its bytes are the ones sealed at that position of this file, no
//! more.

use std::io::Write;
use std::ops::Range;

use crate::aead::{DataKey, SegmentCipher};
use crate::decoder::{
    GivenStripe, StripeShards, VerifiedStripe, check_next, checked, open_stripe, unchecked,
};
use crate::error::DecodeError;
use crate::manifest::{Manifest, Metadata};

/// A non-empty byte range of a file, end exclusive, inside the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    start: u64,
    end: u64,
}

/// A range that is empty or reaches past the end of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("range {start}-{last} is outside the file ({len} bytes: ranges go from 0 to {len}-1)")]
pub struct RangeError {
    /// First byte asked for.
    pub start: u64,
    /// Last byte asked for (inclusive).
    pub last: u64,
    /// The file's length.
    pub len: u64,
}

impl ByteRange {
    /// Bytes `start..=last` (inclusive, as HTTP `Range: bytes=start-last`) of a file of
    /// `len` bytes; `last` past the end is cut to the end, as HTTP does.
    ///
    /// # Errors
    /// [`RangeError`] when `start > last` or `start` is at or past the end.
    pub fn new(start: u64, last: u64, len: u64) -> Result<Self, RangeError> {
        if start > last || start >= len {
            return Err(RangeError { start, last, len });
        }
        Ok(Self {
            start,
            end: last.saturating_add(1).min(len),
        })
    }

    /// First byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Opens the stripes of one [`ByteRange`], in order, and writes exactly its bytes.
#[derive(Debug)]
pub struct RangeDecoder {
    manifest: Manifest,
    metadata: Metadata,
    cipher: SegmentCipher,
    range: ByteRange,
    next_stripe: u64,
}

impl RangeDecoder {
    /// A decoder of `range` of `manifest`'s file under data key `key`.
    ///
    /// # Errors
    /// [`DecodeError::TamperedMetadata`] if the metadata does not open under `key`.
    pub fn new(manifest: Manifest, key: &DataKey, range: ByteRange) -> Result<Self, DecodeError> {
        let metadata = manifest
            .open_metadata(key)
            .ok_or(DecodeError::TamperedMetadata)?;
        let next_stripe = range.start / manifest.segment_size().bytes() as u64;
        Ok(Self {
            manifest,
            metadata,
            cipher: key.cipher(),
            range,
            next_stripe,
        })
    }

    /// The stripes covering a range of a file cut in `segment_size` segments.
    pub fn stripes_of(range: ByteRange, segment_size: u64) -> Range<u64> {
        range.start / segment_size..range.end.div_ceil(segment_size)
    }

    /// The stripes to push, in order.
    pub fn stripes(&self) -> Range<u64> {
        Self::stripes_of(self.range, self.manifest.segment_size().bytes() as u64)
    }

    /// The file's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Opens stripe `index` (the next of [`RangeDecoder::stripes`]) and writes its part of
    /// the range; the bytes written.
    ///
    /// # Errors
    /// [`DecodeError::OutOfOrder`], [`DecodeError::InsufficientShards`],
    /// [`DecodeError::TamperedSegment`] (nothing of that stripe is written) or
    /// [`DecodeError::Io`].
    pub fn push<W: Write>(
        &mut self,
        index: u64,
        shards: StripeShards,
        out: &mut W,
    ) -> Result<u64, DecodeError> {
        self.push_given(index, unchecked(shards), out)
    }

    /// As [`RangeDecoder::push`], for shards verified on receipt (see
    /// [`crate::Decoder::push_verified`]).
    ///
    /// # Errors
    /// As [`RangeDecoder::push`].
    pub fn push_verified<W: Write>(
        &mut self,
        index: u64,
        shards: VerifiedStripe,
        out: &mut W,
    ) -> Result<u64, DecodeError> {
        self.push_given(index, checked(shards), out)
    }

    fn push_given<W: Write>(
        &mut self,
        index: u64,
        shards: GivenStripe,
        out: &mut W,
    ) -> Result<u64, DecodeError> {
        check_next(index, self.next_stripe, self.stripes())?;
        let opened = open_stripe(&self.manifest, &self.cipher, index, shards)?;
        self.next_stripe += 1;
        let seg = self.manifest.segment_size().bytes() as u64;
        let first = index * seg;
        let from = self.range.start.saturating_sub(first) as usize;
        let to = (self.range.end - first).min(opened.plaintext_len as u64) as usize;
        let part = opened.plaintext.get(from..to).unwrap_or_default();
        out.write_all(part)?;
        Ok(part.len() as u64)
    }

    /// Checks that every stripe of the range was pushed.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when stripes are missing.
    pub fn finish(self) -> Result<Metadata, DecodeError> {
        let stripes = self.stripes();
        if self.next_stripe != stripes.end {
            return Err(DecodeError::Truncated {
                have: self.next_stripe - stripes.start,
                expected: stripes.end - stripes.start,
            });
        }
        Ok(self.metadata)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use proptest::prelude::*;

    use super::*;
    use crate::{
        AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, EncodedFile, Encoder,
        SegmentSize, Stripe,
    };

    type TestResult = Result<(), Box<dyn Error>>;

    const SEG: u64 = 64 * 1024;

    fn encode(plain: &[u8]) -> Result<(Vec<Stripe>, EncodedFile), Box<dyn Error>> {
        let authority = AuthorityKey::derive(
            &AuthorityRoot::from_bytes(&[7; 32]),
            &AuthoritySalt::random(),
        )?;
        let mut enc = Encoder::new(
            plain,
            EncodeOptions::new("r.bin").with_segment_size(SegmentSize::MIN),
        );
        let stripes = enc.by_ref().collect::<Result<Vec<_>, _>>()?;
        let file = enc.finish(authority.file_authority())?;
        Ok((stripes, file))
    }

    fn shards(stripe: &Stripe) -> StripeShards {
        std::array::from_fn(|i| stripe.shard(i).map(<[u8]>::to_vec))
    }

    fn plain(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// The range's bytes and the number of stripes opened for them.
    fn read(
        stripes: &[Stripe],
        file: &EncodedFile,
        range: ByteRange,
    ) -> Result<(Vec<u8>, u64), Box<dyn Error>> {
        let mut dec = RangeDecoder::new(file.manifest.clone(), &file.data_key, range)?;
        let mut out = Vec::new();
        let used = dec.stripes();
        for i in used.clone() {
            dec.push(i, shards(&stripes[i as usize]), &mut out)?;
        }
        dec.finish()?;
        Ok((out, used.end - used.start))
    }

    fn check_range(len: usize, a: u64, b: u64) -> TestResult {
        let data = plain(len);
        let (stripes, file) = encode(&data)?;
        let (x, y) = (a % len as u64, b % len as u64);
        let (start, last) = (x.min(y), x.max(y));
        let range = ByteRange::new(start, last, len as u64)?;
        let (out, used) = read(&stripes, &file, range)?;
        if out[..] != data[start as usize..=last as usize] {
            return Err(format!("range {start}-{last} of {len}: wrong bytes").into());
        }
        if used != last / SEG - start / SEG + 1 {
            return Err(format!("range {start}-{last} of {len}: {used} stripes opened").into());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Any range of any file gives exactly its bytes, from exactly the stripes that
        /// hold them.
        #[test]
        fn any_range_gives_exactly_its_bytes_from_its_stripes(
            len in 1usize..(4 * SEG as usize + 3),
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            check_range(len, a, b).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }

    #[test]
    fn ranges_at_segment_edges_give_exactly_their_bytes() -> TestResult {
        let len = 3 * SEG as usize + 1;
        for (a, b) in [
            (0, 0),
            (SEG - 1, SEG),
            (SEG, 2 * SEG - 1),
            (3 * SEG, 3 * SEG),
            (0, 3 * SEG),
        ] {
            check_range(len, a, b)?;
        }
        Ok(())
    }

    #[test]
    fn ranges_past_the_end_or_backwards_are_refused_and_the_end_is_cut() -> TestResult {
        assert!(ByteRange::new(10, 20, 10).is_err());
        assert!(ByteRange::new(5, 4, 10).is_err());
        assert!(ByteRange::new(0, 0, 0).is_err());
        let cut = ByteRange::new(3, u64::MAX, 10)?;
        assert_eq!((cut.start(), cut.end(), cut.len()), (3, 10, 7));
        let e = ByteRange::new(10, 20, 10).err().ok_or("accepted")?;
        assert_eq!(
            e.to_string(),
            "range 10-20 is outside the file (10 bytes: ranges go from 0 to 10-1)"
        );
        Ok(())
    }

    #[test]
    fn tampered_shards_and_stripes_out_of_order_write_nothing() -> TestResult {
        let data = plain(3 * SEG as usize);
        let (stripes, file) = encode(&data)?;
        let range = ByteRange::new(SEG + 5, SEG + 10, data.len() as u64)?;
        let mut dec = RangeDecoder::new(file.manifest.clone(), &file.data_key, range)?;
        let mut out = Vec::new();
        assert!(matches!(
            dec.push(0, shards(&stripes[0]), &mut out),
            Err(DecodeError::OutOfOrder { .. })
        ));
        // Three shards of another stripe: they do not match their ids, three remain.
        let mut bad = shards(&stripes[1]);
        for (i, slot) in bad.iter_mut().enumerate().take(3) {
            *slot = stripes[2].shard(i).map(<[u8]>::to_vec);
        }
        assert!(matches!(
            dec.push(1, bad, &mut out),
            Err(DecodeError::InsufficientShards { .. })
        ));
        assert!(out.is_empty());
        let dec = RangeDecoder::new(file.manifest.clone(), &file.data_key, range)?;
        assert!(matches!(dec.finish(), Err(DecodeError::Truncated { .. })));
        let mut dec = RangeDecoder::new(file.manifest.clone(), &file.data_key, range)?;
        dec.push(1, shards(&stripes[1]), &mut out)?;
        assert_eq!(out, data[SEG as usize + 5..=SEG as usize + 10]);
        Ok(())
    }
}
