//! [`BudgetedCodec`]: the codec of the node's own swarm. It reads the frames of
//! [`ShardCodec`](super::ShardCodec), and holds every inbound request's bytes in the
//! node's [`InboundBudget`]: a permit for the frame is taken after its length is read and
//! before its body is read or allocated; a frame over budget is read and discarded (never
//! kept) and comes out as [`RequestFrame::Busy`], which the node answers with
//! [`Refusal::Busy`](super::Refusal::Busy). The permit travels with the request and then
//! with its answer ([`ResponseFrame`]), and is released once the answer is written.
//!
//! A frame over the size limit or one that does not decode is the peer's fault; the
//! codec reports the peer on a bounded channel (request-response itself does not report a
//! request that failed to read), for the swarm task's per-peer accounting.
//!
//! Each connection's codec is bound to the connection's peer: request-response clones the
//! behaviour's codec once per connection (`handle_established_*_connection`) and that
//! clone once per stream; the swarm's wrapper around the behaviour names the peer in the
//! budget just before the first clone (`InboundBudget::bind`), which [`Clone`] picks up.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use datamesh_core::wire;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::mpsc;

use super::budget::{InboundBudget, OverBudget, Permit};
use super::{
    MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Request, Response, invalid_data, invalid_input, read_body,
    read_len, write_frame,
};

/// A request as the node's codec moves it.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every frame is a request: boxing it would allocate once per inbound \
              request to save about 200 bytes in the rare `Busy` frame"
)]
pub enum RequestFrame {
    /// A request, with the bytes it holds (nothing for one this node sends).
    Request(Request, Permit),
    /// An inbound request whose body was discarded unread because it was over budget.
    Busy(OverBudget),
}

impl From<Request> for RequestFrame {
    /// An outbound request (holds nothing).
    fn from(request: Request) -> Self {
        Self::Request(request, Permit::none())
    }
}

/// An answer as the node's codec moves it, with the bytes it holds until it is written.
#[derive(Debug)]
pub struct ResponseFrame {
    /// The answer.
    pub response: Response,
    /// What it holds of the budget (nothing for one this node reads).
    pub permit: Permit,
}

/// Bytes an answer holds in memory (its payload; small answers a few bytes).
pub fn response_bytes(response: &Response) -> usize {
    const SMALL: usize = 64;
    SMALL
        + match response {
            Response::Blob(bytes) => bytes.len(),
            Response::Has(flags) => flags.len(),
            Response::BatchStored(outcomes) => outcomes.len() * SMALL,
            Response::Envelopes(envelopes) => envelopes.iter().map(|e| e.len() + SMALL).sum(),
            _ => 0,
        }
}

/// The node's codec: see [`crate::protocol`] and this type's `Clone`.
pub struct BudgetedCodec {
    budget: Arc<InboundBudget>,
    peer: Option<PeerId>,
    bad_frames: mpsc::Sender<PeerId>,
}

impl std::fmt::Debug for BudgetedCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetedCodec")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl BudgetedCodec {
    /// The behaviour's codec, not bound to a peer; its clones for connections are. The
    /// peer of a frame over the size limit or that does not decode is sent to
    /// `bad_frames` (dropped if the channel is full).
    pub fn new(budget: Arc<InboundBudget>, bad_frames: mpsc::Sender<PeerId>) -> Self {
        Self {
            budget,
            peer: None,
            bad_frames,
        }
    }

    async fn read_inbound<T>(&mut self, io: &mut T) -> io::Result<RequestFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io, MAX_REQUEST_LEN).await?;
        // While it decodes, the frame and the copies of its `Vec` fields (at most its
        // length) exist; its `Bytes` fields (a shard, a manifest) are slices of the frame.
        match self.budget.try_acquire(self.peer, 2 * len) {
            Ok(mut permit) => {
                let frame = Bytes::from(read_body(io, len).await?);
                let request = wire::decode_request_shared(&frame).map_err(invalid_data)?;
                // The request holds about the frame's length.
                let _ = permit.resize(len);
                Ok(RequestFrame::Request(request, permit))
            }
            Err(over) => {
                discard(io, len).await?;
                Ok(RequestFrame::Busy(over))
            }
        }
    }

    /// The peer this codec's frames are charged to.
    pub fn peer(&self) -> Option<PeerId> {
        self.peer
    }
}

impl Clone for BudgetedCodec {
    /// A connection's codec keeps its peer; the behaviour's takes the peer named in the
    /// budget for the connection being set up.
    fn clone(&self) -> Self {
        Self {
            budget: Arc::clone(&self.budget),
            peer: self.peer.or_else(|| self.budget.bound_peer()),
            bad_frames: self.bad_frames.clone(),
        }
    }
}

/// Reads and discards `len` bytes through a small buffer.
async fn discard<T: AsyncRead + Unpin + Send>(io: &mut T, len: usize) -> io::Result<()> {
    let mut buf = [0u8; 8 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len());
        let n = io.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

impl libp2p::request_response::Codec for BudgetedCodec {
    type Protocol = StreamProtocol;
    type Request = RequestFrame;
    type Response = ResponseFrame;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<RequestFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let read = self.read_inbound(io).await;
        if let (Err(e), Some(peer)) = (&read, self.peer)
            && e.kind() == io::ErrorKind::InvalidData
        {
            let _ = self.bad_frames.try_send(peer);
        }
        read
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ResponseFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io, MAX_RESPONSE_LEN).await?;
        let frame = Bytes::from(read_body(io, len).await?);
        let response = wire::decode_response_shared(&frame).map_err(invalid_data)?;
        Ok(ResponseFrame {
            response,
            permit: Permit::none(),
        })
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RequestFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let RequestFrame::Request(request, _) = request else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a busy marker is not a request to send",
            ));
        };
        let parts = wire::request_parts(&request).map_err(invalid_input)?;
        write_frame(io, &parts, MAX_REQUEST_LEN).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: ResponseFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let ResponseFrame { response, permit } = response;
        let parts = wire::response_parts(&response).map_err(invalid_input)?;
        write_frame(io, &parts, MAX_RESPONSE_LEN).await?;
        drop(response);
        drop(permit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PROTOCOL;
    use datamesh_core::ShardId;
    use futures::executor::block_on;
    use libp2p::request_response::Codec;

    fn store_frame(len: usize) -> io::Result<Vec<u8>> {
        let request = Request::Store {
            id: ShardId::of(b""),
            bytes: vec![5; len].into(),
        };
        let mut wire = Vec::new();
        block_on(super::super::ShardCodec::default().write_request(&PROTOCOL, &mut wire, request))?;
        Ok(wire)
    }

    #[test]
    fn a_request_holds_its_bytes_until_dropped_and_one_over_budget_is_discarded() -> io::Result<()>
    {
        let budget = InboundBudget::exact(5000, 5000);
        let peer = PeerId::random();
        budget.bind(Some(peer));
        let (tx, mut bad) = mpsc::channel(4);
        let mut codec = BudgetedCodec::new(Arc::clone(&budget), tx).clone();
        budget.bind(None);
        assert_eq!(codec.peer(), Some(peer));
        assert_eq!(codec.clone().peer(), Some(peer));

        let wire = store_frame(2000)?;
        let frame = block_on(codec.read_request(&PROTOCOL, &mut &wire[..]))?;
        let RequestFrame::Request(Request::Store { bytes, .. }, permit) = frame else {
            panic!("not kept: {frame:?}");
        };
        assert_eq!(bytes.len(), 2000);
        assert_eq!(budget.used_by(&peer), permit.bytes());
        assert!(permit.bytes() >= 2000);

        // A second one needs twice its frame while it decodes: over this peer's share.
        let mut input = &wire[..];
        let frame = block_on(codec.read_request(&PROTOCOL, &mut input))?;
        assert!(
            matches!(frame, RequestFrame::Busy(OverBudget::Peer)),
            "{frame:?}"
        );
        assert!(input.is_empty(), "the body was not read through");
        drop(permit);
        assert_eq!(budget.used(), 0);
        let frame = block_on(codec.read_request(&PROTOCOL, &mut &wire[..]))?;
        assert!(matches!(frame, RequestFrame::Request(..)));

        // A frame over the limit, or one that does not decode: the peer is reported.
        assert!(bad.try_recv().is_err());
        let over = (MAX_REQUEST_LEN as u32 + 1).to_be_bytes();
        assert!(block_on(codec.read_request(&PROTOCOL, &mut &over[..])).is_err());
        assert_eq!(bad.try_recv().ok(), Some(peer));
        let garbage = [0, 0, 0, 2, 0xff, 0xff];
        assert!(block_on(codec.read_request(&PROTOCOL, &mut &garbage[..])).is_err());
        assert_eq!(bad.try_recv().ok(), Some(peer));
        // A stream that ends early is not the peer's fault.
        assert!(block_on(codec.read_request(&PROTOCOL, &mut &over[..2])).is_err());
        assert!(bad.try_recv().is_err());
        Ok(())
    }

    #[test]
    fn an_answer_holds_its_permit_until_written() -> io::Result<()> {
        let budget = InboundBudget::exact(1000, 1000);
        let mut codec = BudgetedCodec::new(Arc::clone(&budget), mpsc::channel(1).0);
        let mut permit = budget
            .try_acquire(None, 10)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        let response = Response::Blob(vec![1; 100].into());
        permit
            .resize(response_bytes(&response))
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        assert_eq!(budget.used(), 164);
        let mut wire = Vec::new();
        block_on(codec.write_response(&PROTOCOL, &mut wire, ResponseFrame { response, permit }))?;
        assert_eq!(budget.used(), 0);
        let back = block_on(codec.read_response(&PROTOCOL, &mut &wire[..]))?;
        assert_eq!(back.response, Response::Blob(vec![1; 100].into()));
        Ok(())
    }
}
