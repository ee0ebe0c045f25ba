//! Process hardening for binaries that hold keys.

use std::io;

/// Disables core dumps (`RLIMIT_CORE` = 0) and, on Linux, marks the process not dumpable
/// (`PR_SET_DUMPABLE` = 0, which also stops other processes of the same user from
/// attaching a debugger or reading its memory through `/proc`). Call it first thing in
/// `main`.
///
/// Not covered: swap. Secrets are zeroized when dropped but may be paged out while in
/// use; use encrypted swap (or none) on machines that hold keys.
///
/// # Errors
///
/// The error of the system call that failed.
pub fn harden_process() -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}
