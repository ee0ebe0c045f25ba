//! What the end-to-end test files (`e2e.rs`, `faults.rs`, `recovery.rs`) share beyond
//! `datamesh-testnet` (commands under a deadline, outcome checks, input files): the
//! binary under test. Each test file is its own crate and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

/// The `datamesh` binary of the cargo build that built this test (see the package's
/// Cargo.toml for why it is always the fresh one under `cargo test --workspace`).
pub(crate) fn bin() -> &'static Path {
    static BIN: LazyLock<PathBuf> = LazyLock::new(|| {
        datamesh_testnet::run::cargo_binary("datamesh")
            .unwrap_or_else(|_| PathBuf::from("datamesh"))
    });
    &BIN
}

/// `datamesh --home HOME` with none of the caller's `DATAMESH_*` variables.
pub(crate) fn datamesh(home: &Path) -> Command {
    datamesh_testnet::run::datamesh(bin(), home)
}
