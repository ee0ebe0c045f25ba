//! Storing, listing and re-wrapping files: `/v1/files`, `/v1/rewrap`, `/v1/key-usage`.

use serde::{Deserialize, Serialize};

/// What `POST /v1/files` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResult {
    /// The file id (text form, `dm1…`).
    pub id: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes.
    pub stripes: u64,
    /// Distinct peers holding shards.
    pub peers: usize,
    /// Manifest copies stored.
    pub manifest_copies: usize,
    /// Remote holders that kept the key envelope (at least 3, or the put fails).
    pub envelope_copies: usize,
    /// Stripes an interrupted put of the same session had placed, not sent again
    /// (`?session=`; 0 otherwise, and from nodes that predate resumable puts).
    #[serde(default)]
    pub resumed_stripes: u64,
}

/// One catalog entry, as `GET /v1/files` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFile {
    /// The file id (text form).
    pub id: String,
    /// Name given at put time.
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes.
    pub stripes: u64,
    /// Put time, seconds since the Unix epoch.
    pub created: u64,
}

/// One file re-wrapped: what `POST /v1/files/{id}/envelope` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapReport {
    /// The file id (text form).
    pub id: String,
    /// The new envelope's sequence number.
    pub sequence: u64,
    /// Keys the data key is now wrapped to.
    pub recipients: usize,
    /// Peers that accepted the new envelope.
    pub peers: usize,
    /// Bytes sent: envelopes only, no shard moves.
    pub bytes_sent: u64,
}

/// A file `POST /v1/rewrap` could not re-wrap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapFailure {
    /// The file id (text form).
    pub id: String,
    /// The node's one-line reason.
    pub error: String,
}

/// What `POST /v1/rewrap` answers: every file of the catalog, re-wrapped or failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewrapAll {
    /// Files re-wrapped.
    pub rewrapped: Vec<RewrapReport>,
    /// Files that could not be.
    pub failed: Vec<RewrapFailure>,
}

/// One file re-encrypted: what `POST /v1/files/{id}/reencrypt` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReencryptReport {
    /// The file it replaced (text form), gone from the catalog.
    pub old: String,
    /// The new file (text form): a fresh data key, new shards.
    pub new: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes of the new file.
    pub stripes: u64,
    /// Old shard and manifest copies whose holders confirmed the delete.
    pub released: u64,
    /// Old copies whose delete failed or went unanswered.
    pub release_failures: u64,
}

/// One file removed by its owner: what `POST /v1/files/{id}/remove` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveReport {
    /// The file id (text form), gone from the catalog.
    pub id: String,
    /// Peers asked to drop it (every possible holder found).
    pub asked: u64,
    /// Peers that confirmed.
    pub confirmed: u64,
    /// Peers that refused or did not answer (their copies end with their lease).
    pub failed: u64,
}

/// One row of `GET /v1/key-usage`: which of the node's keys open a file of its catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// The file id (text form).
    pub id: String,
    /// Key ids (hex) of the node's keys that open it; empty when none does.
    pub keys: Vec<String>,
}

/// A put's body of at most this many bytes is read whole by the node before it answers,
/// so a refusal of such a put (the recipient policy) reaches the client as the answer,
/// never as a connection reset under its upload: a client need not ask
/// `POST /v1/recipients/check` before sending it.
pub const PUT_READ_WHOLE: usize = 64 << 10;

/// The response header of `GET /v1/files/{id}` that carries the stored name,
/// percent-encoded ([`encode_name`]).
pub const NAME_HEADER: &str = "x-datamesh-name";

/// The response header of `GET /v1/files/{id}` with the file's modification time as
/// sealed in its metadata (seconds since the Unix epoch), when it has one.
pub const MTIME_HEADER: &str = "x-datamesh-mtime";

/// The response header of `GET /v1/files/{id}` with the BLAKE3 of the whole file (64 hex,
/// from its sealed metadata): what a client that assembles the file from ranges (a
/// resumed get) checks the result against.
pub const BLAKE3_HEADER: &str = "x-datamesh-blake3";

/// The response header of `GET /v1/files/{id}` with the whole file's length, also on a
/// range answer (whose `Content-Length` is the range's).
pub const FILE_SIZE_HEADER: &str = "x-datamesh-size";

/// The response header of `GET /v1/files/{id}` with the file's segment size in bytes (a
/// resumed get restarts at a segment boundary).
pub const SEGMENT_SIZE_HEADER: &str = "x-datamesh-segment-size";

/// Parses an HTTP `Range` header value of one range, `bytes=START-END` (END inclusive),
/// `bytes=START-` (to the end) or `bytes=-N` (the last N bytes), against a file of `len`
/// bytes: `(start, last)` inclusive, or a one-line reason. Several ranges are refused.
pub fn parse_range(value: &str, len: u64) -> Result<(u64, u64), String> {
    let bad = || format!("Range {value:?}: use bytes=START-END (one range, END inclusive)");
    let spec = value.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(format!("Range {value:?}: only one range at a time"));
    }
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (false, false) => Ok((number(start)?, number(end)?)),
        (false, true) => Ok((number(start)?, len.saturating_sub(1).max(number(start)?))),
        (true, false) => {
            let n = number(end)?;
            if n == 0 || len == 0 {
                return Err(format!("Range {value:?}: no bytes asked for"));
            }
            Ok((len.saturating_sub(n), len - 1))
        }
        (true, true) => Err(bad()),
    }
}

/// Percent-encodes everything but unreserved ASCII, so any name fits in a header.
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_name`]; a malformed escape stays as it is, invalid UTF-8 is replaced.
pub fn decode_name(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_the_header() {
        for name in ["plain.txt", "with space & ümlaut/..", "%41", "", "100%"] {
            let encoded = encode_name(name);
            assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded}");
            assert_eq!(decode_name(&encoded), name);
        }
        assert_eq!(decode_name("100%"), "100%");
    }

    #[test]
    fn ranges_parse_as_http_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-1000", 100), Ok((0, 99)));
        // Past the end: parsed here, refused against the file by the node.
        assert_eq!(parse_range("bytes=200-", 100), Ok((200, 200)));
        for bad in [
            "0-9",
            "bytes=a-b",
            "bytes=-",
            "bytes=0-1,5-6",
            "bytes=-0",
            "items=0-1",
        ] {
            assert!(parse_range(bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn put_result_has_the_wire_field_names() -> Result<(), serde_json::Error> {
        let put = PutResult {
            id: "dm1x".into(),
            size: 5,
            stripes: 1,
            peers: 6,
            manifest_copies: 3,
            envelope_copies: 3,
            resumed_stripes: 0,
        };
        let json = serde_json::to_value(&put)?;
        assert_eq!(
            json,
            serde_json::json!({"id": "dm1x", "size": 5, "stripes": 1, "peers": 6, "manifest_copies": 3, "envelope_copies": 3, "resumed_stripes": 0})
        );
        assert_eq!(serde_json::from_value::<PutResult>(json)?, put);
        Ok(())
    }
}
