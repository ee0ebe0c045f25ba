//! 32 secret bytes on the heap: zeroized on drop, never printed, never serialised except
//! by the sealed body's private codec.

use core::fmt;

use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretBox};

/// Length of every secret the keystore holds (master key, ed25519 seed, secp256k1 scalar).
pub(crate) const SECRET_LEN: usize = 32;

/// A 32-byte secret: the master key, a key-encryption key, an ed25519 seed or a
/// secp256k1 scalar. `Debug` prints `Secret32(..)`; there is no `Display`/`Serialize`.
pub(crate) struct Secret32(SecretBox<[u8; SECRET_LEN]>);

impl Secret32 {
    /// Fresh random bytes from the operating system.
    pub(crate) fn random() -> Self {
        Self::init_with(|bytes| OsRng.fill_bytes(bytes))
    }

    /// Fills a zeroed heap buffer in place (the secret never sits on the stack here).
    pub(crate) fn init_with(fill: impl FnOnce(&mut [u8; SECRET_LEN])) -> Self {
        Self(SecretBox::init_with_mut(fill))
    }

    /// A copy of `bytes`.
    pub(crate) fn copy_from(bytes: &[u8; SECRET_LEN]) -> Self {
        Self::init_with(|out| out.copy_from_slice(bytes))
    }

    /// The bytes.
    pub(crate) fn expose(&self) -> &[u8; SECRET_LEN] {
        self.0.expose_secret()
    }

    /// Whether both hold the same bytes (constant time).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            &self.expose()[..],
            &other.expose()[..],
        ))
    }
}

impl Clone for Secret32 {
    fn clone(&self) -> Self {
        Self::copy_from(self.expose())
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// The private serde codec of `Option<Secret32>` inside the sealed body (as postcard bytes).
pub(crate) mod serde_opt {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    use super::{SECRET_LEN, Secret32};

    // Signatures fixed by `#[serde(with)]`.
    #[allow(clippy::ref_option)]
    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Secret32>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_some(&Bytes(secret.expose())),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret32>, D::Error> {
        deserializer.deserialize_option(OptionVisitor)
    }

    struct Bytes<'a>(&'a [u8; SECRET_LEN]);

    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Secret32>;

        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("an optional 32-byte secret")
        }

        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_bytes(BytesVisitor).map(Some)
        }
    }

    struct BytesVisitor;

    impl Visitor<'_> for BytesVisitor {
        type Value = Secret32;

        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("32 secret bytes")
        }

        fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
            let bytes: &[u8; SECRET_LEN] = bytes
                .try_into()
                .map_err(|_| E::invalid_length(bytes.len(), &self))?;
            Ok(Secret32::copy_from(bytes))
        }
    }
}
