//! The allocator setting of a node process: one glibc arena.
//!
//! A node's memory is mostly large buffers (segments, shards, frames) that one thread
//! allocates and another frees. glibc gives each thread that allocates an arena of its own
//! (up to eight per core) and keeps in each what was freed there, so a node's resident
//! memory grew with every thread that once held a buffer. With one arena a gateway's peak
//! during a 256 MiB put fell from 117-138 to 105-110 MiB and a storage node's from 72-80 to
//! 57-63 MiB, at the same speed (`benches/PROFILE.md`, session 22).
//!
//! glibc reads the setting (`GLIBC_TUNABLES`) only when a program starts, and `unsafe`
//! (`mallopt`) is forbidden here: `node run` starts itself again, once, with the setting
//! added, unless `GLIBC_TUNABLES` already sets `glibc.malloc.arena_max` (the user's choice
//! stands). Same process id, arguments, environment otherwise and standard streams.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;

/// The variable glibc reads its tunables from.
const TUNABLES: &str = "GLIBC_TUNABLES";

/// The tunable a node adds.
const ONE_ARENA: &str = "glibc.malloc.arena_max=1";

/// The name every setting of the arena count starts with.
const ARENA_MAX: &[u8] = b"glibc.malloc.arena_max=";

/// Replaces this process with itself, `GLIBC_TUNABLES` carrying one arena, unless it sets
/// the arena count already (then returns `None`). Returns the error only if the `exec`
/// failed: the node then runs with glibc's default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn restart_with_one_arena() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt as _;
    let tunables = with_one_arena(std::env::var_os(TUNABLES).as_deref())?;
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => return Some(e),
    };
    Some(
        std::process::Command::new(me)
            .args(std::env::args_os().skip(1))
            .env(TUNABLES, tunables)
            .exec(),
    )
}

/// Another C library: nothing to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn restart_with_one_arena() -> Option<std::io::Error> {
    None
}

/// `current` (the variable's value, if set) with one arena added; `None` if it sets the
/// arena count already.
fn with_one_arena(current: Option<&OsStr>) -> Option<OsString> {
    let Some(current) = current.filter(|c| !c.is_empty()) else {
        return Some(ONE_ARENA.into());
    };
    if current
        .as_bytes()
        .split(|&b| b == b':')
        .any(|tunable| tunable.starts_with(ARENA_MAX))
    {
        return None;
    }
    let mut tunables = current.to_owned();
    tunables.push(":");
    tunables.push(ONE_ARENA);
    Some(tunables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_arena_is_added_once_and_a_users_arena_count_stands() {
        let added = |current: Option<&str>| with_one_arena(current.map(OsStr::new));
        assert_eq!(added(None), Some(ONE_ARENA.into()));
        assert_eq!(added(Some("")), Some(ONE_ARENA.into()));
        assert_eq!(
            added(Some("glibc.malloc.tcache_count=0")),
            Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1".into())
        );
        // Started again with it: no second start.
        let again = added(Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1"));
        assert_eq!(again, None);
        assert_eq!(added(Some("glibc.malloc.arena_max=4")), None);
        // A name that only begins the same is another tunable.
        assert_eq!(
            added(Some("glibc.malloc.arena_test=2")),
            Some("glibc.malloc.arena_test=2:glibc.malloc.arena_max=1".into())
        );
    }
}
