//! The yamux that libp2p runs here is `patches/yamux`: upstream's 0.14.1 with one change,
//! the connection flushes its socket once all the frames its streams queued are written,
//! not after each. Under Noise a flush is one encrypted frame and one `send`, so the
//! frames a request makes together (its stream's opening, the protocol proposal, the
//! request, the close) leave in one segment instead of one each.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use futures::task::noop_waker_ref;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A socket that counts the flushes that had bytes to send and the bytes, and never has
/// anything to read.
#[derive(Debug, Default)]
struct CountingSocket {
    unflushed: usize,
    flushes: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
}

impl AsyncRead for CountingSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
}

impl AsyncWrite for CountingSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.unflushed += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unflushed > 0 {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.sent.fetch_add(self.unflushed, Ordering::Relaxed);
            self.unflushed = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn the_frames_several_streams_queued_leave_in_one_flush() -> TestResult {
    let socket = CountingSocket::default();
    let (flushes, sent) = (Arc::clone(&socket.flushes), Arc::clone(&socket.sent));
    let mut connection =
        yamux::Connection::new(socket, yamux::Config::default(), yamux::Mode::Client);
    let mut cx = Context::from_waker(noop_waker_ref());
    let mut streams = Vec::new();
    for _ in 0..3 {
        match connection.poll_new_outbound(&mut cx) {
            Poll::Ready(Ok(stream)) => streams.push(stream),
            other => return Err(format!("no outbound stream: {other:?}").into()),
        }
    }
    // Each stream queues a data frame (with its SYN) before the connection runs.
    for stream in &mut streams {
        match Pin::new(stream).poll_write(&mut cx, b"request") {
            Poll::Ready(Ok(7)) => {}
            other => return Err(format!("write not queued: {other:?}").into()),
        }
    }
    assert!(connection.poll_next_inbound(&mut cx).is_pending());
    // Three frames of a 12-byte header and 7 bytes each (and the connection's first
    // ping, a bare header), in one flush; upstream flushed each frame on its own.
    assert!(sent.load(Ordering::Relaxed) >= 3 * (12 + 7));
    assert_eq!(flushes.load(Ordering::Relaxed), 1);
    Ok(())
}
