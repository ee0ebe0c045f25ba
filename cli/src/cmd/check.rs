//! `datamesh check`: how healthy a stored file is, and repairing it.
//!
//! ```text
//! datamesh [--json] check ID [--verify] [--repair]
//! ```
//!
//! * no flag: asks every holder which shards it has (cheap; trusts their word);
//! * `--verify`: fetches and hashes every copy against the manifest, naming any peer
//!   that served a bad one;
//! * `--repair`: rebuilds missing (with `--verify`: also bad) shards from any four and
//!   places them on other live peers; the report shows before and after.
//!
//! Works for any file id, also one this node cannot read: no key is needed.
//!
//! Exit codes: 0 when every stripe has at least 4 healthy shards after the command
//! (healthy or degraded: degraded is said on stderr and in `state`); 5 (integrity) when
//! some stripe is unrecoverable (fewer than 4 healthy shards); 3 no reachable peer holds
//! the file's manifest; 4 the node is not running or the network failed; 1 bad usage.
//!
//! `--json` prints the node's report unchanged (stable shape, one object): the fields
//! of [`datamesh_api::CheckReport`], listed in its module docs.

use anyhow::Context as _;
use clap::Args;
use datamesh_api::{CheckReport, ClientError, ErrorKind, Health, StripeCheck};
use datamesh_core::FileId;

use crate::Context;
use crate::cmd::files::client;

/// Arguments of `datamesh check`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  datamesh check dm1…\n  datamesh check dm1… --verify\n  datamesh check dm1… --verify --repair\n  datamesh --json check dm1… --verify\n\nExit status: 0 every stripe readable (>= 4 healthy shards; degraded is reported), 5 some stripe unrecoverable, 3 file not found, 4 node not running."
)]
pub struct CheckArgs {
    /// The file id (`dm1…`); any file, not only this node's.
    id: String,
    /// Fetch and hash every copy (finds corrupt shards and peers serving wrong bytes).
    #[arg(long)]
    verify: bool,
    /// Rebuild missing or bad shards and place them on other live peers.
    #[arg(long)]
    repair: bool,
    /// Audit every copy instead: a random 1 KiB chunk and its BLAKE3 proof against the
    /// shard id (about 0.5% of a shard's bytes; --verify fetches whole copies).
    #[arg(long, conflicts_with_all = ["verify", "repair"])]
    audit: bool,
}

/// Stripes listed one per row at most; past that only those below full health.
const MAX_ROWS: usize = 64;

pub(crate) fn run(ctx: &Context, args: CheckArgs) -> anyhow::Result<()> {
    let id: FileId = args
        .id
        .parse()
        .with_context(|| format!("{} is not a valid file id", args.id))?;
    if args.audit {
        return audit(ctx, &id);
    }
    let report = client(ctx)?.check(&id, args.verify, args.repair)?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&report)?);
    } else {
        print_human(ctx, &report, args.repair);
    }
    let stripes = report.stripes_total;
    match report.state {
        Health::Healthy => Ok(()),
        Health::Degraded => {
            let below = stripes - report.after.healthy_stripes;
            ctx.out.warn(format_args!(
                "DEGRADED: {below} of {stripes} stripes below full health (6 healthy shards on 6 distinct live peers); the file is still readable{}",
                if args.repair {
                    ""
                } else {
                    ": run `datamesh check ID --verify --repair`"
                }
            ));
            Ok(())
        }
        Health::Unrecoverable => {
            let lost = report.after.unrecoverable_stripes;
            // Exit code 5 (integrity), through the API error kind the exit codes know.
            Err(ClientError::Api {
                status: 200,
                kind: ErrorKind::Integrity,
                message: format!(
                    "UNRECOVERABLE: {lost} of {stripes} stripes of {id} have fewer than 4 healthy shards on live peers: the file cannot be read until lost holders come back"
                ),
            }
            .into())
        }
    }
}

/// `check --audit`: exit 5 when a holder failed its audit.
fn audit(ctx: &Context, id: &FileId) -> anyhow::Result<()> {
    let report = client(ctx)?.audit(id)?;
    if ctx.out.json() {
        ctx.out.json_value(&serde_json::to_value(&report)?);
    } else {
        let percent = if report.shard_bytes == 0 {
            0.0
        } else {
            100.0 * report.proof_bytes as f64 / report.shard_bytes as f64
        };
        ctx.out.result(format_args!(
            "file {}  audited {} copies: {} passed, {} failed, {} unanswered; {} proof bytes for {} shard bytes ({percent:.2}%)",
            report.id,
            report.challenged,
            report.passed,
            report.failed.len(),
            report.unanswered,
            report.proof_bytes,
            report.shard_bytes,
        ));
        for f in &report.failed {
            ctx.out.warn(format_args!(
                "holder {} failed the audit of shard {}",
                f.peer, f.shard
            ));
        }
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        // Exit code 5 (integrity), through the API error kind the exit codes know.
        Err(ClientError::Api {
            status: 200,
            kind: ErrorKind::Integrity,
            message: format!(
                "{} copies failed their audit: run `datamesh check ID --verify --repair`",
                report.failed.len()
            ),
        }
        .into())
    }
}

fn print_human(ctx: &Context, report: &CheckReport, repair: bool) {
    let stripes = &report.stripes;
    // A big file's healthy stripes would bury the ones that matter: past a screenful,
    // the table shows only stripes that were or are below full health.
    let all = stripes.len() <= MAX_ROWS;
    let shown: Vec<&StripeCheck> = stripes
        .iter()
        .filter(|s| all || s.state != Health::Healthy || s.before.state != Health::Healthy)
        .collect();
    let mut rows = Vec::new();
    for s in shown.iter().copied() {
        let bad: Vec<String> = s
            .bad
            .iter()
            .map(|b| format!("{} (shard {} {})", b.peer, b.index, b.reason.as_str()))
            .collect();
        let bad = if bad.is_empty() {
            "-".to_string()
        } else {
            bad.join(", ")
        };
        let mut row = vec![s.stripe.to_string()];
        if repair {
            row.push(format!("{}/6", s.before.healthy));
        }
        row.push(format!("{}/6", s.healthy));
        row.push(s.peers.to_string());
        row.push(s.state.as_str().to_uppercase());
        if repair {
            row.push(s.repaired.len().to_string());
        }
        row.push(bad);
        rows.push(row);
    }
    ctx.out.result(format_args!(
        "file {}  {}  peers answered {}/{}  manifest copies {}  envelope copies {}",
        report.id,
        if report.verified {
            "verified (every copy fetched and hashed)"
        } else {
            "holders asked (not verified)"
        },
        report.peers_answered,
        report.peers_asked,
        report.after.manifest_copies,
        report.after.envelope_copies,
    ));
    print_protection(ctx, report.envelope.as_ref());
    if repair {
        ctx.out.table(
            &[
                "STRIPE", "BEFORE", "HEALTHY", "PEERS", "STATE", "REPAIRED", "BAD",
            ],
            &rows,
        );
    } else {
        ctx.out
            .table(&["STRIPE", "HEALTHY", "PEERS", "STATE", "BAD"], &rows);
    }
    if !all {
        ctx.out.info(format_args!(
            "({} stripes at full health before and after not listed; --json lists every stripe)",
            stripes.len() - shown.len()
        ));
    }
    match report.kept_until {
        Some(u64::MAX) => ctx
            .out
            .result("leases: held without a lease (never collected)"),
        Some(t) => {
            let when = i64::try_from(t)
                .ok()
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| t.to_string());
            ctx.out.result(format_args!(
                "leases: kept until {when} at least (the owner's self-check renews them)"
            ));
        }
        None => {}
    }
    for e in stripes.iter().filter_map(|s| s.error.as_deref()) {
        ctx.out.warn(e);
    }
    for peer in &report.bad_peers {
        ctx.out
            .warn(format_args!("bad peer {peer}: see the BAD column"));
    }
    let mut summary = format!(
        "{}: {} healthy, {} degraded, {} unrecoverable of {} stripes",
        report.state.as_str().to_uppercase(),
        report.after.healthy_stripes,
        report.after.degraded_stripes,
        report.after.unrecoverable_stripes,
        report.stripes_total,
    );
    if repair {
        summary.push_str(&format!(
            "; repair placed {} shards (before: {})",
            report.repaired_shards,
            report.before.state.as_str().to_uppercase()
        ));
    }
    ctx.out.result(summary);
}

/// What protects the data key: the newest envelope's recipients, one line each.
fn print_protection(ctx: &Context, envelope: Option<&datamesh_api::EnvelopeProtection>) {
    let Some(envelope) = envelope else {
        ctx.out
            .result("data key: no key envelope found (nothing says who can open the file)");
        return;
    };
    ctx.out.result(format_args!(
        "data key: key envelope v{} (sequence {}), wrapped to {} recipient{}:",
        envelope.version,
        envelope.sequence,
        envelope.recipients.len(),
        if envelope.recipients.len() == 1 {
            ""
        } else {
            "s"
        }
    ));
    for r in &envelope.recipients {
        ctx.out.result(format_args!(
            "  {}  {:<9} {}{}",
            r.key_id.get(..16).unwrap_or(&r.key_id),
            r.kind,
            r.algorithms,
            if r.post_quantum {
                "  (post-quantum)"
            } else {
                ""
            }
        ));
    }
}
