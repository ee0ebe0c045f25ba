//! `keys audit [--last N]` and `keys audit verify`: the audit log.

use clap::Subcommand;
use datamesh_keys::Layout;
use serde_json::{Value, json};

use crate::Context;
use crate::home;
use crate::password::PasswordArgs;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check the chain, the sealed head (nothing cut, edited or added without the key, no
    /// older keystore put back) and that the last key change is in the log.
    Verify(PasswordArgs),
}

/// `keys audit ...`.
pub(super) fn run(ctx: &Context, command: Option<AuditCommand>, last: usize) -> anyhow::Result<()> {
    match command {
        None => report(ctx, last),
        Some(AuditCommand::Verify(password)) => {
            let mut keystore = home::unlock(&ctx.home, &password, &ctx.out)?;
            let summary = keystore.verify_audit()?;
            if ctx.out.json() {
                ctx.out
                    .json_value(&json!({ "intact": true, "lines": summary.lines }));
            } else {
                ctx.out.result(format_args!(
                    "audit log intact: {} lines, chained, sealed up to its head, with the last key change in place",
                    summary.lines
                ));
            }
            Ok(())
        }
    }
}

/// `keys audit`: counts per operation, failures and the last lines, and whether the chain
/// holds (needs no password).
fn report(ctx: &Context, last: usize) -> anyhow::Result<()> {
    let path = Layout::new(&ctx.home).audit_log();
    home::require_keystore(&ctx.home)?;
    let report = datamesh_keys::report(&path, last)?;
    if ctx.out.json() {
        let counts: serde_json::Map<String, Value> = report
            .counts
            .iter()
            .map(|(op, c)| {
                (
                    op.clone(),
                    json!({ "ok": c.ok, "failed": c.failed, "warning": c.warning }),
                )
            })
            .collect();
        ctx.out.json_value(&json!({
            "path": path,
            "lines": report.lines,
            "chain": match &report.chain {
                Ok(_) => json!({ "intact": true }),
                Err(e) => json!({ "intact": false, "error": e }),
            },
            "counts": counts,
            "failures": report.failures,
            "last": report.last,
        }));
        return Ok(());
    }
    let chain = match &report.chain {
        Ok(_) => {
            "chain intact (run `keys audit verify` to check it against the keystore)".to_owned()
        }
        Err(e) => format!("CHAIN BROKEN: {e}"),
    };
    ctx.out.result(format_args!(
        "{}: {} lines, {chain}",
        path.display(),
        report.lines
    ));
    let rows: Vec<Vec<String>> = report
        .counts
        .iter()
        .map(|(op, c)| {
            vec![
                op.clone(),
                c.ok.to_string(),
                c.failed.to_string(),
                c.warning.to_string(),
            ]
        })
        .collect();
    ctx.out.result("");
    ctx.out
        .table(&["OPERATION", "OK", "FAILED", "WARNING"], &rows);
    let record_row = |r: &datamesh_keys::AuditRecord| {
        vec![
            r.seq.to_string(),
            r.time.clone(),
            r.op.clone(),
            match (&r.name, r.version) {
                (Some(n), Some(v)) => format!("{n} v{v}"),
                (Some(n), None) => n.clone(),
                _ => String::new(),
            },
            r.outcome.clone(),
            r.detail.clone().unwrap_or_default(),
        ]
    };
    let header = ["SEQ", "TIME", "OPERATION", "KEY", "OUTCOME", "DETAIL"];
    if !report.failures.is_empty() {
        ctx.out.result("");
        ctx.out.result("failures and warnings:");
        let rows: Vec<Vec<String>> = report.failures.iter().map(record_row).collect();
        ctx.out.table(&header, &rows);
    }
    ctx.out.result("");
    ctx.out.result(format_args!("last {}:", report.last.len()));
    let rows: Vec<Vec<String>> = report.last.iter().map(record_row).collect();
    ctx.out.table(&header, &rows);
    Ok(())
}
