//! Where things are printed: results to stdout, messages to stderr.
//!
//! Writes go through `writeln!` on locked handles and ignore errors (a closed pipe, as in
//! `datamesh keys list | head -1`, must not turn into a panic).

use std::fmt::Display;
use std::io::{self, Write};

/// Output settings from the global flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    json: bool,
    quiet: bool,
    verbose: u8,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool, verbose: u8) -> Self {
        Self {
            json,
            quiet,
            verbose,
        }
    }

    /// Whether results are JSON.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Whether to draw progress bars: stderr is a terminal, and neither `-q` nor `--json`.
    pub(crate) fn progress(&self) -> bool {
        !self.json && !self.quiet && io::IsTerminal::is_terminal(&io::stderr())
    }

    /// A message for the user (stderr), unless `-q`.
    pub(crate) fn info(&self, message: impl Display) {
        if !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{message}");
        }
    }

    /// A detail (stderr), only with `-v`.
    pub(crate) fn detail(&self, message: impl Display) {
        if self.verbose > 0 && !self.quiet {
            let _ = writeln!(io::stderr().lock(), "{message}");
        }
    }

    /// A warning (stderr), even with `-q`.
    pub(crate) fn warn(&self, message: impl Display) {
        let _ = writeln!(io::stderr().lock(), "warning: {message}");
    }

    /// A result line (stdout).
    pub(crate) fn result(&self, line: impl Display) {
        let _ = writeln!(io::stdout().lock(), "{line}");
    }

    /// A JSON result (stdout).
    pub(crate) fn json_value(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        self.result(text);
    }

    /// Rows as aligned columns (stdout).
    pub(crate) fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, (cell, width)) in cells.zip(&widths).enumerate() {
                if i + 1 == widths.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.trim_end().to_owned()
        };
        self.result(line(&mut header.iter().copied()));
        for row in rows {
            self.result(line(&mut row.iter().map(String::as_str)));
        }
    }
}
