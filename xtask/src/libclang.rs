//! Finding libclang the way the build will: the rocksdb crate's bindgen loads it through
//! clang-sys (feature `runtime`), which looks only in these places, in this order
//! (clang-sys 1.9 `build/common.rs`, `search_libclang_directories`):
//!
//! 1. `LIBCLANG_PATH`, and nothing else when it is set: the library file itself, or a
//!    folder holding one;
//! 2. `bin/`, `lib/`, `lib64/` under `llvm-config --prefix` (`LLVM_CONFIG_PATH` or
//!    `llvm-config` on `PATH`);
//! 3. the folders of `LD_LIBRARY_PATH` and `LIBRARY_PATH`;
//! 4. the fixed folders in [`DIRECTORIES`] (globs, matched case-insensitively).
//!
//! A library is a file named as in [`FILENAMES`] (never `libclang-cpp`) that starts with
//! a 64-bit ELF header, the check clang-sys makes before loading it. `ldconfig`'s cache
//! is deliberately not consulted: clang-sys does not read it, so a libclang that only
//! `ldconfig -p` knows would pass this check and still fail the build.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::prereqs::{Detect, Machine};

/// File names clang-sys accepts for a runtime-loaded libclang on Linux.
const FILENAMES: &[&str] = &[
    "libclang.so",
    "libclang-*.so",
    "libclang.so.*",
    "libclang-*.so.*",
];

/// clang-sys's fixed search folders on Linux (`DIRECTORIES_LINUX`), under the machine's
/// root. On Debian they cover `/usr/lib/x86_64-linux-gnu` and `/usr/lib/llvm-*/lib`.
const DIRECTORIES: &[&str] = &[
    "usr/local/llvm*/lib*",
    "usr/local/lib*/*/*",
    "usr/local/lib*/*",
    "usr/local/lib*",
    "usr/lib*/*/*",
    "usr/lib*/*",
    "usr/lib*",
];

/// Where bindgen will find libclang on this machine, if anywhere.
pub(crate) fn find(m: &Machine) -> Detect {
    if let Some(path) = &m.libclang_path {
        // Set: clang-sys searches there and nowhere else, so installing a package would
        // not help; the variable must be fixed.
        if let Some(name) = path.file_name().and_then(OsStr::to_str)
            && is_library_name(name)
            && is_library(path)
        {
            return Detect::Found(path.clone());
        }
        return match search_directory(path) {
            Some(found) => Detect::Found(found),
            None => Detect::Misconfigured(format!(
                "LIBCLANG_PATH={} holds no libclang.so (bindgen looks nowhere else when it is set): point it at the folder that holds libclang.so, or unset it",
                path.display()
            )),
        };
    }
    let mut folders = Vec::new();
    if let Some(prefix) = llvm_prefix(m) {
        folders.extend(["bin", "lib", "lib64"].map(|d| prefix.join(d)));
    }
    folders.extend(m.ld_library_path.iter().cloned());
    folders.extend(m.library_path.iter().cloned());
    if let Some(found) = folders.iter().find_map(|d| search_directory(d)) {
        return Detect::Found(found);
    }
    DIRECTORIES
        .iter()
        .flat_map(|pattern| glob_dirs(&m.root, pattern))
        .find_map(|d| search_directory(&d))
        .map_or(Detect::Missing, Detect::Found)
}

/// `llvm-config --prefix`, as clang-sys runs it.
fn llvm_prefix(m: &Machine) -> Option<PathBuf> {
    let program = match &m.llvm_config_path {
        Some(p) => p.clone(),
        None => m.which("llvm-config")?,
    };
    let out = Command::new(program)
        .arg("--prefix")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim();
    (out.status.success() && !line.is_empty()).then(|| PathBuf::from(line))
}

/// The first libclang in `dir` (by name order), if any.
fn search_directory(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_library_name(n))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| is_library(p))
}

/// One of [`FILENAMES`], and not `libclang-cpp` (a different library).
fn is_library_name(name: &str) -> bool {
    !name.contains("-cpp.") && FILENAMES.iter().any(|p| wildcard(p, name, false))
}

/// A file (or a link to one) that starts with a 64-bit ELF header.
fn is_library(path: &Path) -> bool {
    let mut head = [0u8; 5];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == *b"\x7fELF\x02"
}

/// The folders under `root` that `pattern` (`/`-separated; `*` within one component)
/// names, in name order.
fn glob_dirs(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut paths = vec![root.to_path_buf()];
    for part in pattern.split('/') {
        let mut next = Vec::new();
        for base in &paths {
            if !part.contains('*') {
                next.push(base.join(part));
                continue;
            }
            let Ok(entries) = fs::read_dir(base) else {
                continue;
            };
            let mut names: Vec<_> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| wildcard(part, n, true))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        paths = next;
    }
    paths.retain(|p| p.is_dir());
    paths
}

/// Whether `name` matches `pattern`, where `*` is any run of characters.
fn wildcard(pattern: &str, name: &str, ignore_case: bool) -> bool {
    let (pattern, name) = if ignore_case {
        (pattern.to_lowercase(), name.to_lowercase())
    } else {
        (pattern.to_owned(), name.to_owned())
    };
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prereqs::tests::{Scratch, fake_library};

    #[test]
    fn wildcards() {
        assert!(wildcard("libclang-*.so.*", "libclang-14.so.1", false));
        assert!(wildcard("libclang.so", "libclang.so", false));
        assert!(!wildcard("libclang.so", "libclang.so.1", false));
        assert!(!wildcard("libclang-*.so", "libclang-14.so.1", false));
        assert!(wildcard("lib*", "LIB64", true));
        assert!(!wildcard("llvm*", "lib", true));
        assert!(wildcard("*", "x86_64-linux-gnu", true));
        assert!(!is_library_name("libclang-cpp.so.14"));
        assert!(is_library_name("libclang-14.so.13"));
    }

    #[test]
    fn debian_layouts_are_found() -> Result<(), Box<dyn std::error::Error>> {
        // libclang1-14 puts the library here; libclang-14-dev adds the links under llvm-14.
        for dir in ["usr/lib/x86_64-linux-gnu", "usr/lib/llvm-14/lib", "usr/lib"] {
            let s = Scratch::new("debian")?;
            let lib = s.path().join(dir).join("libclang-14.so.1");
            fake_library(&lib)?;
            let m = s.machine();
            assert_eq!(find(&m), Detect::Found(lib), "{dir}");
        }
        Ok(())
    }

    #[test]
    fn missing_when_only_look_alikes() -> Result<(), Box<dyn std::error::Error>> {
        let s = Scratch::new("lookalike")?;
        let dir = s.path().join("usr/lib/x86_64-linux-gnu");
        // libclang-cpp is another library; a file that is not ELF, or a folder that
        // clang-sys does not search, does not count.
        fake_library(&dir.join("libclang-cpp.so.14"))?;
        fs::write(dir.join("libclang.so"), "INPUT(-lclang)")?;
        fake_library(&s.path().join("opt/llvm/lib/libclang.so"))?;
        fs::create_dir_all(s.path().join("usr/local/lib"))?;
        assert_eq!(find(&s.machine()), Detect::Missing);
        Ok(())
    }

    #[test]
    fn library_path_variables_are_searched() -> Result<(), Box<dyn std::error::Error>> {
        let s = Scratch::new("ldpath")?;
        let lib = s.path().join("opt/llvm/lib/libclang.so");
        fake_library(&lib)?;
        let mut m = s.machine();
        assert_eq!(find(&m), Detect::Missing);
        m.ld_library_path = vec![s.path().join("nothing"), s.path().join("opt/llvm/lib")];
        assert_eq!(find(&m), Detect::Found(lib.clone()));
        m.ld_library_path.clear();
        m.library_path = vec![s.path().join("opt/llvm/lib")];
        assert_eq!(find(&m), Detect::Found(lib));
        Ok(())
    }

    #[test]
    fn libclang_path_is_the_only_place_searched() -> Result<(), Box<dyn std::error::Error>> {
        let s = Scratch::new("libclang-path")?;
        let system = s.path().join("usr/lib/x86_64-linux-gnu/libclang-14.so.1");
        fake_library(&system)?;
        let custom = s.path().join("opt/llvm/lib/libclang.so.18");
        fake_library(&custom)?;
        let empty = s.path().join("empty");
        fs::create_dir_all(&empty)?;
        let mut m = s.machine();

        // An empty folder: the system's libclang does not count, and no package can help.
        m.libclang_path = Some(empty.clone());
        assert_eq!(
            find(&m),
            Detect::Misconfigured(format!(
                "LIBCLANG_PATH={} holds no libclang.so (bindgen looks nowhere else when it is set): point it at the folder that holds libclang.so, or unset it",
                empty.display()
            ))
        );
        // A folder holding one, or the file itself.
        m.libclang_path = custom.parent().map(Path::to_path_buf);
        assert_eq!(find(&m), Detect::Found(custom.clone()));
        m.libclang_path = Some(custom.clone());
        assert_eq!(find(&m), Detect::Found(custom));
        Ok(())
    }
}
