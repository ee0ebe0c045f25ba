//! The keyed part of the audit log: a MAC key derived from the master key, the `mac`
//! field it puts on every line written with the keystore unlocked, and the *head*
//! (`keys/audit.head`), which seals the log's last sealed line and the newest keystore
//! generation this home has seen.
//!
//! ```text
//! audit key = BLAKE3 derive_key("datamesh audit mac v1", master key)
//! line      = {"seq":..,...,"prev":"..","mac":"<hex BLAKE3 keyed(audit key, the line without its mac field)>"}
//! head      = {"version":1,"seq":N,"line":"<hex BLAKE3 of line N>","generation":G,["broken":"..",]"mac":"<hex>"}
//! ```
//!
//! The head pins line N, and line N's `prev` chain pins every line before it: cutting or
//! editing sealed lines breaks the head, and the head cannot be rewritten without the
//! key. Lines after N can only be failures written before any key is known (a wrong
//! password, shares that do not combine).

use std::io;
use std::path::{Path, PathBuf};

use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{AuditRecord, lines};
use crate::fsx::{self, WriteError};
use crate::secret::Secret32;

const KEY_CONTEXT: &str = "datamesh audit mac v1";
const MAC_FIELD: &str = ",\"mac\":\"";
const HEAD_VERSION: u8 = 1;
/// A head file larger than this is not read.
const MAX_HEAD_LEN: u64 = 4096;

/// The MAC key of the audit log, derived from the master key.
#[derive(Clone)]
pub(crate) struct AuditKey(Secret32);

impl core::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    pub(crate) fn of(master: &Secret32) -> Self {
        Self(Secret32::init_with(|out| {
            let mut hasher = blake3::Hasher::new_derive_key(KEY_CONTEXT);
            hasher.update(master.expose());
            hasher.finalize_xof().fill(out);
        }))
    }

    fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(self.0.expose(), bytes).as_bytes()
    }

    /// `json` (an object without a `mac` field, ending with `}`) with its mac appended
    /// as the last field.
    pub(crate) fn seal(&self, json: &str) -> String {
        let body = json.strip_suffix('}').unwrap_or(json);
        let mac = HEXLOWER.encode(&self.mac(json.as_bytes()));
        format!("{body}{MAC_FIELD}{mac}\"}}")
    }

    /// Whether `line` ends with a mac field; `Some(true)` if it is right.
    pub(crate) fn check(&self, line: &[u8]) -> Option<bool> {
        let (body, mac) = split_mac(line)?;
        let mut unsealed = Vec::with_capacity(body.len() + 1);
        unsealed.extend_from_slice(body);
        unsealed.push(b'}');
        let expected = self.mac(&unsealed);
        let Ok(given) = HEXLOWER.decode(mac) else {
            return Some(false);
        };
        Some(bool::from(given.as_slice().ct_eq(&expected[..])))
    }
}

/// The line without its trailing mac field, and the mac's hex.
fn split_mac(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let tail = MAC_FIELD.len() + 64 + 2;
    let at = line.len().checked_sub(tail)?;
    let (body, rest) = line.split_at(at);
    let rest = rest.strip_prefix(MAC_FIELD.as_bytes())?;
    let mac = rest.strip_suffix(b"\"}")?;
    Some((body, mac))
}

/// Whether a line carries a mac field at all (it was written with the key).
pub(crate) fn has_mac(line: &[u8]) -> bool {
    split_mac(line).is_some()
}

/// Whether a line is one written before any key was known: no mac, a failure or a
/// warning (a failed unlock or recovery). These are the only lines accepted after the
/// line the head seals without being sealed themselves.
pub(crate) fn written_without_key(line: &[u8]) -> bool {
    !has_mac(line)
        && serde_json::from_slice::<AuditRecord>(line)
            .is_ok_and(|r| matches!(r.outcome.as_str(), "failed" | "warning"))
}

/// The head: the last sealed line and the newest generation seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Head {
    pub(crate) version: u8,
    pub(crate) seq: u64,
    pub(crate) line: String,
    pub(crate) generation: u64,
    /// Tampering found at an open, kept in every later head as evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) broken: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

/// What the head file holds.
#[derive(Clone, Debug)]
pub(crate) enum HeadFile {
    Missing,
    Garbled,
    Found(Head, Vec<u8>),
}

impl HeadFile {
    pub(crate) fn read(path: &Path) -> io::Result<Self> {
        let bytes = match fsx::read_bounded(path, MAX_HEAD_LEN) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::Missing),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Self::Garbled),
            Err(e) => return Err(e),
        };
        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes).to_vec();
        Ok(match serde_json::from_slice::<Head>(&text) {
            Ok(head) if head.version == HEAD_VERSION => Self::Found(head, text),
            _ => Self::Garbled,
        })
    }

    /// The generation it claims, authenticated or not.
    pub(crate) fn generation(&self) -> u64 {
        match self {
            Self::Found(head, _) => head.generation,
            _ => 0,
        }
    }

    /// Whether it is sealed under `key` (`false` when missing or garbled).
    pub(crate) fn authentic(&self, key: &AuditKey) -> bool {
        match self {
            Self::Found(_, text) => key.check(text) == Some(true),
            _ => false,
        }
    }
}

impl Head {
    pub(crate) fn new(seq: u64, line: &[u8], generation: u64, broken: Option<String>) -> Self {
        Self {
            version: HEAD_VERSION,
            seq,
            line: blake3::hash(line).to_hex().to_string(),
            generation,
            broken,
            mac: None,
        }
    }

    pub(crate) fn write(&self, key: &AuditKey, path: &Path, temp: &Path) -> io::Result<()> {
        let mut unsealed = self.clone();
        unsealed.mac = None;
        let json = serde_json::to_string(&unsealed).map_err(io::Error::other)?;
        let mut text = key.seal(&json);
        text.push('\n');
        fsx::write_private_atomic(path, temp, text.as_bytes()).map_err(|e| match e {
            WriteError::BeforeRename(e) | WriteError::AfterRename(e) => e,
        })
    }
}

/// Where the head lives, and what the next head written says.
#[derive(Clone, Debug)]
pub(crate) struct Keyed {
    pub(crate) key: AuditKey,
    /// The key the current head is sealed with, when it is another (a rekey).
    pub(crate) previous: Option<AuditKey>,
    /// Ignore the current head (a new keystore, or an accepted rollback).
    pub(crate) fresh: bool,
    pub(crate) generation: u64,
    /// Tampering found just now, to record in the head.
    pub(crate) broken: Option<String>,
    pub(crate) head: PathBuf,
    pub(crate) head_temp: PathBuf,
    /// Where the log is rewritten when a lost anchor is put back (see `AuditLog::repair`).
    pub(crate) log_temp: PathBuf,
}

impl Keyed {
    /// Replaces the head after line `seq` (`text`) was appended to the log at `log`.
    /// Whatever tampering the old head shows against the lines before (cut, edited,
    /// added without the key, head replaced) is carried into the new head, so sealing a
    /// new line never launders the evidence.
    pub(crate) fn advance(&self, log: &Path, seq: u64, text: &[u8]) -> io::Result<()> {
        let (generation, broken) = if self.fresh {
            (self.generation, self.broken.clone())
        } else {
            let old = HeadFile::read(&self.head)?;
            let sealer = self.previous.as_ref().unwrap_or(&self.key);
            let bytes = match fsx::read_bounded(log, super::MAX_LOG_LEN) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let before = usize::try_from(seq.saturating_sub(1)).unwrap_or(usize::MAX);
            let broken = match check_log(sealer, &old, &bytes, before) {
                Ok(()) => None,
                Err(problem) => Some(match &old {
                    HeadFile::Found(head, _) if head.broken.is_some() => problem,
                    _ => format!("before line {seq}: {problem}"),
                }),
            };
            (
                old.generation().max(self.generation),
                self.broken.clone().or(broken),
            )
        };
        Head::new(seq, text, generation, broken).write(&self.key, &self.head, &self.head_temp)
    }
}

/// Checks the log against its head: the sealed line is there unchanged (so nothing
/// before it was cut or edited), and every later line is sealed or a failed unlock.
/// `Err` says what is wrong.
/// Only the first `limit` lines are looked at.
pub(crate) fn check_log(
    key: &AuditKey,
    head: &HeadFile,
    log: &[u8],
    limit: usize,
) -> Result<(), String> {
    let (head, _) = match head {
        HeadFile::Missing => {
            return if lines(log).take(limit).any(has_mac) {
                Err("the audit head keys/audit.head was removed".into())
            } else {
                Ok(())
            };
        }
        HeadFile::Garbled => return Err("the audit head keys/audit.head is garbled".into()),
        HeadFile::Found(found, text) => {
            if key.check(text) != Some(true) {
                return Err("the audit head does not authenticate with this keystore's key".into());
            }
            (found, text)
        }
    };
    if let Some(broken) = &head.broken {
        return Err(broken.clone());
    }
    let seq = usize::try_from(head.seq).unwrap_or(usize::MAX);
    let sealed = seq
        .checked_sub(1)
        .filter(|i| *i < limit)
        .and_then(|i| lines(log).nth(i))
        .is_some_and(|line| blake3::hash(line).to_hex().as_str() == head.line);
    if !sealed {
        return Err(format!(
            "line {seq}, sealed by the audit head, is missing or changed: lines were cut off or edited"
        ));
    }
    for (i, line) in lines(log).enumerate().take(limit).skip(seq) {
        let ok = match key.check(line) {
            Some(ok) => ok,
            None => written_without_key(line),
        };
        if !ok {
            return Err(format!(
                "line {} was added or changed without the keystore's key",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Operations whose successful line is sealed into the keystore as its anchor (the
/// keystore's own changes).
const CHANGES: [&str; 13] = [
    "init",
    "rotate",
    "revoke",
    "destroy",
    "passwd",
    "slot-add",
    "slot-remove",
    "policy",
    "import-legacy",
    "restore",
    "recover",
    "rekey",
    "accept-rollback",
];

/// The first line after `anchor_seq` that records, sealed under `key`, a successful
/// change of the keystore: the keystore is older than the log (an old copy put back).
pub(crate) fn later_change(key: &AuditKey, log: &[u8], anchor_seq: u64) -> Option<u64> {
    let skip = usize::try_from(anchor_seq).unwrap_or(usize::MAX);
    lines(log)
        .enumerate()
        .skip(skip)
        .filter(|(_, line)| key.check(line) == Some(true))
        .filter_map(|(i, line)| {
            let record = serde_json::from_slice::<AuditRecord>(line).ok()?;
            (record.outcome == "ok" && CHANGES.contains(&record.op.as_str()))
                .then_some(i as u64 + 1)
        })
        .next()
}
