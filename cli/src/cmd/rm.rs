//! `datamesh rm ID`: removes one of this node's files from the network (owner only).

use anyhow::Context as _;
use clap::Args;
use datamesh_core::FileId;

use super::files::client;
use crate::Context;

/// `datamesh rm` arguments.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The file id (`dm1…`), as `put` printed it.
    id: String,
}

pub(crate) fn run(ctx: &Context, args: RmArgs) -> anyhow::Result<()> {
    let id: FileId = args
        .id
        .parse()
        .with_context(|| format!("{} is not a valid file id", args.id))?;
    let report = client(ctx)?.remove(&id)?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&report)?);
    } else {
        ctx.out.result(format_args!(
            "{}  removed: {} of {} possible holders confirmed",
            report.id, report.confirmed, report.asked
        ));
        if report.failed > 0 {
            ctx.out.warn(format_args!(
                "{} holders did not answer: their copies end when their lease does",
                report.failed
            ));
        }
    }
    Ok(())
}
