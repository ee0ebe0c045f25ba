//! The limits of a [`PersistentStore`](super::PersistentStore).

use libp2p::kad::K_VALUE;

/// Default for [`PersistentStoreConfig::with_max_records`].
pub const DEFAULT_MAX_RECORDS: usize = 65_536;
/// Default for [`PersistentStoreConfig::with_max_value_bytes`].
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Default of the most distinct keys with provider records (anyone's, not only this
/// node's: `MemoryStore`'s name, `MemoryStore`'s meaning; the node provides one key per
/// stored file, per holder). A provider for a new key beyond it fails with
/// `MaxProvidedKeys`.
pub const DEFAULT_MAX_PROVIDED_KEYS: usize = 1_000_000;

/// Limits of a [`PersistentStore`](super::PersistentStore): much larger than
/// `MemoryStore`'s defaults, still bounded (everything is also held in memory). Providers
/// per key: [`K_VALUE`] (20), Kademlia's replication factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentStoreConfig {
    pub(super) max_records: usize,
    pub(super) max_value_bytes: usize,
    pub(super) max_providers_per_key: usize,
    pub(super) max_provided_keys: usize,
}

impl Default for PersistentStoreConfig {
    fn default() -> Self {
        Self {
            max_records: DEFAULT_MAX_RECORDS,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_providers_per_key: K_VALUE.get(),
            max_provided_keys: DEFAULT_MAX_PROVIDED_KEYS,
        }
    }
}

impl PersistentStoreConfig {
    /// The most value records held; a put of a new key beyond it fails with
    /// `MaxRecords`. Default [`DEFAULT_MAX_RECORDS`] (65 536).
    #[must_use]
    pub fn with_max_records(mut self, max_records: usize) -> Self {
        self.max_records = max_records;
        self
    }

    /// Values of this many bytes *or more* are refused with `ValueTooLarge` (the bound
    /// is exclusive, as in `MemoryStore`). Default [`DEFAULT_MAX_VALUE_BYTES`] (64 KiB).
    #[must_use]
    pub fn with_max_value_bytes(mut self, max_value_bytes: usize) -> Self {
        self.max_value_bytes = max_value_bytes;
        self
    }

    /// Test-only: the most providers kept per key (default [`K_VALUE`]).
    #[cfg(test)]
    #[must_use]
    pub(super) fn with_max_providers_per_key(mut self, max_providers_per_key: usize) -> Self {
        self.max_providers_per_key = max_providers_per_key;
        self
    }

    /// Test-only: the most distinct keys with provider records (default
    /// [`DEFAULT_MAX_PROVIDED_KEYS`]).
    #[cfg(test)]
    #[must_use]
    pub(super) fn with_max_provided_keys(mut self, max_provided_keys: usize) -> Self {
        self.max_provided_keys = max_provided_keys;
        self
    }
}
