//! Re-encryption (incident response): one of this node's files is read (get) and stored
//! again (put) under a fresh data key, streaming, so it gets new shards and a new file
//! id; the catalog then forgets the old file and the old shards and manifest copies are
//! released with `Delete` to their holders. Whoever holds an old key and the old
//! envelopes learns nothing of the new file: its data key was never wrapped to them.
//!
//! The decoder's output is piped into the encoder's input through a bounded channel
//! ([`pipe`]); the pipe's end is marked only once the decoder has verified the whole
//! file, so a read that fails part-way makes the put fail (and clean up) instead of
//! storing a truncated copy.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use datamesh_core::{FileId, Recipient, ShardId};
use futures::stream::StreamExt;
use libp2p::PeerId;
use tokio::task::JoinError;
use tracing::{info, warn};

use super::engine::{Files, KeyAccess};
use super::get::GetError;
use super::put::PutError;
use crate::catalog::CatalogError;
use crate::protocol::{Request, Response};

/// Bytes per chunk of the pipe between the decoder and the encoder.
const PIPE_CHUNK: usize = 256 * 1024;
/// Chunks in the pipe at most (so at most 2 MiB of plaintext wait between the two).
const PIPE_CHUNKS: usize = 8;
/// Deletes of old shards sent at once.
const RELEASE_DELETES: usize = 32;
/// Deadline of each delete of an old shard.
const RELEASE_DEADLINE: Duration = Duration::from_secs(10);

/// What a re-encryption did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReencryptReport {
    /// The file it replaced (now gone from the catalog).
    pub old: FileId,
    /// The new file: new data key, new shards.
    pub new: FileId,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes of the new file.
    pub stripes: u64,
    /// Old shard and manifest copies whose holders confirmed the delete.
    pub released: u64,
    /// Old copies whose delete failed or went unanswered (their lease ends them).
    pub release_failures: u64,
}

/// A re-encryption failed; the old file is unchanged and still in the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReencryptError {
    /// The file is not in this node's catalog: only the node that put a file re-encrypts it.
    #[error(
        "file {0} not found in this node's catalog: only the node that put a file can re-encrypt it"
    )]
    NotFound(FileId),
    /// Reading the old file failed.
    #[error("reading {file}: {source}")]
    Get {
        /// The old file.
        file: FileId,
        /// Why.
        source: GetError,
    },
    /// Storing the new copy failed (what it stored was deleted again).
    #[error("storing the new copy of {file}: {source}")]
    Put {
        /// The old file.
        file: FileId,
        /// Why.
        source: PutError,
    },
    /// The catalog could not be read or written.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A blocking task (a catalog read or write) panicked or was cancelled.
    #[error("re-encrypt: the {task} task failed: {source}")]
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
        /// Why it ended.
        source: JoinError,
    },
}

impl Files {
    /// Re-encrypts one of this node's files under a fresh data key: reads it (with the
    /// keys `access` allows) while storing it again, wrapped to the active key and to
    /// every key it was shared with; then forgets the old file and asks its holders to
    /// delete the old shards and manifest copies. Returns the new file id.
    ///
    /// # Errors
    /// [`ReencryptError`]; on any error before the new copy is in the catalog the old
    /// file stays as it was.
    pub async fn reencrypt(
        &self,
        id: FileId,
        access: KeyAccess,
    ) -> Result<ReencryptReport, ReencryptError> {
        let _one_at_a_time = self.reencrypting().lock().await;
        let catalog = self.catalog().clone();
        let (entry, placement) = tokio::task::spawn_blocking(move || {
            Ok::<_, CatalogError>((catalog.get(&id)?, catalog.placement(&id)?))
        })
        .await
        .map_err(|source| ReencryptError::TaskFailed {
            task: "catalog read",
            source,
        })??;
        let entry = entry.ok_or(ReencryptError::NotFound(id))?;
        let file = self
            .open_with(id, access)
            .await
            .map_err(|source| ReencryptError::Get { file: id, source })?;
        let manifest = file.manifest.clone();
        let holders = file.holders.clone();
        let name = file.metadata.name.clone();
        let mtime = file.metadata.mtime;
        let recipients: Vec<Recipient> = entry
            .shared_with
            .iter()
            .filter_map(|h| h.parse().ok())
            .collect();
        let (writer, reader) = pipe();
        let (read, put) = tokio::join!(
            self.read(file, writer),
            self.put_with_mtime(reader, name, mtime, recipients)
        );
        if let Err(source) = read {
            if let Ok(report) = &put {
                // Cannot happen (the pipe ends only after the read verified the file);
                // the new copy is a whole file anyway.
                warn!(old = %id, new = %report.id, "re-encrypt: the read failed after the put completed");
            }
            return Err(ReencryptError::Get { file: id, source });
        }
        let report = put.map_err(|source| ReencryptError::Put { file: id, source })?;

        let catalog = self.catalog().clone();
        tokio::task::spawn_blocking(move || catalog.remove(&id))
            .await
            .map_err(|source| ReencryptError::TaskFailed {
                task: "catalog write",
                source,
            })??;

        // The old copies: every shard at every holder found, and the manifest (stored
        // under the file id) at every peer that may hold it.
        let mut releases: Vec<(PeerId, ShardId)> = Vec::new();
        for (stripe, row) in manifest.stripes().iter().zip(&holders) {
            for (shard, peers) in stripe.iter().zip(row) {
                releases.extend(peers.iter().map(|p| (*p, *shard)));
            }
        }
        let manifest_id = ShardId::from_bytes(*id.as_bytes());
        let mut manifest_peers = self.file_peers(id, placement.as_ref()).await;
        manifest_peers.sort();
        manifest_peers.dedup();
        releases.extend(manifest_peers.into_iter().map(|p| (p, manifest_id)));
        let (released, release_failures) = self.release(releases).await;
        info!(old = %id, new = %report.id, released, release_failures, "re-encrypted");
        Ok(ReencryptReport {
            old: id,
            new: report.id,
            size: report.size,
            stripes: report.stripes,
            released,
            release_failures,
        })
    }

    /// Asks every holder to delete its copy, concurrently and each bounded in time.
    /// Returns (confirmed, failed or unanswered).
    async fn release(&self, copies: Vec<(PeerId, ShardId)>) -> (u64, u64) {
        futures::stream::iter(copies)
            .map(|(peer, id)| {
                let files = self.clone();
                async move {
                    let answer =
                        tokio::time::timeout(RELEASE_DEADLINE, files.send(peer, Request::Delete { id }))
                            .await;
                    match answer {
                        Ok(Ok(Response::Done)) => true,
                        other => {
                            warn!(%peer, shard = %id.short(), "could not release an old copy: {other:?}");
                            false
                        }
                    }
                }
            })
            .buffer_unordered(RELEASE_DELETES)
            .fold((0, 0), |(done, failed), ok| async move {
                if ok { (done + 1, failed) } else { (done, failed + 1) }
            })
            .await
    }
}

/// One message of the pipe.
enum Chunk {
    Data(Vec<u8>),
    /// The writer's side verified the whole file: the input ends here.
    End,
}

/// A bounded pipe from the decoder (a `Write`) to the encoder (a `Read`).
fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(PIPE_CHUNKS);
    (
        PipeWriter {
            tx,
            buf: Vec::with_capacity(PIPE_CHUNK),
        },
        PipeReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            ended: false,
        },
    )
}

/// The decoder's side. `flush` marks the end: the get flushes its output only after
/// the decoder verified the whole file (every segment and the file's BLAKE3).
struct PipeWriter {
    tx: SyncSender<Chunk>,
    buf: Vec<u8>,
}

impl PipeWriter {
    fn send(&self, chunk: Chunk) -> io::Result<()> {
        self.tx
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the new copy's put stopped"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIPE_CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
            self.send(Chunk::Data(full))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.send(Chunk::Data(rest))?;
        }
        self.send(Chunk::End)
    }
}

/// The encoder's side: ends cleanly only at [`Chunk::End`]; a writer gone without it
/// (the read failed) is an error, so the put fails.
struct PipeReader {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(data)) => {
                    self.chunk = data;
                    self.pos = 0;
                }
                Ok(Chunk::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file being re-encrypted could not be read in full",
                    ));
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipe_ends_only_when_the_writer_flushed() -> io::Result<()> {
        let (mut writer, mut reader) = pipe();
        let data: Vec<u8> = (0..PIPE_CHUNK * 2 + 5).map(|i| i as u8).collect();
        let sent = data.clone();
        let thread = std::thread::spawn(move || -> io::Result<()> {
            writer.write_all(&sent)?;
            writer.flush()
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got)?;
        thread
            .join()
            .map_err(|_| io::Error::other("writer panicked"))??;
        assert_eq!(got, data);

        // A writer dropped without its flush (the read failed): the reader errs, even
        // after a whole number of chunks went through.
        let (mut writer, mut reader) = pipe();
        let thread = std::thread::spawn(move || writer.write_all(&vec![7u8; PIPE_CHUNK]));
        let mut got = Vec::new();
        let err = reader.read_to_end(&mut got).err();
        thread
            .join()
            .map_err(|_| io::Error::other("writer panicked"))??;
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(got.len(), PIPE_CHUNK);
        Ok(())
    }
}
