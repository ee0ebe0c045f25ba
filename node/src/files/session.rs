//! Resumable puts: what the node that encrypts a put keeps so that an interrupted put
//! (client killed, node restarted, network lost) resumes with the same data key, the
//! same stripes, and without sending again the shards its holders acknowledged.
//!
//! One file per session, `<data dir>/put-sessions/<32 hex>.put` (folder 0700, file 0600;
//! docs/format.md, "Put session"): a header, then records appended as the put goes.
//!
//! ```text
//! file   = "datamesh put v1\n" (16 bytes) || record*
//! record = len (u32 LE, at most 4096) || postcard(Record) || BLAKE3(postcard)[..8]
//! ```
//!
//! * `Header` (first): the session id, the segment size, and the data key **wrapped to
//!   the owner's own recipient key** (the active file-encryption key of the keystore:
//!   only the keystore opens it), together with the session id, so a header copied to
//!   another session does not open there. No plaintext key is ever written.
//! * `Stripe`: the six shard ids of a stripe, written and synced **before** any of its
//!   shards is sent. A resumed put re-encodes the input under the same key; every stripe
//!   with such a record must come out with the same ids, checked before anything of it
//!   is sent, or the put ends ([`super::PutError::SourceChanged`]): a (key, nonce) pair
//!   never seals two different plaintexts that could both have left the node.
//! * `Held`: a blob (shard or manifest copy) a peer acknowledged. A stripe whose six
//!   shards are held is not sent again; on completion the copies the final file does not
//!   use are deleted, and an expired session deletes them all (under the session's claim,
//!   so a put resuming it at that moment waits and then starts afresh).
//!
//! A torn last record (a crash mid-append) ends the log: what it described is sent again.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use datamesh_core::{DataKey, KEY_LEN, Recipient, RecipientKind, ShardId, TOTAL_SHARDS};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::engine::FileKeys;

/// How long an interrupted put's state is kept after its last write; then the next put
/// (or the node's start) deletes what it placed and the state.
pub const PUT_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Interrupted puts kept at once; a new resumable put beyond is refused.
pub const MAX_PUT_SESSIONS: usize = 64;
const MAGIC: &[u8; 16] = b"datamesh put v1\n";
const MAX_RECORD_LEN: usize = 4096;
const CHECK_LEN: usize = 8;

/// The id of a resumable put, chosen by the client: 16 random bytes, 32 lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PutSession([u8; 16]);

impl FromStr for PutSession {
    type Err = SessionError;

    fn from_str(text: &str) -> Result<Self, SessionError> {
        let bad = || SessionError::BadId(text.chars().take(40).collect());
        if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let bytes = data_encoding::HEXLOWER
            .decode(text.as_bytes())
            .map_err(|_| bad())?;
        Ok(Self(<[u8; 16]>::try_from(bytes).map_err(|_| bad())?))
    }
}

impl std::fmt::Display for PutSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

/// A put session's state could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Not a session id.
    #[error("put session {0:?} is not 32 lowercase hex digits")]
    BadId(String),
    /// The state file could not be read or written.
    #[error("put session state {path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The state file is not one this build wrote for this session.
    #[error(
        "put session state {path} is damaged or not of this session ({reason}); the put starts over if it is removed"
    )]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The session was begun under another name or mtime: its metadata would be sealed
    /// twice under one key and nonce.
    #[error(
        "put session state {0} was begun under another name or mtime: put the file as before, or remove that state to put it anew"
    )]
    OtherMetadata(PathBuf),
    /// No key of the keystore opens the state's data key (the key version that wrapped
    /// it was destroyed).
    #[error("put session state {0}: no key of the keystore opens its data key")]
    NoKey(PathBuf),
    /// Too many interrupted puts are kept.
    #[error(
        "{MAX_PUT_SESSIONS} interrupted puts are kept already: finish one (run it again) or wait for them to expire"
    )]
    TooMany,
    /// A resumable put without an mtime (each attempt would seal another put time).
    #[error("a resumable put needs the file's mtime (?mtime=)")]
    NoMtime,
    /// The node keeps no put sessions (no data folder for them).
    #[error("this node keeps no put sessions")]
    Disabled,
}

#[derive(Serialize, Deserialize)]
enum Record {
    Header {
        session: [u8; 16],
        segment_size: u64,
        /// BLAKE3 of the name and mtime the metadata is sealed with.
        metadata: [u8; 32],
        /// 0 classical, 1 hybrid.
        kind: u8,
        wrapped: Vec<u8>,
    },
    Stripe {
        index: u64,
        ids: [[u8; 32]; TOTAL_SHARDS],
    },
    Held {
        peer: Vec<u8>,
        id: [u8; 32],
    },
}

/// One stripe a session wrote ahead, and who acknowledged which of its shards.
#[derive(Clone, Debug)]
pub(crate) struct KnownStripe {
    pub(crate) ids: [ShardId; TOTAL_SHARDS],
    pub(crate) holders: [Option<PeerId>; TOTAL_SHARDS],
}

/// What a session knew (nothing yet when it was just started).
pub(crate) struct Resumed {
    pub(crate) key: DataKey,
    pub(crate) stripes: HashMap<u64, KnownStripe>,
    /// Every blob a peer acknowledged for this session, in any attempt.
    pub(crate) held: Vec<(PeerId, ShardId)>,
    /// The session existed (false: started now, with a fresh key).
    pub(crate) existing: bool,
}

/// The folder of a node's put sessions.
#[derive(Clone, Debug)]
pub(crate) struct Sessions {
    dir: PathBuf,
}

/// An open session: appends records.
#[derive(Debug)]
pub(crate) struct SessionLog {
    path: PathBuf,
    file: Mutex<File>,
}

fn frame(record: &Record) -> Vec<u8> {
    // Byte arrays, integers and vectors always serialise.
    let body = postcard::to_stdvec(record).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len() + CHECK_LEN);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&ShardId::of(&body).as_bytes()[..CHECK_LEN]);
    out
}

/// The next record of `reader` and its length on disk: `None` at the end or at a torn or
/// damaged tail.
fn next_record(reader: &mut impl Read) -> Option<(Record, u64)> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).ok()?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_RECORD_LEN {
        return None;
    }
    let mut body = vec![0u8; len + CHECK_LEN];
    reader.read_exact(&mut body).ok()?;
    let (body, check) = body.split_at(len);
    if ShardId::of(body).as_bytes()[..CHECK_LEN] != *check {
        return None;
    }
    let record = postcard::from_bytes(body).ok()?;
    Some((record, (4 + len + CHECK_LEN) as u64))
}

fn kind_byte(kind: RecipientKind) -> u8 {
    match kind {
        RecipientKind::Hybrid => 1,
        _ => 0,
    }
}

impl Sessions {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, session: PutSession) -> PathBuf {
        self.dir.join(format!("{session}.put"))
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> SessionError + '_ {
        move |source| SessionError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The session files kept, each with its last write.
    fn list(&self) -> Vec<(PutSession, PathBuf, SystemTime)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let session = name.strip_suffix(".put")?.parse().ok()?;
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((session, e.path(), modified))
            })
            .collect()
    }

    /// Opens `session`, or starts it with a fresh data key wrapped to `owner` when it
    /// does not exist. Blocking.
    ///
    /// # Errors
    /// [`SessionError`].
    pub(crate) fn open(
        &self,
        session: PutSession,
        keys: &FileKeys,
        owner: &Recipient,
        segment_size: u64,
        metadata: [u8; 32],
    ) -> Result<(SessionLog, Resumed), SessionError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(Self::io(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
            .map_err(Self::io(&self.dir))?;
        let path = self.path(session);
        let existing = match File::open(&path) {
            Ok(file) => Self::read(&path, file, session, keys, (segment_size, metadata))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(SessionError::Io { path, source: e }),
        };
        if let Some((resumed, valid_len)) = existing {
            // Appends go after the last good record (a torn tail is cut).
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(Self::io(&path))?;
            file.set_len(valid_len).map_err(Self::io(&path))?;
            let log = SessionLog {
                path,
                file: Mutex::new(file),
            };
            return Ok((log, resumed));
        }
        if self.list().len() >= MAX_PUT_SESSIONS {
            return Err(SessionError::TooMany);
        }
        let key = DataKey::generate();
        let mut plain = Zeroizing::new(Vec::with_capacity(KEY_LEN + 16));
        plain.extend_from_slice(&key.to_bytes()[..]);
        plain.extend_from_slice(&session.0);
        let header = Record::Header {
            session: session.0,
            segment_size,
            metadata,
            kind: kind_byte(owner.kind()),
            wrapped: owner.wrap(&plain),
        };
        // A file without a whole header (a crash while it was written) is replaced:
        // nothing was sent under a key that was never on disk.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::io(&path))?;
        file.write_all(MAGIC)
            .and_then(|()| file.write_all(&frame(&header)))
            .and_then(|()| file.sync_all())
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .map_err(Self::io(&path))?;
        let log = SessionLog {
            path,
            file: Mutex::new(file),
        };
        let fresh = Resumed {
            key,
            stripes: HashMap::new(),
            held: Vec::new(),
            existing: false,
        };
        Ok((log, fresh))
    }

    /// An existing session's state and the length of its good records; `None` when the
    /// file holds no whole header.
    fn read(
        path: &Path,
        file: File,
        session: PutSession,
        keys: &FileKeys,
        (segment_size, metadata): (u64, [u8; 32]),
    ) -> Result<Option<(Resumed, u64)>, SessionError> {
        let damaged = |reason| SessionError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let mut reader = BufReader::new(file);
        let mut magic = [0u8; 16];
        if reader.read_exact(&mut magic).is_err() {
            return Ok(None);
        }
        if &magic != MAGIC {
            return Err(damaged("not a put session of this version"));
        }
        let Some((
            Record::Header {
                session: named,
                segment_size: size,
                metadata: sealed,
                kind,
                wrapped,
            },
            header_len,
        )) = next_record(&mut reader)
        else {
            return Ok(None);
        };
        let mut valid_len = MAGIC.len() as u64 + header_len;
        if named != session.0 {
            return Err(damaged("another session's header"));
        }
        if size != segment_size {
            return Err(damaged("another segment size"));
        }
        if sealed != metadata {
            return Err(SessionError::OtherMetadata(path.to_path_buf()));
        }
        let kind = match kind {
            1 => RecipientKind::Hybrid,
            _ => RecipientKind::Classical,
        };
        let plain = keys
            .unwrap_keys()
            .find_map(|k| k.unwrap_key(kind, &wrapped).ok())
            .ok_or_else(|| SessionError::NoKey(path.to_path_buf()))?;
        if plain.len() != KEY_LEN + 16 || plain[KEY_LEN..] != session.0 {
            return Err(damaged("a data key bound to another session"));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&plain[..KEY_LEN]);
        let key = DataKey::from_bytes(&key);
        let mut stripes: HashMap<u64, KnownStripe> = HashMap::new();
        let mut slots: HashMap<ShardId, (u64, usize)> = HashMap::new();
        let mut held = Vec::new();
        while let Some((record, len)) = next_record(&mut reader) {
            valid_len += len;
            match record {
                Record::Header { .. } => return Err(damaged("a second header")),
                Record::Stripe { index, ids } => {
                    let ids = ids.map(ShardId::from_bytes);
                    for (slot, id) in ids.iter().enumerate() {
                        slots.insert(*id, (index, slot));
                    }
                    stripes.insert(
                        index,
                        KnownStripe {
                            ids,
                            holders: [None; TOTAL_SHARDS],
                        },
                    );
                }
                Record::Held { peer, id } => {
                    let Ok(peer) = PeerId::from_bytes(&peer) else {
                        return Err(damaged("a peer id that does not parse"));
                    };
                    let id = ShardId::from_bytes(id);
                    if let Some((index, slot)) = slots.get(&id)
                        && let Some(stripe) = stripes.get_mut(index)
                        && stripe.holders[*slot].is_none()
                        && !stripe.holders.contains(&Some(peer))
                    {
                        stripe.holders[*slot] = Some(peer);
                    }
                    held.push((peer, id));
                }
            }
        }
        Ok(Some((
            Resumed {
                key,
                stripes,
                held,
                existing: true,
            },
            valid_len,
        )))
    }

    /// Removes a session's state.
    pub(crate) fn discard(&self, session: PutSession) {
        let _ = fs::remove_file(self.path(session));
    }

    /// The sessions not written to for [`PUT_SESSION_TTL`] at `now`.
    pub(crate) fn expired(&self, now: SystemTime) -> Vec<PutSession> {
        self.list()
            .into_iter()
            .filter(|(_, _, modified)| {
                now.duration_since(*modified).unwrap_or_default() >= PUT_SESSION_TTL
            })
            .map(|(session, _, _)| session)
            .collect()
    }

    /// Removes a session's state and gives the blobs it recorded as acknowledged (to
    /// delete). Blocking; the caller holds the session (no put of it runs).
    pub(crate) fn take(&self, session: PutSession) -> Vec<(PeerId, ShardId)> {
        let path = self.path(session);
        let mut blobs = Vec::new();
        if let Ok(file) = File::open(&path) {
            let mut reader = BufReader::new(file);
            let mut magic = [0u8; 16];
            if reader.read_exact(&mut magic).is_ok() && &magic == MAGIC {
                while let Some((record, _)) = next_record(&mut reader) {
                    if let Record::Held { peer, id } = record
                        && let Ok(peer) = PeerId::from_bytes(&peer)
                    {
                        blobs.push((peer, ShardId::from_bytes(id)));
                    }
                }
            }
        }
        let _ = fs::remove_file(&path);
        blobs
    }
}

impl SessionLog {
    fn append(&self, record: &Record, sync: bool) -> Result<(), SessionError> {
        let bytes = frame(record);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&bytes)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
            .map_err(|source| SessionError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Records a stripe's ids before any of its shards is sent (synced). Blocking.
    ///
    /// # Errors
    /// [`SessionError::Io`].
    pub(crate) fn write_ahead(
        &self,
        index: u64,
        ids: &[ShardId; TOTAL_SHARDS],
    ) -> Result<(), SessionError> {
        let ids = ids.map(|id| *id.as_bytes());
        self.append(&Record::Stripe { index, ids }, true)
    }

    /// Records a blob a peer acknowledged (not synced: a lost record only means the
    /// shard is sent again).
    pub(crate) fn held(&self, peer: PeerId, id: ShardId) {
        let record = Record::Held {
            peer: peer.to_bytes(),
            id: *id.as_bytes(),
        };
        if let Err(e) = self.append(&record, false) {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use datamesh_core::ecies::SecretKey;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn keys() -> FileKeys {
        use crate::files::Unlocked;
        let active = SecretKey::generate();
        let copy =
            SecretKey::from_bytes(&active.to_bytes()).unwrap_or_else(|_| SecretKey::generate());
        FileKeys {
            decrypt: vec![copy],
            active,
            hybrid: Vec::new(),
            p256: Vec::new(),
            authority: Vec::new(),
            unlocked: Unlocked::default(),
        }
    }

    #[test]
    fn a_session_resumes_its_key_stripes_and_holders_and_nothing_else() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sessions = Sessions::new(dir.path().join("s"));
        let keys = keys();
        let owner = Recipient::Classical(keys.active.public_key());
        let session: PutSession = "00112233445566778899aabbccddeeff".parse()?;
        let (log, first) = sessions.open(session, &keys, &owner, 1 << 20, [1; 32])?;
        assert!(!first.existing);
        let key = first.key;
        let ids: [ShardId; 6] = std::array::from_fn(|i| ShardId::of(&[i as u8]));
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        log.write_ahead(0, &ids)?;
        for (peer, id) in peers.iter().zip(ids) {
            log.held(*peer, id);
        }
        log.write_ahead(1, &ids.map(|i| ShardId::of(i.as_bytes())))?;
        drop(log);
        let mode = fs::metadata(sessions.path(session))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join("s"))?.permissions().mode() & 0o777,
            0o700
        );
        // The key is on disk only wrapped.
        let bytes = fs::read(sessions.path(session))?;
        assert!(!bytes.windows(KEY_LEN).any(|w| w == &key.to_bytes()[..]));

        let (_, again) = sessions.open(session, &keys, &owner, 1 << 20, [1; 32])?;
        assert!(again.existing);
        assert_eq!(again.key.to_bytes(), key.to_bytes());
        assert_eq!(again.stripes.len(), 2);
        let zero = &again.stripes[&0];
        assert_eq!(zero.ids, ids);
        assert!(zero.holders.iter().zip(&peers).all(|(h, p)| *h == Some(*p)));
        assert!(again.stripes[&1].holders.iter().all(Option::is_none));
        assert_eq!(again.held.len(), 6);

        // Another session's file under this name, another segment size, other keys, a
        // torn tail: refused or cut, never a panic.
        let other: PutSession = "ffeeddccbbaa99887766554433221100".parse()?;
        fs::copy(sessions.path(session), sessions.path(other))?;
        assert!(matches!(
            sessions.open(other, &keys, &owner, 1 << 20, [1; 32]),
            Err(SessionError::Damaged { .. })
        ));
        assert!(
            sessions
                .open(session, &keys, &owner, 1 << 16, [1; 32])
                .is_err()
        );
        assert!(matches!(
            sessions.open(session, &keys, &owner, 1 << 20, [2; 32]),
            Err(SessionError::OtherMetadata(_))
        ));
        assert!(matches!(
            sessions.open(session, &self::keys(), &owner, 1 << 20, [1; 32]),
            Err(SessionError::NoKey(_))
        ));
        let mut torn = fs::read(sessions.path(session))?;
        torn.truncate(torn.len() - 3);
        fs::write(sessions.path(session), &torn)?;
        let (log, cut) = sessions.open(session, &keys, &owner, 1 << 20, [1; 32])?;
        assert_eq!(cut.held.len(), 6);
        assert_eq!(cut.stripes.len(), 1, "the torn stripe record is cut");
        // What is appended after a torn tail is read again.
        log.held(PeerId::random(), ShardId::of(b"after"));
        drop(log);
        let (_, after) = sessions.open(session, &keys, &owner, 1 << 20, [1; 32])?;
        assert_eq!(after.held.len(), 7);
        // A file without a whole header starts afresh (nothing was sent under its key).
        fs::write(sessions.path(session), &MAGIC[..10])?;
        let (_, fresh) = sessions.open(session, &keys, &owner, 1 << 20, [1; 32])?;
        assert!(!fresh.existing);
        Ok(())
    }

    proptest::proptest! {
        /// Any bytes as a session file: resumed, started afresh or refused, never a panic.
        #[test]
        fn any_session_file_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let dir = tempfile::tempdir().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let sessions = Sessions::new(dir.path().to_path_buf());
            let keys = keys();
            let owner = Recipient::Classical(keys.active.public_key());
            let session: PutSession = "00112233445566778899aabbccddeeff".parse().map_err(|e: SessionError| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(&bytes);
            for content in [bytes.clone(), file] {
                fs::write(sessions.path(session), &content).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                let _ = sessions.open(session, &keys, &owner, 1 << 20, [1; 32]);
                let _ = sessions.take(session);
            }
        }
    }

    #[test]
    fn expired_sessions_give_their_blobs_and_go() -> TestResult {
        let dir = tempfile::tempdir()?;
        let sessions = Sessions::new(dir.path().to_path_buf());
        let keys = keys();
        let owner = Recipient::Classical(keys.active.public_key());
        let session: PutSession = "0123456789abcdef0123456789abcdef".parse()?;
        let (log, _) = sessions.open(session, &keys, &owner, 1 << 20, [1; 32])?;
        log.held(PeerId::random(), ShardId::of(b"x"));
        drop(log);
        assert!(sessions.expired(SystemTime::now()).is_empty());
        let later = SystemTime::now() + PUT_SESSION_TTL + Duration::from_secs(1);
        assert_eq!(sessions.expired(later), [session]);
        assert_eq!(sessions.take(session).len(), 1);
        assert!(!sessions.path(session).exists());
        assert!(sessions.expired(later).is_empty());
        for bad in [
            "",
            "0123",
            "0123456789ABCDEF0123456789ABCDEF",
            "../../../../etc/passwd0",
        ] {
            assert!(bad.parse::<PutSession>().is_err(), "{bad}");
        }
        Ok(())
    }
}
