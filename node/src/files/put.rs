//! Put: streams a file through the core encoder on a blocking thread, places every
//! stripe on six distinct peers (a bounded window of stripes in flight), stores the
//! manifest and the key envelope, has the holders announce the file and records it in
//! the catalog. Every store a put makes is written in its ledger; a put that fails or is
//! dropped deletes them again, unless it is resumable (a put session, `session.rs`):
//! then what it placed stays for the put to resume (see there), and the state of a
//! session not resumed within a day is deleted with what it placed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use datamesh_core::{
    AuthorityError, DataKey, EncodeError, EncodeOptions, EncodedFile, Encoder, EnvelopeError,
    FileAuthority, FileId, KeyEnvelope, PolicyError, Recipient, SegmentSize, ShardId, Stripe,
    TOTAL_SHARDS,
};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinError;
use tracing::{debug, info, warn};

use super::SMALL_FILE_BYTES;
use super::engine::{Files, KeyProviderError};
use super::reach::Published;
use super::session::{KnownStripe, PutSession, SessionError, SessionLog};
use crate::catalog::{CatalogEntry, CatalogError, Placement};
use crate::metrics::Metrics;
use crate::network::NetworkError;
use crate::protocol::{BatchShard, ManifestOutcome, Request, Response, StoreOutcome};
use crate::store::Durability;

/// How long each stage of a put took (`datamesh_put_stage_seconds`), recorded once the
/// put completed: `keys` (the file keys and authority), `encode` (until the input is
/// read and every stripe is being placed), `place` (until every stripe and the manifest
/// copies, each with the key envelope, are stored), `publish` (announcements), `catalog`.
struct StageClock {
    last: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl StageClock {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            laps: Vec::with_capacity(5),
        }
    }

    /// Ends `stage`: the time since the previous lap (or the start).
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.laps
            .push((stage, now.duration_since(self.last).as_secs_f64()));
        self.last = now;
    }

    fn record(self, metrics: &Metrics) {
        for (stage, seconds) in self.laps {
            metrics.put_stage(stage, seconds);
        }
    }
}

/// What a put encodes.
pub enum PutInput<R> {
    /// Read on an encoder thread as the bytes come.
    Reader(R),
    /// A file whole in memory: encoded on the put's own task if it is at most
    /// [`SMALL_FILE_BYTES`] (no thread to hand it to and the stripe back from), else as a
    /// reader of it.
    Bytes(Vec<u8>),
}

impl<R> std::fmt::Debug for PutInput<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reader(_) => f.write_str("PutInput::Reader(..)"),
            Self::Bytes(bytes) => write!(f, "PutInput::Bytes({} bytes)", bytes.len()),
        }
    }
}

/// Encodes `reader` under `key` (a new one if `None`), handing each stripe to `send`
/// until it returns false (the placing side gave up: its error is the one reported).
fn encode<R: Read>(
    reader: R,
    options: EncodeOptions,
    key: Option<DataKey>,
    commitment: FileAuthority,
    mut send: impl FnMut(Stripe) -> bool,
) -> Result<EncodedFile, EncodeError> {
    let mut encoder = match key {
        Some(key) => Encoder::resume_with_key(reader, options, key),
        None => Encoder::new(reader, options),
    };
    for stripe in encoder.by_ref() {
        if !send(stripe?) {
            return Err(EncodeError::AlreadyFailed);
        }
    }
    encoder.finish(commitment)
}

/// Fewest manifest copies for a put to succeed: any two holders may be lost.
pub const MIN_MANIFEST_COPIES: usize = 3;
/// Fewest remote copies of a key envelope for a put, share or rewrap to succeed: the
/// data key lives only in the envelope, so any two of its holders may be lost.
pub const MIN_ENVELOPE_COPIES: usize = 3;
/// Longest wait, after a put failed or was cancelled, for its store requests still in
/// flight to end (the network's request timeout bounds each) before deleting what was
/// stored.
const CLEANUP_WAIT: Duration = Duration::from_secs(40);
/// Deadline of each delete sent to clean up after a failed put.
const CLEANUP_DELETE_DEADLINE: Duration = Duration::from_secs(10);
/// Deletes sent at once when cleaning up after a failed put.
const CLEANUP_DELETES: usize = 32;
/// Sealed stripes waiting between the encoder and the placing (which has its own window
/// of stripes in flight): the encoder's batch is the rest of its lead, so more would
/// only hold memory (each stripe is 1.5 times its segment).
const STRIPES_WAITING: usize = 2;
/// Longest wait for an earlier attempt of the same put session to end.
const SESSION_BUSY_WAIT: Duration = Duration::from_secs(60);

/// A put failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// Reading or encoding the input failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The `[security]` recipient policy refuses a recipient (nothing was stored).
    #[error(transparent)]
    Policy(#[from] PolicyError),
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
    /// Too few holders kept the key envelope: the data key would be too easy to lose.
    #[error(
        "the key envelope of file {file} reached only {stored} remote holders (need {MIN_ENVELOPE_COPIES}; {refused} refused it): the put is undone"
    )]
    EnvelopeCopies {
        /// The file that was not stored.
        file: FileId,
        /// Remote holders that kept the envelope.
        stored: usize,
        /// Holders that refused it.
        refused: usize,
    },
    /// The keystore could not give the keys.
    #[error("keystore: {0}")]
    Keys(#[source] KeyProviderError),
    /// The keystore has no file-authority root to sign the file's envelopes with.
    #[error("keystore: no file-authority key (open the keystore with this version once to add it)")]
    NoAuthority,
    /// The file's authority key could not be derived (probability about 2^-128).
    #[error("deriving the file's authority key: {0}")]
    Authority(#[from] AuthorityError),
    /// The file's key envelope could not be sealed (a recipient key it cannot wrap to).
    #[error("sealing the key envelope of file {file}: {source}")]
    Seal {
        /// The new file.
        file: FileId,
        /// Why.
        source: EnvelopeError,
    },
    /// The network stopped or a lookup failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The catalog could not be written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A resumed put's input differs from what the interrupted put encoded: stripe
    /// `stripe` re-encodes to other shards. Nothing of it was sent; the session and
    /// what it placed are deleted.
    #[error(
        "the input differs from the interrupted put's at stripe {stripe} (the source changed): nothing more was sent, its partial put was deleted; put it again"
    )]
    SourceChanged {
        /// The first stripe found different.
        stripe: u64,
    },
    /// The state of a resumable put could not be used.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Another put of the same session is running.
    #[error("put session {0} is running already (another `datamesh put` of the same file?)")]
    SessionBusy(PutSession),
    /// A blocking task of the put (encoding the input, writing the catalog) panicked or
    /// was cancelled.
    #[error("put: the {task} task failed: {source}")]
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
        /// Why it ended.
        source: JoinError,
    },
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
    /// Remote holders that kept the key envelope.
    pub envelope_copies: usize,
    /// Stripes an interrupted put of the same session had placed, not sent again.
    pub resumed_stripes: u64,
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
pub(super) struct PutLedger {
    state: Mutex<LedgerState>,
    /// Store requests (and the catalog write) of the put still running.
    in_flight: watch::Sender<usize>,
    /// A resumable put's state: every accepted store is also written there.
    session: OnceLock<Arc<SessionLog>>,
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
            session: OnceLock::new(),
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
        if let Some(log) = self.session.get() {
            log.held(peer, id);
        }
        self.lock().stored.push((peer, id));
    }

    /// Binds the ledger to a session whose earlier attempts stored `held`.
    fn attach(&self, log: SessionLog, held: Vec<(PeerId, ShardId)>) -> Arc<SessionLog> {
        let log = Arc::new(log);
        let _ = self.session.set(Arc::clone(&log));
        self.lock().stored.extend(held);
        log
    }

    fn commit(&self) {
        self.lock().committed = true;
    }

    /// Whether the put keeps a session log (it can be resumed).
    fn resumable(&self) -> bool {
        self.session.get().is_some()
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

impl Files {
    /// Encodes `reader` and places it; `recipients` also receive the data key.
    ///
    /// # Errors
    /// See [`PutError`].
    pub async fn put<R: Read + Send + 'static>(
        &self,
        reader: R,
        name: String,
        recipients: Vec<Recipient>,
    ) -> Result<PutReport, PutError> {
        self.put_with_mtime(reader, name, None, recipients).await
    }

    /// As [`Files::put`], sealing `mtime` (seconds since the Unix epoch: the real file's
    /// modification time) in the metadata; `None` records the put time.
    ///
    /// # Errors
    /// See [`PutError`].
    pub async fn put_with_mtime<R: Read + Send + 'static>(
        &self,
        reader: R,
        name: String,
        mtime: Option<u64>,
        recipients: Vec<Recipient>,
    ) -> Result<PutReport, PutError> {
        let input = PutInput::Reader(reader);
        self.put_resumable(input, name, mtime, recipients, None, SegmentSize::DEFAULT)
            .await
    }

    /// As [`Files::put_with_mtime`]; with a `session` the put is resumable: an
    /// interrupted put of that session is continued with its data key, the stripes it
    /// placed are not sent again (each checked to re-encode to the same shards), and an
    /// interrupted put leaves its shards and state for the next attempt (deleted after
    /// [`super::PUT_SESSION_TTL`] if none comes). The file is cut into segments of
    /// `segment` bytes (recorded in its manifest; a session is resumed only with the size
    /// it started with). `input` is read as [`PutInput`] says.
    ///
    /// # Errors
    /// See [`PutError`].
    pub async fn put_resumable<R: Read + Send + 'static>(
        &self,
        input: PutInput<R>,
        name: String,
        mtime: Option<u64>,
        recipients: Vec<Recipient>,
        session: Option<PutSession>,
        segment: SegmentSize,
    ) -> Result<PutReport, PutError> {
        let started = Instant::now();
        let ledger = PutLedger::new();
        let _running = match session {
            Some(id) => {
                // A client killed and run again may find its first attempt still winding
                // down (its stores in flight): wait for it, bounded.
                let deadline = Instant::now() + SESSION_BUSY_WAIT;
                while !self.start_session(id) {
                    if Instant::now() > deadline {
                        return Err(PutError::SessionBusy(id));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // Old sessions go first (their own task: this put does not wait).
                let files = self.clone();
                tokio::spawn(async move { files.sweep_put_sessions().await });
                Some(SessionRunning {
                    files: self.clone(),
                    id,
                })
            }
            None => None,
        };
        let mut guard = PutGuard {
            files: self.clone(),
            ledger: Arc::clone(&ledger),
            armed: session.is_none(),
        };
        if session.is_some() && mtime.is_none() {
            return Err(SessionError::NoMtime.into());
        }
        let mtime = mtime.unwrap_or_else(now_secs);
        let result = self
            .put_inner(input, name, mtime, recipients, &ledger, (session, segment))
            .await;
        guard.armed = false;
        match (&result, session) {
            (Err(e), None) | (Err(e @ PutError::SourceChanged { .. }), Some(_)) => {
                info!("put failed ({e}); deleting what it stored");
                if let Some(id) = session
                    && let Some(sessions) = self.sessions()
                {
                    sessions.discard(id);
                }
                // Its own task: a caller that goes away now does not stop the clean-up.
                // Awaited so that a failed put has released its peers' space when it
                // returns (bounded by CLEANUP_WAIT and the delete deadline).
                let files = self.clone();
                if let Err(e) = tokio::spawn(async move { files.clean_up_put(ledger).await }).await
                {
                    warn!("put clean-up task failed: {e}");
                }
            }
            (Err(e), Some(id)) => {
                info!(session = %id, "resumable put interrupted ({e}); its state is kept");
            }
            (Ok(_), _) => {}
        }
        let metrics = self.metrics();
        match &result {
            Ok(report) => {
                metrics.puts.inc();
                metrics.put_bytes.inc_by(report.size);
                metrics.put_seconds.observe(started.elapsed().as_secs_f64());
                metrics.put_stripes_resumed.inc_by(report.resumed_stripes);
            }
            Err(_) => {
                metrics.failures.inc();
            }
        }
        result
    }

    /// Deletes the state of put sessions not written to for a day, and what they
    /// placed (bounded like a failed put's clean-up).
    pub async fn sweep_put_sessions(&self) {
        let Some(sessions) = self.sessions().cloned() else {
            return;
        };
        let files = self.clone();
        let expired = tokio::task::spawn_blocking(move || {
            let mut blobs = Vec::new();
            for session in sessions.expired(SystemTime::now()) {
                // Held while its state goes: a put of it now waits, then starts afresh.
                if files.start_session(session) {
                    blobs.extend(sessions.take(session));
                    files.end_session(session);
                }
            }
            blobs
        })
        .await;
        match expired {
            Ok(blobs) if !blobs.is_empty() => {
                info!(
                    blobs = blobs.len(),
                    "deleting what expired put sessions placed"
                );
                self.delete_blobs(blobs).await;
            }
            Ok(_) => {}
            Err(e) => warn!("put session sweep failed: {e}"),
        }
    }

    /// Whether a put to `recipients` (besides the owner) passes the recipient policy.
    ///
    /// # Errors
    /// [`PutError::Keys`] or [`PutError::Policy`].
    pub fn check_recipients(&self, recipients: &[Recipient]) -> Result<(), PutError> {
        let keys = self.file_keys().map_err(PutError::Keys)?;
        let policy = self.config().recipients;
        let mut wrap_to = vec![keys.owner_recipient(policy)?];
        wrap_to.extend_from_slice(recipients);
        Ok(policy.check(&wrap_to)?)
    }

    async fn put_inner<R: Read + Send + 'static>(
        &self,
        input: PutInput<R>,
        name: String,
        mtime: u64,
        recipients: Vec<Recipient>,
        ledger: &Arc<PutLedger>,
        (session, segment): (Option<PutSession>, SegmentSize),
    ) -> Result<PutReport, PutError> {
        let mut clock = StageClock::new();
        let keys = self.file_keys().map_err(PutError::Keys)?;
        // The policy is checked before a byte is placed: a refused put stores nothing.
        let policy = self.config().recipients;
        let mut wrap_to = vec![keys.owner_recipient(policy)?];
        wrap_to.extend(recipients);
        policy.check(&wrap_to)?;
        let authority = keys.new_authority().ok_or(PutError::NoAuthority)??;
        let commitment = authority.file_authority();
        // The owner's wrap, its key agreement made ahead (`ahead.rs`) if one is ready.
        let ready: Vec<_> = self.ahead().take(&wrap_to[0]).into_iter().collect();
        if !ready.is_empty() {
            self.metrics().put_key_agreements_ready.inc();
        }
        clock.lap("keys");
        let window = self.config().window_for(segment);
        // A resumable put: its data key and what its earlier attempts placed.
        let (key, known, log) = match session {
            Some(id) => {
                let sessions = self.sessions().cloned().ok_or(SessionError::Disabled)?;
                let owner = wrap_to[0].clone();
                let segment = segment.bytes() as u64;
                // The metadata is sealed under the data key too: an attempt must seal the
                // same name and mtime as any before it.
                let metadata = postcard::to_stdvec(&(&name, mtime)).unwrap_or_default();
                let metadata = *ShardId::of(&metadata).as_bytes();
                let (log, resumed) = tokio::task::spawn_blocking(move || {
                    sessions.open(id, &keys, &owner, segment, metadata)
                })
                .await
                .map_err(|source| PutError::TaskFailed {
                    task: "reading the put session",
                    source,
                })??;
                if resumed.existing {
                    info!(session = %id, stripes = resumed.stripes.len(), "resuming a put");
                }
                let log = ledger.attach(log, resumed.held);
                (Some(resumed.key), resumed.stripes, Some(log))
            }
            None => (None, HashMap::new(), None),
        };
        let (tx, mut rx) = mpsc::channel::<Stripe>(STRIPES_WAITING);
        let options = EncodeOptions::new(name.clone())
            .with_mtime(mtime)
            .with_segment_size(segment);
        let encoder = match input {
            // At most one segment: tens of microseconds of work, done on this task, where
            // an encoder thread would cost a hand-over each way (and its one stripe fits
            // the channel).
            PutInput::Bytes(bytes) if bytes.len() <= SMALL_FILE_BYTES => {
                let encoded = encode(Cursor::new(bytes), options, key, commitment, |stripe| {
                    tx.try_send(stripe).is_ok()
                });
                drop(tx);
                futures::future::ready(Ok(encoded)).left_future()
            }
            input => {
                let reader: Box<dyn Read + Send> = match input {
                    PutInput::Bytes(bytes) => Box::new(Cursor::new(bytes)),
                    PutInput::Reader(reader) => Box::new(reader),
                };
                tokio::task::spawn_blocking(move || {
                    encode(reader, options, key, commitment, |stripe| {
                        tx.blocking_send(stripe).is_ok()
                    })
                })
                .right_future()
            }
        };

        let unreachable = Arc::new(Mutex::new(HashSet::new()));
        let mut placing = FuturesUnordered::new();
        let mut placements: Vec<Option<[PeerId; TOTAL_SHARDS]>> = Vec::new();
        let mut resumed_stripes = 0u64;
        let mut input_done = false;
        // A one-stripe file (a small one) waits for the encoder's end: its shards and
        // manifest copies then go in one round, in one request to each peer that gets
        // both (`one_stripe.rs`). A longer file's stripes are placed as they come.
        let mut taken = VecDeque::new();
        let mut one_stripe = None;
        if known.is_empty()
            && let Some(first) = rx.recv().await
        {
            match rx.recv().await {
                Some(second) => taken.extend([first, second]),
                None => {
                    placements.push(None);
                    one_stripe = Some(first);
                    input_done = true;
                }
            }
        }
        // The first stripe found to differ from the session's: nothing more is placed,
        // the rest of the input is read and dropped so the client gets the answer
        // rather than a connection closed under its upload.
        let mut changed: Option<u64> = None;
        loop {
            // Once the input is read the manifest is known: it is placed while the last
            // stripes still are (below). A changed source drains them here first.
            if input_done && changed.is_none() {
                break;
            }
            tokio::select! {
                stripe = next_stripe(&mut taken, &mut rx), if !input_done && placing.len() < window => match stripe {
                    Some(_) if changed.is_some() => {}
                    Some(stripe) => {
                        let index = stripe.index();
                        placements.push(None);
                        let written_ahead = match known.get(&index) {
                            Some(known) => match already_placed(known, &stripe) {
                                Ok(Some(holders)) => {
                                    placements[index as usize] = Some(holders);
                                    resumed_stripes += 1;
                                    continue;
                                }
                                Ok(None) => true,
                                Err(_) => {
                                    changed = Some(index);
                                    continue;
                                }
                            },
                            None => false,
                        };
                        let files = self.clone();
                        let unreachable = Arc::clone(&unreachable);
                        let ledger = Arc::clone(ledger);
                        let log = log.clone().filter(|_| !written_ahead);
                        placing.push(async move {
                            (index, files.write_ahead_and_place(stripe, log, &unreachable, &ledger).await)
                        });
                    }
                    None => input_done = true,
                },
                Some((index, placed)) = placing.next() => {
                    match placed {
                        Ok(placed) => placements[index as usize] = Some(placed),
                        Err(_) if changed.is_some() => {}
                        Err(e) => return Err(e),
                    }
                }
                else => break,
            }
        }
        let encoded = encoder.await.map_err(|source| PutError::TaskFailed {
            task: "encoding",
            source,
        });
        if let Some(stripe) = changed {
            return Err(PutError::SourceChanged { stripe });
        }
        let encoded = encoded??;
        clock.lap("encode");
        let id = encoded.file_id;
        let manifest_bytes = encoded.manifest.to_bytes();
        let envelope =
            KeyEnvelope::seal_to_with(id, 1, &encoded.data_key, &wrap_to, &authority, ready)
                .map_err(|source| PutError::Seal { file: id, source })?;
        let envelope_bytes = envelope.to_bytes();

        // The manifest (content-addressed like a shard: its id is the file id) goes to
        // the peers nearest the file id while the last stripes are still being placed,
        // with the key envelope in the same request (protocol 8): a holder keeps an
        // envelope only for a manifest it holds, and the data key lives only there.
        // Nothing points at either before the put is acknowledged; a put that fails
        // deletes the manifests with the rest (the ledger), and the envelopes with them.
        let copy = ManifestCopy {
            id: ShardId::from_bytes(*id.as_bytes()),
            envelope: envelope_bytes.clone(),
            bytes: manifest_bytes.into(),
        };
        // Which remote holders kept the envelope.
        let published = Mutex::new(Published::default());
        let placed = async {
            if let Some(stripe) = one_stripe {
                let (row, holders) = self
                    .place_one_stripe_file(
                        stripe,
                        log.clone(),
                        &copy,
                        &unreachable,
                        ledger,
                        &published,
                    )
                    .await?;
                placements[0] = Some(row);
                return Ok::<_, PutError>(holders);
            }
            let stripes_placed = async {
                while let Some((index, placed)) = placing.next().await {
                    placements[index as usize] = Some(placed?);
                }
                Ok::<(), PutError>(())
            };
            let (request, none_held) = (copy.request(), HashSet::new());
            let manifest_placed =
                self.place_copies_via(id.as_bytes(), &request, &none_held, |peer, request| {
                    self.send_manifest_copy(peer, request, ledger, &published)
                });
            let (stripes_placed, manifest_holders) = tokio::join!(stripes_placed, manifest_placed);
            stripes_placed?;
            Ok(manifest_holders?)
        };
        // The owner's copy of the envelope is made durable by the catalog's synced write
        // that ends a put (one database, one log): no sync of its own.
        let (manifest_holders, ()) = tokio::join!(
            placed,
            self.keep_own_envelope(&encoded.manifest, envelope_bytes, Durability::Deferred)
        );
        let manifest_holders = manifest_holders?;
        if manifest_holders.len() < MIN_MANIFEST_COPIES {
            return Err(PutError::ManifestCopies {
                stored: manifest_holders.len(),
            });
        }
        let published = published.into_inner().unwrap_or_else(|p| p.into_inner());
        if published.kept() < MIN_ENVELOPE_COPIES {
            return Err(PutError::EnvelopeCopies {
                file: id,
                stored: published.kept(),
                refused: published.refused,
            });
        }
        let placements: Vec<[PeerId; TOTAL_SHARDS]> = placements.into_iter().flatten().collect();
        clock.lap("place");

        // Each holder announces the file on the strength of a blob it holds for it: the
        // manifest, or the first shard this put placed there. A remote manifest holder
        // that kept the envelope as its first for the file provides the file already (as
        // for an `Announce`, protocol 7); every other holder is asked to announce. (A
        // failed put's holders drop their claims with its clean-up; the provider records
        // they started name a file id nobody was given.)
        let manifest_blob = ShardId::from_bytes(*id.as_bytes());
        let mut holders: HashMap<PeerId, ShardId> = manifest_holders
            .iter()
            .map(|&peer| (peer, manifest_blob))
            .collect();
        for (row, ids) in placements.iter().zip(encoded.manifest.stripes()) {
            for (&peer, &shard) in row.iter().zip(ids) {
                holders.entry(peer).or_insert(shard);
            }
        }
        let unannounced: HashMap<PeerId, ShardId> = holders
            .iter()
            .filter(|(peer, _)| !published.kept_by.contains(peer))
            .map(|(&peer, &blob)| (peer, blob))
            .collect();
        let announced = self.announce(id, &unannounced).await + published.kept();
        debug!(file = %id, announced, holders = holders.len(), "announced");
        clock.lap("publish");

        let entry = CatalogEntry {
            id,
            name: encoded.metadata.name.clone(),
            size: encoded.metadata.size,
            stripes: encoded.manifest.stripe_count(),
            created: now_secs(),
            shared_with: wrap_to[1..].iter().map(ToString::to_string).collect(),
            envelope_sequence: 1,
        };
        let catalog = self.catalog().clone();
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
        .map_err(|source| PutError::TaskFailed {
            task: "catalog write",
            source,
        })??;
        clock.lap("catalog");
        clock.record(self.metrics());
        info!(file = %id, size = encoded.metadata.size, resumed_stripes, "put complete");
        if let Some(session) = session {
            self.finish_session(
                session,
                ledger,
                &placements,
                &encoded.manifest,
                &manifest_holders,
            );
        }
        Ok(PutReport {
            id,
            size: encoded.metadata.size,
            stripes: encoded.manifest.stripe_count(),
            peers: holders.len(),
            manifest_copies: manifest_holders.len(),
            envelope_copies: published.kept(),
            resumed_stripes,
        })
    }

    /// A stripe of a resumable put: its ids recorded and synced before any of its
    /// shards is sent (`log`: none when an earlier attempt recorded them), then placed.
    async fn write_ahead_and_place(
        &self,
        stripe: Stripe,
        log: Option<Arc<SessionLog>>,
        unreachable: &Mutex<HashSet<PeerId>>,
        ledger: &Arc<PutLedger>,
    ) -> Result<[PeerId; TOTAL_SHARDS], PutError> {
        write_ahead(log, &stripe).await?;
        self.place_stripe(stripe, unreachable, ledger).await
    }

    /// Sends a manifest copy (a `StoreManifest`, or a `StoreWithManifest` with a shard
    /// beside it) through [`Self::send_tracked`], counting in `published` whether the
    /// holder kept the envelope. This node's own copy of the envelope is kept apart
    /// (leased as its own, [`Self::keep_own_envelope`]): only the manifest goes to its
    /// store, with no second write and check of the envelope.
    pub(super) fn send_manifest_copy(
        &self,
        peer: PeerId,
        request: Request,
        ledger: &Arc<PutLedger>,
        published: &Mutex<Published>,
    ) -> impl Future<Output = Result<Response, NetworkError>> {
        let request = match request {
            Request::StoreManifest { id, bytes, .. } if peer == self.peer_id() => {
                Request::Store { id, bytes }
            }
            other => other,
        };
        let sent = self.send_tracked(peer, request, Arc::clone(ledger));
        async move {
            let answer = sent.await;
            let envelope = match &answer {
                Ok(Response::ManifestStored { envelope_refused }) => Some(envelope_refused),
                Ok(Response::ShardAndManifest {
                    manifest: ManifestOutcome::Stored { envelope_refused },
                    ..
                }) => Some(envelope_refused),
                _ => None,
            };
            if let Some(refused) = envelope {
                published
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .count(peer, refused.as_ref());
            }
            answer
        }
    }

    /// After a resumable put completed: its state goes, and so do the copies its
    /// attempts stored that the file does not use (an earlier attempt's manifest, a
    /// shard a peer holds that the final placement put elsewhere), in their own task.
    fn finish_session(
        &self,
        session: PutSession,
        ledger: &PutLedger,
        placements: &[[PeerId; TOTAL_SHARDS]],
        manifest: &datamesh_core::Manifest,
        manifest_holders: &[PeerId],
    ) {
        let manifest_blob = ShardId::from_bytes(*manifest.file_id().as_bytes());
        let mut used: HashSet<(PeerId, ShardId)> = manifest_holders
            .iter()
            .map(|&peer| (peer, manifest_blob))
            .collect();
        for (row, ids) in placements.iter().zip(manifest.stripes()) {
            used.extend(row.iter().copied().zip(ids.iter().copied()));
        }
        let orphans: Vec<(PeerId, ShardId)> = {
            let state = ledger.lock();
            let mut seen = HashSet::new();
            state
                .stored
                .iter()
                .filter(|held| !used.contains(held) && seen.insert(**held))
                .copied()
                .collect()
        };
        if let Some(sessions) = self.sessions() {
            sessions.discard(session);
        }
        if !orphans.is_empty() {
            let files = self.clone();
            tokio::spawn(async move { files.delete_blobs(orphans).await });
        }
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
        let shards: Vec<(ShardId, Bytes)> =
            ids.into_iter().zip(stripe.into_shared_shards()).collect();
        let (placed, found) = self
            .place_shards_via(
                ids[0].as_bytes(),
                shards,
                &HashSet::new(),
                unreachable,
                move |peer, request| self.send_tracked(peer, request, Arc::clone(ledger)),
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

    /// Sends `request` (a store) as its own task that records an accepted shard in the
    /// put's `ledger`: the request finishes and is recorded even if the put is dropped
    /// meanwhile.
    pub(super) async fn send_tracked(
        &self,
        peer: PeerId,
        request: Request,
        ledger: Arc<PutLedger>,
    ) -> Result<Response, NetworkError> {
        // The blob a request stores (a shard or a manifest), and the manifest beside a
        // shard of a `StoreWithManifest`.
        let (stored_id, manifest_id) = match &request {
            Request::Store { id, .. } | Request::StoreManifest { id, .. } => (Some(*id), None),
            Request::StoreWithManifest { id, shard, .. } => (Some(shard.id), Some(*id)),
            _ => (None, None),
        };
        let running = ledger.begin();
        if stored_id.is_some() {
            self.metrics().put_stores_sent.inc();
        }
        let files = self.clone();
        // This node's own stores are left to the catalog's synced write, as a holder's
        // are synced before its answer; not in a resumable put, whose session log
        // records them as held (a record that must not outlive the blob, whatever the
        // order in which a power loss drops unsynced writes).
        let own = match ledger.resumable() {
            true => Durability::Synced,
            false => Durability::Deferred,
        };
        tokio::spawn(async move {
            let result = files.send_with(peer, request, own).await;
            let (blob, manifest) = match &result {
                Ok(Response::Stored | Response::AlreadyHeld | Response::ManifestStored { .. }) => {
                    (stored_id, None)
                }
                Ok(Response::ShardAndManifest { shard, manifest }) => (
                    stored_id.filter(|_| !matches!(shard, StoreOutcome::Refused(_))),
                    manifest_id.filter(|_| matches!(manifest, ManifestOutcome::Stored { .. })),
                ),
                _ => (None, None),
            };
            for id in blob.into_iter().chain(manifest) {
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
        self.delete_blobs(stored).await;
    }

    /// Asks each peer to delete its blob (this node's claim on it), concurrently, each
    /// delete bounded in time; failures logged and counted, never returned.
    async fn delete_blobs(&self, stored: Vec<(PeerId, ShardId)>) {
        let mut seen = HashSet::new();
        let stored: Vec<(PeerId, ShardId)> = stored
            .into_iter()
            .filter(|held| seen.insert(*held))
            .collect();
        if stored.is_empty() {
            return;
        }
        let metrics = Arc::clone(self.metrics());
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
        info!(deleted, failed, "deleted a put's blobs");
    }
}

/// A put's manifest copy: the manifest and the key envelope that go to each of its
/// holders.
pub(super) struct ManifestCopy {
    /// The manifest's blob id (the file id).
    pub(super) id: ShardId,
    /// The key envelope's wire form.
    pub(super) envelope: Vec<u8>,
    /// The manifest bytes.
    pub(super) bytes: Bytes,
}

impl ManifestCopy {
    /// The copy on its own: a `StoreManifest`.
    pub(super) fn request(&self) -> Request {
        Request::StoreManifest {
            id: self.id,
            envelope: self.envelope.clone(),
            bytes: self.bytes.clone(),
        }
    }

    /// The copy with a shard for the same peer: a `StoreWithManifest`.
    pub(super) fn with_shard(&self, id: ShardId, bytes: Bytes) -> Request {
        Request::StoreWithManifest {
            id: self.id,
            envelope: self.envelope.clone(),
            manifest: self.bytes.clone(),
            shard: BatchShard { id, bytes },
        }
    }
}

/// Records a resumable put's stripe (its ids, synced) before any of its shards is sent;
/// nothing without a session `log`.
pub(super) async fn write_ahead(
    log: Option<Arc<SessionLog>>,
    stripe: &Stripe,
) -> Result<(), PutError> {
    let Some(log) = log else {
        return Ok(());
    };
    let (index, ids) = (stripe.index(), *stripe.ids());
    tokio::task::spawn_blocking(move || log.write_ahead(index, &ids))
        .await
        .map_err(|source| PutError::TaskFailed {
            task: "writing the put session",
            source,
        })?
        .map_err(PutError::from)
}

/// The next stripe to place: one taken early (to tell a one-stripe file), else the
/// encoder's next.
async fn next_stripe(
    taken: &mut VecDeque<Stripe>,
    rx: &mut mpsc::Receiver<Stripe>,
) -> Option<Stripe> {
    match taken.pop_front() {
        Some(stripe) => Some(stripe),
        None => rx.recv().await,
    }
}

/// A stripe an earlier attempt of the session wrote ahead: an error if it re-encodes to
/// other shards; its holders if all six shards were acknowledged (nothing to send).
fn already_placed(
    known: &KnownStripe,
    stripe: &Stripe,
) -> Result<Option<[PeerId; TOTAL_SHARDS]>, PutError> {
    if known.ids != *stripe.ids() {
        return Err(PutError::SourceChanged {
            stripe: stripe.index(),
        });
    }
    Ok(match known.holders {
        [Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)] => Some([a, b, c, d, e, f]),
        _ => None,
    })
}

/// Marks a session running for as long as its put runs.
struct SessionRunning {
    files: Files,
    id: PutSession,
}

impl Drop for SessionRunning {
    fn drop(&mut self) {
        self.files.end_session(self.id);
    }
}
