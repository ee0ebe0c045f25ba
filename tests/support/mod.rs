//! What the end-to-end test files (`e2e.rs`, `faults.rs`, `recovery.rs`, ...) share
//! beyond `datamesh-testnet` (commands under a deadline, outcome checks, input files): the
//! binary under test, the check that it is not stale, a testnet of it on the fast KDF, and
//! a node's metric counters. Each test file is its own
//! crate and uses part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::SystemTime;

use anyhow::{Context as _, ensure};
use datamesh_testnet::{Config, Kdf, Testnet};

/// The `datamesh` binary of the cargo build that built this test, once it is known not
/// to be stale (see [`check_fresh`]).
///
/// # Errors
/// No binary, or one older than a source file it is built from.
pub(crate) fn bin() -> anyhow::Result<&'static Path> {
    static BIN: LazyLock<Result<PathBuf, String>> = LazyLock::new(|| {
        let bin = datamesh_testnet::run::cargo_binary("datamesh").map_err(|e| e.to_string())?;
        check_fresh(&bin).map_err(|e| format!("{e:#}"))?;
        Ok(bin)
    });
    match &*BIN {
        Ok(bin) => Ok(bin),
        Err(e) => anyhow::bail!("{e}"),
    }
}

/// A testnet of `nodes` real node processes of [`bin`] in `dir`, on the fast KDF, as
/// `config` shapes it further (transports, hosts, NAT; `|c| c` for none).
///
/// # Errors
/// No fresh binary, or the testnet does not come up.
pub(crate) fn testnet(
    dir: impl Into<PathBuf>,
    nodes: usize,
    config: impl FnOnce(Config) -> Config,
) -> anyhow::Result<Testnet> {
    let base = Config::new(bin()?, dir, nodes).with_kdf(Kdf::FAST);
    Ok(Testnet::up_with(config(base))?)
}

/// `datamesh --home HOME` with none of the caller's `DATAMESH_*` variables (every test
/// has called [`bin`] first, through its testnet or directly).
pub(crate) fn datamesh(home: &Path) -> Command {
    let bin = bin().map_or_else(|_| PathBuf::from("datamesh"), Path::to_path_buf);
    datamesh_testnet::run::datamesh(&bin, home)
}

/// `bin` and `datamesh-full` beside it exist and are newer than every source they are
/// built from (`src/`, `build.rs` and `Cargo.toml` of the `datamesh` package and of its
/// path dependencies, found with `cargo metadata`, and the workspace's `Cargo.toml` and
/// `Cargo.lock`): cargo's own rule for a fresh build. `cargo test --workspace` always passes (it builds the binary first,
/// for the cli package's own integration tests); a narrower `cargo test --test faults`
/// after a change to the node fails here instead of testing the old binary.
fn check_fresh(bin: &Path) -> anyhow::Result<()> {
    let hint = "build them first (`cargo build --release -p datamesh`), or run the tests with \
                `cargo test --workspace`";
    // Both programs: `datamesh` hands the node and testnet commands to `datamesh-full`.
    let mut built = SystemTime::now();
    for program in [bin.to_path_buf(), bin.with_file_name("datamesh-full")] {
        let modified = fs::metadata(&program)
            .and_then(|m| m.modified())
            .with_context(|| format!("no program at {}: {hint}", program.display()))?;
        built = built.min(modified);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the e2e package has no parent folder")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata: no packages")?;
    let dir_of = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["manifest_path"].as_str())
            .and_then(|m| Path::new(m).parent().map(Path::to_path_buf))
    };
    // The path dependencies (normal and build) of the cli package, transitively.
    let mut todo = vec!["datamesh".to_string()];
    let mut dirs = Vec::new();
    while let Some(name) = todo.pop() {
        let dir = dir_of(&name).with_context(|| format!("cargo metadata: no package {name}"))?;
        if dirs.contains(&dir) {
            continue;
        }
        dirs.push(dir);
        let package = packages.iter().find(|p| p["name"].as_str() == Some(&name));
        for dep in package
            .and_then(|p| p["dependencies"].as_array())
            .into_iter()
            .flatten()
        {
            if dep["path"].is_string() && dep["kind"].as_str() != Some("dev") {
                todo.extend(dep["name"].as_str().map(str::to_string));
            }
        }
    }
    let mut sources = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    for dir in &dirs {
        sources.extend([dir.join("Cargo.toml"), dir.join("build.rs")]);
        walk(&dir.join("src"), &mut sources)?;
    }
    for source in sources {
        let Ok(modified) = fs::metadata(&source).and_then(|m| m.modified()) else {
            continue; // no build.rs
        };
        ensure!(
            modified <= built || modified > SystemTime::now(),
            "the datamesh programs (datamesh, datamesh-full) beside {} are older than {}: {hint}",
            bin.display(),
            source.display()
        );
    }
    Ok(())
}

/// Every file below `dir`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Tests of separate hosts (network namespaces, packet filters) need root: an error that
/// says so, never a silent skip (CI runs as root).
pub(crate) fn require_root() -> anyhow::Result<()> {
    datamesh_testnet::require_root_for_hosts().map_err(|e| {
        anyhow::anyhow!("{e} (this test makes network namespaces; CI runs the tests as root)")
    })
}

/// A counter of node `i`'s Prometheus metrics (0 when not reported yet).
///
/// # Errors
/// The node's metrics cannot be read.
pub(crate) fn counter(
    net: &datamesh_testnet::Testnet,
    i: usize,
    name: &str,
) -> anyhow::Result<u64> {
    let text = net.metrics(i)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map_or(0, |v| v as u64))
}
