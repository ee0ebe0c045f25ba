//! `datamesh` hands a command it does not run itself (a node, the keystore, a testnet) to
//! `datamesh-full`, the program beside it, by `exec`: the same process (its pid, which a
//! testnet records), arguments, environment, standard streams and exit code.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The program that runs every command, beside `datamesh`.
pub(crate) const FULL: &str = "datamesh-full";

/// Replaces this process with `datamesh-full` and this process's arguments; returns only
/// when that fails, with why.
pub(crate) fn full() -> anyhow::Error {
    let program = match std::env::current_exe() {
        Ok(me) => beside(&me),
        Err(e) => return anyhow::Error::new(e).context("cannot find the datamesh program"),
    };
    match program.metadata() {
        Ok(found) if found.is_file() => {}
        // There, but out of reach (a folder this user may not enter): say so, not missing.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return anyhow::Error::new(e).context(format!("cannot reach {}", program.display()));
        }
        _ => {
            return anyhow::anyhow!(
                "{} is missing: the node, keys, init, testnet and debug commands run in it \
                 (`cargo build --release -p datamesh` builds both programs)",
                program.display()
            );
        }
    }
    let error = Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::Error::new(error).context(format!("cannot run {}", program.display()))
}

/// `datamesh-full` in the folder of `me` (`/proc/self/exe`, symlinks resolved: the real
/// program's folder).
fn beside(me: &Path) -> PathBuf {
    me.with_file_name(FULL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_program_is_looked_for_beside_this_one() {
        assert_eq!(
            beside(Path::new("/opt/dm/bin/datamesh")),
            Path::new("/opt/dm/bin/datamesh-full")
        );
    }
}
