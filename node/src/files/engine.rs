//! The engine's shared state: what every operation of [`Files`] reaches the network, the
//! stores and the keys through.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datamesh_core::ecies::SecretKey;
use datamesh_core::{
    AuthorityError, AuthorityKey, AuthorityRoot, AuthoritySalt, FileAuthority, HybridSecretKey,
    P256SecretKey, PolicyError, Recipient, RecipientKind, RecipientPolicy, SegmentSize, UnwrapKey,
};
use libp2p::PeerId;

use super::session::{PutSession, Sessions};
use super::unlocked::Unlocked;
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::network::Network;
use crate::serve::Server;
use crate::store::ShardStore;

/// The keys a node uses for its files, read from its keystore when needed (so key
/// changes take effect without a restart).
pub trait KeyProvider: Send + Sync + 'static {
    /// The active file-encryption key (receives the owner's wrap), every key that may
    /// decrypt, and the file-authority roots (derive the keys that sign envelopes). A
    /// provider may hand out the same keys again while its keystore has not changed
    /// (building them expands every hybrid key's ML-KEM half), never after a change: the
    /// data keys they opened are remembered with them ([`FileKeys::unlocked`]).
    ///
    /// # Errors
    /// [`KeyProviderError`] if the keystore cannot be read.
    fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError>;

    /// As [`KeyProvider::file_keys`], with the revoked versions among the keys that may
    /// decrypt: only for one operation the user asked for explicitly (incident recovery:
    /// reading or re-wrapping a file that only a revoked version opens). A provider
    /// should record every call (the keystore adapter writes an audit line). The
    /// default gives the live keys only, for providers that know no revoked keys.
    ///
    /// # Errors
    /// [`KeyProviderError`] if the keystore cannot be read.
    fn file_keys_with_revoked(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        self.file_keys()
    }
}

/// Which key versions an operation may decrypt with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyAccess {
    /// Active and deprecated versions (the default of every operation).
    #[default]
    Live,
    /// Revoked versions too: the explicit override of incident recovery, logged.
    WithRevoked,
}

/// The node's file keys.
#[derive(Debug)]
pub struct FileKeys {
    /// The active key: new files are wrapped to it.
    pub active: SecretKey,
    /// Every key that may open a file (all live versions, the active one included).
    pub decrypt: Vec<SecretKey>,
    /// The hybrid (ML-KEM-768 + secp256k1) file-encryption keys: the active one first
    /// (new files are wrapped to it under the `hybrid` and `pq-required` policies), then
    /// the other live versions (they still open files). Empty for a keystore without one.
    pub hybrid: Vec<HybridSecretKey>,
    /// The NIST P-256 file-encryption keys: the active one first (new files are wrapped
    /// to it under `p256-only`, the fips profile), then the other live versions. Empty for
    /// a keystore without one.
    pub p256: Vec<P256SecretKey>,
    /// The file-authority roots: the active one first (it derives the authority key of
    /// new files), then the older live versions (for files put under them).
    pub authority: Vec<AuthorityRoot>,
    /// The data keys these keys opened from this node's own envelopes (a repeated get
    /// skips the check and the unwrap); empty when built, gone with these keys.
    pub unlocked: Unlocked,
}

impl FileKeys {
    /// The owner's own recipient for a new envelope under `policy`: the active hybrid key
    /// (`hybrid`, `pq-required`), the active P-256 key (`p256-only`) or the active
    /// classical key (`classical`, or `hybrid` with no hybrid key in the keystore).
    ///
    /// # Errors
    /// [`PolicyError::NoHybridKey`] under `pq-required` without a hybrid key;
    /// [`PolicyError::NoP256Key`] under `p256-only` without a P-256 key.
    pub fn owner_recipient(&self, policy: RecipientPolicy) -> Result<Recipient, PolicyError> {
        match (policy.owner_kind(), self.hybrid.first()) {
            (RecipientKind::P256, _) => self
                .p256
                .first()
                .map(|key| Recipient::P256(key.public_key()))
                .ok_or(PolicyError::NoP256Key),
            (RecipientKind::Hybrid, Some(key)) => Ok(Recipient::Hybrid(key.public_key())),
            (RecipientKind::Hybrid, None) if policy == RecipientPolicy::PqRequired => {
                Err(PolicyError::NoHybridKey)
            }
            _ => Ok(Recipient::Classical(self.active.public_key())),
        }
    }

    /// Every key that may open a file, classical, hybrid, then P-256, for
    /// [`datamesh_core::KeyEnvelope::open`].
    pub fn unwrap_keys(&self) -> impl Iterator<Item = &dyn UnwrapKey> {
        self.decrypt
            .iter()
            .map(|k| k as &dyn UnwrapKey)
            .chain(self.hybrid.iter().map(|k| k as &dyn UnwrapKey))
            .chain(self.p256.iter().map(|k| k as &dyn UnwrapKey))
    }

    /// A new file's authority key: the active root with a fresh random salt. `None` if
    /// the keystore has no authority root.
    ///
    /// # Errors
    /// [`AuthorityError::InvalidScalar`] (probability about 2^-128).
    pub fn new_authority(&self) -> Option<Result<AuthorityKey, AuthorityError>> {
        let root = self.authority.first()?;
        Some(AuthorityKey::derive(root, &AuthoritySalt::random()))
    }

    /// The authority key of a file whose manifest commits to `authority`: derived from
    /// whichever root gives that key. `None` if no root of this node does (the file is
    /// not this owner's, or the root version that made it is gone).
    pub fn authority_for(&self, authority: &FileAuthority) -> Option<AuthorityKey> {
        self.authority.iter().find_map(|root| {
            AuthorityKey::derive(root, &authority.salt)
                .ok()
                .filter(|key| key.public() == authority.key)
        })
    }
}

/// A [`KeyProvider`] could not give the keys. It carries the provider's own error (a
/// keystore that cannot be read, has no active key, ...), whose message it shows.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct KeyProviderError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl KeyProviderError {
    /// Wraps the provider's error (any error type, or a message).
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(source.into())
    }

    /// The provider's error, to downcast to its own type.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

/// Put and get settings.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// Stripes of default-size segments being placed or fetched at once; a file of larger
    /// segments has as many bytes in flight, in fewer stripes ([`Self::window_for`]).
    pub window: usize,
    /// Start fetching a spare shard when a stripe is not complete after this long.
    pub hedge_after: Duration,
    /// Give up on a stripe (and the get) after this long.
    pub stripe_deadline: Duration,
    /// Deadline of a lookup (manifest, envelope, has).
    pub lookup_deadline: Duration,
    /// Which recipient kinds new envelopes may wrap to (the `[security]` policy).
    pub recipients: RecipientPolicy,
    /// Where resumable puts keep their state (`put-sessions/` in the node's data
    /// folder, set by `Node::start` when none is given). `None`: puts are not resumable.
    pub put_sessions: Option<PathBuf>,
}

impl FilesConfig {
    /// Stripes in flight for a file of `segment` segments: [`Self::window`] stripes'
    /// bytes at the default segment size, at least one, at most [`Self::window`].
    pub fn window_for(&self, segment: SegmentSize) -> usize {
        let window = self.window.max(1);
        let scaled = window.saturating_mul(SegmentSize::DEFAULT.bytes()) / segment.bytes();
        scaled.clamp(1, window)
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            window: 8,
            hedge_after: Duration::from_millis(1500),
            stripe_deadline: Duration::from_secs(20),
            lookup_deadline: Duration::from_secs(10),
            recipients: RecipientPolicy::default(),
            put_sessions: None,
        }
    }
}

/// The put/get engine of a node. Cheap to clone: every clone shares one state.
#[derive(Clone)]
pub struct Files {
    inner: Arc<Inner>,
}

struct Inner {
    net: Network,
    server: Arc<Server>,
    catalog: Catalog,
    keys: Arc<dyn KeyProvider>,
    metrics: Arc<Metrics>,
    config: FilesConfig,
    /// Held for the whole of a re-encryption: one at a time, so a request repeated while
    /// the first still runs (a client killed and run again) waits for it, then finds the
    /// old file gone instead of making a second new copy.
    reencrypting: tokio::sync::Mutex<()>,
    /// The folder of resumable puts' state, and the sessions running now (one put per
    /// session at a time).
    sessions: Option<Sessions>,
    running_sessions: Mutex<HashSet<PutSession>>,
    /// Key agreements with the owner's recipient made ahead of puts.
    ahead: super::ahead::Ahead,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").finish_non_exhaustive()
    }
}

impl Files {
    /// The engine over a running network and the node's stores.
    pub fn new(
        net: Network,
        server: Arc<Server>,
        catalog: Catalog,
        keys: Arc<dyn KeyProvider>,
        metrics: Arc<Metrics>,
        config: FilesConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                net,
                server,
                catalog,
                keys,
                metrics,
                sessions: config.put_sessions.clone().map(Sessions::new),
                config,
                reencrypting: tokio::sync::Mutex::new(()),
                running_sessions: Mutex::new(HashSet::new()),
                ahead: super::ahead::Ahead::default(),
            }),
        }
    }

    /// Key agreements with the owner's recipient made ahead of puts.
    pub(super) fn ahead(&self) -> &super::ahead::Ahead {
        &self.inner.ahead
    }

    /// The state folder of resumable puts, if the node keeps one.
    pub(super) fn sessions(&self) -> Option<&Sessions> {
        self.inner.sessions.as_ref()
    }

    /// Marks `session` running; false if it already is.
    pub(super) fn start_session(&self, session: PutSession) -> bool {
        let mut running = self
            .inner
            .running_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.insert(session)
    }

    /// Marks `session` no longer running.
    pub(super) fn end_session(&self, session: PutSession) {
        let mut running = self
            .inner
            .running_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.remove(&session);
    }

    /// Serialises re-encryptions (see `Inner::reencrypting`).
    pub(super) fn reencrypting(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.reencrypting
    }

    /// The catalog of files this node has put.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The shard store this node serves to its peers.
    pub fn store(&self) -> &Arc<ShardStore> {
        self.inner.server.store()
    }

    /// The swarm handle.
    pub(crate) fn net(&self) -> &Network {
        &self.inner.net
    }

    /// This node's peer id.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.inner.net.peer_id()
    }

    /// The storage side of this node (serves requests addressed to this node).
    pub fn server(&self) -> &Arc<Server> {
        &self.inner.server
    }

    /// The node's metrics.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Put and get settings.
    pub(crate) fn config(&self) -> &FilesConfig {
        &self.inner.config
    }

    /// The node's file keys, read from the provider now.
    pub(crate) fn file_keys(&self) -> Result<Arc<FileKeys>, KeyProviderError> {
        self.inner.keys.file_keys()
    }

    /// The node's file keys for an operation with the given access; revoked keys only
    /// when asked for explicitly, and then logged.
    pub(crate) fn file_keys_for(
        &self,
        access: KeyAccess,
        operation: &str,
    ) -> Result<Arc<FileKeys>, KeyProviderError> {
        match access {
            KeyAccess::Live => self.file_keys(),
            KeyAccess::WithRevoked => {
                tracing::warn!(
                    operation,
                    "revoked keys allowed for this operation (explicit override)"
                );
                self.inner.keys.file_keys_with_revoked()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use datamesh_core::ParamError;

    use super::*;

    #[test]
    fn larger_segments_keep_the_bytes_in_flight_in_fewer_stripes() -> Result<(), ParamError> {
        let config = FilesConfig::default();
        let size = |bytes| SegmentSize::new(bytes);
        assert_eq!(config.window_for(SegmentSize::DEFAULT), 8);
        assert_eq!(config.window_for(size(2 << 20)?), 4);
        assert_eq!(config.window_for(size(4 << 20)?), 2);
        assert_eq!(config.window_for(SegmentSize::MAX), 1);
        // Smaller segments do not get more stripes in flight than the window.
        assert_eq!(config.window_for(SegmentSize::MIN), 8);
        let zero = FilesConfig {
            window: 0,
            ..FilesConfig::default()
        };
        assert_eq!(zero.window_for(SegmentSize::MAX), 1);
        Ok(())
    }
}
