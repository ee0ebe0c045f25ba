//! Errors, one enum per operation. Messages are lowercase and say what to do where a user
//! can do something.

use crate::ecies::EciesError;

/// The text form of an id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// A file id must start with `dm1`.
    #[error("not a datamesh file id: it must start with \"dm1\"")]
    MissingPrefix,
    /// Too short or too long.
    #[error("id has {found} characters, expected {expected}: check it was copied whole")]
    WrongLength {
        /// Characters found.
        found: usize,
        /// Characters expected.
        expected: usize,
    },
    /// A character outside the id's alphabet.
    #[error("id contains a character that cannot appear in an id: check for a typo")]
    BadCharacter,
    /// Well-formed but the checksum does not match: almost surely a typo.
    #[error("id checksum does not match: the id is mistyped")]
    ChecksumMismatch,
}

/// An encoding parameter is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// Segment sizes are powers of two from 64 KiB to 16 MiB.
    #[error("segment size {0} bytes is not a power of two between 64 KiB and 16 MiB")]
    SegmentSize(u64),
}

/// Encoding a file into stripes failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Io(#[from] std::io::Error),
    /// [`crate::Encoder::finish`] was called before every stripe was taken.
    #[error("encoder finished with stripes not yet taken: drain the iterator first")]
    StripesPending,
    /// The encoder already failed; its output is incomplete.
    #[error("encoder already failed")]
    AlreadyFailed,
    /// The erasure codec refused its input (a bug: sizes are computed, not given).
    #[error("erasure coding failed: {0}")]
    Erasure(String),
    /// The AES-GCM library refused to seal a segment or the metadata (a bug: keys and
    /// sizes are ours, never given).
    #[error("sealing with AES-256-GCM failed")]
    Seal,
}

/// Rebuilding a file from its stripes failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer than `need` shards of a stripe are present and intact.
    #[error("stripe {stripe}: only {have} of the {need} shards needed are available")]
    InsufficientShards {
        /// Stripe index.
        stripe: u64,
        /// Intact shards present.
        have: usize,
        /// Shards needed (k).
        need: usize,
    },
    /// A segment failed authentication although its shards matched their ids: the file was
    /// built with another key or its manifest was forged.
    #[error("stripe {stripe}: segment failed authentication (tampered data or wrong key)")]
    TamperedSegment {
        /// Stripe index.
        stripe: u64,
    },
    /// The sealed metadata did not open under this data key.
    #[error("file metadata failed authentication (tampered manifest or wrong key)")]
    TamperedMetadata,
    /// Stripes must be given in order.
    #[error("stripe {got} given where stripe {expected} was expected")]
    OutOfOrder {
        /// The stripe expected next.
        expected: u64,
        /// The stripe given.
        got: u64,
    },
    /// The decoder was finished before the last stripe.
    #[error("file is truncated: {have} of {expected} stripes given")]
    Truncated {
        /// Stripes given.
        have: u64,
        /// Stripes in the manifest.
        expected: u64,
    },
    /// Every segment opened but the plaintext digest differs from the sealed metadata.
    #[error("decrypted file does not match its recorded checksum")]
    ChecksumMismatch,
    /// Writing the output failed.
    #[error("writing the output failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A manifest could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Written by a newer (or unknown) format version.
    #[error("unsupported manifest format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// The bytes are not a valid manifest.
    #[error("malformed manifest: {0}")]
    Malformed(&'static str),
}

/// A key envelope could not be parsed, verified or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Written by a newer (or unknown) format version.
    #[error("unsupported key envelope format version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
        /// Version this build reads.
        supported: u8,
    },
    /// The bytes are not a valid envelope.
    #[error("malformed key envelope: {0}")]
    Malformed(&'static str),
    /// The signature does not verify under the file's authority key (from its manifest).
    #[error("key envelope signature is invalid for this file's authority key")]
    BadSignature,
    /// None of the given keys is a recipient of this file.
    #[error("none of the {tried} keys given can open this file: it was not shared with them")]
    NoWrappedKey {
        /// Number of keys tried.
        tried: usize,
    },
    /// A wrapped key addressed to us failed to open.
    #[error("the data key wrapped for this key is damaged: {0}")]
    BadWrappedKey(#[source] EciesError),
    /// A hybrid wrapped key addressed to us failed to open.
    #[error("the data key wrapped for this hybrid key is damaged: {0}")]
    BadHybridWrappedKey(#[source] crate::hybrid::HybridError),
    /// A P-256 wrapped key addressed to us failed to open.
    #[error("the data key wrapped for this P-256 key is damaged: {0}")]
    BadP256WrappedKey(#[source] crate::p256_ecies::P256Error),
    /// Signing with the file's authority key failed (probability about 2^-256).
    #[error("signing the key envelope failed")]
    Signing,
}

/// A file authority key could not be derived or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The derived bytes are not a valid secp256k1 scalar (probability about 2^-128).
    #[error("the derived file authority key is not a valid scalar: use another salt")]
    InvalidScalar,
    /// The bytes are not a compressed secp256k1 point.
    #[error("malformed file authority key")]
    BadPublicKey,
    /// Signing gave r or s zero (probability about 2^-256).
    #[error("signing with the file authority key failed")]
    Signing,
}
