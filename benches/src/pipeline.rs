//! The pipeline and the raw primitives that bound it, over the same 1 MiB segments; used
//! by the criterion bench and by the `pipeline` section of the e2e program.
//!
//! Per byte of file, encode does: BLAKE3 of the plaintext, one AES-256-GCM pass, an RS
//! 4+2 encode (1.5x out) and BLAKE3 of the 6 shards (1.5x). Decode (two data shards
//! missing) does: BLAKE3 of the 4 shards it got, an RS rebuild, AES-256-GCM open, BLAKE3
//! of the plaintext.

use std::cell::RefCell;
use std::hint::black_box;

// The AES-256-GCM `datamesh_core` seals segments with (`core/src/aead.rs`).
use anyhow::{Context as _, anyhow, ensure};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use datamesh_core::{
    AuthorityKey, AuthorityRoot, AuthoritySalt, DecodeReport, Decoder, EncodeOptions, EncodedFile,
    Encoder, FileAuthority, SegmentSize, ShardId, StripeShards, TOTAL_SHARDS, VerifiedShard,
    VerifiedStripe,
};
use rayon::prelude::*;
use reed_solomon_simd::ReedSolomonEncoder;

/// 2^20 bytes.
pub const MIB: usize = 1 << 20;
/// The segment size the pipeline uses (its default) and the primitives are run over.
pub const SEGMENT: usize = MIB;

/// The raw primitives, in the order they are reported.
pub const PRIMITIVES: [Primitive; 4] = [
    Primitive::AesGcm,
    Primitive::Blake3,
    Primitive::RsEncode,
    Primitive::Memcpy,
];

/// One raw primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Primitive {
    /// AES-256-GCM seal in place of each segment.
    AesGcm,
    /// BLAKE3 of each segment.
    Blake3,
    /// RS 4+2 parity of each segment (encoder reused per thread, as the pipeline does).
    RsEncode,
    /// Copy of the buffer.
    Memcpy,
}

impl Primitive {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesGcm => "aes-256-gcm",
            Self::Blake3 => "blake3",
            Self::RsEncode => "rs-encode",
            Self::Memcpy => "memcpy",
        }
    }
}

/// `len` reproducible pseudo-random (incompressible) bytes: the benchmark's input.
pub fn input(len: usize) -> Vec<u8> {
    datamesh_testnet::input::random_bytes(len, 0x2545_f491_4f6c_dd1d)
}

/// Runs `f` over every segment of `buf`, on one thread or on all.
pub fn per_segment<F: Fn(usize, &mut [u8]) + Sync>(buf: &mut [u8], parallel: bool, f: F) {
    if parallel {
        buf.par_chunks_mut(SEGMENT)
            .enumerate()
            .for_each(|(i, s)| f(i, s));
    } else {
        buf.chunks_mut(SEGMENT)
            .enumerate()
            .for_each(|(i, s)| f(i, s));
    }
}

thread_local! {
    static RS: RefCell<Option<ReedSolomonEncoder>> = const { RefCell::new(None) };
}

/// The primitives, ready to run over a buffer.
pub struct Primitives {
    cipher: LessSafeKey,
}

impl std::fmt::Debug for Primitives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Primitives(..)")
    }
}

impl Primitives {
    /// With a fixed (benchmark-only) AES key.
    ///
    /// # Errors
    /// AWS-LC refuses the key (it never does for 32 bytes).
    pub fn new() -> anyhow::Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, &[7u8; 32])
            .map_err(|_| anyhow::anyhow!("AWS-LC refused an AES-256 key"))?;
        Ok(Self {
            cipher: LessSafeKey::new(key),
        })
    }

    /// Runs `primitive` once over `buf` (segment by segment; `src` is the source of
    /// memcpy and must be as long as `buf`).
    pub fn run(&self, primitive: Primitive, buf: &mut [u8], src: &[u8], parallel: bool) {
        match primitive {
            Primitive::AesGcm => per_segment(buf, parallel, |i, seg| {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
                let tag = self.cipher.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    seg,
                );
                black_box(tag.is_ok());
            }),
            Primitive::Blake3 => per_segment(buf, parallel, |_, seg| {
                black_box(blake3::hash(seg));
            }),
            Primitive::RsEncode => per_segment(buf, parallel, |_, seg| {
                black_box(rs_parity_len(seg));
            }),
            Primitive::Memcpy => {
                if parallel {
                    buf.par_chunks_mut(SEGMENT)
                        .zip(src.par_chunks(SEGMENT))
                        .for_each(|(d, s)| d.copy_from_slice(s));
                } else {
                    buf.copy_from_slice(src);
                }
                black_box(&buf);
            }
        }
    }
}

/// RS 4+2 parity of one segment with this thread's encoder; the first parity shard's
/// length (0 on a codec error, which cannot happen for an even quarter).
fn rs_parity_len(seg: &[u8]) -> usize {
    let shard = (seg.len() / 4) & !1;
    if shard == 0 {
        return 0;
    }
    RS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let enc = match slot.as_mut() {
            Some(enc) => enc.reset(4, 2, shard).ok().map(|()| enc),
            None => ReedSolomonEncoder::new(4, 2, shard)
                .ok()
                .map(|e| slot.insert(e)),
        };
        let Some(enc) = enc else { return 0 };
        for s in seg.chunks_exact(shard).take(4) {
            if enc.add_original_shard(s).is_err() {
                return 0;
            }
        }
        enc.encode()
            .ok()
            .and_then(|r| r.recovery(0).map(<[u8]>::len))
            .unwrap_or(0)
    })
}

fn options(in_flight: usize) -> anyhow::Result<EncodeOptions> {
    Ok(EncodeOptions::new("bench")
        .with_segment_size(SegmentSize::new(SEGMENT as u64).context("segment size")?)
        .with_stripes_in_flight(in_flight))
}

/// The authority a bench file's manifest commits to (a fixed root, a fresh salt).
fn authority() -> anyhow::Result<FileAuthority> {
    let root = AuthorityRoot::from_bytes(&[0xbe; 32]);
    Ok(AuthorityKey::derive(&root, &AuthoritySalt::random())?.file_authority())
}

/// Encodes `data` (stripes dropped as they come, as a put hands them to the network).
///
/// # Errors
/// An encoder error.
pub fn encode(data: &[u8], in_flight: usize) -> anyhow::Result<EncodedFile> {
    let mut encoder = Encoder::new(data, options(in_flight)?);
    for stripe in encoder.by_ref() {
        black_box(stripe?);
    }
    Ok(encoder.finish(authority()?)?)
}

/// Encodes `data` and keeps every stripe's six shards.
///
/// # Errors
/// An encoder error.
pub fn encode_stripes(
    data: &[u8],
    in_flight: usize,
) -> anyhow::Result<(Vec<[Vec<u8>; TOTAL_SHARDS]>, EncodedFile)> {
    let mut encoder = Encoder::new(data, options(in_flight)?);
    let mut stripes = Vec::new();
    for stripe in encoder.by_ref() {
        stripes.push(stripe?.into_shards());
    }
    Ok((stripes, encoder.finish(authority()?)?))
}

/// Data shards 0 and 2 missing: every stripe needs an RS rebuild (the worst case a get
/// meets).
pub const LOST_TWO_DATA: [usize; 2] = [0, 2];
/// Parity shards missing: the four data shards, as a get with every holder up fetches.
pub const DATA_ONLY: [usize; 2] = [4, 5];

/// The decoder's input: every stripe's shards without those in `lost`.
pub fn decode_input(stripes: &[[Vec<u8>; TOTAL_SHARDS]], lost: &[usize]) -> Vec<StripeShards> {
    stripes
        .iter()
        .map(|s| std::array::from_fn(|i| (!lost.contains(&i)).then(|| s[i].clone())))
        .collect()
}

/// Decodes `given` into a sink.
///
/// # Errors
/// A decoder error.
pub fn decode(
    file: &EncodedFile,
    given: Vec<StripeShards>,
    in_flight: usize,
) -> anyhow::Result<DecodeReport> {
    let mut decoder =
        Decoder::new(file.manifest.clone(), &file.data_key)?.with_stripes_in_flight(in_flight);
    let mut sink = std::io::sink();
    for (i, shards) in given.into_iter().enumerate() {
        decoder.push(i as u64, shards, &mut sink)?;
    }
    decoder
        .finish(&mut sink)
        .map_err(|e| anyhow!("decode: {e}"))
}

/// What a getting node does with the shards it receives, before and after it kept the
/// receipt check's result: every shard in `given` is hashed against its id as it arrives
/// (the network hop's check), then decoded; with `reuse_check` the decoder compares ids
/// ([`Decoder::push_verified`]), without it the decoder hashes every shard again.
///
/// # Errors
/// A shard that does not verify, or a decoder error.
pub fn receive_and_decode(
    file: &EncodedFile,
    given: Vec<StripeShards>,
    in_flight: usize,
    reuse_check: bool,
) -> anyhow::Result<DecodeReport> {
    let mut decoder =
        Decoder::new(file.manifest.clone(), &file.data_key)?.with_stripes_in_flight(in_flight);
    let mut sink = std::io::sink();
    for (i, shards) in given.into_iter().enumerate() {
        let ids = file.manifest.stripes()[i];
        if reuse_check {
            let mut verified: VerifiedStripe = Default::default();
            for (slot, (shard, id)) in verified.iter_mut().zip(shards.into_iter().zip(&ids)) {
                if let Some(bytes) = shard {
                    let shard = VerifiedShard::check(bytes, id)
                        .map_err(|_| anyhow!("stripe {i}: a shard does not verify"))?;
                    *slot = Some(shard);
                }
            }
            decoder.push_verified(i as u64, verified, &mut sink)?;
        } else {
            for (shard, id) in shards.iter().zip(&ids) {
                if let Some(bytes) = shard {
                    ensure!(
                        ShardId::of(bytes) == *id,
                        "stripe {i}: a shard does not verify"
                    );
                }
            }
            decoder.push(i as u64, shards, &mut sink)?;
        }
    }
    decoder
        .finish(&mut sink)
        .map_err(|e| anyhow!("decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_reproducible_and_not_constant() {
        let a = input(1000);
        assert_eq!(a, input(1000));
        assert_eq!(a.len(), 1000);
        assert!(a.iter().any(|&b| b != a[0]));
    }

    #[test]
    fn decode_of_the_benchmark_input_round_trips() -> anyhow::Result<()> {
        let data = input(3 * SEGMENT + 5);
        let (stripes, file) = encode_stripes(&data, 2)?;
        for lost in [&LOST_TWO_DATA[..], &DATA_ONLY[..], &[]] {
            let given = decode_input(&stripes, lost);
            assert!(
                given
                    .iter()
                    .all(|s| s.iter().flatten().count() == 6 - lost.len())
            );
            let report = decode(&file, given, 2)?;
            assert_eq!(report.metadata.size, data.len() as u64);
            assert_eq!(report.metadata.blake3, *blake3::hash(&data).as_bytes());
        }
        Ok(())
    }

    #[test]
    fn rs_primitive_makes_parity_of_a_quarter() {
        assert_eq!(rs_parity_len(&vec![1u8; SEGMENT]), SEGMENT / 4);
        assert_eq!(rs_parity_len(&[]), 0);
    }
}
