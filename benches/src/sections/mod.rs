//! The sections of the end-to-end benchmark, one module each: `pipeline`, `testnet`
//! (which also gives the memory figures and, as `small`, the small files), `keys`,
//! `scale`; what they share is in `ctx`
//! (options, scratch folder, the shared testnet), `net` (a testnet and the commands the
//! sections time) and `measure` (progress lines, labels, units, running a command).
//!
//! Every testnet is made of real `datamesh node run` processes (datamesh-testnet) on
//! 127.0.0.1, with homes and files under one temporary folder; each is brought down
//! (SIGTERM, then SIGKILL) when its [`Net`] is dropped, also on an error.

mod ctx;
mod keys;
mod measure;
mod net;
mod pipeline;
mod scale;
mod testnet;
mod wrap;

pub use ctx::{Ctx, STORAGE_NODES};
pub use measure::{progress, size_label};
pub use net::Net;
pub use testnet::{GATEWAY_MEMORY_TARGET_MIB, STORAGE_MEMORY_TARGET_MIB, hash_file, make_file};

use crate::report::Report;

/// A section of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Encode/decode MB/s vs the raw primitives; wrap/unwrap time and envelope size per
    /// recipient kind.
    Pipeline,
    /// Put/get MB/s on a local testnet against this machine's limit, get with 2
    /// holders down.
    Testnet,
    /// Small files on the same testnet: put and get latency, where a put's time goes.
    Small,
    /// Peak RSS of the gateway and of a storage node during a large put and get.
    Memory,
    /// Unlock time, rotate + rewrap of many files.
    Keys,
    /// 20, 50 and 100 nodes: bring-up time, idle RSS, lookup latency.
    Scale,
}

impl Section {
    /// Every section, in the order they run.
    pub const ALL: [Self; 6] = [
        Self::Pipeline,
        Self::Testnet,
        Self::Small,
        Self::Memory,
        Self::Keys,
        Self::Scale,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pipeline => "pipeline",
            Self::Testnet => "testnet",
            Self::Small => "small",
            Self::Memory => "memory",
            Self::Keys => "keys",
            Self::Scale => "scale",
        }
    }

    /// The section called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Runs this section, adding its figures to `report`.
    ///
    /// # Errors
    /// The section's first failure (figures measured before it stay in the report).
    pub fn run(self, ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
        match self {
            Self::Pipeline => pipeline::pipeline_section(ctx.quick, report)
                .and_then(|()| wrap::wrap_figures(ctx.quick, report)),
            Self::Testnet => testnet::testnet_section(ctx, report),
            Self::Small => testnet::small_files_runs(ctx, report),
            Self::Memory => testnet::memory_section(ctx, report),
            Self::Keys => keys::keys_section(ctx, report),
            Self::Scale => {
                // Never 57 nodes at once: the shared testnet goes first.
                ctx.drop_net();
                scale::scale_section(ctx, report)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parse_by_name() {
        for s in Section::ALL {
            assert_eq!(Section::parse(s.name()), Some(s));
        }
        assert_eq!(Section::parse("nope"), None);
    }
}
