//! The [`Checker`]: check, verify and repair over a node's [`Files`] engine, and the
//! node's periodic self-check of its catalog, whose last outcome it keeps.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datamesh_core::{FileId, Manifest, TOTAL_SHARDS};
use futures::stream::StreamExt;
use libp2p::PeerId;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::audit::AuditScope;
use super::error::{CheckError, RepairError};
use super::inspect::{EnvelopeCopies, envelope_copies, inspect_stripe, manifest_holders};
use super::network::nearest_first;
use super::repair::{after_repair, repair_stripe};
use super::report::{CheckReport, Health, SelfCheck, StripeHealth, StripeReport};
use crate::catalog::Placement;
use crate::files::{Files, FindError, Found, HolderList};

/// Checks and repairs files through a node's [`Files`] engine; needs no key.
#[derive(Clone, Debug)]
pub struct Checker {
    pub(super) files: Files,
    last_self_check: Arc<Mutex<Option<SelfCheck>>>,
}

/// A file inspected (and its stripes repaired, if asked), before the file-wide part of a
/// repair.
struct Inspected {
    report: CheckReport,
    manifest: Arc<Manifest>,
    manifest_before: HashSet<PeerId>,
    envelopes_before: EnvelopeCopies,
    placement: Option<Placement>,
}

impl Checker {
    /// A checker over `files`, with no self-check run yet.
    pub fn new(files: Files) -> Self {
        Self {
            files,
            last_self_check: Arc::new(Mutex::new(None)),
        }
    }

    /// How healthy a file's stripes are. `verify` fetches and hashes every copy instead of
    /// trusting the holders' word. Needs no key: only the manifest's shard ids.
    ///
    /// # Errors
    /// [`CheckError::NotFound`] if no reachable peer holds the manifest;
    /// [`CheckError::Catalog`].
    pub async fn check(&self, id: FileId, verify: bool) -> Result<CheckReport, CheckError> {
        let inspected = self.inspect(id, verify, false, false).await?;
        Ok(logged(inspected.report))
    }

    /// Checks a file and brings every stripe below full health back to six healthy shards
    /// on six distinct live peers where it can (see the module docs). With `verify`, bad
    /// copies are found and replaced too; without, only missing shards and lost peers.
    ///
    /// # Errors
    /// [`RepairError::NotFound`] if no reachable peer holds the manifest;
    /// [`RepairError::Catalog`] or [`RepairError::TaskFailed`] if the new placement
    /// cannot be recorded. A stripe that cannot be repaired is not an error: the report
    /// says so (its `after` state and `error`).
    pub async fn repair(&self, id: FileId, verify: bool) -> Result<CheckReport, RepairError> {
        self.repair_with(id, verify, false).await
    }

    /// As [`Checker::repair`]; with `renew`, this node's lease on every copy found is
    /// renewed (the owner's self-check).
    async fn repair_with(
        &self,
        id: FileId,
        verify: bool,
        renew: bool,
    ) -> Result<CheckReport, RepairError> {
        let Inspected {
            mut report,
            manifest,
            manifest_before,
            envelopes_before,
            placement,
        } = self.inspect(id, verify, true, renew).await?;
        if self.files.server().removed_lately(&id) {
            // The owner removed the file meanwhile: no copies topped up, no announcements
            // (holders would refuse them); what was placed is taken back by the caller.
            return Ok(logged(report));
        }
        after_repair(
            &self.files,
            &mut report,
            &manifest,
            &manifest_before,
            &envelopes_before,
            placement,
        )
        .await?;
        Ok(logged(report))
    }

    /// Finds the file, asks its possible holders which shards they hold and inspects
    /// every stripe (repairing it, with `repair`).
    async fn inspect(
        &self,
        id: FileId,
        verify: bool,
        repair: bool,
        renew: bool,
    ) -> Result<Inspected, FindError> {
        let files = &self.files;
        let Found {
            placement,
            peers,
            manifest,
        } = files.find(id).await?;
        let (holders, answered) = files.locate(&manifest, &peers, placement.as_ref()).await;
        let manifest_before = manifest_holders(files, id, &answered).await;
        let envelopes_before = envelope_copies(files, &manifest, &manifest_before).await;

        let window = files.config().window.max(1);
        let unreachable = Arc::new(Mutex::new(HashSet::new()));
        let manifest = Arc::new(manifest);
        let holders = Arc::new(holders);
        let stripes: Vec<StripeReport> = futures::stream::iter(0..manifest.stripe_count())
            .map(|stripe| {
                let files = files.clone();
                let (manifest, holders) = (Arc::clone(&manifest), Arc::clone(&holders));
                let unreachable = Arc::clone(&unreachable);
                async move {
                    check_stripe(
                        &files,
                        &manifest,
                        &holders[stripe as usize],
                        stripe,
                        verify,
                        repair,
                        &unreachable,
                    )
                    .await
                }
            })
            .buffered(window)
            .collect()
            .await;

        let kept_until =
            super::lease::kept_until(files, id, &manifest, &stripes, &manifest_before, renew).await;
        let envelope = envelopes_before
            .newest
            .as_deref()
            .and_then(|bytes| datamesh_core::KeyEnvelope::from_bytes(bytes).ok())
            .map(|e| super::report::envelope_protection(&e));
        let report = CheckReport {
            kept_until,
            envelope,
            id,
            verified: verify,
            repair,
            peers_asked: peers.len(),
            peers_answered: answered.len(),
            manifest_copies: (manifest_before.len(), manifest_before.len()),
            envelope_copies: (
                envelopes_before.holders.len(),
                envelopes_before.holders.len(),
            ),
            stripes,
            manifest_holders: nearest_first(&id, manifest_before.iter().copied()),
        };
        Ok(Inspected {
            report,
            manifest,
            manifest_before,
            envelopes_before,
            placement,
        })
    }

    /// Checks and repairs every file of the catalog, records the outcome for `status` and
    /// the metrics, and returns it. Without `verify` the holders' word is trusted (cheap);
    /// with it every copy is fetched and hashed, so bit rot and lying holders are found
    /// and replaced too, at the cost of reading every shard.
    pub async fn self_check(&self, verify: bool) -> SelfCheck {
        let catalog = self.files.catalog().clone();
        let entries = match tokio::task::spawn_blocking(move || catalog.list()).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                warn!("self-check: cannot read the catalog: {e}");
                Vec::new()
            }
            Err(e) => {
                warn!("self-check: the catalog read task failed: {e}");
                Vec::new()
            }
        };
        let mut outcome = SelfCheck {
            files: entries.len(),
            ..SelfCheck::default()
        };
        for entry in entries {
            // Without --verify (which fetches every copy whole), the copies are audited:
            // a random chunk and its proof, each copy with a probability scaled to its
            // bytes, at most about 1/128 of them per pass on average.
            if !verify {
                match self.audit_within(entry.id, AuditScope::Budget).await {
                    Ok(audit) if !audit.failed.is_empty() => warn!(
                        file = %entry.id,
                        failed = audit.failed.len(),
                        challenged = audit.challenged,
                        "self-check: holders failed their audit"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(file = %entry.id, "self-check: audit failed: {e}"),
                }
            }
            match self.repair_with(entry.id, verify, true).await {
                Ok(report) => {
                    outcome.repaired_shards += report.repaired_shards();
                    if report.state() != Health::Healthy {
                        warn!(file = %entry.id, state = report.state().as_str(), "file below full health after self-check");
                        outcome.below_full_health.push(entry.id);
                    }
                }
                Err(e) => {
                    warn!(file = %entry.id, "self-check failed: {e}");
                    outcome.below_full_health.push(entry.id);
                }
            }
        }
        outcome.finished = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let metrics = self.files.metrics();
        metrics
            .files_below_full_health
            .set(outcome.below_full_health.len() as i64);
        metrics.self_checks.inc();
        info!(
            files = outcome.files,
            below = outcome.below_full_health.len(),
            repaired = outcome.repaired_shards,
            "self-check done"
        );
        *self
            .last_self_check
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(outcome.clone());
        outcome
    }

    /// The outcome of the last self-check, if one ran.
    pub fn last_self_check(&self) -> Option<SelfCheck> {
        self.last_self_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs [`Self::self_check`] every `interval`, the first a full period from now,
    /// until the returned task is aborted.
    pub(crate) fn spawn_self_checks(&self, interval: Duration, verify: bool) -> JoinHandle<()> {
        let checker = self.clone();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.tick().await; // the first tick is immediate: wait a full period
            loop {
                timer.tick().await;
                checker.self_check(verify).await;
            }
        })
    }
}

/// Inspects one stripe and, with `repair`, repairs it when it is below full health.
async fn check_stripe(
    files: &Files,
    manifest: &Manifest,
    claimed: &[HolderList; TOTAL_SHARDS],
    stripe: u64,
    verify: bool,
    repair: bool,
    unreachable: &Mutex<HashSet<PeerId>>,
) -> StripeReport {
    let (mut report, bytes) = inspect_stripe(files, manifest, claimed, stripe, verify).await;
    if repair && report.before.peers < TOTAL_SHARDS {
        if let Err(reason) = repair_stripe(files, manifest, &mut report, bytes, unreachable).await {
            warn!(stripe, "repair incomplete: {reason}");
            report.error = Some(reason.to_string());
        }
        report.after = StripeHealth::of(&report.holders);
    }
    report
}

/// Logs every bad copy the report names, and hands the report back.
fn logged(report: CheckReport) -> CheckReport {
    for bad in report.stripes.iter().flat_map(|s| &s.bad) {
        warn!(file = %report.id, peer = %bad.peer, shard = %bad.shard.short(), reason = bad.reason.as_str(), "bad copy");
    }
    report
}
