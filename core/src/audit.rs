//! Storage audits: a holder proves it still has a shard by answering a challenge with one
//! 1 KiB chunk of it and the BLAKE3 chaining values of the sibling subtrees on the chunk's
//! path to the root. The verifier needs only the shard id, which is the plain BLAKE3
//! hash of the shard bytes (a BLAKE3 tree root): it hashes the chunk at its position,
//! merges the siblings up, and compares the root with the id.
//!
//! ```
//! use datamesh_core::ShardId;
//! use datamesh_core::audit::{prove, verify};
//!
//! let shard: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
//! let id = ShardId::of(&shard);
//! let len = shard.len() as u64; // from the manifest's layout
//! let proof = prove(&shard, 0x5eed);
//! assert!(verify(&id, len, 0x5eed, &proof));
//! assert!(!verify(&id, len, 0x5eee, &proof)); // another challenge: another chunk
//! ```
//!
//! Built on `blake3::hazmat` (BLAKE3's own tree API, blake3 >= 1.6, already this crate's
//! hash): no second tree implementation and no new dependency (the `bao`/`bao-tree`
//! crates encode whole outboards, more than one chunk's proof needs). The challenge
//! `nonce` picks the chunk (`nonce mod chunks`), so a holder cannot choose which chunk it
//! answers. The chunk is authenticated by the id alone; which chunk was asked for depends
//! on the shard's length, which the verifier takes from the manifest (every auditor has
//! it: it is where the shard ids come from). A length taken from the holder's answer
//! would let a holder that kept only a complete left subtree (and the right one's
//! chaining value) claim another length whose chunk count steers the challenge into
//! what it kept: the root commits to the right subtree's chaining value, not to its
//! length. A proof is `chunk (<= 1 KiB) + 32 bytes x
//! depth` (depth = ceil(log2(chunks)), 8 for a 256 KiB shard).
//!
//! A proof costs about the same whatever the shard's size, so a small shard's proof is a
//! large share of it (a 1 KiB shard's is the shard). Scheduled audit passes therefore
//! spend on a copy in proportion to its bytes ([`sampled`]): each copy is challenged with
//! probability `len / (AUDIT_BUDGET_DIVISOR x proof_len(len))`, capped at 1, so a pass
//! costs on average at most 1/[`AUDIT_BUDGET_DIVISOR`] (0.78%) of the bytes it covers;
//! copies of 164,864 bytes (161 KiB) and more are challenged every pass, smaller ones
//! less often.
//! A holder cannot tell which of its copies a pass passed over.

use crate::ids::ShardId;
pub use crate::wire::AuditProof;
use crate::wire::MAX_BLOB_LEN;
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

/// BLAKE3's chunk: the unit an audit reveals.
pub const AUDIT_CHUNK: usize = 1024;
/// Most sibling chaining values in a proof: a tree over [`MAX_BLOB_LEN`] bytes is at most
/// this deep.
pub const MAX_PROOF_DEPTH: usize = 15;

/// A scheduled audit pass spends on average at most 1/`AUDIT_BUDGET_DIVISOR` of the bytes
/// of the copies it covers on proofs (1/128: 0.78%).
pub const AUDIT_BUDGET_DIVISOR: u64 = 128;

/// The most bytes a proof of a shard of `len` bytes takes, counted as the auditor counts
/// what it received: the length (8), the chunk, and 32 per sibling (depth
/// `ceil(log2(chunks))` at most; chunks on a shorter path have fewer siblings).
pub fn proof_len(len: u64) -> u64 {
    let chunk = AUDIT_CHUNK as u64;
    if len <= chunk {
        return 8 + len;
    }
    let chunks = len.div_ceil(chunk);
    let depth = u64::from(u64::BITS - (chunks - 1).leading_zeros());
    8 + chunk + 32 * depth
}

/// Whether a scheduled audit pass challenges a copy of `len` bytes, given a uniform
/// random `draw` ([`random_nonce`]): with probability
/// `min(1, len / (AUDIT_BUDGET_DIVISOR x proof_len(len)))`, so the expected proof bytes
/// of a copy are at most `len / AUDIT_BUDGET_DIVISOR`. A copy passed over `k` passes in a
/// row has probability `(1 - p)^k`.
pub fn sampled(len: u64, draw: u64) -> bool {
    let cost = u128::from(AUDIT_BUDGET_DIVISOR) * u128::from(proof_len(len));
    // draw / 2^64 < len / cost
    u128::from(draw) * cost < u128::from(len) << 64
}

/// A fresh challenge from the OS's random generator: a holder cannot guess which chunk
/// it will be asked for.
pub fn random_nonce() -> u64 {
    use rand_core::{OsRng, RngCore};
    OsRng.next_u64()
}

/// Which chunk a challenge picks in a shard of `len` bytes.
pub fn challenged_chunk(nonce: u64, len: u64) -> u64 {
    let chunks = len.div_ceil(AUDIT_CHUNK as u64).max(1);
    nonce % chunks
}

fn subtree_cv(bytes: &[u8], offset: u64) -> ChainingValue {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// The proof that `shard` holds the chunk `nonce` picks: one pass of BLAKE3 over the
/// shard (every sibling subtree hashed once).
pub fn prove(shard: &[u8], nonce: u64) -> AuditProof {
    let len = shard.len() as u64;
    let target = challenged_chunk(nonce, len) * AUDIT_CHUNK as u64;
    let mut siblings = Vec::new();
    let (mut offset, mut data) = (0u64, shard);
    while data.len() > AUDIT_CHUNK {
        let left = left_subtree_len(data.len() as u64) as usize;
        let (l, r) = data.split_at(left);
        if target < offset + left as u64 {
            siblings.push(subtree_cv(r, offset + left as u64));
            data = l;
        } else {
            siblings.push(subtree_cv(l, offset));
            offset += left as u64;
            data = r;
        }
    }
    AuditProof {
        len,
        chunk: data.to_vec(),
        siblings,
    }
}

/// Whether `proof` shows that the holder has the chunk `nonce` picks of the shard `id`
/// of `len` bytes (from the manifest). Never panics, whatever the proof holds.
pub fn verify(id: &ShardId, len: u64, nonce: u64, proof: &AuditProof) -> bool {
    if proof.len != len || proof.len > MAX_BLOB_LEN as u64 || proof.siblings.len() > MAX_PROOF_DEPTH
    {
        return false;
    }
    let len = proof.len;
    if len <= AUDIT_CHUNK as u64 {
        return proof.siblings.is_empty()
            && proof.chunk.len() as u64 == len
            && blake3::hash(&proof.chunk).as_bytes() == id.as_bytes();
    }
    let target = challenged_chunk(nonce, len) * AUDIT_CHUNK as u64;
    // Walk down: at each level, whether the chunk is in the left subtree.
    let mut path = Vec::new();
    let (mut offset, mut size) = (0u64, len);
    while size > AUDIT_CHUNK as u64 {
        let left = left_subtree_len(size);
        if target < offset + left {
            path.push(true);
            size = left;
        } else {
            path.push(false);
            offset += left;
            size -= left;
        }
    }
    if path.len() != proof.siblings.len() || proof.chunk.len() as u64 != size {
        return false;
    }
    let mut cv = subtree_cv(&proof.chunk, offset);
    for (level, (is_left, sibling)) in path.iter().zip(&proof.siblings).enumerate().rev() {
        let (l, r) = if *is_left {
            (&cv, sibling)
        } else {
            (sibling, &cv)
        };
        if level == 0 {
            return merge_subtrees_root(l, r, Mode::Hash).as_bytes() == id.as_bytes();
        }
        cv = merge_subtrees_non_root(l, r, Mode::Hash);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 + 7) as u8).collect()
    }

    #[test]
    fn every_chunk_of_every_shape_proves_and_verifies_against_the_plain_hash() {
        for len in [
            0, 1, 1023, 1024, 1025, 2048, 2049, 3072, 5000, 65_536, 100_001, 262_144,
        ] {
            let bytes = shard(len);
            // The shard id is the plain BLAKE3 hash: the tree root.
            let id = ShardId::of(&bytes);
            assert_eq!(id.as_bytes(), blake3::hash(&bytes).as_bytes());
            let chunks = (len as u64).div_ceil(1024).max(1);
            for nonce in 0..chunks.min(70) {
                let proof = prove(&bytes, nonce * 7 + 3);
                assert!(
                    verify(&id, len as u64, nonce * 7 + 3, &proof),
                    "len {len} nonce {nonce}"
                );
            }
        }
    }

    #[test]
    fn a_lying_holder_fails() {
        let bytes = shard(100_000);
        let id = ShardId::of(&bytes);
        let len = bytes.len() as u64;
        let proof = prove(&bytes, 42);
        assert!(verify(&id, len, 42, &proof));
        // A proof for another chunk, answered to this challenge.
        assert!(!verify(&id, len, 43, &proof));
        // Another shard's proof.
        assert!(!verify(&ShardId::of(b"other"), len, 42, &proof));
        // One flipped bit of the chunk, of a sibling; a wrong length; a missing sibling.
        let mut p = proof.clone();
        p.chunk[5] ^= 1;
        assert!(!verify(&id, len, 42, &p));
        let mut p = proof.clone();
        p.siblings[2][0] ^= 1;
        assert!(!verify(&id, len, 42, &p));
        // A length other than the manifest's, even one whose tree has the same path to
        // the chunk (only a verifier-side length stops a holder steering the challenge).
        let mut p = proof.clone();
        p.len -= 2000;
        assert!(!verify(&id, len, 42, &p));
        let mut p = proof.clone();
        p.siblings.pop();
        assert!(!verify(&id, len, 42, &p));
        // Garbage never panics.
        for len in [0, 1, 1024, u64::MAX] {
            let p = AuditProof {
                len,
                chunk: vec![0; 3],
                siblings: vec![[0; 32]; 40],
            };
            assert!(!verify(&id, len, 1, &p));
            assert!(!verify(&id, p.len, 1, &p));
        }
    }

    #[test]
    fn proof_len_bounds_every_proof_and_is_exact_on_the_deepest_path() {
        for len in [1usize, 1024, 1025, 3000, 4096, 50_000, 262_152] {
            let bytes = shard(len);
            let bound = proof_len(len as u64);
            let mut deepest = 0;
            for nonce in 0..(len.div_ceil(AUDIT_CHUNK) as u64) {
                let p = prove(&bytes, nonce);
                let got = 8 + p.chunk.len() as u64 + 32 * p.siblings.len() as u64;
                assert!(got <= bound, "len {len}, chunk {nonce}: {got} > {bound}");
                deepest = deepest.max(got);
            }
            assert_eq!(deepest, bound, "len {len}");
        }
    }

    #[test]
    fn sampling_spends_at_most_the_budget_per_copy_and_always_audits_big_shards() {
        // A 256 KiB shard's proof is under 1/128 of it: challenged every pass; so is any
        // copy from 164,864 bytes (128 x the 1,288-byte proof of a depth-8 tree) on.
        for draw in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(sampled(262_152, draw) && sampled(164_864, draw));
        }
        assert!(!sampled(164_863, u64::MAX));
        // Smaller shards: challenged with probability len / (128 x proof_len), measured
        // over an even spread of draws.
        for len in [1u64, 1_300, 50_000, 131_072] {
            let draws = 100_000u64;
            let hits = (0..draws)
                .filter(|i| sampled(len, i.wrapping_mul(u64::MAX / draws)))
                .count() as f64;
            let p = len as f64 / (AUDIT_BUDGET_DIVISOR * proof_len(len)) as f64;
            assert!(
                (hits / draws as f64 - p).abs() < 0.001,
                "len {len}: {hits} hits, p {p}"
            );
            // Expected proof bytes per pass: at most the budget's share of the copy.
            assert!(p * proof_len(len) as f64 <= len as f64 / AUDIT_BUDGET_DIVISOR as f64 + 1e-9);
        }
    }

    #[test]
    fn a_proof_costs_under_one_percent_of_the_shard() -> Result<(), postcard::Error> {
        // A 1 MiB segment makes shards of 256 KiB + 8 bytes.
        let bytes = shard(262_152);
        let proof = prove(&bytes, 9);
        let wire = postcard::to_stdvec(&proof)?.len();
        assert!(wire * 100 < bytes.len(), "{wire} bytes");
        // Length (3) + chunk (2 + 1024) + 9 siblings (1 + 9 x 32): 0.50% of the shard.
        assert_eq!(wire, 3 + 2 + 1024 + 1 + 9 * 32);
        Ok(())
    }
}
