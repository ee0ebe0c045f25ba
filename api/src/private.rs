//! The home's private files that programs read besides the keystore (`api-token`,
//! `node.json`): refused when group or others may read them, as the keystore refuses its
//! own files, so a token that leaked to other users is not used silently.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A private file of the home is not private.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateFileError {
    /// Group or others have some permission on it.
    #[error(
        "{} is open to other users (mode {mode:03o}): run `chmod 600 {}` (and replace the API token if others may have read it)",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It is a symlink, a folder or another non-regular file.
    #[error("{} is not a regular file (a symlink?): replace it with the file itself", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Its metadata cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl PrivateFileError {
    /// Whether the file does not exist (the caller may treat that on its own).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Refuses `path` unless it is a regular file (not a symlink) that neither group nor
/// others may read, write or run (mode 0600 or stricter).
///
/// # Errors
/// [`PrivateFileError`].
pub fn check_private_file(path: &Path) -> Result<(), PrivateFileError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| PrivateFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotRegular {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    debug_assert_eq!(mode, meta.mode() & 0o777);
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_other_bits_and_symlinks_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("api-token");
        std::fs::write(&file, "secret")?;
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o604, false),
            (0o620, false),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
            let result = check_private_file(&file);
            assert_eq!(result.is_ok(), ok, "mode {mode:o}: {result:?}");
            if let Err(e) = result {
                assert!(e.to_string().contains("chmod 600"), "{e}");
            }
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link)?;
        assert!(matches!(
            check_private_file(&link),
            Err(PrivateFileError::NotRegular { .. })
        ));
        assert!(check_private_file(&dir.path().join("missing")).is_err_and(|e| e.is_not_found()));
        Ok(())
    }
}
