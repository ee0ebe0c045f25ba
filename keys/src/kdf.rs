//! Password -> key-encryption key: Argon2id (RFC 9106, version 0x13), the default, or
//! PBKDF2-HMAC-SHA256 (RFC 8018, NIST SP 800-132), the FIPS-minded profile's.
//!
//! Parameters read from a file are checked against [`KdfLimits`] chosen by the reader
//! before any memory is allocated or any iteration run, as age's `max_work_factor` guard
//! does for scrypt: a keystore that claims m = 4 GiB is refused, not obeyed. PBKDF2 has
//! no memory cost, so a reader also refuses fewer iterations than
//! [`KdfParams::PBKDF2_MIN_ITERATIONS`] (OWASP's count): a planted file cannot make a
//! password cheap to guess.
//!
//! Both are stored in the same three numbers (`m_kib | t | p`, see `docs/keystore.md`):
//! PBKDF2 is `m = 0, p = 0, t = iterations`, which no Argon2id parameters can be (Argon2
//! needs m >= 8 p >= 8), so a build that predates PBKDF2 refuses such a slot as below
//! Argon2's minimum instead of misreading it.

use core::fmt;
use core::str::FromStr;

use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
use sha2::Sha256;

use crate::error::KdfError;
use crate::password::Password;
use crate::secret::Secret32;

/// Length of a slot's random salt.
pub const SALT_LEN: usize = 32;

/// Which password KDF a slot (or backup) uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KdfAlgorithm {
    /// Argon2id v0x13 (memory-hard; the default).
    Argon2id,
    /// PBKDF2-HMAC-SHA256 (NIST SP 800-132; the fips profile).
    Pbkdf2Sha256,
}

impl KdfAlgorithm {
    /// `argon2id` or `pbkdf2-sha256`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Argon2id => "argon2id",
            Self::Pbkdf2Sha256 => "pbkdf2-sha256",
        }
    }

    /// The parameters of new slots.
    #[must_use]
    pub fn default_params(&self) -> KdfParams {
        match self {
            Self::Argon2id => KdfParams::DEFAULT,
            Self::Pbkdf2Sha256 => KdfParams::PBKDF2_DEFAULT,
        }
    }
}

impl fmt::Display for KdfAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KdfAlgorithm {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim() {
            "argon2id" => Ok(Self::Argon2id),
            "pbkdf2-sha256" => Ok(Self::Pbkdf2Sha256),
            _ => Err(()),
        }
    }
}

/// Password-KDF cost parameters (Argon2id's, or PBKDF2's iteration count), stored with
/// each password slot so they can be raised later.
///
/// ```
/// use datamesh_keys::KdfParams;
/// let defaults = KdfParams::default();
/// assert_eq!((defaults.memory_kib(), defaults.iterations(), defaults.parallelism()), (65536, 3, 4));
/// assert!(KdfParams::new(4 * 1024 * 1024, 3, 4).is_err()); // 4 GiB: above the limit
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// The defaults of new slots: m = 64 MiB, t = 3, p = 4.
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 4,
    };

    /// PBKDF2-HMAC-SHA256 with OWASP's iteration count (2023): 600,000.
    pub const PBKDF2_DEFAULT: Self = Self {
        memory_kib: 0,
        iterations: Self::PBKDF2_MIN_ITERATIONS,
        parallelism: 0,
    };

    /// The fewest PBKDF2 iterations any reader accepts, from a file or a flag: OWASP's
    /// count for PBKDF2-HMAC-SHA256.
    pub const PBKDF2_MIN_ITERATIONS: u32 = 600_000;

    /// PBKDF2-HMAC-SHA256 with `iterations`, checked against
    /// [`Self::PBKDF2_MIN_ITERATIONS`] and [`KdfLimits::DEFAULT`].
    ///
    /// # Errors
    ///
    /// [`KdfError::BelowMinimum`] or [`KdfError::AboveLimit`].
    pub fn pbkdf2(iterations: u32) -> Result<Self, KdfError> {
        let params = Self {
            memory_kib: 0,
            iterations,
            parallelism: 0,
        };
        params.check(&KdfLimits::DEFAULT)?;
        Ok(params)
    }

    /// Which KDF these parameters are for.
    #[must_use]
    pub fn algorithm(&self) -> KdfAlgorithm {
        if self.memory_kib == 0 && self.parallelism == 0 {
            KdfAlgorithm::Pbkdf2Sha256
        } else {
            KdfAlgorithm::Argon2id
        }
    }

    /// Parameters checked against Argon2's minimums (m >= 8 p KiB, t >= 1, p >= 1) and
    /// [`KdfLimits::DEFAULT`].
    ///
    /// # Errors
    ///
    /// [`KdfError::BelowMinimum`] or [`KdfError::AboveLimit`].
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, KdfError> {
        let params = Self {
            memory_kib,
            iterations,
            parallelism,
        };
        params.check(&KdfLimits::DEFAULT)?;
        Ok(params)
    }

    /// Memory cost in KiB (0 for PBKDF2).
    #[must_use]
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes (Argon2id) or iterations (PBKDF2).
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of lanes (0 for PBKDF2).
    #[must_use]
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// Whether any parameter is below its algorithm's default.
    #[must_use]
    pub fn is_below_default(&self) -> bool {
        if self.algorithm() == KdfAlgorithm::Pbkdf2Sha256 {
            return self.iterations < Self::PBKDF2_DEFAULT.iterations;
        }
        self.memory_kib < Self::DEFAULT.memory_kib
            || self.iterations < Self::DEFAULT.iterations
            || self.parallelism < Self::DEFAULT.parallelism
    }

    /// Parameters as read from a file: not validated yet (see [`KdfParams::check`]).
    pub(crate) fn unchecked(memory_kib: u32, iterations: u32, parallelism: u32) -> Self {
        Self {
            memory_kib,
            iterations,
            parallelism,
        }
    }

    /// Checks the parameters against their algorithm's minimums (Argon2's; PBKDF2's
    /// [`Self::PBKDF2_MIN_ITERATIONS`]) and `limits`. Cheap; allocates nothing.
    ///
    /// # Errors
    ///
    /// [`KdfError::BelowMinimum`] or [`KdfError::AboveLimit`].
    pub fn check(&self, limits: &KdfLimits) -> Result<(), KdfError> {
        let kdf = self.algorithm().as_str();
        let above = |param, value, max| {
            if value > max {
                Err(KdfError::AboveLimit {
                    kdf,
                    param,
                    value,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let below = |param, value, min| {
            if value < min {
                Err(KdfError::BelowMinimum {
                    kdf,
                    param,
                    value,
                    min,
                })
            } else {
                Ok(())
            }
        };
        if self.algorithm() == KdfAlgorithm::Pbkdf2Sha256 {
            below("iterations", self.iterations, Self::PBKDF2_MIN_ITERATIONS)?;
            return above("iterations", self.iterations, limits.max_pbkdf2_iterations);
        }
        below("parallelism", self.parallelism, 1)?;
        below("iterations", self.iterations, 1)?;
        above("parallelism", self.parallelism, limits.max_parallelism)?;
        above("iterations", self.iterations, limits.max_iterations)?;
        above("memory_kib", self.memory_kib, limits.max_memory_kib)?;
        below(
            "memory_kib",
            self.memory_kib,
            self.parallelism.saturating_mul(8),
        )
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.algorithm() == KdfAlgorithm::Pbkdf2Sha256 {
            return write!(f, "pbkdf2-sha256 i={}", self.iterations);
        }
        write!(
            f,
            "argon2id m={} KiB t={} p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

/// The most work a reader agrees to do for one unlock attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfLimits {
    max_memory_kib: u32,
    max_iterations: u32,
    max_parallelism: u32,
    max_pbkdf2_iterations: u32,
}

impl KdfLimits {
    /// m <= 1 GiB, t <= 32, p <= 16: sixteen times the default memory, ten times its passes;
    /// PBKDF2 at most 10,000,000 iterations (about 17 times OWASP's count).
    pub const DEFAULT: Self = Self {
        max_memory_kib: 1024 * 1024,
        max_iterations: 32,
        max_parallelism: 16,
        max_pbkdf2_iterations: 10_000_000,
    };

    /// Custom Argon2id limits (tests, fuzzers and small machines choose lower ones); PBKDF2
    /// is then held to its minimum, [`KdfParams::PBKDF2_MIN_ITERATIONS`].
    #[must_use]
    pub fn new(max_memory_kib: u32, max_iterations: u32, max_parallelism: u32) -> Self {
        Self {
            max_memory_kib,
            max_iterations,
            max_parallelism,
            max_pbkdf2_iterations: KdfParams::PBKDF2_MIN_ITERATIONS,
        }
    }
}

impl Default for KdfLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Derives the 32-byte key-encryption key of a password slot.
pub(crate) fn derive_kek(
    password: &Password,
    salt: &[u8; SALT_LEN],
    params: KdfParams,
    limits: &KdfLimits,
) -> Result<Secret32, KdfError> {
    params.check(limits)?;
    let mut result = Ok(());
    let kek = Secret32::init_with(|out| {
        result = match params.algorithm() {
            KdfAlgorithm::Argon2id => argon2id(password.as_bytes(), salt, &[], &[], params, out),
            KdfAlgorithm::Pbkdf2Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, params.iterations, out);
                Ok(())
            }
        };
    });
    result.map(|()| kek)
}

/// Argon2id version 0x13 with the optional secret and associated data of RFC 9106 (our
/// slots use neither; the RFC's test vector does). The caller has checked the limits.
pub(crate) fn argon2id(
    password: &[u8],
    salt: &[u8],
    secret: &[u8],
    associated_data: &[u8],
    params: KdfParams,
    out: &mut [u8],
) -> Result<(), KdfError> {
    let data = AssociatedData::new(associated_data).map_err(KdfError::Argon2)?;
    let params = ParamsBuilder::new()
        .m_cost(params.memory_kib)
        .t_cost(params.iterations)
        .p_cost(params.parallelism)
        .data(data)
        .output_len(out.len())
        .build()
        .map_err(KdfError::Argon2)?;
    let argon = if secret.is_empty() {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    } else {
        Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params)
            .map_err(KdfError::Argon2)?
    };
    argon
        .hash_password_into(password, salt, out)
        .map_err(KdfError::Argon2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9106 §5.3, the Argon2id test vector.
    #[test]
    fn rfc9106_argon2id_vector() -> Result<(), KdfError> {
        let params = KdfParams::new(32, 3, 4)?;
        let mut tag = [0u8; 32];
        argon2id(
            &[0x01; 32],
            &[0x02; 16],
            &[0x03; 8],
            &[0x04; 12],
            params,
            &mut tag,
        )?;
        let expected = [
            0x0d, 0x64, 0x0d, 0xf5, 0x8d, 0x78, 0x76, 0x6c, 0x08, 0xc0, 0x37, 0xa3, 0x4a, 0x8b,
            0x53, 0xc9, 0xd0, 0x1e, 0xf0, 0x45, 0x2d, 0x75, 0xb6, 0x5e, 0xb5, 0x25, 0x20, 0xe9,
            0x6b, 0x01, 0xe6, 0x59,
        ];
        assert_eq!(tag, expected);
        Ok(())
    }

    /// The same primitive through the slot wrapper (no secret, no data) is deterministic
    /// and depends on every input.
    #[test]
    fn derive_kek_depends_on_password_salt_and_params() -> Result<(), Box<dyn std::error::Error>> {
        let small = KdfParams::new(8, 1, 1)?;
        let limits = KdfLimits::DEFAULT;
        let pw = Password::new("pw")?;
        let a = derive_kek(&pw, &[1; SALT_LEN], small, &limits)?;
        let b = derive_kek(&pw, &[1; SALT_LEN], small, &limits)?;
        assert_eq!(a.expose(), b.expose());
        let c = derive_kek(&pw, &[2; SALT_LEN], small, &limits)?;
        assert_ne!(a.expose(), c.expose());
        let d = derive_kek(&Password::new("pX")?, &[1; SALT_LEN], small, &limits)?;
        assert_ne!(a.expose(), d.expose());
        let e = derive_kek(&pw, &[1; SALT_LEN], KdfParams::new(16, 1, 1)?, &limits)?;
        assert_ne!(a.expose(), e.expose());
        Ok(())
    }

    /// RFC 7914 §11, the PBKDF2-HMAC-SHA256 test vectors (c = 1 and c = 80,000), through
    /// the same primitive the slots use.
    #[test]
    fn pbkdf2_sha256_vectors() -> Result<(), Box<dyn std::error::Error>> {
        let mut out = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
        pbkdf2::pbkdf2_hmac::<Sha256>(b"Password", b"NaCl", 80_000, &mut out);
        assert_eq!(
            hex(&out),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
             a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
        );
        Ok(())
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pbkdf2_params_have_a_floor_every_reader_enforces() -> Result<(), Box<dyn std::error::Error>>
    {
        let params = KdfParams::pbkdf2(600_000)?;
        assert_eq!(params, KdfParams::PBKDF2_DEFAULT);
        assert_eq!(params.algorithm(), KdfAlgorithm::Pbkdf2Sha256);
        assert_eq!(KdfParams::DEFAULT.algorithm(), KdfAlgorithm::Argon2id);
        assert_eq!(params.to_string(), "pbkdf2-sha256 i=600000");
        assert!(!params.is_below_default());
        // Below OWASP's count: refused when made and when read from a file.
        assert!(matches!(
            KdfParams::pbkdf2(599_999),
            Err(KdfError::BelowMinimum {
                kdf: "pbkdf2-sha256",
                param: "iterations",
                ..
            })
        ));
        let planted = KdfParams::unchecked(0, 1, 0);
        let pw = Password::new("pw")?;
        assert!(matches!(
            derive_kek(&pw, &[0; SALT_LEN], planted, &KdfLimits::DEFAULT),
            Err(KdfError::BelowMinimum { .. })
        ));
        // Above the reader's limit: refused before iterating.
        let huge = KdfParams::unchecked(0, u32::MAX, 0);
        assert!(matches!(
            derive_kek(&pw, &[0; SALT_LEN], huge, &KdfLimits::DEFAULT),
            Err(KdfError::AboveLimit { .. })
        ));
        assert!(KdfParams::pbkdf2(10_000_001).is_err());
        // Deterministic, and depends on the password and the salt.
        let a = derive_kek(&pw, &[1; SALT_LEN], params, &KdfLimits::DEFAULT)?;
        let b = derive_kek(&pw, &[1; SALT_LEN], params, &KdfLimits::DEFAULT)?;
        assert_eq!(a.expose(), b.expose());
        let c = derive_kek(&pw, &[2; SALT_LEN], params, &KdfLimits::DEFAULT)?;
        assert_ne!(a.expose(), c.expose());
        let mut expected = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"pw", &[1; SALT_LEN], 600_000, &mut expected);
        assert_eq!(a.expose(), &expected);
        // m = 0 with lanes, or lanes without memory: neither KDF's parameters.
        assert!(
            KdfParams::unchecked(0, 600_000, 1)
                .check(&KdfLimits::DEFAULT)
                .is_err()
        );
        assert!(
            KdfParams::unchecked(8, 1, 0)
                .check(&KdfLimits::DEFAULT)
                .is_err()
        );
        Ok(())
    }

    /// A keystore whose password slot is PBKDF2 opens with its password only, says so in
    /// its slot list, and a slot planted with one iteration is refused before any work.
    #[test]
    fn a_pbkdf2_keystore_opens_and_a_planted_weak_slot_is_refused()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let pw = Password::new("a pbkdf2 keystore password 73")?;
        crate::Keystore::create(dir.path(), &pw, KdfParams::PBKDF2_DEFAULT)?;
        let keystore = crate::Keystore::open(dir.path(), &pw)?;
        assert!(matches!(
            keystore.slots()[0].kind,
            crate::SlotKind::Password(p) if p == KdfParams::PBKDF2_DEFAULT
        ));
        assert!(crate::Keystore::open(dir.path(), &Password::new("not it")?).is_err());
        // Header: 18 fixed bytes, then slot id (4), kind (1), length (2): t at 29..33.
        let mut bytes = std::fs::read(crate::Layout::new(dir.path()).keystore())?;
        assert_eq!(bytes.get(25..29), Some(&[0u8; 4][..]), "m = 0 marks PBKDF2");
        bytes
            .get_mut(29..33)
            .ok_or("short file")?
            .copy_from_slice(&1u32.to_be_bytes());
        let refused = crate::ring::KeyRing::unseal(
            &bytes,
            &crate::Credentials::password(Password::new("a pbkdf2 keystore password 73")?),
            &KdfLimits::DEFAULT,
        );
        assert!(matches!(
            refused,
            Err(crate::ring::UnsealError::Kdf(KdfError::BelowMinimum {
                kdf: "pbkdf2-sha256",
                ..
            }))
        ));
        Ok(())
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        // 4 GiB is refused by the default limits; this returns at once, allocating nothing.
        assert!(matches!(
            KdfParams::new(4 * 1024 * 1024, 3, 4),
            Err(KdfError::AboveLimit {
                param: "memory_kib",
                ..
            })
        ));
        let huge = KdfParams::unchecked(u32::MAX, u32::MAX, u32::MAX);
        let pw = Password::new("pw");
        assert!(pw.is_ok());
        if let Ok(pw) = pw {
            assert!(matches!(
                derive_kek(&pw, &[0; SALT_LEN], huge, &KdfLimits::DEFAULT),
                Err(KdfError::AboveLimit { .. })
            ));
        }
        // A reader can choose tighter limits than the defaults.
        let tight = KdfLimits::new(64, 2, 1);
        assert!(KdfParams::DEFAULT.check(&tight).is_err());
        assert!(matches!(
            KdfParams::new(8, 1, 2),
            Err(KdfError::BelowMinimum {
                param: "memory_kib",
                ..
            })
        ));
        assert!(KdfParams::new(8, 0, 1).is_err());
        assert!(KdfParams::new(8, 1, 0).is_err());
        assert!(KdfParams::new(8, 33, 1).is_err());
        assert!(KdfParams::new(1024, 1, 17).is_err());
        assert!(KdfParams::new(8, 1, 1).is_ok());
    }
}
