//! Following other processes: the generation counter, read without a password, and
//! reloading the file with the master key held in memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{Keystore, format_error, read_keystore};
use crate::error::OpenError;
use crate::format::{self, FIXED_HEADER_LEN, FormatError};
use crate::layout::Layout;

impl Keystore {
    /// The generation counter of the keystore of `home`, read from the fixed header (the
    /// first 18 bytes) without a password: it grows by one at every change. A running node
    /// compares it with [`KeyRing::generation`](crate::KeyRing::generation) of its open keystore (say once a minute)
    /// and calls [`Keystore::reload`] when they differ.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotInitialised`], [`OpenError::Corrupt`] or
    /// [`OpenError::UnsupportedVersion`], [`OpenError::Io`].
    pub fn generation(home: &Path) -> Result<u64, OpenError> {
        let layout = Layout::new(home);
        let path = layout.keystore();
        let mut prefix = [0u8; FIXED_HEADER_LEN];
        let read = File::open(&path).and_then(|mut f| f.read_exact(&mut prefix));
        match read {
            Ok(()) => format::read_generation(&prefix).map_err(|e| format_error(&path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(OpenError::NotInitialised {
                home: home.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(format_error(
                &path,
                FormatError::Malformed("truncated header".into()),
            )),
            Err(source) => Err(OpenError::Io { path, source }),
        }
    }

    /// Follows changes another process made (rotation, policy, slots): re-reads the file
    /// with the master key held in memory. Returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`OpenError::Corrupt`] if the file no longer opens with this master key, or I/O.
    pub fn reload(&mut self) -> Result<bool, OpenError> {
        let path = self.layout.keystore();
        if Self::generation(self.layout.home())? == self.ring.generation() {
            return Ok(false);
        }
        let bytes = read_keystore(&path)?;
        self.ring = self
            .ring
            .reload(&bytes)
            .map_err(|e| format_error(&path, e))?;
        Ok(true)
    }
}
