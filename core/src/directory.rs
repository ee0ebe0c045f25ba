//! The directory object of a stored folder: every entry's relative path, kind, mode and
//! mtime, the file id of each file, the target of each symlink. It is stored as the
//! content of an ordinary file (sealed, erasure-coded, its name in sealed metadata), so
//! storage nodes learn no names; its file id is the folder's id.
//!
//! Wire form (docs/format.md, "Directory object"): [`DIRECTORY_MAGIC_V2`], then the
//! postcard encoding of the folder's own mode and mtime ([`Root`]) and the entries; a
//! version 1 object ([`DIRECTORY_MAGIC`], the entries only, no root) still reads. It comes from the network (whoever can open the file):
//! hostile until [`Directory::from_bytes`] checked it: bounded size, count and lengths,
//! relative paths of plain components only, each parent an earlier folder entry, no
//! duplicates, canonical encoding.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::ids::FileId;

/// What a version 1 directory object starts with (24 bytes): the entries only.
pub const DIRECTORY_MAGIC: &[u8; 24] = b"datamesh directory v1\0\0\0";
/// What a version 2 directory object starts with (24 bytes): the folder's own mode and
/// mtime, then the entries. Written whenever [`Directory::root`] is set.
pub const DIRECTORY_MAGIC_V2: &[u8; 24] = b"datamesh directory v2\0\0\0";
/// Largest directory object accepted (64 MiB).
pub const MAX_DIRECTORY_LEN: usize = 64 << 20;
/// Most entries in one directory object.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Longest relative path or symlink target, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;

/// A stored folder: its own mode and mtime, its entries, each parent before its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    /// The folder's own mode and mtime (`None` in a version 1 object).
    pub root: Option<Root>,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// The stored folder's own mode and mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Unix permission bits (at most `0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
}

/// Version 1's body.
#[derive(Serialize, Deserialize)]
struct BodyV1 {
    entries: Vec<Entry>,
}

/// Version 2's body.
#[derive(Serialize, Deserialize)]
struct BodyV2 {
    root: Root,
    entries: Vec<Entry>,
}

/// One entry of a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the folder, components separated by `/`.
    pub path: String,
    /// Unix permission bits (at most `0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: u64,
    /// What it is.
    pub kind: EntryKind,
}

/// The kind of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A file: its length and its file id (text form, `dm1…`).
    File {
        /// Plaintext bytes.
        size: u64,
        /// The file id, text form.
        id: String,
    },
    /// A symbolic link, kept as a link: its target as read.
    Symlink {
        /// The link's target.
        target: String,
    },
}

/// A directory object that does not parse or check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a valid directory object: {0}")]
pub struct DirectoryError(pub &'static str);

impl Entry {
    /// The file id of a file entry.
    pub fn file_id(&self) -> Option<FileId> {
        match &self.kind {
            EntryKind::File { id, .. } => id.parse().ok(),
            _ => None,
        }
    }
}

/// Whether `path` is a relative path of plain components (no `.`, `..`, empty or
/// over-long component, no NUL, not absolute), at most [`MAX_PATH_LEN`] bytes.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH_LEN
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= MAX_COMPONENT_LEN)
}

/// Whether a symlink at `link` (a plain relative path) pointing to `target` resolves,
/// lexically, to a path inside the folder: not absolute, and its `..` never climb above
/// the folder's root.
pub fn link_stays_inside(link: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    // The folder holding the link, as a depth.
    let mut depth = link.split('/').count().saturating_sub(1) as i64;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

impl Directory {
    /// The wire form: [`DIRECTORY_MAGIC_V2`] and the postcard body with the root, or
    /// without a root [`DIRECTORY_MAGIC`] and the entries (version 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries = self.entries.clone();
        // Strings, integers and vectors always serialize into a Vec.
        let (magic, body) = match self.root {
            Some(root) => (
                DIRECTORY_MAGIC_V2,
                postcard::to_stdvec(&BodyV2 { root, entries }),
            ),
            None => (DIRECTORY_MAGIC, postcard::to_stdvec(&BodyV1 { entries })),
        };
        let mut out = magic.to_vec();
        out.extend_from_slice(&body.unwrap_or_default());
        out
    }

    /// Whether `bytes` start like a directory object (either version).
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.starts_with(DIRECTORY_MAGIC) || bytes.starts_with(DIRECTORY_MAGIC_V2)
    }

    /// Parses and checks a directory object (untrusted bytes).
    ///
    /// # Errors
    /// [`DirectoryError`] naming the first problem.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DirectoryError> {
        if bytes.len() > MAX_DIRECTORY_LEN {
            return Err(DirectoryError("too large"));
        }
        // The entry count is checked before the vector is allocated: postcard reads a
        // varint length first; a body claiming more entries than bytes cannot decode.
        let undecodable = |_| DirectoryError("undecodable body");
        let (dir, rest) = if let Some(body) = bytes.strip_prefix(DIRECTORY_MAGIC_V2.as_slice()) {
            let (body, rest): (BodyV2, _) = postcard::take_from_bytes(body).map_err(undecodable)?;
            let dir = Self {
                root: Some(body.root),
                entries: body.entries,
            };
            (dir, rest)
        } else if let Some(body) = bytes.strip_prefix(DIRECTORY_MAGIC.as_slice()) {
            let (body, rest): (BodyV1, _) = postcard::take_from_bytes(body).map_err(undecodable)?;
            let dir = Self {
                root: None,
                entries: body.entries,
            };
            (dir, rest)
        } else {
            return Err(DirectoryError("no directory header"));
        };
        if !rest.is_empty() {
            return Err(DirectoryError("trailing bytes"));
        }
        dir.check()?;
        if dir.to_bytes() != bytes {
            return Err(DirectoryError("non-canonical encoding"));
        }
        Ok(dir)
    }

    /// Checks the rules [`Directory::from_bytes`] enforces (also before storing one).
    ///
    /// # Errors
    /// [`DirectoryError`] naming the first problem.
    pub fn check(&self) -> Result<(), DirectoryError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(DirectoryError("too many entries"));
        }
        if self.root.is_some_and(|root| root.mode > 0o7777) {
            return Err(DirectoryError("a mode beyond 0o7777"));
        }
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for entry in &self.entries {
            if !is_plain_relative(&entry.path) {
                return Err(DirectoryError(
                    "a path that is empty, absolute, too long or has `.`/`..`",
                ));
            }
            if entry.mode > 0o7777 {
                return Err(DirectoryError("a mode beyond 0o7777"));
            }
            if !seen.insert(&entry.path) {
                return Err(DirectoryError("a path listed twice"));
            }
            if let Some((parent, _)) = entry.path.rsplit_once('/')
                && !dirs.contains(parent)
            {
                return Err(DirectoryError("an entry before its folder"));
            }
            match &entry.kind {
                EntryKind::Dir => {
                    dirs.insert(&entry.path);
                }
                EntryKind::File { id, .. } => {
                    if id.parse::<FileId>().is_err() {
                        return Err(DirectoryError("a file id that does not parse"));
                    }
                }
                EntryKind::Symlink { target } => {
                    if target.is_empty() || target.len() > MAX_PATH_LEN || target.contains('\0') {
                        return Err(DirectoryError(
                            "a symlink target empty, too long or with NUL",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id() -> String {
        FileId::of_manifest(b"m").to_string()
    }

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            mode: 0o644,
            mtime: 1_700_000_000,
            kind,
        }
    }

    fn sample() -> Directory {
        Directory {
            root: Some(Root {
                mode: 0o750,
                mtime: 1_600_000_000,
            }),
            entries: vec![
                entry("a", EntryKind::Dir),
                entry("a/f.txt", EntryKind::File { size: 3, id: id() }),
                entry(
                    "a/link",
                    EntryKind::Symlink {
                        target: "f.txt".into(),
                    },
                ),
                entry("g", EntryKind::File { size: 0, id: id() }),
            ],
        }
    }

    #[test]
    fn a_directory_round_trips() -> Result<(), DirectoryError> {
        let dir = sample();
        assert_eq!(Directory::from_bytes(&dir.to_bytes())?, dir);
        assert!(Directory::looks_like(&dir.to_bytes()));
        assert_eq!(dir.entries[1].file_id().map(|i| i.to_string()), Some(id()));
        Ok(())
    }

    #[test]
    fn a_version_1_object_still_reads_without_a_root() -> Result<(), DirectoryError> {
        let mut v1 = sample();
        v1.root = None;
        let bytes = v1.to_bytes();
        assert!(bytes.starts_with(DIRECTORY_MAGIC));
        assert_eq!(Directory::from_bytes(&bytes)?, v1);
        let v2 = sample().to_bytes();
        assert!(v2.starts_with(DIRECTORY_MAGIC_V2) && Directory::looks_like(&v2));
        // The same body under the other header does not parse as the other version.
        let mut swapped = DIRECTORY_MAGIC.to_vec();
        swapped.extend_from_slice(&v2[DIRECTORY_MAGIC_V2.len()..]);
        assert!(Directory::from_bytes(&swapped).is_err());
        let mut root_mode = sample();
        root_mode.root = Some(Root {
            mode: 0o10000,
            mtime: 0,
        });
        assert!(Directory::from_bytes(&root_mode.to_bytes()).is_err());
        Ok(())
    }

    #[test]
    fn hostile_directories_are_refused() {
        let bad_paths = [
            "",
            "/etc/passwd",
            "a/../../x",
            "./a",
            "a//b",
            "a/",
            "x\0y",
            "..",
            "b/c",
        ];
        for path in bad_paths {
            let mut dir = sample();
            dir.entries
                .push(entry(path, EntryKind::File { size: 1, id: id() }));
            assert!(Directory::from_bytes(&dir.to_bytes()).is_err(), "{path:?}");
        }
        let mut twice = sample();
        twice.entries.push(entry("g", EntryKind::Dir));
        assert!(Directory::from_bytes(&twice.to_bytes()).is_err());
        let mut mode = sample();
        mode.entries[0].mode = 0o10000;
        assert!(Directory::from_bytes(&mode.to_bytes()).is_err());
        let mut bad_id = sample();
        bad_id.entries[1].kind = EntryKind::File {
            size: 1,
            id: "dm1x".into(),
        };
        assert!(Directory::from_bytes(&bad_id.to_bytes()).is_err());
        // A file is no folder: nothing may be listed under it.
        let mut under_file = sample();
        under_file.entries.push(entry("g/x", EntryKind::Dir));
        assert!(Directory::from_bytes(&under_file.to_bytes()).is_err());
        let mut bytes = sample().to_bytes();
        bytes.push(0);
        assert!(Directory::from_bytes(&bytes).is_err());
        assert!(Directory::from_bytes(b"not a directory").is_err());
    }

    #[test]
    fn links_that_leave_the_folder_are_told() {
        assert!(link_stays_inside("a/link", "f.txt"));
        assert!(link_stays_inside("a/link", "../g"));
        assert!(link_stays_inside("a/b/link", "../../g"));
        assert!(!link_stays_inside("a/link", "../../g"));
        assert!(!link_stays_inside("link", "../x"));
        assert!(!link_stays_inside("link", "/etc/passwd"));
        assert!(!link_stays_inside("a/link", "x/../../../y"));
        assert!(!link_stays_inside("a/link", ""));
    }

    proptest! {
        /// Any bytes after either header: a checked directory or an error, never a
        /// panic; what parses re-encodes to the input and satisfies every rule.
        #[test]
        fn parsing_any_bytes_never_panics(v2 in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut bytes = if v2 { DIRECTORY_MAGIC_V2.to_vec() } else { DIRECTORY_MAGIC.to_vec() };
            bytes.extend_from_slice(&body);
            if let Ok(dir) = Directory::from_bytes(&bytes) {
                prop_assert_eq!(dir.to_bytes(), bytes);
                prop_assert!(dir.check().is_ok());
            }
        }

        /// A valid directory with one byte changed: never a panic, never an unchecked
        /// result.
        #[test]
        fn mutated_directories_never_panic(at in any::<usize>(), to in any::<u8>()) {
            let mut bytes = sample().to_bytes();
            let n = bytes.len();
            bytes[at % n] = to;
            if let Ok(dir) = Directory::from_bytes(&bytes) {
                prop_assert!(dir.check().is_ok());
                for e in &dir.entries {
                    prop_assert!(is_plain_relative(&e.path));
                }
            }
        }
    }
}
