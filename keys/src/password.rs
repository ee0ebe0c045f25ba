//! Passwords: NFKD-normalised, zeroized on drop, never printed.

use core::fmt;

use secrecy::{ExposeSecret, SecretBox};
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::error::PasswordError;

/// The longest password accepted, in bytes of UTF-8 before normalisation (1 MiB).
pub const MAX_PASSWORD_LEN: usize = 1 << 20;

/// zxcvbn scores below this are weak (0..=4 scale).
pub const MIN_STRONG_SCORE: u8 = 3;

/// A keystore password.
///
/// The text is NFKD-normalised on construction (so the same password typed on two
/// keyboards or systems that compose characters differently opens the same keystore),
/// kept in a zeroizing heap buffer, and never printed: `Debug` shows `Password(..)` and
/// there is no `Display`.
///
/// ```
/// use datamesh_keys::Password;
/// let composed = Password::new("caf\u{e9}")?;
/// let decomposed = Password::new("cafe\u{301}")?;
/// assert!(composed.ct_eq(&decomposed));
/// assert_eq!(format!("{composed:?}"), "Password(..)");
/// # Ok::<(), datamesh_keys::PasswordError>(())
/// ```
pub struct Password(SecretBox<String>);

impl Password {
    /// Normalises `text` (NFKD) into a new password. The empty password is representable
    /// (it opens nothing); creating a keystore or a slot with it is refused.
    ///
    /// # Errors
    ///
    /// [`PasswordError::TooLong`] above [`MAX_PASSWORD_LEN`] bytes.
    pub fn new(text: &str) -> Result<Self, PasswordError> {
        if text.len() > MAX_PASSWORD_LEN {
            return Err(PasswordError::TooLong {
                len: text.len(),
                max: MAX_PASSWORD_LEN,
            });
        }
        // Size the buffer exactly first, so that it never reallocates (a reallocation would
        // leave a copy of the password in freed memory).
        let len: usize = text.nfkd().map(char::len_utf8).sum();
        Ok(Self(SecretBox::init_with_mut(|s: &mut String| {
            s.reserve_exact(len);
            s.extend(text.nfkd());
        })))
    }

    /// A password from raw bytes (e.g. a password file, without its final newline). The
    /// bytes are zeroized when dropped.
    ///
    /// # Errors
    ///
    /// [`PasswordError::NotUtf8`] or [`PasswordError::TooLong`].
    pub fn from_utf8(bytes: Zeroizing<Vec<u8>>) -> Result<Self, PasswordError> {
        let text = core::str::from_utf8(&bytes).map_err(|_| PasswordError::NotUtf8)?;
        Self::new(text)
    }

    /// Whether the password is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }

    /// Compares two passwords in constant time (for "type it again" checks).
    #[must_use]
    pub fn ct_eq(&self, other: &Password) -> bool {
        let a = self.as_bytes();
        let b = other.as_bytes();
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }

    /// Estimates the strength with zxcvbn (which looks at the first 100 characters).
    #[must_use]
    pub fn strength(&self) -> Strength {
        let entropy = zxcvbn::zxcvbn(self.0.expose_secret(), &["datamesh"]);
        let (warning, suggestions) = match entropy.feedback() {
            Some(feedback) => (
                feedback.warning().map(|w| w.to_string()),
                feedback
                    .suggestions()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        Strength {
            score: u8::from(entropy.score()),
            warning,
            suggestions,
        }
    }

    /// A copy (the credentials of an unlock own their password).
    pub(crate) fn duplicate(&self) -> Self {
        // Already NFKD (normalising again changes nothing) and within the length limit.
        Self(SecretBox::init_with_mut(|s: &mut String| {
            s.reserve_exact(self.0.expose_secret().len());
            s.push_str(self.0.expose_secret());
        }))
    }

    /// The normalised UTF-8 bytes, for the KDF.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }

    /// Refuses the empty password (for new passwords).
    pub(crate) fn check_new(&self) -> Result<(), PasswordError> {
        if self.is_empty() {
            Err(PasswordError::Empty)
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// zxcvbn's verdict on a password; holds no part of the password.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Strength {
    /// 0 (too guessable) to 4 (very unguessable).
    pub score: u8,
    /// Why it is weak, if it is.
    pub warning: Option<String>,
    /// How to make it stronger.
    pub suggestions: Vec<String>,
}

impl Strength {
    /// Whether the score reaches [`MIN_STRONG_SCORE`].
    #[must_use]
    pub fn is_strong(&self) -> bool {
        self.score >= MIN_STRONG_SCORE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkd_makes_equivalent_forms_equal() -> Result<(), PasswordError> {
        // Precomposed vs decomposed, and a compatibility character (the "fi" ligature).
        assert!(Password::new("caf\u{e9}")?.ct_eq(&Password::new("cafe\u{301}")?));
        assert!(Password::new("\u{fb01}le")?.ct_eq(&Password::new("file")?));
        assert!(!Password::new("abc")?.ct_eq(&Password::new("abd")?));
        assert!(!Password::new("abc")?.ct_eq(&Password::new("abcd")?));
        Ok(())
    }

    #[test]
    fn limits_and_debug() -> Result<(), PasswordError> {
        let max = "x".repeat(MAX_PASSWORD_LEN);
        assert_eq!(Password::new(&max)?.as_bytes().len(), MAX_PASSWORD_LEN);
        assert!(matches!(
            Password::new(&format!("{max}y")),
            Err(PasswordError::TooLong { .. })
        ));
        assert!(matches!(
            Password::from_utf8(Zeroizing::new(vec![0xff, 0xfe])),
            Err(PasswordError::NotUtf8)
        ));
        let empty = Password::new("")?;
        assert!(empty.is_empty());
        assert!(matches!(empty.check_new(), Err(PasswordError::Empty)));
        let p = Password::new("hunter2")?;
        assert_eq!(format!("{p:?}"), "Password(..)");
        Ok(())
    }

    #[test]
    fn strength_tells_weak_from_strong() -> Result<(), PasswordError> {
        assert!(!Password::new("password1")?.strength().is_strong());
        assert!(!Password::new("")?.strength().is_strong());
        assert!(
            Password::new("correct horse battery staple orbit quartz")?
                .strength()
                .is_strong()
        );
        // A 1 MiB password is scored quickly (zxcvbn looks at its first 100 characters).
        let long = Password::new(&"Zq9!".repeat(MAX_PASSWORD_LEN / 4))?;
        let started = std::time::Instant::now();
        let strength = long.strength();
        assert!(started.elapsed().as_secs() < 5);
        assert!(strength.score <= 4);
        Ok(())
    }
}
