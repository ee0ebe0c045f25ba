//! Stores to one peer that queue up go as one request: [`StoreBatcher`].
//!
//! A put sends each peer one shard per stripe, several stripes at once, so a peer has
//! several stores in flight. Each request costs a stream, a protocol negotiation, two
//! timers and a synced write on the holder, whatever its size (`benches/PROFILE.md`). Up
//! to [`STORES_IN_FLIGHT`] stores go to a peer as they come; the ones that come while
//! those are in flight wait, and when one is answered, all that wait (up to [`MAX_BATCH`]
//! shards and [`MAX_BATCH_BYTES`]) go as one `StoreBatch` (protocol 9), which the holder
//! acknowledges after one synced write. Nothing waits while a slot is free, so a lone store
//! is sent at once, as before. Each caller gets the answer its own `Store` would have had.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use datamesh_core::ShardId;
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::error::{NetworkError, RequestFailure};
use crate::protocol::{BatchShard, MAX_BATCH, Request, Response};

/// Stores (or batches of them) to one peer in flight before the next ones wait. One
/// measured best: 17% less CPU for a 256 MiB put than no batching, where two saved 8%
/// and four nothing (`benches/PROFILE.md`).
pub(super) const STORES_IN_FLIGHT: usize = 1;
/// Most shard bytes in one batch: a shard larger than what is left goes in the next one
/// (or alone). Well within the frame limit and a peer's inbound budget.
pub(super) const MAX_BATCH_BYTES: usize = 4 << 20;

/// Where the answer to one request goes.
pub(super) type Reply = oneshot::Sender<Result<Response, NetworkError>>;

/// Who waits for an outbound request's answer.
#[derive(Debug)]
pub(super) enum Waiting {
    /// The caller of a request that is not a store.
    One(Reply),
    /// The caller of a store to the peer, which holds one of its slots.
    Store(PeerId, Reply),
    /// The callers of a batch's stores, in the batch's order; it holds one slot.
    Batch(PeerId, Vec<Reply>),
}

impl Waiting {
    /// Answers every caller with what `result` means for it (a batch's answer is split
    /// per shard; a refusal of the whole batch or a failure is every shard's). Returns
    /// the peer whose store slot this frees, if any.
    pub(super) fn answer(self, result: Result<Response, NetworkError>) -> Option<PeerId> {
        match self {
            Self::One(reply) => {
                let _ = reply.send(result);
                None
            }
            Self::Store(peer, reply) => {
                let _ = reply.send(result);
                Some(peer)
            }
            Self::Batch(peer, replies) => {
                match result {
                    Ok(Response::BatchStored(outcomes)) if outcomes.len() == replies.len() => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome.into()));
                        }
                    }
                    // A refusal of the whole batch (`Busy`) is each shard's.
                    Ok(Response::Refused(refusal)) => {
                        every(replies, Ok(Response::Refused(refusal)))
                    }
                    Ok(_) => every(
                        replies,
                        Err(NetworkError::Request {
                            peer,
                            reason: RequestFailure::BadAnswer,
                        }),
                    ),
                    Err(failure) => every(replies, Err(failure)),
                }
                Some(peer)
            }
        }
    }
}

/// Sends every caller the same answer.
fn every(replies: Vec<Reply>, answer: Result<Response, NetworkError>) {
    for reply in replies {
        let _ = reply.send(answer.clone());
    }
}

/// One peer's stores: how many slots are taken, and the stores waiting for one.
#[derive(Debug, Default)]
struct Queue {
    in_flight: usize,
    waiting: VecDeque<(BatchShard, Reply)>,
}

/// The per-peer queues of stores (see the module docs). Bounded by its callers: a put
/// has at most its window of stripes in flight, each one store per peer.
#[derive(Debug, Default)]
pub(super) struct StoreBatcher {
    peers: HashMap<PeerId, Queue>,
}

impl StoreBatcher {
    /// A store of `bytes` under `id` to `peer`: the request to send now and who waits for
    /// it, or `None` if it waits for a slot.
    pub(super) fn store(
        &mut self,
        peer: PeerId,
        id: ShardId,
        bytes: Bytes,
        reply: Reply,
    ) -> Option<(Request, Waiting)> {
        let queue = self.peers.entry(peer).or_default();
        if queue.in_flight < STORES_IN_FLIGHT {
            queue.in_flight += 1;
            return Some((Request::Store { id, bytes }, Waiting::Store(peer, reply)));
        }
        queue.waiting.push_back((BatchShard { id, bytes }, reply));
        None
    }

    /// A store or batch to `peer` was answered (or failed): its slot is free, and the
    /// request to send in it, if stores wait: a `Store` for one, a `StoreBatch` for more.
    /// Stores whose callers gave up are dropped unsent.
    pub(super) fn done(&mut self, peer: PeerId) -> Option<(Request, Waiting)> {
        let queue = self.peers.get_mut(&peer)?;
        queue.in_flight = queue.in_flight.saturating_sub(1);
        let mut shards = Vec::new();
        let mut replies = Vec::new();
        let mut bytes = 0usize;
        while let Some((shard, reply)) = queue.waiting.pop_front() {
            if reply.is_closed() {
                continue;
            }
            let full = shards.len() == MAX_BATCH || bytes + shard.bytes.len() > MAX_BATCH_BYTES;
            if !shards.is_empty() && full {
                queue.waiting.push_front((shard, reply));
                break;
            }
            bytes += shard.bytes.len();
            shards.push(shard);
            replies.push(reply);
        }
        if shards.is_empty() {
            if queue.in_flight == 0 {
                self.peers.remove(&peer);
            }
            return None;
        }
        queue.in_flight += 1;
        if shards.len() == 1 {
            let (shard, reply) = (shards.remove(0), replies.remove(0));
            let request = Request::Store {
                id: shard.id,
                bytes: shard.bytes,
            };
            return Some((request, Waiting::Store(peer, reply)));
        }
        Some((
            Request::StoreBatch { shards },
            Waiting::Batch(peer, replies),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Refusal, StoreOutcome};

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    type Outcome = Result<Response, NetworkError>;
    type Answer = oneshot::Receiver<Outcome>;
    /// What a caller's answer must look like.
    type Expected = fn(&Outcome) -> bool;

    fn shard(i: usize, len: usize) -> (ShardId, Bytes) {
        let mut bytes = vec![0u8; len];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        (ShardId::of(&bytes), Bytes::from(bytes))
    }

    fn store(
        batcher: &mut StoreBatcher,
        peer: PeerId,
        i: usize,
        len: usize,
    ) -> (Option<(Request, Waiting)>, Answer) {
        let (id, bytes) = shard(i, len);
        let (reply, answer) = oneshot::channel();
        (batcher.store(peer, id, bytes, reply), answer)
    }

    #[test]
    fn stores_beyond_the_slots_wait_and_go_together_with_one_answer_each() -> TestResult {
        let mut batcher = StoreBatcher::default();
        let (peer, other) = (PeerId::random(), PeerId::random());
        // The first stores go at once, as plain stores.
        let mut sent = Vec::new();
        for i in 0..STORES_IN_FLIGHT {
            let (now, answer) = store(&mut batcher, peer, i, 64);
            let Some((Request::Store { .. }, waiting)) = now else {
                return Err("a store with a free slot waited".into());
            };
            sent.push((waiting, answer));
        }
        // Another peer's slots are its own.
        assert!(store(&mut batcher, other, 99, 64).0.is_some());
        // The next five wait.
        let mut answers = Vec::new();
        for i in 10..15 {
            let (now, answer) = store(&mut batcher, peer, i, 64);
            assert!(now.is_none());
            answers.push(answer);
        }
        // A caller that gave up is not sent for.
        drop(answers.remove(1));
        // One answer frees a slot: the four waiting go as one batch, in order.
        let (waiting, mut answer) = sent.remove(0);
        assert_eq!(waiting.answer(Ok(Response::Stored)), Some(peer));
        assert!(matches!(answer.try_recv()?, Ok(Response::Stored)));
        let Some((Request::StoreBatch { shards }, batch)) = batcher.done(peer) else {
            return Err("no batch".into());
        };
        let expected: Vec<ShardId> = [10, 12, 13, 14].iter().map(|&i| shard(i, 64).0).collect();
        assert_eq!(shards.iter().map(|s| s.id).collect::<Vec<_>>(), expected);
        // Its answer is split, one outcome per caller.
        let refusal = Refusal::Full { used: 1, max: 1 };
        let outcomes = vec![
            StoreOutcome::Stored,
            StoreOutcome::AlreadyHeld,
            StoreOutcome::Refused(refusal.clone()),
            StoreOutcome::Stored,
        ];
        assert_eq!(
            batch.answer(Ok(Response::BatchStored(outcomes))),
            Some(peer)
        );
        let got: Vec<Response> = answers
            .iter_mut()
            .map(|a| a.try_recv().map_err(|_| "no answer")?.map_err(|_| "failed"))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            got,
            [
                Response::Stored,
                Response::AlreadyHeld,
                Response::Refused(refusal),
                Response::Stored
            ]
        );
        // Nothing waits now: the slots free up and the peer is forgotten.
        assert!(batcher.done(peer).is_none());
        for (waiting, _answer) in sent {
            assert_eq!(waiting.answer(Ok(Response::Stored)), Some(peer));
            assert!(batcher.done(peer).is_none());
        }
        assert!(!batcher.peers.contains_key(&peer));
        Ok(())
    }

    #[test]
    fn a_batch_keeps_to_its_bytes_and_count_and_a_lone_waiter_goes_as_a_store() -> TestResult {
        let mut batcher = StoreBatcher::default();
        let peer = PeerId::random();
        for i in 0..STORES_IN_FLIGHT {
            assert!(store(&mut batcher, peer, i, 64).0.is_some());
        }
        // Three shards of 1.5 MiB: two fit in MAX_BATCH_BYTES, the third waits.
        let big = MAX_BATCH_BYTES / 8 * 3;
        let mut answers = Vec::new();
        for i in 10..13 {
            answers.push(store(&mut batcher, peer, i, big).1);
        }
        let Some((Request::StoreBatch { shards }, _)) = batcher.done(peer) else {
            return Err("no batch".into());
        };
        assert_eq!(shards.len(), 2);
        let Some((Request::Store { id, .. }, Waiting::Store(to, _))) = batcher.done(peer) else {
            return Err("the last one is not a plain store".into());
        };
        assert_eq!((id, to), (shard(12, big).0, peer));
        // Never more than MAX_BATCH shards in one batch.
        for i in 100..100 + MAX_BATCH + 3 {
            answers.push(store(&mut batcher, peer, i, 16).1);
        }
        let Some((Request::StoreBatch { shards }, _)) = batcher.done(peer) else {
            return Err("no batch".into());
        };
        assert_eq!(shards.len(), MAX_BATCH);
        Ok(())
    }

    #[test]
    fn a_failed_or_refused_or_malformed_batch_answers_every_caller() -> TestResult {
        let peer = PeerId::random();
        let failure = NetworkError::Stopped;
        let cases: [(Outcome, Expected); 4] = [
            (Err(failure), |r| matches!(r, Err(NetworkError::Stopped))),
            (Ok(Response::Refused(Refusal::Busy)), |r| {
                matches!(r, Ok(Response::Refused(Refusal::Busy)))
            }),
            // One outcome for two shards: the peer's answer does not fit.
            (Ok(Response::BatchStored(vec![StoreOutcome::Stored])), |r| {
                matches!(
                    r,
                    Err(NetworkError::Request {
                        reason: RequestFailure::BadAnswer,
                        ..
                    })
                )
            }),
            (Ok(Response::Stored), |r| r.is_err()),
        ];
        for (result, expected) in cases {
            let (a, mut a_answer) = oneshot::channel();
            let (b, mut b_answer) = oneshot::channel();
            assert_eq!(Waiting::Batch(peer, vec![a, b]).answer(result), Some(peer));
            for answer in [a_answer.try_recv()?, b_answer.try_recv()?] {
                assert!(expected(&answer), "{answer:?}");
            }
        }
        Ok(())
    }
}
