//! AES-256-GCM under a file's data key, STREAM-style.
//!
//! Nonces are never chosen by callers: they come from [`Nonce`], which encodes a domain
//! (segment or metadata), the segment counter and a final-segment flag. Because the data
//! key is fresh for every file, (key, nonce) pairs never repeat; because the counter and
//! the final flag are authenticated, reordered, duplicated, dropped or truncated segments
//! fail to open (Hoang, Reyhanitabar, Rogaway, Vizár: *Online Authenticated-Encryption and
//! its Nonce-Reuse Misuse-Resistance*, the STREAM construction; age uses the same).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, UnboundKey};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Bytes of authentication tag appended to every sealed segment.
pub const TAG_LEN: usize = 16;
/// Bytes in a data key.
pub const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;

/// A file's data-encryption key (DEK): 32 random bytes, fresh for every file.
///
/// Zeroized on drop; `Debug` prints `DataKey(..)`; there is no `Display` or `Serialize`.
/// The only way out is [`DataKey::to_bytes`], which returns a zeroizing buffer.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A new random key from the operating system's RNG.
    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Wraps key bytes (e.g. just unwrapped from a key envelope).
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(*bytes)
    }

    /// The key bytes, in a buffer that zeroizes itself.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0)
    }

    pub(crate) fn cipher(&self) -> SegmentCipher {
        // `UnboundKey::new` refuses only a key of the wrong length (ours is always 32
        // bytes); a cipher without a key fails every seal and open.
        SegmentCipher(
            UnboundKey::new(&AES_256_GCM, &self.0)
                .ok()
                .map(LessSafeKey::new),
        )
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// What a nonce seals: the two domains never share a nonce under one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Domain {
    Segment = 0,
    Metadata = 1,
}

/// `domain (1) || 0x0000 (2) || counter, big-endian (8) || final flag (1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    fn new(domain: Domain, counter: u64, last: bool) -> Self {
        let mut n = [0u8; NONCE_LEN];
        n[0] = domain as u8;
        n[3..11].copy_from_slice(&counter.to_be_bytes());
        n[11] = u8::from(last);
        Self(n)
    }

    pub(crate) fn segment(index: u64, last: bool) -> Self {
        Self::new(Domain::Segment, index, last)
    }

    pub(crate) fn metadata() -> Self {
        Self::new(Domain::Metadata, 0, true)
    }
}

/// Authentication failed: wrong key, or the bytes or their position were tampered with.
/// Deliberately opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenError;

/// The cipher library refused to seal: never for a key of 32 bytes and a buffer holding
/// at least a tag and less than AES-GCM's 64 GiB message limit, so a bug if ever seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealError;

/// An AES-256-GCM instance keyed with one file's data key: AWS-LC's (`aws-lc-rs`), whose
/// GHASH runs several blocks at once (ARCHITECTURE.md, "Dependencies replaced"). Its key
/// schedule lives in memory AWS-LC allocated; `OPENSSL_free` zeroizes it when the
/// cipher is dropped. `None` only if the library refused the key: then every seal and
/// open fails.
pub(crate) struct SegmentCipher(Option<LessSafeKey>);

impl fmt::Debug for SegmentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SegmentCipher(..)")
    }
}

impl SegmentCipher {
    /// Seals `buf[..len - TAG_LEN]` in place and writes the tag into the last
    /// `TAG_LEN` bytes.
    ///
    /// # Errors
    /// [`SealError`] if `buf` is shorter than a tag or the library refuses (see there):
    /// then `buf` must not be used.
    pub(crate) fn seal(&self, nonce: Nonce, aad: &[u8], buf: &mut [u8]) -> Result<(), SealError> {
        let key = self.0.as_ref().ok_or(SealError)?;
        let split = buf.len().checked_sub(TAG_LEN).ok_or(SealError)?;
        let (msg, tag_out) = buf.split_at_mut(split);
        let tag = key
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce.0),
                Aad::from(aad),
                msg,
            )
            .map_err(|_| SealError)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `buf` (ciphertext followed by its tag) in place and returns the plaintext.
    pub(crate) fn open<'a>(
        &self,
        nonce: Nonce,
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], OpenError> {
        let key = self.0.as_ref().ok_or(OpenError)?;
        if buf.len() < TAG_LEN {
            return Err(OpenError);
        }
        key.open_in_place(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce.0),
            Aad::from(aad),
            buf,
        )
        .map_err(|_| OpenError)
    }
}

/// Raw AES-256-GCM with a caller-chosen 96-bit nonce, for known-answer tests only: the
/// same code path as [`SegmentCipher`], minus the nonce discipline.
#[cfg(test)]
pub(crate) fn raw_seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<(), SealError> {
    let cipher = DataKey::from_bytes(key).cipher();
    cipher.seal(Nonce(*nonce), aad, buf)
}

/// See [`raw_seal`].
#[cfg(test)]
pub(crate) fn raw_open<'a>(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &'a mut [u8],
) -> Result<&'a mut [u8], OpenError> {
    let cipher = DataKey::from_bytes(key).cipher();
    cipher.open(Nonce(*nonce), aad, buf)
}

#[cfg(test)]
#[path = "aead_kat.rs"]
mod kat;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_layout_is_frozen() {
        assert_eq!(
            Nonce::segment(0x0102_0304_0506_0708, true).0,
            [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1]
        );
        assert_eq!(Nonce::metadata().0, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_ne!(Nonce::segment(0, true), Nonce::metadata());
        assert_ne!(Nonce::segment(7, false), Nonce::segment(7, true));
    }

    #[test]
    fn a_segment_only_opens_at_its_own_position() -> Result<(), Box<dyn std::error::Error>> {
        let key = DataKey::generate();
        let c = key.cipher();
        let mut buf = b"hello, world\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        c.seal(Nonce::segment(3, false), b"", &mut buf)
            .map_err(|_| "seal refused")?;
        for (index, last) in [(2, false), (4, false), (3, true)] {
            let mut copy = buf.clone();
            assert!(c.open(Nonce::segment(index, last), b"", &mut copy).is_err());
        }
        assert!(
            DataKey::generate()
                .cipher()
                .open(Nonce::segment(3, false), b"", &mut buf.clone())
                .is_err()
        );
        assert_eq!(
            c.open(Nonce::segment(3, false), b"", &mut buf)
                .map_err(|_| "open refused")?,
            b"hello, world"
        );
        Ok(())
    }

    #[test]
    fn a_cipher_without_a_key_or_a_buffer_without_room_for_the_tag_fails_closed() {
        let keyless = SegmentCipher(None);
        let mut buf = vec![7u8; 40];
        assert_eq!(
            keyless.seal(Nonce::segment(0, true), b"", &mut buf),
            Err(SealError)
        );
        assert_eq!(buf, vec![7u8; 40], "nothing was sealed");
        assert!(
            keyless
                .open(Nonce::segment(0, true), b"", &mut buf)
                .is_err()
        );

        let c = DataKey::generate().cipher();
        let mut short = vec![0u8; TAG_LEN - 1];
        assert_eq!(c.seal(Nonce::metadata(), b"", &mut short), Err(SealError));
        assert!(c.open(Nonce::metadata(), b"", &mut short).is_err());
        let mut tag_only = vec![0u8; TAG_LEN];
        assert_eq!(c.seal(Nonce::metadata(), b"", &mut tag_only), Ok(()));
        assert_eq!(
            c.open(Nonce::metadata(), b"", &mut tag_only),
            Ok(&mut [][..])
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = DataKey::from_bytes(&[0xab; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        assert!(!format!("{:?}", key.cipher()).contains("ab"));
    }
}
