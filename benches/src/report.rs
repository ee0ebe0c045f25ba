//! Figures: a value next to the limit that bounds it, printed one per line and collected
//! into a JSON report.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// What bounds a figure, measured in the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    /// What the limit is (e.g. `pipeline.encode.all-cores`).
    pub name: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Dotted name, e.g. `testnet.put.16MiB`.
    pub name: String,
    /// The value (a median where there were several runs).
    pub value: f64,
    /// Its unit (`MB/s` is 10^6 bytes per second).
    pub unit: &'static str,
    /// The limit, when one applies.
    pub limit: Option<Limit>,
    /// Every run's value, when there were several.
    pub runs: Vec<f64>,
    /// How it was measured, in a few words.
    pub note: String,
}

impl Figure {
    /// A figure with no limit and no runs.
    pub fn new(name: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            value,
            unit,
            limit: None,
            runs: Vec::new(),
            note: String::new(),
        }
    }

    /// With a limit.
    #[must_use]
    pub fn limit(mut self, name: impl Into<String>, value: f64) -> Self {
        self.limit = Some(Limit {
            name: name.into(),
            value,
        });
        self
    }

    /// With an optional limit: the smallest of `candidates` (the tightest bound).
    #[must_use]
    pub fn tightest(mut self, candidates: &[(String, f64)]) -> Self {
        self.limit = candidates
            .iter()
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(n, v)| Limit {
                name: n.clone(),
                value: *v,
            });
        self
    }

    /// With the values of every run.
    #[must_use]
    pub fn runs(mut self, runs: Vec<f64>) -> Self {
        self.runs = runs;
        self
    }

    /// With a note.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// value / limit.
    pub fn ratio(&self) -> Option<f64> {
        self.limit
            .as_ref()
            .filter(|l| l.value > 0.0)
            .map(|l| self.value / l.value)
    }

    /// The one-line form: figure, value, limit, ratio.
    pub fn line(&self) -> String {
        let limit = self.limit.as_ref().map_or_else(
            || "-".to_string(),
            |l| format!("{} ({})", number(l.value), l.name),
        );
        let ratio = self
            .ratio()
            .map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
        let runs = if self.runs.len() > 1 {
            format!("  [{} runs]", self.runs.len())
        } else {
            String::new()
        };
        format!(
            "{:<40} {:>11} {:<5} limit {:<44} ratio {:>5}{runs}",
            self.name,
            number(self.value),
            self.unit,
            limit,
            ratio
        )
    }

    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "figure": self.name,
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit.as_ref().map(|l| json!({"name": l.name, "value": l.value})),
            "ratio": self.ratio(),
            "runs": self.runs,
            "note": self.note,
        })
    }
}

/// Prints a value with the precision that suits its size.
pub fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The line that opens the generated table in a Markdown file (`e2e --readme FILE`).
pub const TABLE_BEGIN: &str =
    "<!-- e2e table: written by `e2e --readme README.md`; edits between these lines are lost -->";
/// The line that closes it.
pub const TABLE_END: &str = "<!-- end of e2e table -->";

/// Every figure and error of a run, with what the machine was doing.
#[derive(Debug, Default)]
pub struct Report {
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
    /// Sections that failed: (section, one-line error).
    pub errors: Vec<(String, String)>,
    /// Free-form facts about the run (machine, load, sizes).
    pub meta: serde_json::Map<String, Value>,
}

impl Report {
    /// Adds a figure and prints its line.
    #[allow(clippy::print_stdout)]
    pub fn add(&mut self, figure: Figure) {
        println!("{}", figure.line());
        self.figures.push(figure);
    }

    /// The figure called `name`, if measured.
    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// The value of the figure called `name`, as a named limit for another figure.
    pub fn as_limit(&self, name: &str) -> Option<(String, f64)> {
        self.get(name).map(|f| (name.to_string(), f.value))
    }

    /// Records a fact.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.meta.insert(key.to_string(), value.into());
    }

    /// The whole report as JSON.
    pub fn to_json(&self) -> Value {
        let mut meta = self.meta.clone();
        meta.insert(
            "written_at_unix".into(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .into(),
        );
        json!({
            "meta": meta,
            "figures": self.figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            "errors": self.errors.iter().map(|(s, e)| json!({"section": s, "error": e})).collect::<Vec<_>>(),
        })
    }

    /// The figures as a Markdown table (figure, value, limit, ratio), after a line
    /// saying when and on what it ran and the machine's load (`meta`: `measured_at`,
    /// `cpu`, `threads`, `loadavg_start`, `loadavg_end`, `seconds_total`, `command`),
    /// and a line per failed section.
    pub fn markdown(&self) -> String {
        let meta = |key: &str| {
            self.meta.get(key).map_or_else(
                || "?".to_string(),
                |v| v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        };
        let seconds = self
            .meta
            .get("seconds_total")
            .and_then(Value::as_f64)
            .map_or_else(|| "?".to_string(), |s| format!("{s:.0}"));
        let mut out = format!(
            "Measured {} by `{}` on {} ({} threads) in {seconds} s; load average (1, 5, 15 min) {} at the start, {} at the end.\n\n",
            meta("measured_at"),
            meta("command"),
            meta("cpu"),
            meta("threads"),
            meta("loadavg_start"),
            meta("loadavg_end"),
        );
        for (section, error) in &self.errors {
            out.push_str(&format!("Section {section} failed: {error}\n\n"));
        }
        out.push_str("| figure | value | limit | ratio |\n| --- | ---: | --- | ---: |\n");
        for f in &self.figures {
            let limit = f.limit.as_ref().map_or_else(String::new, |l| {
                format!("{} {} ({})", number(l.value), f.unit, l.name)
            });
            let ratio = f.ratio().map_or_else(String::new, |r| format!("{r:.2}"));
            out.push_str(&format!(
                "| {} | {} {} | {limit} | {ratio} |\n",
                f.name,
                number(f.value),
                f.unit
            ));
        }
        out
    }

    /// Writes the JSON report to `path` (through a temporary file, so a reader never
    /// sees half of it).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// `text` with what stands between the lines [`TABLE_BEGIN`] and [`TABLE_END`] replaced
/// by `table`; everything else kept byte for byte.
///
/// # Errors
/// When the markers are missing, repeated or out of order.
pub fn replace_table(text: &str, table: &str) -> anyhow::Result<String> {
    let once = |marker: &str| match text.match_indices(marker).count() {
        1 => text
            .find(marker)
            .ok_or_else(|| anyhow::anyhow!("{marker} vanished")),
        0 => anyhow::bail!("no line {marker:?} in the file: put it where the table goes"),
        n => anyhow::bail!("the line {marker:?} is there {n} times"),
    };
    let (begin, end) = (once(TABLE_BEGIN)?, once(TABLE_END)?);
    anyhow::ensure!(begin < end, "{TABLE_END:?} comes before {TABLE_BEGIN:?}");
    let body_start = begin + TABLE_BEGIN.len();
    let mut out = String::with_capacity(text.len() + table.len());
    out.push_str(&text[..body_start]);
    out.push('\n');
    out.push_str(table);
    if !table.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&text[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_replaces_only_what_stands_between_the_markers() -> anyhow::Result<()> {
        let text = format!("# Title\n\nbefore\n{TABLE_BEGIN}\nold row\n{TABLE_END}\nafter\n");
        let mut report = Report::default();
        report.set("measured_at", "2026-12-05 15:00 UTC");
        report.set("loadavg_start", "0.5 0.4 0.3");
        report
            .figures
            .push(Figure::new("testnet.put.256MiB", 150.0, "MB/s").limit("limit.put.cpu", 300.0));
        report.figures.push(Figure::new("keys.rotate", 0.01, "s"));
        let table = report.markdown();
        assert!(table.contains("Measured 2026-12-05 15:00 UTC"), "{table}");
        assert!(table.contains("0.5 0.4 0.3 at the start"), "{table}");
        assert!(
            table.contains("| testnet.put.256MiB | 150 MB/s | 300 MB/s (limit.put.cpu) | 0.50 |"),
            "{table}"
        );
        assert!(
            table.contains("| keys.rotate | 0.0100 s |  |  |"),
            "{table}"
        );
        let out = replace_table(&text, &table)?;
        assert!(out.starts_with("# Title\n\nbefore\n"), "{out}");
        assert!(out.ends_with(&format!("{TABLE_END}\nafter\n")), "{out}");
        assert!(!out.contains("old row"), "{out}");
        // Run again over its own output: the same text.
        assert_eq!(replace_table(&out, &table)?, out);
        Ok(())
    }

    #[test]
    fn missing_repeated_or_swapped_markers_are_refused() {
        let table = "| a |\n";
        assert!(replace_table("no markers\n", table).is_err());
        let twice = format!("{TABLE_BEGIN}\n{TABLE_BEGIN}\n{TABLE_END}\n");
        assert!(replace_table(&twice, table).is_err());
        let swapped = format!("{TABLE_END}\n{TABLE_BEGIN}\n");
        assert!(replace_table(&swapped, table).is_err());
    }

    #[test]
    fn ratio_and_tightest_limit() {
        let f = Figure::new("testnet.put.16MiB", 50.0, "MB/s").tightest(&[
            ("pipeline.encode.all-cores".into(), 500.0),
            ("disk-write/1.5".into(), 200.0),
            ("unmeasured".into(), f64::NAN),
        ]);
        let limit = f.limit.clone().map(|l| l.name);
        assert_eq!(limit.as_deref(), Some("disk-write/1.5"));
        assert_eq!(f.ratio(), Some(0.25));
        assert_eq!(Figure::new("x", 1.0, "s").ratio(), None);
        assert_eq!(Figure::new("x", 1.0, "s").tightest(&[]).limit, None);
    }

    #[test]
    fn line_and_json_carry_every_part() {
        let f = Figure::new("memory.gateway.put.1GiB", 120.0, "MiB")
            .limit("target", 256.0)
            .runs(vec![118.0, 120.0, 125.0]);
        let line = f.line();
        assert!(line.starts_with("memory.gateway.put.1GiB"), "{line}");
        for part in ["120", "MiB", "256 (target)", "0.47", "[3 runs]"] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
        let json = f.to_json();
        assert_eq!(json["limit"]["value"], 256.0);
        assert_eq!(json["runs"].as_array().map(Vec::len), Some(3));
        let mut report = Report::default();
        report.figures.push(f);
        report.set("quick", true);
        let json = report.to_json();
        assert_eq!(json["meta"]["quick"], true);
        assert_eq!(
            json["figures"][0]["figure"],
            Value::from("memory.gateway.put.1GiB")
        );
        assert_eq!(
            report.as_limit("memory.gateway.put.1GiB").map(|l| l.1),
            Some(120.0)
        );
    }

    #[test]
    fn numbers_keep_sensible_precision() {
        assert_eq!(number(1234.56), "1235");
        assert_eq!(number(12.345), "12.35");
        assert_eq!(number(0.01234), "0.0123");
    }
}
