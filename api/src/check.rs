//! The report of `POST /v1/files/{id}/check`, printed unchanged by `datamesh --json check`.
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
//! kept_until         Unix seconds: the earliest lease end among the copies found (a
//!                    holder may collect its copy then unless the owner renews); null if
//!                    no holder answered, 18446744073709551615 if held without a lease
//! manifest_holders   [peer id]: live peers holding the manifest (before the repair),
//!                    nearest to the file id first
//! responsible        peer id of the nearest of them, the one whose network repair looks
//!                    after the file while its owner is away; null if none
//! before, after      {state, healthy_stripes, degraded_stripes, unrecoverable_stripes,
//!                     manifest_copies, envelope_copies} (equal when no repair)
//! envelope           null (no envelope found), or what protects the data key in the newest
//!                    envelope: {version, sequence, recipients: [{key_id (hex), kind
//!                    ("classical" | "hybrid" | "p256"), algorithms ("ecies-secp256k1" |
//!                    "ml-kem-768+ecies-secp256k1" | "ecies-p256"), post_quantum}]}
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

use serde::{Deserialize, Serialize};

/// How a stripe (or a whole file: its worst stripe) stands; ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Six healthy shards on six distinct live peers.
    Healthy,
    /// Readable (at least four healthy shards) but below full health.
    Degraded,
    /// Fewer than four healthy shards: the stripe cannot be read or rebuilt.
    Unrecoverable,
}

impl Health {
    /// `healthy`, `degraded` or `unrecoverable`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unrecoverable => "unrecoverable",
        }
    }
}

/// Why a copy of a shard was counted bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadReason {
    /// The peer served bytes that do not hash to the shard's id.
    WrongBytes,
    /// The peer reports its stored copy corrupt (bit rot, a torn write).
    Corrupt,
    /// The peer said it holds the shard, then did not have it.
    Missing,
}

impl BadReason {
    /// `wrong_bytes`, `corrupt` or `missing`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongBytes => "wrong_bytes",
            Self::Corrupt => "corrupt",
            Self::Missing => "missing",
        }
    }
}

/// The whole file's stripes at one moment (before or after the repair).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSummary {
    /// The worst stripe.
    pub state: Health,
    /// Stripes at full health.
    pub healthy_stripes: usize,
    /// Stripes readable but below full health.
    pub degraded_stripes: usize,
    /// Stripes that cannot be read.
    pub unrecoverable_stripes: usize,
    /// Live peers holding the manifest.
    pub manifest_copies: usize,
    /// Manifest holders holding the file's newest key envelope (the data key lives only
    /// there).
    pub envelope_copies: usize,
}

/// One stripe's counts before the repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeCounts {
    /// Shards (of 6) with an intact copy on a live peer.
    pub healthy: usize,
    /// Distinct live peers holding distinct healthy shards.
    pub peers: usize,
    /// What the counts mean.
    pub state: Health,
}

/// A bad copy and who holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadCopy {
    /// The holder's peer id.
    pub peer: String,
    /// Shard index in the stripe (0..4 data, 4..6 parity).
    pub index: usize,
    /// The shard's id (hex).
    pub shard: String,
    /// What was wrong.
    pub reason: BadReason,
}

/// A shard rebuilt and placed by a repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairedShard {
    /// Shard index in the stripe.
    pub index: usize,
    /// The shard's id (hex).
    pub shard: String,
    /// Its new holder's peer id.
    pub peer: String,
}

/// One stripe, after the repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeCheck {
    /// Stripe index.
    pub stripe: u64,
    /// Shards (of 6) with an intact copy on a live peer.
    pub healthy: usize,
    /// Distinct live peers holding distinct healthy shards (6 = full health).
    pub peers: usize,
    /// What the counts mean.
    pub state: Health,
    /// The counts before the repair.
    pub before: StripeCounts,
    /// Per shard index (six lists), the live peers with a healthy copy.
    pub holders: Vec<Vec<String>>,
    /// Bad copies found.
    pub bad: Vec<BadCopy>,
    /// Peers that claimed a shard but did not answer a fetch.
    pub unreachable: Vec<String>,
    /// Shards placed by the repair.
    pub repaired: Vec<RepairedShard>,
    /// Why the repair of this stripe fell short, if it did.
    pub error: Option<String>,
}

/// What a check (and repair) found; see the module docs for the JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The file id (text form).
    pub id: String,
    /// Whether every copy was fetched and hashed.
    pub verified: bool,
    /// Whether a repair was asked for.
    pub repair: bool,
    /// The worst stripe after the repair.
    pub state: Health,
    /// Number of stripes.
    pub stripes_total: usize,
    /// Peers asked which shards they hold.
    pub peers_asked: usize,
    /// Peers that answered.
    pub peers_answered: usize,
    /// Every peer that held a bad copy, in the order found.
    pub bad_peers: Vec<String>,
    /// Shards placed by the repair.
    pub repaired_shards: usize,
    /// The earliest lease end (Unix seconds) among the copies found; `None` if no holder
    /// answered (or a node of an older build).
    #[serde(default)]
    pub kept_until: Option<u64>,
    /// What protects the data key in the newest key envelope found; `None` if none was
    /// found (or a node of an older build).
    #[serde(default)]
    pub envelope: Option<EnvelopeProtection>,
    /// Live peers holding the manifest before the repair, nearest to the file id first
    /// (empty from a node of an older build).
    #[serde(default)]
    pub manifest_holders: Vec<String>,
    /// The nearest of them: the peer responsible for the file's network repair (while the
    /// owner is away); `None` if no live peer holds the manifest (or an older build).
    #[serde(default)]
    pub responsible: Option<String>,
    /// Before the repair.
    pub before: CheckSummary,
    /// After the repair (equal to `before` when none was asked for).
    pub after: CheckSummary,
    /// Per stripe.
    pub stripes: Vec<StripeCheck>,
}

/// The algorithms that protect a file's data key: its newest key envelope's recipients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeProtection {
    /// The envelope's format version (3; 4 with a P-256 recipient; 2 for an old one).
    pub version: u8,
    /// Its sequence number.
    pub sequence: u64,
    /// One entry per wrapped copy of the data key.
    pub recipients: Vec<RecipientProtection>,
}

/// One recipient of a key envelope and how the data key is wrapped to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientProtection {
    /// The recipient's key id (hex).
    pub key_id: String,
    /// `classical`, `hybrid` or `p256`.
    pub kind: String,
    /// `ecies-secp256k1`, `ml-kem-768+ecies-secp256k1` or `ecies-p256`.
    pub algorithms: String,
    /// Whether a quantum computer that breaks elliptic curves still cannot unwrap it.
    pub post_quantum: bool,
}

/// What `POST /v1/files/{id}/audit` answers (`datamesh check --audit`): every copy found
/// challenged once (a random chunk and its BLAKE3 proof against the shard id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// The file id (text form).
    pub id: String,
    /// Copies challenged (one per shard per holder that says it holds it).
    pub challenged: u64,
    /// Copies whose proof verified.
    pub passed: u64,
    /// Copies that failed: a wrong proof, or the holder no longer had the shard.
    pub failed: Vec<AuditFailure>,
    /// Copies whose holder did not answer (or was busy).
    pub unanswered: u64,
    /// Bytes of proofs received.
    pub proof_bytes: u64,
    /// Bytes of the copies proved (what fetching them whole would have moved).
    pub shard_bytes: u64,
}

/// One copy that failed its audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFailure {
    /// The holder (peer id).
    pub peer: String,
    /// The shard id (hex).
    pub shard: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_reasons_are_their_wire_names() -> Result<(), serde_json::Error> {
        for state in [Health::Healthy, Health::Degraded, Health::Unrecoverable] {
            assert_eq!(serde_json::to_value(state)?, state.as_str());
        }
        for reason in [
            BadReason::WrongBytes,
            BadReason::Corrupt,
            BadReason::Missing,
        ] {
            assert_eq!(serde_json::to_value(reason)?, reason.as_str());
        }
        Ok(())
    }

    #[test]
    fn a_stripe_keeps_its_shape() -> Result<(), serde_json::Error> {
        let stripe = StripeCheck {
            stripe: 0,
            healthy: 5,
            peers: 5,
            state: Health::Degraded,
            before: StripeCounts {
                healthy: 5,
                peers: 5,
                state: Health::Degraded,
            },
            holders: vec![vec!["p".into()]; 6],
            bad: vec![BadCopy {
                peer: "p".into(),
                index: 2,
                shard: "ab".into(),
                reason: BadReason::Corrupt,
            }],
            unreachable: vec![],
            repaired: vec![],
            error: None,
        };
        let json = serde_json::to_value(&stripe)?;
        assert_eq!(json["before"]["state"], "degraded");
        assert_eq!(json["bad"][0]["reason"], "corrupt");
        assert!(json["error"].is_null());
        assert_eq!(serde_json::from_value::<StripeCheck>(json)?, stripe);
        Ok(())
    }
}
