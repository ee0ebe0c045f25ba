//! One encode and one decode (2 data shards missing) of an N MiB input, on one thread or
//! with K stripes in flight on all cores, for instruction-count and page-fault profiles,
//! which stay stable on a noisy machine:
//!
//! ```sh
//! cargo build --workspace --release --examples
//! valgrind --tool=callgrind "${CARGO_TARGET_DIR:-target}"/release/examples/pipeline_once 8
//! perf stat -e page-faults,task-clock "${CARGO_TARGET_DIR:-target}"/release/examples/pipeline_once 64 4
//! ```
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use datamesh_benches::pipeline::{self, MIB};

fn main() -> ExitCode {
    let arg = |n: usize, default: usize| match std::env::args().nth(n).map(|a| a.parse()) {
        None => Some(default),
        Some(Ok(v)) if v > 0 => Some(v),
        Some(_) => None,
    };
    let (Some(mib), Some(in_flight)) = (arg(1, 8), arg(2, 1)) else {
        println!("usage: pipeline_once [MIB > 0] [STRIPES IN FLIGHT > 0]");
        return ExitCode::from(2);
    };
    let data = pipeline::input(mib * MIB);
    let run = || -> anyhow::Result<u64> {
        let (stripes, file) = pipeline::encode_stripes(&data, in_flight)?;
        let report = pipeline::decode(
            &file,
            pipeline::decode_input(&stripes, &pipeline::LOST_TWO_DATA),
            in_flight,
        )?;
        Ok(report.metadata.size)
    };
    match run() {
        Ok(size) => {
            println!("encoded and decoded {size} bytes");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
