//! [`Net`]: a testnet of the benchmark and the operations the sections time on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_testnet::{Config, Kdf, Testnet};

use super::measure::{progress, run};
use datamesh_api::Client;

use crate::cmd::api_client;
use crate::sys;

/// A running testnet, brought down when dropped.
#[derive(Debug)]
pub struct Net {
    /// The testnet.
    pub tn: Testnet,
    scratch: PathBuf,
}

impl Net {
    /// Starts `nodes` nodes (Kdf::FAST) in `dir` on TCP; how long it took.
    ///
    /// # Errors
    /// As [`Testnet::up_with`].
    pub fn up(
        binary: &Path,
        dir: &Path,
        nodes: usize,
        scratch: &Path,
    ) -> anyhow::Result<(Self, Duration)> {
        Self::up_on(binary, dir, nodes, scratch, None)
    }

    /// As [`Net::up`], every node listening and dialling on `transports` (`node run
    /// --transport`, e.g. `quic`) if given.
    ///
    /// # Errors
    /// As [`Testnet::up_with`].
    pub fn up_on(
        binary: &Path,
        dir: &Path,
        nodes: usize,
        scratch: &Path,
        transports: Option<&str>,
    ) -> anyhow::Result<(Self, Duration)> {
        let started = Instant::now();
        let mut config = Config::new(binary, dir, nodes)
            .with_kdf(Kdf::FAST)
            .with_ready_timeout(Duration::from_secs(600))
            .with_stop_timeout(Duration::from_secs(20));
        if let Some(transports) = transports {
            config = config.with_transports(transports);
        }
        let tn = Testnet::up_with(config)
            .with_context(|| format!("cannot start a {nodes}-node testnet"))?;
        Ok((
            Self {
                tn,
                scratch: scratch.to_path_buf(),
            },
            started.elapsed(),
        ))
    }

    /// The HTTP API of node `i`.
    ///
    /// # Errors
    /// When the node publishes no `node.json` or its token cannot be read.
    pub fn api(&self, i: usize) -> anyhow::Result<Client> {
        let run = self
            .tn
            .run_file(i)?
            .with_context(|| format!("node {i} has no node.json"))?;
        api_client(&run, &self.tn.home(i))
    }

    pub(super) fn pid(&self, i: usize) -> anyhow::Result<u32> {
        self.tn
            .pid(i)
            .with_context(|| format!("node {i} is not running"))
    }

    /// The CPU time every node process used so far, in seconds ([`sys::cpu_seconds`]).
    pub(super) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        (0..self.tn.len())
            .map(|i| sys::cpu_seconds(self.pid(i)?))
            .sum()
    }

    pub(super) fn reset_peaks(&self, nodes: &[usize]) -> anyhow::Result<()> {
        for &i in nodes {
            sys::reset_peak(self.pid(i)?)?;
        }
        Ok(())
    }

    pub(super) fn peak_kib(&self, i: usize) -> anyhow::Result<u64> {
        Ok(sys::memory(self.pid(i)?)?.hwm_kib)
    }

    /// `datamesh put PATH` on the gateway: the id and the seconds it took.
    pub(super) fn put(&self, path: &Path, scratch: &Path) -> anyhow::Result<(String, f64)> {
        self.put_with(&[], path, scratch)
    }

    /// [`Net::put`] with `args` (options) before the file.
    pub(super) fn put_with(
        &self,
        args: &[&str],
        path: &Path,
        scratch: &Path,
    ) -> anyhow::Result<(String, f64)> {
        let mut cmd = self.tn.cli(0);
        cmd.arg("put").args(args).arg(path);
        let outcome = run(cmd, scratch)?;
        let id = String::from_utf8(outcome.stdout)?.trim().to_string();
        ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
        Ok((id, outcome.elapsed.as_secs_f64()))
    }

    /// `datamesh get ID -o OUT` on the gateway: the seconds it took.
    pub(super) fn get(&self, id: &str, out: &Path, scratch: &Path) -> anyhow::Result<f64> {
        let mut cmd = self.tn.cli(0);
        cmd.args(["get", id, "-o"]).arg(out);
        Ok(run(cmd, scratch)?.elapsed.as_secs_f64())
    }

    /// (shards, bytes stored) of every node, from `status --json`.
    pub(super) fn stored(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        (0..self.tn.len())
            .map(|i| {
                let s = self.tn.status(i)?;
                Ok((s.shards, s.bytes_stored))
            })
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Err(e) = self.tn.down() {
            progress(format!(
                "bringing the testnet in {} down: {e} (the rest is SIGKILLed)",
                self.scratch.display()
            ));
        }
    }
}
