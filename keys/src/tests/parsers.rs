//! The parsers of untrusted bytes never panic: keystore files, bundles, network copies,
//! sealed shares.

use proptest::prelude::*;

use super::{pw, test_ring, tight};
use crate::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The parsers of bundles, network copies and sealed shares never panic on bytes
    /// that start like the real thing.
    #[test]
    fn random_bundles_copies_and_sealed_shares_never_panic(
        kind in 0u8..4,
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let ring = test_ring();
        let mut bundle = b"DMBACKUP\x02".to_vec();
        bundle.push(kind);
        bundle.extend_from_slice(&tail);
        let password = pw("x");
        prop_assert!(backup::open(&bundle, BackupKey::Password(&password), &tight()).is_err());
        prop_assert!(backup::open(&bundle, BackupKey::Recipient(ring), &tight()).is_err());
        let mut copy = b"DMRECOV\0\x01".to_vec();
        copy.extend_from_slice(&tail);
        prop_assert!(crate::recovery::open_copy(ring.master(), &copy).is_err());
        let text = format!(
            "{SEALED_SHARE_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&tail)
        );
        prop_assert!(ring.open_sealed_share(&text).is_err());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(KeyRing::unseal(&bytes, &Credentials::password(pw("x")), &tight()).is_err());
    }

    #[test]
    fn random_headers_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = b"DMKEYST\0\x01".to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert!(KeyRing::unseal(&bytes, &Credentials::password(pw("x")), &tight()).is_err());
    }
}
