//! What this holder can tell the network repair (`crate::check::network`) about the
//! manifests it holds: which files they are (a bounded page at a time, in id order, from
//! a cursor) and whether their owner renewed or stored them lately (then the owner is
//! looking after the file and the network repair defers).

use datamesh_core::{FileId, ShardId};

use super::{AUTHORITY_PREFIX, Server};
use crate::db::{CF_FILES, DbError, cf};
use crate::store::StoreError;

impl Server {
    /// At most `limit` file ids, in id order, after `after` (from the start if `None`),
    /// of manifests this node holds: those with a cached authority key whose blob is
    /// still here. The key is cached for every manifest a key envelope was sent for (put
    /// and repair send one to each manifest holder), every manifest a peer asked this node
    /// to announce, and the putter's own copy of its manifest (its own envelope): so every
    /// manifest holder another holder can find (a provider) looks after the file, and the
    /// nearest of them, to whom the others defer, never leaves it to nobody. Reads small rows only: at most `limit` authority rows kept,
    /// plus the rows of blobs found not to be manifests (empty rows), skipped.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn held_manifests(
        &self,
        after: Option<&FileId>,
        limit: usize,
    ) -> Result<Vec<FileId>, StoreError> {
        let files = cf(&self.db, CF_FILES)?;
        let mut start = vec![AUTHORITY_PREFIX];
        if let Some(after) = after {
            start.extend_from_slice(after.as_bytes());
            start.push(0); // strictly after
        }
        let mut out = Vec::new();
        let iter = self.db.iterator_cf(
            files,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(DbError::from)?;
            if key.first() != Some(&AUTHORITY_PREFIX) || out.len() >= limit {
                break;
            }
            let Some(id) = key.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
                continue;
            };
            if value.is_empty() || !self.store.has(&ShardId::from_bytes(id))? {
                continue;
            }
            out.push(FileId::from_bytes(id));
        }
        Ok(out)
    }

    /// Whether a claim on the manifest of `file` held here was stored or renewed in the
    /// last `quiet` seconds before `now` (a lease granted then still runs to within
    /// `quiet` of a full lease): the owner is about (its put or its self-check). One
    /// lookup of the manifest's lease rows.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn manifest_touched_within(
        &self,
        file: &FileId,
        quiet: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let blob = ShardId::from_bytes(*file.as_bytes());
        let until = self.leases.kept_until(&self.store, &blob)?;
        if until == 0 || until == u64::MAX {
            return Ok(false);
        }
        let full = now.saturating_add(self.leases.duration().as_secs());
        Ok(until.saturating_add(quiet) > full)
    }
}
