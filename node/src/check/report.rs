//! What a check finds: the health of each stripe (and of the file: its worst stripe),
//! bad copies and who holds them, what a repair placed, and the outcome of a self-check
//! pass. [`CheckReport::to_api`] is the API's and the CLI's stable form.

use std::collections::{HashMap, HashSet};

use datamesh_core::{DATA_SHARDS, FileId, KeyEnvelope, ShardId, TOTAL_SHARDS};
use libp2p::PeerId;
use serde_json::Value;

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
    /// The counts of a stripe whose healthy copies are `holders` (per shard index).
    pub(crate) fn of(holders: &[Vec<PeerId>; TOTAL_SHARDS]) -> Self {
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
    /// Why the repair of this stripe did not reach full health, if it did not (the
    /// message of the repair's error, as the JSON report carries it).
    pub error: Option<String>,
}

/// What a check (and repair) found. [`CheckReport::to_json`] is the API's and the CLI's
/// stable JSON form.
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
    /// Manifest holders holding the file's newest key envelope (verified under the
    /// manifest's authority key), before and after the repair.
    pub envelope_copies: (usize, usize),
    /// Per stripe.
    pub stripes: Vec<StripeReport>,
    /// The earliest lease end (Unix seconds) among the copies found (after a renewal,
    /// when the owner's self-check renewed), `None` if no holder answered.
    pub kept_until: Option<u64>,
    /// What protects the data key in the newest envelope found (`None`: none found).
    pub envelope: Option<datamesh_api::EnvelopeProtection>,
    /// Live peers holding the manifest before the repair, nearest to the file id first:
    /// the first is the one responsible for the network repair
    /// ([`CheckReport::responsible`]).
    pub manifest_holders: Vec<PeerId>,
}

/// The algorithms of an envelope's recipients, as `check` reports them.
pub(crate) fn envelope_protection(envelope: &KeyEnvelope) -> datamesh_api::EnvelopeProtection {
    datamesh_api::EnvelopeProtection {
        version: envelope.version(),
        sequence: envelope.sequence(),
        recipients: envelope
            .wrapped()
            .iter()
            .map(|w| datamesh_api::RecipientProtection {
                key_id: w.recipient.to_string(),
                kind: w.kind.as_str().to_owned(),
                algorithms: w.kind.algorithms().to_owned(),
                post_quantum: w.kind.is_post_quantum(),
            })
            .collect(),
    }
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

    /// The live manifest holder nearest to the file id: the peer whose network repair
    /// looks after the file while its owner is away (`crate::check::network`).
    pub fn responsible(&self) -> Option<PeerId> {
        super::network::nearest_holder(&self.id, self.manifest_holders.iter().copied())
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
            envelope_copies: if after {
                self.envelope_copies.1
            } else {
                self.envelope_copies.0
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
            kept_until: self.kept_until,
            envelope: self.envelope.clone(),
            manifest_holders: strings(&self.manifest_holders),
            responsible: self.responsible().map(|p| p.to_string()),
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
pub(crate) fn matching(holders: &[Vec<PeerId>; TOTAL_SHARDS]) -> [Option<PeerId>; TOTAL_SHARDS] {
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
            envelope_copies: (2, 6),
            envelope: None,
            manifest_holders: vec![p[2], p[0]],
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
            kept_until: Some(1_700_000_000),
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
        expect(j["kept_until"] == 1_700_000_000u64, "kept_until")?;
        expect(
            j["manifest_holders"] == json!([p[2].to_string(), p[0].to_string()]),
            "manifest_holders",
        )?;
        let nearest = super::super::network::nearest_holder(&report.id, [p[0], p[2]]);
        expect(
            j["responsible"] == json!(nearest.map(|p| p.to_string())),
            "responsible",
        )?;
        expect(
            j["before"]
                == json!({"state": "degraded", "healthy_stripes": 0, "degraded_stripes": 1,
                          "unrecoverable_stripes": 0, "manifest_copies": 5,
                          "envelope_copies": 2}),
            "before",
        )?;
        expect(
            j["after"]
                == json!({"state": "healthy", "healthy_stripes": 1, "degraded_stripes": 0,
                          "unrecoverable_stripes": 0, "manifest_copies": 6,
                          "envelope_copies": 6}),
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
