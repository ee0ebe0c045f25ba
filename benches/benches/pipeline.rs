//! Pipeline throughput against the raw limits it is bounded by, measured in one run.
//!
//! `cargo bench --workspace --bench pipeline` (add `-- --quick` for a fast pass). The
//! pipeline and the primitives are `datamesh_benches::pipeline`, shared with the e2e
//! program.
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

use criterion::{BatchSize, Criterion, Throughput};
use datamesh_benches::pipeline::{self, LOST_TWO_DATA, MIB, PRIMITIVES, Primitives};

const SIZES: [(&str, usize); 2] = [("1MiB", MIB), ("64MiB", 64 * MIB)];

fn bench(c: &mut Criterion) {
    let cores = rayon::current_num_threads();
    let primitives = Primitives::new().unwrap();
    for (label, len) in SIZES {
        let data = pipeline::input(len);
        let mut group = c.benchmark_group(format!("pipeline-{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        for (mode, parallel) in [("1t", false), ("all", true)] {
            let in_flight = if parallel { 2 * cores } else { 1 };

            group.bench_function(format!("encode-{mode}"), |b| {
                b.iter(|| black_box(pipeline::encode(&data, in_flight).unwrap()))
            });

            let (stripes, file) = pipeline::encode_stripes(&data, in_flight).unwrap();
            group.bench_function(format!("decode-{mode}"), |b| {
                b.iter_batched(
                    || pipeline::decode_input(&stripes, &LOST_TWO_DATA),
                    |given| black_box(pipeline::decode(&file, given, in_flight).unwrap()),
                    BatchSize::LargeInput,
                )
            });

            let mut buf = data.clone();
            for p in PRIMITIVES {
                group.bench_function(format!("{}-{mode}", p.name()), |b| {
                    b.iter(|| primitives.run(p, &mut buf, &data, parallel))
                });
            }
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
                .filter_map(|p| mbs(p.name()).map(|v| (p.name(), v)))
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
