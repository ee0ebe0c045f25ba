//! The owner's side of the node: put and get, sharing, and the parts they are made of.
//! Streams a file through the core encoder and places every stripe on six distinct
//! peers; finds a file's manifest, key envelope and shards again and streams the
//! plaintext out.
//!
//! * `engine`: [`Files`], its settings and the keys it uses ([`KeyProvider`]).
//! * `reach`: one request to a peer (this node served locally), many at once under a
//!   deadline, envelope and announcement fan-outs.
//! * `placement`: the peers nearest to a key that accept a shard or a manifest copy.
//! * `domains`: failure domains, six hosts (IP addresses) for a stripe before a second
//!   shard on one host.
//! * `locate`: a file's manifest, an envelope this node can open, the shards' holders.
//! * `put`, `get`, `share`: the operations, each with its error and report.
//! * `ahead`: key agreements with the owner's recipient made ahead of puts, on a thread
//!   of the lowest priority.
//! * `session`: the state of a resumable put (sealed data key, stripes written ahead,
//!   blobs acknowledged), kept by the node that encrypts it.
//! * `reencrypt`: a file read and stored again under a fresh data key (a new file id),
//!   the old one released (incident response); built on `get` and `put`.
//! * `unlocked`: the data keys a set of file keys opened from this node's own envelopes,
//!   kept with those keys (a repeated get skips the envelope's check and unwrap).
//! * `remove`: the owner's signed orders (removal, lease renewal); the removal of a
//!   file, sent to every possible holder.
//!
//! The checker (`crate::check`) is built on these parts; nothing here knows it.

mod ahead;
mod domains;
mod engine;
mod get;
mod locate;
mod one_stripe;
mod placement;
mod put;
mod reach;
mod reencrypt;
mod remove;
mod session;
mod share;
mod unlocked;

pub use engine::{FileKeys, Files, FilesConfig, KeyAccess, KeyProvider, KeyProviderError};
pub use get::{GetError, GetReport, OpenFile};
pub(crate) use locate::{FindError, Found, HolderList};
pub use placement::MANIFEST_COPIES;
pub use put::{MIN_ENVELOPE_COPIES, MIN_MANIFEST_COPIES, PutError, PutInput, PutReport};
pub use reencrypt::{ReencryptError, ReencryptReport};
pub use remove::{RemoveError, RemoveReport};
pub use session::{MAX_PUT_SESSIONS, PUT_SESSION_TTL, PutSession, SessionError};

/// Largest file a put encodes and a get decodes on its own task ([`PutInput::Bytes`],
/// [`Files::try_read_small`]): one segment of the smallest size, so one stripe, tens of
/// microseconds of work, where a thread would cost a hand-over each way.
pub const SMALL_FILE_BYTES: usize = datamesh_core::SegmentSize::MIN.bytes();
pub use share::{KeyUsageError, RewrapError, RewrapReport};
pub use unlocked::{REMEMBERED, Unlocked};
