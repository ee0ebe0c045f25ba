//! Shared code of the DataMesh benches: the criterion `pipeline` bench
//! (`benches/pipeline.rs`) and the end-to-end benchmark program (`src/bin/e2e.rs`).
//!
//! - [`pipeline`]: the pipeline and the raw primitives it is bounded by (AES-256-GCM,
//!   BLAKE3, RS 4+2 encode, memcpy), over the same 1 MiB segments.
//! - [`stats`]: median and percentiles.
//! - [`report`]: figures (value, limit, ratio), printed one per line and written as JSON.
//! - [`sys`]: what the machine allows: loopback and disk bandwidth, process memory.
//! - [`cmd`]: the node's HTTP API.
//! - [`args`]: the command line both benchmark programs take (`src/bin/e2e.rs`,
//!   `src/bin/hosts.rs`).
//! - [`limit`]: this machine's limit for a testnet put and get: the CPU their unavoidable
//!   work needs per byte, from primitives timed in the same run.
//! - [`sections`]: the end-to-end sections (pipeline, testnet, memory, keys, scale), one
//!   module each; commands under a deadline and input files come from `datamesh-testnet`.
//! - [`wire`]: what serialising a shard as a sequence of `u8` costs against a byte string.

pub mod args;
pub mod cmd;
pub mod limit;
pub mod pipeline;
pub mod report;
pub mod sections;
pub mod stats;
pub mod sys;
pub mod wire;
