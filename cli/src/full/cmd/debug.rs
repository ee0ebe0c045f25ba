//! `datamesh debug`: hidden, test-only commands. They work only against a node started
//! with `DATAMESH_TEST_FAULTS=1` in its environment (the node logs a loud warning); a
//! normal node answers "not found" (exit 3).
//!
//! ```text
//! datamesh [--json] debug corrupt-shard --file ID [--stripe N] [--index N]
//! datamesh [--json] debug corrupt-shard --shard HEX
//! ```
//!
//! Flips bytes of one shard stored on this home's node, in RocksDB, as bit rot would:
//! with `--file`, the first shard of that file the node holds (optionally only of stripe
//! N and/or shard index N); with `--shard`, that shard (64 hex characters). Exit 3 if
//! the node holds no such shard.
//!
//! Output: `--json` prints [`datamesh_api::CorruptedShard`] `{"shard": HEX, "file":
//! ID|null, "stripe": N|null, "index": N|null, "peer_id": PEER}`; otherwise one line with
//! the same facts.
//!
//! ```text
//! datamesh [--json] debug block-peers PEER...
//! datamesh [--json] debug block-peers --none
//! ```
//!
//! Makes this home's node block exactly the given peers (replacing any earlier set;
//! `--none` unblocks all): their connections are closed and refused both ways, dials to
//! them fail at once. The fault suite partitions a testnet with it (all nodes share
//! 127.0.0.1, so this stands in for a kernel-level partition). Output: `--json` prints
//! [`datamesh_api::BlockedPeers`] `{"blocked": [PEER, ...], "peer_id": PEER}`; otherwise
//! one line.
//!
//! The other test fault is set in the node's environment, not here:
//! `DATAMESH_TEST_FAULTS=1 DATAMESH_TEST_MISBEHAVE=wrong-bytes datamesh node run` makes
//! the node answer every fetch with altered bytes.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use datamesh_core::FileId;

use crate::Context;
use crate::cmd::files::client;

/// Arguments of `datamesh debug`.
#[derive(Debug, Args)]
pub(crate) struct DebugArgs {
    #[command(subcommand)]
    command: DebugCommand,
}

#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Flip bytes of a shard stored on this node (needs DATAMESH_TEST_FAULTS=1 on the node).
    #[command(
        after_help = "Examples:\n  datamesh debug corrupt-shard --file dm1…\n  datamesh debug corrupt-shard --file dm1… --stripe 0 --index 2\n  datamesh debug corrupt-shard --shard 3f…(64 hex)"
    )]
    CorruptShard(CorruptArgs),
    /// Block exactly these peers, or none (needs DATAMESH_TEST_FAULTS=1 on the node).
    #[command(
        after_help = "Examples:\n  datamesh debug block-peers 12D3KooW… 12D3KooW…\n  datamesh debug block-peers --none"
    )]
    BlockPeers(BlockArgs),
}

#[derive(Debug, Args)]
struct BlockArgs {
    /// Peer ids to block (replaces the node's current set).
    #[arg(
        value_name = "PEER",
        required_unless_present = "none",
        conflicts_with = "none"
    )]
    peers: Vec<String>,
    /// Unblock every peer.
    #[arg(long)]
    none: bool,
}

// No struct-level `#[group]`: it would take in every field, and then `--stripe` and
// `--index` would conflict with the `--file` they require.
#[derive(Debug, Args)]
struct CorruptArgs {
    /// Corrupt a shard of this file that the node holds.
    #[arg(
        long,
        conflicts_with = "shard",
        required_unless_present = "shard",
        value_name = "ID"
    )]
    file: Option<String>,
    /// Corrupt this shard (64 hex characters).
    #[arg(long, value_name = "HEX")]
    shard: Option<String>,
    /// With --file: only a shard of this stripe.
    #[arg(long, requires = "file", conflicts_with = "shard", value_name = "N")]
    stripe: Option<u64>,
    /// With --file: only the shard with this index (0..6).
    #[arg(long, requires = "file", conflicts_with = "shard", value_name = "N")]
    index: Option<u64>,
}

pub(crate) fn run(ctx: &Context, args: DebugArgs) -> anyhow::Result<()> {
    match args.command {
        DebugCommand::CorruptShard(args) => corrupt(ctx, args),
        DebugCommand::BlockPeers(args) => block(ctx, args),
    }
}

fn block(ctx: &Context, args: BlockArgs) -> anyhow::Result<()> {
    for peer in &args.peers {
        peer.parse::<datamesh_node::libp2p::PeerId>()
            .map_err(|_| anyhow::anyhow!("{peer}: not a peer id"))?;
    }
    let result = client(ctx)?.debug_block_peers(&args.peers)?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&result)?);
    } else {
        ctx.out.result(format_args!(
            "peer {} now blocks {} peer(s)",
            result.peer_id,
            result.blocked.len()
        ));
    }
    Ok(())
}

fn corrupt(ctx: &Context, args: CorruptArgs) -> anyhow::Result<()> {
    let file: Option<FileId> = args
        .file
        .as_deref()
        .map(|f| {
            f.parse()
                .with_context(|| format!("{f} is not a valid file id"))
        })
        .transpose()?;
    if let Some(shard) = &args.shard {
        shard
            .parse::<datamesh_core::ShardId>()
            .map_err(|_| anyhow::anyhow!("--shard {shard}: not a shard id (64 hex characters)"))?;
    }
    if args.index.is_some_and(|i| i >= 6) {
        anyhow::bail!("--index must be 0..5");
    }
    let result = client(ctx)?.debug_corrupt_shard(
        args.shard.as_deref(),
        file.as_ref(),
        args.stripe,
        args.index,
    )?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&result)?);
    } else {
        let position = match (result.stripe, result.index) {
            (Some(s), Some(i)) => format!(" (stripe {s}, index {i})"),
            _ => String::new(),
        };
        ctx.out.result(format_args!(
            "corrupted shard {}{position} on peer {}",
            result.shard, result.peer_id
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::DebugArgs;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DebugArgs,
    }

    fn parse(args: &[&str]) -> Result<Wrapper, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("debug").chain(args.iter().copied()))
    }

    #[test]
    fn corrupt_shard_arguments() {
        let file = "--file=dm1x";
        assert!(parse(&["corrupt-shard", file]).is_ok());
        assert!(parse(&["corrupt-shard", file, "--stripe", "3", "--index", "2"]).is_ok());
        assert!(parse(&["corrupt-shard", "--shard", "ab"]).is_ok());
        // One target, exactly.
        assert!(parse(&["corrupt-shard"]).is_err());
        assert!(parse(&["corrupt-shard", file, "--shard", "ab"]).is_err());
        // --stripe and --index only narrow --file.
        assert!(parse(&["corrupt-shard", "--shard", "ab", "--stripe", "1"]).is_err());
    }

    #[test]
    fn block_peers_arguments() {
        assert!(parse(&["block-peers", "a", "b"]).is_ok());
        assert!(parse(&["block-peers", "--none"]).is_ok());
        // Peers or --none, never both, never neither.
        assert!(parse(&["block-peers"]).is_err());
        assert!(parse(&["block-peers", "--none", "a"]).is_err());
    }
}
