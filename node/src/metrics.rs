//! Prometheus metrics of the node (`GET /metrics`, text format).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label: `(name, value)`.
pub type Label = [(&'static str, String); 1];

/// Every metric the node exports. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Shards stored for other peers (new ones).
    pub shards_stored: Counter,
    /// Shards sent to other peers.
    pub shards_served: Counter,
    /// Of those, shards read from memory and answered by the swarm task itself.
    pub shards_served_at_once: Counter,
    /// Store requests refused (full, mismatch, failure).
    pub shards_refused: Counter,
    /// Shards received that did not match their id.
    pub bad_shards_received: Counter,
    /// Stored shards found corrupt on read.
    pub corrupt_shards: Counter,
    /// Shard bytes received from peers.
    pub bytes_in: Counter,
    /// Shard bytes sent to peers.
    pub bytes_out: Counter,
    /// Completed puts.
    pub puts: Counter,
    /// Completed gets.
    pub gets: Counter,
    /// Failed puts and gets.
    pub failures: Counter,
    /// Plaintext bytes of completed puts.
    pub put_bytes: Counter,
    /// Plaintext bytes of completed gets.
    pub get_bytes: Counter,
    /// Put latency, seconds.
    pub put_seconds: Histogram,
    /// Get latency, seconds.
    pub get_seconds: Histogram,
    /// Seconds each stage of a completed put took (`stage` = keys, encode, place,
    /// publish, catalog; `files/put.rs` `StageClock`).
    pub put_stage_seconds: Family<Label, Histogram, fn() -> Histogram>,
    /// Seconds of each closest-peers lookup a placement made (a stripe's, a manifest's).
    pub placement_lookup_seconds: Histogram,
    /// DHT walks this node started, by kind (`kind` = closest_peers, providers,
    /// provide; provide_for_peer: a peer's `Announce`; census: `network/census.rs`).
    pub dht_walks: Family<Label, Counter>,
    /// Provider records kept only at home, with no walk, by reason (`reason` = census: a
    /// small network's every peer is known; busy: [`crate::network::limits::MAX_BACKGROUND_PROVIDES`]
    /// walks ran already, for a peer's `Announce`).
    pub provides_unwalked: Family<Label, Counter>,
    /// Peers in the DHT routing table (updated on status reads).
    pub dht_peers: Gauge,
    /// Shards fetched from a peer that did not match their id (a bad peer, caught).
    pub bad_shards_fetched: Counter,
    /// Verified shards this node fetched for its own gets (whole files and ranges).
    pub shards_fetched: Counter,
    /// Bytes of those shards.
    pub shard_bytes_fetched: Counter,
    /// Stripes of this node's gets read back with a data shard missing, so rebuilt from
    /// parity (Reed-Solomon's decode; data shards are fetched first).
    pub stripes_rebuilt: Counter,
    /// One-stripe files of this node opened for a read from the holders its catalog
    /// recorded, fetched at once with no round of asking them (`Files::open_to_read`).
    pub gets_from_recorded: Counter,
    /// Files of this node of several stripes opened for a whole read with their first
    /// stripe fetched from the recorded holders meanwhile (`Files::open_to_read_whole`).
    pub first_stripes_fetched_while_opening: Counter,
    /// Data keys of this node's files taken from those its keys opened before (the
    /// envelope's bytes unchanged), with no signature check or unwrap.
    pub unlocks_remembered: Counter,
    /// Shards rebuilt and placed on a new peer by a repair.
    pub repaired_shards: Counter,
    /// Files of the catalog below full health (fewer than six healthy shards on six
    /// distinct live peers in some stripe) after the last self-check.
    pub files_below_full_health: Gauge,
    /// Self-check passes over the catalog.
    pub self_checks: Counter,
    /// Shards (and manifest copies) of failed puts deleted from their holders again.
    pub put_cleanup_deleted: Counter,
    /// Deletes of a failed put's shards that failed, were refused or timed out (the
    /// shard may stay on that peer).
    pub put_cleanup_failures: Counter,
    /// Store requests puts sent (shards and manifest copies).
    pub put_stores_sent: Counter,
    /// Stripes resumed puts did not send again (an interrupted attempt had placed them).
    pub put_stripes_resumed: Counter,
    /// Key envelopes from peers not kept (unknown file, bad signature, stale, full).
    pub envelopes_refused: Counter,
    /// Owners' signed file removals honoured (`datamesh rm` reaching this holder).
    pub removals_honoured: Counter,
    /// File removals refused (bad signature or manifest, not fresh: a replay).
    pub removals_refused: Counter,
    /// Leases renewed on blobs this node holds (one per blob per renewal).
    pub leases_renewed: Counter,
    /// Claims dropped because their lease ended (collection passes).
    pub leases_expired: Counter,
    /// Blobs deleted because the last lease on them ended.
    pub lease_blobs_collected: Counter,
    /// Audit challenges this node answered with a proof.
    pub audits_answered: Counter,
    /// Audit challenges refused (a peer over its audit budget).
    pub audits_refused: Counter,
    /// Owner's orders (removals, lease renewals) refused `Busy`, before any check: the
    /// sending peer was over its order budget.
    pub orders_over_budget: Counter,
    /// Audits this node ran against holders that passed.
    pub audits_passed: Counter,
    /// Audits this node ran against holders that failed (a wrong or missing proof).
    pub audits_failed: Counter,
    /// Bytes of audit proofs this node received (chunks, siblings, lengths).
    pub audit_proof_bytes: Counter,
    /// Lease renewals refused (not the file owner's signed order, or stale).
    pub leases_refused: Counter,
    /// Bytes of the copies those proofs proved (what fetching them whole would move).
    pub audit_shard_bytes: Counter,
    /// Bytes of every copy this node's audit passes covered, challenged or passed over
    /// by the sampling of a scheduled pass: the proof bytes are its cost against these.
    pub audit_scope_bytes: Counter,
    /// Bytes of intact shards fetched by repairs to rebuild others.
    pub repair_bytes_fetched: Counter,
    /// Bytes placed on new holders by repairs (rebuilt shards and manifest copies).
    pub repair_bytes_stored: Counter,
    /// Network repair rounds run (`check/network.rs`).
    pub network_repair_rounds: Counter,
    /// Files checked (audited, repaired where needed) by this node as their responsible
    /// manifest holder.
    pub network_repair_files: Counter,
    /// Held blobs parsed as manifests to learn a file's authority key (at most once per
    /// blob, whatever the number of envelopes that name it).
    pub manifests_parsed_for_envelopes: Counter,
    /// Bytes of held blobs read for those parses.
    pub manifest_bytes_read_for_envelopes: Counter,
    /// Puts whose wrap to the owner used a key agreement made ahead (`files/ahead.rs`).
    pub put_key_agreements_ready: Counter,
    /// Shard ids looked up to answer peers' `Has` requests.
    pub has_ids_answered: Counter,
    /// Refusals sent to peers, by kind (`kind` = busy, mismatch, full, denied, invalid,
    /// failed, corrupt).
    pub refusals_sent: Family<Label, Counter>,
    /// Requests sent to peers, by kind (`kind` = store, store_manifest, put_envelope,
    /// announce, ...: `Request::kind`); requests this node serves itself are not counted.
    pub requests_sent: Family<Label, Counter>,
    /// Strikes against peers, by offence (`offence` = wrong_bytes, bad_frame, over_budget).
    pub peer_strikes: Family<Label, Counter>,
    /// Strikes each peer has now (`peer` = its id; only peers with strikes or a block).
    pub peer_strikes_now: Family<Label, Gauge>,
    /// Peers blocked for misbehaviour (each block once).
    pub peers_blocked: Counter,
    /// Peers blocked for misbehaviour now.
    pub peers_blocked_now: Gauge,
    /// Bytes of inbound requests and their answers held now (the inbound budget in use).
    pub inbound_bytes_held: Gauge,
    /// NAT traversal events, by kind (`network/nat.rs`).
    pub nat_events: Family<Label, Counter>,
    /// Reachability as AutoNAT found it: 0 unknown, 1 public, 2 private.
    pub nat_reachability: Gauge,
}

/// Buckets from 0.25 ms to about 8 s: a stage of a put, a lookup.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics registered under the `datamesh` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("datamesh");
        let m = Self {
            shards_stored: Counter::default(),
            shards_served: Counter::default(),
            shards_served_at_once: Counter::default(),
            shards_refused: Counter::default(),
            bad_shards_received: Counter::default(),
            corrupt_shards: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            puts: Counter::default(),
            gets: Counter::default(),
            failures: Counter::default(),
            put_bytes: Counter::default(),
            get_bytes: Counter::default(),
            put_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            get_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            put_stage_seconds: Family::new_with_constructor(stage_histogram),
            placement_lookup_seconds: stage_histogram(),
            dht_walks: Family::default(),
            provides_unwalked: Family::default(),
            dht_peers: Gauge::default(),
            bad_shards_fetched: Counter::default(),
            shards_fetched: Counter::default(),
            gets_from_recorded: Counter::default(),
            first_stripes_fetched_while_opening: Counter::default(),
            unlocks_remembered: Counter::default(),
            shard_bytes_fetched: Counter::default(),
            stripes_rebuilt: Counter::default(),
            repaired_shards: Counter::default(),
            files_below_full_health: Gauge::default(),
            self_checks: Counter::default(),
            put_cleanup_deleted: Counter::default(),
            put_cleanup_failures: Counter::default(),
            put_stores_sent: Counter::default(),
            put_stripes_resumed: Counter::default(),
            envelopes_refused: Counter::default(),
            removals_honoured: Counter::default(),
            removals_refused: Counter::default(),
            leases_renewed: Counter::default(),
            leases_expired: Counter::default(),
            lease_blobs_collected: Counter::default(),
            audits_answered: Counter::default(),
            audits_refused: Counter::default(),
            orders_over_budget: Counter::default(),
            audits_passed: Counter::default(),
            audits_failed: Counter::default(),
            audit_proof_bytes: Counter::default(),
            leases_refused: Counter::default(),
            audit_shard_bytes: Counter::default(),
            audit_scope_bytes: Counter::default(),
            repair_bytes_fetched: Counter::default(),
            repair_bytes_stored: Counter::default(),
            network_repair_rounds: Counter::default(),
            network_repair_files: Counter::default(),
            manifests_parsed_for_envelopes: Counter::default(),
            manifest_bytes_read_for_envelopes: Counter::default(),
            put_key_agreements_ready: Counter::default(),
            has_ids_answered: Counter::default(),
            refusals_sent: Family::default(),
            requests_sent: Family::default(),
            peer_strikes: Family::default(),
            peer_strikes_now: Family::default(),
            peers_blocked: Counter::default(),
            peers_blocked_now: Gauge::default(),
            inbound_bytes_held: Gauge::default(),
            nat_events: Family::default(),
            nat_reachability: Gauge::default(),
            registry: Registry::default(),
        };
        let reg = &mut registry;
        reg.register(
            "shards_stored",
            "Shards stored for peers",
            m.shards_stored.clone(),
        );
        reg.register(
            "shards_served",
            "Shards served to peers",
            m.shards_served.clone(),
        );
        reg.register(
            "shards_served_at_once",
            "Shards served to peers from memory by the swarm task, no thread woken",
            m.shards_served_at_once.clone(),
        );
        reg.register(
            "shards_refused",
            "Shard store requests refused",
            m.shards_refused.clone(),
        );
        reg.register(
            "bad_shards_received",
            "Shards received that did not match their id",
            m.bad_shards_received.clone(),
        );
        reg.register(
            "corrupt_shards",
            "Stored shards found corrupt on read",
            m.corrupt_shards.clone(),
        );
        reg.register(
            "shard_bytes_in",
            "Shard bytes received from peers",
            m.bytes_in.clone(),
        );
        reg.register(
            "shard_bytes_out",
            "Shard bytes sent to peers",
            m.bytes_out.clone(),
        );
        reg.register("puts", "Completed puts", m.puts.clone());
        reg.register("gets", "Completed gets", m.gets.clone());
        reg.register("failures", "Failed puts and gets", m.failures.clone());
        reg.register(
            "put_bytes",
            "Plaintext bytes of completed puts",
            m.put_bytes.clone(),
        );
        reg.register(
            "get_bytes",
            "Plaintext bytes of completed gets",
            m.get_bytes.clone(),
        );
        reg.register(
            "put_seconds",
            "Put latency in seconds",
            m.put_seconds.clone(),
        );
        reg.register(
            "get_seconds",
            "Get latency in seconds",
            m.get_seconds.clone(),
        );
        reg.register(
            "put_stage_seconds",
            "Seconds each stage of a completed put took",
            m.put_stage_seconds.clone(),
        );
        reg.register(
            "placement_lookup_seconds",
            "Seconds of each closest-peers lookup of a placement",
            m.placement_lookup_seconds.clone(),
        );
        reg.register(
            "dht_walks",
            "DHT walks started, by kind",
            m.dht_walks.clone(),
        );
        reg.register(
            "provides_unwalked",
            "Provider records kept only at home, with no walk, by reason",
            m.provides_unwalked.clone(),
        );
        reg.register(
            "dht_peers",
            "Peers in the DHT routing table",
            m.dht_peers.clone(),
        );
        reg.register(
            "bad_shards_fetched",
            "Shards fetched from peers that did not match their id",
            m.bad_shards_fetched.clone(),
        );
        reg.register(
            "gets_from_recorded",
            "One-stripe files opened from their recorded holders, fetched with no round of asking",
            m.gets_from_recorded.clone(),
        );
        reg.register(
            "first_stripes_fetched_while_opening",
            "Files of several stripes whose first stripe came while they were opened for a whole read",
            m.first_stripes_fetched_while_opening.clone(),
        );
        reg.register(
            "unlocks_remembered",
            "Data keys taken from those the node's keys opened before, with no check or unwrap",
            m.unlocks_remembered.clone(),
        );
        reg.register(
            "shards_fetched",
            "Verified shards fetched for this node's own gets",
            m.shards_fetched.clone(),
        );
        reg.register(
            "shard_bytes_fetched",
            "Bytes of verified shards fetched for this node's own gets",
            m.shard_bytes_fetched.clone(),
        );
        reg.register(
            "stripes_rebuilt",
            "Stripes of this node's gets read with a data shard missing, rebuilt from parity",
            m.stripes_rebuilt.clone(),
        );
        reg.register(
            "repaired_shards",
            "Shards rebuilt and placed on a new peer by repair",
            m.repaired_shards.clone(),
        );
        reg.register(
            "files_below_full_health",
            "Catalog files below six healthy shards on six distinct live peers at the last self-check",
            m.files_below_full_health.clone(),
        );
        reg.register(
            "self_checks",
            "Self-check passes over the catalog",
            m.self_checks.clone(),
        );
        reg.register(
            "put_cleanup_deleted",
            "Shards of failed puts deleted from their holders again",
            m.put_cleanup_deleted.clone(),
        );
        reg.register(
            "put_cleanup_failures",
            "Deletes of a failed put's shards that failed, were refused or timed out",
            m.put_cleanup_failures.clone(),
        );
        reg.register(
            "put_stores_sent",
            "Store requests puts sent (shards and manifest copies)",
            m.put_stores_sent.clone(),
        );
        reg.register(
            "put_stripes_resumed",
            "Stripes resumed puts did not send again",
            m.put_stripes_resumed.clone(),
        );
        reg.register(
            "envelopes_refused",
            "Key envelopes from peers not kept (unknown file, bad signature, stale, full)",
            m.envelopes_refused.clone(),
        );
        reg.register(
            "removals_honoured",
            "Owners' signed file removals honoured by this holder",
            m.removals_honoured.clone(),
        );
        reg.register(
            "removals_refused",
            "File removals refused (bad signature or manifest, not fresh)",
            m.removals_refused.clone(),
        );
        reg.register(
            "leases_renewed",
            "Leases renewed on blobs this node holds",
            m.leases_renewed.clone(),
        );
        reg.register(
            "leases_expired",
            "Claims dropped because their lease ended",
            m.leases_expired.clone(),
        );
        reg.register(
            "lease_blobs_collected",
            "Blobs deleted because the last lease on them ended",
            m.lease_blobs_collected.clone(),
        );
        reg.register(
            "audits_answered",
            "Audit challenges this node answered with a proof",
            m.audits_answered.clone(),
        );
        reg.register(
            "audits_refused",
            "Audit challenges refused (a peer over its audit budget)",
            m.audits_refused.clone(),
        );
        reg.register(
            "orders_over_budget",
            "Owner's orders (removals, lease renewals) refused busy: the peer was over its order budget",
            m.orders_over_budget.clone(),
        );
        reg.register(
            "audits_passed",
            "Audits this node ran against holders that passed",
            m.audits_passed.clone(),
        );
        reg.register(
            "audits_failed",
            "Audits this node ran against holders that failed",
            m.audits_failed.clone(),
        );
        reg.register(
            "leases_refused",
            "Lease renewals refused (not the file owner's signed order, or stale)",
            m.leases_refused.clone(),
        );
        reg.register(
            "audit_proof_bytes",
            "Bytes of audit proofs this node received",
            m.audit_proof_bytes.clone(),
        );
        reg.register(
            "audit_shard_bytes",
            "Bytes of the copies the audit proofs this node received proved",
            m.audit_shard_bytes.clone(),
        );
        reg.register(
            "audit_scope_bytes",
            "Bytes of every copy this node's audit passes covered (challenged or passed over by sampling)",
            m.audit_scope_bytes.clone(),
        );
        reg.register(
            "repair_bytes_fetched",
            "Bytes of intact shards fetched by repairs",
            m.repair_bytes_fetched.clone(),
        );
        reg.register(
            "repair_bytes_stored",
            "Bytes placed on new holders by repairs (rebuilt shards, manifest copies)",
            m.repair_bytes_stored.clone(),
        );
        reg.register(
            "network_repair_rounds",
            "Network repair rounds run",
            m.network_repair_rounds.clone(),
        );
        reg.register(
            "network_repair_files",
            "Files checked by this node as their responsible manifest holder",
            m.network_repair_files.clone(),
        );
        reg.register(
            "manifests_parsed_for_envelopes",
            "Held blobs parsed once to learn a file's authority key",
            m.manifests_parsed_for_envelopes.clone(),
        );
        reg.register(
            "has_ids_answered",
            "Shard ids looked up to answer peers' Has requests",
            m.has_ids_answered.clone(),
        );
        reg.register(
            "put_key_agreements_ready",
            "Puts whose wrap to the owner used a key agreement made ahead",
            m.put_key_agreements_ready.clone(),
        );
        reg.register(
            "manifest_bytes_read_for_envelopes",
            "Bytes of held blobs read to learn files' authority keys",
            m.manifest_bytes_read_for_envelopes.clone(),
        );
        reg.register(
            "nat_events",
            "NAT traversal events: relayed connections, hole punches, reservations, circuits served, shard requests over a relay",
            m.nat_events.clone(),
        );
        reg.register(
            "nat_reachability",
            "Reachability found by AutoNAT: 0 unknown, 1 public, 2 private",
            m.nat_reachability.clone(),
        );
        reg.register(
            "refusals_sent",
            "Refusals sent to peers, by kind",
            m.refusals_sent.clone(),
        );
        reg.register(
            "requests_sent",
            "Requests sent to peers, by kind",
            m.requests_sent.clone(),
        );
        reg.register(
            "peer_strikes",
            "Strikes against misbehaving peers, by offence",
            m.peer_strikes.clone(),
        );
        reg.register(
            "peer_strikes_now",
            "Strikes each peer with strikes or a block has now",
            m.peer_strikes_now.clone(),
        );
        reg.register(
            "peers_blocked",
            "Peers blocked for misbehaviour",
            m.peers_blocked.clone(),
        );
        reg.register(
            "peers_blocked_now",
            "Peers blocked for misbehaviour now",
            m.peers_blocked_now.clone(),
        );
        reg.register(
            "inbound_bytes_held",
            "Bytes of inbound requests and their answers held now",
            m.inbound_bytes_held.clone(),
        );
        Self { registry, ..m }
    }

    /// Records how long `stage` of a completed put took.
    pub fn put_stage(&self, stage: &'static str, seconds: f64) {
        self.put_stage_seconds
            .get_or_create(&[("stage", stage.to_string())])
            .observe(seconds);
    }

    /// Counts a DHT walk of `kind` started.
    pub fn dht_walk(&self, kind: &'static str) {
        self.dht_walks
            .get_or_create(&[("kind", kind.to_string())])
            .inc();
    }

    /// Counts a provider record kept only at home, for `reason`.
    pub fn provide_unwalked(&self, reason: &'static str) {
        self.provides_unwalked
            .get_or_create(&[("reason", reason.to_string())])
            .inc();
    }

    /// Counts a refusal sent to a peer.
    pub fn refusal_sent(&self, kind: &'static str) {
        self.refusals_sent
            .get_or_create(&[("kind", kind.to_string())])
            .inc();
    }

    /// Counts a request sent to a peer.
    pub fn request_sent(&self, kind: &'static str) {
        self.requests_sent
            .get_or_create(&[("kind", kind.to_string())])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
