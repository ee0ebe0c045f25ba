//! Pipeline throughput against the raw limits it is bounded by, measured in one run.
//!
//! `cargo bench -p datamesh-benches --bench pipeline` (add `-- --quick` for a fast pass).
//!
//! For 1 MiB and 64 MiB inputs, single thread and all cores: the full encode (seal + RS +
//! shard ids + plaintext BLAKE3), the full decode (verify ids + RS rebuild of 2 missing data
//! shards + open + BLAKE3), and alone, over the same 1 MiB segments: AES-256-GCM, BLAKE3,
//! RS 4+2 encode and memcpy. At the end it prints MB/s and the pipeline / limit ratios.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use criterion::{BatchSize, Criterion, Throughput};
use datamesh_core::{Decoder, EncodeOptions, Encoder, SegmentSize, StripeShards, TOTAL_SHARDS};
use rayon::prelude::*;
use reed_solomon_simd::ReedSolomonEncoder;

const MIB: usize = 1 << 20;
const SEGMENT: usize = MIB;
const SIZES: [(&str, usize); 2] = [("1MiB", MIB), ("64MiB", 64 * MIB)];
const PRIMITIVES: [&str; 4] = ["aes-256-gcm", "blake3", "rs-encode", "memcpy"];

fn input(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `f` over every 1 MiB segment, on one thread or on all.
fn per_segment<F: Fn(usize, &mut [u8]) + Sync>(buf: &mut [u8], parallel: bool, f: F) {
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

fn encode_file(
    data: &[u8],
    in_flight: usize,
) -> (Vec<[Vec<u8>; TOTAL_SHARDS]>, datamesh_core::EncodedFile) {
    let opts = EncodeOptions::new("bench")
        .with_segment_size(SegmentSize::new(SEGMENT as u64).unwrap())
        .with_stripes_in_flight(in_flight);
    let mut encoder = Encoder::new(data, opts);
    let stripes = encoder.by_ref().map(|s| s.unwrap().into_shards()).collect();
    (stripes, encoder.finish().unwrap())
}

fn bench(c: &mut Criterion) {
    let cores = rayon::current_num_threads();
    for (label, len) in SIZES {
        let data = input(len);
        let mut group = c.benchmark_group(format!("pipeline-{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        for (mode, parallel) in [("1t", false), ("all", true)] {
            let in_flight = if parallel { 2 * cores } else { 1 };

            group.bench_function(format!("encode-{mode}"), |b| {
                b.iter(|| {
                    let opts = EncodeOptions::new("bench").with_stripes_in_flight(in_flight);
                    let mut encoder = Encoder::new(&data[..], opts);
                    for stripe in encoder.by_ref() {
                        black_box(stripe.unwrap());
                    }
                    black_box(encoder.finish().unwrap())
                })
            });

            let (stripes, file) = encode_file(&data, in_flight);
            group.bench_function(format!("decode-{mode}"), |b| {
                b.iter_batched(
                    || {
                        // Two data shards missing: every stripe needs an RS rebuild.
                        stripes
                            .iter()
                            .map(|s| {
                                let mut shards: StripeShards =
                                    std::array::from_fn(|i| Some(s[i].clone()));
                                shards[0] = None;
                                shards[2] = None;
                                shards
                            })
                            .collect::<Vec<_>>()
                    },
                    |given| {
                        let mut decoder = Decoder::new(file.manifest.clone(), &file.data_key)
                            .unwrap()
                            .with_stripes_in_flight(in_flight);
                        let mut sink = std::io::sink();
                        for (i, shards) in given.into_iter().enumerate() {
                            decoder.push(i as u64, shards, &mut sink).unwrap();
                        }
                        black_box(decoder.finish(&mut sink).unwrap())
                    },
                    BatchSize::LargeInput,
                )
            });

            let key = [7u8; 32];
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
            let mut buf = data.clone();
            group.bench_function(format!("aes-256-gcm-{mode}"), |b| {
                b.iter(|| {
                    per_segment(&mut buf, parallel, |i, seg| {
                        let mut nonce = [0u8; 12];
                        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
                        let tag = cipher
                            .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", seg)
                            .unwrap();
                        black_box(tag);
                    })
                })
            });

            group.bench_function(format!("blake3-{mode}"), |b| {
                b.iter(|| {
                    per_segment(&mut buf, parallel, |_, seg| {
                        black_box(blake3::hash(seg));
                    })
                })
            });

            group.bench_function(format!("rs-encode-{mode}"), |b| {
                b.iter(|| {
                    per_segment(&mut buf, parallel, |_, seg| {
                        let shard = seg.len() / 4;
                        let mut enc = ReedSolomonEncoder::new(4, 2, shard).unwrap();
                        for s in seg.chunks_exact(shard) {
                            enc.add_original_shard(s).unwrap();
                        }
                        black_box(enc.encode().unwrap().recovery(0).map(<[u8]>::len));
                    })
                })
            });

            let src = data.clone();
            group.bench_function(format!("memcpy-{mode}"), |b| {
                b.iter(|| {
                    if parallel {
                        buf.par_chunks_mut(SEGMENT)
                            .zip(src.par_chunks(SEGMENT))
                            .for_each(|(d, s)| d.copy_from_slice(s));
                    } else {
                        buf.copy_from_slice(&src);
                    }
                    black_box(&buf);
                })
            });
        }
        group.finish();
    }
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
        .join("criterion")
}

/// Mean time in ns of one bench, from criterion's estimates of this run.
fn mean_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn report() {
    println!(
        "\nDataMesh pipeline vs raw limits ({} threads; MB/s = 10^6 bytes/s)",
        rayon::current_num_threads()
    );
    println!(
        "{:<6} {:<4} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}   {:<22} {:>8} {:>8}",
        "size",
        "thr",
        "encode",
        "decode",
        "aes-256-gcm",
        "blake3",
        "rs-encode",
        "memcpy",
        "slowest limit",
        "enc/lim",
        "dec/lim"
    );
    for (label, len) in SIZES {
        let group = format!("pipeline-{label}");
        for mode in ["1t", "all"] {
            let mbs = |name: &str| {
                mean_ns(&group, &format!("{name}-{mode}")).map(|ns| len as f64 / ns * 1e3)
            };
            let (Some(enc), Some(dec)) = (mbs("encode"), mbs("decode")) else {
                continue;
            };
            let limits: Vec<(&str, f64)> = PRIMITIVES
                .iter()
                .filter_map(|p| mbs(p).map(|v| (*p, v)))
                .collect();
            let Some(&(slow_name, slow)) = limits.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
                continue;
            };
            let cell = |p: &str| {
                limits
                    .iter()
                    .find(|l| l.0 == p)
                    .map_or("-".into(), |l| format!("{:.0}", l.1))
            };
            println!(
                "{:<6} {:<4} {:>9.0} {:>9.0} {:>11} {:>9} {:>9} {:>9}   {:<22} {:>8.2} {:>8.2}",
                label,
                mode,
                enc,
                dec,
                cell("aes-256-gcm"),
                cell("blake3"),
                cell("rs-encode"),
                cell("memcpy"),
                format!("{slow_name} {slow:.0}"),
                enc / slow,
                dec / slow
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .output_directory(&criterion_dir())
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    report();
}
