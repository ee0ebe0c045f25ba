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
//! `--json` prints the node's report unchanged (stable shape, one object):
//!
//! ```text
//! id                 file id (dm1…)
//! verified           bool: copies were fetched and hashed
//! repair             bool: a repair was asked for
//! state              "healthy" | "degraded" | "unrecoverable": worst stripe, after the repair
//! stripes_total      number of stripes
//! peers_asked        peers asked which shards they hold
//! peers_answered     peers that answered (live)
//! bad_peers          [peer id]: every peer that held a bad copy
//! repaired_shards    shards rebuilt and placed by the repair
//! before, after      {state, healthy_stripes, degraded_stripes, unrecoverable_stripes,
//!                     manifest_copies} (equal when no repair)
//! stripes            [ per stripe, after the repair:
//!   stripe           index
//!   healthy          shards (of 6) with an intact copy on a live peer
//!   peers            distinct live peers holding distinct healthy shards (6 = full health)
//!   state            "healthy" (peers == 6) | "degraded" (healthy >= 4) | "unrecoverable"
//!   before           {healthy, peers, state} before the repair
//!   holders          [6 x [peer id]]: per shard index, live peers with a healthy copy
//!   bad              [{peer, index, shard (hex id), reason: "wrong_bytes" | "corrupt" | "missing"}]
//!   unreachable      [peer id]: claimed a shard but did not answer a fetch (verify)
//!   repaired         [{index, shard, peer}]: shards placed by the repair
//!   error            null, or why the repair of this stripe fell short ]
//! ```

use anyhow::Context as _;
use clap::Args;
use datamesh_core::FileId;
use datamesh_node::client::ClientError;
use serde_json::Value;

use crate::Context;
use crate::cmd::files::client;

/// Arguments of `datamesh check`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  datamesh check dm1…\n  datamesh check dm1… --verify\n  datamesh check dm1… --verify --repair\n  datamesh --json check dm1… --verify\n\nExit status: 0 every stripe readable (>= 4 healthy shards; degraded is reported), 5 some stripe unrecoverable, 3 file not found, 4 node not running."
)]
pub(crate) struct CheckArgs {
    /// The file id (`dm1…`); any file, not only this node's.
    id: String,
    /// Fetch and hash every copy (finds corrupt shards and peers serving wrong bytes).
    #[arg(long)]
    verify: bool,
    /// Rebuild missing or bad shards and place them on other live peers.
    #[arg(long)]
    repair: bool,
}

/// Stripes listed one per row at most; past that only those below full health.
const MAX_ROWS: usize = 64;

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub(crate) fn run(ctx: &Context, args: CheckArgs) -> anyhow::Result<()> {
    let id: FileId = args
        .id
        .parse()
        .with_context(|| format!("{} is not a valid file id", args.id))?;
    let report = client(ctx)?.check(&id, args.verify, args.repair)?;
    if ctx.out.json() {
        ctx.out.json_value(&report);
    } else {
        print_human(ctx, &report, args.repair);
    }
    let stripes = num(&report["stripes_total"]);
    match report["state"].as_str() {
        Some("healthy") => Ok(()),
        Some("degraded") => {
            let below = stripes - num(&report["after"]["healthy_stripes"]);
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
        _ => {
            let lost = num(&report["after"]["unrecoverable_stripes"]);
            // Exit code 5 (integrity), through the API error kind the exit codes know.
            Err(ClientError::Api {
                status: 200,
                kind: "integrity".into(),
                message: format!(
                    "UNRECOVERABLE: {lost} of {stripes} stripes of {id} have fewer than 4 healthy shards on live peers: the file cannot be read until lost holders come back"
                ),
            }
            .into())
        }
    }
}

fn print_human(ctx: &Context, report: &Value, repair: bool) {
    let stripes = report["stripes"].as_array().cloned().unwrap_or_default();
    // A big file's healthy stripes would bury the ones that matter: past a screenful,
    // the table shows only stripes that were or are below full health.
    let all = stripes.len() <= MAX_ROWS;
    let shown: Vec<&Value> = stripes
        .iter()
        .filter(|s| all || s["state"] != "healthy" || s["before"]["state"] != "healthy")
        .collect();
    let mut rows = Vec::new();
    for s in shown.iter().copied() {
        let bad: Vec<String> = s["bad"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|b| {
                        format!(
                            "{} (shard {} {})",
                            b["peer"].as_str().unwrap_or_default(),
                            b["index"],
                            b["reason"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let bad = if bad.is_empty() {
            "-".to_string()
        } else {
            bad.join(", ")
        };
        let mut row = vec![s["stripe"].to_string()];
        if repair {
            row.push(format!("{}/6", num(&s["before"]["healthy"])));
        }
        row.push(format!("{}/6", num(&s["healthy"])));
        row.push(num(&s["peers"]).to_string());
        row.push(s["state"].as_str().unwrap_or_default().to_uppercase());
        if repair {
            let repaired = s["repaired"].as_array().map_or(0, Vec::len);
            row.push(repaired.to_string());
        }
        row.push(bad);
        rows.push(row);
    }
    ctx.out.result(format_args!(
        "file {}  {}  peers answered {}/{}  manifest copies {}",
        report["id"].as_str().unwrap_or_default(),
        if report["verified"].as_bool().unwrap_or(false) {
            "verified (every copy fetched and hashed)"
        } else {
            "holders asked (not verified)"
        },
        num(&report["peers_answered"]),
        num(&report["peers_asked"]),
        num(&report["after"]["manifest_copies"]),
    ));
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
    for s in &stripes {
        if let Some(e) = s["error"].as_str() {
            ctx.out.warn(e);
        }
    }
    for peer in strs(&report["bad_peers"]) {
        ctx.out
            .warn(format_args!("bad peer {peer}: see the BAD column"));
    }
    let state = report["state"].as_str().unwrap_or_default().to_uppercase();
    let mut summary = format!(
        "{state}: {} healthy, {} degraded, {} unrecoverable of {} stripes",
        num(&report["after"]["healthy_stripes"]),
        num(&report["after"]["degraded_stripes"]),
        num(&report["after"]["unrecoverable_stripes"]),
        num(&report["stripes_total"]),
    );
    if repair {
        summary.push_str(&format!(
            "; repair placed {} shards (before: {})",
            num(&report["repaired_shards"]),
            report["before"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_uppercase()
        ));
    }
    ctx.out.result(summary);
}
