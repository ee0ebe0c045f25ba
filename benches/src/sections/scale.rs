//! The scale section: 20, 50 and 100 nodes (8 and 12 when quick): bring-up time, idle
//! RSS (against issue 21's targets: up in 30 s, under 20 MiB a node), the first get of a
//! file by a node that never saw it, `datamesh peers`.

use std::time::{Duration, Instant};

use anyhow::ensure;
use datamesh_core::ecies::PublicKey;
use datamesh_testnet::input::random_bytes;

use super::ctx::Ctx;
use super::measure::{mib, progress, run};
use super::net::Net;
use crate::cmd::get_bytes;
use crate::report::{Figure, Report};
use crate::stats::{max, median};
use crate::sys;

/// Issue 21's target for bringing up [`UP_TARGET_NODES`] nodes on this machine, in
/// seconds.
const UP_TARGET_SECS: f64 = 30.0;
/// The testnet size [`UP_TARGET_SECS`] is set for.
const UP_TARGET_NODES: usize = 100;
/// Issue 21's target for an idle node's RSS, in MiB.
const IDLE_RSS_TARGET_MIB: f64 = 20.0;

pub(super) fn scale_section(ctx: &mut Ctx, report: &mut Report) -> anyhow::Result<()> {
    let sizes: &[usize] = if ctx.quick { &[8, 12] } else { &[20, 50, 100] };
    for &n in sizes {
        progress(format!("bringing up {n} nodes"));
        let net_dir = ctx.dir.join(format!("scale-{n}"));
        let (mut net, took) = Net::up(&ctx.binary, &net_dir, n, &ctx.dir)?;
        let up = Figure::new(format!("scale.up.{n}-nodes"), took.as_secs_f64(), "s").note(
            "init of every home (Kdf::FAST), start one by one, until every routing table holds min(n-1, 20) peers",
        );
        report.add(if n == UP_TARGET_NODES {
            up.limit("target", UP_TARGET_SECS)
        } else {
            up
        });
        std::thread::sleep(Duration::from_secs(3));
        let (mut rss, mut pss, mut anon) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let pid = net.pid(i)?;
            rss.push(mib(sys::memory(pid)?.rss_kib));
            let shares = sys::shares(pid)?;
            pss.push(mib(shares.pss_kib));
            anon.push(mib(shares.anon_kib));
        }
        report.add(
            Figure::new(
                format!("scale.idle-rss.{n}-nodes"),
                median(&rss).unwrap_or(0.0),
                "MiB",
            )
            .limit("target", IDLE_RSS_TARGET_MIB)
            .runs(rss.clone())
            .note(format!(
                "median RSS per idle node 3 s after ready (max {:.1}, total {:.0})",
                max(&rss).unwrap_or(0.0),
                rss.iter().sum::<f64>()
            )),
        );
        for (what, values, note) in [
            (
                "pss",
                &pss,
                "median proportional set size per idle node: the program's pages, shared by every node, divided among them",
            ),
            (
                "anon",
                &anon,
                "median anonymous memory per idle node (heap, stacks): what each node adds",
            ),
        ] {
            report.add(
                Figure::new(
                    format!("scale.idle-{what}.{n}-nodes"),
                    median(values).unwrap_or(0.0),
                    "MiB",
                )
                .runs(values.clone())
                .note(note),
            );
        }

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
            let key = String::from_utf8(run(export, &ctx.dir)?.stdout)?;
            let body = random_bytes(4096, 3_000_000 + s as u64);
            let key: PublicKey = key
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("node {k} exported {key:?}, not a public key"))?;
            let id = gateway
                .put_bytes(&body, &format!("lookup-{s}"), &[key.into()])?
                .id;
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
            peers_ms.push(run(peers, &ctx.dir)?.elapsed.as_secs_f64() * 1e3);
        }
        report.add(
            Figure::new(
                format!("scale.peers-command.{n}-nodes"),
                median(&peers_ms).unwrap_or(0.0),
                "ms",
            )
            .runs(peers_ms)
            .note(
                "`datamesh peers` (routing table, no lookup): CLI start + API round trip; median",
            ),
        );
        progress(format!("bringing {n} nodes down"));
        net.tn.down()?;
    }
    Ok(())
}
