//! Put and get: the owner's side of the node. Streams a file through the core encoder
//! and places every stripe on six distinct peers; finds a file's manifest, key envelope
//! and shards again and streams the plaintext out.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use datamesh_core::ecies::{PublicKey, SecretKey};
use datamesh_core::{
    DATA_SHARDS, DataKey, DecodeError, Decoder, EncodeError, EncodeOptions, Encoder, FileId,
    KeyEnvelope, Manifest, Metadata, ShardId, Stripe, StripeShards, TOTAL_SHARDS,
};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use libp2p::kad::KBucketKey;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::catalog::{Catalog, CatalogEntry, CatalogError, Placement};
use crate::metrics::Metrics;
use crate::network::{InboundHandler, Network, NetworkError};
use crate::protocol::{MAX_IDS, Refusal, Request, Response};
use crate::serve::Server;

/// Copies of the manifest (and key envelope) placed at put time.
pub const MANIFEST_COPIES: usize = 6;
/// Fewest manifest copies for a put to succeed: any two holders may be lost.
pub const MIN_MANIFEST_COPIES: usize = 3;
/// Longest wait, after a put failed or was cancelled, for its store requests still in
/// flight to end (the network's request timeout bounds each) before deleting what was
/// stored.
const CLEANUP_WAIT: Duration = Duration::from_secs(40);
/// Deadline of each delete sent to clean up after a failed put.
const CLEANUP_DELETE_DEADLINE: Duration = Duration::from_secs(10);
/// Deletes sent at once when cleaning up after a failed put.
const CLEANUP_DELETES: usize = 32;
/// Closest-peers lookups run at once when locating the holders of stripes that the
/// file's providers did not cover.
const LOCATE_LOOKUPS: usize = 4;

/// The keys a node uses for its files, read from its keystore when needed (so key
/// changes take effect without a restart).
pub trait KeyProvider: Send + Sync + 'static {
    /// The active file-encryption key (signs envelopes, receives the owner's wrap) and
    /// every key that may decrypt.
    ///
    /// # Errors
    /// A one-line reason if the keystore cannot be read.
    fn file_keys(&self) -> Result<FileKeys, String>;
}

/// The node's file-encryption keys.
#[derive(Debug)]
pub struct FileKeys {
    /// The active key: new files are wrapped to it and envelopes signed with it.
    pub active: SecretKey,
    /// Every key that may open a file (all live versions, the active one included).
    pub decrypt: Vec<SecretKey>,
}

/// Put and get settings.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// Stripes being placed or fetched at once.
    pub window: usize,
    /// Start fetching a spare shard when a stripe is not complete after this long.
    pub hedge_after: Duration,
    /// Give up on a stripe (and the get) after this long.
    pub stripe_deadline: Duration,
    /// Deadline of a lookup (manifest, envelope, has).
    pub lookup_deadline: Duration,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            window: 8,
            hedge_after: Duration::from_millis(1500),
            stripe_deadline: Duration::from_secs(20),
            lookup_deadline: Duration::from_secs(10),
        }
    }
}

/// A put failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// Reading or encoding the input failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Fewer than six distinct peers accepted a stripe's shards.
    #[error(
        "stripe {stripe}: only {placed} of 6 shards could be placed on distinct peers ({found} peers found): a put needs 6 reachable peers with free space"
    )]
    NotEnoughPeers {
        /// Stripe index.
        stripe: u64,
        /// Shards placed.
        placed: usize,
        /// Distinct peers found (this node included).
        found: usize,
    },
    /// Too few copies of the manifest could be stored.
    #[error("only {stored} copies of the manifest could be stored (need {MIN_MANIFEST_COPIES})")]
    ManifestCopies {
        /// Copies stored.
        stored: usize,
    },
    /// The keystore could not give the keys.
    #[error("keystore: {0}")]
    Keys(String),
    /// The network stopped or a lookup failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The catalog could not be written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// A get failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// No reachable peer has the manifest.
    #[error("file {0} not found: no reachable peer holds its manifest")]
    NotFound(FileId),
    /// None of this node's keys opens the file.
    #[error("no key of this node can open file {0}: it was not shared with this node's keys")]
    NoKey(FileId),
    /// A stripe has fewer than four reachable, intact shards.
    #[error("stripe {stripe}: only {have} of the {need} shards needed are reachable")]
    InsufficientShards {
        /// Stripe index.
        stripe: u64,
        /// Distinct intact shards reachable.
        have: usize,
        /// Shards needed.
        need: usize,
    },
    /// Decoding failed (tampered data, wrong key, ...).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The keystore could not give the keys.
    #[error("keystore: {0}")]
    Keys(String),
    /// The network stopped.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What a put did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutReport {
    /// The new file's id.
    pub id: FileId,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes.
    pub stripes: u64,
    /// Distinct peers holding shards.
    pub peers: usize,
    /// Manifest copies stored.
    pub manifest_copies: usize,
}

/// A file found and unlocked, ready to be read.
#[derive(Debug)]
pub struct OpenFile {
    /// The file id.
    pub id: FileId,
    /// The manifest.
    pub manifest: Manifest,
    /// The sealed metadata, opened.
    pub metadata: Metadata,
    key: DataKey,
    /// Per stripe, per shard index: the peers that hold it.
    holders: Vec<[Vec<PeerId>; TOTAL_SHARDS]>,
}

/// What a rewrap (or share) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrapReport {
    /// The file.
    pub id: FileId,
    /// The new envelope's sequence number.
    pub sequence: u64,
    /// Keys the data key is now wrapped to.
    pub recipients: usize,
    /// Peers that accepted the new envelope.
    pub peers: usize,
    /// Bytes sent: envelopes only, no shard moves.
    pub bytes_sent: u64,
}

/// What a finished get reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetReport {
    /// Bytes written.
    pub bytes: u64,
    /// Peers that served a shard not matching its id.
    pub bad_peers: Vec<PeerId>,
}

/// The put/get engine of a node.
#[derive(Clone)]
pub struct Files {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) net: Network,
    pub(crate) server: Arc<Server>,
    pub(crate) catalog: Catalog,
    keys: Arc<dyn KeyProvider>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: FilesConfig,
    pub(crate) last_self_check: Mutex<Option<crate::health::SelfCheck>>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What one put has stored where, so that a put that fails or is cancelled can ask every
/// holder to delete it again. Store requests of a put run as their own tasks: a put
/// dropped part-way (its caller gone) does not cancel a request already sent, the answer
/// is still recorded here, and the clean-up waits for those requests to end.
#[derive(Debug)]
pub(crate) struct PutLedger {
    state: Mutex<LedgerState>,
    /// Store requests (and the catalog write) of the put still running.
    in_flight: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct LedgerState {
    /// `(holder, id)` of every shard and manifest copy a peer accepted for this put.
    stored: Vec<(PeerId, ShardId)>,
    /// The put completed: its file is in the catalog, nothing may be deleted.
    committed: bool,
}

/// One running request of a put; ends (drops) after its answer was recorded.
struct InFlight(Arc<PutLedger>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl PutLedger {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            in_flight: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(Arc::clone(self))
    }

    fn record(&self, peer: PeerId, id: ShardId) {
        self.lock().stored.push((peer, id));
    }

    fn commit(&self) {
        self.lock().committed = true;
    }
}

/// Cleans up after a put dropped before it finished (the API client went away): on drop,
/// unless disarmed, spawns the clean-up of what the put stored.
struct PutGuard {
    files: Files,
    ledger: Arc<PutLedger>,
    armed: bool,
}

impl Drop for PutGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let files = self.files.clone();
                let ledger = Arc::clone(&self.ledger);
                runtime.spawn(async move { files.clean_up_put(ledger).await });
            }
            Err(_) => warn!("put dropped outside a runtime: its shards cannot be cleaned up"),
        }
    }
}

/// XOR-sorts `peers` by closeness to `key`, nearest first.
fn sort_by_distance(peers: &mut [PeerId], key: &[u8]) {
    let target = KBucketKey::new(key.to_vec());
    peers.sort_by_cached_key(|p| KBucketKey::from(*p).distance(&target));
}

impl Files {
    /// The engine over a running network and the node's stores.
    pub fn new(
        net: Network,
        server: Arc<Server>,
        catalog: Catalog,
        keys: Arc<dyn KeyProvider>,
        metrics: Arc<Metrics>,
        config: FilesConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                net,
                server,
                catalog,
                keys,
                metrics,
                config,
                last_self_check: Mutex::new(None),
            }),
        }
    }

    /// Sends a request to a peer, or serves it locally when the peer is this node.
    pub(crate) async fn send(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, NetworkError> {
        let inner = &self.inner;
        if peer != inner.net.peer_id() {
            return inner.net.request(peer, request).await;
        }
        if let Request::Announce { file } = request {
            return match inner.net.start_providing(file.as_bytes().to_vec()).await {
                Ok(()) | Err(NetworkError::Dht(_)) => Ok(Response::Done),
                Err(e) => Err(e),
            };
        }
        let server = Arc::clone(&inner.server);
        tokio::task::spawn_blocking(move || server.handle(peer, request))
            .await
            .map_err(|e| NetworkError::Request {
                peer,
                reason: e.into(),
            })
    }

    /// Candidate holders for `key`: the peers the DHT lookup found closest (they answered
    /// it) and this node, nearest first; then, as a fallback for a lookup that came back
    /// short (under load, with dead peers about), the routing table's other peers, also
    /// nearest first.
    async fn candidates(&self, key: &[u8]) -> Result<Vec<PeerId>, NetworkError> {
        let net = &self.inner.net;
        let (closest, known) = tokio::join!(net.closest_peers(key.to_vec()), net.peers());
        let known = known.unwrap_or_default();
        let mut peers = match closest {
            Ok(peers) => peers,
            Err(NetworkError::Dht(e)) if !known.is_empty() => {
                debug!("closest-peers lookup failed ({e}); using the routing table");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        peers.push(net.peer_id());
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        sort_by_distance(&mut peers, key);
        let mut fallback: Vec<PeerId> = known
            .into_iter()
            .map(|p| p.peer_id)
            .filter(|p| seen.insert(*p))
            .collect();
        sort_by_distance(&mut fallback, key);
        peers.extend(fallback);
        Ok(peers)
    }

    /// Sends `request` to every peer at once, each answer bounded by `deadline`; yields
    /// `(peer, answer)` as they come, `None` for a failure or a timeout.
    pub(crate) fn ask_all(
        &self,
        peers: &[PeerId],
        request: &Request,
        deadline: Duration,
    ) -> FuturesUnordered<impl Future<Output = (PeerId, Option<Response>)> + use<>> {
        peers
            .iter()
            .map(|&peer| {
                let files = self.clone();
                let request = request.clone();
                async move {
                    let answer = tokio::time::timeout(deadline, files.send(peer, request)).await;
                    (peer, answer.ok().and_then(Result::ok))
                }
            })
            .collect()
    }

    // ------------------------------------------------------------------ put

    /// Encodes `reader` and places it; `recipients` also receive the data key.
    ///
    /// # Errors
    /// See [`PutError`].
    pub async fn put<R: Read + Send + 'static>(
        &self,
        reader: R,
        name: String,
        recipients: Vec<PublicKey>,
    ) -> Result<PutReport, PutError> {
        let started = Instant::now();
        let ledger = PutLedger::new();
        let mut guard = PutGuard {
            files: self.clone(),
            ledger: Arc::clone(&ledger),
            armed: true,
        };
        let result = self.put_inner(reader, name, recipients, &ledger).await;
        guard.armed = false;
        if let Err(e) = &result {
            info!("put failed ({e}); deleting what it stored");
            // Its own task: a caller that goes away now does not stop the clean-up. Awaited
            // so that a failed put has released its peers' space when it returns (bounded
            // by CLEANUP_WAIT and the delete deadline).
            let files = self.clone();
            if let Err(e) = tokio::spawn(async move { files.clean_up_put(ledger).await }).await {
                warn!("put clean-up task failed: {e}");
            }
        }
        let metrics = &self.inner.metrics;
        match &result {
            Ok(_) => {
                metrics.puts.inc();
                metrics.put_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(_) => {
                metrics.failures.inc();
            }
        }
        result
    }

    async fn put_inner<R: Read + Send + 'static>(
        &self,
        reader: R,
        name: String,
        recipients: Vec<PublicKey>,
        ledger: &Arc<PutLedger>,
    ) -> Result<PutReport, PutError> {
        let keys = self.inner.keys.file_keys().map_err(PutError::Keys)?;
        let window = self.inner.config.window.max(1);
        let (tx, mut rx) = mpsc::channel::<Stripe>(window);
        let options = EncodeOptions::new(name.clone())
            .with_mtime(now_secs())
            .with_stripes_in_flight(window);
        let encoder = tokio::task::spawn_blocking(move || {
            let mut encoder = Encoder::new(reader, options);
            for stripe in encoder.by_ref() {
                if tx.blocking_send(stripe?).is_err() {
                    // The placing side gave up; its error is the one reported.
                    return Err(EncodeError::AlreadyFailed);
                }
            }
            encoder.finish()
        });

        let unreachable = Arc::new(Mutex::new(HashSet::new()));
        let mut placing = FuturesUnordered::new();
        let mut placements: Vec<Option<[PeerId; TOTAL_SHARDS]>> = Vec::new();
        let mut input_done = false;
        loop {
            tokio::select! {
                stripe = rx.recv(), if !input_done && placing.len() < window => match stripe {
                    Some(stripe) => {
                        let index = stripe.index();
                        placements.push(None);
                        let files = self.clone();
                        let unreachable = Arc::clone(&unreachable);
                        let ledger = Arc::clone(ledger);
                        placing.push(async move {
                            (index, files.place_stripe(stripe, &unreachable, &ledger).await)
                        });
                    }
                    None => input_done = true,
                },
                Some((index, placed)) = placing.next() => {
                    placements[index as usize] = Some(placed?);
                }
                else => break,
            }
        }
        let encoded = encoder
            .await
            .map_err(|e| EncodeError::Io(std::io::Error::other(e.to_string())))??;
        let placements: Vec<[PeerId; TOTAL_SHARDS]> = placements.into_iter().flatten().collect();
        let id = encoded.file_id;
        let manifest_bytes = encoded.manifest.to_bytes();

        // The manifest is content-addressed like a shard: its id is the file id.
        let manifest_holders = self
            .place_copies_tracked(
                id.as_bytes(),
                &Request::Store {
                    id: ShardId::from_bytes(*id.as_bytes()),
                    bytes: manifest_bytes.into(),
                },
                Some(ledger),
            )
            .await?;
        if manifest_holders.len() < MIN_MANIFEST_COPIES {
            return Err(PutError::ManifestCopies {
                stored: manifest_holders.len(),
            });
        }

        let mut wrap_to = vec![keys.active.public_key()];
        wrap_to.extend(recipients);
        let envelope = KeyEnvelope::seal(id, 1, &encoded.data_key, &wrap_to, &keys.active)
            .map_err(|e| PutError::Keys(e.to_string()))?;
        self.publish_envelope(&envelope, &manifest_holders).await;

        let mut holders: HashSet<PeerId> = placements.iter().flatten().copied().collect();
        holders.extend(manifest_holders.iter().copied());
        let announced = self.announce(id, &holders).await;
        debug!(file = %id, announced, holders = holders.len(), "announced");

        let entry = CatalogEntry {
            id,
            name: encoded.metadata.name.clone(),
            size: encoded.metadata.size,
            stripes: encoded.manifest.stripe_count(),
            created: now_secs(),
            shared_with: wrap_to[1..].iter().map(ToString::to_string).collect(),
            envelope_sequence: 1,
        };
        let catalog = self.inner.catalog.clone();
        let placement = Placement::from_stripes(&placements);
        let manifest = encoded.manifest.clone();
        // Counted as in flight, and marks the put committed once written: a put dropped
        // while the catalog is being written is cleaned up only if the write failed.
        let writing = ledger.begin();
        let committed = Arc::clone(ledger);
        tokio::task::spawn_blocking(move || {
            let added = catalog.add(&entry, &manifest, &placement);
            if added.is_ok() {
                committed.commit();
            }
            drop(writing);
            added
        })
        .await
        .map_err(CatalogError::from)??;
        info!(file = %id, size = encoded.metadata.size, "put complete");
        Ok(PutReport {
            id,
            size: encoded.metadata.size,
            stripes: encoded.manifest.stripe_count(),
            peers: holders.len(),
            manifest_copies: manifest_holders.len(),
        })
    }

    /// Places the six shards of one stripe on six distinct peers, nearest to the stripe's
    /// key (its first shard id) first; a peer that fails or refuses is replaced by the
    /// next nearest.
    async fn place_stripe(
        &self,
        stripe: Stripe,
        unreachable: &Mutex<HashSet<PeerId>>,
        ledger: &Arc<PutLedger>,
    ) -> Result<[PeerId; TOTAL_SHARDS], PutError> {
        let index = stripe.index();
        let ids = *stripe.ids();
        let shards: Vec<(ShardId, Bytes)> = ids
            .into_iter()
            .zip(stripe.into_shards().map(Bytes::from))
            .collect();
        let (placed, found) = self
            .place_shards_tracked(
                ids[0].as_bytes(),
                shards,
                &HashSet::new(),
                unreachable,
                Some(ledger),
            )
            .await?;
        let placed_count = placed.iter().flatten().count();
        match placed[..] {
            [Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)] => Ok([a, b, c, d, e, f]),
            _ => Err(PutError::NotEnoughPeers {
                stripe: index,
                placed: placed_count,
                found,
            }),
        }
    }

    /// Places each of `shards` on its own peer, nearest to `key` first, never on a peer of
    /// `exclude`; a peer that fails or refuses is replaced by the next nearest. Used by
    /// put (a whole stripe, `key` its first shard id) and by repair (the missing shards of
    /// a stripe, away from its remaining holders). Returns, per shard, the peer that
    /// stored it (`None` if candidates ran out) and how many candidates there were.
    pub(crate) async fn place_shards(
        &self,
        key: &[u8],
        shards: Vec<(ShardId, Bytes)>,
        exclude: &HashSet<PeerId>,
        unreachable: &Mutex<HashSet<PeerId>>,
    ) -> Result<(Vec<Option<PeerId>>, usize), NetworkError> {
        self.place_shards_tracked(key, shards, exclude, unreachable, None)
            .await
    }

    /// [`Self::place_shards`], recording every shard stored in `ledger` (a put's).
    async fn place_shards_tracked(
        &self,
        key: &[u8],
        shards: Vec<(ShardId, Bytes)>,
        exclude: &HashSet<PeerId>,
        unreachable: &Mutex<HashSet<PeerId>>,
        ledger: Option<&Arc<PutLedger>>,
    ) -> Result<(Vec<Option<PeerId>>, usize), NetworkError> {
        let mut candidates = self.candidates(key).await?;
        let found = candidates.len();
        candidates.retain(|p| !exclude.contains(p));
        {
            // Peers that already failed during this put go last, not first.
            let bad = unreachable.lock().unwrap_or_else(|p| p.into_inner());
            candidates.sort_by_key(|p| bad.contains(p));
        }
        let mut next = 0usize;
        let mut placed: Vec<Option<PeerId>> = vec![None; shards.len()];
        let mut attempts = FuturesUnordered::new();
        let launch = |shard: usize, peer: PeerId| {
            let (id, bytes) = &shards[shard];
            // A new handle on the same buffer: no copy of the shard per attempt.
            let request = Request::Store {
                id: *id,
                bytes: bytes.clone(),
            };
            let files = self.clone();
            let ledger = ledger.cloned();
            async move {
                (
                    shard,
                    peer,
                    files.send_maybe_tracked(peer, request, ledger).await,
                )
            }
        };
        for shard in 0..shards.len() {
            let Some(&peer) = candidates.get(next) else {
                break;
            };
            next += 1;
            attempts.push(launch(shard, peer));
        }
        while let Some((shard, peer, result)) = attempts.next().await {
            match result {
                Ok(Response::Stored | Response::AlreadyHeld) => placed[shard] = Some(peer),
                other => {
                    match &other {
                        Ok(Response::Refused(Refusal::Full { used, max })) => {
                            info!(%peer, used, max, "peer is full; placing elsewhere");
                        }
                        Ok(response) => warn!(%peer, ?response, "peer refused a shard"),
                        Err(e) => {
                            warn!(%peer, "storing a shard failed: {e}");
                            unreachable
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(peer);
                        }
                    }
                    if let Some(&replacement) = candidates.get(next) {
                        next += 1;
                        attempts.push(launch(shard, replacement));
                    }
                }
            }
        }
        Ok((placed, found))
    }

    /// Stores one blob on up to [`MANIFEST_COPIES`] distinct peers nearest to `key`.
    pub(crate) async fn place_copies(
        &self,
        key: &[u8],
        request: &Request,
    ) -> Result<Vec<PeerId>, PutError> {
        self.place_copies_tracked(key, request, None).await
    }

    /// [`Self::place_copies`], recording every copy stored in `ledger` (a put's).
    async fn place_copies_tracked(
        &self,
        key: &[u8],
        request: &Request,
        ledger: Option<&Arc<PutLedger>>,
    ) -> Result<Vec<PeerId>, PutError> {
        let candidates = self.candidates(key).await?;
        let mut stored = Vec::new();
        for chunk in candidates.chunks(MANIFEST_COPIES) {
            let need = MANIFEST_COPIES - stored.len();
            let mut attempts: FuturesUnordered<_> = chunk
                .iter()
                .take(need)
                .map(|&peer| {
                    let files = self.clone();
                    let request = request.clone();
                    let ledger = ledger.cloned();
                    async move { (peer, files.send_maybe_tracked(peer, request, ledger).await) }
                })
                .collect();
            while let Some((peer, result)) = attempts.next().await {
                match result {
                    Ok(Response::Stored | Response::AlreadyHeld) => stored.push(peer),
                    other => warn!(%peer, ?other, "manifest copy not stored"),
                }
            }
            if stored.len() >= MANIFEST_COPIES {
                break;
            }
        }
        Ok(stored)
    }

    /// Sends `request` (a store) and, with a put's `ledger`, runs it as its own task that
    /// records an accepted shard in the ledger: the request finishes and is recorded
    /// even if the put is dropped meanwhile.
    async fn send_maybe_tracked(
        &self,
        peer: PeerId,
        request: Request,
        ledger: Option<Arc<PutLedger>>,
    ) -> Result<Response, NetworkError> {
        let Some(ledger) = ledger else {
            return self.send(peer, request).await;
        };
        let stored_id = match &request {
            Request::Store { id, .. } => Some(*id),
            _ => None,
        };
        let running = ledger.begin();
        let files = self.clone();
        tokio::spawn(async move {
            let result = files.send(peer, request).await;
            if let (Some(id), Ok(Response::Stored | Response::AlreadyHeld)) = (stored_id, &result) {
                ledger.record(peer, id);
            }
            drop(running);
            result
        })
        .await
        .map_err(|e| NetworkError::Request {
            peer,
            reason: e.into(),
        })?
    }

    /// After a put failed or was cancelled: waits (bounded) for its requests still
    /// running, then asks every peer that accepted a shard or manifest copy for it to
    /// delete it, concurrently, each delete bounded in time. A delete only withdraws this
    /// node's claim: a shard another owner also stored stays for them. Failures are
    /// logged and counted (`put_cleanup_failures`), never returned. Nothing is deleted
    /// if the put completed after all.
    async fn clean_up_put(&self, ledger: Arc<PutLedger>) {
        let mut running = ledger.in_flight.subscribe();
        if tokio::time::timeout(CLEANUP_WAIT, running.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            warn!(
                "requests of a failed put still running after {CLEANUP_WAIT:?}; cleaning up what is known"
            );
        }
        let stored = {
            let mut state = ledger.lock();
            if state.committed {
                return;
            }
            std::mem::take(&mut state.stored)
        };
        let mut seen = HashSet::new();
        let stored: Vec<(PeerId, ShardId)> = stored
            .into_iter()
            .filter(|held| seen.insert(*held))
            .collect();
        if stored.is_empty() {
            return;
        }
        let metrics = Arc::clone(&self.inner.metrics);
        let (deleted, failed) = futures::stream::iter(stored)
            .map(|(peer, id)| {
                let files = self.clone();
                async move {
                    let answer = tokio::time::timeout(
                        CLEANUP_DELETE_DEADLINE,
                        files.send(peer, Request::Delete { id }),
                    )
                    .await;
                    (peer, id, answer)
                }
            })
            .buffer_unordered(CLEANUP_DELETES)
            .fold((0u64, 0u64), |(deleted, failed), (peer, id, answer)| {
                let metrics = Arc::clone(&metrics);
                async move {
                    match answer {
                        Ok(Ok(Response::Done)) => {
                            metrics.put_cleanup_deleted.inc();
                            (deleted + 1, failed)
                        }
                        other => {
                            let why = match other {
                                Ok(Ok(response)) => format!("{response:?}"),
                                Ok(Err(e)) => e.to_string(),
                                Err(_) => format!("no answer within {CLEANUP_DELETE_DEADLINE:?}"),
                            };
                            warn!(%peer, shard = %id.short(), "could not delete a failed put's shard: {why}");
                            metrics.put_cleanup_failures.inc();
                            (deleted, failed + 1)
                        }
                    }
                }
            })
            .await;
        info!(deleted, failed, "cleaned up after a failed put");
    }

    /// Sends a key envelope to `peers` (and keeps it locally). Returns how many took it.
    async fn publish_envelope(&self, envelope: &KeyEnvelope, peers: &[PeerId]) -> usize {
        self.publish_envelope_bytes(envelope.to_bytes(), peers)
            .await
    }

    /// Sends a key envelope's wire form to `peers` and this node. Returns how many took
    /// it. Envelopes are signed and opaque: no key is needed to pass one on.
    pub(crate) async fn publish_envelope_bytes(&self, bytes: Vec<u8>, peers: &[PeerId]) -> usize {
        let request = Request::PutEnvelope { bytes };
        let mut targets: Vec<PeerId> = peers.to_vec();
        if !targets.contains(&self.inner.net.peer_id()) {
            targets.push(self.inner.net.peer_id());
        }
        let results: Vec<_> = targets
            .iter()
            .map(|&peer| {
                let files = self.clone();
                let request = request.clone();
                async move { files.send(peer, request).await }
            })
            .collect::<FuturesUnordered<_>>()
            .collect()
            .await;
        results
            .iter()
            .filter(|r| matches!(r, Ok(Response::Done)))
            .count()
    }

    /// Asks every holder to announce the file in the DHT. Returns how many agreed.
    pub(crate) async fn announce(&self, id: FileId, holders: &HashSet<PeerId>) -> usize {
        let results: Vec<_> = holders
            .iter()
            .map(|&peer| {
                let files = self.clone();
                async move { files.send(peer, Request::Announce { file: id }).await }
            })
            .collect::<FuturesUnordered<_>>()
            .collect()
            .await;
        results
            .iter()
            .filter(|r| matches!(r, Ok(Response::Done)))
            .count()
    }

    // ------------------------------------------------------------------ get

    /// Finds a file, unlocks its data key and locates its shards. Fails fast, before a
    /// byte is streamed, if a stripe cannot be read.
    ///
    /// # Errors
    /// See [`GetError`].
    pub async fn open(&self, id: FileId) -> Result<OpenFile, GetError> {
        let (placement, peers, manifest) = self.find(id).await?;
        let (key, metadata) = self.unlock(id, &manifest, &peers).await?;
        let (holders, _) = self.locate(&manifest, &peers, placement.as_ref()).await;
        for (stripe, row) in holders.iter().enumerate() {
            let have = row.iter().filter(|h| !h.is_empty()).count();
            if have < DATA_SHARDS {
                return Err(GetError::InsufficientShards {
                    stripe: stripe as u64,
                    have,
                    need: DATA_SHARDS,
                });
            }
        }
        Ok(OpenFile {
            id,
            manifest,
            metadata,
            key,
            holders,
        })
    }

    /// A file's manifest, from the catalog, this node's store or the network. Needs no
    /// key: the manifest is checked against the file id, which is its hash.
    ///
    /// # Errors
    /// [`GetError::NotFound`] or [`GetError::Catalog`].
    pub async fn manifest_of(&self, id: FileId) -> Result<Manifest, GetError> {
        Ok(self.find(id).await?.2)
    }

    /// The placement recorded at put time (for this node's files), the peers that may
    /// hold something of the file, and its manifest (from the catalog or those peers).
    ///
    /// # Errors
    /// [`GetError::NotFound`] or [`GetError::Catalog`].
    pub(crate) async fn find(
        &self,
        id: FileId,
    ) -> Result<(Option<Placement>, Vec<PeerId>, Manifest), GetError> {
        let inner = &self.inner;
        let placement = inner.catalog.placement(&id)?;
        let mut peers = self.file_peers(id, placement.as_ref()).await;
        let manifest = match inner.catalog.manifest(&id)? {
            Some(m) => m,
            None => match self.fetch_manifest(id, &peers).await {
                Ok(m) => m,
                Err(GetError::NotFound(_)) => {
                    // No provider holds it (yet: announcements may still be walking the
                    // DHT). The put placed the manifest on the peers closest to the
                    // file id: ask those.
                    let closest = tokio::time::timeout(
                        inner.config.lookup_deadline,
                        inner.net.closest_peers(id.as_bytes().to_vec()),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                    let extra: Vec<PeerId> =
                        closest.into_iter().filter(|p| !peers.contains(p)).collect();
                    let manifest = self.fetch_manifest(id, &extra).await?;
                    peers.extend(extra);
                    manifest
                }
                Err(e) => return Err(e),
            },
        };
        Ok((placement, peers, manifest))
    }

    /// Peers that may hold something of a file: its DHT providers, the placement
    /// recorded at put time, and this node.
    async fn file_peers(&self, id: FileId, placement: Option<&Placement>) -> Vec<PeerId> {
        let inner = &self.inner;
        let deadline = inner.config.lookup_deadline;
        let mut peers: Vec<PeerId> =
            tokio::time::timeout(deadline, inner.net.providers(id.as_bytes().to_vec()))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|p| p.into_iter().collect())
                .unwrap_or_default();
        if let Some(p) = placement {
            peers.extend(p.peers());
        }
        peers.push(inner.net.peer_id());
        let mut seen = HashSet::new();
        peers.retain(|p| seen.insert(*p));
        peers
    }

    /// Re-wraps the data key of one of this node's files to the active file-encryption
    /// key (and every key it is shared with, plus `add`), and publishes the new envelope
    /// to every peer holding the file. No shard moves: only the envelope travels.
    ///
    /// # Errors
    /// [`GetError::NotFound`] if the file is not in this node's catalog, [`GetError::NoKey`]
    /// if no live key opens its current envelope.
    pub async fn rewrap(&self, id: FileId, add: Vec<PublicKey>) -> Result<RewrapReport, GetError> {
        let inner = &self.inner;
        let keys = inner.keys.file_keys().map_err(GetError::Keys)?;
        let (Some(mut entry), Some(manifest)) =
            (inner.catalog.get(&id)?, inner.catalog.manifest(&id)?)
        else {
            return Err(GetError::NotFound(id));
        };
        let placement = inner.catalog.placement(&id)?;
        let peers = self.file_peers(id, placement.as_ref()).await;
        let (key, _) = self.unlock(id, &manifest, &peers).await?;
        for pk in add {
            let hex = pk.to_string();
            if !entry.shared_with.contains(&hex) {
                entry.shared_with.push(hex);
            }
        }
        let mut recipients = vec![keys.active.public_key()];
        recipients.extend(
            entry
                .shared_with
                .iter()
                .filter_map(|h| h.parse::<PublicKey>().ok()),
        );
        entry.envelope_sequence += 1;
        let envelope =
            KeyEnvelope::seal(id, entry.envelope_sequence, &key, &recipients, &keys.active)
                .map_err(|e| GetError::Keys(e.to_string()))?;
        let accepted = self.publish_envelope(&envelope, &peers).await;
        let catalog = inner.catalog.clone();
        let saved = entry.clone();
        tokio::task::spawn_blocking(move || catalog.update(&saved))
            .await
            .map_err(CatalogError::from)??;
        let remote = peers.iter().filter(|p| **p != inner.net.peer_id()).count();
        Ok(RewrapReport {
            id,
            sequence: entry.envelope_sequence,
            recipients: envelope.wrapped().len(),
            peers: accepted,
            bytes_sent: (envelope.to_bytes().len() * remote) as u64,
        })
    }

    async fn fetch_manifest(&self, id: FileId, peers: &[PeerId]) -> Result<Manifest, GetError> {
        let blob = ShardId::from_bytes(*id.as_bytes());
        let deadline = self.inner.config.lookup_deadline;
        let mut attempts = self.ask_all(peers, &Request::Fetch { id: blob }, deadline);
        while let Some((_, answer)) = attempts.next().await {
            if let Some(Response::Blob(bytes)) = answer
                && FileId::of_manifest(&bytes) == id
                && let Ok(manifest) = Manifest::from_bytes(&bytes)
            {
                return Ok(manifest);
            }
        }
        Err(GetError::NotFound(id))
    }

    /// Finds an envelope that one of this node's keys opens, and checks the key against
    /// the manifest's sealed metadata.
    async fn unlock(
        &self,
        id: FileId,
        manifest: &Manifest,
        peers: &[PeerId],
    ) -> Result<(DataKey, Metadata), GetError> {
        let keys = self.inner.keys.file_keys().map_err(GetError::Keys)?;
        let deadline = self.inner.config.lookup_deadline;
        let mut raw: Vec<Vec<u8>> = self.inner.server.envelopes(id.as_bytes());
        let try_open = |raw: &[Vec<u8>]| {
            raw.iter().find_map(|bytes| {
                let envelope = KeyEnvelope::from_bytes(bytes).ok()?;
                if envelope.file_id() != id {
                    return None;
                }
                let key = envelope.open(&keys.decrypt).ok()?;
                let metadata = manifest.open_metadata(&key)?;
                Some((key, metadata))
            })
        };
        if let Some(found) = try_open(&raw) {
            return Ok(found);
        }
        let mut asks = self.ask_all(peers, &Request::GetEnvelope { file: id }, deadline);
        while let Some((_, answer)) = asks.next().await {
            if let Some(Response::Envelopes(list)) = answer {
                raw = list;
                if let Some(found) = try_open(&raw) {
                    return Ok(found);
                }
            }
        }
        Err(GetError::NoKey(id))
    }

    /// Asks every candidate peer which of the file's shards it holds. Returns, per stripe
    /// and shard index, the peers that say they hold it, and the peers that answered.
    ///
    /// The candidates come from the file's DHT providers, which can miss a stripe's
    /// holders: a put returns while the holders' provider announcements are still
    /// walking the DHT, and a node keeps at most 20 providers per key. So a stripe with
    /// fewer than [`DATA_SHARDS`] holders found is looked up where the put placed it:
    /// the peers closest to the stripe's key (its first shard id), asked in turn.
    pub(crate) async fn locate(
        &self,
        manifest: &Manifest,
        peers: &[PeerId],
        placement: Option<&Placement>,
    ) -> (Vec<[Vec<PeerId>; TOTAL_SHARDS]>, HashSet<PeerId>) {
        let stripes = manifest.stripes();
        let mut holders: Vec<[Vec<PeerId>; TOTAL_SHARDS]> =
            (0..stripes.len()).map(|_| Default::default()).collect();
        let ids: Vec<ShardId> = stripes.iter().flatten().copied().collect();
        let mut asked: HashSet<PeerId> = peers.iter().copied().collect();
        let mut answered = HashSet::new();
        self.ask_has(peers, &ids, &mut holders, &mut answered).await;

        // The fallback: the closest peers of each short stripe's key, a few lookups at a
        // time, each bounded by the lookup deadline.
        let short: Vec<ShardId> = stripes
            .iter()
            .zip(&holders)
            .filter(|(_, row)| row.iter().filter(|h| !h.is_empty()).count() < DATA_SHARDS)
            .map(|(ids, _)| ids[0])
            .collect();
        if !short.is_empty() {
            let deadline = self.inner.config.lookup_deadline;
            let net = self.inner.net.clone();
            let found: Vec<PeerId> = futures::stream::iter(short.iter().copied())
                .map(|key| {
                    let net = net.clone();
                    async move {
                        tokio::time::timeout(deadline, net.closest_peers(key.as_bytes().to_vec()))
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or_default()
                    }
                })
                .buffer_unordered(LOCATE_LOOKUPS)
                .flat_map(futures::stream::iter)
                .collect()
                .await;
            let extra: Vec<PeerId> = found.into_iter().filter(|p| asked.insert(*p)).collect();
            debug!(
                stripes = short.len(),
                peers = extra.len(),
                "stripes short of holders: asking the peers closest to their keys"
            );
            self.ask_has(&extra, &ids, &mut holders, &mut answered)
                .await;
        }

        // Put the peer the placement names first: it is the one we expect to be fastest
        // to answer (and the only one, usually).
        if let Some(placement) = placement {
            for (stripe, row) in holders.iter_mut().enumerate() {
                for (index, list) in row.iter_mut().enumerate() {
                    if let Some(p) = placement.holder(stripe as u64, index)
                        && let Some(pos) = list.iter().position(|q| *q == p)
                    {
                        list.swap(0, pos);
                    }
                }
            }
        }
        (holders, answered)
    }

    /// Asks `peers` which of `ids` (every shard of a file, stripe by stripe) they hold;
    /// adds each holder to `holders` and each peer that answered to `answered`.
    async fn ask_has(
        &self,
        peers: &[PeerId],
        ids: &[ShardId],
        holders: &mut [[Vec<PeerId>; TOTAL_SHARDS]],
        answered: &mut HashSet<PeerId>,
    ) {
        let deadline = self.inner.config.lookup_deadline;
        let ids: Arc<[ShardId]> = ids.into();
        let mut asks: FuturesUnordered<_> = peers
            .iter()
            .map(|&peer| {
                let files = self.clone();
                let ids = Arc::clone(&ids);
                async move {
                    let mut flags = Vec::with_capacity(ids.len());
                    for batch in ids.chunks(MAX_IDS) {
                        let request = Request::Has {
                            ids: batch.to_vec(),
                        };
                        match tokio::time::timeout(deadline, files.send(peer, request)).await {
                            Ok(Ok(Response::Has(f))) if f.len() == batch.len() => flags.extend(f),
                            _ => return (peer, None),
                        }
                    }
                    (peer, Some(flags))
                }
            })
            .collect();
        while let Some((peer, flags)) = asks.next().await {
            let Some(flags) = flags else {
                debug!(%peer, "peer did not answer which shards it holds");
                continue;
            };
            answered.insert(peer);
            for (i, _) in flags.iter().enumerate().filter(|(_, has)| **has) {
                let list = &mut holders[i / TOTAL_SHARDS][i % TOTAL_SHARDS];
                if !list.contains(&peer) {
                    list.push(peer);
                }
            }
        }
    }

    /// Streams an opened file into `out`.
    ///
    /// # Errors
    /// [`GetError::InsufficientShards`] if a stripe cannot be completed before its
    /// deadline; [`GetError::Decode`] for tampered data or a write failure.
    pub async fn read<W: Write + Send + 'static>(
        &self,
        file: OpenFile,
        out: W,
    ) -> Result<GetReport, GetError> {
        let started = Instant::now();
        let result = self.read_inner(file, out).await;
        let metrics = &self.inner.metrics;
        match &result {
            Ok(_) => {
                metrics.gets.inc();
                metrics.get_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(_) => {
                metrics.failures.inc();
            }
        }
        result
    }

    async fn read_inner<W: Write + Send + 'static>(
        &self,
        file: OpenFile,
        mut out: W,
    ) -> Result<GetReport, GetError> {
        let window = self.inner.config.window.max(1);
        let OpenFile {
            manifest,
            key,
            holders,
            ..
        } = file;
        let mut decoder = Decoder::new(manifest.clone(), &key)?.with_stripes_in_flight(window);
        let (tx, mut rx) = mpsc::channel::<(u64, StripeShards)>(window);
        let writer = tokio::task::spawn_blocking(move || -> Result<u64, DecodeError> {
            let mut counting = CountingWriter {
                inner: &mut out,
                bytes: 0,
            };
            while let Some((index, shards)) = rx.blocking_recv() {
                decoder.push(index, shards, &mut counting)?;
            }
            decoder.finish(&mut counting)?;
            counting.flush()?;
            Ok(counting.bytes)
        });

        let slow = Arc::new(Mutex::new(HashSet::new()));
        let bad_peers = Arc::new(Mutex::new(Vec::new()));
        let manifest = Arc::new(manifest);
        let holders = Arc::new(holders);
        let mut fetches = futures::stream::iter(0..manifest.stripe_count())
            .map(|stripe| {
                let files = self.clone();
                let (manifest, holders) = (Arc::clone(&manifest), Arc::clone(&holders));
                let (slow, bad_peers) = (Arc::clone(&slow), Arc::clone(&bad_peers));
                async move {
                    let shards = files
                        .fetch_stripe(&manifest, &holders, stripe, &slow, &bad_peers)
                        .await?;
                    Ok::<_, GetError>((stripe, shards))
                }
            })
            .buffered(window);
        let mut failure = None;
        while let Some(result) = fetches.next().await {
            match result {
                Ok(item) => {
                    if tx.send(item).await.is_err() {
                        break; // the decoder failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| DecodeError::Io(std::io::Error::other(e.to_string())));
        if let Some(e) = failure {
            return Err(e);
        }
        let bytes = written??;
        let bad_peers = bad_peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(GetReport { bytes, bad_peers })
    }

    /// Fetches four verified shards of one stripe: data shards first, from the holders
    /// not known to be slow; a failure, a wrong shard or a delay starts another fetch.
    async fn fetch_stripe(
        &self,
        manifest: &Manifest,
        holders: &[[Vec<PeerId>; TOTAL_SHARDS]],
        stripe: u64,
        slow: &Mutex<HashSet<PeerId>>,
        bad_peers: &Mutex<Vec<PeerId>>,
    ) -> Result<StripeShards, GetError> {
        let ids = manifest.stripes()[stripe as usize];
        let row = &holders[stripe as usize];
        // Every (shard, holder) option, data shards first, slow holders last.
        let mut options: Vec<(usize, PeerId)> = Vec::new();
        {
            let slow = slow.lock().unwrap_or_else(|p| p.into_inner());
            for pass in [false, true] {
                for (index, list) in row.iter().enumerate() {
                    for peer in list {
                        if slow.contains(peer) == pass {
                            options.push((index, *peer));
                        }
                    }
                }
            }
            // Stable: within each pass, data before parity, first holder first.
            options.sort_by_key(|(index, peer)| (slow.contains(peer), *index >= DATA_SHARDS));
        }
        let mut shards: StripeShards = Default::default();
        let mut have = 0usize;
        let mut in_flight: HashMap<usize, usize> = HashMap::new();
        let mut next = 0usize;
        let mut fetches = FuturesUnordered::new();
        let fetch = |index: usize, peer: PeerId| {
            let files = self.clone();
            let id = ids[index];
            async move {
                let started = Instant::now();
                let result = files.send(peer, Request::Fetch { id }).await;
                (index, peer, started.elapsed(), result)
            }
        };
        let deadline = tokio::time::sleep(self.inner.config.stripe_deadline);
        tokio::pin!(deadline);
        let mut hedge = tokio::time::interval(self.inner.config.hedge_after);
        hedge.tick().await;

        // Start as many fetches as shards still needed, skipping shards already held or
        // being fetched.
        let mut launch = |want: usize,
                          shards: &StripeShards,
                          in_flight: &mut HashMap<usize, usize>,
                          fetches: &mut FuturesUnordered<_>| {
            let mut started = 0;
            while started < want && next < options.len() {
                let (index, peer) = options[next];
                next += 1;
                if shards[index].is_some() || in_flight.get(&index).copied().unwrap_or(0) > 0 {
                    continue;
                }
                *in_flight.entry(index).or_default() += 1;
                fetches.push(fetch(index, peer));
                started += 1;
            }
            started
        };
        launch(DATA_SHARDS, &shards, &mut in_flight, &mut fetches);
        while have < DATA_SHARDS {
            tokio::select! {
                Some((index, peer, took, result)) = fetches.next() => {
                    if let Some(n) = in_flight.get_mut(&index) {
                        *n = n.saturating_sub(1);
                    }
                    match result {
                        Ok(Response::Blob(bytes)) if ShardId::of(&bytes) == ids[index] => {
                            if shards[index].is_none() {
                                shards[index] = Some(bytes);
                                have += 1;
                            }
                            if took > self.inner.config.hedge_after {
                                slow.lock().unwrap_or_else(|p| p.into_inner()).insert(peer);
                            }
                            continue;
                        }
                        Ok(Response::Blob(_)) => {
                            warn!(%peer, stripe, index, "peer served a shard that does not match its id; fetching it elsewhere");
                            self.inner.metrics.bad_shards_fetched.inc();
                            bad_peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                        }
                        Ok(other) => debug!(%peer, stripe, index, ?other, "shard not served"),
                        Err(e) => {
                            debug!(%peer, stripe, index, "fetch failed: {e}");
                            slow.lock().unwrap_or_else(|p| p.into_inner()).insert(peer);
                        }
                    }
                    let started = launch(1, &shards, &mut in_flight, &mut fetches);
                    if started == 0 && fetches.is_empty() {
                        break;
                    }
                }
                _ = hedge.tick() => {
                    // Still short: ask one more holder, without cancelling the others.
                    launch(1, &shards, &mut in_flight, &mut fetches);
                }
                () = &mut deadline => break,
            }
        }
        if have < DATA_SHARDS {
            return Err(GetError::InsufficientShards {
                stripe,
                have,
                need: DATA_SHARDS,
            });
        }
        Ok(shards)
    }

    /// For every file of the catalog, the ids of this node's live file-encryption keys
    /// that really open it (the wrapped key decrypts and opens the manifest's sealed
    /// metadata), so `keys destroy` can refuse to destroy the last key of a file.
    ///
    /// # Errors
    /// [`GetError::Keys`] or [`GetError::Catalog`].
    pub fn key_usage(&self) -> Result<Vec<(FileId, Vec<datamesh_core::KeyId>)>, GetError> {
        let keys = self.inner.keys.file_keys().map_err(GetError::Keys)?;
        let mut out = Vec::new();
        for entry in self.inner.catalog.list()? {
            let Some(manifest) = self.inner.catalog.manifest(&entry.id)? else {
                continue;
            };
            let envelopes: Vec<KeyEnvelope> = self
                .inner
                .server
                .envelopes(entry.id.as_bytes())
                .iter()
                .filter_map(|b| KeyEnvelope::from_bytes(b).ok())
                .filter(|e| e.file_id() == entry.id)
                .collect();
            let usable = keys
                .decrypt
                .iter()
                .filter(|key| {
                    envelopes.iter().any(|e| {
                        e.open([*key])
                            .ok()
                            .and_then(|dek| manifest.open_metadata(&dek))
                            .is_some()
                    })
                })
                .map(|key| datamesh_core::KeyId::of(&key.public_key()))
                .collect();
            out.push((entry.id, usable));
        }
        Ok(out)
    }

    /// The catalog of files this node has put.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The shard store this node serves to its peers.
    pub fn store(&self) -> &Arc<crate::store::ShardStore> {
        self.inner.server.store()
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
