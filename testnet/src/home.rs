//! Files of a node's home that the testnet writes or reads besides the node's own:
//! the password file and the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand_core::{OsRng, RngCore};

use crate::error::{Result, io_err};

/// Writes `password` and a newline to `path`, readable by its owner only (0600, also
/// when the file existed), as the CLI wants a `--password-file`.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io).
pub fn write_password_file(path: &Path, password: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("cannot create {}", path.display())))?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(format!("{password}\n").as_bytes()))
        .map_err(io_err(format!("cannot write {}", path.display())))
}

/// A new random password (32 bytes as 64 hex characters) in a 0600 file.
pub(crate) fn write_random_password(path: &Path) -> Result<()> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_password_file(path, &hex)
}

/// The last few lines of a log, on one line.
pub(crate) fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 2048;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut text = String::new();
        file.take(TAIL).read_to_string(&mut text)?;
        Ok(text)
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
            format!("{tail} (log: {})", path.display())
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn password_files_are_private_and_random() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_random_password(&a)?;
        write_random_password(&b)?;
        assert_eq!(fs::metadata(&a)?.permissions().mode() & 0o777, 0o600);
        let (a, b) = (fs::read_to_string(a)?, fs::read_to_string(b)?);
        assert_eq!(a.trim_end().len(), 64);
        assert!(a.ends_with('\n'));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn a_given_password_file_is_private_even_if_it_existed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pw");
        fs::write(&path, "old and longer\n")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        write_password_file(&path, "new")?;
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path)?, "new\n");
        Ok(())
    }
}
