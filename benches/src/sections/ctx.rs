//! [`Ctx`]: what the sections share: options, the scratch folder, the shared testnet.

use std::path::PathBuf;

use anyhow::Context as _;

use super::measure::progress;
use super::net::Net;
use crate::report::{Figure, Report};

/// Storage nodes of the shared testnet, plus one gateway (node 0) that does the puts and
/// gets.
pub const STORAGE_NODES: usize = 6;

/// What the sections share: options, the scratch folder, and the 7-node testnet once
/// started.
#[derive(Debug)]
pub struct Ctx {
    /// Small sizes for a smoke run.
    pub quick: bool,
    /// The `datamesh` binary under test.
    pub binary: PathBuf,
    /// Scratch folder (homes, files); removed at the end.
    pub dir: PathBuf,
    /// The shared testnet (gateway + 6 storage nodes).
    pub(super) net: Option<Net>,
    /// Ids of the small files stored on the shared testnet.
    pub(super) small_files: usize,
}

impl Ctx {
    /// A context over `binary` with scratch space in `dir`.
    pub fn new(quick: bool, binary: PathBuf, dir: PathBuf) -> Self {
        Self {
            quick,
            binary,
            dir,
            net: None,
            small_files: 0,
        }
    }

    /// The shared testnet, started on first use.
    pub(super) fn net(&mut self, report: &mut Report) -> anyhow::Result<&mut Net> {
        if self.net.is_none() {
            let nodes = STORAGE_NODES + 1;
            progress(format!(
                "starting a {nodes}-node testnet (gateway + {STORAGE_NODES})"
            ));
            let (net, took) = Net::up(&self.binary, &self.dir.join("net"), nodes, &self.dir)?;
            report.add(
                Figure::new(format!("testnet.up.{nodes}-nodes"), took.as_secs_f64(), "s")
                    .note("init of every home (Kdf::FAST) + start + routing tables filled"),
            );
            self.net = Some(net);
        }
        self.net.as_mut().context("testnet")
    }

    /// Brings the shared testnet down (it starts again on next use).
    pub(super) fn drop_net(&mut self) {
        self.net = None;
    }
}
