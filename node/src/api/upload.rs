//! A put's request body as a blocking `Read` for the encoder's thread.
//!
//! A task on the runtime collects the body's chunks into groups of [`GROUP_BYTES`] (the
//! last one shorter) and hands each group over whole, so the encoder's thread wakes once per
//! group rather than once per chunk (hyper hands a body over in chunks of 8-400 KiB;
//! waking a thread per chunk cost a 256 MiB put about 24,000 context switches).
//!
//! A group is a copy of its chunks, not the chunks themselves: a chunk of hyper's may
//! share one allocation with the chunks read after it, so holding a megabyte of chunks
//! could keep many times that allocated (the gateway's peak RSS grew to 427 MiB during a
//! 256 MiB put that way).
//!
//! The end is explicit: the reader returns end of file only after the task saw the body
//! end; a body that fails, or a task that stops without seeing the end, is an error, so a
//! broken upload never reads as a shorter file.

use std::io::{self, Read};

use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::files::PutInput;

/// Bytes collected before a group is handed to the reader (the encoder's segment).
const GROUP_BYTES: usize = 1 << 20;
/// Groups waiting for the reader at most; with the group being collected and the one
/// being read, at most 4 MiB of a body is held here.
const GROUPS_WAITING: usize = 2;

/// One hand-over: some bytes of the body, and whether the body ended after them.
struct Group {
    bytes: Vec<u8>,
    last: bool,
}

/// Reads `body` on this task until it ends or passes `small` bytes: a body that ended is
/// returned whole (a small file is encoded on the put's task); a longer one, or one that
/// failed, becomes an [`UploadReader`] of all of it, the bytes read so far first (and the
/// error where it came). The reader must be read from a blocking thread
/// (`spawn_blocking`), never from a task.
pub(crate) async fn read(body: Body, small: usize) -> PutInput<UploadReader> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let failed = loop {
        match stream.next().await {
            Some(Ok(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > small {
                    break None;
                }
            }
            Some(Err(e)) => break Some(e),
            None => return PutInput::Bytes(bytes),
        }
    };
    let read = futures::stream::iter([Ok(Bytes::from(bytes))]);
    PutInput::Reader(match failed {
        None => reader_of(read.chain(stream)),
        Some(e) => reader_of(read.chain(futures::stream::iter([Err(e)]))),
    })
}

/// Starts reading `stream` on the runtime; the returned reader must be read from a
/// blocking thread (`spawn_blocking`), never from a task.
fn reader_of<S, E>(stream: S) -> UploadReader
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(GROUPS_WAITING);
    tokio::spawn(collect(stream, tx));
    UploadReader {
        rx,
        group: Vec::new(),
        pos: 0,
        ended: false,
    }
}

async fn collect<S, E>(mut stream: S, tx: mpsc::Sender<io::Result<Group>>)
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let mut bytes = Vec::new();
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            // The put stopped reading (it failed): stop reading its body.
            () = tx.closed() => return,
        };
        match next {
            // A chunk that crosses a group's end is split there, its rest starting the
            // next group: a group is filled in the one allocation made for it, never grown
            // (and copied) past it.
            Some(Ok(mut chunk)) => {
                while !chunk.is_empty() {
                    if bytes.capacity() == 0 {
                        bytes.reserve_exact(GROUP_BYTES);
                    }
                    let room = GROUP_BYTES - bytes.len();
                    bytes.extend_from_slice(&chunk.split_to(room.min(chunk.len())));
                    if bytes.len() == GROUP_BYTES {
                        let full = Group {
                            bytes: std::mem::take(&mut bytes),
                            last: false,
                        };
                        if tx.send(Ok(full)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx.send(Err(io::Error::other(e))).await;
                return;
            }
            None => {
                let end = Group {
                    bytes: std::mem::take(&mut bytes),
                    last: true,
                };
                let _ = tx.send(Ok(end)).await;
                return;
            }
        }
    }
}

/// The encoder's side of [`reader`].
pub(crate) struct UploadReader {
    rx: mpsc::Receiver<io::Result<Group>>,
    group: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for UploadReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.group.len() {
                let n = out.len().min(self.group.len() - self.pos);
                out[..n].copy_from_slice(&self.group[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.ended || out.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(group)) => {
                    self.ended = group.last;
                    self.group = group.bytes;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload stopped before its end",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn body_of(chunks: Vec<io::Result<Vec<u8>>>) -> Body {
        Body::from_stream(futures::stream::iter(chunks))
    }

    /// The reader of a body longer than `small` bytes (or failed).
    async fn reader(body: Body, small: usize) -> Result<UploadReader, &'static str> {
        match read(body, small).await {
            PutInput::Reader(reader) => Ok(reader),
            PutInput::Bytes(_) => Err("a body read whole"),
        }
    }

    /// Reads `reader` to its end on a blocking thread, `step` bytes at a time at most.
    async fn read_all(mut reader: UploadReader, step: usize) -> io::Result<Vec<u8>> {
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut buf = vec![0u8; step];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(out);
                }
                out.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .map_err(io::Error::other)?
    }

    #[tokio::test]
    async fn every_byte_arrives_in_order_across_groups_and_small_reads() -> TestResult {
        // Chunks of odd sizes (and an empty one), crossing several group boundaries.
        let data: Vec<u8> = (0..3 * GROUP_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let chunks = data
            .chunks(70_001)
            .map(|c| Ok(c.to_vec()))
            .chain([Ok(Vec::new())])
            .collect();
        // Read whole up to 100,000 bytes first: two chunks, then the rest as it comes.
        let got = read_all(reader(body_of(chunks), 100_000).await?, 4_099).await?;
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
        Ok(())
    }

    #[tokio::test]
    async fn every_group_but_the_last_is_one_allocation_filled_exactly() -> TestResult {
        // Chunks that cross group ends, one longer than two groups, and an empty one.
        let data: Vec<u8> = (0..4 * GROUP_BYTES + 777)
            .map(|i| (i % 253) as u8)
            .collect();
        let sizes = [300_001, 2 * GROUP_BYTES + 5, 0, 65_536];
        let mut chunks = Vec::new();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at == data.len() {
                break;
            }
            let end = (at + size).min(data.len());
            chunks.push(Ok::<_, io::Error>(Bytes::copy_from_slice(&data[at..end])));
            at = end;
        }
        let (tx, mut rx) = mpsc::channel(GROUPS_WAITING);
        let task = tokio::spawn(collect(futures::stream::iter(chunks), tx));
        let mut got = Vec::new();
        let mut groups = 0;
        while let Some(group) = rx.recv().await {
            let group = group?;
            if !group.last {
                // Filled in the allocation made for it: a group grown past it would have
                // been copied into one twice as large.
                assert_eq!(group.bytes.len(), GROUP_BYTES);
                assert_eq!(group.bytes.capacity(), GROUP_BYTES);
            }
            groups += 1;
            got.extend_from_slice(&group.bytes);
            if group.last {
                break;
            }
        }
        task.await?;
        assert_eq!(groups, 5);
        assert!(got == data, "bytes differ");
        Ok(())
    }

    #[tokio::test]
    async fn a_body_within_the_small_size_is_read_whole() -> TestResult {
        let data: Vec<u8> = (0..5_000).map(|i| (i % 251) as u8).collect();
        let chunks = data.chunks(1_000).map(|c| Ok(c.to_vec())).collect();
        match read(body_of(chunks), data.len()).await {
            PutInput::Bytes(got) => assert!(got == data, "bytes differ"),
            PutInput::Reader(_) => return Err("a body of exactly the small size streamed".into()),
        }
        // One byte more: all of it through the reader, the bytes read first included.
        let chunks = data.chunks(1_000).map(|c| Ok(c.to_vec())).collect();
        let got = read_all(reader(body_of(chunks), data.len() - 1).await?, 777).await?;
        assert!(got == data, "bytes differ");
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_body_is_an_empty_file() -> TestResult {
        match read(Body::empty(), 16).await {
            PutInput::Bytes(got) => assert!(got.is_empty()),
            PutInput::Reader(_) => return Err("an empty body streamed".into()),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_body_that_fails_is_an_error_not_a_shorter_file() {
        // Failing while read whole, and failing after.
        for small in [1 << 16, 5] {
            let chunks = vec![
                Ok(vec![1u8; 10]),
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "client went away",
                )),
            ];
            let Ok(reader) = reader(body_of(chunks), small).await else {
                panic!("a failed body read whole");
            };
            match read_all(reader, 1 << 16).await {
                Err(e) => assert!(e.to_string().contains("client went away"), "{e}"),
                Ok(got) => panic!("a failed body read as {} bytes", got.len()),
            }
        }
    }

    #[tokio::test]
    async fn a_collector_gone_without_the_end_is_an_error() -> TestResult {
        let (tx, rx) = mpsc::channel(GROUPS_WAITING);
        let part = Group {
            bytes: b"part".to_vec(),
            last: false,
        };
        tx.send(Ok(part)).await.map_err(|_| "send")?;
        drop(tx);
        let reader = UploadReader {
            rx,
            group: Vec::new(),
            pos: 0,
            ended: false,
        };
        match read_all(reader, 1 << 16).await {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            Ok(got) => panic!("a stopped upload read as {} bytes", got.len()),
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_reader_dropped_early_stops_the_collector() -> TestResult {
        // A body that never ends: the collector must return once the reader is gone.
        let (body_tx, mut body_rx) = mpsc::channel::<io::Result<Vec<u8>>>(1);
        let body = Body::from_stream(futures::stream::poll_fn(move |cx| body_rx.poll_recv(cx)));
        let (tx, rx) = mpsc::channel(GROUPS_WAITING);
        let task = tokio::spawn(collect(body.into_data_stream(), tx));
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(10), task).await??;
        drop(body_tx);
        Ok(())
    }
}
