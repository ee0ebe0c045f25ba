//! Check, verify and repair: how healthy a file's stripes are, and putting them back to
//! six healthy shards on six distinct live peers.
//!
//! None of this needs the file's data key: shards are ciphertext, the manifest (public,
//! content-addressed) lists every shard's BLAKE3 id, and erasure coding works on the
//! ciphertext ([`datamesh_core::rebuild_shards`]). Any node can check and repair any file
//! whose id it knows, including files it cannot read.
//!
//! * **check** (cheap) asks every peer that may hold something of the file (DHT
//!   providers, the placement recorded at put time, this node) which shards it holds
//!   (`Has`). It trusts those answers: a holder with a corrupt copy, or one that lies,
//!   still counts as healthy.
//! * **verify** fetches every claimed copy and hashes it against the manifest; a copy that
//!   does not match (wrong bytes on the wire), that the holder reports corrupt, or that a
//!   holder claimed but does not have, is named with its peer.
//! * **repair**, for each stripe below six healthy shards on six distinct peers: fetches
//!   any four intact shards, rebuilds the others, checks each rebuilt shard's id against
//!   the manifest, places the missing ones with the put path's placement (nearest to the
//!   stripe's key, replacing peers that fail), away from the remaining holders and from
//!   bad peers, has the new holders announce the file (provider records, as put does),
//!   asks holders of corrupt copies to drop them, and tops the manifest (and key
//!   envelopes, which are signed and opaque) back up to [`MANIFEST_COPIES`] copies.
//!
//! A stripe's health: `healthy` is how many of its six shards have at least one intact
//! copy on a live peer; `peers` is how many distinct live peers hold distinct healthy
//! shards (a maximum matching of shards to peers, so two shards on one peer count once).
//! Full health is `peers == 6`; a stripe is readable while `healthy >= 4`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datamesh_core::{DATA_SHARDS, FileId, Manifest, ShardId, TOTAL_SHARDS, rebuild_shards};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::catalog::{CatalogError, Placement};
use crate::files::{Files, GetError, MANIFEST_COPIES};
use crate::protocol::{Refusal, Request, Response};

/// How a stripe (or a whole file: its worst stripe) stands, and why a copy was counted
/// bad: the API's types (`healthy`, `degraded`, `unrecoverable`; `wrong_bytes`,
/// `corrupt`, `missing`), used here as they are.
pub use datamesh_api::{BadReason, Health};

/// Counts of one stripe at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeHealth {
    /// Shards (of 6) with at least one intact copy on a live peer.
    pub healthy: usize,
    /// Distinct live peers holding distinct healthy shards (at most `healthy`).
    pub peers: usize,
}

impl StripeHealth {
    fn of(holders: &[Vec<PeerId>; TOTAL_SHARDS]) -> Self {
        Self {
            healthy: holders.iter().filter(|h| !h.is_empty()).count(),
            peers: matching(holders).iter().flatten().count(),
        }
    }

    /// What the counts mean.
    pub fn state(&self) -> Health {
        if self.peers == TOTAL_SHARDS {
            Health::Healthy
        } else if self.healthy >= DATA_SHARDS {
            Health::Degraded
        } else {
            Health::Unrecoverable
        }
    }
}

/// A bad copy and who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCopy {
    /// The holder.
    pub peer: PeerId,
    /// Shard index in the stripe (0..4 data, 4..6 parity).
    pub index: usize,
    /// The shard's id.
    pub shard: ShardId,
    /// What was wrong.
    pub reason: BadReason,
}

/// A shard rebuilt and placed by a repair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairedShard {
    /// Shard index in the stripe.
    pub index: usize,
    /// The shard's id (checked against the manifest before it was placed).
    pub shard: ShardId,
    /// Its new holder.
    pub peer: PeerId,
}

/// One stripe's findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeReport {
    /// Stripe index.
    pub stripe: u64,
    /// Before any repair.
    pub before: StripeHealth,
    /// After the repair (equal to `before` when nothing was repaired).
    pub after: StripeHealth,
    /// Per shard index, the live peers with a healthy copy (after the repair).
    pub holders: [Vec<PeerId>; TOTAL_SHARDS],
    /// Bad copies found.
    pub bad: Vec<BadCopy>,
    /// Peers that said they hold a shard of this stripe but did not answer a fetch.
    pub unreachable: Vec<PeerId>,
    /// Shards placed by the repair.
    pub repaired: Vec<RepairedShard>,
    /// Why the repair of this stripe did not reach full health, if it did not.
    pub error: Option<String>,
}

/// What a check (and repair) found. [`CheckReport::to_api`] is the API's and the CLI's
/// stable form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The file.
    pub id: FileId,
    /// Whether every copy was fetched and hashed.
    pub verified: bool,
    /// Whether a repair was asked for.
    pub repair: bool,
    /// Peers asked which shards they hold.
    pub peers_asked: usize,
    /// Peers that answered.
    pub peers_answered: usize,
    /// Live peers holding the manifest, before and after the repair.
    pub manifest_copies: (usize, usize),
    /// Per stripe.
    pub stripes: Vec<StripeReport>,
}

impl CheckReport {
    /// The worst stripe state before the repair.
    pub fn state_before(&self) -> Health {
        self.stripes
            .iter()
            .map(|s| s.before.state())
            .max()
            .unwrap_or(Health::Healthy)
    }

    /// The worst stripe state after the repair (before, if none was asked for).
    pub fn state(&self) -> Health {
        self.stripes
            .iter()
            .map(|s| s.after.state())
            .max()
            .unwrap_or(Health::Healthy)
    }

    /// Every peer that held a bad copy, in the order found.
    pub fn bad_peers(&self) -> Vec<PeerId> {
        let mut seen = HashSet::new();
        self.stripes
            .iter()
            .flat_map(|s| &s.bad)
            .map(|b| b.peer)
            .filter(|p| seen.insert(*p))
            .collect()
    }

    /// Shards placed by the repair.
    pub fn repaired_shards(&self) -> usize {
        self.stripes.iter().map(|s| s.repaired.len()).sum()
    }

    fn count(&self, state: Health, after: bool) -> usize {
        self.stripes
            .iter()
            .filter(|s| if after { s.after } else { s.before }.state() == state)
            .count()
    }

    /// The report as the API sends it ([`datamesh_api::CheckReport`]).
    pub fn to_api(&self) -> datamesh_api::CheckReport {
        let summary = |after: bool| datamesh_api::CheckSummary {
            state: if after {
                self.state()
            } else {
                self.state_before()
            },
            healthy_stripes: self.count(Health::Healthy, after),
            degraded_stripes: self.count(Health::Degraded, after),
            unrecoverable_stripes: self.count(Health::Unrecoverable, after),
            manifest_copies: if after {
                self.manifest_copies.1
            } else {
                self.manifest_copies.0
            },
        };
        let strings = |peers: &[PeerId]| peers.iter().map(ToString::to_string).collect();
        let stripes = self
            .stripes
            .iter()
            .map(|s| datamesh_api::StripeCheck {
                stripe: s.stripe,
                healthy: s.after.healthy,
                peers: s.after.peers,
                state: s.after.state(),
                before: datamesh_api::StripeCounts {
                    healthy: s.before.healthy,
                    peers: s.before.peers,
                    state: s.before.state(),
                },
                holders: s.holders.iter().map(|list| strings(list)).collect(),
                bad: s
                    .bad
                    .iter()
                    .map(|b| datamesh_api::BadCopy {
                        peer: b.peer.to_string(),
                        index: b.index,
                        shard: b.shard.to_string(),
                        reason: b.reason,
                    })
                    .collect(),
                unreachable: strings(&s.unreachable),
                repaired: s
                    .repaired
                    .iter()
                    .map(|r| datamesh_api::RepairedShard {
                        index: r.index,
                        shard: r.shard.to_string(),
                        peer: r.peer.to_string(),
                    })
                    .collect(),
                error: s.error.clone(),
            })
            .collect();
        datamesh_api::CheckReport {
            id: self.id.to_string(),
            verified: self.verified,
            repair: self.repair,
            state: self.state(),
            stripes_total: self.stripes.len(),
            peers_asked: self.peers_asked,
            peers_answered: self.peers_answered,
            bad_peers: strings(&self.bad_peers()),
            repaired_shards: self.repaired_shards(),
            before: summary(false),
            after: summary(true),
            stripes,
        }
    }

    /// The JSON form: [`CheckReport::to_api`] serialized.
    pub fn to_json(&self) -> Value {
        // Plain strings, numbers and lists: serializing cannot fail.
        serde_json::to_value(self.to_api()).unwrap_or_default()
    }
}

/// The outcome of the node's last pass over its catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfCheck {
    /// When it finished, seconds since the Unix epoch.
    pub finished: u64,
    /// Files checked.
    pub files: usize,
    /// Files still below full health after the pass (or that could not be checked).
    pub below_full_health: Vec<FileId>,
    /// Shards the pass rebuilt and placed.
    pub repaired_shards: usize,
}

/// A maximum matching of shard indexes to distinct peers (augmenting paths; six shards),
/// earlier holders of each list preferred.
fn matching(holders: &[Vec<PeerId>; TOTAL_SHARDS]) -> [Option<PeerId>; TOTAL_SHARDS] {
    fn assign(
        index: usize,
        holders: &[Vec<PeerId>; TOTAL_SHARDS],
        owner: &mut HashMap<PeerId, usize>,
        seen: &mut HashSet<PeerId>,
    ) -> bool {
        for peer in &holders[index] {
            if !seen.insert(*peer) {
                continue;
            }
            let free = match owner.get(peer) {
                None => true,
                Some(&other) => assign(other, holders, owner, seen),
            };
            if free {
                owner.insert(*peer, index);
                return true;
            }
        }
        false
    }
    let mut owner: HashMap<PeerId, usize> = HashMap::new();
    for index in 0..TOTAL_SHARDS {
        assign(index, holders, &mut owner, &mut HashSet::new());
    }
    let mut out = [None; TOTAL_SHARDS];
    for (peer, index) in owner {
        out[index] = Some(peer);
    }
    out
}

/// One fetch's outcome.
enum Fetched {
    Good(Vec<u8>),
    Bad(BadReason),
    NoAnswer,
}

impl Files {
    /// How healthy a file's stripes are. `verify` fetches and hashes every copy instead of
    /// trusting the holders' word. Needs no key: only the manifest's shard ids.
    ///
    /// # Errors
    /// [`GetError::NotFound`] if no reachable peer holds the manifest; [`GetError::Catalog`].
    pub async fn check(&self, id: FileId, verify: bool) -> Result<CheckReport, GetError> {
        self.check_file(id, verify, false).await
    }

    /// Checks a file and brings every stripe below full health back to six healthy shards
    /// on six distinct live peers where it can (see the module docs). With `verify`, bad
    /// copies are found and replaced too; without, only missing shards and lost peers.
    ///
    /// # Errors
    /// As [`Files::check`]. A stripe that cannot be repaired is not an error: the report
    /// says so (its `after` state and `error`).
    pub async fn repair(&self, id: FileId, verify: bool) -> Result<CheckReport, GetError> {
        self.check_file(id, verify, true).await
    }

    async fn check_file(
        &self,
        id: FileId,
        verify: bool,
        repair: bool,
    ) -> Result<CheckReport, GetError> {
        let (placement, peers, manifest) = self.find(id).await?;
        let (holders, answered) = self.locate(&manifest, &peers, placement.as_ref()).await;
        let manifest_before = self.manifest_holders(id, &answered).await;

        let window = self.inner.config.window.max(1);
        let unreachable = Arc::new(Mutex::new(HashSet::new()));
        let manifest = Arc::new(manifest);
        let holders = Arc::new(holders);
        let stripes: Vec<StripeReport> = futures::stream::iter(0..manifest.stripe_count())
            .map(|stripe| {
                let files = self.clone();
                let (manifest, holders) = (Arc::clone(&manifest), Arc::clone(&holders));
                let unreachable = Arc::clone(&unreachable);
                async move {
                    files
                        .check_stripe(
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

        let mut report = CheckReport {
            id,
            verified: verify,
            repair,
            peers_asked: peers.len(),
            peers_answered: answered.len(),
            manifest_copies: (manifest_before.len(), manifest_before.len()),
            stripes,
        };
        if repair {
            self.after_repair(&mut report, &manifest, &manifest_before, placement)
                .await?;
        }
        for bad in report.stripes.iter().flat_map(|s| &s.bad) {
            warn!(file = %id, peer = %bad.peer, shard = %bad.shard.short(), reason = bad.reason.as_str(), "bad copy");
        }
        Ok(report)
    }

    /// Announces new holders, tops up the manifest copies and records the new placement.
    async fn after_repair(
        &self,
        report: &mut CheckReport,
        manifest: &Manifest,
        manifest_before: &HashSet<PeerId>,
        placement: Option<Placement>,
    ) -> Result<(), GetError> {
        let id = report.id;
        let new_holders: HashSet<PeerId> = report
            .stripes
            .iter()
            .flat_map(|s| &s.repaired)
            .map(|r| r.peer)
            .collect();
        let mut manifest_after = manifest_before.len();
        if manifest_before.len() < MANIFEST_COPIES {
            let request = Request::Store {
                id: ShardId::from_bytes(*id.as_bytes()),
                bytes: manifest.to_bytes().into(),
            };
            match self.place_copies(id.as_bytes(), &request).await {
                Ok(copies) => {
                    manifest_after = copies.len().max(manifest_before.len());
                    let fresh: Vec<PeerId> = copies
                        .into_iter()
                        .filter(|p| !manifest_before.contains(p))
                        .collect();
                    if !fresh.is_empty() {
                        let envelopes = self.collect_envelopes(id, manifest_before).await;
                        for bytes in envelopes {
                            self.publish_envelope_bytes(bytes, &fresh).await;
                        }
                        let announced = self.announce(id, &fresh.iter().copied().collect()).await;
                        info!(file = %id, copies = manifest_after, announced, "manifest copies topped up");
                    }
                }
                Err(e) => warn!(file = %id, "could not top up the manifest copies: {e}"),
            }
        }
        report.manifest_copies.1 = manifest_after;
        if new_holders.is_empty() {
            return Ok(());
        }
        let announced = self.announce(id, &new_holders).await;
        let repaired = report.repaired_shards();
        self.inner.metrics.repaired_shards.inc_by(repaired as u64);
        info!(file = %id, repaired, new_holders = new_holders.len(), announced, "repair placed shards");

        // This node's own file: the placement hint follows the shards.
        if let Some(old) = placement
            && self.inner.catalog.get(&id)?.is_some()
        {
            let rows: Vec<[PeerId; TOTAL_SHARDS]> = report
                .stripes
                .iter()
                .map(|s| {
                    let best = matching(&s.holders);
                    std::array::from_fn(|index| {
                        best[index]
                            .or_else(|| s.holders[index].first().copied())
                            .or_else(|| old.holder(s.stripe, index))
                            .unwrap_or_else(|| self.inner.net.peer_id())
                    })
                })
                .collect();
            let catalog = self.inner.catalog.clone();
            let placement = Placement::from_stripes(&rows);
            tokio::task::spawn_blocking(move || catalog.set_placement(&id, &placement))
                .await
                .map_err(|e| CatalogError::Damaged(e.to_string()))??;
        }
        Ok(())
    }

    /// The peers of `peers` that hold the manifest.
    async fn manifest_holders(&self, id: FileId, peers: &HashSet<PeerId>) -> HashSet<PeerId> {
        let blob = ShardId::from_bytes(*id.as_bytes());
        let deadline = self.inner.config.lookup_deadline;
        let peers: Vec<PeerId> = peers.iter().copied().collect();
        let mut asks = self.ask_all(&peers, &Request::Has { ids: vec![blob] }, deadline);
        let mut out = HashSet::new();
        while let Some((peer, answer)) = asks.next().await {
            if matches!(answer, Some(Response::Has(f)) if f == [true]) {
                out.insert(peer);
            }
        }
        out
    }

    /// Every key envelope of the file this node and `peers` hold (opaque, signed).
    async fn collect_envelopes(&self, id: FileId, peers: &HashSet<PeerId>) -> Vec<Vec<u8>> {
        let deadline = self.inner.config.lookup_deadline;
        let mut all: Vec<Vec<u8>> = self.inner.server.envelopes(id.as_bytes());
        let peers: Vec<PeerId> = peers.iter().copied().collect();
        let mut asks = self.ask_all(&peers, &Request::GetEnvelope { file: id }, deadline);
        while let Some((_, answer)) = asks.next().await {
            if let Some(Response::Envelopes(list)) = answer {
                for bytes in list {
                    if !all.contains(&bytes) {
                        all.push(bytes);
                    }
                }
            }
        }
        all
    }

    /// Fetches one copy and judges it against its id.
    async fn fetch_copy(&self, peer: PeerId, id: ShardId) -> Fetched {
        let deadline = self.inner.config.stripe_deadline;
        match tokio::time::timeout(deadline, self.send(peer, Request::Fetch { id })).await {
            Ok(Ok(Response::Blob(bytes))) if ShardId::of(&bytes) == id => Fetched::Good(bytes),
            Ok(Ok(Response::Blob(_))) => {
                self.inner.metrics.bad_shards_fetched.inc();
                Fetched::Bad(BadReason::WrongBytes)
            }
            Ok(Ok(Response::Refused(Refusal::Corrupt))) => Fetched::Bad(BadReason::Corrupt),
            Ok(Ok(Response::NotFound)) => Fetched::Bad(BadReason::Missing),
            Ok(Ok(other)) => {
                debug!(%peer, ?other, "shard not served");
                Fetched::NoAnswer
            }
            Ok(Err(e)) => {
                debug!(%peer, "fetch failed: {e}");
                Fetched::NoAnswer
            }
            Err(_) => Fetched::NoAnswer,
        }
    }

    async fn check_stripe(
        &self,
        manifest: &Manifest,
        claimed: &[Vec<PeerId>; TOTAL_SHARDS],
        stripe: u64,
        verify: bool,
        repair: bool,
        unreachable: &Mutex<HashSet<PeerId>>,
    ) -> StripeReport {
        let ids = manifest.stripes()[stripe as usize];
        let mut holders: [Vec<PeerId>; TOTAL_SHARDS] = Default::default();
        let mut bytes: [Option<Vec<u8>>; TOTAL_SHARDS] = Default::default();
        let mut bad = Vec::new();
        let mut silent = Vec::new();
        if verify {
            let mut fetches: FuturesUnordered<_> = claimed
                .iter()
                .enumerate()
                .flat_map(|(index, list)| list.iter().map(move |&peer| (index, peer)))
                .map(|(index, peer)| {
                    let files = self.clone();
                    let id = ids[index];
                    async move { (index, peer, files.fetch_copy(peer, id).await) }
                })
                .collect();
            while let Some((index, peer, outcome)) = fetches.next().await {
                match outcome {
                    Fetched::Good(b) => {
                        holders[index].push(peer);
                        if bytes[index].is_none() {
                            bytes[index] = Some(b);
                        }
                    }
                    Fetched::Bad(reason) => bad.push(BadCopy {
                        peer,
                        index,
                        shard: ids[index],
                        reason,
                    }),
                    Fetched::NoAnswer => silent.push(peer),
                }
            }
            // Keep the locate order (the recorded holder first).
            for (list, order) in holders.iter_mut().zip(claimed) {
                list.sort_by_key(|p| order.iter().position(|q| q == p));
            }
        } else {
            holders = claimed.clone();
        }
        let before = StripeHealth::of(&holders);
        let mut report = StripeReport {
            stripe,
            before,
            after: before,
            holders,
            bad,
            unreachable: silent,
            repaired: Vec::new(),
            error: None,
        };
        if repair && before.peers < TOTAL_SHARDS {
            if let Err(reason) = self
                .repair_stripe(manifest, &mut report, bytes, unreachable)
                .await
            {
                warn!(stripe, "repair incomplete: {reason}");
                report.error = Some(reason);
            }
            report.after = StripeHealth::of(&report.holders);
        }
        report
    }

    /// Rebuilds and places what a stripe lacks; `report.holders` gains the new holders.
    async fn repair_stripe(
        &self,
        manifest: &Manifest,
        report: &mut StripeReport,
        mut bytes: [Option<Vec<u8>>; TOTAL_SHARDS],
        unreachable: &Mutex<HashSet<PeerId>>,
    ) -> Result<(), String> {
        let stripe = report.stripe;
        let ids = manifest.stripes()[stripe as usize];
        let layout = manifest
            .layout(stripe)
            .ok_or_else(|| format!("stripe {stripe} is not in the manifest"))?;

        // Four intact shards: those already fetched, then from the holders, data first.
        let have = bytes.iter().flatten().count();
        if have < DATA_SHARDS {
            let mut fetches: FuturesUnordered<_> = (0..TOTAL_SHARDS)
                .filter(|&i| bytes[i].is_none() && !report.holders[i].is_empty())
                .map(|index| {
                    let files = self.clone();
                    let list = report.holders[index].clone();
                    let id = ids[index];
                    async move {
                        let mut found = None;
                        let mut bad = Vec::new();
                        for peer in list {
                            match files.fetch_copy(peer, id).await {
                                Fetched::Good(b) => {
                                    found = Some(b);
                                    break;
                                }
                                Fetched::Bad(reason) => bad.push((peer, reason)),
                                Fetched::NoAnswer => {}
                            }
                        }
                        (index, found, bad)
                    }
                })
                .collect();
            let mut have = have;
            while let Some((index, found, bad)) = fetches.next().await {
                for (peer, reason) in bad {
                    report.holders[index].retain(|p| *p != peer);
                    report.bad.push(BadCopy {
                        peer,
                        index,
                        shard: ids[index],
                        reason,
                    });
                }
                if let Some(b) = found {
                    bytes[index] = Some(b);
                    have += 1;
                    if have >= DATA_SHARDS {
                        break;
                    }
                }
            }
        }
        let shard_len = layout.shard_len;
        let rebuilt = tokio::task::spawn_blocking(move || {
            rebuild_shards(&ids, shard_len, &mut bytes).map(|()| bytes)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("stripe {stripe}: {e}"))?;

        // Drop corrupt copies (the holder checks the corruption itself before deleting).
        for copy in report.bad.iter().filter(|b| b.reason == BadReason::Corrupt) {
            let answer = self
                .send(copy.peer, Request::Delete { id: copy.shard })
                .await;
            debug!(peer = %copy.peer, shard = %copy.shard.short(), ?answer, "asked to drop a corrupt copy");
        }

        let best = matching(&report.holders);
        let missing: Vec<usize> = (0..TOTAL_SHARDS).filter(|&i| best[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut exclude: HashSet<PeerId> = best.iter().flatten().copied().collect();
        exclude.extend(report.bad.iter().map(|b| b.peer));
        exclude.extend(report.unreachable.iter().copied());
        let shards: Vec<(ShardId, bytes::Bytes)> = missing
            .iter()
            .map(|&i| (ids[i], rebuilt[i].clone().unwrap_or_default().into()))
            .collect();
        let (placed, found) = self
            .place_shards(ids[0].as_bytes(), shards, &exclude, unreachable)
            .await
            .map_err(|e| e.to_string())?;
        for (&index, peer) in missing.iter().zip(&placed) {
            if let Some(peer) = *peer {
                report.holders[index].push(peer);
                report.repaired.push(RepairedShard {
                    index,
                    shard: ids[index],
                    peer,
                });
            }
        }
        let placed_count = placed.iter().flatten().count();
        if placed_count < missing.len() {
            return Err(format!(
                "stripe {stripe}: only {placed_count} of the {} missing shards could be placed on other live peers ({found} peers found): repair needs more reachable peers with free space",
                missing.len()
            ));
        }
        Ok(())
    }

    /// Checks and repairs every file of the catalog, records the outcome for `status` and
    /// the metrics, and returns it. Without `verify` the holders' word is trusted (cheap);
    /// with it every copy is fetched and hashed, so bit rot and lying holders are found
    /// and replaced too, at the cost of reading every shard.
    pub async fn self_check(&self, verify: bool) -> SelfCheck {
        let catalog = self.inner.catalog.clone();
        let entries = match tokio::task::spawn_blocking(move || catalog.list()).await {
            Ok(Ok(entries)) => entries,
            Ok(Err(e)) => {
                warn!("self-check: cannot read the catalog: {e}");
                Vec::new()
            }
            Err(e) => {
                warn!("self-check: {e}");
                Vec::new()
            }
        };
        let mut outcome = SelfCheck {
            files: entries.len(),
            ..SelfCheck::default()
        };
        for entry in entries {
            match self.repair(entry.id, verify).await {
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
        let metrics = &self.inner.metrics;
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
            .inner
            .last_self_check
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(outcome.clone());
        outcome
    }

    /// The outcome of the last self-check, if one ran.
    pub fn last_self_check(&self) -> Option<SelfCheck> {
        self.inner
            .last_self_check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn health_counts_distinct_peers_by_matching() {
        let p = peers(7);
        // Six shards on six peers: full health.
        let full: [Vec<PeerId>; 6] = std::array::from_fn(|i| vec![p[i]]);
        let h = StripeHealth::of(&full);
        assert_eq!((h.healthy, h.peers, h.state()), (6, 6, Health::Healthy));
        // Shards 0 and 1 only on one peer: six healthy, five distinct peers.
        let mut doubled = full.clone();
        doubled[1] = vec![p[0]];
        let h = StripeHealth::of(&doubled);
        assert_eq!((h.healthy, h.peers, h.state()), (6, 5, Health::Degraded));
        // A second copy of shard 0 elsewhere lets the matching move it.
        doubled[0] = vec![p[0], p[6]];
        let h = StripeHealth::of(&doubled);
        assert_eq!((h.healthy, h.peers, h.state()), (6, 6, Health::Healthy));
        // Three shards left: unrecoverable.
        let mut lost: [Vec<PeerId>; 6] = Default::default();
        for (i, slot) in lost.iter_mut().enumerate().take(3) {
            *slot = vec![p[i]];
        }
        let h = StripeHealth::of(&lost);
        assert_eq!(
            (h.healthy, h.peers, h.state()),
            (3, 3, Health::Unrecoverable)
        );
        assert_eq!(
            StripeHealth::of(&Default::default()).state(),
            Health::Unrecoverable
        );
    }

    /// The JSON shape is a contract (documented in `cli/src/cmd/check.rs`, parsed by the
    /// fault suite): every field is there, with the type promised.
    #[test]
    fn the_json_report_has_the_documented_shape() -> Result<(), String> {
        let p = peers(8);
        let ids: [ShardId; 6] = std::array::from_fn(|i| ShardId::of(&[i as u8]));
        let before: [Vec<PeerId>; 6] =
            std::array::from_fn(|i| if i < 4 { vec![p[i]] } else { vec![] });
        let mut after = before.clone();
        after[4] = vec![p[6]];
        after[5] = vec![p[7]];
        let report = CheckReport {
            id: FileId::of_manifest(b"m"),
            verified: true,
            repair: true,
            peers_asked: 8,
            peers_answered: 7,
            manifest_copies: (5, 6),
            stripes: vec![StripeReport {
                stripe: 0,
                before: StripeHealth::of(&before),
                after: StripeHealth::of(&after),
                holders: after.clone(),
                bad: vec![BadCopy {
                    peer: p[4],
                    index: 4,
                    shard: ids[4],
                    reason: BadReason::WrongBytes,
                }],
                unreachable: vec![p[5]],
                repaired: vec![
                    RepairedShard {
                        index: 4,
                        shard: ids[4],
                        peer: p[6],
                    },
                    RepairedShard {
                        index: 5,
                        shard: ids[5],
                        peer: p[7],
                    },
                ],
                error: None,
            }],
        };
        let j = report.to_json();
        let expect = |cond: bool, what: &str| {
            if cond {
                Ok(())
            } else {
                Err(format!("{what}: {j:#}"))
            }
        };
        expect(j["id"] == report.id.to_string(), "id")?;
        expect(j["verified"] == true && j["repair"] == true, "flags")?;
        expect(j["state"] == "healthy", "state")?;
        expect(j["stripes_total"] == 1, "stripes_total")?;
        expect(j["peers_asked"] == 8 && j["peers_answered"] == 7, "peers")?;
        expect(j["bad_peers"] == json!([p[4].to_string()]), "bad_peers")?;
        expect(j["repaired_shards"] == 2, "repaired_shards")?;
        expect(
            j["before"]
                == json!({"state": "degraded", "healthy_stripes": 0, "degraded_stripes": 1,
                          "unrecoverable_stripes": 0, "manifest_copies": 5}),
            "before",
        )?;
        expect(
            j["after"]
                == json!({"state": "healthy", "healthy_stripes": 1, "degraded_stripes": 0,
                          "unrecoverable_stripes": 0, "manifest_copies": 6}),
            "after",
        )?;
        let s = &j["stripes"][0];
        expect(
            s["stripe"] == 0 && s["healthy"] == 6 && s["peers"] == 6,
            "stripe counts",
        )?;
        expect(s["state"] == "healthy", "stripe state")?;
        expect(
            s["before"] == json!({"healthy": 4, "peers": 4, "state": "degraded"}),
            "stripe before",
        )?;
        expect(
            s["holders"].as_array().is_some_and(|h| h.len() == 6),
            "holders",
        )?;
        expect(s["holders"][4] == json!([p[6].to_string()]), "holder of 4")?;
        expect(
            s["bad"]
                == json!([{"peer": p[4].to_string(), "index": 4, "shard": ids[4].to_string(),
                           "reason": "wrong_bytes"}]),
            "bad",
        )?;
        expect(s["unreachable"] == json!([p[5].to_string()]), "unreachable")?;
        expect(
            s["repaired"][1]
                == json!({"index": 5, "shard": ids[5].to_string(), "peer": p[7].to_string()}),
            "repaired",
        )?;
        expect(s["error"].is_null(), "error")
    }
}
