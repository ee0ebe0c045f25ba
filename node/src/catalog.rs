//! The catalog: the files this node has put, with what it needs to get them back fast
//! (the manifest and where each stripe's shards went). Kept in the `catalog` and `files`
//! column families. [`snapshot`] is the catalog as backup bundles carry it.

use std::sync::{Arc, Mutex};

use datamesh_core::{FileId, Manifest, TOTAL_SHARDS};
use libp2p::PeerId;
use rocksdb::DB;
use serde::{Deserialize, Serialize};

use crate::db::{CF_CATALOG, CF_FILES, DbError, cf};
use crate::fifo::FifoMap;

pub mod snapshot;

const MANIFEST_PREFIX: u8 = b'm';
const PLACEMENT_PREFIX: u8 = b'p';

/// One file this node has put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The file id.
    pub id: FileId,
    /// Name given at put time.
    pub name: String,
    /// Plaintext bytes.
    pub size: u64,
    /// Stripes.
    pub stripes: u64,
    /// Put time, seconds since the Unix epoch.
    pub created: u64,
    /// Other people's public keys (hex) the data key is also wrapped to.
    pub shared_with: Vec<String>,
    /// Sequence number of the newest key envelope this node published.
    pub envelope_sequence: u64,
}

/// Where the shards of each stripe were placed at put time: a hint for readers, checked
/// against the manifest's shard ids like everything else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Every peer that holds something of the file.
    pub peers: Vec<Vec<u8>>,
    /// Per stripe, per shard index, an index into `peers`.
    pub stripes: Vec<[u16; 6]>,
}

impl Placement {
    /// Builds a placement from per-stripe peer ids.
    pub fn from_stripes(stripes: &[[PeerId; 6]]) -> Self {
        let mut peers: Vec<PeerId> = Vec::new();
        let mut out = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            let mut row = [0u16; 6];
            for (slot, peer) in row.iter_mut().zip(stripe) {
                let index = peers.iter().position(|p| p == peer).unwrap_or_else(|| {
                    peers.push(*peer);
                    peers.len() - 1
                });
                *slot = index as u16;
            }
            out.push(row);
        }
        Self {
            peers: peers.iter().map(|p| p.to_bytes()).collect(),
            stripes: out,
        }
    }

    /// The peer of shard `index` of stripe `stripe`, if recorded and valid.
    pub fn holder(&self, stripe: u64, index: usize) -> Option<PeerId> {
        let row = self.stripes.get(stripe as usize)?;
        let peer = self.peers.get(usize::from(*row.get(index)?))?;
        PeerId::from_bytes(peer).ok()
    }

    /// Each peer that holds a shard of the first `stripes` stripes, with the positions
    /// of its shards (`stripe * TOTAL_SHARDS + index`, ascending). Each peer's id is
    /// parsed once, where [`Self::holder`] parses it per shard: asking the holders of a
    /// 1 GiB file, that was 6,144 parses and as many hashes of a `PeerId` into a map
    /// (benches/PROFILE.md, session 32). A peer whose id does not parse is left out.
    pub fn positions_by_peer(&self, stripes: usize) -> Vec<(PeerId, Vec<usize>)> {
        let mut positions: Vec<Vec<usize>> = vec![Vec::new(); self.peers.len()];
        for (stripe, row) in self.stripes.iter().take(stripes).enumerate() {
            for (index, &peer) in row.iter().enumerate() {
                if let Some(list) = positions.get_mut(usize::from(peer)) {
                    list.push(stripe * TOTAL_SHARDS + index);
                }
            }
        }
        self.peers
            .iter()
            .zip(positions)
            .filter(|(_, list)| !list.is_empty())
            .filter_map(|(peer, list)| Some((PeerId::from_bytes(peer).ok()?, list)))
            .collect()
    }

    /// Every distinct peer.
    pub fn peers(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter_map(|p| PeerId::from_bytes(p).ok())
            .collect()
    }
}

/// A catalog failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// RocksDB failed, or the blocking task running a catalog operation did.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored row does not decode (or a manifest does not hash to its file id).
    #[error("the catalog's {row} of file {id} is damaged")]
    Damaged {
        /// The file.
        id: FileId,
        /// Which of its rows.
        row: CatalogRow,
    },
    /// A `catalog` row whose key is not a file id.
    #[error("the catalog has a row whose key is not a file id ({} bytes)", key.len())]
    BadKey {
        /// The row key.
        key: Vec<u8>,
    },
}

/// The rows the catalog keeps per file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogRow {
    /// The [`CatalogEntry`].
    Entry,
    /// The manifest.
    Manifest,
    /// The [`Placement`].
    Placement,
}

impl std::fmt::Display for CatalogRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Entry => "entry",
            Self::Manifest => "manifest",
            Self::Placement => "placement",
        })
    }
}

impl From<rocksdb::Error> for CatalogError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Db(DbError::Rocks(e))
    }
}

impl From<tokio::task::JoinError> for CatalogError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Db(DbError::Task(e))
    }
}

/// The node's own files.
#[derive(Clone, Debug)]
pub struct Catalog {
    db: Arc<DB>,
    parsed: Arc<Mutex<Parsed>>,
}

/// Most stripes of the manifests [`Parsed`] keeps (about 1.5 MB of shard ids: eight
/// 1 GiB files, or 1,024 small ones at most).
const PARSED_STRIPES: usize = 8192;

/// Most manifests [`Parsed`] keeps, whatever their size.
const PARSED_MANIFESTS: usize = 1024;

/// The manifests [`Catalog::manifest`] read lately, parsed. A manifest never changes (a
/// file id is the hash of its manifest), and parsing it is most of what reading it costs:
/// each stripe's six ids go through serde a byte at a time, and the canonical check
/// writes them again (0.5 ms of a gateway's CPU for a 1 GiB file, 7% of opening it;
/// benches/PROFILE.md, session 32). A reader that opens a file again, as a player's range
/// requests do, skips that. Bounded by [`PARSED_STRIPES`] and [`PARSED_MANIFESTS`], the
/// oldest forgotten first; a removed file's is forgotten with it, and a manifest read
/// while some file was being removed is not kept (`removals`), so a read racing the
/// removal of its own file cannot bring it back.
#[derive(Debug)]
struct Parsed {
    /// At most as many as the map was made for.
    manifests: FifoMap<FileId, Manifest>,
    /// The stripes of the manifests kept, at most `most_stripes`.
    stripes: usize,
    most_stripes: usize,
    /// Files removed so far.
    removals: u64,
}

impl Default for Parsed {
    fn default() -> Self {
        Self::new(PARSED_MANIFESTS, PARSED_STRIPES)
    }
}

impl Parsed {
    fn new(most_manifests: usize, most_stripes: usize) -> Self {
        Self {
            manifests: FifoMap::new(most_manifests),
            stripes: 0,
            most_stripes,
            removals: 0,
        }
    }

    fn get(&self, id: &FileId) -> Option<Manifest> {
        self.manifests.get(id).cloned()
    }

    /// Keeps `manifest`, read from the database when [`Self::removals`] was `removals`:
    /// not if a file was removed since (it may have been this one).
    fn insert(&mut self, id: FileId, manifest: Manifest, removals: u64) {
        let stripes = manifest.stripes().len();
        if removals != self.removals
            || stripes > self.most_stripes
            || self.manifests.get(&id).is_some()
        {
            return;
        }
        // Room made here, so that the stripe count follows every manifest that leaves.
        while self.manifests.is_full() || self.stripes + stripes > self.most_stripes {
            if !self.pop_oldest() {
                break;
            }
        }
        self.stripes += stripes;
        self.manifests.insert(id, manifest);
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((_, oldest)) = self.manifests.pop_oldest() else {
            return false;
        };
        self.stripes -= oldest.stripes().len();
        true
    }

    fn remove(&mut self, id: &FileId) {
        self.removals += 1;
        if let Some(gone) = self.manifests.remove(id) {
            self.stripes -= gone.stripes().len();
        }
    }
}

fn key(prefix: u8, id: &FileId) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(id.as_bytes());
    k
}

impl Catalog {
    /// The catalog of a database opened with [`crate::db::open`].
    pub fn new(db: Arc<DB>) -> Self {
        Self {
            db,
            parsed: Arc::default(),
        }
    }

    fn parsed(&self) -> std::sync::MutexGuard<'_, Parsed> {
        // A panic while holding the lock leaves a whole map; the stripe count is only
        // ever changed beside the map's own change.
        self.parsed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a file (entry, manifest and placement) in one synced write.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub fn add(
        &self,
        entry: &CatalogEntry,
        manifest: &Manifest,
        placement: &Placement,
    ) -> Result<(), CatalogError> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(
            cf(&self.db, CF_CATALOG)?,
            entry.id.as_bytes(),
            encode(entry),
        );
        batch.put_cf(
            cf(&self.db, CF_FILES)?,
            key(MANIFEST_PREFIX, &entry.id),
            manifest.to_bytes(),
        );
        batch.put_cf(
            cf(&self.db, CF_FILES)?,
            key(PLACEMENT_PREFIX, &entry.id),
            encode(placement),
        );
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        Ok(())
    }

    /// Replaces a file's entry (after a rewrap or a share).
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub fn update(&self, entry: &CatalogEntry) -> Result<(), CatalogError> {
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.put_cf_opt(
            cf(&self.db, CF_CATALOG)?,
            entry.id.as_bytes(),
            encode(entry),
            &sync,
        )?;
        Ok(())
    }

    /// Replaces a file's placement (after a repair moved shards).
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub fn set_placement(&self, id: &FileId, placement: &Placement) -> Result<(), CatalogError> {
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.put_cf_opt(
            cf(&self.db, CF_FILES)?,
            key(PLACEMENT_PREFIX, id),
            encode(placement),
            &sync,
        )?;
        Ok(())
    }

    /// Forgets a file (entry, manifest and placement) in one synced write: after a
    /// re-encryption replaced it. Forgetting a file that is not there does nothing.
    ///
    /// # Errors
    /// [`CatalogError::Db`].
    pub fn remove(&self, id: &FileId) -> Result<(), CatalogError> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(cf(&self.db, CF_CATALOG)?, id.as_bytes());
        batch.delete_cf(cf(&self.db, CF_FILES)?, key(MANIFEST_PREFIX, id));
        batch.delete_cf(cf(&self.db, CF_FILES)?, key(PLACEMENT_PREFIX, id));
        let mut sync = rocksdb::WriteOptions::default();
        sync.set_sync(true);
        self.db.write_opt(batch, &sync)?;
        self.parsed().remove(id);
        Ok(())
    }

    /// Every file, in id order.
    ///
    /// # Errors
    /// [`CatalogError::Db`] or [`CatalogError::Damaged`].
    pub fn list(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut out = Vec::new();
        for row in self
            .db
            .iterator_cf(cf(&self.db, CF_CATALOG)?, rocksdb::IteratorMode::Start)
        {
            let (k, v) = row?;
            let id = <[u8; 32]>::try_from(&k[..])
                .map(FileId::from_bytes)
                .map_err(|_| CatalogError::BadKey { key: k.to_vec() })?;
            out.push(postcard::from_bytes(&v).map_err(|_| damaged(id, CatalogRow::Entry))?);
        }
        Ok(out)
    }

    /// The entry of one file.
    ///
    /// # Errors
    /// [`CatalogError::Db`] or [`CatalogError::Damaged`].
    pub fn get(&self, id: &FileId) -> Result<Option<CatalogEntry>, CatalogError> {
        self.db
            .get_pinned_cf(cf(&self.db, CF_CATALOG)?, id.as_bytes())?
            .map(|v| postcard::from_bytes(&v).map_err(|_| damaged(*id, CatalogRow::Entry)))
            .transpose()
    }

    /// The manifest of a file this node put, if it did.
    ///
    /// # Errors
    /// [`CatalogError::Db`] or [`CatalogError::Damaged`].
    pub fn manifest(&self, id: &FileId) -> Result<Option<Manifest>, CatalogError> {
        let removals = {
            let parsed = self.parsed();
            if let Some(manifest) = parsed.get(id) {
                return Ok(Some(manifest));
            }
            parsed.removals
        };
        let Some(bytes) = self
            .db
            .get_pinned_cf(cf(&self.db, CF_FILES)?, key(MANIFEST_PREFIX, id))?
        else {
            return Ok(None);
        };
        if datamesh_core::FileId::of_manifest(&bytes) != *id {
            return Err(damaged(*id, CatalogRow::Manifest));
        }
        let manifest =
            Manifest::from_bytes(&bytes).map_err(|_| damaged(*id, CatalogRow::Manifest))?;
        self.parsed().insert(*id, manifest.clone(), removals);
        Ok(Some(manifest))
    }

    /// The placement recorded at put time (or at the last repair).
    ///
    /// # Errors
    /// [`CatalogError::Db`] or [`CatalogError::Damaged`].
    pub fn placement(&self, id: &FileId) -> Result<Option<Placement>, CatalogError> {
        self.db
            .get_pinned_cf(cf(&self.db, CF_FILES)?, key(PLACEMENT_PREFIX, id))?
            .map(|v| postcard::from_bytes(&v).map_err(|_| damaged(*id, CatalogRow::Placement)))
            .transpose()
    }
}

fn damaged(id: FileId, row: CatalogRow) -> CatalogError {
    CatalogError::Damaged { id, row }
}

/// postcard encoding of a row (serialising plain structs into a Vec cannot fail).
fn encode<T: Serialize>(row: &T) -> Vec<u8> {
    postcard::to_stdvec(row).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datamesh_core::{
        AuthorityKey, AuthorityRoot, AuthoritySalt, EncodeOptions, EncodedFile, Encoder,
        SegmentSize,
    };

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A file of `stripes` stripes of 64 KiB segments, encoded.
    fn file_of(stripes: usize, fill: u8) -> Result<EncodedFile, Box<dyn std::error::Error>> {
        let bytes = vec![fill; stripes * SegmentSize::MIN.bytes()];
        let options = EncodeOptions::new("f").with_segment_size(SegmentSize::MIN);
        let mut encoder = Encoder::new(&bytes[..], options);
        for stripe in encoder.by_ref() {
            stripe?;
        }
        let root = AuthorityRoot::from_bytes(&[1; 32]);
        let authority = AuthorityKey::derive(&root, &AuthoritySalt::random())?;
        Ok(encoder.finish(authority.file_authority())?)
    }

    fn entry_of(file: &EncodedFile) -> CatalogEntry {
        CatalogEntry {
            id: file.file_id,
            name: "f".into(),
            size: 1,
            stripes: file.manifest.stripe_count(),
            created: 1,
            shared_with: Vec::new(),
            envelope_sequence: 1,
        }
    }

    /// A manifest read once is parsed once: read again it is the same even with its row
    /// gone from under the catalog (a manifest never changes), and removing the file
    /// forgets it.
    #[test]
    fn a_manifest_is_parsed_once_and_forgotten_with_its_file() -> TestResult {
        let dir = tempfile::tempdir()?;
        let db = crate::db::open(dir.path())?;
        let catalog = Catalog::new(Arc::clone(&db));
        let file = file_of(2, 7)?;
        catalog.add(&entry_of(&file), &file.manifest, &Placement::default())?;
        assert_eq!(
            catalog.manifest(&file.file_id)?,
            Some(file.manifest.clone())
        );
        db.delete_cf(cf(&db, CF_FILES)?, key(MANIFEST_PREFIX, &file.file_id))?;
        assert_eq!(
            catalog.manifest(&file.file_id)?,
            Some(file.manifest.clone())
        );
        catalog.remove(&file.file_id)?;
        assert_eq!(catalog.manifest(&file.file_id)?, None);
        assert_eq!(catalog.parsed().stripes, 0);
        Ok(())
    }

    /// The manifests kept never hold more stripes, or are more, than the bounds; the
    /// oldest go first, and one larger than the whole bound is not kept.
    #[test]
    fn parsed_manifests_stay_within_their_bounds() -> TestResult {
        let files: Vec<EncodedFile> = (0..4).map(|n| file_of(2, n)).collect::<Result<_, _>>()?;
        let mut parsed = Parsed::new(3, 5);
        for file in &files[..2] {
            parsed.insert(file.file_id, file.manifest.clone(), 0);
        }
        assert_eq!((parsed.stripes, parsed.manifests.len()), (4, 2));
        parsed.insert(files[2].file_id, files[2].manifest.clone(), 0);
        assert_eq!((parsed.stripes, parsed.manifests.len()), (4, 2));
        assert!(
            parsed.get(&files[0].file_id).is_none(),
            "the oldest went first"
        );
        assert!(parsed.get(&files[2].file_id).is_some());
        parsed.insert(files[2].file_id, files[2].manifest.clone(), 0);
        assert_eq!(parsed.stripes, 4, "a repeat changes nothing");
        let large = file_of(6, 9)?;
        parsed.insert(large.file_id, large.manifest.clone(), 0);
        assert!(parsed.get(&large.file_id).is_none());
        assert_eq!(parsed.stripes, 4);

        let mut few = Parsed::new(2, 100);
        for file in &files {
            few.insert(file.file_id, file.manifest.clone(), 0);
        }
        assert_eq!((few.stripes, few.manifests.len()), (4, 2));
        assert!(few.get(&files[3].file_id).is_some());
        Ok(())
    }

    /// A manifest read before a removal and offered after it is not kept: the removal
    /// may have been of its own file, which the read would otherwise bring back.
    #[test]
    fn a_manifest_read_across_a_removal_is_not_kept() -> TestResult {
        let (file, other) = (file_of(1, 1)?, file_of(1, 2)?);
        let mut parsed = Parsed::default();
        let removals = parsed.removals;
        parsed.remove(&other.file_id);
        parsed.insert(file.file_id, file.manifest.clone(), removals);
        assert!(parsed.get(&file.file_id).is_none());
        parsed.insert(file.file_id, file.manifest.clone(), parsed.removals);
        assert!(parsed.get(&file.file_id).is_some());
        Ok(())
    }

    /// Each peer gets exactly the positions [`Placement::holder`] names it at, within the
    /// stripes asked about (none past the placement's own); a stored id that does not
    /// parse, or an index past the peer table, names no one, as with `holder`.
    #[test]
    fn positions_by_peer_name_what_holder_names() {
        let p: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let rows = [
            [p[0], p[1], p[2], p[3], p[0], p[1]],
            [p[2], p[3], p[0], p[1], p[2], p[3]],
            [p[1]; TOTAL_SHARDS],
        ];
        let mut placement = Placement::from_stripes(&rows);
        placement.peers.push(b"not a peer id".to_vec());
        placement.stripes.push([4, 0, 4, 0, 9, 3]);
        for stripes in [0, 1, 3, 4, 9] {
            let mut expected: BTreeMap<PeerId, Vec<usize>> = BTreeMap::new();
            for i in 0..stripes.min(placement.stripes.len()) * TOTAL_SHARDS {
                if let Some(peer) = placement.holder((i / TOTAL_SHARDS) as u64, i % TOTAL_SHARDS) {
                    expected.entry(peer).or_default().push(i);
                }
            }
            let got: BTreeMap<PeerId, Vec<usize>> =
                placement.positions_by_peer(stripes).into_iter().collect();
            assert_eq!(got, expected, "{stripes} stripes");
        }
        assert_eq!(placement.positions_by_peer(4).len(), 4);
    }
}
