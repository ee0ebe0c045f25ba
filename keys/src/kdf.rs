//! Argon2id (RFC 9106, version 0x13): password -> key-encryption key.
//!
//! Parameters read from a file are checked against [`KdfLimits`] chosen by the reader
//! before any memory is allocated, as age's `max_work_factor` guard does for scrypt: a
//! keystore that claims m = 4 GiB is refused, not obeyed.

use core::fmt;

use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};

use crate::error::KdfError;
use crate::password::Password;
use crate::secret::Secret32;

/// Length of a slot's random salt.
pub const SALT_LEN: usize = 32;

/// Argon2id cost parameters, stored with each password slot so they can be raised later.
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

    /// Memory cost in KiB.
    #[must_use]
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of lanes.
    #[must_use]
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// Whether any parameter is below [`KdfParams::DEFAULT`].
    #[must_use]
    pub fn is_below_default(&self) -> bool {
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

    /// Checks the parameters against Argon2's minimums and `limits`. Cheap; allocates
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`KdfError::BelowMinimum`] or [`KdfError::AboveLimit`].
    pub fn check(&self, limits: &KdfLimits) -> Result<(), KdfError> {
        let above = |param, value, max| {
            if value > max {
                Err(KdfError::AboveLimit { param, value, max })
            } else {
                Ok(())
            }
        };
        let below = |param, value, min| {
            if value < min {
                Err(KdfError::BelowMinimum { param, value, min })
            } else {
                Ok(())
            }
        };
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
}

impl KdfLimits {
    /// m <= 1 GiB, t <= 32, p <= 16: sixteen times the default memory, ten times its passes.
    pub const DEFAULT: Self = Self {
        max_memory_kib: 1024 * 1024,
        max_iterations: 32,
        max_parallelism: 16,
    };

    /// Custom limits (tests, fuzzers and small machines choose lower ones).
    #[must_use]
    pub fn new(max_memory_kib: u32, max_iterations: u32, max_parallelism: u32) -> Self {
        Self {
            max_memory_kib,
            max_iterations,
            max_parallelism,
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
        result = argon2id(password.as_bytes(), salt, &[], &[], params, out);
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
