//! The data keys a set of file keys has opened from this node's own envelopes, kept with
//! those keys: a repeated get of a file skips the envelope's signature check and the
//! key's unwrap (together about a fifth of a small get's work on the getting node).
//!
//! Why this weakens nothing:
//! - The memory lives inside [`super::FileKeys`], which a [`super::KeyProvider`] hands out
//!   again only while its keystore has not changed. A rotation or a revocation builds new
//!   keys with an empty memory; the old one goes, zeroized, with the last operation that
//!   holds the old keys.
//! - An entry is found by the file id and the BLAKE3 hash of the envelope's exact bytes: a
//!   new envelope (a re-wrap, a share) is a new entry, checked and opened in full. The id
//!   is the hash of the manifest, which names the envelope's signing authority and seals
//!   the metadata: same id and same bytes, same outcome.
//! - A remembered key is no more exposure than the keys it sits beside, which open every
//!   envelope of the node's files anyway; entries are bounded ([`REMEMBERED`]) and each
//!   data key is zeroized when dropped.

use std::sync::Mutex;

use datamesh_core::{DataKey, FileId, Metadata};

use crate::fifo::FifoMap;

/// Most data keys remembered; the oldest goes first.
pub const REMEMBERED: usize = 1024;

/// A data key opened from an envelope, with what came with it.
#[derive(Clone)]
pub(crate) struct Opened {
    pub(crate) key: DataKey,
    pub(crate) metadata: Metadata,
    /// The envelope's sequence number.
    pub(crate) sequence: u64,
}

/// What an entry is found by: the file and the BLAKE3 hash of the envelope's bytes.
type Entry = (FileId, [u8; 32]);

/// The data keys opened with one set of file keys (see the module's documentation).
pub struct Unlocked {
    opened: Mutex<FifoMap<Entry, Opened>>,
}

impl Default for Unlocked {
    fn default() -> Self {
        Self {
            opened: Mutex::new(FifoMap::new(REMEMBERED)),
        }
    }
}

impl Unlocked {
    /// The key opened before from exactly these envelope bytes of file `id`.
    pub(crate) fn get(&self, id: FileId, envelope: &[u8]) -> Option<Opened> {
        self.lock().get(&entry(id, envelope)).cloned()
    }

    /// Remembers what these envelope bytes of file `id` opened to.
    pub(crate) fn insert(&self, id: FileId, envelope: &[u8], opened: Opened) {
        self.lock().insert(entry(id, envelope), opened);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FifoMap<Entry, Opened>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.opened.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The entry of these envelope bytes of file `id`.
fn entry(id: FileId, envelope: &[u8]) -> Entry {
    (id, *blake3::hash(envelope).as_bytes())
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(sequence: u64) -> Opened {
        Opened {
            key: DataKey::generate(),
            metadata: Metadata {
                name: format!("f{sequence}"),
                size: sequence,
                mtime: None,
                blake3: [0; 32],
            },
            sequence,
        }
    }

    fn id(n: u8) -> FileId {
        FileId::from_bytes([n; 32])
    }

    #[test]
    fn a_key_is_found_only_by_its_file_and_exact_envelope_bytes() {
        let unlocked = Unlocked::default();
        let first = opened(7);
        unlocked.insert(id(1), b"envelope", first.clone());
        let found = unlocked.get(id(1), b"envelope");
        assert!(found.as_ref().map(|o| o.key.to_bytes()) == Some(first.key.to_bytes()));
        assert_eq!(
            found.map(|o| (o.metadata, o.sequence)),
            Some((first.metadata, 7))
        );
        assert!(unlocked.get(id(1), b"envelopf").is_none());
        assert!(unlocked.get(id(2), b"envelope").is_none());
    }

    #[test]
    fn the_oldest_key_goes_past_the_bound() {
        let unlocked = Unlocked::default();
        for n in 0..=REMEMBERED {
            unlocked.insert(id(1), &n.to_le_bytes(), opened(n as u64));
        }
        assert_eq!(unlocked.len(), REMEMBERED);
        assert!(unlocked.get(id(1), &0usize.to_le_bytes()).is_none());
        assert!(unlocked.get(id(1), &1usize.to_le_bytes()).is_some());
        assert!(unlocked.get(id(1), &REMEMBERED.to_le_bytes()).is_some());
        // The same entry again is not a second one.
        unlocked.insert(id(1), &1usize.to_le_bytes(), opened(1));
        assert_eq!(unlocked.len(), REMEMBERED);
        assert!(unlocked.get(id(1), &2usize.to_le_bytes()).is_some());
    }
}
