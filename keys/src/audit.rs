//! The audit log, `keys/audit.log`: append-only JSON lines, one per key operation and
//! failed unlock, each carrying the BLAKE3 of the line before it.
//!
//! ```text
//! {"seq":3,"time":"2025-07-08T10:00:00.123Z","op":"rotate","name":"file-encryption","version":2,
//!  "outcome":"ok","detail":"v1 -> v2","prev":"<64 hex: BLAKE3 of line 2's bytes>"}
//! ```
//!
//! `seq` counts from 1; line 1's `prev` is 64 zeros. An edited, removed or reordered line
//! breaks the chain or the sequence. Cutting lines off the end cannot be seen from the log
//! alone, so every change of the keystore also seals its own audit line inside the
//! keystore (the *anchor*): `Keystore::verify_audit` checks it is in the log, and
//! opening the keystore re-appends it if a crash lost it. Lines after the anchor (unlocks,
//! failed unlocks) can still be cut or edited unseen by someone who can write the file.
//! No secret or password ever reaches this log.
//!
//! Lines written with the keystore unlocked carry a `mac` under a key derived from the
//! master key, and the head file (`keys/audit.head`, see `head`) seals the last of them
//! and the newest keystore generation seen: cutting the tail, editing sealed lines or
//! putting an older keystore back is detected (see `docs/keystore.md`, "Audit log").

pub(crate) mod head;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use data_encoding::HEXLOWER;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::fsx;
use crate::layout::Layout;

use self::head::{AuditKey, HeadFile, Keyed};

/// `prev` of the first line.
const GENESIS: [u8; 32] = [0; 32];
/// How much of the end of the log is read to find its last line.
const TAIL: u64 = 64 * 1024;
/// A log larger than this is not read whole (1 GiB).
pub(crate) const MAX_LOG_LEN: u64 = 1 << 30;
/// The longest detail text kept in a line.
const MAX_DETAIL: usize = 512;

/// A key operation, as named in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditOp {
    /// `init`: the keystore was created.
    Init,
    /// `unlock`: a password was tried (ok, failed, or a warning after repeated failures).
    Unlock,
    /// `rotate`.
    Rotate,
    /// `revoke`.
    Revoke,
    /// `destroy`.
    Destroy,
    /// `passwd`.
    Passwd,
    /// `slot-add`.
    SlotAdd,
    /// `slot-remove`.
    SlotRemove,
    /// `policy`.
    Policy,
    /// `import-legacy`.
    ImportLegacy,
    /// `export-public`.
    ExportPublic,
    /// `backup`.
    Backup,
    /// `restore`.
    Restore,
    /// `escrow`.
    Escrow,
    /// `recover`.
    Recover,
    /// `audit-verify`.
    AuditVerify,
    /// `rekey`: a new master key.
    Rekey,
    /// `accept-rollback`: an older keystore accepted on purpose.
    AcceptRollback,
    /// `incident`: a compromised key handled (`keys compromised`), or revoked keys used
    /// on explicit override.
    Incident,
}

impl AuditOp {
    /// The name written in the log.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Unlock => "unlock",
            Self::Rotate => "rotate",
            Self::Revoke => "revoke",
            Self::Destroy => "destroy",
            Self::Passwd => "passwd",
            Self::SlotAdd => "slot-add",
            Self::SlotRemove => "slot-remove",
            Self::Policy => "policy",
            Self::ImportLegacy => "import-legacy",
            Self::ExportPublic => "export-public",
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Escrow => "escrow",
            Self::Recover => "recover",
            Self::AuditVerify => "audit-verify",
            Self::Rekey => "rekey",
            Self::AcceptRollback => "accept-rollback",
            Self::Incident => "incident",
        }
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// `ok`.
    Ok,
    /// `failed`.
    Failed,
    /// `warning`.
    Warning,
}

impl Outcome {
    /// The name written in the log.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Warning => "warning",
        }
    }
}

/// One event to log. Never put a secret or a password in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    op: AuditOp,
    name: Option<String>,
    version: Option<u32>,
    outcome: Outcome,
    detail: Option<String>,
}

impl AuditEvent {
    /// A successful `op`.
    #[must_use]
    pub fn new(op: AuditOp) -> Self {
        Self {
            op,
            name: None,
            version: None,
            outcome: Outcome::Ok,
            detail: None,
        }
    }

    /// Names the key (and version) concerned.
    #[must_use]
    pub fn with_key(mut self, name: &str, version: Option<u32>) -> Self {
        self.name = Some(name.to_owned());
        self.version = version;
        self
    }

    /// Sets the version concerned.
    #[must_use]
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = Some(version);
        self
    }

    /// Adds a short free text (cut to 512 bytes).
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        self.detail = Some(detail);
        self
    }

    /// Sets the outcome.
    #[must_use]
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The same event, failed because of `error`.
    pub(crate) fn failed(&self, error: &dyn core::fmt::Display) -> Self {
        self.clone()
            .with_outcome(Outcome::Failed)
            .with_detail(error.to_string())
    }

    /// Sets the detail in place.
    pub(crate) fn set_detail(&mut self, detail: impl Into<String>) {
        *self = self.clone().with_detail(detail);
    }

    /// Sets the version in place.
    pub(crate) fn set_version(&mut self, version: u32) {
        self.version = Some(version);
    }
}

/// One line of the log, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditRecord {
    /// 1, 2, ... in log order.
    pub seq: u64,
    /// RFC 3339 time, UTC.
    pub time: String,
    /// The operation (see [`AuditOp::as_str`]).
    pub op: String,
    /// The key concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// `ok`, `failed` or `warning`.
    pub outcome: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Lowercase hex BLAKE3 of the previous line's bytes.
    pub prev: String,
    /// Lowercase hex keyed BLAKE3 (the audit key) of the line without this field; absent
    /// on lines written before any key is known (failed unlocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A line ready to append (the keystore seals it as its anchor first).
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub(crate) text: String,
    seq: u64,
}

/// The log of one home.
#[derive(Clone, Debug)]
pub(crate) struct AuditLog {
    path: PathBuf,
    keyed: Option<Keyed>,
}

impl AuditLog {
    /// The log without its key: lines are not sealed and the head is left as it is
    /// (failed unlocks, reports).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, keyed: None }
    }

    /// The log of `layout` sealed with the key of `master`; every append also advances
    /// the head, recording `generation` as seen.
    pub(crate) fn keyed(
        layout: &Layout,
        master: &crate::secret::Secret32,
        generation: u64,
    ) -> Self {
        Self {
            path: layout.audit_log(),
            keyed: Some(Keyed {
                key: AuditKey::of(master),
                previous: None,
                fresh: false,
                generation,
                broken: None,
                head: layout.audit_head(),
                head_temp: layout.head_temp(),
                log_temp: layout.audit_temp(),
            }),
        }
    }

    /// The next head ignores the current one (a new keystore; an accepted rollback).
    pub(crate) fn fresh(mut self) -> Self {
        if let Some(keyed) = &mut self.keyed {
            keyed.fresh = true;
        }
        self
    }

    /// The current head is sealed with `master`'s key, not this log's (a rekey).
    pub(crate) fn previously(mut self, master: &crate::secret::Secret32) -> Self {
        if let Some(keyed) = &mut self.keyed {
            keyed.previous = Some(AuditKey::of(master));
        }
        self
    }

    /// Records tampering found just now in the next head (kept in every later one).
    pub(crate) fn with_broken(mut self, problem: Option<String>) -> Self {
        if let Some(keyed) = &mut self.keyed {
            keyed.broken = problem;
        }
        self
    }

    /// The log's bytes (empty if there is none).
    pub(crate) fn read(&self) -> io::Result<Vec<u8>> {
        match fsx::read_bounded(&self.path, MAX_LOG_LEN) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The head and the log checked against each other (see `head::check_log`).
    pub(crate) fn check_head(&self, log: &[u8]) -> io::Result<Result<(), String>> {
        let Some(keyed) = &self.keyed else {
            return Ok(Ok(()));
        };
        let head = HeadFile::read(&keyed.head)?;
        Ok(head::check_log(&keyed.key, &head, log, usize::MAX))
    }

    /// A sealed key change in the log after the keystore's anchor (see
    /// `head::later_change`).
    pub(crate) fn later_change(&self, log: &[u8], anchor: Option<&str>) -> Option<u64> {
        let keyed = self.keyed.as_ref()?;
        head::later_change(&keyed.key, log, anchor_seq(anchor))
    }

    /// The last line's bytes and whether the file ends with a newline (`None`: empty).
    fn last_line(&self) -> io::Result<(Option<Vec<u8>>, bool)> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, true)),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let mut start = len.saturating_sub(TAIL);
        loop {
            file.seek(SeekFrom::Start(start))?;
            let mut tail = Vec::new();
            (&mut file).take(len - start).read_to_end(&mut tail)?;
            let ends_with_newline = tail.last().is_none_or(|b| *b == b'\n');
            let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
            match body.iter().rposition(|b| *b == b'\n') {
                Some(i) => return Ok((body.get(i + 1..).map(<[u8]>::to_vec), ends_with_newline)),
                None if start == 0 => {
                    let line = (!body.is_empty()).then(|| body.to_vec());
                    return Ok((line, ends_with_newline));
                }
                None => start = start.saturating_sub(TAIL.saturating_mul(16)),
            }
        }
    }

    /// The next line for `event`, after cutting a torn last line (see `drop_torn_tail`).
    /// The caller holds the keystore lock.
    pub(crate) fn prepare(&self, event: &AuditEvent) -> io::Result<Prepared> {
        self.drop_torn_tail()?;
        let (last, _) = self.last_line()?;
        let (seq, prev) = match &last {
            None => (1, GENESIS),
            Some(line) => {
                let seq = serde_json::from_slice::<AuditRecord>(line).map_or(0, |r| r.seq);
                (seq.saturating_add(1), *blake3::hash(line).as_bytes())
            }
        };
        let record = AuditRecord {
            seq,
            time: format!("{:.3}", Timestamp::now()),
            op: event.op.as_str().to_owned(),
            name: event.name.clone(),
            version: event.version,
            outcome: event.outcome.as_str().to_owned(),
            detail: event.detail.clone(),
            prev: HEXLOWER.encode(&prev),
            mac: None,
        };
        let mut text = serde_json::to_string(&record).map_err(io::Error::other)?;
        if let Some(keyed) = &self.keyed {
            text = keyed.key.seal(&text);
        }
        Ok(Prepared { text, seq })
    }

    /// Appends a prepared line (and advances the head).
    pub(crate) fn append(&self, line: &Prepared) -> io::Result<()> {
        fsx::append_line(&self.path, &line.text)?;
        self.advance(line.seq, &line.text)
    }

    fn advance(&self, seq: u64, text: &str) -> io::Result<()> {
        match &self.keyed {
            Some(keyed) => keyed.advance(&self.path, seq, text.as_bytes()),
            None => Ok(()),
        }
    }

    /// Prepares and appends. The caller holds the keystore lock.
    pub(crate) fn record(&self, event: &AuditEvent) -> io::Result<()> {
        self.append(&self.prepare(event)?)
    }

    /// Re-appends the keystore's anchor line if a crash lost it: when the log ends with
    /// the line the anchor chains to, or with that line followed only by lines written
    /// without the key. Those (failed unlocks, tried before the lost line could be put
    /// back: without the password the anchor cannot be read) are moved after the anchor,
    /// renumbered and re-chained, in one atomic replacement of the log; they carry no
    /// mac, so nothing sealed changes. Returns whether the anchor was put back.
    pub(crate) fn repair(&self, anchor: &str) -> io::Result<bool> {
        let Ok(record) = serde_json::from_str::<AuditRecord>(anchor) else {
            return Ok(false);
        };
        self.drop_torn_tail()?;
        let (last, ends_with_newline) = self.last_line()?;
        if !ends_with_newline {
            return Ok(false);
        }
        if chains_onto(&record, last.as_deref()) {
            fsx::append_line(&self.path, anchor)?;
            self.advance(record.seq, anchor)?;
            return Ok(true);
        }
        let Some(keyed) = &self.keyed else {
            return Ok(false);
        };
        let bytes = self.read()?;
        let all: Vec<&[u8]> = lines(&bytes).collect();
        // The lines before the anchor's place, and those logged in it since.
        let Some(before) = usize::try_from(record.seq)
            .ok()
            .and_then(|seq| seq.checked_sub(1))
            .filter(|before| *before < all.len())
        else {
            return Ok(false);
        };
        let (kept, moved) = all.split_at(before);
        if !chains_onto(&record, kept.last().copied())
            || !moved.iter().all(|line| head::written_without_key(line))
        {
            return Ok(false);
        }
        let mut text = Vec::with_capacity(bytes.len() + anchor.len() + 1);
        for line in kept.iter().copied().chain([anchor.as_bytes()]) {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let mut prev = *blake3::hash(anchor.as_bytes()).as_bytes();
        for (seq, line) in (record.seq.saturating_add(1)..).zip(moved) {
            let mut moved: AuditRecord = serde_json::from_slice(line).map_err(io::Error::other)?;
            moved.seq = seq;
            moved.prev = HEXLOWER.encode(&prev);
            let line = serde_json::to_string(&moved).map_err(io::Error::other)?;
            prev = *blake3::hash(line.as_bytes()).as_bytes();
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        fsx::write_private_atomic(&self.path, &keyed.log_temp, &text).map_err(|e| match e {
            fsx::WriteError::BeforeRename(e) | fsx::WriteError::AfterRename(e) => e,
        })?;
        self.advance(record.seq, anchor)?;
        Ok(true)
    }

    /// Cuts a last line that has no newline: the remains of an append that a crash
    /// interrupted (every append writes a whole line and its newline at once), which
    /// would otherwise glue the next line onto it. The caller holds the keystore lock.
    pub(crate) fn drop_torn_tail(&self) -> io::Result<()> {
        let (_, ends_with_newline) = self.last_line()?;
        if ends_with_newline {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        let mut reader = &file;
        let mut start = len.saturating_sub(TAIL);
        let keep = loop {
            reader.seek(SeekFrom::Start(start))?;
            let mut tail = Vec::new();
            reader.take(len - start).read_to_end(&mut tail)?;
            match tail.iter().rposition(|b| *b == b'\n') {
                Some(i) => break start + i as u64 + 1,
                None if start == 0 => break 0,
                None => start = start.saturating_sub(TAIL.saturating_mul(16)),
            }
        };
        file.set_len(keep)?;
        file.sync_all()
    }

    /// Failed unlocks since the last successful operation, counted from the end.
    pub(crate) fn consecutive_failed_unlocks(&self) -> io::Result<u64> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let mut count = 0;
        for line in tail.split(|b| *b == b'\n').rev().filter(|l| !l.is_empty()) {
            let Ok(record) = serde_json::from_slice::<AuditRecord>(line) else {
                break;
            };
            match (record.op.as_str(), record.outcome.as_str()) {
                ("unlock", "failed") => count += 1,
                ("unlock", "warning") => {}
                _ => break,
            }
        }
        Ok(count)
    }
}

/// The result of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditSummary {
    /// Number of lines checked.
    pub lines: usize,
    /// Whether the keystore's anchor was found (only checked through the keystore).
    pub anchor_checked: bool,
}

/// Per-operation counts of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpCounts {
    /// Lines with outcome `ok`.
    pub ok: u64,
    /// Lines with outcome `failed`.
    pub failed: u64,
    /// Lines with outcome `warning`.
    pub warning: u64,
}

/// What `datamesh keys audit` prints.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuditReport {
    /// Number of lines.
    pub lines: usize,
    /// Counts per operation.
    pub counts: BTreeMap<String, OpCounts>,
    /// Every failed or warning line.
    pub failures: Vec<AuditRecord>,
    /// The last lines, oldest first.
    pub last: Vec<AuditRecord>,
    /// The chain check (`Err` carries the message of the first break).
    pub chain: Result<AuditSummary, String>,
}

fn read_log(path: &Path) -> Result<Vec<u8>, AuditError> {
    match fsx::read_bounded(path, MAX_LOG_LEN) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(AuditError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|b| *b == b'\n')
        .filter(move |_| !bytes.is_empty())
}

/// Checks the chain of the log at `path`: every line parses, `seq` runs 1, 2, 3, ... and
/// every `prev` is the BLAKE3 of the line before.
///
/// # Errors
///
/// [`AuditError::Broken`] at the first bad line, or [`AuditError::Io`].
pub fn verify_chain(path: &Path) -> Result<AuditSummary, AuditError> {
    let bytes = read_log(path)?;
    check_chain(path, &bytes)
}

fn check_chain(path: &Path, bytes: &[u8]) -> Result<AuditSummary, AuditError> {
    let broken = |line: usize, problem: &str| AuditError::Broken {
        path: path.to_owned(),
        line,
        problem: problem.to_owned(),
    };
    let mut prev = GENESIS;
    let mut count = 0;
    for (i, line) in lines(bytes).enumerate() {
        let n = i + 1;
        let record: AuditRecord = serde_json::from_slice(line)
            .map_err(|_| broken(n, "not a valid audit record (edited or damaged)"))?;
        if record.seq != n as u64 {
            return Err(broken(
                n,
                &format!(
                    "sequence number {} where {n} was expected (a line was removed, added or reordered)",
                    record.seq
                ),
            ));
        }
        if record.prev != HEXLOWER.encode(&prev) {
            return Err(broken(
                n,
                "does not chain to the line before it (a line was edited, removed or reordered)",
            ));
        }
        prev = *blake3::hash(line).as_bytes();
        count = n;
    }
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        return Err(broken(count, "the last line is incomplete"));
    }
    Ok(AuditSummary {
        lines: count,
        anchor_checked: false,
    })
}

/// Whether `record` is the line after `last` (`None`: the first line).
fn chains_onto(record: &AuditRecord, last: Option<&[u8]>) -> bool {
    match last {
        None => record.seq == 1 && record.prev == HEXLOWER.encode(&GENESIS),
        Some(line) => {
            record.prev == blake3::hash(line).to_hex().as_str()
                && serde_json::from_slice::<AuditRecord>(line)
                    .is_ok_and(|r| r.seq.checked_add(1) == Some(record.seq))
        }
    }
}

/// The `seq` of an anchor line (0 without one).
pub(crate) fn anchor_seq(anchor: Option<&str>) -> u64 {
    anchor
        .and_then(|a| serde_json::from_str::<AuditRecord>(a).ok())
        .map_or(0, |r| r.seq)
}

/// Checks the chain, then the log against its sealed head (`log` must be keyed), then
/// that the keystore's anchor line is in it, byte for byte.
pub(crate) fn verify_with_anchor(
    log: &AuditLog,
    anchor: Option<&str>,
) -> Result<AuditSummary, AuditError> {
    let path = &log.path;
    let bytes = read_log(path)?;
    let mut summary = check_chain(path, &bytes)?;
    if let Some(keyed) = &log.keyed {
        let head = HeadFile::read(&keyed.head).map_err(|source| AuditError::Io {
            path: keyed.head.clone(),
            source,
        })?;
        let newest = head.generation();
        let later = head::later_change(&keyed.key, &bytes, anchor_seq(anchor));
        let problem = if keyed.generation < newest {
            Err(format!(
                "the keystore (generation {}) is older than the newest seen (generation {newest}): an old copy was put back",
                keyed.generation
            ))
        } else if let Some(seq) = later {
            Err(format!(
                "the keystore is older than the log (line {seq} records a later key change): an old copy was put back"
            ))
        } else {
            head::check_log(&keyed.key, &head, &bytes, usize::MAX)
        };
        problem.map_err(|problem| AuditError::Tampered {
            path: path.clone(),
            problem,
        })?;
    }
    if let Some(anchor) = anchor {
        let seq = serde_json::from_str::<AuditRecord>(anchor).map_or(0, |r| r.seq);
        let found = usize::try_from(seq)
            .ok()
            .and_then(|seq| lines(&bytes).nth(seq.checked_sub(1)?))
            .is_some_and(|line| line == anchor.as_bytes());
        if !found {
            return Err(AuditError::AnchorMissing {
                path: path.to_owned(),
                seq,
            });
        }
        summary.anchor_checked = true;
    }
    Ok(summary)
}

/// Counts, failures and the last `last` lines of the log at `path`, with the chain check.
///
/// # Errors
///
/// [`AuditError::Io`] if the log cannot be read (a missing log is an empty report).
pub fn report(path: &Path, last: usize) -> Result<AuditReport, AuditError> {
    let bytes = read_log(path)?;
    let mut counts: BTreeMap<String, OpCounts> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut records = Vec::new();
    for line in lines(&bytes) {
        let Ok(record) = serde_json::from_slice::<AuditRecord>(line) else {
            continue;
        };
        let entry = counts.entry(record.op.clone()).or_default();
        match record.outcome.as_str() {
            "ok" => entry.ok += 1,
            "warning" => {
                entry.warning += 1;
                failures.push(record.clone());
            }
            _ => {
                entry.failed += 1;
                failures.push(record.clone());
            }
        }
        records.push(record);
    }
    let lines = records.len();
    let last = records.split_off(records.len().saturating_sub(last));
    Ok(AuditReport {
        lines,
        counts,
        failures,
        last,
        chain: check_chain(path, &bytes).map_err(|e| e.to_string()),
    })
}
