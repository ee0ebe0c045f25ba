//! Reproducible inputs for tests and benches: pseudo-random (incompressible) bytes from a
//! seed a test can print, as numbers, in memory or as files, and the check that a copy
//! holds the same bytes.
//!
//! ```no_run
//! use std::path::Path;
//! use datamesh_testnet::input::{SplitMix, assert_same_file, make_file};
//!
//! # fn main() -> datamesh_testnet::Result<()> {
//! let input = make_file(Path::new("/tmp"), 3 << 20, 7)?; // /tmp/in-3145728-7
//! // ... put it, get it back into /tmp/copy ...
//! assert_same_file(&input, Path::new("/tmp/copy"))?;
//! let mut rng = SplitMix(0x5eed);
//! let pause_ms = rng.range(50, 1500);
//! # Ok(()) }
//! ```

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_err};

/// 2^20 bytes.
pub const MIB: usize = 1 << 20;

/// splitmix64: reproducible pseudo-random numbers from a seed (the state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`), close enough for test schedules.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// Appends `len` bytes to `out`: the next numbers, little-endian, the last one cut
    /// short. Filling in steps that are multiples of 8 gives the same bytes as one step.
    pub fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        out.reserve(len);
        while out.len() < end {
            let bytes = self.next_u64().to_le_bytes();
            let take = bytes.len().min(end - out.len());
            out.extend_from_slice(&bytes[..take]);
        }
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    SplitMix(seed).fill(&mut out, len);
    out
}

/// Writes `len` pseudo-random bytes from `seed` to `path` (the bytes of
/// [`random_bytes`]), 1 MiB at a time: files of any size, in little memory.
///
/// # Errors
/// [`Error::Io`].
pub fn write_random_file(path: &Path, len: usize, seed: u64) -> Result<()> {
    let what = || format!("cannot write {}", path.display());
    let mut file = BufWriter::new(fs::File::create(path).map_err(io_err(what()))?);
    let mut rng = SplitMix(seed);
    let mut chunk = Vec::with_capacity(MIB);
    let mut written = 0;
    while written < len {
        chunk.clear();
        rng.fill(&mut chunk, MIB.min(len - written));
        file.write_all(&chunk).map_err(io_err(what()))?;
        written += chunk.len();
    }
    file.flush().map_err(io_err(what()))
}

/// A file `dir/in-LEN-SEED` of `len` pseudo-random bytes from `seed` (reproducible from
/// the printed seed; a different seed gives different bytes); its path.
///
/// # Errors
/// [`Error::Io`].
pub fn make_file(dir: &Path, len: usize, seed: u64) -> Result<PathBuf> {
    let path = dir.join(format!("in-{len}-{seed}"));
    write_random_file(&path, len, seed ^ 0x9e37_79b9_7f4a_7c15)?;
    Ok(path)
}

/// `actual` holds exactly the bytes of `expected`.
///
/// # Errors
/// [`Error::Differs`]; [`Error::Io`] when either cannot be read.
pub fn assert_same_file(expected: &Path, actual: &Path) -> Result<()> {
    let read =
        |path: &Path| fs::read(path).map_err(io_err(format!("cannot read {}", path.display())));
    let (a, b) = (read(expected)?, read(actual)?);
    if a == b {
        return Ok(());
    }
    Err(Error::Differs {
        expected: expected.display().to_string(),
        expected_len: a.len(),
        actual: actual.display().to_string(),
        actual_len: b.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_reproducible_and_not_constant() {
        let a = random_bytes(1000, 0x2545_f491_4f6c_dd1d);
        assert_eq!(a, random_bytes(1000, 0x2545_f491_4f6c_dd1d));
        assert_eq!(a.len(), 1000);
        assert!(a.iter().any(|&b| b != a[0]));
        let mut b = Vec::new();
        SplitMix(1).fill(&mut b, 13);
        SplitMix(2).fill(&mut b, 3);
        assert_eq!(b.len(), 16);
        // In steps of 8 or at once: the same stream.
        let mut rng = SplitMix(5);
        let mut steps = Vec::new();
        rng.fill(&mut steps, 16);
        rng.fill(&mut steps, 5);
        assert_eq!(steps, random_bytes(21, 5));
        let mut rng = SplitMix(9);
        assert!(
            (0..1000)
                .map(|_| rng.range(3, 7))
                .all(|n| (3..7).contains(&n))
        );
    }

    #[test]
    fn files_hold_the_stream_and_compare() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let len = 2 * MIB + 3;
        let path = make_file(dir.path(), len, 9)?;
        assert_eq!(path, dir.path().join(format!("in-{len}-9")));
        let bytes = fs::read(&path).map_err(io_err("read"))?;
        assert_eq!(bytes, random_bytes(len, 9 ^ 0x9e37_79b9_7f4a_7c15));
        let copy = dir.path().join("copy");
        fs::write(&copy, &bytes).map_err(io_err("write"))?;
        assert_same_file(&path, &copy)?;
        fs::write(&copy, &bytes[1..]).map_err(io_err("write"))?;
        assert!(matches!(
            assert_same_file(&path, &copy),
            Err(Error::Differs { actual_len, .. }) if actual_len == len - 1
        ));
        Ok(())
    }
}
