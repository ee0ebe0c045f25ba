//! The plaintext BLAKE3 digest, computed segment by segment on several threads.
//!
//! Segments are powers of two of at least 64 KiB and start at multiples of their size, so
//! every full segment is a complete subtree of BLAKE3's tree. Each worker computes its
//! segment's chaining value; [`TreeHasher`] merges them in order exactly as BLAKE3's own
//! incremental hasher merges chunk chaining values, one level up. The result equals
//! `blake3::hash(whole file)` (tested against it).

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

/// The BLAKE3 contribution of one segment, computed by a worker.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SegmentDigest {
    /// The segment is the whole file: its root hash.
    Root([u8; 32]),
    /// A non-root chaining value of the subtree the segment covers.
    Subtree(ChainingValue),
}

impl SegmentDigest {
    /// Hashes segment `index` of `segment_size` bytes each; `last` marks the final one.
    pub(crate) fn of(plaintext: &[u8], index: u64, segment_size: u64, last: bool) -> Self {
        if index == 0 && last {
            return Self::Root(*blake3::hash(plaintext).as_bytes());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(index * segment_size);
        hasher.update(plaintext);
        Self::Subtree(hasher.finalize_non_root())
    }
}

/// Merges segment digests, given in order, into the file's BLAKE3 hash.
#[derive(Debug, Default)]
pub(crate) struct TreeHasher {
    /// Chaining values of complete subtrees, largest first (one per set bit of `segments`).
    stack: Vec<ChainingValue>,
    /// Segments pushed so far, all known not to be the last.
    segments: u64,
    root: Option<[u8; 32]>,
}

impl TreeHasher {
    /// Adds the next segment's digest. After the last one, [`TreeHasher::finalize`] gives the
    /// hash.
    pub(crate) fn push(&mut self, digest: SegmentDigest, last: bool) {
        match (digest, last) {
            (SegmentDigest::Root(root), _) => self.root = Some(root),
            (SegmentDigest::Subtree(cv), false) => {
                let mut cv = cv;
                self.segments += 1;
                let mut total = self.segments;
                while total & 1 == 0 {
                    if let Some(left) = self.stack.pop() {
                        cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
                    }
                    total >>= 1;
                }
                self.stack.push(cv);
            }
            (SegmentDigest::Subtree(cv), true) => {
                let mut right = cv;
                while let Some(left) = self.stack.pop() {
                    if self.stack.is_empty() {
                        self.root =
                            Some(*merge_subtrees_root(&left, &right, Mode::Hash).as_bytes());
                        return;
                    }
                    right = merge_subtrees_non_root(&left, &right, Mode::Hash);
                }
                // A subtree digest for a last segment with nothing before it cannot be made
                // by `SegmentDigest::of`; leave `root` unset so finalize reports it.
            }
        }
    }

    /// The file's hash, once the last segment was pushed.
    pub(crate) fn finalize(&self) -> Option<[u8; 32]> {
        self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree_hash(data: &[u8], segment: usize) -> Option<[u8; 32]> {
        let mut tree = TreeHasher::default();
        let count = data.len().div_ceil(segment).max(1);
        for i in 0..count {
            let part = &data[(i * segment).min(data.len())..((i + 1) * segment).min(data.len())];
            let last = i + 1 == count;
            tree.push(
                SegmentDigest::of(part, i as u64, segment as u64, last),
                last,
            );
        }
        tree.finalize()
    }

    #[test]
    fn matches_blake3_at_the_edges() {
        let seg = 64 * 1024;
        for len in [
            0,
            1,
            seg - 1,
            seg,
            seg + 1,
            2 * seg,
            3 * seg,
            4 * seg,
            5 * seg + 7,
            8 * seg + 1,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                tree_hash(&data, seg),
                Some(*blake3::hash(&data).as_bytes()),
                "len {len}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn matches_blake3(len in 0usize..(20 * 65536), seed in any::<u8>()) {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            prop_assert_eq!(tree_hash(&data, 65536), Some(*blake3::hash(&data).as_bytes()));
        }
    }
}
