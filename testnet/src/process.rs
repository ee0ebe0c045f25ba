//! Signals to node processes by pid: the nodes of a testnet attached from another
//! process are not our children, so they are watched and signalled by pid alone.

use std::io;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::error::{Error, Result};

/// How often waits poll.
pub(crate) const POLL: Duration = Duration::from_millis(100);

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

/// Whether a process with this id exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    to_pid(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Sends `sig` to process `pid`.
pub(crate) fn signal(pid: u32, sig: Signal) -> io::Result<()> {
    let pid = to_pid(pid).ok_or_else(|| io::Error::other(format!("{pid} is not a pid")))?;
    rustix::process::kill_process(pid, sig).map_err(io::Error::from)
}

/// Waits until a process that is not our child is gone; SIGKILLs it at the deadline.
pub(crate) fn wait_gone(pid: u32, timeout: Duration, index: usize) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while pid_alive(pid) {
        if Instant::now() >= deadline {
            let _ = signal(pid, Signal::KILL);
            return Err(Error::Timeout {
                what: format!("node {index} (pid {pid}) to exit"),
                waited: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}
