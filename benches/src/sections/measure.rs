//! What every section uses: progress lines, size labels, unit conversions, and running
//! the `datamesh` binary under the benchmark's deadline.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use datamesh_testnet::run::{Outcome, run_within};

use crate::pipeline::MIB;

/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(900);

/// A progress message on stderr (figures go to stdout).
#[allow(clippy::print_stderr)]
pub fn progress(message: impl std::fmt::Display) {
    eprintln!("  .. {message}");
}

/// A size as a short label (`16MiB`, `1GiB`, `4KiB`).
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}GiB", bytes >> 30)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

pub(super) fn mbs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs `cmd` to completion within the command deadline (killed after it), its output
/// captured through files in `scratch`; a failed exit is an error carrying the stderr.
pub(super) fn run(cmd: Command, scratch: &Path) -> anyhow::Result<Outcome> {
    let what = format!("{cmd:?}");
    Ok(run_within(cmd, scratch, COMMAND_DEADLINE)?.success(&what)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_labels() {
        assert_eq!(size_label(16 * MIB), "16MiB");
        assert_eq!(size_label(1 << 30), "1GiB");
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(1000), "1000B");
        assert_eq!(size_label(MIB + 1), "1048577B");
    }
}
