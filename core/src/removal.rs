//! The owner's signed orders about a file: its removal (`datamesh rm`) and the renewal of
//! its lease ([`Renewal`]). Both are an [`OwnerOrder`]; only the signing context differs,
//! so a signature of one kind never verifies as the other.
//!
//! ```
//! # fn main() -> Result<(), datamesh_core::AuthorityError> {
//! use datamesh_core::{AuthorityKey, AuthorityRoot, AuthoritySalt, FileId, Removal, Renewal};
//!
//! let key = AuthorityKey::derive(&AuthorityRoot::from_bytes(&[7; 32]), &AuthoritySalt::random())?;
//! let file = FileId::of_manifest(b"manifest");
//! let removal = Removal::sign(file, 1_700_000_000, &key)?;
//! assert!(removal.verify(&key.public()));
//! // Another file, or another time, does not verify with the same signature.
//! assert!(!Removal::from_parts(file, 1_700_000_001, removal.signature()).verify(&key.public()));
//! // Nor does a removal's signature renew a lease.
//! assert!(!Renewal::from_parts(file, 1_700_000_000, removal.signature()).verify(&key.public()));
//! # Ok(()) }
//! ```
//!
//! An order names the file and the time it was issued (Unix seconds), signed by the
//! file's authority key (the one its manifest commits to) over
//! `context || file id (32) || issued_at (u64 BE)`, with the context
//! `"datamesh remove file v1\0"` for a removal and `"datamesh renew lease v1\0"` for a
//! renewal. A holder checks it against the manifest sent with it and honours it only
//! within [`REMOVAL_WINDOW_SECS`] of its own clock, so a captured order cannot be replayed
//! later (a removal against a copy stored again after the owner removed it, a renewal to
//! keep a file alive after its owner stopped renewing). Format: `docs/format.md`, *File
//! removal* and *Leases*.

use std::marker::PhantomData;

use crate::authority::{AuthorityKey, AuthorityPublic};
use crate::error::AuthorityError;
use crate::ids::FileId;

/// Bytes of an order's signature (ECDSA secp256k1, r || s, low-S).
pub const REMOVAL_SIGNATURE_LEN: usize = 64;
/// How far an order's `issued_at` may be from a holder's clock, either way, in seconds.
pub const REMOVAL_WINDOW_SECS: u64 = 3_600;

/// What an order does: its signing context.
pub trait OrderKind {
    /// The bytes signed before the file id and time.
    const CONTEXT: &'static [u8];
}

/// Remove the file (`datamesh rm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remove;
impl OrderKind for Remove {
    const CONTEXT: &'static [u8] = b"datamesh remove file v1\0";
}

/// Renew the sender's lease on the file's blobs (the owner's self-check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renew;
impl OrderKind for Renew {
    const CONTEXT: &'static [u8] = b"datamesh renew lease v1\0";
}

/// The owner's signed order to remove a file.
pub type Removal = OwnerOrder<Remove>;
/// The owner's signed order to keep its file's blobs for another lease.
pub type Renewal = OwnerOrder<Renew>;

/// The owner's signed order of kind `K` about a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerOrder<K> {
    file: FileId,
    issued_at: u64,
    signature: [u8; REMOVAL_SIGNATURE_LEN],
    kind: PhantomData<K>,
}

impl<K: OrderKind> OwnerOrder<K> {
    /// Signs the order about `file` at `issued_at` (Unix seconds) with its authority key.
    ///
    /// # Errors
    /// [`AuthorityError::Signing`] (probability about 2^-256).
    pub fn sign(file: FileId, issued_at: u64, key: &AuthorityKey) -> Result<Self, AuthorityError> {
        let signature = key.sign(&signed_message(K::CONTEXT, &file, issued_at))?;
        // RFC 6979 signatures from k256 are low-S already; normalise anyway.
        let signature = signature.normalize_s().unwrap_or(signature);
        Ok(Self {
            file,
            issued_at,
            signature: signature.to_bytes().into(),
            kind: PhantomData,
        })
    }

    /// An order as received (unchecked: see [`OwnerOrder::verify`]).
    pub fn from_parts(
        file: FileId,
        issued_at: u64,
        signature: [u8; REMOVAL_SIGNATURE_LEN],
    ) -> Self {
        Self {
            file,
            issued_at,
            signature,
            kind: PhantomData,
        }
    }

    /// The file.
    pub fn file(&self) -> FileId {
        self.file
    }

    /// When it was issued (Unix seconds).
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The signature bytes.
    pub fn signature(&self) -> [u8; REMOVAL_SIGNATURE_LEN] {
        self.signature
    }

    /// Whether the signature is the file's authority's over this kind, file and time. A high-S
    /// signature (a malleated copy) does not verify.
    pub fn verify(&self, authority: &AuthorityPublic) -> bool {
        authority.verifies(
            &signed_message(K::CONTEXT, &self.file, self.issued_at),
            &self.signature,
        )
    }

    /// Whether `issued_at` is within [`REMOVAL_WINDOW_SECS`] of `now` (Unix seconds).
    pub fn is_fresh(&self, now: u64) -> bool {
        now.abs_diff(self.issued_at) <= REMOVAL_WINDOW_SECS
    }
}

fn signed_message(context: &[u8], file: &FileId, issued_at: u64) -> Vec<u8> {
    let mut msg = context.to_vec();
    msg.extend_from_slice(file.as_bytes());
    msg.extend_from_slice(&issued_at.to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::{AuthorityRoot, AuthoritySalt};

    #[test]
    fn only_the_files_authority_signs_a_removal_that_verifies() -> Result<(), crate::AuthorityError>
    {
        let salt = AuthoritySalt::random();
        let owner = AuthorityKey::derive(&AuthorityRoot::from_bytes(&[1; 32]), &salt)?;
        let other = AuthorityKey::derive(&AuthorityRoot::from_bytes(&[2; 32]), &salt)?;
        let file = FileId::of_manifest(b"m");
        let removal = Removal::sign(file, 1_000_000, &owner)?;
        assert!(removal.verify(&owner.public()));
        assert!(!removal.verify(&other.public()));
        assert!(!Removal::sign(file, 1_000_000, &other)?.verify(&owner.public()));
        let moved = Removal::from_parts(FileId::of_manifest(b"n"), 1_000_000, removal.signature());
        assert!(!moved.verify(&owner.public()));
        let mut flipped = removal.signature();
        flipped[10] ^= 1;
        assert!(!Removal::from_parts(file, 1_000_000, flipped).verify(&owner.public()));
        assert!(!Removal::from_parts(file, 1_000_000, [0; 64]).verify(&owner.public()));
        Ok(())
    }

    #[test]
    fn a_renewal_and_a_removal_never_verify_as_each_other() -> Result<(), crate::AuthorityError> {
        let owner = AuthorityKey::derive(
            &AuthorityRoot::from_bytes(&[1; 32]),
            &AuthoritySalt::random(),
        )?;
        let file = FileId::of_manifest(b"m");
        let renewal = Renewal::sign(file, 5_000, &owner)?;
        assert!(renewal.verify(&owner.public()));
        assert!(!Removal::from_parts(file, 5_000, renewal.signature()).verify(&owner.public()));
        let removal = Removal::sign(file, 5_000, &owner)?;
        assert!(!Renewal::from_parts(file, 5_000, removal.signature()).verify(&owner.public()));
        Ok(())
    }

    #[test]
    fn a_removal_is_fresh_only_within_the_window() {
        let removal = Removal::from_parts(FileId::of_manifest(b"m"), 10_000, [0; 64]);
        assert!(removal.is_fresh(10_000));
        assert!(removal.is_fresh(10_000 + REMOVAL_WINDOW_SECS));
        assert!(removal.is_fresh(10_000 - REMOVAL_WINDOW_SECS));
        assert!(!removal.is_fresh(10_001 + REMOVAL_WINDOW_SECS));
        assert!(!removal.is_fresh(9_999 - REMOVAL_WINDOW_SECS));
        assert!(!removal.is_fresh(u64::MAX));
    }
}
