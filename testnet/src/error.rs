//! The errors of this crate: one enum for the testnet's operations and the outcome checks
//! of [`crate::run`].

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `datamesh` command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A node process exited when it should be running.
    #[error("node {index} exited ({status}); last log lines: {log_tail}")]
    Exited {
        /// The node.
        index: usize,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// No such node.
    #[error("node {index} does not exist (the testnet has {nodes} nodes)")]
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// How many there are.
        nodes: usize,
    },
    /// The node is not running.
    #[error("node {index} is not running")]
    NotRunning {
        /// The node.
        index: usize,
    },
    /// The node is already running.
    #[error("node {index} is already running (pid {pid})")]
    AlreadyRunning {
        /// The node.
        index: usize,
        /// Its process id.
        pid: u32,
    },
    /// A file the node wrote (`node.json`, `status --json`) is not what was expected.
    #[error("{what} is not valid: {reason}")]
    Invalid {
        /// Which file or output.
        what: String,
        /// Why.
        reason: String,
    },
    /// A system package a test backend needs is not installed (names the package).
    #[error("{0}")]
    Missing(String),
    /// A testnet needs at least one node; or the folder holds none.
    #[error("no nodes: {0}")]
    NoNodes(String),
    /// A testnet of separate hosts (network namespaces) was asked for without root.
    #[error(
        "{0} needs root (it makes network namespaces, a bridge and packet filters): run it as root, e.g. with sudo"
    )]
    NeedsRoot(String),
    /// A command checked with [`Outcome::ok`](crate::run::Outcome::ok) did not exit 0.
    #[error("{what} failed with {code:?}: {stderr}")]
    Failed {
        /// What the command was for.
        what: String,
        /// Its exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// Its stderr.
        stderr: String,
    },
    /// A command checked with [`Outcome::fails_with`](crate::run::Outcome::fails_with)
    /// exited with another code.
    #[error("{what}: expected exit {expected}, got {code:?}; stderr: {stderr}")]
    WrongExit {
        /// What the command was for.
        what: String,
        /// The exit code required.
        expected: i32,
        /// The exit code it had.
        code: Option<i32>,
        /// Its stderr.
        stderr: String,
    },
    /// A failing command did not print exactly one `error: ` line on stderr.
    #[error("{what}: expected one `error: ` line on stderr, got {stderr:?}")]
    NotOneErrorLine {
        /// What the command was for.
        what: String,
        /// Its stderr.
        stderr: String,
    },
    /// A file does not hold the bytes it should
    /// ([`assert_same_file`](crate::input::assert_same_file)).
    #[error("{actual} ({actual_len} bytes) differs from {expected} ({expected_len} bytes)")]
    Differs {
        /// The file with the right bytes.
        expected: String,
        /// Its length.
        expected_len: usize,
        /// The file compared with it.
        actual: String,
        /// Its length.
        actual_len: usize,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
