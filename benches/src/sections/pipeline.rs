//! The pipeline section: encode and decode MB/s of the core pipeline in memory next to
//! the raw primitives, and what postcard costs for a shard's bytes.

use std::time::Instant;

use datamesh_core::Manifest;

use super::measure::{mbs, progress, size_label};
use crate::pipeline::{self, MIB, PRIMITIVES, Primitives};
use crate::report::{Figure, Report};
use crate::stats::median;

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

pub(super) fn pipeline_section(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let len = if quick { 16 * MIB } else { 64 * MIB };
    let reps = if quick { 3 } else { 7 };
    let cores = rayon::current_num_threads();
    let data = pipeline::input(len);
    let label = size_label(len);
    let primitives = Primitives::new()?;
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
        if !parallel {
            manifest_figure(&file.manifest, &label, report)?;
        }
    }
    wire_figures(&data, reps, report)
}

/// The time to parse and check `manifest`'s bytes (`Manifest::from_bytes`, what every get
/// and every holder of a manifest copy does), median of 200.
fn manifest_figure(manifest: &Manifest, label: &str, report: &mut Report) -> anyhow::Result<()> {
    let bytes = manifest.to_bytes();
    let secs = time_runs(200, || Ok(()), |()| Ok(Manifest::from_bytes(&bytes)?))?;
    let us: Vec<f64> = secs.iter().map(|s| s * 1e6).collect();
    report.add(
        Figure::new("pipeline.manifest.parse", median(&us).unwrap_or(0.0), "us").note(format!(
            "Manifest::from_bytes of a {label} file's manifest ({} stripes, {} bytes); median of 200",
            manifest.stripe_count(),
            bytes.len()
        )),
    );
    Ok(())
}

/// Postcard encode + decode of 256 KiB shard messages (a 1 MiB segment's shard), with the
/// bytes as a sequence of `u8` (serde's derive; the node's protocol before) and as a byte
/// string (the node's protocol now).
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
            "encode + decode of 256 KiB Store-like messages, `Vec<u8>` as serde derives it (the node's protocol before byte strings)",
        ),
        (
            "wire.postcard-shard-as-byte-string.1-core",
            as_bytes,
            "the same with `serialize_bytes` (the node's protocol now): identical bytes on the wire",
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
