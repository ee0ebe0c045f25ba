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
//!
//! The [`Checker`] is built on the parts of [`crate::files`] (finding a file, locating
//! its holders, placement, requests to peers) and owns its own state (the last
//! self-check); the engine knows nothing of it.
//!
//! * `checker`: [`Checker`]: check, repair, the self-check pass and its timer.
//! * `inspect`: the manifest's holders; one stripe's copies, taken on the holders' word
//!   or fetched and hashed.
//! * `repair`: rebuilding and placing a stripe's missing shards; the file-wide
//!   follow-up (announcements, manifest copies, placement hint).
//! * `network`: repair by the network: the manifest holders' rounds, one responsible
//!   peer per file (the live manifest holder nearest to the file id), deferring to an
//!   owner that is about.
//! * `report`: what a check finds ([`CheckReport`], [`StripeHealth`], [`SelfCheck`], ...)
//!   and its JSON form.
//! * `error`: [`CheckError`], [`RepairError`].
//!
//! [`MANIFEST_COPIES`]: crate::files::MANIFEST_COPIES

mod audit;
mod checker;
mod error;
mod inspect;
mod lease;
mod network;
mod repair;
mod report;

pub use audit::{AuditReport, AuditScope};
pub use checker::Checker;
pub use error::{CheckError, RepairError};
pub use network::{
    DEFAULT_NETWORK_REPAIR_INTERVAL, NetworkRepairConfig, NetworkRound, nearest_holder,
};
pub use report::{
    BadCopy, BadReason, CheckReport, Health, RepairedShard, SelfCheck, StripeHealth, StripeReport,
};
