//! 4+2 Reed-Solomon over a sealed segment (`reed-solomon-simd`, chosen over
//! `reed-solomon-erasure` for runtime SIMD detection and a clean dependency tree; see
//! ARCHITECTURE.md). This is the only module that names the erasure crate.
//!
//! A sealed segment of `len` bytes is laid out as 4 data shards of [`shard_len`] bytes
//! each (the tail zero-padded) followed by 2 parity shards. The true length is never
//! stored in a shard: it follows from the manifest's file length.

use std::cell::RefCell;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::ids::ShardId;

/// Data shards per stripe (k).
pub const DATA_SHARDS: usize = 4;
/// Parity shards per stripe (m).
pub const PARITY_SHARDS: usize = 2;
/// Shards per stripe (k + m).
pub const TOTAL_SHARDS: usize = DATA_SHARDS + PARITY_SHARDS;

/// Bytes per shard for a sealed segment of `sealed_len` bytes: a quarter, rounded up to
/// an even number (the codec works on 16-bit words). Never zero for `sealed_len > 0`.
pub(crate) fn shard_len(sealed_len: usize) -> usize {
    let quarter = sealed_len.div_ceil(DATA_SHARDS).max(1);
    quarter + (quarter & 1)
}

thread_local! {
    static ENCODER: RefCell<Option<ReedSolomonEncoder>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<ReedSolomonDecoder>> = const { RefCell::new(None) };
}

/// The codec refused its input: only possible if shard sizes are inconsistent, which the
/// callers rule out; kept as an error rather than a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError(pub(crate) String);

impl From<reed_solomon_simd::Error> for CodecError {
    fn from(e: reed_solomon_simd::Error) -> Self {
        Self(e.to_string())
    }
}

/// Computes the two parity shards of `data` (exactly `DATA_SHARDS * shard_len` bytes).
pub(crate) fn encode_parity(
    data: &[u8],
    shard_len: usize,
) -> Result<[Vec<u8>; PARITY_SHARDS], CodecError> {
    if data.len() != DATA_SHARDS * shard_len {
        return Err(CodecError(format!(
            "data is {} bytes, expected {}",
            data.len(),
            DATA_SHARDS * shard_len
        )));
    }
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let encoder = match slot.as_mut() {
            Some(enc) => {
                enc.reset(DATA_SHARDS, PARITY_SHARDS, shard_len)?;
                enc
            }
            None => slot.insert(ReedSolomonEncoder::new(
                DATA_SHARDS,
                PARITY_SHARDS,
                shard_len,
            )?),
        };
        for shard in data.chunks_exact(shard_len) {
            encoder.add_original_shard(shard)?;
        }
        let result = encoder.encode()?;
        let mut parity = result.recovery_iter().map(<[u8]>::to_vec);
        match (parity.next(), parity.next()) {
            (Some(p0), Some(p1)) => Ok([p0, p1]),
            _ => Err(CodecError("codec returned too few parity shards".into())),
        }
    })
}

/// Rebuilds the missing data shards in place. Every present shard must be `shard_len`
/// bytes; at least `DATA_SHARDS` must be present. A shard is any owned byte buffer (a
/// `Vec`, or `Bytes` read out of a frame).
pub(crate) fn reconstruct_data<T: AsRef<[u8]> + From<Vec<u8>>>(
    shards: &mut [Option<T>; TOTAL_SHARDS],
    shard_len: usize,
) -> Result<(), CodecError> {
    if shards[..DATA_SHARDS].iter().all(Option::is_some) {
        return Ok(());
    }
    DECODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decoder = match slot.as_mut() {
            Some(dec) => {
                dec.reset(DATA_SHARDS, PARITY_SHARDS, shard_len)?;
                dec
            }
            None => slot.insert(ReedSolomonDecoder::new(
                DATA_SHARDS,
                PARITY_SHARDS,
                shard_len,
            )?),
        };
        for (i, shard) in shards.iter().enumerate() {
            if let Some(bytes) = shard {
                if i < DATA_SHARDS {
                    decoder.add_original_shard(i, bytes.as_ref())?;
                } else {
                    decoder.add_recovery_shard(i - DATA_SHARDS, bytes.as_ref())?;
                }
            }
        }
        let result = decoder.decode()?;
        for (i, restored) in result.restored_original_iter() {
            if let Some(slot) = shards.get_mut(i) {
                *slot = Some(T::from(restored.to_vec()));
            }
        }
        Ok::<(), CodecError>(())
    })?;
    if shards[..DATA_SHARDS].iter().all(Option::is_some) {
        Ok(())
    } else {
        Err(CodecError("codec did not restore every data shard".into()))
    }
}

/// Rebuilding the shards of a stripe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// Fewer than [`DATA_SHARDS`] of the given shards match their ids.
    #[error("only {have} of the {need} intact shards needed to rebuild the stripe")]
    InsufficientShards {
        /// Intact shards given.
        have: usize,
        /// Shards needed.
        need: usize,
    },
    /// A rebuilt shard does not hash to the id the manifest gives it: the intact shards
    /// given are not of this stripe, or the manifest is not the one they were made with.
    #[error("rebuilt shard {index} does not match its id in the manifest")]
    Mismatch {
        /// Shard index (0..6).
        index: usize,
    },
    /// The erasure codec refused its input.
    #[error("erasure coding failed: {0}")]
    Codec(String),
}

/// Rebuilds every missing shard of a stripe from any [`DATA_SHARDS`] intact ones, without
/// decrypting anything: shards are ciphertext and the manifest's shard ids say which bytes
/// are right. This is what lets any node repair a file it cannot read.
///
/// `ids` are the stripe's six shard ids from the manifest and `shard_len` its shard length
/// ([`crate::StripeLayout::shard_len`]). A given shard that does not hash to its id is
/// treated as missing and replaced. On success every slot of `shards` is `Some` and every
/// shard hashes to its id.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use datamesh_core::{Encoder, EncodeOptions, rebuild_shards};
/// let mut encoder = Encoder::new(&b"ciphertext only"[..], EncodeOptions::new("f"));
/// let stripe = encoder.next().ok_or("no stripe")??;
/// let (ids, len) = (*stripe.ids(), stripe.shard_len());
/// let [a, _, c, _, e, f] = stripe.into_shards();
/// let mut shards = [Some(a), None, Some(c), None, Some(e), Some(f)];
/// rebuild_shards(&ids, len, &mut shards)?;
/// assert!(shards.iter().all(Option::is_some));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`RebuildError::InsufficientShards`] with fewer than four intact shards;
/// [`RebuildError::Mismatch`] if a rebuilt shard does not match its id.
pub fn rebuild_shards(
    ids: &[ShardId; TOTAL_SHARDS],
    shard_len: usize,
    shards: &mut [Option<Vec<u8>>; TOTAL_SHARDS],
) -> Result<(), RebuildError> {
    for (slot, id) in shards.iter_mut().zip(ids) {
        if slot
            .as_ref()
            .is_some_and(|s| s.len() != shard_len || ShardId::of(s) != *id)
        {
            *slot = None;
        }
    }
    let have = shards.iter().flatten().count();
    if have < DATA_SHARDS {
        return Err(RebuildError::InsufficientShards {
            have,
            need: DATA_SHARDS,
        });
    }
    if have == TOTAL_SHARDS {
        return Ok(());
    }
    reconstruct_data(shards, shard_len).map_err(|e| RebuildError::Codec(e.0))?;
    if shards[DATA_SHARDS..].iter().any(Option::is_none) {
        let mut data = Vec::with_capacity(DATA_SHARDS * shard_len);
        for shard in shards[..DATA_SHARDS].iter().flatten() {
            data.extend_from_slice(shard);
        }
        let parity = encode_parity(&data, shard_len).map_err(|e| RebuildError::Codec(e.0))?;
        for (slot, p) in shards[DATA_SHARDS..].iter_mut().zip(parity) {
            if slot.is_none() {
                *slot = Some(p);
            }
        }
    }
    for (index, (slot, id)) in shards.iter().zip(ids).enumerate() {
        if slot.as_ref().is_none_or(|s| ShardId::of(s) != *id) {
            return Err(RebuildError::Mismatch { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `patches/reed-solomon-simd` makes each entry of the SIMD engines' multiplication
    /// table when a multiplication needs it, in place of building the 8 MiB table: every
    /// entry it makes equals the release's.
    #[test]
    fn the_multiplication_lookups_made_on_demand_equal_the_release_table() {
        use reed_solomon_simd::engine::tables::{get_exp_log, get_mul128, mul128_lut};
        let (table, exp_log) = (get_mul128(), get_exp_log());
        assert_eq!(table.len(), 1 << 16);
        for (log_m, row) in (0..=u16::MAX).zip(table.iter()) {
            let made = mul128_lut(log_m, exp_log);
            assert_eq!((made.lo, made.hi), (row.lo, row.hi), "log_m {log_m}");
        }
    }

    #[test]
    fn shard_len_is_even_and_covers_the_input() {
        for len in [1usize, 2, 3, 4, 15, 16, 17, 64, 1 << 20, (1 << 20) + 16] {
            let s = shard_len(len);
            assert_eq!(s % 2, 0, "{len}");
            assert!(s * DATA_SHARDS >= len, "{len}");
            assert!(s * DATA_SHARDS < len + 2 * DATA_SHARDS + 2, "{len}");
        }
    }

    proptest! {
        #[test]
        fn any_four_shards_rebuild_the_data(data in proptest::collection::vec(any::<u8>(), 1..5000), lost in proptest::sample::subsequence((0..TOTAL_SHARDS).collect::<Vec<_>>(), 0..=PARITY_SHARDS)) {
            let len = shard_len(data.len());
            let mut padded = data.clone();
            padded.resize(len * DATA_SHARDS, 0);
            let parity = encode_parity(&padded, len).map_err(|e| TestCaseError::fail(e.0))?;
            let mut shards: [Option<Vec<u8>>; TOTAL_SHARDS] = [
                Some(padded[..len].to_vec()), Some(padded[len..2 * len].to_vec()),
                Some(padded[2 * len..3 * len].to_vec()), Some(padded[3 * len..].to_vec()),
                Some(parity[0].clone()), Some(parity[1].clone()),
            ];
            for &i in &lost { shards[i] = None; }
            reconstruct_data(&mut shards, len).map_err(|e| TestCaseError::fail(e.0))?;
            let rebuilt: Vec<u8> = shards[..DATA_SHARDS].iter().flatten().flatten().copied().collect();
            prop_assert_eq!(rebuilt, padded);
        }
    }

    proptest! {
        #[test]
        fn any_four_shards_rebuild_all_six_by_id(data in proptest::collection::vec(any::<u8>(), 1..5000), lost in proptest::sample::subsequence((0..TOTAL_SHARDS).collect::<Vec<_>>(), 0..=PARITY_SHARDS), flip in 0..TOTAL_SHARDS) {
            let len = shard_len(data.len());
            let mut padded = data.clone();
            padded.resize(len * DATA_SHARDS, 0);
            let parity = encode_parity(&padded, len).map_err(|e| TestCaseError::fail(e.0))?;
            let full: Vec<Vec<u8>> = padded.chunks_exact(len).map(<[u8]>::to_vec).chain(parity).collect();
            let ids: [ShardId; TOTAL_SHARDS] = std::array::from_fn(|i| ShardId::of(&full[i]));
            let mut shards: [Option<Vec<u8>>; TOTAL_SHARDS] = std::array::from_fn(|i| Some(full[i].clone()));
            for &i in &lost { shards[i] = None; }
            rebuild_shards(&ids, len, &mut shards).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for i in 0..TOTAL_SHARDS {
                prop_assert_eq!(shards[i].as_deref(), Some(&full[i][..]));
            }
            // A wrong shard counts as missing: with two lost already, one more is too many.
            if lost.len() == PARITY_SHARDS && !lost.contains(&flip) {
                let mut shards: [Option<Vec<u8>>; TOTAL_SHARDS] = std::array::from_fn(|i| Some(full[i].clone()));
                for &i in &lost { shards[i] = None; }
                if let Some(s) = shards[flip].as_mut() { s[0] ^= 1; }
                prop_assert_eq!(rebuild_shards(&ids, len, &mut shards), Err(RebuildError::InsufficientShards { have: 3, need: DATA_SHARDS }));
            }
        }
    }

    #[test]
    fn a_rebuilt_shard_must_match_the_manifest() -> Result<(), String> {
        let len = 8;
        let padded: Vec<u8> = (0..32).collect();
        let parity = encode_parity(&padded, len).map_err(|e| e.0)?;
        let full: Vec<Vec<u8>> = padded
            .chunks_exact(len)
            .map(<[u8]>::to_vec)
            .chain(parity)
            .collect();
        let mut ids: [ShardId; TOTAL_SHARDS] = std::array::from_fn(|i| ShardId::of(&full[i]));
        ids[5] = ShardId::of(b"some other stripe");
        let mut shards: [Option<Vec<u8>>; TOTAL_SHARDS] =
            std::array::from_fn(|i| Some(full[i].clone()));
        shards[5] = None;
        assert_eq!(
            rebuild_shards(&ids, len, &mut shards),
            Err(RebuildError::Mismatch { index: 5 })
        );
        Ok(())
    }
}
