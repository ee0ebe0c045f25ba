//! The DataMesh data pipeline: a file in, stripes of verified shards out, and back.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use datamesh_core::{
//!     AuthorityKey, AuthorityRoot, AuthoritySalt, Decoder, EncodeOptions, Encoder,
//!     KeyEnvelope, ecies::SecretKey,
//! };
//!
//! let owner = SecretKey::generate();
//! let root = AuthorityRoot::from_bytes(&[42; 32]); // the keystore's file-authority root
//! let authority = AuthorityKey::derive(&root, &AuthoritySalt::random())?;
//! let mut encoder = Encoder::new(&b"hello, datamesh"[..], EncodeOptions::new("hello.txt"));
//! let stripes: Vec<_> = encoder.by_ref().collect::<Result<_, _>>()?;
//! let file = encoder.finish(authority.file_authority())?;
//! let envelope = KeyEnvelope::seal(file.file_id, 1, &file.data_key, &[owner.public_key()], &authority)?;
//!
//! // ... later, with any four of each stripe's six shards (and the envelope checked
//! // against the manifest's authority key):
//! let envelope = KeyEnvelope::from_verified_bytes(&envelope.to_bytes(), &file.manifest.authority().key)?;
//! let key = envelope.open([&owner])?;
//! let mut decoder = Decoder::new(file.manifest, &key)?;
//! let mut out = Vec::new();
//! for stripe in stripes {
//!     let index = stripe.index();
//!     let [a, b, _, d, e, _] = stripe.into_shards();
//!     decoder.push(index, [Some(a), Some(b), None, Some(d), Some(e), None], &mut out)?;
//! }
//! let report = decoder.finish(&mut out)?;
//! assert_eq!(out, b"hello, datamesh");
//! assert_eq!(report.metadata.name, "hello.txt");
//! # Ok(()) }
//! ```
//!
//! This crate does no I/O of its own beyond the `Read`/`Write` it is given, no async, and
//! knows nothing of networks, disks or keystores. Formats: `docs/format.md`.

mod aead;
pub mod audit;
mod authority;
mod decoder;
mod directory;
pub mod ecies;
mod encoder;
mod envelope;
mod erasure;
mod error;
mod hash;
pub mod hybrid;
mod ids;
mod manifest;
pub mod p256_ecies;
mod range;
mod recipient;
mod removal;
pub mod wire;

pub use aead::{DataKey, KEY_LEN, TAG_LEN};
pub use authority::{
    AUTHORITY_KEY_LEN, AUTHORITY_ROOT_LEN, AUTHORITY_SALT_LEN, AuthorityKey, AuthorityPublic,
    AuthorityRoot, AuthoritySalt, FileAuthority,
};
pub use decoder::{BadShard, DecodeReport, Decoder, StripeShards, VerifiedShard, VerifiedStripe};
pub use encoder::{EncodeOptions, EncodedFile, Encoder, Stripe};
pub use envelope::{
    ENVELOPE_VERSION, ENVELOPE_VERSION_P256, ENVELOPE_VERSION_V2, KeyEnvelope, MAX_RECIPIENTS,
    WrappedKey,
};
pub use erasure::{DATA_SHARDS, PARITY_SHARDS, RebuildError, TOTAL_SHARDS, rebuild_shards};
pub use error::{
    AuthorityError, DecodeError, EncodeError, EnvelopeError, IdError, ManifestError, ParamError,
};
pub use hybrid::{HybridError, HybridPublicKey, HybridSecretKey};
pub use ids::{FILE_ID_PREFIX, FileId, ID_LEN, KeyId, ShardId};
pub use manifest::{
    MANIFEST_VERSION, MAX_MANIFEST_LEN, Manifest, Metadata, SegmentSize, StripeLayout,
};
pub use p256_ecies::{P256Error, P256PublicKey, P256SecretKey};
pub use recipient::{
    Encapsulation, FileSecret, PolicyError, Recipient, RecipientError, RecipientKind,
    RecipientPolicy, UnwrapKey,
};
pub use removal::{
    OrderKind, OwnerOrder, REMOVAL_SIGNATURE_LEN, REMOVAL_WINDOW_SECS, Removal, Remove, Renew,
    Renewal,
};

pub use directory::{
    DIRECTORY_MAGIC, DIRECTORY_MAGIC_V2, Directory, DirectoryError, Entry, EntryKind,
    MAX_COMPONENT_LEN, MAX_DIRECTORY_LEN, MAX_ENTRIES, MAX_PATH_LEN, Root, is_plain_relative,
    link_stays_inside,
};
pub use range::{ByteRange, RangeDecoder, RangeError};

#[cfg(test)]
mod tests;
