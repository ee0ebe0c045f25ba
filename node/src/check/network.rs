//! Repair by the network: the peers that hold a file's manifest keep the file alive while
//! its owner is away. Repair needs no key (see the module docs of `check`), so any
//! manifest holder can do it.
//!
//! Every `interval` (config `network_repair_interval`; 0 disables), a node takes the
//! next page of the manifests it holds (at most [`NetworkRepairConfig::files_per_round`],
//! in id order from where the last round stopped, wrapping around) and, for each:
//!
//! 1. **Owner about?** If a claim on its manifest copy here was stored or renewed within
//!    the last two intervals (the owner's put, or its self-check renewing its lease), the
//!    owner is looking after the file: deferred.
//! 2. **Responsible?** It asks the file's possible holders (providers, this node) which
//!    hold the manifest. Only the live manifest holder nearest to the file id (XOR, the
//!    Kademlia metric) goes on; the others defer to it. When it dies, the next nearest
//!    becomes responsible by the same rule at its next round, so one peer at a time
//!    repairs a file and repairs are not duplicated.
//! 3. **Audit, then repair.** The responsible peer audits the copies (a chunk and its
//!    BLAKE3 proof each, `audit.rs`; each copy with a probability scaled to its bytes,
//!    so the pass costs at most about 1/128 of them); if any holder fails, the repair verifies every copy
//!    (fetches and hashes, so the lying or emptied holder's copy is replaced); otherwise
//!    it repairs on the holders' word (missing shards and lost peers).
//!
//! Costs are bounded per round: files looked at ([`NetworkRepairConfig::files_per_round`]),
//! bytes moved by repairs (the round stops once [`NetworkRepairConfig::bytes_per_round`]
//! is passed; the next round goes on from there), one file at a time (its stripes
//! `window` at once, as any repair). A repair racing the owner's `rm`: every store of a
//! repair is a `StoreFor` whose claim is born bound to the file, so a holder the `rm`
//! reaches later drops it, and a holder the `rm` reached before refuses it (it remembers
//! removals it honoured for an hour, `serve/remove.rs`); the `rm` drops every claim on the
//! manifest blob, top-up copies included. Once the repair sees the removal itself (this
//! node honoured it, or lost its manifest copy), it places nothing more and takes back
//! what it placed (its claims deleted), for holders the `rm` never reached. The lease:
//! shards placed by a network repair are
//! claimed by the repairing peer under its own lease, which it does not renew: a file
//! whose owner never comes back is still collected once those leases run out.

use std::sync::Arc;
use std::time::Duration;

use datamesh_core::{FileId, ShardId};
use futures::stream::StreamExt;
use libp2p::PeerId;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::audit::AuditScope;
use super::checker::Checker;
use super::inspect::manifest_holders;
use super::report::CheckReport;
use crate::lease::unix_now;
use crate::protocol::{Request, Response};

/// Deletes in flight at once when a repair is taken back.
const UNDO_IN_FLIGHT: usize = 16;

/// Default period of the network repair rounds.
pub const DEFAULT_NETWORK_REPAIR_INTERVAL: Duration = Duration::from_secs(900);

/// How the network repair runs. Typed config: every bound has a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkRepairConfig {
    interval: Duration,
    files_per_round: usize,
    bytes_per_round: u64,
}

impl NetworkRepairConfig {
    /// Rounds every `interval` (zero: never). Defaults for the rest.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            files_per_round: 64,
            bytes_per_round: 1 << 30,
        }
    }

    /// Manifests looked at per round at most; at least 1. Default: 64.
    pub fn with_files_per_round(mut self, files: usize) -> Self {
        self.files_per_round = files.max(1);
        self
    }

    /// Bytes a round's repairs may move (fetched and stored) before the round stops;
    /// the file being repaired when it is passed is finished. Default: 1 GiB.
    pub fn with_bytes_per_round(mut self, bytes: u64) -> Self {
        self.bytes_per_round = bytes;
        self
    }

    /// The period of the rounds.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long after its owner stored or renewed it a file is left to its owner: two
    /// intervals.
    fn owner_quiet(&self) -> u64 {
        self.interval.as_secs().saturating_mul(2)
    }
}

impl Default for NetworkRepairConfig {
    fn default() -> Self {
        Self::new(DEFAULT_NETWORK_REPAIR_INTERVAL)
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRound {
    /// Manifests looked at.
    pub files: usize,
    /// Left to their owner (stored or renewed lately).
    pub owner_active: usize,
    /// Left to a nearer live manifest holder.
    pub deferred: usize,
    /// Checked (audited and repaired where needed) by this node as the responsible peer.
    pub checked: usize,
    /// Of those, files with a holder that failed an audit.
    pub audit_failures: usize,
    /// Shards placed by this round's repairs.
    pub repaired_shards: usize,
    /// Bytes moved by this round's repairs (fetched and stored).
    pub bytes: u64,
}

/// The peer of `holders` nearest to `file` (XOR distance of Kademlia keys): of a file's
/// live manifest holders, the one responsible for its network repair. `None` if there
/// are none.
pub fn nearest_holder(file: &FileId, holders: impl IntoIterator<Item = PeerId>) -> Option<PeerId> {
    nearest_first(file, holders).into_iter().next()
}

/// `peers` in the order of the responsible-peer rule: nearest to `file` first.
pub(crate) fn nearest_first(file: &FileId, peers: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
    let mut out: Vec<PeerId> = peers.into_iter().collect();
    crate::network::sort_by_distance(&mut out, file.as_bytes());
    out.dedup();
    out
}

/// Whether `me` is the nearest to `file` among `holders` and itself.
pub(crate) fn responsible(
    me: PeerId,
    file: &FileId,
    holders: impl Iterator<Item = PeerId>,
) -> bool {
    nearest_holder(file, holders.chain(std::iter::once(me))) == Some(me)
}

impl Checker {
    /// One round of the network repair over the manifests this node holds, from
    /// `cursor` (updated to where the round stopped; `None` once the end was reached).
    pub async fn network_round(
        &self,
        config: &NetworkRepairConfig,
        cursor: &mut Option<FileId>,
    ) -> NetworkRound {
        let files = &self.files;
        let server = Arc::clone(files.server());
        let (after, limit) = (*cursor, config.files_per_round);
        let page =
            tokio::task::spawn_blocking(move || server.held_manifests(after.as_ref(), limit)).await;
        let page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => {
                warn!("network repair: cannot list the manifests held: {e}");
                return NetworkRound::default();
            }
            Err(e) => {
                warn!("network repair: the listing task failed: {e}");
                return NetworkRound::default();
            }
        };
        *cursor = if page.len() < limit {
            None
        } else {
            page.last().copied()
        };
        let metrics = Arc::clone(files.metrics());
        let moved = || metrics.repair_bytes_fetched.get() + metrics.repair_bytes_stored.get();
        let start = moved();
        let mut round = NetworkRound::default();
        for (n, id) in page.iter().enumerate() {
            round.files += 1;
            if self.owner_active(id, config.owner_quiet()).await {
                round.owner_active += 1;
                continue;
            }
            let peers = files.file_peers(*id, None).await;
            let holders = manifest_holders(files, *id, &peers.into_iter().collect()).await;
            if !responsible(files.peer_id(), id, holders.into_iter()) {
                round.deferred += 1;
                continue;
            }
            round.checked += 1;
            let audit = match self.audit_within(*id, AuditScope::Budget).await {
                Ok(audit) => audit,
                Err(e) => {
                    debug!(file = %id, "network repair: audit failed: {e}");
                    continue;
                }
            };
            let failed = !audit.failed.is_empty();
            round.audit_failures += usize::from(failed);
            match self.repair(*id, failed).await {
                Ok(report) if self.removed(id).await => {
                    // The owner removed the file while it was being repaired: rm wins.
                    self.undo_repair(&report).await;
                }
                Ok(report) => round.repaired_shards += report.repaired_shards(),
                Err(e) => warn!(file = %id, "network repair failed: {e}"),
            }
            round.bytes = moved().saturating_sub(start);
            if round.bytes >= config.bytes_per_round {
                // Go on from the next file next round.
                *cursor = Some(*id);
                if n + 1 == page.len() && page.len() < limit {
                    *cursor = None;
                }
                break;
            }
        }
        metrics.network_repair_rounds.inc();
        metrics.network_repair_files.inc_by(round.checked as u64);
        if round.checked > 0 || round.repaired_shards > 0 {
            info!(
                files = round.files,
                checked = round.checked,
                deferred = round.deferred,
                owner_active = round.owner_active,
                repaired = round.repaired_shards,
                bytes = round.bytes,
                "network repair round"
            );
        }
        round
    }

    /// Whether the owner removed `id`: this node honoured its removal lately, or no
    /// longer holds its manifest (an `rm` took it).
    async fn removed(&self, id: &FileId) -> bool {
        if self.files.server().removed_lately(id) {
            return true;
        }
        let store = Arc::clone(self.files.store());
        let blob = ShardId::from_bytes(*id.as_bytes());
        matches!(
            tokio::task::spawn_blocking(move || store.has(&blob)).await,
            Ok(Ok(false))
        )
    }

    /// Takes back what a repair of a file removed meanwhile placed: this node's claims on
    /// the shards it placed and on the manifest copies it topped up (a holder keeps a blob
    /// only while some claim does). Each `Delete` costs a holder nothing without a claim.
    async fn undo_repair(&self, report: &CheckReport) {
        let files = &self.files;
        let mut asks: Vec<(PeerId, ShardId)> = report
            .stripes
            .iter()
            .flat_map(|s| &s.repaired)
            .map(|r| (r.peer, r.shard))
            .collect();
        let blob = ShardId::from_bytes(*report.id.as_bytes());
        let peers = files.file_peers(report.id, None).await;
        asks.extend(peers.into_iter().map(|p| (p, blob)));
        let deadline = files.config().lookup_deadline;
        let undone = futures::stream::iter(asks)
            .map(|(peer, id)| {
                let files = files.clone();
                async move {
                    let answer =
                        tokio::time::timeout(deadline, files.send(peer, Request::Delete { id }))
                            .await;
                    usize::from(matches!(answer, Ok(Ok(Response::Done))))
                }
            })
            .buffer_unordered(UNDO_IN_FLIGHT)
            .fold(0, |n, d| async move { n + d })
            .await;
        info!(file = %report.id, undone, "the file was removed during its repair: placements taken back");
    }

    /// Whether the owner stored or renewed the manifest held here within `quiet` s.
    async fn owner_active(&self, id: &FileId, quiet: u64) -> bool {
        let server = Arc::clone(self.files.server());
        let id = *id;
        match tokio::task::spawn_blocking(move || {
            server.manifest_touched_within(&id, quiet, unix_now())
        })
        .await
        {
            Ok(Ok(active)) => active,
            Ok(Err(e)) => {
                warn!(file = %id, "network repair: cannot read the manifest's lease: {e}");
                true
            }
            Err(e) => {
                warn!("network repair: the lease read task failed: {e}");
                true
            }
        }
    }

    /// Runs [`Self::network_round`] every interval (the first a full period from now),
    /// until the returned task is aborted; `None` if the interval is zero.
    pub(crate) fn spawn_network_repair(
        &self,
        config: NetworkRepairConfig,
    ) -> Option<JoinHandle<()>> {
        if config.interval.is_zero() {
            return None;
        }
        let checker = self.clone();
        Some(tokio::spawn(async move {
            let mut timer = tokio::time::interval(config.interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.tick().await;
            let mut cursor = None;
            loop {
                timer.tick().await;
                checker.network_round(&config, &mut cursor).await;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_the_holders_is_responsible() {
        let file = FileId::from_bytes([7; 32]);
        let peers: Vec<PeerId> = (0..9).map(|_| PeerId::random()).collect();
        let responsible_ones = peers
            .iter()
            .filter(|me| responsible(**me, &file, peers.iter().copied()))
            .count();
        assert_eq!(responsible_ones, 1);
        // Alone (the others dead), a holder is responsible.
        assert!(responsible(peers[3], &file, std::iter::empty()));
    }
}
