//! Shamir escrow of the master key over GF(2^8) (see `docs/keystore.md`, "Escrow").
//!
//! The master key is split byte by byte: for each byte a random polynomial of degree
//! K - 1 whose constant term is that byte (coefficients uniform from the OS generator),
//! evaluated at x = 1..=N. Any K shares give the key back by Lagrange interpolation at
//! 0; fewer reveal nothing about it. Every share of a set carries the set's id and a
//! commitment to the key (a BLAKE3 derivation keyed by the set id), so shares of
//! different sets, a damaged share or a wrong share give an error, never a wrong key.
//!
//! ```text
//! share  = version 0x01 | set id (16) | index x (1) | K (1) | N (1) | created i64 BE (8)
//!          | commitment (32) | y = f(x) (32) | checksum (4)
//! v2     = version 0x02 | ... as v1 ... | y (32) | network copy file id (32) | checksum (4)
//! commitment = BLAKE3 derive_key("datamesh escrow v1 commitment", set id | master key)
//! checksum   = first 4 bytes of BLAKE3 derive_key("datamesh escrow v1 checksum", bytes before it)
//! text   = "dm-share1-" + base32 (RFC 4648, no padding) of share, in dash-separated groups of 5
//! sealed = "dm-sealed-share1-" + base32 of: contact key id (32) | ECIES(contact public key, share)
//! ```
//!
//! The parts: `gf256` (the field and Shamir's arithmetic on 32 bytes), `share` (the
//! [`Share`] type, its binary and text forms, split and combine), `text` (the lenient
//! base32 text form), `sealed` (shares sealed to a contact's key) and `error`. Nothing
//! here knows the keystore: the operations take the master key, or the contact's keys,
//! as arguments; `Keystore` and `KeyRing` call them with theirs.

mod error;
mod gf256;
mod sealed;
mod share;
mod text;

pub use error::{EscrowError, ShareError};
pub use share::{
    SET_ID_LEN, SHARE_LEN, SHARE_LEN_WITH_COPY, SHARE_VERSION, SHARE_VERSION_WITH_COPY, SetId,
    Share,
};
pub(crate) use share::{combine, split};
pub use text::{SEALED_SHARE_PREFIX, SHARE_PREFIX};
