//! 4+2 Reed-Solomon over a sealed segment (`reed-solomon-simd`, chosen over
//! `reed-solomon-erasure` for runtime SIMD detection and a clean dependency tree; see
//! ARCHITECTURE.md). This is the only module that names the erasure crate.
//!
//! A sealed segment of `len` bytes is laid out as 4 data shards of [`shard_len`] bytes
//! each (the tail zero-padded) followed by 2 parity shards. The true length is never
//! stored in a shard: it follows from the manifest's file length.

use std::cell::RefCell;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

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
/// bytes; at least `DATA_SHARDS` must be present.
pub(crate) fn reconstruct_data(
    shards: &mut [Option<Vec<u8>>; TOTAL_SHARDS],
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
                    decoder.add_original_shard(i, bytes)?;
                } else {
                    decoder.add_recovery_shard(i - DATA_SHARDS, bytes)?;
                }
            }
        }
        let result = decoder.decode()?;
        for (i, restored) in result.restored_original_iter() {
            if let Some(slot) = shards.get_mut(i) {
                *slot = Some(restored.to_vec());
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
}
