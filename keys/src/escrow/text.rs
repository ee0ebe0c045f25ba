//! The text form of shares: a prefix, then the RFC 4648 base32 (no padding) of the bytes
//! in dash-separated groups of 5. Reading is lenient: case, spaces, line breaks and dashes
//! after the prefix are ignored, and lines starting with `#` are comments.

use zeroize::Zeroizing;

use super::error::ShareError;

/// Prefix of the text form of a share.
pub const SHARE_PREFIX: &str = "dm-share1-";
/// Prefix of the text form of a share sealed to a contact.
pub const SEALED_SHARE_PREFIX: &str = "dm-sealed-share1-";

const GROUP: usize = 5;

pub(super) fn starts_with_ignore_case(line: &str, prefix: &str) -> bool {
    line.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// `prefix` then `encoded` in dash-separated groups of 5.
pub(super) fn grouped(prefix: &str, encoded: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(
        prefix.len() + encoded.len() * 6 / 5 + 1,
    ));
    out.push_str(prefix);
    for (i, chunk) in encoded.as_bytes().chunks(GROUP).enumerate() {
        if i > 0 {
            out.push('-');
        }
        for &c in chunk {
            out.push(char::from(c));
        }
    }
    out
}

/// The bytes of a text form with `prefix`: case, spaces, line breaks and dashes are
/// ignored after the prefix; lines starting with `#` are comments.
pub(super) fn decode_text(text: &str, prefix: &str) -> Result<Zeroizing<Vec<u8>>, ShareError> {
    let mut letters = Zeroizing::new(String::with_capacity(text.len()));
    let mut found = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rest = if found {
            line
        } else if starts_with_ignore_case(line, prefix) {
            found = true;
            &line[prefix.len()..]
        } else {
            return Err(ShareError::Malformed {
                problem: format!("expected a line starting with {prefix}"),
            });
        };
        letters.extend(
            rest.chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .map(|c| c.to_ascii_uppercase()),
        );
    }
    if !found {
        return Err(ShareError::Malformed {
            problem: format!("no line starting with {prefix}"),
        });
    }
    data_encoding::BASE32_NOPAD
        .decode(letters.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| ShareError::Malformed {
            problem: format!("not base32 ({e}); check for a mistyped character"),
        })
}
