//! One encode and one decode (2 data shards missing) of an N MiB input, on one thread or
//! with K stripes in flight on all cores, for instruction-count and page-fault profiles,
//! which stay stable on a noisy machine:
//!
//! ```sh
//! cargo build --workspace --release --examples
//! valgrind --tool=callgrind "${CARGO_TARGET_DIR:-target}"/release/examples/pipeline_once 8
//! perf stat -e page-faults,task-clock "${CARGO_TARGET_DIR:-target}"/release/examples/pipeline_once 64 4
//! ```
//!
//! With a third argument, `get` or `get-rehash`, the decode is a getting node's: the four
//! data shards, each hashed against its id on receipt, then decoded with that check kept
//! (`get`) or hashed again by the decoder (`get-rehash`, as before the decoder took
//! verified shards).
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use datamesh_benches::pipeline::{self, MIB};

fn main() -> ExitCode {
    let arg = |n: usize, default: usize| match std::env::args().nth(n).map(|a| a.parse()) {
        None => Some(default),
        Some(Ok(v)) if v > 0 => Some(v),
        Some(_) => None,
    };
    let mode = std::env::args().nth(3);
    let reuse_check = match mode.as_deref() {
        None => None,
        Some("get") => Some(true),
        Some("get-rehash") => Some(false),
        Some(_) => {
            println!("usage: pipeline_once [MIB > 0] [STRIPES IN FLIGHT > 0] [get|get-rehash]");
            return ExitCode::from(2);
        }
    };
    let (Some(mib), Some(in_flight)) = (arg(1, 8), arg(2, 1)) else {
        println!("usage: pipeline_once [MIB > 0] [STRIPES IN FLIGHT > 0] [get|get-rehash]");
        return ExitCode::from(2);
    };
    let data = pipeline::input(mib * MIB);
    let run = || -> anyhow::Result<u64> {
        let (stripes, file) = pipeline::encode_stripes(&data, in_flight)?;
        let report = match reuse_check {
            None => pipeline::decode(
                &file,
                pipeline::decode_input(&stripes, &pipeline::LOST_TWO_DATA),
                in_flight,
            )?,
            Some(reuse) => pipeline::receive_and_decode(
                &file,
                pipeline::decode_input(&stripes, &pipeline::DATA_ONLY),
                in_flight,
                reuse,
            )?,
        };
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
