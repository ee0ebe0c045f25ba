//! The limits of a [`PersistentStore`](super::PersistentStore).

use libp2p::kad::K_VALUE;

/// Default for [`PersistentStoreConfig::with_max_records`].
pub const DEFAULT_MAX_RECORDS: usize = 65_536;
/// Default for [`PersistentStoreConfig::with_max_value_bytes`].
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;
/// Default of the most distinct keys with provider records of other peers. A provider
/// for a new key beyond it fails with `MaxProvidedKeys`. This node's own records do not
/// count (they have [`DEFAULT_MAX_LOCAL_PROVIDED`]).
pub const DEFAULT_MAX_PROVIDED_KEYS: usize = 131_072;
/// Default of the most provider records of other peers, all keys together.
pub const DEFAULT_MAX_REMOTE_PROVIDERS: usize = 131_072;
/// Default of the most provider records one other peer may have here.
pub const DEFAULT_MAX_RECORDS_PER_PROVIDER: usize = 4_096;
/// Default of the most provider records of this node itself (one per file it holds a
/// part of): reserved, never crowded out by other peers' records.
pub const DEFAULT_MAX_LOCAL_PROVIDED: usize = 1_048_576;
/// Most addresses kept per provider record (the first ones; more are dropped).
pub const MAX_ADDRESSES_PER_RECORD: usize = 4;
/// Longest address kept in a provider record, in bytes of its binary form (longer
/// ones are dropped).
pub const MAX_ADDRESS_LEN: usize = 64;

/// Limits of a [`PersistentStore`](super::PersistentStore): much larger than
/// `MemoryStore`'s defaults, still bounded (everything is also held in memory). Providers
/// per key: [`K_VALUE`] (20), Kademlia's replication factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentStoreConfig {
    pub(super) max_records: usize,
    pub(super) max_value_bytes: usize,
    pub(super) max_providers_per_key: usize,
    pub(super) max_provided_keys: usize,
    pub(super) max_remote_providers: usize,
    pub(super) max_records_per_provider: usize,
    pub(super) max_local_provided: usize,
}

impl Default for PersistentStoreConfig {
    fn default() -> Self {
        Self {
            max_records: DEFAULT_MAX_RECORDS,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_providers_per_key: K_VALUE.get(),
            max_provided_keys: DEFAULT_MAX_PROVIDED_KEYS,
            max_remote_providers: DEFAULT_MAX_REMOTE_PROVIDERS,
            max_records_per_provider: DEFAULT_MAX_RECORDS_PER_PROVIDER,
            max_local_provided: DEFAULT_MAX_LOCAL_PROVIDED,
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

    /// The most provider records of other peers, all keys together; one more fails with
    /// `MaxProvidedKeys`. Default [`DEFAULT_MAX_REMOTE_PROVIDERS`].
    #[must_use]
    pub fn with_max_remote_providers(mut self, max: usize) -> Self {
        self.max_remote_providers = max;
        self
    }

    /// The most provider records one other peer may have here; more are ignored.
    /// Default [`DEFAULT_MAX_RECORDS_PER_PROVIDER`].
    #[must_use]
    pub fn with_max_records_per_provider(mut self, max: usize) -> Self {
        self.max_records_per_provider = max;
        self
    }

    /// The most provider records of this node itself; one more fails with
    /// `MaxProvidedKeys`. Default [`DEFAULT_MAX_LOCAL_PROVIDED`].
    #[must_use]
    pub fn with_max_local_provided(mut self, max: usize) -> Self {
        self.max_local_provided = max;
        self
    }

    /// Test-only: the most providers of other peers kept per key (default [`K_VALUE`]).
    #[cfg(test)]
    #[must_use]
    pub(super) fn with_max_providers_per_key(mut self, max_providers_per_key: usize) -> Self {
        self.max_providers_per_key = max_providers_per_key;
        self
    }

    /// Test-only: the most distinct keys with provider records of other peers (default
    /// [`DEFAULT_MAX_PROVIDED_KEYS`]).
    #[cfg(test)]
    #[must_use]
    pub(super) fn with_max_provided_keys(mut self, max_provided_keys: usize) -> Self {
        self.max_provided_keys = max_provided_keys;
        self
    }
}
