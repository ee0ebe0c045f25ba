//! Audits: every copy of a file's shards that a holder claims is challenged (a random
//! chunk and its BLAKE3 proof, `datamesh_core::audit`), verified against the shard id
//! alone. Costs the holder one read of the shard and the auditor about 1.3 KiB per
//! 256 KiB shard instead of the shard (`--verify` fetches every copy whole).
//!
//! [`AuditScope::Every`] (`datamesh check --audit`) challenges every copy once.
//! [`AuditScope::Budget`] (the scheduled passes: the self-check and the network repair)
//! challenges each copy with a probability scaled to its bytes
//! (`datamesh_core::audit::sampled`), so a pass costs on average at most 1/128 of the
//! bytes of the copies it covers: small shards, whose proof is a large share of them,
//! are challenged less often instead of costing more per byte.

use datamesh_core::audit::{random_nonce, sampled, verify};
use datamesh_core::{FileId, ShardId};
use futures::stream::StreamExt;
use libp2p::PeerId;
use tracing::warn;

use super::checker::Checker;
use super::error::CheckError;
use crate::files::Found;
use crate::protocol::{Request, Response};

/// Challenges in flight at once.
const AUDITS_IN_FLIGHT: usize = 32;

/// Which copies an audit challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditScope {
    /// Every copy, once (asked for: `datamesh check --audit`).
    Every,
    /// Each copy with a probability scaled to its bytes (scheduled passes).
    Budget,
}

/// What auditing a file's copies found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// The file.
    pub id: FileId,
    /// Copies challenged (one per shard per holder that said it holds it, or a sample of
    /// them under [`AuditScope::Budget`]).
    pub challenged: u64,
    /// Bytes of every copy the pass covered, challenged or passed over by the sampling
    /// (the proof bytes are counted against these).
    pub scope_bytes: u64,
    /// Copies whose proof verified.
    pub passed: u64,
    /// Copies whose holder answered with a wrong proof, or no longer had the shard.
    pub failed: Vec<(PeerId, ShardId)>,
    /// Copies whose holder did not answer (or was busy).
    pub unanswered: u64,
    /// Bytes of proofs received (chunk, siblings, length).
    pub proof_bytes: u64,
    /// Bytes of the copies proved: what fetching them whole would have moved.
    pub shard_bytes: u64,
}

impl Checker {
    /// Challenges every copy of the file's shards found on its holders once.
    ///
    /// # Errors
    /// [`CheckError::NotFound`] when no reachable peer holds the manifest.
    pub async fn audit(&self, id: FileId) -> Result<AuditReport, CheckError> {
        self.audit_within(id, AuditScope::Every).await
    }

    /// Challenges the copies of the file's shards found on its holders that `scope`
    /// picks.
    ///
    /// # Errors
    /// [`CheckError::NotFound`] when no reachable peer holds the manifest.
    pub async fn audit_within(
        &self,
        id: FileId,
        scope: AuditScope,
    ) -> Result<AuditReport, CheckError> {
        let files = &self.files;
        let Found {
            placement,
            peers,
            manifest,
        } = files.find(id).await?;
        let (holders, _) = files.locate(&manifest, &peers, placement.as_ref()).await;
        let mut copies: Vec<(PeerId, ShardId, u64)> = Vec::new();
        for (stripe, row) in holders.iter().enumerate() {
            let ids = manifest.stripes()[stripe];
            let len = manifest
                .layout(stripe as u64)
                .map_or(0, |l| l.shard_len as u64);
            for (index, list) in row.iter().enumerate() {
                copies.extend(list.iter().map(|p| (*p, ids[index], len)));
            }
        }
        let scope_bytes: u64 = copies.iter().map(|(_, _, len)| len).sum();
        if scope == AuditScope::Budget {
            copies.retain(|(_, _, len)| sampled(*len, random_nonce()));
        }
        let metrics = files.metrics();
        metrics.audit_scope_bytes.inc_by(scope_bytes);
        let deadline = files.config().lookup_deadline;
        let mut report = AuditReport {
            id,
            challenged: copies.len() as u64,
            scope_bytes,
            passed: 0,
            failed: Vec::new(),
            unanswered: 0,
            proof_bytes: 0,
            shard_bytes: 0,
        };
        let mut answers = futures::stream::iter(copies)
            .map(|(peer, shard, len)| {
                let files = files.clone();
                async move {
                    let nonce = random_nonce();
                    let request = Request::Audit { id: shard, nonce };
                    let answer = tokio::time::timeout(deadline, files.send(peer, request)).await;
                    (peer, shard, len, nonce, answer.ok().and_then(Result::ok))
                }
            })
            .buffer_unordered(AUDITS_IN_FLIGHT);
        while let Some((peer, shard, len, nonce, answer)) = answers.next().await {
            match answer {
                Some(Response::Proof(proof)) => {
                    let proof_len = 8 + proof.chunk.len() as u64 + 32 * proof.siblings.len() as u64;
                    report.proof_bytes += proof_len;
                    metrics.audit_proof_bytes.inc_by(proof_len);
                    if verify(&shard, len, nonce, &proof) {
                        report.passed += 1;
                        report.shard_bytes += len;
                        metrics.audit_shard_bytes.inc_by(len);
                        metrics.audits_passed.inc();
                    } else {
                        warn!(%peer, shard = %shard.short(), "a holder failed an audit: wrong proof");
                        report.failed.push((peer, shard));
                        metrics.audits_failed.inc();
                    }
                }
                Some(Response::NotFound | Response::Refused(crate::protocol::Refusal::Corrupt)) => {
                    warn!(%peer, shard = %shard.short(), "a holder failed an audit: shard gone or corrupt");
                    report.failed.push((peer, shard));
                    metrics.audits_failed.inc();
                }
                _ => report.unanswered += 1,
            }
        }
        Ok(report)
    }
}
