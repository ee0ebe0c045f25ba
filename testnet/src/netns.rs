//! The kernel's tools, run as root: `ip` (network namespaces, veth pairs, a bridge),
//! `nft` (packet filters inside a namespace) and `tc` (a rate limit on a link). Every
//! command's stderr is kept for its error.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::error::{Error, Result, io_err};

/// Whether this process runs as root (network namespaces need it).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// [`Error::NeedsRoot`] unless this process runs as root.
pub(crate) fn require_root(what: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        Err(Error::NeedsRoot(what.to_string()))
    }
}

/// Runs `program args`, feeding it `stdin`; its stdout, or [`Error::Command`].
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!(
            "cannot run `{program}` (is it installed? `cargo xtask check-prereqs --install`)"
        )))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(io_err(format!("cannot feed `{line}`")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("cannot wait for `{line}`")))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS`.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None)
}

/// `ip netns exec NS PROGRAM ARGS`.
pub(crate) fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all, None)
}

/// `nft -f -` inside namespace `ns`, the script on stdin (applied atomically).
pub(crate) fn nft_in(ns: &str, script: &str) -> Result<()> {
    run("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script)).map(drop)
}

/// `tc ARGS` in this (the root) namespace.
pub(crate) fn run_tc(args: &[&str]) -> Result<String> {
    run("tc", args, None)
}

/// The network namespaces by name (`ip netns list`).
pub(crate) fn namespaces() -> Result<Vec<String>> {
    // Lines are `NAME` or `NAME (id: N)`.
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The names of the links of this (the root) namespace.
pub(crate) fn links() -> Result<Vec<String>> {
    // `ip -o link show` lines: `7: NAME@PEER: <...> ...` or `7: NAME: <...>`.
    Ok(ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect())
}

/// The processes inside namespace `ns`.
pub(crate) fn pids_in(ns: &str) -> Result<Vec<u32>> {
    Ok(ip(&["netns", "pids", ns])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Runs `f` on a thread of its own that has entered network namespace `ns`: its
/// sockets are that namespace's (e.g. its 127.0.0.1).
pub(crate) fn within<T: Send>(ns: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    use std::os::fd::AsFd as _;
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file =
                    std::fs::File::open(&path).map_err(io_err(format!("cannot open {path}")))?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| io_err(format!("cannot enter {ns}"))(e.into()))?;
                f()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Invalid {
                    what: format!("work inside {ns}"),
                    reason: "its thread panicked".into(),
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_tool_reports_its_stderr() {
        match ip(&["link", "show", "dev", "no-such-link-dm"]) {
            Err(Error::Command {
                command, stderr, ..
            }) => {
                assert!(command.starts_with("ip link show"), "{command}");
                assert!(!stderr.is_empty());
            }
            other => panic!("expected a command error, got {other:?}"),
        }
    }
}
