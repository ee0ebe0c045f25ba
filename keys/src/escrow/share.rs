//! One share of the master key: its binary form (laid out in the `escrow` module's
//! documentation), its text form, and the escrow operations that make a set of shares
//! from a secret and combine them back.

use core::fmt;

use rand_core::{OsRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::ShareError;
use super::gf256::{combine_bytes, split_bytes};
use super::text::{
    SEALED_SHARE_PREFIX, SHARE_PREFIX, decode_text, grouped, starts_with_ignore_case,
};
use crate::secret::{SECRET_LEN, Secret32};

/// The share format version of a share without a network copy (version 2 adds the file
/// id of the keystore's network copy; this build reads and writes both).
pub const SHARE_VERSION: u8 = 1;
/// The share format version that carries the file id of the keystore's network copy.
pub const SHARE_VERSION_WITH_COPY: u8 = 2;
/// Length of a set id.
pub const SET_ID_LEN: usize = 16;

const COMMITMENT_CONTEXT: &str = "datamesh escrow v1 commitment";
const CHECKSUM_CONTEXT: &str = "datamesh escrow v1 checksum";
const CHECKSUM_LEN: usize = 4;
const BODY_LEN: usize = 1 + SET_ID_LEN + 3 + 8 + 32 + SECRET_LEN;
/// Length of a version 1 share in bytes.
pub const SHARE_LEN: usize = BODY_LEN + CHECKSUM_LEN;
/// Length of a version 2 share (with the network copy's file id) in bytes.
pub const SHARE_LEN_WITH_COPY: usize = SHARE_LEN + 32;

/// An escrow set id: 16 random bytes, new at every split.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetId([u8; SET_ID_LEN]);

impl SetId {
    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; SET_ID_LEN] {
        &self.0
    }

    /// The first 8 hex characters (for file names and logs).
    #[must_use]
    pub fn short(&self) -> String {
        self.to_string().chars().take(8).collect()
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SetId({self})")
    }
}

/// One share of the master key. `Debug` does not print the share value; there is no
/// `Serialize`; the text form ([`Share::to_text`]) is what the user keeps.
#[derive(Clone)]
pub struct Share {
    set: SetId,
    index: u8,
    threshold: u8,
    shares: u8,
    created: i64,
    commitment: [u8; 32],
    value: Zeroizing<[u8; SECRET_LEN]>,
    network_copy: Option<[u8; 32]>,
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("set", &self.set)
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .field("shares", &self.shares)
            .field("created", &self.created)
            .field("network_copy", &self.network_copy.is_some())
            .finish_non_exhaustive()
    }
}

fn commitment(set: &SetId, secret: &Secret32) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(COMMITMENT_CONTEXT);
    hasher.update(&set.0);
    hasher.update(secret.expose());
    let out = *hasher.finalize().as_bytes();
    // Clears the chunk buffer, which held the key (blake3 has no zeroize feature on).
    hasher.reset();
    out
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = blake3::Hasher::new_derive_key(CHECKSUM_CONTEXT)
        .update(body)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest.as_bytes()[..CHECKSUM_LEN]);
    out
}

impl Share {
    /// The set this share belongs to.
    #[must_use]
    pub fn set(&self) -> SetId {
        self.set
    }

    /// Its index x (1..=N).
    #[must_use]
    pub fn index(&self) -> u8 {
        self.index
    }

    /// K: how many shares recover the key.
    #[must_use]
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// N: how many shares the set has.
    #[must_use]
    pub fn shares(&self) -> u8 {
        self.shares
    }

    /// When the set was made (unix seconds).
    #[must_use]
    pub fn created(&self) -> i64 {
        self.created
    }

    /// The file id (32 bytes) of the keystore's network copy, if the split stored one.
    #[must_use]
    pub fn network_copy(&self) -> Option<[u8; 32]> {
        self.network_copy
    }

    /// The binary form (see the module documentation), in a zeroizing buffer.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(SHARE_LEN_WITH_COPY));
        out.push(if self.network_copy.is_some() {
            SHARE_VERSION_WITH_COPY
        } else {
            SHARE_VERSION
        });
        out.extend_from_slice(&self.set.0);
        out.extend_from_slice(&[self.index, self.threshold, self.shares]);
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.value[..]);
        if let Some(copy) = &self.network_copy {
            out.extend_from_slice(copy);
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses the binary form; checks version, checksum and field bounds.
    ///
    /// # Errors
    ///
    /// [`ShareError::Malformed`], [`ShareError::UnsupportedVersion`],
    /// [`ShareError::Checksum`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShareError> {
        if bytes.len() != SHARE_LEN && bytes.len() != SHARE_LEN_WITH_COPY {
            return Err(ShareError::Malformed {
                problem: format!(
                    "{} bytes (expected {SHARE_LEN} or {SHARE_LEN_WITH_COPY})",
                    bytes.len()
                ),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if !bool::from(checksum(body).ct_eq(sum)) {
            return Err(ShareError::Checksum);
        }
        let network_copy = match body[0] {
            SHARE_VERSION if body.len() == BODY_LEN => None,
            SHARE_VERSION_WITH_COPY if body.len() == BODY_LEN + 32 => {
                let mut copy = [0u8; 32];
                copy.copy_from_slice(&body[BODY_LEN..]);
                Some(copy)
            }
            SHARE_VERSION | SHARE_VERSION_WITH_COPY => {
                return Err(ShareError::Malformed {
                    problem: format!("version {} share of {} bytes", body[0], bytes.len()),
                });
            }
            version => return Err(ShareError::UnsupportedVersion { version }),
        };
        let mut set = [0u8; SET_ID_LEN];
        set.copy_from_slice(&body[1..1 + SET_ID_LEN]);
        let rest = &body[1 + SET_ID_LEN..];
        let (index, threshold, shares) = (rest[0], rest[1], rest[2]);
        let mut created = [0u8; 8];
        created.copy_from_slice(&rest[3..11]);
        let mut commitment = [0u8; 32];
        commitment.copy_from_slice(&rest[11..43]);
        let mut value = Zeroizing::new([0u8; SECRET_LEN]);
        value.copy_from_slice(&rest[43..43 + SECRET_LEN]);
        if !(2..=shares).contains(&threshold) || index == 0 || index > shares {
            return Err(ShareError::Malformed {
                problem: format!("share {index} of a {threshold}-of-{shares} set"),
            });
        }
        Ok(Self {
            set: SetId(set),
            index,
            threshold,
            shares,
            created: i64::from_be_bytes(created),
            commitment,
            value,
            network_copy,
        })
    }

    /// The text form: `dm-share1-` and the base32 of the bytes in groups of 5.
    #[must_use]
    pub fn to_text(&self) -> Zeroizing<String> {
        let encoded = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(&self.to_bytes()));
        grouped(SHARE_PREFIX, &encoded)
    }

    /// Parses the text form. Case, spaces, line breaks and dashes are ignored after the
    /// prefix; lines starting with `#` are comments.
    ///
    /// # Errors
    ///
    /// As [`Share::from_bytes`]; [`ShareError::Malformed`] without the prefix or with a
    /// character outside base32.
    pub fn from_text(text: &str) -> Result<Self, ShareError> {
        if text
            .lines()
            .map(str::trim)
            .any(|l| starts_with_ignore_case(l, SEALED_SHARE_PREFIX))
        {
            return Err(ShareError::Sealed);
        }
        let bytes = decode_text(text, SHARE_PREFIX)?;
        Self::from_bytes(&bytes)
    }
}

/// Splits `secret` into `shares` shares of a new set, any `threshold` of which recover it.
///
/// # Errors
///
/// [`ShareError::BadThreshold`] unless 2 <= threshold <= shares <= 255.
pub(crate) fn split(
    secret: &Secret32,
    threshold: u8,
    shares: u8,
    created: i64,
    network_copy: Option<[u8; 32]>,
) -> Result<Vec<Share>, ShareError> {
    if threshold < 2 || threshold > shares {
        return Err(ShareError::BadThreshold { threshold, shares });
    }
    let mut set = [0u8; SET_ID_LEN];
    OsRng.fill_bytes(&mut set);
    let set = SetId(set);
    let commitment = commitment(&set, secret);
    Ok(split_bytes(secret.expose(), threshold, shares)
        .into_iter()
        .map(|(index, value)| Share {
            set,
            index,
            threshold,
            shares,
            created,
            commitment,
            value,
            network_copy,
        })
        .collect())
}

/// Combines shares of one set into the secret, checked against the set's commitment.
///
/// # Errors
///
/// [`ShareError::NotEnoughShares`], [`ShareError::DuplicateIndex`],
/// [`ShareError::MixedSets`], [`ShareError::Inconsistent`], [`ShareError::Commitment`].
pub(crate) fn combine(shares: &[Share]) -> Result<(Secret32, SetId), ShareError> {
    let Some(first) = shares.first() else {
        return Err(ShareError::NotEnoughShares { have: 0, need: 2 });
    };
    let mut seen = [false; 256];
    for share in shares {
        if share.set != first.set {
            return Err(ShareError::MixedSets {
                first: first.set.to_string(),
                other: share.set.to_string(),
            });
        }
        if (share.threshold, share.shares, share.created)
            != (first.threshold, first.shares, first.created)
            || share.commitment != first.commitment
            || share.network_copy != first.network_copy
        {
            return Err(ShareError::Inconsistent {
                set: first.set.to_string(),
            });
        }
        let slot = &mut seen[usize::from(share.index)];
        if *slot {
            return Err(ShareError::DuplicateIndex {
                index: share.index,
                need: first.threshold,
            });
        }
        *slot = true;
    }
    let need = usize::from(first.threshold);
    if shares.len() < need {
        return Err(ShareError::NotEnoughShares {
            have: shares.len(),
            need: first.threshold,
        });
    }
    // K points define the polynomial; extra shares are checked by the commitment of the
    // first K only, so use exactly K and check every further one against the result.
    let points: Vec<(u8, &[u8; SECRET_LEN])> = shares[..need]
        .iter()
        .map(|s| (s.index, &*s.value))
        .collect();
    let secret = combine_bytes(&points);
    if !bool::from(commitment(&first.set, &secret).ct_eq(&first.commitment)) {
        return Err(ShareError::Commitment {
            set: first.set.to_string(),
        });
    }
    for extra in &shares[need..] {
        let mut check: Vec<(u8, &[u8; SECRET_LEN])> = points[1..].to_vec();
        check.push((extra.index, &*extra.value));
        let other = combine_bytes(&check);
        if !bool::from(other.expose().ct_eq(secret.expose())) {
            return Err(ShareError::Commitment {
                set: first.set.to_string(),
            });
        }
    }
    Ok((secret, first.set))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn secret(byte: u8) -> Secret32 {
        Secret32::init_with(|s| {
            for (i, b) in s.iter_mut().enumerate() {
                *b = byte.wrapping_add(u8::try_from(i).unwrap_or(0).wrapping_mul(37));
            }
        })
    }

    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![vec![]];
        }
        if n < k {
            return vec![];
        }
        let mut out = subsets(n - 1, k);
        for mut s in subsets(n - 1, k - 1) {
            s.push(n - 1);
            out.push(s);
        }
        out
    }

    #[test]
    fn every_three_of_five_subset_combines() -> Result<(), ShareError> {
        let key = secret(7);
        let shares = split(&key, 3, 5, 0, None)?;
        assert_eq!(shares.len(), 5);
        for k in 3..=5 {
            for subset in subsets(5, k) {
                let chosen: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
                let (got, set) = combine(&chosen)?;
                assert_eq!(got.expose(), key.expose(), "subset {subset:?}");
                assert_eq!(set, shares[0].set());
            }
        }
        Ok(())
    }

    #[test]
    fn fewer_than_k_duplicates_and_mixed_sets_are_refused() -> Result<(), ShareError> {
        let key = secret(1);
        let shares = split(&key, 3, 5, 0, None)?;
        for subset in subsets(5, 2) {
            let chosen: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(
                combine(&chosen).err(),
                Some(ShareError::NotEnoughShares { have: 2, need: 3 })
            );
        }
        let dup = [shares[0].clone(), shares[1].clone(), shares[1].clone()];
        assert_eq!(
            combine(&dup).err(),
            Some(ShareError::DuplicateIndex { index: 2, need: 3 })
        );
        let other = split(&key, 3, 5, 0, None)?;
        assert_ne!(other[0].set(), shares[0].set());
        let mixed = [shares[0].clone(), shares[1].clone(), other[2].clone()];
        assert!(matches!(combine(&mixed), Err(ShareError::MixedSets { .. })));
        // A share of another set relabelled with this set's id: the commitment catches it.
        let mut forged = other[2].clone();
        forged.set = shares[0].set;
        forged.commitment = shares[0].commitment;
        let chosen = [shares[0].clone(), shares[1].clone(), forged];
        assert!(matches!(
            combine(&chosen),
            Err(ShareError::Commitment { .. })
        ));
        assert_eq!(
            split(&key, 1, 5, 0, None).err(),
            Some(ShareError::BadThreshold {
                threshold: 1,
                shares: 5
            })
        );
        assert!(split(&key, 6, 5, 0, None).is_err());
        assert_eq!(split(&key, 255, 255, 0, None)?.len(), 255);
        Ok(())
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() -> Result<(), ShareError> {
        let key = secret(3);
        let shares = split(&key, 2, 3, 1_700_000_000, None)?;
        for share in &shares {
            let bytes = share.to_bytes();
            for bit in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    Share::from_bytes(&damaged).err(),
                    Some(ShareError::Checksum)
                );
            }
            let text = share.to_text();
            for (pos, c) in text.char_indices().skip(SHARE_PREFIX.len()) {
                if c == '-' {
                    continue;
                }
                let mut damaged = text.to_string();
                let replacement = if c == 'A' { "B" } else { "A" };
                damaged.replace_range(pos..pos + 1, replacement);
                assert!(Share::from_text(&damaged).is_err(), "char {pos}");
            }
            assert!(Share::from_text(&text[..text.len() - 3]).is_err());
        }
        Ok(())
    }

    #[test]
    fn text_round_trip_is_lenient_on_case_and_spacing() -> Result<(), ShareError> {
        let shares = split(&secret(9), 2, 2, 5, None)?;
        let text = shares[1].to_text();
        let groups = text[SHARE_PREFIX.len()..].to_lowercase().replace('-', " ");
        let (first, second) = groups.split_at(groups.len() / 2);
        let loose = format!("# comment\n\n  DM-SHARE1-{first}\n {second}\n");
        let parsed = Share::from_text(&loose)?;
        assert_eq!(*parsed.to_bytes(), *shares[1].to_bytes());
        assert!(Share::from_text("hello").is_err());
        let mut bytes = shares[0].to_bytes();
        bytes[0] = 3;
        let body_len = bytes.len() - CHECKSUM_LEN;
        let sum = checksum(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&sum);
        assert_eq!(
            Share::from_bytes(&bytes).err(),
            Some(ShareError::UnsupportedVersion { version: 3 })
        );
        Ok(())
    }

    #[test]
    fn shares_never_hold_the_secret_in_the_clear() -> Result<(), ShareError> {
        let key = secret(42);
        for share in split(&key, 3, 5, 0, None)? {
            let bytes = share.to_bytes();
            assert!(
                !bytes
                    .windows(8)
                    .any(|w| key.expose().windows(8).any(|k| k == w))
            );
            let text = share.to_text();
            let hex = data_encoding::HEXLOWER.encode(key.expose());
            assert!(!text.contains(&hex));
            assert!(!format!("{share:?}").contains(&hex));
        }
        Ok(())
    }

    #[test]
    fn shares_with_a_network_copy_round_trip_and_must_agree() -> Result<(), ShareError> {
        let key = secret(5);
        let copy = [0xabu8; 32];
        let shares = split(&key, 2, 3, 7, Some(copy))?;
        for share in &shares {
            let bytes = share.to_bytes();
            assert_eq!(bytes.len(), SHARE_LEN_WITH_COPY);
            assert_eq!(bytes[0], SHARE_VERSION_WITH_COPY);
            let parsed = Share::from_text(&share.to_text())?;
            assert_eq!(parsed.network_copy(), Some(copy));
            for bit in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    Share::from_bytes(&damaged).err(),
                    Some(ShareError::Checksum)
                );
            }
        }
        let (got, _) = combine(&shares[1..])?;
        assert_eq!(got.expose(), key.expose());
        // Same set, but one share names another copy: forged or damaged.
        let mut other = shares[1].clone();
        other.network_copy = Some([0xcd; 32]);
        assert!(matches!(
            combine(&[shares[0].clone(), other]),
            Err(ShareError::Inconsistent { .. })
        ));
        // A version byte that does not match the length is refused.
        let mut bytes = shares[0].to_bytes();
        bytes[0] = SHARE_VERSION;
        let body_len = bytes.len() - CHECKSUM_LEN;
        let sum = checksum(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&sum);
        assert!(matches!(
            Share::from_bytes(&bytes),
            Err(ShareError::Malformed { .. })
        ));
        Ok(())
    }

    /// A frozen 2-of-3 set of the key 00 01 02 ... 1f (made once by this code): any two
    /// of these texts must keep combining to it, whatever changes in the implementation.
    const FROZEN: [&str; 3] = [
        "dm-share1-AEFQV-BGTGG-GMLIS-4DSJ4-UZK4B-YLACA-QDAAA-AAADJ-KW4QB-MPXFB-NMHXL-T4ISM-WB7PX-T6LVD-7JB6T-KH4RS-Z7YPT-CBFPN-LISCR-QV37R-3NFDY-GMK7D-EE355-U74K6-ZONTL-LAWRB-HYW32-XECQR-XG66Q-5SH3Q-63FQ",
        "dm-share1-AEFQV-BGTGG-GMLIS-4DSJ4-UZK4B-YLAEA-QDAAA-AAADJ-KW4QB-MPXFB-NMHXL-T4ISM-WB7PX-T6LVD-7JB6T-KH4RS-Z7YPT-CBFPN-LISCR-QI7TD-Y5SRS-YQUYG-YIXPV-YV3VO-TQOVS-5IZG6-QTPZ4-GNN3R-WCMAG-7U7LO-V34E",
        "dm-share1-AEFQV-BGTGG-GMLIS-4DSJ4-UZK4B-YLAGA-QDAAA-AAADJ-KW4QB-MPXFB-NMHXL-T4ISM-WB7PX-T6LVD-7JB6T-KH4RS-Z7YPT-CBFPN-LISCR-Q5EMC-HQPWK-K76JH-4FN2N-4SEX6-LCLH3-SY4VP-52VH6-JKLGB-XDSDV-2JMA2-NGMM",
    ];

    #[test]
    fn frozen_vector_still_combines() -> Result<(), ShareError> {
        let shares: Vec<Share> = FROZEN
            .iter()
            .map(|t| Share::from_text(t))
            .collect::<Result<_, _>>()?;
        let want: Vec<u8> = (0..32).collect();
        for pair in [[0, 1], [0, 2], [2, 1]] {
            let chosen = [shares[pair[0]].clone(), shares[pair[1]].clone()];
            let (key, set) = combine(&chosen)?;
            assert_eq!(&key.expose()[..], &want[..]);
            assert_eq!(set.to_string(), "0b0a84d3318cc5a25c1c93ca655c0e16");
        }
        assert_eq!(shares[1].created(), 1_767_225_600);
        assert_eq!(
            (shares[2].index(), shares[2].threshold(), shares[2].shares()),
            (3, 2, 3)
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn any_k_of_n_recovers(bytes in any::<[u8; 32]>(), n in 2u8..=20, k_seed in any::<u8>(), pick in any::<u64>()) {
            let k = 2 + k_seed % (n - 1);
            let key = Secret32::copy_from(&bytes);
            let shares = split(&key, k, n, 0, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
            // A pseudo-random choice of k shares in a pseudo-random order.
            let mut order: Vec<usize> = (0..usize::from(n)).collect();
            let mut state = pick;
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = usize::try_from(state >> 33).unwrap_or(0) % (i + 1);
                order.swap(i, j);
            }
            let chosen: Vec<Share> = order[..usize::from(k)].iter().map(|&i| shares[i].clone()).collect();
            let (got, _) = combine(&chosen).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.expose(), key.expose());
            let fewer = &chosen[..usize::from(k) - 1];
            prop_assert!(combine(fewer).is_err());
            let text = chosen[0].to_text();
            let parsed = Share::from_text(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&*parsed.to_bytes(), &*chosen[0].to_bytes());
        }
    }
}
