//! The DataMesh benchmark across separate hosts (issue 17): put and get of one file
//! between network namespaces, over TCP and over QUIC, on the bare bridge and on links
//! shaped to 1 Gbit/s both ways (`tc tbf`), each next to the link limit. Needs root.
//!
//! ```sh
//! cargo build --release -p datamesh -p datamesh-benches
//! sudo "${CARGO_TARGET_DIR:-target}"/release/hosts [--size MIB] [--out FILE.json]
//! ```
//!
//! Seven nodes on seven hosts; node 0 (host 0) puts, node 6 (host 6) gets (the file is
//! shared with it). Limits: for the bare bridge, one TCP stream between host 0 and host 6
//! (this program in both namespaces, 1 MiB writes); for the shaped links, 1 Gbit/s. A put
//! sends 1.5 times the file (Reed-Solomon 4+2) out of the putter's link, so its limit is
//! the link's rate / 1.5; a get takes in the file once, so its limit is the link's rate.
//! Default size 256 MiB; `--size 16` is a quick run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use datamesh_benches::args::{self, Common};
use datamesh_benches::report::{Figure, Report};
use datamesh_benches::sys;
use datamesh_testnet::input::{MIB, assert_same_file, make_file};
use datamesh_testnet::run::run_within;
use datamesh_testnet::{Config, Kdf, Testnet};

const USAGE: &str = "usage: hosts [--size MIB] [--out FILE.json] [--datamesh PATH] [--dir DIR]
  --size MIB       the file put and got [default: 256]
  --out FILE       where to write the JSON report [default: hosts.json]
  --datamesh PATH  the datamesh binary [default: the one next to this program]
  --dir DIR        scratch folder [default: a new temporary folder]
  (internal: --sink PORT, --source ADDR BYTES: the link measurement's two ends)";

/// Nodes, one per host.
const HOSTS: usize = 7;
/// The shaped links' rate.
const SHAPED_BITS: u64 = 1_000_000_000;
/// The port of the link measurement.
const SINK_PORT: u16 = 5399;
/// No command may take longer.
const DEADLINE: Duration = Duration::from_secs(1200);

#[derive(Debug)]
struct Args {
    size: usize,
    common: Common,
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let internal = match argv.first().map(String::as_str) {
        Some("--sink") => Some(sink(&argv[1..])),
        Some("--source") => Some(source(&argv[1..])),
        _ => None,
    };
    if let Some(result) = internal {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match args::or_exit(parse_args(argv.into_iter()), USAGE) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut size = 256;
    let common = args::parse(args, "hosts.json", |flag, value| {
        if flag != "--size" {
            return Ok(false);
        }
        size = value()?
            .parse()
            .ok()
            .filter(|n| (1..=4096).contains(n))
            .ok_or("--size wants MiB in 1..=4096")?;
        Ok(true)
    })?;
    Ok(common.map(|common| Args { size, common }))
}

/// `--sink PORT`: accepts one connection, reads it to the end, answers the byte count.
fn sink(args: &[String]) -> anyhow::Result<()> {
    let port: u16 = args.first().context("--sink PORT")?.parse()?;
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    let (mut conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut buf = vec![0u8; MIB];
    let mut total: u64 = 0;
    loop {
        match conn.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    conn.write_all(&total.to_le_bytes())?;
    Ok(())
}

/// `--source ADDR BYTES`: sends BYTES to a sink, waits for its count, prints MB/s.
#[allow(clippy::print_stdout)]
fn source(args: &[String]) -> anyhow::Result<()> {
    let (addr, bytes) = match args {
        [addr, bytes] => (addr.as_str(), bytes.parse::<u64>()?),
        _ => bail!("--source ADDR BYTES"),
    };
    let chunk = datamesh_testnet::input::random_bytes(MIB, 7);
    let mut conn = None;
    for _ in 0..50 {
        match TcpStream::connect(addr) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let mut conn = conn.with_context(|| format!("no sink at {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk
            .len()
            .min(usize::try_from(bytes - sent).unwrap_or(MIB));
        conn.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    conn.read_exact(&mut count)?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        u64::from_le_bytes(count) == bytes,
        "the sink got fewer bytes"
    );
    println!("{}", bytes as f64 / secs / 1e6);
    Ok(())
}

/// MB/s of one TCP stream from node `from`'s host to node `to`'s.
fn link_mbs(net: &Testnet, from: usize, to: usize, bytes: usize) -> anyhow::Result<f64> {
    let me = std::env::current_exe()?;
    let (src, dst) = (
        net.namespace_of(from).context("no hosts")?,
        net.namespace_of(to).context("no hosts")?,
    );
    let addr = format!("{}:{SINK_PORT}", net.address_of(to).context("no hosts")?);
    let mut sink = Command::new("ip");
    sink.args(["netns", "exec", &dst])
        .arg(&me)
        .args(["--sink", &SINK_PORT.to_string()]);
    let mut sink = sink.spawn().context("cannot start the link sink")?;
    let mut src_cmd = Command::new("ip");
    src_cmd
        .args(["netns", "exec", &src])
        .arg(&me)
        .args(["--source", &addr, &bytes.to_string()]);
    let out = src_cmd.output().context("cannot run the link source");
    let _ = sink.kill();
    let _ = sink.wait();
    let out = out?;
    ensure!(
        out.status.success(),
        "link measurement failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn run(args: &Args) -> anyhow::Result<()> {
    datamesh_testnet::require_root_for_hosts()?;
    let binary = match &args.common.datamesh {
        Some(path) => path.clone(),
        None => datamesh_testnet::run::cargo_binary("datamesh")?,
    };
    ensure!(
        binary.is_file(),
        "no datamesh binary at {}: run `cargo build --release -p datamesh` first, or pass --datamesh PATH",
        binary.display()
    );
    let scratch = match &args.common.dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("datamesh-hosts-")
            .tempdir_in(dir)?,
        None => tempfile::Builder::new()
            .prefix("datamesh-hosts-")
            .tempdir()?,
    };
    let size = args.size * MIB;
    let mut report = Report::default();
    report.set("cpu", sys::cpu_model());
    report.set("loadavg_start", sys::loadavg());
    report.set("size_mib", args.size);
    report.set("hosts", HOSTS);
    report.set(
        "units",
        "MB/s = 10^6 bytes/s; ratio = value / limit; put limit = link / 1.5 (RS 4+2)",
    );
    println!(
        "DataMesh across {HOSTS} hosts (network namespaces), {} MiB (load {})",
        args.size,
        sys::loadavg()
    );
    let input = make_file(scratch.path(), size, 1717)?;
    let mut failed = Vec::new();
    for transport in ["tcp", "quic"] {
        for shaped in [false, true] {
            let name = format!("{transport}{}", if shaped { ".1gbit" } else { "" });
            eprintln!("== {name} (load {})", sys::loadavg());
            if let Err(e) = variant(
                &binary,
                scratch.path(),
                &input,
                transport,
                shaped,
                &mut report,
            ) {
                eprintln!("error: {name}: {e:#}");
                report.errors.push((name, format!("{e:#}")));
                failed.push(());
            }
        }
    }
    report.set("loadavg_end", sys::loadavg());
    report.write(&args.common.out)?;
    eprintln!("report written to {}", args.common.out.display());
    ensure!(failed.is_empty(), "{} variants failed", failed.len());
    Ok(())
}

/// One testnet: put and get of `input` over `transport`, the links shaped or not.
fn variant(
    binary: &Path,
    scratch: &Path,
    input: &Path,
    transport: &str,
    shaped: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let name = format!("hosts.{transport}{}", if shaped { ".1gbit" } else { "" });
    let dir = scratch.join(name.replace('.', "-"));
    let net = Testnet::up_with(
        Config::new(binary, &dir, HOSTS)
            .with_kdf(Kdf::FAST)
            .with_hosts(HOSTS)
            .with_transports(transport)
            .with_ready_timeout(Duration::from_secs(120)),
    )?;
    let getter = HOSTS - 1;
    let link = if shaped {
        for i in 0..HOSTS {
            net.limit_link(i, Some(SHAPED_BITS))?;
        }
        let measured = link_mbs(&net, 0, getter, 64 * MIB)?;
        report.add(
            Figure::new(format!("{name}.link"), measured, "MB/s")
                .limit("tbf rate", SHAPED_BITS as f64 / 8e6)
                .note("one TCP stream host 0 -> host 6 through the shaped links"),
        );
        SHAPED_BITS as f64 / 8e6
    } else {
        let measured = link_mbs(&net, 0, getter, 512 * MIB)?;
        report.add(
            Figure::new(format!("{name}.link"), measured, "MB/s")
                .note("one TCP stream host 0 -> host 6 over veth + bridge"),
        );
        measured
    };
    let bytes = std::fs::metadata(input)?.len() as f64;

    let mut export = net.cli(getter);
    export
        .args(["keys", "export-public", "--password-file"])
        .arg(net.password_file(getter));
    let key = String::from_utf8(run_within(export, scratch, DEADLINE)?.ok("export-public")?)?;
    let mut put = net.cli(0);
    put.arg("put").arg(input).args(["--to", key.trim()]);
    let outcome = run_within(put, scratch, DEADLINE)?.success("put")?;
    let id = String::from_utf8(outcome.stdout)?.trim().to_string();
    let put_mbs = bytes / outcome.elapsed.as_secs_f64() / 1e6;
    report.add(
        Figure::new(format!("{name}.put"), put_mbs, "MB/s")
            .limit("link / 1.5", link / 1.5)
            .note("CLI put on host 0 (file on host 0's disk) until the file id is printed"),
    );

    let out = dir.join("copy");
    let mut get = net.cli(getter);
    get.args(["get", &id, "-o"]).arg(&out);
    let outcome = run_within(get, scratch, DEADLINE)?.success("get")?;
    let get_mbs = bytes / outcome.elapsed.as_secs_f64() / 1e6;
    assert_same_file(input, &out)?;
    let _ = std::fs::remove_file(&out);
    report.add(
        Figure::new(format!("{name}.get"), get_mbs, "MB/s")
            .limit("link", link)
            .note("CLI get on host 6 of a file put on host 0, written to disk, compared after"),
    );
    drop(net);
    Ok(())
}
