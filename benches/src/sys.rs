//! The machine: process memory from /proc, load, and the raw bandwidths a testnet's
//! figures are bounded by (loopback TCP, disk writes).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};

/// Memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Resident set now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set since start or the last [`reset_peak`] (VmHWM).
    pub hwm_kib: u64,
}

/// The value of the line `name` (e.g. `"VmRSS:"`) of a /proc text given in kB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Parses the VmRSS and VmHWM lines of a `/proc/PID/status` text.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| kib_field(text, name);
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// The memory of process `pid`.
///
/// # Errors
/// When it cannot be read (the process is gone).
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status(&text).with_context(|| format!("{path} has no VmRSS/VmHWM"))
}

/// CPU time a process used so far, user + system, in seconds: fields 14 and 15 of
/// `/proc/PID/stat` (threads that ended included), in the kernel's fixed user tick of
/// 1/100 s (`USER_HZ`).
///
/// # Errors
/// When it cannot be read (the process is gone) or does not parse.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("{path} does not parse"))
}

/// utime + stime of a `/proc/PID/stat` text, in seconds. The command name (field 2, in
/// parentheses) may hold spaces and parentheses: fields are counted after its last `)`.
pub fn parse_stat_cpu(text: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// How much of a process's memory is its own, from `/proc/PID/smaps_rollup`, in KiB.
/// RSS also counts the pages of the program's file that every process running it shares
/// (most of an idle node's RSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    /// Proportional set size: each shared page divided among the processes mapping it.
    pub pss_kib: u64,
    /// Anonymous memory (heap, stacks): the process's own.
    pub anon_kib: u64,
}

/// Parses the Pss and Anonymous lines of a `/proc/PID/smaps_rollup` text.
pub fn parse_smaps_rollup(text: &str) -> Option<Shares> {
    let field = |name: &str| kib_field(text, name);
    Some(Shares {
        pss_kib: field("Pss:")?,
        anon_kib: field("Anonymous:")?,
    })
}

/// The memory shares of process `pid`.
///
/// # Errors
/// When they cannot be read (the process is gone, or another user's).
pub fn shares(pid: u32) -> anyhow::Result<Shares> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_smaps_rollup(&text).with_context(|| format!("{path} has no Pss/Anonymous"))
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS (`echo 5 >
/// /proc/PID/clear_refs`; needs the right to write there: the same user or root).
///
/// # Errors
/// When the kernel refuses.
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("cannot write {path}"))
}

/// `/proc/loadavg`, trimmed ("" if unreadable).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The CPU model name from `/proc/cpuinfo` ("" if unknown).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// MB/s of one TCP stream over 127.0.0.1 moving `bytes` in 1 MiB writes (a thread each
/// side): the bound of a node-to-node or CLI-to-node transfer, before any protocol.
///
/// # Errors
/// Socket errors.
pub fn loopback_mbs(bytes: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    });
    let chunk = crate::pipeline::input(1 << 20);
    let started = Instant::now();
    let mut conn = TcpStream::connect(addr)?;
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        conn.write_all(&chunk[..n])?;
        sent += n;
    }
    drop(conn);
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    if received != bytes {
        bail!("loopback moved {received} of {bytes} bytes");
    }
    Ok(bytes as f64 / secs / 1e6)
}

/// The median round trip, in ms, of a 64-byte message and its 64-byte answer over one
/// TCP connection on 127.0.0.1 (no Nagle delay), `rounds` times: what a request and its
/// answer between two processes of this machine cost at the least.
///
/// # Errors
/// Socket errors.
pub fn loopback_rtt_ms(rounds: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        for _ in 0..rounds {
            conn.read_exact(&mut buf)?;
            conn.write_all(&buf)?;
        }
        Ok(())
    });
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        conn.write_all(&buf)?;
        conn.read_exact(&mut buf)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("loopback echo panicked"))??;
    crate::stats::median(&times).ok_or_else(|| anyhow::anyhow!("no round trip timed"))
}

/// CPU seconds this thread has run (`/proc/thread-self/schedstat`, nanoseconds).
///
/// # Errors
/// The file cannot be read or parsed (not Linux).
pub fn thread_cpu_seconds() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unreadable schedstat: {text:?}"))?;
    Ok(ns as f64 / 1e9)
}

/// What a write probe measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// MB/s of wall-clock time.
    pub mbs: f64,
    /// MB per CPU-second of the writing thread (its system calls included; the kernel's
    /// writeback threads not).
    pub cpu_mbs: f64,
}

/// Writing `bytes` to a new file in `dir` in `chunk`-byte writes, with an fsync
/// after each write (`sync_each`, as a node syncs every shard it stores) or once at the
/// end: the bound of what the nodes (all on this disk) can store; MB/s and the CPU the
/// writing thread spent.
///
/// # Errors
/// File errors.
pub fn disk_write(
    dir: &Path,
    bytes: usize,
    chunk: usize,
    sync_each: bool,
) -> anyhow::Result<Throughput> {
    let path = dir.join("disk-bandwidth-probe");
    let data = crate::pipeline::input(chunk.max(1));
    let cpu = thread_cpu_seconds()?;
    let started = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    let mut written = 0;
    while written < bytes {
        let n = data.len().min(bytes - written);
        file.write_all(&data[..n])?;
        if sync_each {
            file.sync_data()?;
        }
        written += n;
    }
    file.sync_all()?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = (thread_cpu_seconds()? - cpu).max(1e-9);
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Throughput {
        mbs: bytes as f64 / secs / 1e6,
        cpu_mbs: bytes as f64 / cpu / 1e6,
    })
}

/// [`disk_write`] `runs` times (at least once): the fastest rate and the least CPU per
/// byte of them, with every run's rate. One write's rate on a shared disk depends on the
/// writeback of whatever came before it (one run read 572 MB/s, another 1,534 MB/s, twelve
/// minutes apart): the best of a few is the bound a ratio should be taken against.
///
/// # Errors
/// File errors.
pub fn disk_write_best(
    dir: &Path,
    bytes: usize,
    chunk: usize,
    sync_each: bool,
    runs: usize,
) -> anyhow::Result<(Throughput, Vec<f64>)> {
    let mut best = disk_write(dir, bytes, chunk, sync_each)?;
    let mut rates = vec![best.mbs];
    for _ in 1..runs {
        let run = disk_write(dir, bytes, chunk, sync_each)?;
        rates.push(run.mbs);
        best = Throughput {
            mbs: best.mbs.max(run.mbs),
            cpu_mbs: best.cpu_mbs.max(run.cpu_mbs),
        };
    }
    Ok((best, rates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_counted_after_the_command_name() {
        let text =
            "4242 (tokio) (x) 1) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu(text), Some(3.25));
        assert_eq!(parse_stat_cpu("4242 (cut"), None);
        assert_eq!(parse_stat_cpu("1 (a) S 1 2"), None);
        let own = cpu_seconds(std::process::id()).unwrap_or(-1.0);
        assert!(own >= 0.0, "this process's own stat reads");
    }

    #[test]
    fn smaps_rollup_lines_are_parsed() {
        let text = "55d5-7fff ---p 00000000 00:00 0 [rollup]\nRss:  34804 kB\nPss:  15496 kB\nPss_Anon: 5980 kB\nAnonymous: 5980 kB\n";
        assert_eq!(
            parse_smaps_rollup(text),
            Some(Shares {
                pss_kib: 15496,
                anon_kib: 5980
            })
        );
        assert_eq!(parse_smaps_rollup("Rss: 1 kB\n"), None);
        assert!(shares(std::process::id()).is_ok_and(|s| s.anon_kib > 0));
    }

    #[test]
    fn status_lines_are_parsed() {
        let text = "Name:\tdatamesh\nVmPeak:\t  900 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kib: 40000,
                hwm_kib: 51234
            })
        );
        assert_eq!(parse_status("Name: x\nVmRSS: 1 kB\n"), None);
    }

    #[test]
    fn own_memory_is_readable_and_peak_resets() -> anyhow::Result<()> {
        let me = std::process::id();
        let m = memory(me)?;
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        reset_peak(me)?;
        Ok(())
    }

    #[test]
    fn thread_cpu_time_grows_with_work() -> anyhow::Result<()> {
        let before = thread_cpu_seconds()?;
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(thread_cpu_seconds()? > before, "{x}");
        Ok(())
    }

    #[test]
    fn loopback_and_disk_probes_move_every_byte() -> anyhow::Result<()> {
        assert!(loopback_mbs(3 << 20)? > 0.0);
        assert!(loopback_rtt_ms(50)? > 0.0);
        let dir = tempfile::tempdir()?;
        assert!(disk_write(dir.path(), (2 << 20) + 7, 1 << 20, false)?.mbs > 0.0);
        assert!(disk_write(dir.path(), 3 << 18, 1 << 18, true)?.mbs > 0.0);
        let (best, rates) = disk_write_best(dir.path(), 1 << 20, 1 << 18, false, 3)?;
        assert_eq!(rates.len(), 3);
        assert!(
            rates.iter().all(|&r| r > 0.0 && r <= best.mbs),
            "{rates:?} {best:?}"
        );
        assert!(rates.contains(&best.mbs));
        assert!(!dir.path().join("disk-bandwidth-probe").exists());
        Ok(())
    }
}
