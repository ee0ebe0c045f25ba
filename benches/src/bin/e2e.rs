//! The DataMesh end-to-end benchmark: every figure next to the limit that bounds it,
//! measured in the same run. One line per figure on stdout, progress on stderr, the whole
//! report (with the machine's load) as JSON.
//!
//! ```sh
//! cargo build --workspace --release && "${CARGO_TARGET_DIR:-target}"/release/e2e [--quick] [--out FILE.json] [--only SECTION]
//! ```
//!
//! Sections: pipeline, testnet, small, memory, keys, scale (see `datamesh_benches::sections`).
//! Drives the `datamesh` binary next to this one (or `--datamesh PATH`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use datamesh_benches::args::{self, Common};
use datamesh_benches::report::{Report, replace_table};
use datamesh_benches::sections::{Ctx, Section, progress};
use datamesh_benches::sys;

const USAGE: &str = "usage: e2e [--quick] [--out FILE.json] [--readme FILE.md] [--only SECTION]... [--datamesh PATH] [--dir DIR]
  --quick          small sizes, for a smoke run (under 2 minutes)
  --out FILE       where to write the JSON report [default: e2e.json]
  --readme FILE    also write the figures as a table into FILE, between its lines
                   `<!-- e2e table: ... -->` and `<!-- end of e2e table -->`
  --only SECTION   run only this section (repeatable): pipeline, testnet, small, memory,
                   keys, scale
  --datamesh PATH  the datamesh binary [default: the one next to this program]
  --dir DIR        scratch folder for homes and files [default: a new temporary folder]";

#[derive(Debug)]
struct Args {
    quick: bool,
    readme: Option<PathBuf>,
    only: Vec<Section>,
    common: Common,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut quick, mut only, mut readme) = (false, Vec::new(), None);
    let common = args::parse(args, "e2e.json", |flag, value| {
        match flag {
            "--quick" => quick = true,
            "--readme" => readme = Some(PathBuf::from(value()?)),
            "--only" => {
                let name = value()?;
                only.push(Section::parse(&name).ok_or(format!(
                    "unknown section {name:?}: pipeline, testnet, small, memory, keys or scale"
                ))?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(common.map(|common| Args {
        quick,
        readme,
        only,
        common,
    }))
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let args = match args::or_exit(parse_args(std::env::args().skip(1)), USAGE) {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the sections; false if any failed (the report is written either way).
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn run(args: &Args) -> anyhow::Result<bool> {
    let binary = match &args.common.datamesh {
        Some(path) => path.clone(),
        None => datamesh_testnet::run::cargo_binary("datamesh")?,
    };
    let scratch = match &args.common.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new()
                .prefix("datamesh-e2e-")
                .tempdir_in(dir)?
        }
        None => tempfile::Builder::new().prefix("datamesh-e2e-").tempdir()?,
    };
    let sections: Vec<Section> = if args.only.is_empty() {
        Section::ALL.to_vec()
    } else {
        Section::ALL
            .into_iter()
            .filter(|s| args.only.contains(s))
            .collect()
    };

    anyhow::ensure!(
        binary.is_file() || sections == [Section::Pipeline],
        "no datamesh binary at {}: run `cargo build --workspace --release` first, or pass --datamesh PATH",
        binary.display()
    );

    let mut report = Report::default();
    report.set(
        "measured_at",
        jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string(),
    );
    report.set(
        "command",
        std::iter::once("e2e".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
    );
    report.set("quick", args.quick);
    report.set("cpu", sys::cpu_model());
    report.set("threads", rayon::current_num_threads());
    report.set("loadavg_start", sys::loadavg());
    report.set("datamesh", binary.display().to_string());
    report.set(
        "sections",
        sections.iter().map(|s| s.name()).collect::<Vec<_>>(),
    );
    report.set(
        "units",
        "MB/s = 10^6 bytes/s; MiB = 2^20 bytes; ratio = value / limit",
    );
    println!(
        "DataMesh end-to-end benchmark{} ({} threads, load {})",
        if args.quick { " (quick)" } else { "" },
        rayon::current_num_threads(),
        sys::loadavg()
    );
    println!(
        "figure, value (median of runs unless noted), unit, limit (what it is), ratio = value / limit"
    );

    let mut ctx = Ctx::new(args.quick, binary, scratch.path().to_path_buf());
    let started = Instant::now();
    let mut ok = true;
    for section in sections {
        eprintln!("== {} (load {})", section.name(), sys::loadavg());
        report.set(
            &format!("loadavg_before_{}", section.name()),
            sys::loadavg(),
        );
        let t = Instant::now();
        if let Err(e) = section.run(&mut ctx, &mut report) {
            eprintln!("error: section {}: {e:#}", section.name());
            report
                .errors
                .push((section.name().to_string(), format!("{e:#}")));
            ok = false;
        }
        report.set(
            &format!("seconds_{}", section.name()),
            t.elapsed().as_secs_f64(),
        );
        report.set("loadavg_end", sys::loadavg());
        report.write(&args.common.out)?;
    }
    drop(ctx);
    report.set("seconds_total", started.elapsed().as_secs_f64());
    report.set("loadavg_end", sys::loadavg());
    report.write(&args.common.out)?;
    progress(format!("report written to {}", args.common.out.display()));
    if let Some(readme) = &args.readme {
        let text = std::fs::read_to_string(readme)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", readme.display()))?;
        let text = replace_table(&text, &report.markdown())
            .map_err(|e| anyhow::anyhow!("{}: {e}", readme.display()))?;
        std::fs::write(readme, text)?;
        progress(format!("table written into {}", readme.display()));
    }
    drop(scratch);
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(ToString::to_string))
    }

    #[test]
    fn arguments() -> Result<(), String> {
        let a = parse(&[
            "--quick", "--out", "x.json", "--only", "keys", "--only", "pipeline", "--readme",
            "R.md",
        ])?
        .ok_or("no args")?;
        assert!(a.quick);
        assert_eq!(a.readme, Some(PathBuf::from("R.md")));
        assert_eq!(a.common.out, PathBuf::from("x.json"));
        assert_eq!(a.only, vec![Section::Keys, Section::Pipeline]);
        assert!(parse(&["--help"])?.is_none());
        assert!(parse(&["--only", "everything"]).is_err());
        assert!(parse(&["--out"]).is_err());
        assert!(parse(&["--readme"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        Ok(())
    }
}
