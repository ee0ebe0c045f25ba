//! The command line both benchmark programs (`src/bin/e2e.rs`, `src/bin/hosts.rs`) take:
//! `--out FILE`, `--datamesh PATH`, `--dir DIR` and `-h`/`--help`, besides flags of
//! their own.

use std::path::PathBuf;
use std::process::ExitCode;

/// The arguments every benchmark program takes.
#[derive(Debug)]
pub struct Common {
    /// Where the JSON report is written (`--out FILE`).
    pub out: PathBuf,
    /// The `datamesh` binary (`--datamesh PATH`); by default the one next to the program.
    pub datamesh: Option<PathBuf>,
    /// The scratch folder (`--dir DIR`); by default a new temporary folder.
    pub dir: Option<PathBuf>,
}

/// Parses `args` (without the program's name): the flags of [`Common`] here (the report
/// to `out` unless `--out` says otherwise), any other by `own`, given the flag and a
/// function that takes its value; `own` answers whether the flag is one of its own.
/// `Ok(None)` for `-h`/`--help`.
///
/// # Errors
/// A flag neither knows, a flag without its value, or what `own` refuses: one line for
/// the user.
pub fn parse(
    mut args: impl Iterator<Item = String>,
    out: &str,
    mut own: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<bool, String>,
) -> Result<Option<Common>, String> {
    let mut common = Common {
        out: PathBuf::from(out),
        datamesh: None,
        dir: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => common.out = value()?.into(),
            "--datamesh" => common.datamesh = Some(value()?.into()),
            "--dir" => common.dir = Some(value()?.into()),
            "-h" | "--help" => return Ok(None),
            other => {
                if !own(other, &mut value)? {
                    return Err(format!("unknown argument {other:?}"));
                }
            }
        }
    }
    Ok(Some(common))
}

/// A program's arguments as its parser made them, or the exit code when there is nothing
/// to run: success after printing `usage` (for `--help`), 2 after printing the error and
/// `usage` on stderr.
///
/// # Errors
/// The exit code, when the program is to stop here.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn or_exit<T>(parsed: Result<Option<T>, String>, usage: &str) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(args)) => Ok(args),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}\n{usage}");
            Err(ExitCode::from(2))
        }
    }
}
