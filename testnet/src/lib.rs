//! A local testnet of real `datamesh node run` processes on 127.0.0.1, or on separate
//! hosts (network namespaces).
//!
//! ```no_run
//! use std::path::Path;
//! use datamesh_testnet::{Config, Kdf, Testnet};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let binary = Path::new("target/release/datamesh");
//! let mut net = Testnet::up_with(Config::new(binary, "/tmp/tn", 6).with_kdf(Kdf::FAST))?;
//! let put = net.cli(0).args(["put", "photo.jpg"]).output()?;
//! let id = String::from_utf8(put.stdout)?;
//! net.kill(3)?; // SIGKILL a storage node
//! net.stop(0)?; // SIGTERM, wait for a clean exit
//! net.start(0)?; // same home, new ports, bootstrapped from every running node
//! let got = net.cli(0).args(["get", id.trim(), "-o", "copy.jpg"]).status()?;
//! # Ok(()) }
//! // Dropping `net` SIGKILLs every node it started.
//! ```
//!
//! Gotchas first:
//! - Dropping a [`Testnet`] SIGKILLs every node process it started, also when a test
//!   panics, unless it was started with [`Config::with_keep_running`] or [`Testnet::detach`]ed
//!   (what `datamesh testnet up` does, so the nodes outlive the command).
//! - Nodes listen on port 0: a restarted node gets new ports, so [`Testnet::start`]
//!   bootstraps it from every node that is running at that moment.
//! - Each home keeps its password in plaintext (`node-I/password`, 0600): a testnet is
//!   for testing, never for data that matters.
//! - This crate drives the `datamesh` binary; it does not link the node. Pass the binary
//!   under test (`env!("CARGO_BIN_EXE_datamesh")` in the cli package's tests,
//!   [`run::cargo_binary`] in the end-to-end tests and the benchmark).
//!
//! Layout of the testnet folder:
//!
//! ```text
//! <dir>/node-I/          the home of node I (`datamesh --home <dir>/node-I ...`)
//! <dir>/node-I/password  its random keystore password, 0600
//! <dir>/node-I/log       the node's stderr, appended across restarts
//! <dir>/node-I/node.json written by the running node (pid, peer id, API, addresses)
//! ```
//!
//! Separate hosts ([`Config::with_hosts`], `datamesh testnet up --hosts N`, root only):
//! each host is a network namespace with its own address (`198.18.0.H+1`) on a bridge made
//! for the testnet (`hosts.rs`, `netns.rs`); node `i` runs on host `i % N`, listens on all
//! of its host's interfaces and advertises only the host's address; its API stays on the
//! host's own 127.0.0.1, so [`Testnet::cli`] runs the CLI inside the host
//! (`ip netns exec`). Dropping the testnet (unless kept running) or
//! [`Testnet::down`] deletes the hosts; the next `up` deletes a killed run's leftovers.
//! Kernel-level faults between hosts (`kernel.rs`): [`Testnet::partition_hosts`],
//! [`Testnet::cut_one_way`], [`Testnet::set_packet_loss`], [`Testnet::limit_rate`],
//! [`Testnet::set_link`].
//!
//! Modules: [`Config`] and [`Kdf`] (`config.rs`); [`Testnet`], the processes (`net.rs`);
//! [`run`], commands under a deadline and the checks of their outcome; [`input`],
//! reproducible input files; [`Error`] (`error.rs`). The same `run` and `input` serve the
//! end-to-end tests, the CLI tests and the benches.

use std::path::Path;

mod config;
pub mod dashboard;
mod error;
pub mod hardware;
mod home;
mod hosts;
mod kernel;
mod net;
mod netns;
mod process;

pub mod browser;
pub mod input;
pub mod run;

pub use config::{Config, Kdf};
use error::io_err;
pub use error::{Error, Result};
pub use home::write_password_file;
pub use hosts::MAX_HOSTS;
pub use net::{READY_PEERS_CAP, Testnet};
pub use run::SCRUBBED_ENV;

/// What a running node publishes in `<home>/node.json` (the format of `datamesh-api`).
pub use datamesh_api::RunFile;
/// `datamesh status --json` (the node's `GET /v1/status`, the format of `datamesh-api`).
pub use datamesh_api::Status;

/// Parses the output of `datamesh status --json`.
///
/// # Errors
/// [`Error::Invalid`] when it is not JSON or lacks `peer_id` / `routing_table_peers`.
pub fn parse_status(json: &[u8]) -> Result<Status> {
    serde_json::from_slice(json).map_err(|e| Error::Invalid {
        what: "`datamesh status --json` output".into(),
        reason: e.to_string(),
    })
}

/// [`Error::NeedsRoot`] unless this process may make a testnet of separate hosts.
///
/// # Errors
/// [`Error::NeedsRoot`].
pub fn require_root_for_hosts() -> Result<()> {
    netns::require_root("a testnet of separate hosts (--hosts)")
}

fn read_run_file(home: &Path) -> Result<Option<RunFile>> {
    RunFile::read(home).map_err(|e| match e {
        datamesh_api::RunFileError::Damaged { path, source } => Error::Invalid {
            what: path.display().to_string(),
            reason: source.to_string(),
        },
        datamesh_api::RunFileError::Read { path, source } => {
            io_err(format!("cannot read {}", path.display()))(source)
        }
        other => Error::Invalid {
            what: RunFile::FILE_NAME.into(),
            reason: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn status_parses_the_cli_json() -> TestResult {
        let status = parse_status(
            br#"{"peer_id":"12D3Koo","routing_table_peers":5,"connected_peers":5,"shards":3,"bytes_stored":99,"quota_bytes":1}"#,
        )?;
        assert_eq!(status.peer_id, "12D3Koo");
        assert_eq!(
            (
                status.routing_table_peers,
                status.shards,
                status.bytes_stored
            ),
            (5, 3, 99)
        );
        assert!(matches!(
            parse_status(br#"{"peer_id":"x"}"#),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(parse_status(b"nope"), Err(Error::Invalid { .. })));
        Ok(())
    }
}
