//! Get: finds a file (manifest, an envelope this node's keys open, the shards' holders),
//! refuses up front if a stripe has fewer than four holders, then fetches data shards
//! first, hedging to another holder after a delay and giving up on a stripe at its
//! deadline, and streams them through the core decoder on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datamesh_core::{
    ByteRange, DATA_SHARDS, DataKey, DecodeError, Decoder, FileId, Manifest, Metadata,
    RangeDecoder, TOTAL_SHARDS, VerifiedShard, VerifiedStripe,
};
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinError;
use tracing::{debug, warn};

use super::SMALL_FILE_BYTES;
use super::engine::{FileKeys, Files, KeyAccess, KeyProviderError};
use super::locate::{FindError, Found, HolderList, Holders};
use crate::catalog::{CatalogError, Placement};
use crate::network::NetworkError;
use crate::protocol::{Request, Response};

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
    Keys(#[source] KeyProviderError),
    /// The network stopped.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The blocking task that decodes and writes the file panicked or was cancelled.
    #[error("get: the {task} task failed: {source}")]
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
        /// Why it ended.
        source: JoinError,
    },
}

impl From<FindError> for GetError {
    fn from(e: FindError) -> Self {
        e.into_error(Self::NotFound)
    }
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
    pub(super) holders: Holders,
    /// Stripe 0, fetched and verified while opening ([`Files::open_to_read`],
    /// [`Files::open_to_read_whole`]).
    prefetched: Option<Prefetched>,
}

/// Whether stripe 0 of this node's own file is fetched from its recorded holders while
/// the file is opened: for a read of the whole file, which needs it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstStripe {
    /// While the holders are asked and the data key opened.
    Now,
    /// With the other stripes, once the file is open.
    Later,
}

/// Stripe 0 of a file, fetched while opening it.
struct Prefetched {
    shards: VerifiedStripe,
    /// Peers that served a shard not matching its id meanwhile.
    bad_peers: Vec<PeerId>,
}

impl std::fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetched")
            .field(
                "shards",
                &self.shards.iter().filter(|s| s.is_some()).count(),
            )
            .field("bad_peers", &self.bad_peers)
            .finish()
    }
}

/// What a finished get reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetReport {
    /// Bytes written.
    pub bytes: u64,
    /// Peers that served a shard not matching its id.
    pub bad_peers: Vec<PeerId>,
}

impl Files {
    /// Finds a file, unlocks its data key and locates its shards. Fails fast, before a
    /// byte is streamed, if a stripe cannot be read.
    ///
    /// # Errors
    /// See [`GetError`].
    pub async fn open(&self, id: FileId) -> Result<OpenFile, GetError> {
        self.open_with(id, KeyAccess::Live).await
    }

    /// As [`Files::open`], with the keys `access` allows (revoked ones only on the
    /// explicit override of incident recovery).
    ///
    /// # Errors
    /// See [`GetError`].
    pub async fn open_with(&self, id: FileId, access: KeyAccess) -> Result<OpenFile, GetError> {
        self.open_first(id, access, self.find_placed(id)?, FirstStripe::Later)
            .await
    }

    /// As [`Files::open_with`], given what the catalog holds of the file (`placed`,
    /// [`Self::find_placed`]), `first` saying whether stripe 0 of this node's own file is
    /// fetched while it is opened.
    async fn open_first(
        &self,
        id: FileId,
        access: KeyAccess,
        placed: Option<Found>,
        first: FirstStripe,
    ) -> Result<OpenFile, GetError> {
        // This node's own file: the holders its catalog names are asked first, with no
        // DHT walk (a get's first byte comes a walk sooner); the search of the network
        // follows only if they cannot give the key or a stripe.
        let (found, keys) = match placed {
            Some(found) => {
                let keys = self.file_keys_for(access, "get").map_err(GetError::Keys)?;
                match self.open_found(id, found, &keys, first).await {
                    Ok(open) => return Ok(open),
                    Err(e) => {
                        debug!(file = %id, "the recorded holders fell short ({e}); searching the network");
                        (self.find(id).await?, keys)
                    }
                }
            }
            None => {
                let found = self.find(id).await?;
                let keys = self.file_keys_for(access, "get").map_err(GetError::Keys)?;
                (found, keys)
            }
        };
        self.open_found(id, found, &keys, FirstStripe::Later).await
    }

    /// As [`Files::open_to_read`], to read the whole file (no range): this node's own file
    /// of several stripes has its stripe 0 fetched from the holders its catalog recorded
    /// while they are asked which shards they hold and the data key is opened, so the
    /// reader's first bytes wait for no transfer after the opening. What the opening checks
    /// is unchanged: every stripe must have four holders before a byte is sent. If the
    /// recorded holders cannot give stripe 0 within the lookup deadline, the read fetches
    /// it as any other stripe.
    ///
    /// # Errors
    /// See [`GetError`].
    pub async fn open_to_read_whole(
        &self,
        id: FileId,
        access: KeyAccess,
    ) -> Result<OpenFile, GetError> {
        let placed = self.find_placed(id)?;
        if placed
            .as_ref()
            .is_some_and(|found| found.manifest.stripe_count() > 1)
        {
            return self.open_first(id, access, placed, FirstStripe::Now).await;
        }
        self.open_placed_to_read(id, access, placed).await
    }

    /// As [`Files::open_with`], to read the file. A one-stripe file of this node (a small
    /// file) is fetched from the holders its catalog recorded while it is opened, in
    /// place of the round that asks them which shards they hold: the stripe is known
    /// readable before a byte is sent, as with [`Files::open_with`], one round sooner.
    /// If those holders cannot give it (within the lookup deadline), the file is opened
    /// as [`Files::open_with`] does. Not for removing or re-placing copies, which must
    /// know every holder.
    ///
    /// # Errors
    /// See [`GetError`].
    pub async fn open_to_read(&self, id: FileId, access: KeyAccess) -> Result<OpenFile, GetError> {
        self.open_placed_to_read(id, access, self.find_placed(id)?)
            .await
    }

    /// [`Files::open_to_read`], given what the catalog holds of the file (`placed`,
    /// [`Self::find_placed`]).
    async fn open_placed_to_read(
        &self,
        id: FileId,
        access: KeyAccess,
        placed: Option<Found>,
    ) -> Result<OpenFile, GetError> {
        // A one-stripe file with a recorded placement; anything else opens as any read.
        let recorded = placed
            .as_ref()
            .filter(|found| found.manifest.stripe_count() == 1)
            .and_then(|found| found.placement.clone());
        let (found, placement) = match (placed, recorded) {
            (Some(found), Some(placement)) => (found, placement),
            (placed, _) => {
                return self
                    .open_first(id, access, placed, FirstStripe::Later)
                    .await;
            }
        };
        let keys = self.file_keys_for(access, "get").map_err(GetError::Keys)?;
        let row = recorded_row(&placement);
        let (slow, bad_peers) = (Mutex::default(), Mutex::default());
        let fetch = self.fetch_recorded(&found.manifest, &row, &slow, &bad_peers);
        // The stripe is fetched while the data key is opened. A key that does not
        // open drops what came.
        let unlock = self.unlock(id, &found.manifest, &found.peers, &keys);
        let (fetched, unlocked) = network_first(fetch, unlock).await;
        if let Some((key, metadata, _)) = unlocked {
            match fetched {
                Ok(Ok(shards)) => {
                    self.metrics().gets_from_recorded.inc();
                    return Ok(OpenFile {
                        id,
                        manifest: found.manifest,
                        metadata,
                        key,
                        holders: vec![row],
                        prefetched: Some(Prefetched {
                            shards,
                            bad_peers: bad_peers.into_inner().unwrap_or_else(|p| p.into_inner()),
                        }),
                    });
                }
                Ok(Err(e)) => {
                    debug!(file = %id, "the recorded holders fell short ({e}); asking the peers");
                }
                Err(_) => {
                    debug!(file = %id, "the recorded holders were too slow; asking the peers")
                }
            }
        }
        self.open_with(id, access).await
    }

    /// Unlocks the data key of a file found and locates its shards.
    async fn open_found(
        &self,
        id: FileId,
        found: Found,
        keys: &FileKeys,
        first: FirstStripe,
    ) -> Result<OpenFile, GetError> {
        let Found {
            placement,
            peers,
            manifest,
        } = found;
        // Stripe 0 from the holders recorded for it, if asked for and known.
        let row = match (first, &placement) {
            (FirstStripe::Now, Some(placement)) => Some(recorded_row(placement)),
            _ => None,
        };
        let (slow, bad_peers) = (Mutex::default(), Mutex::default());
        let first_stripe = async {
            let row = row.as_ref()?;
            let fetched = self.fetch_recorded(&manifest, row, &slow, &bad_peers);
            fetched.await.ok()?.ok()
        };
        // Which peers hold which shards is asked while the data key is opened.
        let (((holders, _), first_stripe), unlocked) = network_first(
            futures::future::join(
                self.locate_to_read(&manifest, &peers, placement.as_ref()),
                first_stripe,
            ),
            self.unlock(id, &manifest, &peers, keys),
        )
        .await;
        let (key, metadata, _) = unlocked.ok_or(GetError::NoKey(id))?;
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
        let prefetched = first_stripe.map(|shards| {
            self.metrics().first_stripes_fetched_while_opening.inc();
            Prefetched {
                shards,
                bad_peers: bad_peers.into_inner().unwrap_or_else(|p| p.into_inner()),
            }
        });
        Ok(OpenFile {
            id,
            manifest,
            metadata,
            key,
            holders,
            prefetched,
        })
    }

    /// A file's manifest, from the catalog, this node's store or the network. Needs no
    /// key: the manifest is checked against the file id, which is its hash.
    ///
    /// # Errors
    /// [`GetError::NotFound`] or [`GetError::Catalog`].
    pub async fn manifest_of(&self, id: FileId) -> Result<Manifest, GetError> {
        Ok(self.find(id).await?.manifest)
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
        let metrics = self.metrics();
        match &result {
            Ok(report) => {
                metrics.gets.inc();
                metrics.get_bytes.inc_by(report.bytes);
                metrics.get_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(_) => {
                metrics.failures.inc();
            }
        }
        result
    }

    /// Reads a small file whole on the calling task: one whose only stripe was fetched
    /// while it was opened ([`Files::open_to_read`]) and whose size is at most
    /// [`SMALL_FILE_BYTES`]. Decoding it is tens of microseconds of work, where
    /// [`Files::read`] would hand the stripe to a decoder thread and the bytes back. The
    /// same checks as [`Files::read`]: each segment's tag, the file's BLAKE3. `None` for
    /// any other file (left as it was, to be read with [`Files::read`]).
    pub fn try_read_small(&self, file: &mut OpenFile) -> Option<Result<Vec<u8>, GetError>> {
        let small =
            file.metadata.size <= SMALL_FILE_BYTES as u64 && file.manifest.stripe_count() == 1;
        if !small {
            return None;
        }
        let Prefetched { shards, .. } = file.prefetched.take()?;
        let started = Instant::now();
        let decoded = Decoder::new(file.manifest.clone(), &file.key).and_then(|mut decoder| {
            let mut out = Vec::with_capacity(file.metadata.size as usize);
            decoder.push_verified(0, shards, &mut out)?;
            decoder.finish(&mut out)?;
            Ok(out)
        });
        let metrics = self.metrics();
        match &decoded {
            Ok(bytes) => {
                metrics.gets.inc();
                metrics.get_bytes.inc_by(bytes.len() as u64);
                metrics.get_seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(_) => {
                metrics.failures.inc();
            }
        }
        Some(decoded.map_err(GetError::from))
    }

    async fn read_inner<W: Write + Send + 'static>(
        &self,
        file: OpenFile,
        mut out: W,
    ) -> Result<GetReport, GetError> {
        let OpenFile {
            manifest,
            key,
            holders,
            prefetched,
            ..
        } = file;
        // The decoder opens stripes a batch at a time (twice its worker threads); the
        // fetching window keeps the next ones coming meanwhile.
        let mut decoder = Decoder::new(manifest.clone(), &key)?;
        let stripes = 0..manifest.stripe_count();
        self.fetch_into(manifest, (holders, prefetched), stripes, move |rx| {
            let mut counting = CountingWriter {
                inner: &mut out,
                bytes: 0,
            };
            while let Some((index, shards)) = rx.next() {
                decoder.push_verified(index, shards, &mut counting)?;
            }
            decoder.finish(&mut counting)?;
            counting.flush()?;
            Ok(counting.bytes)
        })
        .await
    }

    /// Streams `range` of an opened file into `out`: only the stripes that cover it are
    /// fetched, each segment is authenticated (its AES-GCM tag) before a byte of it is
    /// written. The file's BLAKE3 cannot be checked for a part of it.
    ///
    /// # Errors
    /// As [`Files::read`].
    pub async fn read_range<W: Write + Send + 'static>(
        &self,
        file: OpenFile,
        range: ByteRange,
        mut out: W,
    ) -> Result<GetReport, GetError> {
        let OpenFile {
            manifest,
            key,
            holders,
            prefetched,
            ..
        } = file;
        let mut decoder = RangeDecoder::new(manifest.clone(), &key, range)?;
        let stripes = decoder.stripes();
        let result = self
            .fetch_into(manifest, (holders, prefetched), stripes, move |rx| {
                let mut bytes = 0;
                while let Some((index, shards)) = rx.next() {
                    bytes += decoder.push_verified(index, shards, &mut out)?;
                }
                decoder.finish()?;
                out.flush()?;
                Ok(bytes)
            })
            .await;
        if result.is_err() {
            self.metrics().failures.inc();
        }
        result
    }

    /// Fetches `stripes` of a file (stripe 0 only if not `prefetched`), a window at a
    /// time, and hands them in order to `sink` on a blocking thread ([`Incoming`]); the
    /// bytes `sink` wrote.
    async fn fetch_into<F>(
        &self,
        manifest: Manifest,
        (holders, prefetched): (Holders, Option<Prefetched>),
        stripes: Range<u64>,
        sink: F,
    ) -> Result<GetReport, GetError>
    where
        F: FnOnce(&mut Incoming) -> Result<u64, DecodeError> + Send + 'static,
    {
        let window = self.config().window_for(manifest.segment_size());
        let (tx, rx) = mpsc::channel::<(u64, VerifiedStripe)>(window);
        let (done_with_first, first_done) = oneshot::channel();
        let mut incoming = Incoming {
            rx,
            given: false,
            done_with_first: Some(done_with_first),
        };
        let writer = tokio::task::spawn_blocking(move || sink(&mut incoming));

        let slow = Arc::new(Mutex::new(HashSet::new()));
        let (mut prefetched, bad) = match prefetched {
            Some(p) => (Some(p.shards), p.bad_peers),
            None => (None, Vec::new()),
        };
        let bad_peers = Arc::new(Mutex::new(bad));
        let manifest = Arc::new(manifest);
        let holders = Arc::new(holders);
        let mut fetch = |stripe: u64| {
            let files = self.clone();
            let (manifest, holders) = (Arc::clone(&manifest), Arc::clone(&holders));
            let (slow, bad_peers) = (Arc::clone(&slow), Arc::clone(&bad_peers));
            let ready = if stripe == 0 { prefetched.take() } else { None };
            async move {
                let shards = match ready {
                    Some(shards) => shards,
                    None => {
                        files
                            .fetch_stripe(&manifest, &holders, stripe, &slow, &bad_peers)
                            .await?
                    }
                };
                Ok::<_, GetError>((stripe, shards))
            }
        };
        // The first stripe is fetched alone, and the window opens once the decoder is
        // done with it: its shards have the holders' links to themselves, not a window's
        // share of them, and the decoder opens it at once (`Decoder`) with the cores to
        // itself rather than beside the window's transfers and hashing, so the reader's
        // first bytes come after one stripe's transfer and one segment's work.
        let wait = !stripes.is_empty();
        let head = wait.then(|| fetch(stripes.start));
        let first = futures::stream::iter(head).buffered(1);
        let rest = futures::stream::iter(stripes.start.saturating_add(1)..stripes.end)
            .map(fetch)
            .buffered(window);
        // Polled, and so started, once the decoder asks for the stripe after the first
        // or has stopped (its sender dropped).
        let rest = futures::stream::once(async move {
            if wait {
                let _ = first_done.await;
            }
            rest
        })
        .flatten();
        let mut fetches = std::pin::pin!(first.chain(rest));
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
        let written = writer.await;
        if let Some(e) = failure {
            return Err(e);
        }
        let bytes = written.map_err(|source| GetError::TaskFailed {
            task: "decoding",
            source,
        })??;
        let bad_peers = bad_peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(GetReport { bytes, bad_peers })
    }

    /// Stripe 0 fetched from the holders `row` the catalog recorded for it, within the
    /// lookup deadline.
    async fn fetch_recorded(
        &self,
        manifest: &Manifest,
        row: &[HolderList; TOTAL_SHARDS],
        slow: &Mutex<HashSet<PeerId>>,
        bad_peers: &Mutex<Vec<PeerId>>,
    ) -> Result<Result<VerifiedStripe, GetError>, tokio::time::error::Elapsed> {
        let fetch = self.fetch_stripe(manifest, std::slice::from_ref(row), 0, slow, bad_peers);
        tokio::time::timeout(self.config().lookup_deadline, fetch).await
    }

    /// Fetches four verified shards of one stripe: data shards first, from the holders
    /// not known to be slow; a failure, a wrong shard or a delay starts another fetch.
    async fn fetch_stripe(
        &self,
        manifest: &Manifest,
        holders: &[[HolderList; TOTAL_SHARDS]],
        stripe: u64,
        slow: &Mutex<HashSet<PeerId>>,
        bad_peers: &Mutex<Vec<PeerId>>,
    ) -> Result<VerifiedStripe, GetError> {
        let ids = manifest.stripes()[stripe as usize];
        let row = &holders[stripe as usize];
        // Every (shard, holder) option: data shards before parity, this node's own
        // shard first among each (it crosses no network), slow holders last. Any four
        // shards give the stripe back, but with a data shard missing Reed-Solomon
        // rebuilds it: 130 us of CPU for shards of 1 KiB, 380 us for 256 KiB
        // (benches/PROFILE.md, session 25), more than a fetch from another holder.
        let me = self.peer_id();
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
            // Stable: within each pass, data before parity, own before remote, first
            // holder first.
            options.sort_by_key(|(index, peer)| {
                (slow.contains(peer), *index >= DATA_SHARDS, *peer != me)
            });
        }
        let mut shards: VerifiedStripe = Default::default();
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
        let deadline = tokio::time::sleep(self.config().stripe_deadline);
        tokio::pin!(deadline);
        let mut hedge = hedge_timer(self.config().hedge_after);

        // Start as many fetches as shards still needed, skipping shards already held or
        // being fetched.
        let mut launch = |want: usize,
                          shards: &VerifiedStripe,
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
                        Ok(Response::Blob(bytes)) => match VerifiedShard::check(bytes, &ids[index]) {
                            Ok(shard) => {
                                self.metrics().shards_fetched.inc();
                                self.metrics().shard_bytes_fetched.inc_by(shard.bytes().len() as u64);
                                if shards[index].is_none() {
                                    shards[index] = Some(shard);
                                    have += 1;
                                }
                                if took > self.config().hedge_after {
                                    slow.lock().unwrap_or_else(|p| p.into_inner()).insert(peer);
                                }
                                continue;
                            }
                            Err(_) => {
                            warn!(%peer, stripe, index, "peer served a shard that does not match its id; fetching it elsewhere");
                            self.metrics().bad_shards_fetched.inc();
                            bad_peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                            }
                        },
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
        if shards[..DATA_SHARDS].iter().any(Option::is_none) {
            self.metrics().stripes_rebuilt.inc();
        }
        Ok(shards)
    }
}

/// Stripe 0's holders as `placement` recorded them, one per shard index.
fn recorded_row(placement: &Placement) -> [HolderList; TOTAL_SHARDS] {
    std::array::from_fn(|index| placement.holder(0, index).into_iter().collect())
}

/// The timer of a stripe's hedged requests: its first tick a full `period` after it is
/// made. Not `tokio::time::interval` with its first tick awaited: that tick is due at
/// once, but tokio's timer rounds a deadline up to its next millisecond and fires it
/// only when the driver turns, so every get waited 0.75-1.1 ms before its first request
/// (a 4 KiB get's p50 about 2.0 ms instead of 1.2; benches/PROFILE.md, session 27).
fn hedge_timer(period: std::time::Duration) -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + period, period)
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

/// The stripes [`Files::fetch_into`] hands its sink, in order, on a blocking thread.
/// Asking for the next one says the sink is done with the one before: the fetching
/// window opens once it is done with the first.
struct Incoming {
    rx: mpsc::Receiver<(u64, VerifiedStripe)>,
    given: bool,
    done_with_first: Option<oneshot::Sender<()>>,
}

impl Incoming {
    /// The next stripe, waiting for it; `None` once every stripe was given or the
    /// fetch stopped.
    fn next(&mut self) -> Option<(u64, VerifiedStripe)> {
        if self.given
            && let Some(done) = self.done_with_first.take()
        {
            let _ = done.send(());
        }
        let next = self.rx.blocking_recv();
        self.given |= next.is_some();
        next
    }
}

/// Runs `network` (requests to peers) and `cpu` (the unlock of a data key: an envelope's
/// signature check and key exchanges, about 0.2 ms of CPU for a key not opened before) on this
/// task at once, `network` polled first, and `cpu` only after this task has yielded once.
/// The yield matters: the requests wake the swarm task into this worker's LIFO slot,
/// where no other worker can take it, so without it they would leave only after the
/// unlock's CPU (a small get's first read took 0.25 ms longer; benches/PROFILE.md,
/// session 26).
async fn network_first<N: Future, C: Future>(network: N, cpu: C) -> (N::Output, C::Output) {
    let cpu = async {
        tokio::task::yield_now().await;
        cpu.await
    };
    futures::future::join(network, cpu).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    use super::{Incoming, hedge_timer};

    fn stripes_given(
        window: usize,
    ) -> (
        mpsc::Sender<(u64, super::VerifiedStripe)>,
        Incoming,
        oneshot::Receiver<()>,
    ) {
        let (tx, rx) = mpsc::channel(window);
        let (done, first_done) = oneshot::channel();
        let incoming = Incoming {
            rx,
            given: false,
            done_with_first: Some(done),
        };
        (tx, incoming, first_done)
    }

    #[test]
    fn the_window_opens_when_the_sink_asks_for_the_stripe_after_the_first()
    -> Result<(), &'static str> {
        let (tx, mut incoming, mut first_done) = stripes_given(4);
        for index in 0..2 {
            tx.try_send((index, Default::default()))
                .map_err(|_| "no room in the channel")?;
        }
        assert_eq!(incoming.next().map(|(index, _)| index), Some(0));
        // Given the first stripe, and working on it: not done yet.
        assert!(matches!(
            first_done.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(incoming.next().map(|(index, _)| index), Some(1));
        assert_eq!(first_done.try_recv(), Ok(()));
        drop(tx);
        assert!(incoming.next().is_none());
        Ok(())
    }

    #[test]
    fn the_window_opens_when_the_sink_stops() -> Result<(), &'static str> {
        // A sink that fails on the first stripe drops what it was given.
        let (tx, mut incoming, mut first_done) = stripes_given(4);
        tx.try_send((0, Default::default()))
            .map_err(|_| "no room in the channel")?;
        assert!(incoming.next().is_some());
        drop(incoming);
        assert_eq!(
            first_done.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
        // Nothing given before the fetch stopped: asking again says nothing.
        let (tx, mut incoming, mut first_done) = stripes_given(1);
        drop(tx);
        assert!(incoming.next().is_none());
        assert!(incoming.next().is_none());
        assert!(matches!(
            first_done.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        Ok(())
    }

    #[tokio::test]
    async fn the_hedge_timer_first_ticks_a_full_period_after_it_is_made() {
        let mut hedge = hedge_timer(Duration::from_secs(10));
        // `tokio::time::interval`'s first tick would come within about a millisecond.
        let early = tokio::time::timeout(Duration::from_millis(50), hedge.tick()).await;
        assert!(early.is_err(), "the first hedge came at once");
    }
}
