//! Where things are printed: results to stdout, messages to stderr.
//!
//! Each line is formatted first and written whole, with its newline, in one write
//! ([`write_line`]): stderr is unbuffered, so `writeln!` with arguments would reach it in
//! pieces, and a reader that merges stdout and stderr could splice a warning into the
//! middle of a result line. Write errors are ignored (a closed pipe, as in
//! `datamesh keys list | head -1`, must not turn into a panic).

use std::fmt::Display;
use std::io::{self, Write};

/// Output settings from the global flags.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    json: bool,
    quiet: bool,
    verbose: u8,
}

impl Output {
    pub fn new(json: bool, quiet: bool, verbose: u8) -> Self {
        Self {
            json,
            quiet,
            verbose,
        }
    }

    /// Whether results are JSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Whether to draw progress bars: stderr is a terminal, and neither `-q` nor `--json`.
    pub fn progress(&self) -> bool {
        !self.json && !self.quiet && io::IsTerminal::is_terminal(&io::stderr())
    }

    /// A message for the user (stderr), unless `-q`.
    pub fn info(&self, message: impl Display) {
        if !self.quiet {
            let _ = write_line(&mut io::stderr().lock(), message);
        }
    }

    /// A detail (stderr), only with `-v`.
    pub fn detail(&self, message: impl Display) {
        if self.verbose > 0 && !self.quiet {
            let _ = write_line(&mut io::stderr().lock(), message);
        }
    }

    /// A warning (stderr), even with `-q`.
    pub fn warn(&self, message: impl Display) {
        let _ = write_line(&mut io::stderr().lock(), format_args!("warning: {message}"));
    }

    /// A result line (stdout).
    pub fn result(&self, line: impl Display) {
        let _ = write_line(&mut io::stdout().lock(), line);
    }

    /// A JSON result (stdout).
    pub fn json_value(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
        self.result(text);
    }

    /// Rows as aligned columns (stdout).
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
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

/// Writes `line` and its newline with one `write_all`.
fn write_line(out: &mut impl Write, line: impl Display) -> io::Result<()> {
    out.write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that keeps every write it is given, separately.
    #[derive(Debug, Default)]
    struct Writes(Vec<String>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(String::from_utf8_lossy(buf).into_owned());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_one_write_with_its_newline() -> io::Result<()> {
        // `datamesh check`'s summary and warning. With `writeln!(out, "warning: {message}")`
        // these were 2 and 8 writes, the newline alone in the last one.
        let (stripes, below) = (16, 16);
        let mut out = Writes::default();
        write_line(
            &mut out,
            format_args!(
                "DEGRADED: 0 healthy, {below} degraded, 0 unrecoverable of {stripes} stripes"
            ),
        )?;
        write_line(
            &mut out,
            format_args!(
                "warning: {}",
                format_args!("DEGRADED: {below} of {stripes} stripes below full health")
            ),
        )?;
        assert_eq!(
            out.0,
            [
                "DEGRADED: 0 healthy, 16 degraded, 0 unrecoverable of 16 stripes\n",
                "warning: DEGRADED: 16 of 16 stripes below full health\n"
            ]
        );
        Ok(())
    }
}
