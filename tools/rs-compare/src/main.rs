//! 4+2 Reed-Solomon ENCODE throughput, single thread.
//!
//! Cases: reed-solomon-erasure 6.0.0 (pure Rust, or C SIMD with `--features simd-accel`),
//! reed-solomon-simd 3.x (reused `ReedSolomonEncoder` and one-shot `encode`).
//! Sizes: one 1 MiB input (4 x 256 KiB data shards, 2 parity) and 64 MiB as 64 x 1 MiB.
//! Throughput = input data bytes / median time, in MB/s (10^6 bytes/s).

use std::hint::black_box;
use std::time::{Duration, Instant};

const DATA: usize = 4;
const PARITY: usize = 2;
const MIB: usize = 1 << 20;
const SHARD: usize = MIB / DATA; // 256 KiB
const RUNS: usize = 20;
const WARMUP: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `f` (which processes `bytes` input bytes per call) WARMUP + RUNS times; prints median MB/s.
fn bench(name: &str, bytes: usize, mut f: impl FnMut()) {
    for _ in 0..WARMUP {
        f();
    }
    let times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let med = median(times.clone());
    let best = *times.iter().min().unwrap();
    let mbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "{:<52} {:>6} MiB  median {:>10.3?}  {:>9.1} MB/s  (best run {:>9.1} MB/s)",
        name,
        bytes / MIB,
        med,
        mbs(med),
        mbs(best)
    );
}

/// Deterministic pseudo-random bytes (xorshift), so inputs are not trivially compressible/zero.
fn fill(buf: &mut [u8], mut seed: u64) {
    for b in buf.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = (seed >> 24) as u8;
    }
}

/// `n` blocks of 4 data shards (256 KiB each) = n MiB of input.
fn make_blocks(n: usize) -> Vec<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            (0..DATA)
                .map(|j| {
                    let mut s = vec![0u8; SHARD];
                    fill(&mut s, 0x9E37_79B9_7F4A_7C15 ^ ((i * DATA + j) as u64 + 1));
                    s
                })
                .collect()
        })
        .collect()
}

fn main() {
    let backend = if cfg!(feature = "simd-accel") {
        "simd-accel (C)"
    } else {
        "pure Rust"
    };
    println!(
        "4+{PARITY} RS encode, shard {} KiB, {RUNS} timed runs after {WARMUP} warm-up, single thread; reed-solomon-erasure backend: {backend}",
        SHARD / 1024
    );

    let one = make_blocks(1);
    let many = make_blocks(64);

    // ---- (1)/(2) reed-solomon-erasure 6.0.0, GF(2^8) ----
    {
        use reed_solomon_erasure::galois_8::ReedSolomon;
        let rs = ReedSolomon::new(DATA, PARITY).unwrap();
        let mut parity = vec![vec![0u8; SHARD]; PARITY];
        let label = format!("reed-solomon-erasure 6.0.0 [{backend}] encode_sep");
        for (blocks, bytes) in [(&one, MIB), (&many, 64 * MIB)] {
            bench(&label, bytes, || {
                for blk in blocks.iter() {
                    let (p0, p1) = parity.split_at_mut(1);
                    let mut out: [&mut [u8]; PARITY] = [&mut p0[0], &mut p1[0]];
                    rs.encode_sep(blk, &mut out).unwrap();
                    black_box(&out);
                }
            });
        }
        assert!(parity[0].iter().any(|&b| b != 0));
    }

    // ---- (3a) reed-solomon-simd, reused ReedSolomonEncoder ----
    {
        use reed_solomon_simd::ReedSolomonEncoder;
        let mut enc = ReedSolomonEncoder::new(DATA, PARITY, SHARD).unwrap();
        for (blocks, bytes) in [(&one, MIB), (&many, 64 * MIB)] {
            bench(
                "reed-solomon-simd 3.x ReedSolomonEncoder (reused)",
                bytes,
                || {
                    for blk in blocks.iter() {
                        enc.reset(DATA, PARITY, SHARD).unwrap();
                        for s in blk {
                            enc.add_original_shard(s).unwrap();
                        }
                        let res = enc.encode().unwrap();
                        for r in res.recovery_iter() {
                            black_box(r);
                        }
                    }
                },
            );
        }
    }

    // ---- (3b) reed-solomon-simd, one-shot encode ----
    {
        for (blocks, bytes) in [(&one, MIB), (&many, 64 * MIB)] {
            bench("reed-solomon-simd 3.x encode() one-shot", bytes, || {
                for blk in blocks.iter() {
                    let rec = reed_solomon_simd::encode(DATA, PARITY, blk).unwrap();
                    black_box(rec);
                }
            });
        }
    }
}
