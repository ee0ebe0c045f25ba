//! The sections of the end-to-end benchmark: pipeline, testnet, memory, keys, scale.
//!
//! Every testnet is made of real `datamesh node run` processes (datamesh-testnet) on
//! 127.0.0.1, with homes and files under one temporary folder; each is brought down
//! (SIGTERM, then SIGKILL) when its [`Net`] is dropped, also on an error.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use datamesh_api::{Client, RewrapAll};
use datamesh_core::ecies::PublicKey;
use datamesh_testnet::{Config, Kdf, Testnet};

use crate::cmd::{api_client, get_bytes, run};
use crate::pipeline::{self, MIB, PRIMITIVES, Primitives};
use crate::report::{Figure, Report};
use crate::stats::{max, median, percentile};
use crate::sys;

/// Storage nodes of the testnet, plus one gateway (node 0) that does the puts and gets.
pub const STORAGE_NODES: usize = 6;
/// Peak RSS a node should stay under, whatever the file size.
pub const MEMORY_TARGET_MIB: f64 = 256.0;
/// No single command may take longer than this.
const COMMAND_DEADLINE: Duration = Duration::from_secs(900);
/// The storage node whose memory is watched (node 0 is the gateway).
const WATCHED_STORAGE_NODE: usize = 1;

/// A section of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Encode/decode MB/s vs the raw primitives.
    Pipeline,
    /// Put/get MB/s on a local testnet, small files, get with 2 holders down.
    Testnet,
    /// Peak RSS of the gateway and of a storage node during a large put and get.
    Memory,
    /// Unlock time, rotate + rewrap of many files.
    Keys,
    /// 20 and 50 nodes: bring-up time, idle RSS, lookup latency.
    Scale,
}

impl Section {
    /// Every section, in the order they run.
    pub const ALL: [Self; 5] = [
        Self::Pipeline,
        Self::Testnet,
        Self::Memory,
        Self::Keys,
        Self::Scale,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pipeline => "pipeline",
            Self::Testnet => "testnet",
            Self::Memory => "memory",
            Self::Keys => "keys",
            Self::Scale => "scale",
        }
    }

    /// The section called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A progress message on stderr (figures go to stdout).
#[allow(clippy::print_stderr)]
pub fn progress(message: impl std::fmt::Display) {
    eprintln!("  .. {message}");
}

/// A size as a short label (`16MiB`, `1GiB`, `4KiB`).
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}GiB", bytes >> 30)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes >> 20)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

fn mbs(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the sections share: options, the scratch folder, and the 7-node testnet once
/// started.
#[derive(Debug)]
pub struct Ctx {
    /// Small sizes for a smoke run.
    pub quick: bool,
    /// The `datamesh` binary under test.
    pub binary: PathBuf,
    /// Scratch folder (homes, files); removed at the end.
    pub dir: PathBuf,
    /// The shared testnet (gateway + 6 storage nodes).
    net: Option<Net>,
    /// Ids of the small files stored on the shared testnet.
    small_files: usize,
}

impl Ctx {
    /// A context over `binary` with scratch space in `dir`.
    pub fn new(quick: bool, binary: PathBuf, dir: PathBuf) -> Self {
        Self {
            quick,
            binary,
            dir,
            net: None,
            small_files: 0,
        }
    }

    /// Runs one section, adding its figures to `report`.
    ///
    /// # Errors
    /// The section's first failure (figures measured before it stay in the report).
    pub fn run(&mut self, section: Section, report: &mut Report) -> anyhow::Result<()> {
        match section {
            Section::Pipeline => pipeline_section(self.quick, report),
            Section::Testnet => self.testnet_section(report),
            Section::Memory => self.memory_section(report),
            Section::Keys => self.keys_section(report),
            Section::Scale => {
                // Never 57 nodes at once: the shared testnet goes first.
                self.net = None;
                self.scale_section(report)
            }
        }
    }

    /// The shared testnet, started on first use.
    fn net(&mut self, report: &mut Report) -> anyhow::Result<&mut Net> {
        if self.net.is_none() {
            let nodes = STORAGE_NODES + 1;
            progress(format!(
                "starting a {nodes}-node testnet (gateway + {STORAGE_NODES})"
            ));
            let (net, took) = Net::up(&self.binary, &self.dir.join("net"), nodes, &self.dir)?;
            report.add(
                Figure::new(format!("testnet.up.{nodes}-nodes"), took.as_secs_f64(), "s")
                    .note("init of every home (Kdf::FAST) + start + routing tables filled"),
            );
            self.net = Some(net);
        }
        self.net.as_mut().context("testnet")
    }

    // ------------------------------------------------------------------ testnet

    fn testnet_section(&mut self, report: &mut Report) -> anyhow::Result<()> {
        let quick = self.quick;
        let bytes = if quick { 64 * MIB } else { 256 * MIB };
        progress("loopback and disk bandwidth");
        let loopback = sys::loopback_mbs(bytes)?;
        report
            .add(Figure::new("sys.loopback", loopback, "MB/s").note("one TCP stream on 127.0.0.1"));
        let disk = sys::disk_write_mbs(&self.dir, bytes, MIB, false)?;
        report.add(
            Figure::new("sys.disk-write", disk, "MB/s")
                .note("1 MiB writes, one fsync at the end, into the scratch folder"),
        );
        let synced = sys::disk_write_mbs(&self.dir, bytes / 4, 256 * 1024, true)?;
        report.add(
            Figure::new("sys.disk-write-synced-256KiB", synced, "MB/s").note(
                "256 KiB writes (a shard of a 1 MiB segment), fsync after each, as a node stores shards",
            ),
        );

        let sizes: &[(usize, usize)] = if quick {
            &[(4 * MIB, 3), (16 * MIB, 2), (64 * MIB, 1)]
        } else {
            &[(16 * MIB, 5), (256 * MIB, 3), (1024 * MIB, 2)]
        };
        let mut last_ids = Vec::new();
        for &(size, runs) in sizes {
            let ids = self.put_get_runs(report, size, runs)?;
            last_ids.push((size, ids));
        }

        // Get with two storage nodes (holders) SIGKILLed.
        let degraded = if quick { 16 * MIB } else { 256 * MIB };
        let runs = if quick { 2 } else { 3 };
        let scratch = self.dir.clone();
        let dir = self.dir.clone();
        let net = self.net(report)?;
        let (id, expected) = last_ids
            .iter()
            .find(|(s, _)| *s == degraded)
            .and_then(|(_, (ids, hash))| ids.last().map(|id| (id.clone(), *hash)))
            .context("no file of the degraded size was stored")?;
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

        self.small_files_runs(report)
    }

    /// `runs` puts and gets of a `size` file through the CLI on the gateway, with the
    /// peak RSS of the gateway and of a storage node during each. Returns the ids and
    /// the file's BLAKE3.
    fn put_get_runs(
        &mut self,
        report: &mut Report,
        size: usize,
        runs: usize,
    ) -> anyhow::Result<(Vec<String>, [u8; 32])> {
        let label = size_label(size);
        let dir = self.dir.clone();
        let input = dir.join(format!("in-{label}"));
        progress(format!("making a {label} input file"));
        let expected = make_file(&input, size, size as u64)?;
        let net = self.net(report)?;
        let watched = [0, WATCHED_STORAGE_NODE];
        let (mut put_speeds, mut get_speeds) = (Vec::new(), Vec::new());
        let mut peaks = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        let mut ids = Vec::new();
        for run_index in 0..runs {
            progress(format!(
                "put + get of {label}, run {}/{runs}",
                run_index + 1
            ));
            net.reset_peaks(&watched)?;
            let (id, secs) = net.put(&input, &dir)?;
            put_speeds.push(mbs(size, secs));
            for (w, &node) in watched.iter().enumerate() {
                peaks[0][w].push(mib(net.peak_kib(node)?));
            }
            net.reset_peaks(&watched)?;
            let out = dir.join(format!("out-{label}"));
            let secs = net.get(&id, &out, &dir)?;
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
        let disk = report.get("sys.disk-write-synced-256KiB").map(|f| f.value);
        let put_limits: Vec<(String, f64)> = [
            report.as_limit("pipeline.encode.all-cores"),
            disk.map(|d| {
                (
                    "sys.disk-write-synced-256KiB/1.5 (shards)".to_string(),
                    d / 1.5,
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        let get_limits: Vec<(String, f64)> = [
            report.as_limit("pipeline.decode-data-shards.all-cores"),
            report.as_limit("sys.disk-write"),
        ]
        .into_iter()
        .flatten()
        .collect();
        report.add(
            Figure::new(
                format!("testnet.put.{label}"),
                median(&put_speeds).unwrap_or(0.0),
                "MB/s",
            )
            .tightest(&put_limits)
            .runs(put_speeds)
            .note("`datamesh put FILE` on the gateway of 6 storage nodes; median"),
        );
        report.add(
            Figure::new(
                format!("testnet.get.{label}"),
                median(&get_speeds).unwrap_or(0.0),
                "MB/s",
            )
            .tightest(&get_limits)
            .runs(get_speeds)
            .note("`datamesh get ID -o FILE` on the gateway, copy verified; median"),
        );
        for (o, op) in ["put", "get"].into_iter().enumerate() {
            for (w, who) in ["gateway", "storage"].into_iter().enumerate() {
                let samples = std::mem::take(&mut peaks[o][w]);
                report.add(
                    Figure::new(
                        format!("memory.{who}.{op}.{label}"),
                        max(&samples).unwrap_or(0.0),
                        "MiB",
                    )
                    .limit("target", MEMORY_TARGET_MIB)
                    .runs(samples)
                    .note("peak RSS (VmHWM, reset before the operation); max of runs"),
                );
            }
        }
        std::fs::remove_file(&input)?;
        Ok((ids, expected))
    }

    /// Many 4 KiB files put then got one by one through the gateway's HTTP API, one new
    /// connection per request (as the CLI does); then gets again over one kept-alive
    /// connection.
    fn small_files_runs(&mut self, report: &mut Report) -> anyhow::Result<()> {
        let count = if self.quick { 100 } else { 1000 };
        let size = 4096;
        let net = self.net(report)?;
        let api = net.api(0)?.with_fresh_connections(true);
        progress(format!("{count} files of 4 KiB: put, then get"));
        let files: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let mut v = Vec::with_capacity(size);
                pipeline::fill_random(&mut v, size, 1_000_000 + i as u64);
                v
            })
            .collect();
        let mut ids = Vec::with_capacity(count);
        let mut put_ms = Vec::with_capacity(count);
        let started = Instant::now();
        for (i, body) in files.iter().enumerate() {
            let t = Instant::now();
            ids.push(api.put_bytes(body, &format!("small-{i}"), &[])?.id);
            put_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let put_total = started.elapsed().as_secs_f64();
        let mut get_ms = Vec::with_capacity(count);
        let started = Instant::now();
        for (id, body) in ids.iter().zip(&files) {
            let t = Instant::now();
            let got = get_bytes(&api, id)?;
            get_ms.push(t.elapsed().as_secs_f64() * 1e3);
            ensure!(got == *body, "small file {id} came back different");
        }
        let get_total = started.elapsed().as_secs_f64();
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

        // The same gets over one kept-alive connection (what an HTTP client library does).
        let kept = net.api(0)?;
        let sample = ids.len().min(100);
        let mut kept_ms = Vec::with_capacity(sample);
        for id in &ids[..sample] {
            let t = Instant::now();
            get_bytes(&kept, id)?;
            kept_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
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
            .note(format!("{sample} gets over one kept-alive connection")),
        );
        self.small_files += count;
        Ok(())
    }

    // ------------------------------------------------------------------ memory

    /// Run alone (`--only memory`): one large put and get with the peaks watched. When the
    /// testnet section ran, its large files already gave the memory figures.
    fn memory_section(&mut self, report: &mut Report) -> anyhow::Result<()> {
        if report.figures.iter().any(|f| f.name.starts_with("memory.")) {
            progress("memory figures came from the testnet section's runs");
            return Ok(());
        }
        let size = if self.quick { 64 * MIB } else { 1024 * MIB };
        self.put_get_runs(report, size, 1).map(drop)
    }

    // ------------------------------------------------------------------ keys

    fn keys_section(&mut self, report: &mut Report) -> anyhow::Result<()> {
        self.unlock_times(report)?;

        let want = if self.quick { 100 } else { 1000 };
        let dir = self.dir.clone();
        let already = self.small_files;
        let net = self.net(report)?;
        let api = net.api(0)?;
        if already < want {
            progress(format!(
                "storing {} files of 4 KiB to rewrap",
                want - already
            ));
            for i in already..want {
                let mut body = Vec::with_capacity(4096);
                pipeline::fill_random(&mut body, 4096, 2_000_000 + i as u64);
                api.put_bytes(&body, &format!("rewrap-{i}"), &[])?;
            }
        }
        let files = api.list()?.len();
        let before = net.stored()?;

        progress("keys rotate");
        let mut rotate = net.tn.cli(0);
        rotate
            .args(["keys", "rotate", "--password-file"])
            .arg(net.tn.password_file(0));
        let rotated = run(rotate, &dir, COMMAND_DEADLINE)?.elapsed.as_secs_f64();
        report.add(
            Figure::new("keys.rotate", rotated, "s")
                .note("`datamesh keys rotate` (file-encryption) on the running gateway's home"),
        );

        progress(format!("keys rewrap --all of {files} files"));
        let mut rewrap = net.tn.cli(0);
        rewrap.args(["--json", "keys", "rewrap", "--all"]);
        let outcome = run(rewrap, &dir, COMMAND_DEADLINE)?;
        let secs = outcome.elapsed.as_secs_f64();
        let answer: RewrapAll = serde_json::from_slice(&outcome.stdout)
            .context("`keys rewrap --all --json` did not print its JSON")?;
        let (done, failed) = (answer.rewrapped, answer.failed.len());
        ensure!(
            failed == 0 && done.len() == files,
            "rewrap: {} of {files} files re-wrapped, {failed} failed",
            done.len()
        );
        let sent: u64 = done.iter().map(|r| r.bytes_sent).sum();
        let after = net.stored()?;

        // The files still open (through the new envelope).
        let sample = api
            .list()?
            .into_iter()
            .find(|f| f.size == 4096)
            .map(|f| f.id);
        if let Some(id) = sample {
            ensure!(
                get_bytes(&api, &id)?.len() == 4096,
                "a file did not open after the rewrap"
            );
        }

        report.add(
            Figure::new(format!("keys.rewrap.{files}-files"), secs, "s")
                .note("`datamesh keys rewrap --all`: new envelopes to every holder"),
        );
        report.add(Figure::new(
            "keys.rewrap.files-per-s",
            files as f64 / secs,
            "files/s",
        ));
        report.add(
            Figure::new("keys.rewrap.envelope-bytes-sent", sent as f64, "bytes")
                .note("sum of bytes_sent reported per file"),
        );
        let moved: u64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| b.1.abs_diff(a.1))
            .sum();
        let count_change: u64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| b.0.abs_diff(a.0))
            .sum();
        report.add(
            Figure::new("keys.rewrap.shard-bytes-changed", moved as f64, "bytes").note(format!(
                "sum over the 7 nodes of |bytes_stored after - before| (before: {} bytes in {} shards)",
                before.iter().map(|s| s.1).sum::<u64>(),
                before.iter().map(|s| s.0).sum::<u64>()
            )),
        );
        report.add(
            Figure::new(
                "keys.rewrap.shard-count-changed",
                count_change as f64,
                "shards",
            )
            .note("sum over the 7 nodes of |shards after - before|"),
        );
        ensure!(
            moved == 0 && count_change == 0,
            "the rewrap changed the shard stores: {moved} bytes, {count_change} shards"
        );
        Ok(())
    }

    /// `datamesh keys list` (one unlock) in a home made with the default Argon2id
    /// parameters, against the same command in a home with the cheapest ones.
    fn unlock_times(&self, report: &mut Report) -> anyhow::Result<()> {
        let dir = self.dir.join("unlock");
        std::fs::create_dir_all(&dir)?;
        let password = dir.join("password");
        let mut pw = std::fs::File::create(&password)?;
        writeln!(pw, "correct horse battery staple of the benchmark 7f3a91")?;
        drop(pw);
        let reps = if self.quick { 2 } else { 5 };
        let mut medians = Vec::new();
        for (label, kdf) in [("default", None), ("fast", Some(Kdf::FAST))] {
            let home = dir.join(label);
            let mut init = self.datamesh(&home);
            init.arg("init").arg("--password-file").arg(&password);
            if let Some(kdf) = kdf {
                init.args(["--kdf-memory-kib", &kdf.memory_kib.to_string()])
                    .args(["--kdf-iterations", &kdf.iterations.to_string()])
                    .args(["--kdf-parallelism", &kdf.parallelism.to_string()]);
            }
            progress(format!("unlock time, {label} Argon2id parameters"));
            run(init, &dir, COMMAND_DEADLINE)?;
            let mut times = Vec::new();
            for _ in 0..reps {
                let mut list = self.datamesh(&home);
                list.args(["keys", "list", "--password-file"])
                    .arg(&password);
                times.push(run(list, &dir, COMMAND_DEADLINE)?.elapsed.as_secs_f64());
            }
            medians.push(median(&times).unwrap_or(0.0));
            report.add(
                Figure::new(format!("keys.unlock-command.{label}-kdf"), medians[medians.len() - 1], "s")
                    .runs(times)
                    .note(match kdf {
                        None => "`datamesh keys list` (one unlock) at argon2id m=64 MiB t=3 p=4; median".to_string(),
                        Some(_) => "the same command at m=8 KiB t=1 p=1: process start + everything but the KDF".to_string(),
                    }),
            );
        }
        report.add(
            Figure::new(
                "keys.unlock.default-kdf",
                (medians[0] - medians[1]).max(0.0),
                "s",
            )
            .note("difference of the two medians above: the KDF's share of an unlock"),
        );
        Ok(())
    }

    fn datamesh(&self, home: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.binary);
        for var in datamesh_testnet::SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.arg("--home").arg(home);
        cmd
    }

    // ------------------------------------------------------------------ scale

    fn scale_section(&mut self, report: &mut Report) -> anyhow::Result<()> {
        let sizes: &[usize] = if self.quick { &[8, 12] } else { &[20, 50] };
        for &n in sizes {
            progress(format!("bringing up {n} nodes"));
            let net_dir = self.dir.join(format!("scale-{n}"));
            let (mut net, took) = Net::up(&self.binary, &net_dir, n, &self.dir)?;
            report.add(
                Figure::new(format!("scale.up.{n}-nodes"), took.as_secs_f64(), "s").note(
                    "init of every home (Kdf::FAST), start one by one, until every routing table holds min(n-1, 20) peers",
                ),
            );
            std::thread::sleep(Duration::from_secs(3));
            let mut rss = Vec::with_capacity(n);
            for i in 0..n {
                rss.push(mib(sys::memory(net.pid(i)?)?.rss_kib));
            }
            report.add(
                Figure::new(
                    format!("scale.idle-rss.{n}-nodes"),
                    median(&rss).unwrap_or(0.0),
                    "MiB",
                )
                .runs(rss.clone())
                .note(format!(
                    "median RSS per idle node 3 s after ready (max {:.1}, total {:.0})",
                    max(&rss).unwrap_or(0.0),
                    rss.iter().sum::<f64>()
                )),
            );

            // Lookup latency: a 4 KiB file put on node 0, shared with node k, got by node
            // k, which never saw it (DHT provider lookup + manifest + envelope + shards).
            let samples = (n - 1).min(10);
            let gateway = net.api(0)?;
            let mut lookup_ms = Vec::with_capacity(samples);
            let mut failures = Vec::new();
            progress(format!("first get from {samples} other nodes of {n}"));
            for s in 0..samples {
                let k = 1 + s * (n - 1) / samples;
                let mut export = net.tn.cli(k);
                export
                    .args(["keys", "export-public", "--password-file"])
                    .arg(net.tn.password_file(k));
                let key = String::from_utf8(run(export, &self.dir, COMMAND_DEADLINE)?.stdout)?;
                let mut body = Vec::with_capacity(4096);
                pipeline::fill_random(&mut body, 4096, 3_000_000 + s as u64);
                let key: PublicKey = key
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("node {k} exported {key:?}, not a public key"))?;
                let id = gateway.put_bytes(&body, &format!("lookup-{s}"), &[key])?.id;
                let api = net.api(k)?.with_fresh_connections(true);
                let t = Instant::now();
                match get_bytes(&api, &id) {
                    Ok(got) => {
                        lookup_ms.push(t.elapsed().as_secs_f64() * 1e3);
                        ensure!(got == body, "node {k} got a different file");
                    }
                    // A failed first get is a finding, not the end of the section.
                    Err(e) => failures.push(format!("node {k}: {e:#}")),
                }
            }
            report.add(
                Figure::new(
                    format!("scale.first-get.{n}-nodes.failed"),
                    failures.len() as f64,
                    "gets",
                )
                .limit("gets tried", samples as f64)
                .note(failures.join("; ")),
            );
            report.add(
                Figure::new(
                    format!("scale.first-get.{n}-nodes.p50"),
                    median(&lookup_ms).unwrap_or(0.0),
                    "ms",
                )
                .runs(lookup_ms.clone())
                .note("4 KiB file put on node 0, got over HTTP by a node that never saw it"),
            );
            report.add(Figure::new(
                format!("scale.first-get.{n}-nodes.max"),
                max(&lookup_ms).unwrap_or(0.0),
                "ms",
            ));
            let mut peers_ms = Vec::new();
            for _ in 0..5 {
                let mut peers = net.tn.cli(0);
                peers.arg("peers");
                peers_ms.push(
                    run(peers, &self.dir, COMMAND_DEADLINE)?
                        .elapsed
                        .as_secs_f64()
                        * 1e3,
                );
            }
            report.add(
                Figure::new(
                    format!("scale.peers-command.{n}-nodes"),
                    median(&peers_ms).unwrap_or(0.0),
                    "ms",
                )
                .runs(peers_ms)
                .note("`datamesh peers` (routing table, no lookup): CLI start + API round trip; median"),
            );
            progress(format!("bringing {n} nodes down"));
            net.tn.down()?;
        }
        Ok(())
    }
}

/// A running testnet, brought down when dropped.
#[derive(Debug)]
pub struct Net {
    /// The testnet.
    pub tn: Testnet,
    scratch: PathBuf,
}

impl Net {
    /// Starts `nodes` nodes (Kdf::FAST) in `dir`; how long it took.
    ///
    /// # Errors
    /// As [`Testnet::up_with`].
    pub fn up(
        binary: &Path,
        dir: &Path,
        nodes: usize,
        scratch: &Path,
    ) -> anyhow::Result<(Self, Duration)> {
        let started = Instant::now();
        let tn = Testnet::up_with(
            Config::new(binary, dir, nodes)
                .with_kdf(Kdf::FAST)
                .with_ready_timeout(Duration::from_secs(600))
                .with_stop_timeout(Duration::from_secs(20)),
        )
        .with_context(|| format!("cannot start a {nodes}-node testnet"))?;
        Ok((
            Self {
                tn,
                scratch: scratch.to_path_buf(),
            },
            started.elapsed(),
        ))
    }

    /// The HTTP API of node `i`.
    ///
    /// # Errors
    /// When the node publishes no `node.json` or its token cannot be read.
    pub fn api(&self, i: usize) -> anyhow::Result<Client> {
        let run = self
            .tn
            .run_file(i)?
            .with_context(|| format!("node {i} has no node.json"))?;
        api_client(&run, &self.tn.home(i))
    }

    fn pid(&self, i: usize) -> anyhow::Result<u32> {
        self.tn
            .pid(i)
            .with_context(|| format!("node {i} is not running"))
    }

    fn reset_peaks(&self, nodes: &[usize]) -> anyhow::Result<()> {
        for &i in nodes {
            sys::reset_peak(self.pid(i)?)?;
        }
        Ok(())
    }

    fn peak_kib(&self, i: usize) -> anyhow::Result<u64> {
        Ok(sys::memory(self.pid(i)?)?.hwm_kib)
    }

    /// `datamesh put PATH` on the gateway: the id and the seconds it took.
    fn put(&self, path: &Path, scratch: &Path) -> anyhow::Result<(String, f64)> {
        let mut cmd = self.tn.cli(0);
        cmd.arg("put").arg(path);
        let outcome = run(cmd, scratch, COMMAND_DEADLINE)?;
        let id = String::from_utf8(outcome.stdout)?.trim().to_string();
        ensure!(id.starts_with("dm1"), "put printed {id:?}, not an id");
        Ok((id, outcome.elapsed.as_secs_f64()))
    }

    /// `datamesh get ID -o OUT` on the gateway: the seconds it took.
    fn get(&self, id: &str, out: &Path, scratch: &Path) -> anyhow::Result<f64> {
        let mut cmd = self.tn.cli(0);
        cmd.args(["get", id, "-o"]).arg(out);
        Ok(run(cmd, scratch, COMMAND_DEADLINE)?.elapsed.as_secs_f64())
    }

    /// (shards, bytes stored) of every node, from `status --json`.
    fn stored(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        (0..self.tn.len())
            .map(|i| {
                let s = self.tn.status(i)?;
                Ok((s.shards, s.bytes_stored))
            })
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Err(e) = self.tn.down() {
            progress(format!(
                "bringing the testnet in {} down: {e} (the rest is SIGKILLed)",
                self.scratch.display()
            ));
        }
    }
}

/// Writes `len` pseudo-random bytes from `seed` to `path`; their BLAKE3.
///
/// # Errors
/// File errors.
pub fn make_file(path: &Path, len: usize, seed: u64) -> anyhow::Result<[u8; 32]> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut hasher = blake3::Hasher::new();
    let mut chunk = Vec::with_capacity(MIB);
    let mut written = 0;
    let mut n = 0u64;
    while written < len {
        chunk.clear();
        pipeline::fill_random(&mut chunk, MIB.min(len - written), seed ^ (n << 32));
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        written += chunk.len();
        n += 1;
    }
    file.flush()?;
    Ok(*hasher.finalize().as_bytes())
}

/// BLAKE3 of a file.
///
/// # Errors
/// File errors.
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

// ---------------------------------------------------------------------- pipeline

/// Seconds of `reps` runs of `f` (after one warm-up), each given a fresh `setup()`.
fn time_runs<S, T>(
    reps: usize,
    mut setup: impl FnMut() -> anyhow::Result<S>,
    mut f: impl FnMut(S) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<f64>> {
    std::hint::black_box(f(setup()?)?);
    let mut secs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let input = setup()?;
        let t = Instant::now();
        std::hint::black_box(f(input)?);
        secs.push(t.elapsed().as_secs_f64());
    }
    Ok(secs)
}

fn pipeline_section(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let len = if quick { 16 * MIB } else { 64 * MIB };
    let reps = if quick { 3 } else { 7 };
    let cores = rayon::current_num_threads();
    let data = pipeline::input(len);
    let label = size_label(len);
    let primitives = Primitives::new();
    for (mode, parallel) in [("1-core", false), ("all-cores", true)] {
        let in_flight = if parallel { 2 * cores } else { 1 };
        progress(format!("pipeline, {label}, {mode} ({cores} threads)"));
        let speeds = |secs: Vec<f64>| secs.into_iter().map(|s| mbs(len, s)).collect::<Vec<_>>();

        let mut limits = Vec::new();
        let mut buf = data.clone();
        for p in PRIMITIVES {
            let secs = time_runs(
                reps,
                || Ok(()),
                |()| {
                    primitives.run(p, &mut buf, &data, parallel);
                    Ok(())
                },
            )?;
            let runs = speeds(secs);
            let value = median(&runs).unwrap_or(0.0);
            limits.push((format!("pipeline.{}.{mode}", p.name()), value));
            report.add(
                Figure::new(format!("pipeline.{}.{mode}", p.name()), value, "MB/s")
                    .runs(runs)
                    .note(format!("alone over {label} in 1 MiB segments; median")),
            );
        }
        // Per byte, encode runs AES once, BLAKE3 over 2.5x (plaintext + 6 shards of
        // 1/4) and RS once: its serial cost is at least the sum of those.
        let rate = |name: &str| {
            limits
                .iter()
                .find(|l| l.0 == format!("pipeline.{name}.{mode}"))
                .map_or(f64::INFINITY, |l| l.1)
        };
        let sum_of_parts =
            1.0 / (1.0 / rate("aes-256-gcm") + 2.5 / rate("blake3") + 1.0 / rate("rs-encode"));
        report.add(
            Figure::new(
                format!("pipeline.encode-sum-of-parts.{mode}"),
                sum_of_parts,
                "MB/s",
            )
            .note(
                "1 / (1/AES + 2.5/BLAKE3 + 1/RS): the encode's work done back to back, no copies",
            ),
        );

        let secs = time_runs(reps, || Ok(()), |()| pipeline::encode(&data, in_flight))?;
        let runs = speeds(secs);
        report.add(
            Figure::new(
                format!("pipeline.encode.{mode}"),
                median(&runs).unwrap_or(0.0),
                "MB/s",
            )
            .tightest(&limits)
            .runs(runs)
            .note(format!(
                "Encoder over {label} in memory, {in_flight} stripes in flight; median"
            )),
        );

        let (stripes, file) = pipeline::encode_stripes(&data, in_flight)?;
        for (figure, lost, note) in [
            (
                "decode",
                &pipeline::LOST_TWO_DATA,
                "Decoder with data shards 0 and 2 missing (RS rebuild of every stripe); median",
            ),
            (
                "decode-data-shards",
                &pipeline::DATA_ONLY,
                "Decoder given the 4 data shards (a get with every holder up); median",
            ),
        ] {
            let secs = time_runs(
                reps,
                || Ok(pipeline::decode_input(&stripes, lost)),
                |given| pipeline::decode(&file, given, in_flight),
            )?;
            let runs = speeds(secs);
            report.add(
                Figure::new(
                    format!("pipeline.{figure}.{mode}"),
                    median(&runs).unwrap_or(0.0),
                    "MB/s",
                )
                .tightest(&limits)
                .runs(runs)
                .note(note),
            );
        }
    }
    wire_figures(&data, reps, report)
}

/// Postcard encode + decode of 256 KiB shard messages (a 1 MiB segment's shard), with the
/// bytes as a sequence of `u8` (as the node's protocol derives it) and as a byte string.
fn wire_figures(data: &[u8], reps: usize, report: &mut Report) -> anyhow::Result<()> {
    use crate::wire::{AsBytes, AsSeq, round_trip};
    const SHARD: usize = 256 * 1024;
    progress("postcard: shard bytes as a sequence and as a byte string");
    let seq: Vec<AsSeq> = data
        .chunks(SHARD)
        .map(|c| AsSeq {
            id: [1; 32],
            bytes: c.to_vec(),
        })
        .collect();
    let bytes: Vec<AsBytes> = seq
        .iter()
        .map(|m| AsBytes {
            id: m.id,
            bytes: m.bytes.clone(),
        })
        .collect();
    let limit = report.as_limit("pipeline.memcpy.1-core");
    let as_seq = time_runs(
        reps,
        || Ok(()),
        |()| {
            seq.iter()
                .map(|m| round_trip(m).map(|m| m.bytes.len()))
                .sum::<anyhow::Result<usize>>()
        },
    )?;
    let as_bytes = time_runs(
        reps,
        || Ok(()),
        |()| {
            bytes
                .iter()
                .map(|m| round_trip(m).map(|m| m.bytes.len()))
                .sum::<anyhow::Result<usize>>()
        },
    )?;
    for (name, secs, note) in [
        (
            "wire.postcard-shard-as-u8-sequence.1-core",
            as_seq,
            "encode + decode of 256 KiB Store-like messages, `Vec<u8>` as serde derives it (the node's protocol today)",
        ),
        (
            "wire.postcard-shard-as-byte-string.1-core",
            as_bytes,
            "the same with `serialize_bytes`: identical bytes on the wire",
        ),
    ] {
        let runs: Vec<f64> = secs.into_iter().map(|s| mbs(data.len(), s)).collect();
        report.add(
            Figure::new(name, median(&runs).unwrap_or(0.0), "MB/s")
                .tightest(&limit.clone().into_iter().collect::<Vec<_>>())
                .runs(runs)
                .note(note),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_parse_by_name() {
        for s in Section::ALL {
            assert_eq!(Section::parse(s.name()), Some(s));
        }
        assert_eq!(Section::parse("nope"), None);
    }

    #[test]
    fn size_labels() {
        assert_eq!(size_label(16 * MIB), "16MiB");
        assert_eq!(size_label(1 << 30), "1GiB");
        assert_eq!(size_label(4096), "4KiB");
        assert_eq!(size_label(1000), "1000B");
        assert_eq!(size_label(MIB + 1), "1048577B");
    }

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

    #[test]
    fn time_runs_runs_setup_and_body_each_time() -> anyhow::Result<()> {
        let mut setups = 0;
        let mut bodies = 0;
        let secs = time_runs(
            3,
            || {
                setups += 1;
                Ok(setups)
            },
            |_| {
                bodies += 1;
                Ok(())
            },
        )?;
        assert_eq!((secs.len(), setups, bodies), (3, 4, 4));
        Ok(())
    }
}
