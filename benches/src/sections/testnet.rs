//! The testnet section (put/get MB/s of files of several sizes against this machine's
//! limit, a get with two holders down), the small section (many small files over the
//! HTTP API and the CLI) and the memory section (peak RSS of the
//! gateway and of a storage node during those puts and gets).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use datamesh_api::Client;
use datamesh_testnet::input::{random_bytes, write_random_file};

use super::ctx::{Ctx, STORAGE_NODES};
use super::measure::{mbs, mib, progress, size_label};
use super::net::Net;
use crate::cmd::{get_bytes, histograms};
use crate::limit;
use crate::pipeline::MIB;
use crate::report::{Figure, Report};
use crate::stats::{max, median, percentile};
use crate::sys;

/// Peak RSS the gateway (node 0, which runs the put or get) should stay under, whatever
/// the file size.
pub const GATEWAY_MEMORY_TARGET_MIB: f64 = 64.0;
/// Peak RSS a storage node should stay under, whatever the file size.
pub const STORAGE_MEMORY_TARGET_MIB: f64 = 40.0;
/// Runs of each disk-write probe; the best is the limit (`sys::disk_write_best`).
const DISK_PROBE_RUNS: usize = 3;
/// The storage node whose memory is watched (node 0 is the gateway).
const WATCHED_STORAGE_NODE: usize = 1;

pub(super) fn testnet_section(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let quick = ctx.quick;
    let bytes = if quick { 64 * MIB } else { 256 * MIB };
    progress("loopback and disk bandwidth");
    let loopback = sys::loopback_mbs(bytes)?;
    report.add(Figure::new("sys.loopback", loopback, "MB/s").note("one TCP stream on 127.0.0.1"));
    let rtt = sys::loopback_rtt_ms(if quick { 500 } else { 5_000 })?;
    report.add(
        Figure::new("sys.loopback-rtt", rtt, "ms")
            .note("64 bytes there and back on one TCP connection on 127.0.0.1; median"),
    );
    let (disk, runs) = sys::disk_write_best(&ctx.dir, bytes, MIB, false, DISK_PROBE_RUNS)?;
    report.add(
        Figure::new("sys.disk-write", disk.mbs, "MB/s")
            .runs(runs)
            .note("1 MiB writes, one fsync at the end, into the scratch folder; the best run"),
    );
    let (synced, runs) =
        sys::disk_write_best(&ctx.dir, bytes / 4, 256 * 1024, true, DISK_PROBE_RUNS)?;
    report.add(
        Figure::new("sys.disk-write-synced-256KiB", synced.mbs, "MB/s")
            .runs(runs)
            .note(
                "256 KiB writes (a shard of a 1 MiB segment), fsync after each, as a node stores shards; the best run",
            ),
    );
    machine_limit(ctx.quick, synced, disk, report)?;

    let sizes: &[(usize, usize)] = if quick {
        &[(4 * MIB, 3), (16 * MIB, 2), (64 * MIB, 1)]
    } else {
        &[(16 * MIB, 5), (256 * MIB, 3), (1024 * MIB, 2)]
    };
    let mut last_ids = Vec::new();
    for &(size, runs) in sizes {
        let ids = put_get_runs(ctx, report, size, runs)?;
        last_ids.push((size, ids));
    }

    // Get with two storage nodes (holders) SIGKILLed.
    let degraded = if quick { 16 * MIB } else { 256 * MIB };
    let runs = if quick { 2 } else { 3 };
    let scratch = ctx.dir.clone();
    let dir = ctx.dir.clone();
    let net = ctx.net(report)?;
    let (id, expected) = last_ids
        .iter()
        .find(|(s, _)| *s == degraded)
        .and_then(|(_, (ids, hash))| ids.last().map(|id| (id.clone(), *hash)))
        .context("no file of the degraded size was stored")?;
    // The same size in 2 MiB segments (`put --segment-size`): half the requests per byte.
    put_get_on(net, &dir, report, degraded, runs, Setup::Segments2MiB)?;
    progress(format!(
        "get of {} with nodes 2 and 5 down",
        size_label(degraded)
    ));
    net.tn.kill(2)?;
    net.tn.kill(5)?;
    let mut speeds = Vec::new();
    for _ in 0..runs {
        let out = dir.join("out-degraded");
        let secs = net.get(&id, &out, &scratch)?;
        ensure!(
            hash_file(&out)? == expected,
            "degraded get: the copy differs"
        );
        std::fs::remove_file(&out)?;
        speeds.push(mbs(degraded, secs));
    }
    net.tn.start(2)?;
    net.tn.start(5)?;
    let limits = [
        report.as_limit("pipeline.decode.all-cores"),
        report.as_limit("sys.disk-write"),
    ];
    report.add(
        Figure::new(
            format!("testnet.get-2-down.{}", size_label(degraded)),
            median(&speeds).unwrap_or(0.0),
            "MB/s",
        )
        .tightest(&limits.into_iter().flatten().collect::<Vec<_>>())
        .runs(speeds)
        .note("`datamesh get` on the gateway with 2 of 6 storage nodes SIGKILLed; median"),
    );
    quic_runs(ctx, report, degraded, if quick { 1 } else { 2 })
}

/// This machine's limit for a put and a get (`limit.rs`): each part of their unavoidable
/// work timed on one core now, its CPU per MB of file, and the MB/s the cores carry.
fn machine_limit(
    quick: bool,
    synced: sys::Throughput,
    plain: sys::Throughput,
    report: &mut Report,
) -> anyhow::Result<()> {
    progress("this machine's limit: the unavoidable work's parts, one core each");
    let data = crate::pipeline::input(if quick { 16 * MIB } else { 64 * MIB });
    let rates = limit::measure(&data, if quick { 3 } else { 5 }, synced, plain)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (op, work) in [
        ("put", limit::put_work(&rates)),
        ("get", limit::get_work(&rates)),
    ] {
        for part in &work {
            report.add(
                Figure::new(
                    format!("limit.{op}.{}", part.what),
                    part.cpu_ms_per_mb(),
                    "CPU-ms/MB",
                )
                .note(format!(
                    "{} bytes per byte of file at {:.0} MB per CPU-second",
                    part.bytes, part.rate
                )),
            );
        }
        report.add(
            Figure::new(
                format!("limit.{op}.cpu-ms"),
                work.iter().map(limit::Work::cpu_ms_per_mb).sum::<f64>(),
                "CPU-ms/MB",
            )
            .note("the sum of the parts above: the CPU the unavoidable work needs"),
        );
        report.add(
            Figure::new(
                format!("limit.{op}.cpu"),
                limit::limit_mbs(&work, cores),
                "MB/s",
            )
            .note(format!(
                "{cores} cores over the sum of the parts above (benches/src/limit.rs)"
            )),
        );
    }
    Ok(())
}

/// `runs` puts and gets of a `size` file through the CLI on the gateway of the shared
/// (TCP) testnet, with the peak RSS of the gateway and of a storage node during each.
/// Returns the ids and the file's BLAKE3.
pub(super) fn put_get_runs(
    ctx: &mut Ctx,
    report: &mut Report,
    size: usize,
    runs: usize,
) -> anyhow::Result<(Vec<String>, [u8; 32])> {
    let dir = ctx.dir.clone();
    let net = ctx.net(report)?;
    put_get_on(net, &dir, report, size, runs, Setup::Tcp)
}

/// What a series of puts and gets varies from the default, as the figures name it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    /// TCP + Noise + Yamux, 1 MiB segments: the default, and the figures without a
    /// setup in their name.
    Tcp,
    /// QUIC v1: figures named `testnet.quic.*`.
    Quic,
    /// `put --segment-size 2MiB` on the default testnet: `testnet.segments-2MiB.*`.
    Segments2MiB,
}

impl Setup {
    fn prefix(self) -> &'static str {
        match self {
            Self::Tcp => "testnet",
            Self::Quic => "testnet.quic",
            Self::Segments2MiB => "testnet.segments-2MiB",
        }
    }

    /// The arguments `datamesh put` gets before the file.
    fn put_args(self) -> &'static [&'static str] {
        match self {
            Self::Tcp | Self::Quic => &[],
            Self::Segments2MiB => &["--segment-size", "2MiB"],
        }
    }
}

/// [`put_get_runs`] on `net`. The memory figures are the default setup's only.
fn put_get_on(
    net: &Net,
    dir: &Path,
    report: &mut Report,
    size: usize,
    runs: usize,
    setup: Setup,
) -> anyhow::Result<(Vec<String>, [u8; 32])> {
    let label = size_label(size);
    let input = dir.join(format!("in-{label}"));
    progress(format!("making a {label} input file"));
    let expected = make_file(&input, size, size as u64)?;
    let watched = [0, WATCHED_STORAGE_NODE];
    let (mut put_speeds, mut get_speeds) = (Vec::new(), Vec::new());
    let (mut put_cpu, mut get_cpu) = (Vec::new(), Vec::new());
    let mut peaks = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    let mut ids = Vec::new();
    let mut first_bytes = Vec::new();
    let cpu_ms_per_mb = |cpu: f64| cpu * 1e3 / (size as f64 / 1e6);
    for run_index in 0..runs {
        progress(format!(
            "put + get of {label} ({setup:?}), run {}/{runs}",
            run_index + 1
        ));
        net.reset_peaks(&watched)?;
        let cpu = net.cpu_seconds()?;
        let (id, secs) = net.put_with(setup.put_args(), &input, dir)?;
        put_cpu.push(cpu_ms_per_mb(net.cpu_seconds()? - cpu));
        put_speeds.push(mbs(size, secs));
        for (w, &node) in watched.iter().enumerate() {
            peaks[0][w].push(mib(net.peak_kib(node)?));
        }
        if setup == Setup::Tcp {
            let (first, copy) = first_byte_get(&net.api(0)?, &id)?;
            ensure!(copy == expected, "API get of {label}: the copy differs");
            first_bytes.push(first);
        }
        net.reset_peaks(&watched)?;
        let out = dir.join(format!("out-{label}"));
        let cpu = net.cpu_seconds()?;
        let secs = net.get(&id, &out, dir)?;
        get_cpu.push(cpu_ms_per_mb(net.cpu_seconds()? - cpu));
        get_speeds.push(mbs(size, secs));
        for (w, &node) in watched.iter().enumerate() {
            peaks[1][w].push(mib(net.peak_kib(node)?));
        }
        ensure!(
            hash_file(&out)? == expected,
            "get of {label}: the copy differs"
        );
        std::fs::remove_file(&out)?;
        ids.push(id);
    }
    // The machine's limit (`limit.rs`). The synced-write probe (one writer, an fsync per
    // 256 KiB) is not a bound: the nodes' concurrent writes share their syncs.
    let put_limits: Vec<(String, f64)> = report.as_limit("limit.put.cpu").into_iter().collect();
    let get_limits: Vec<(String, f64)> = [
        report.as_limit("limit.get.cpu"),
        report.as_limit("sys.disk-write"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let prefix = setup.prefix();
    report.add(
        Figure::new(
            format!("{prefix}.put.{label}"),
            median(&put_speeds).unwrap_or(0.0),
            "MB/s",
        )
        .tightest(&put_limits)
        .runs(put_speeds)
        .note("`datamesh put FILE` on the gateway of 6 storage nodes; median"),
    );
    report.add(
        Figure::new(
            format!("{prefix}.get.{label}"),
            median(&get_speeds).unwrap_or(0.0),
            "MB/s",
        )
        .tightest(&get_limits)
        .runs(get_speeds)
        .note("`datamesh get ID -o FILE` on the gateway, copy verified; median"),
    );
    if !first_bytes.is_empty() {
        let mut figure = Figure::new(
            format!("{prefix}.get.{label}.first-byte"),
            median(&first_bytes).unwrap_or(0.0),
            "ms",
        );
        if let Some(rtt) = report.get("sys.loopback-rtt").map(|f| f.value) {
            figure = figure.limit("3 x sys.loopback-rtt", 3.0 * rtt);
        }
        report.add(
            figure
                .runs(first_bytes)
                .note("API get of the file just put: request sent to first body byte; median"),
        );
    }
    for (op, cpu) in [("put", put_cpu), ("get", get_cpu)] {
        let unavoidable = report
            .get(&format!("limit.{op}.cpu-ms"))
            .map_or(String::new(), |f| {
                format!(" (the limit counts {:.2})", f.value)
            });
        report.add(
            Figure::new(
                format!("{prefix}.{op}.{label}.node-cpu"),
                median(&cpu).unwrap_or(0.0),
                "CPU-ms/MB",
            )
            .runs(cpu)
            .note(format!(
                "user + system CPU of every node process per MB of file{unavoidable}; median"
            )),
        );
    }
    if setup == Setup::Tcp {
        for (o, op) in ["put", "get"].into_iter().enumerate() {
            for (w, (who, target)) in [
                ("gateway", GATEWAY_MEMORY_TARGET_MIB),
                ("storage", STORAGE_MEMORY_TARGET_MIB),
            ]
            .into_iter()
            .enumerate()
            {
                let samples = std::mem::take(&mut peaks[o][w]);
                report.add(
                    Figure::new(
                        format!("memory.{who}.{op}.{label}"),
                        max(&samples).unwrap_or(0.0),
                        "MiB",
                    )
                    .limit("target", target)
                    .runs(samples)
                    .note("peak RSS (VmHWM, reset before the operation); max of runs"),
                );
            }
        }
    }
    std::fs::remove_file(&input)?;
    Ok((ids, expected))
}

/// The same put and get on a testnet whose nodes use QUIC in place of TCP + Noise +
/// Yamux (its own 7 nodes; the shared testnet idles meanwhile).
fn quic_runs(ctx: &Ctx, report: &mut Report, size: usize, runs: usize) -> anyhow::Result<()> {
    let nodes = STORAGE_NODES + 1;
    progress(format!("starting a {nodes}-node testnet on QUIC"));
    let (net, _) = Net::up_on(
        &ctx.binary,
        &ctx.dir.join("net-quic"),
        nodes,
        &ctx.dir,
        Some("quic"),
    )?;
    put_get_on(&net, &ctx.dir, report, size, runs, Setup::Quic)?;
    Ok(())
}

/// Gets of `ids` (the files `files` at the same positions) one after another; each one's
/// time in milliseconds.
fn timed_gets(api: &Client, ids: &[String], files: &[Vec<u8>]) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(ids.len());
    for (id, body) in ids.iter().zip(files) {
        let t = Instant::now();
        let got = get_bytes(api, id)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(got == *body, "small file {id} came back different");
    }
    Ok(ms)
}

/// The `small` section: many 4 KiB files put then got one by one through the gateway's
/// HTTP API, one new connection per request, with where the puts' time went (the
/// gateway's stage histograms); then over one kept-alive connection puts, gets of those
/// files (each one's first) and gets of files read before (their data keys remembered);
/// and one `datamesh put` process per file.
pub(super) fn small_files_runs(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let count = if ctx.quick { 100 } else { 1000 };
    let size = 4096;
    let processes = if ctx.quick { 20 } else { 100 }.min(count);
    let scratch = ctx.dir.clone();
    let net = ctx.net(report)?;
    let api = net.api(0)?.with_fresh_connections(true);
    progress(format!("{count} files of 4 KiB: put, then get"));
    let files: Vec<Vec<u8>> = (0..count)
        .map(|i| random_bytes(size, 1_000_000 + i as u64))
        .collect();
    let mut ids = Vec::with_capacity(count);
    let mut put_ms = Vec::with_capacity(count);
    let stages_before = histograms(&api)?;
    let cpu_before = net.cpu_seconds()?;
    let started = Instant::now();
    for (i, body) in files.iter().enumerate() {
        let t = Instant::now();
        ids.push(api.put_bytes(body, &format!("small-{i}"), &[])?.id);
        put_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let put_total = started.elapsed().as_secs_f64();
    let put_cpu = net.cpu_seconds()? - cpu_before;
    put_stage_figures(&stages_before, &histograms(&api)?, count, report);
    let cpu_before = net.cpu_seconds()?;
    let started = Instant::now();
    let get_ms = timed_gets(&api, &ids, &files)?;
    let get_total = started.elapsed().as_secs_f64();
    let get_cpu = net.cpu_seconds()? - cpu_before;
    for (op, cpu) in [("put", put_cpu), ("get", get_cpu)] {
        report.add(
            Figure::new(
                format!("testnet.small.{op}.node-cpu"),
                cpu * 1e3 / count as f64,
                "CPU-ms/op",
            )
            .note("user + system CPU of every node process over the run, per file"),
        );
    }
    for (op, total, ms) in [("put", put_total, put_ms), ("get", get_total, get_ms)] {
        report.add(
            Figure::new(
                format!("testnet.small.{op}.{count}x4KiB"),
                count as f64 / total,
                "ops/s",
            )
            .note("one at a time through the gateway's HTTP API, a new connection each (no CLI process)"),
        );
        report.add(Figure::new(
            format!("testnet.small.{op}.p50"),
            percentile(&ms, 50.0).unwrap_or(0.0),
            "ms",
        ));
        report.add(Figure::new(
            format!("testnet.small.{op}.p99"),
            percentile(&ms, 99.0).unwrap_or(0.0),
            "ms",
        ));
    }

    // Over one kept-alive connection (what an HTTP client library does): puts of new
    // files, then gets of those files (each read for the first time), then gets of files
    // read once before (the gateway remembers the data key its keys opened).
    let kept = net.api(0)?;
    let sample = ids.len().min(100);
    let mut kept_put_ms = Vec::with_capacity(sample);
    let mut kept_ids = Vec::with_capacity(sample);
    for (i, body) in files[..sample].iter().enumerate() {
        let t = Instant::now();
        kept_ids.push(kept.put_bytes(body, &format!("small-kept-{i}"), &[])?.id);
        kept_put_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let kept_ms = timed_gets(&kept, &kept_ids, &files)?;
    let cpu_before = net.cpu_seconds()?;
    let repeat_ms = timed_gets(&kept, &ids[..sample], &files)?;
    let repeat_cpu = net.cpu_seconds()? - cpu_before;
    report.add(
        Figure::new(
            "testnet.small.put.p50.keep-alive",
            percentile(&kept_put_ms, 50.0).unwrap_or(0.0),
            "ms",
        )
        .runs(kept_put_ms)
        .note(format!("{sample} puts over one kept-alive connection")),
    );
    let dir = scratch.join("small-cli");
    std::fs::create_dir_all(&dir)?;
    let mut cli_secs = Vec::with_capacity(processes);
    for (i, body) in files[..processes].iter().enumerate() {
        let path = dir.join(format!("small-cli-{i}"));
        std::fs::write(&path, body)?;
        cli_secs.push(net.put(&path, &scratch)?.1);
    }
    std::fs::remove_dir_all(&dir)?;
    let cli_ms: Vec<f64> = cli_secs.iter().map(|s| s * 1e3).collect();
    report.add(
        Figure::new(
            "testnet.small.put.cli-processes",
            cli_secs.len() as f64 / cli_secs.iter().sum::<f64>(),
            "ops/s",
        )
        .note(format!(
            "{} `datamesh put FILE` processes of 4 KiB one after another; p50 {:.1} ms",
            cli_secs.len(),
            percentile(&cli_ms, 50.0).unwrap_or(0.0)
        )),
    );
    report.add(
        Figure::new(
            "testnet.small.get.p50.keep-alive",
            percentile(&kept_ms, 50.0).unwrap_or(0.0),
            "ms",
        )
        .limit(
            "testnet.small.get.p50 (new connections)",
            report.get("testnet.small.get.p50").map_or(0.0, |f| f.value),
        )
        .runs(kept_ms)
        .note(format!(
            "{sample} gets over one kept-alive connection, each file's first"
        )),
    );
    report.add(
        Figure::new(
            "testnet.small.get.p50.keep-alive.read-again",
            percentile(&repeat_ms, 50.0).unwrap_or(0.0),
            "ms",
        )
        .runs(repeat_ms)
        .note(format!(
            "{sample} gets over one kept-alive connection of files read once before (their data keys remembered)"
        )),
    );
    report.add(
        Figure::new(
            "testnet.small.get.node-cpu.read-again",
            repeat_cpu * 1e3 / sample as f64,
            "CPU-ms/op",
        )
        .note("user + system CPU of every node process over those gets, per file"),
    );
    ctx.small_files += count + sample + processes;
    Ok(())
}

/// Where the small puts' time went, from the gateway's histograms before and after them:
/// the mean of each stage of a put (`files/put.rs`), and of each closest-peers lookup.
fn put_stage_figures(
    before: &HashMap<String, (f64, f64)>,
    after: &HashMap<String, (f64, f64)>,
    puts: usize,
    report: &mut Report,
) {
    const STAGE: &str = "datamesh_put_stage_seconds{stage=\"";
    const LOOKUP: &str = "datamesh_placement_lookup_seconds";
    let delta = |series: &str| {
        let (sum, count) = after.get(series).copied().unwrap_or_default();
        let (sum0, count0) = before.get(series).copied().unwrap_or_default();
        (sum - sum0, count - count0)
    };
    let mut stages: Vec<&String> = after.keys().filter(|k| k.starts_with(STAGE)).collect();
    stages.sort();
    for series in stages {
        let stage = series[STAGE.len()..].trim_end_matches("\"}");
        let (sum, count) = delta(series);
        report.add(
            Figure::new(
                format!("testnet.small.put.stage.{stage}"),
                sum / count.max(1.0) * 1e3,
                "ms",
            )
            .note(format!(
                "mean over the {count} puts of 4 KiB above (datamesh_put_stage_seconds)"
            )),
        );
    }
    let (sum, count) = delta(LOOKUP);
    report.add(
        Figure::new(
            "testnet.small.put.placement-lookup",
            sum / count.max(1.0) * 1e3,
            "ms",
        )
        .note(format!(
            "mean of a closest-peers lookup, {:.1} per put (a stripe's, the manifest's)",
            count / puts.max(1) as f64
        )),
    );
}

/// Run alone (`--only memory`): one large put and get with the peaks watched. When the
/// testnet section ran, its large files already gave the memory figures.
pub(super) fn memory_section(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    if report.figures.iter().any(|f| f.name.starts_with("memory.")) {
        progress("memory figures came from the testnet section's runs");
        return Ok(());
    }
    let size = if ctx.quick { 64 * MIB } else { 1024 * MIB };
    put_get_runs(ctx, report, size, 1).map(drop)
}

/// Writes `len` pseudo-random bytes from `seed` to `path`; their BLAKE3.
///
/// # Errors
/// File errors.
pub fn make_file(path: &Path, len: usize, seed: u64) -> anyhow::Result<[u8; 32]> {
    write_random_file(path, len, seed)?;
    hash_file(path)
}

/// BLAKE3 of a file.
///
/// # Errors
/// File errors.
/// A get of `id` through the API: the ms from the request to the first byte of the body,
/// and the BLAKE3 of the whole body (exactly the size the node announced).
fn first_byte_get(client: &Client, id: &str) -> anyhow::Result<(f64, [u8; 32])> {
    let id: datamesh_core::FileId = id.parse()?;
    let started = Instant::now();
    let download = client.get(&id)?;
    let expected = download.size;
    let mut body = download.body;
    let mut buf = vec![0u8; MIB];
    let n = body.read(&mut buf)?;
    let first = started.elapsed().as_secs_f64() * 1e3;
    ensure!(n > 0, "the get's body was empty");
    let mut hasher = blake3::Hasher::new();
    hasher.update(&buf[..n]);
    let mut total = n as u64;
    loop {
        match body.read(&mut buf)? {
            0 => break,
            n => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
        }
    }
    ensure!(
        total == expected,
        "the get's body was {total} of {expected} bytes"
    );
    Ok((first, *hasher.finalize().as_bytes()))
}

pub fn hash_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut reader = BufReader::with_capacity(
        MIB,
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB];
    loop {
        match reader.read(&mut buf)? {
            0 => break,
            n => {
                hasher.update(&buf[..n]);
            }
        }
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_files_hash_like_their_contents() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        let digest = make_file(&path, 2 * MIB + 3, 9)?;
        assert_eq!(std::fs::metadata(&path)?.len(), (2 * MIB + 3) as u64);
        assert_eq!(hash_file(&path)?, digest);
        assert_eq!(digest, *blake3::hash(&std::fs::read(&path)?).as_bytes());
        Ok(())
    }
}
