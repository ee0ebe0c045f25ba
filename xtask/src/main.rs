//! `cargo xtask`: the README's two commands, which set up what the build needs first.
//!
//! ```text
//! cargo xtask demo [ARGS]              prerequisites, then `datamesh testnet demo ARGS` (built first)
//! cargo xtask test [ARGS]              prerequisites, then `cargo test --workspace --release --locked ARGS`
//! cargo xtask check-prereqs [--dry-run | --install]
//! ```
//!
//! The prerequisite check (`prereqs.rs`) runs before any long build: missing system
//! packages are installed as root with `apt-get`, and otherwise the command stops at once,
//! exit code 2, with one line naming the command to run. `check-prereqs` only reports
//! (`--dry-run` says so explicitly; exit 0 when all are present, else 2); with `--install`
//! it does what `demo` and `test` do first (`.ci/run` uses it before clippy).
//!
//! Cargo runs through the alias in `.cargo/config.toml`; the builds here use the same
//! `cargo` (`CARGO`), the same target dir (`CARGO_TARGET_DIR` or cargo's default) and the
//! release profile, as everything else in the workspace.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool whose output is its interface; it has no terminal layer to go through"
)]

mod libclang;
mod prereqs;

use std::env;
use std::ffi::OsString;
use std::fmt::Display;
use std::process::{Command, ExitCode};

use prereqs::{Detect, Machine, PREREQS, Plan};

/// Exit code when a prerequisite is missing (and was not installed).
const EXIT_UNMET: u8 = 2;
/// Exit code of a command line xtask does not understand.
const EXIT_USAGE: u8 = 1;

const USAGE: &str = "usage: cargo xtask demo [ARGS]            check prerequisites (install them as root), build, run `datamesh testnet demo ARGS`
       cargo xtask test [ARGS]            check prerequisites (install them as root), run `cargo test --workspace --release --locked ARGS`
       cargo xtask check-prereqs [--dry-run | --install]
                                          report the system packages the build needs (exit 0 all present, 2 not);
                                          --install installs missing ones as demo and test do";

/// A progress message from xtask (stderr).
pub(crate) fn say(message: impl Display) {
    eprintln!("xtask: {message}");
}

fn main() -> ExitCode {
    let mut args = env::args_os().skip(1);
    let command = args.next().map(|c| c.to_string_lossy().into_owned());
    let rest: Vec<OsString> = args.collect();
    match command.as_deref() {
        Some("demo") => demo(&rest),
        Some("test") => test(&rest),
        Some("check-prereqs") => check_prereqs(&rest),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `cargo xtask demo ARGS`: `cargo build --release --locked -p datamesh` (both of its
/// programs: `datamesh` hands the testnet commands to `datamesh-full`, which `cargo run`
/// alone would not build), then `cargo run --release --locked -p datamesh -- testnet demo
/// ARGS`.
fn demo(args: &[OsString]) -> ExitCode {
    if let Err(code) = prerequisites() {
        return code;
    }
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "--package", "datamesh"]);
    if let Err(code) = finish(build) {
        return code;
    }
    let mut cargo = cargo();
    cargo.args([
        "run",
        "--release",
        "--locked",
        "--package",
        "datamesh",
        "--",
    ]);
    cargo.args(["testnet", "demo"]).args(args);
    run(cargo)
}

/// `cargo xtask test ARGS`: `cargo test --workspace --release --locked ARGS`
/// (`--workspace` left out when ARGS name packages, which it would override).
fn test(args: &[OsString]) -> ExitCode {
    if let Err(code) = prerequisites() {
        return code;
    }
    let mut cargo = cargo();
    cargo.arg("test");
    if !names_packages(args) {
        cargo.arg("--workspace");
    }
    cargo.args(["--release", "--locked"]).args(args);
    run(cargo)
}

/// Whether cargo arguments (before any `--`) choose packages: `-p`, `--package`.
fn names_packages(args: &[OsString]) -> bool {
    args.iter()
        .map(|a| a.to_string_lossy())
        .take_while(|a| a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

/// `cargo xtask check-prereqs [--dry-run | --install]`.
fn check_prereqs(args: &[OsString]) -> ExitCode {
    let install = match args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => false,
        [flag] if flag == "--dry-run" => false,
        [flag] if flag == "--install" => true,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if install {
        return match prerequisites() {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        };
    }
    let m = Machine::from_env();
    let statuses = prereqs::survey(&m, PREREQS);
    for status in &statuses {
        println!("{status}");
    }
    match prereqs::plan(&m, &statuses) {
        Plan::Ready => {
            println!("all present");
            ExitCode::SUCCESS
        }
        Plan::Install { packages, .. } => {
            println!(
                "would run: apt-get install -y {} (dry run: nothing installed)",
                packages.join(" ")
            );
            ExitCode::from(EXIT_UNMET)
        }
        Plan::Stop(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_UNMET)
        }
    }
}

/// The prerequisite step of `demo` and `test`: everything present or installed, or the
/// one-line message printed and the exit code to stop with.
fn prerequisites() -> Result<(), ExitCode> {
    let m = Machine::from_env();
    match prereqs::ensure(&m, PREREQS) {
        Ok(statuses) => {
            let found: Vec<String> = statuses
                .iter()
                .filter_map(|s| match &s.found {
                    Detect::Found(p) => Some(format!("{} {}", s.prereq.name, p.display())),
                    _ => None,
                })
                .collect();
            say(format_args!("prerequisites present: {}", found.join(", ")));
            Ok(())
        }
        Err(prereqs::Unmet(message)) => {
            eprintln!("{message}");
            Err(ExitCode::from(EXIT_UNMET))
        }
    }
}

/// The `cargo` that runs xtask (`CARGO`, set by cargo for the programs it runs), in the
/// environment the user ran `cargo xtask` in: without the variables `cargo run` set for
/// xtask itself (`CARGO_PKG_NAME=xtask`, `CARGO_MANIFEST_DIR`, ...). Build scripts that
/// track those (ring's does) would otherwise rerun, and everything above them rebuild,
/// each time a build alternates between `cargo xtask` and plain cargo.
fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Whether `name` is one of the variables `cargo run` sets for the program it runs.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

/// Runs `cmd` and exits as it did (1 when it was killed by a signal or did not start).
fn run(cmd: Command) -> ExitCode {
    finish(cmd).err().unwrap_or(ExitCode::SUCCESS)
}

/// Runs `cmd` to its end; `Err` with the exit code to give when it failed (its own).
fn finish(mut cmd: Command) -> Result<(), ExitCode> {
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => match status.code() {
            Some(code) => Err(ExitCode::from(u8::try_from(code).unwrap_or(1))),
            None => {
                say(format_args!("{cmd:?} ended by {status}"));
                Err(ExitCode::FAILURE)
            }
        },
        Err(e) => {
            say(format_args!("cannot run {cmd:?}: {e}"));
            Err(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_runs_without_xtasks_package_variables() {
        // This test binary has them too (cargo test sets them as cargo run does).
        assert!(env::var_os("CARGO_PKG_NAME").is_some());
        let cmd = cargo();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(removed.iter().any(|n| n == "CARGO_PKG_NAME"), "{removed:?}");
        assert!(
            removed.iter().any(|n| n == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
        assert!(
            !removed.iter().any(|n| n == "CARGO" || n == "PATH"),
            "{removed:?}"
        );
    }

    #[test]
    fn package_arguments_replace_workspace() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(names_packages(&args(&["-p", "xtask"])));
        assert!(names_packages(&args(&["-pxtask"])));
        assert!(names_packages(&args(&["--package=xtask", "--lib"])));
        assert!(!names_packages(&args(&["--lib", "--", "-p"])));
        assert!(!names_packages(&args(&["faults"])));
    }
}
