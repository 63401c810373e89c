//! The devmapper snapshotter's inode indexes ([`InodeIndex`]): one file per
//! committed device under `<root>/snapshots/devmapper/inodes/`, made on the
//! first diff of a child that needs it, dropped with the device; and the
//! changed paths of an active snapshot that they give, with the pool's
//! changed inodes.
//!
//! Why not when a layer is written: a directory walk costs about half a
//! second per Debian-sized tree in the test VM, and most layers of a
//! multi-layer image never have a container of their own; an `image load`
//! would pay for every layer. The first commit on an image pays once.
//!
//! An index is a cache: when it cannot be written or read, a diff walks
//! both trees as it would without one, so failures here are not errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use thinpool::fs::{self as tfs, FsKind};
use thinpool::store::atomic::atomic_write;

use super::{DevmapperSnapshotter, Kind};
use crate::snapshot::inodes::InodeIndex;
use crate::snapshot::Result;

impl DevmapperSnapshotter {
    fn index_file(&self, device: &str) -> PathBuf {
        self.file.with_file_name("inodes").join(device)
    }

    /// Indexes the tree mounted at `dir` for `device` (ext4 only: the
    /// changed inodes come from its layout).
    fn make_index(&self, device: &str, dir: &Path) -> Option<InodeIndex> {
        if self.fs() != FsKind::Ext4 || !tfs::is_mounted(dir) {
            return None;
        }
        let idx = InodeIndex::build(dir).ok()?;
        let file = self.index_file(device);
        if let (Some(d), Ok(bytes)) = (file.parent(), idx.encode()) {
            if std::fs::create_dir_all(d).is_ok() {
                let _ = atomic_write(&file, &bytes);
            }
        }
        Some(idx)
    }

    /// Forgets the index of a device that is gone.
    pub(super) fn drop_index(&self, device: &str) {
        let _ = std::fs::remove_file(self.index_file(device));
    }

    /// The index of committed `key`: read, or made now if it is mounted.
    fn index(&self, key: &str) -> Option<InodeIndex> {
        let r = self.rec(key).ok()?;
        if r.kind != Kind::Committed {
            return None;
        }
        if let Ok(b) = std::fs::read(self.index_file(&r.device)) {
            if let Ok(idx) = InodeIndex::decode(&b) {
                return Some(idx);
            }
        }
        self.make_index(&r.device, &self.mount_dir(r))
    }

    /// See [`crate::snapshot::Snapshotter::changed_paths`].
    pub(super) fn changed_paths_of(&mut self, key: &str) -> Result<Option<BTreeSet<Vec<u8>>>> {
        let r = self.rec(key)?.clone();
        if self.fs() != FsKind::Ext4 || r.kind != Kind::Active {
            return Ok(None);
        }
        let Some(index) = r.parent.as_deref().and_then(|p| self.index(p)) else {
            return Ok(None);
        };
        let Some(runs) = self.pool.changed_inodes(&r.device)? else {
            return Ok(None);
        };
        let paths = index.paths_in(&runs);
        // Reading a path on its own costs a few times what a walk pays per
        // entry: past a quarter of the tree (say, after something read
        // every directory and so changed their access times), walk it all.
        if paths.len() > index.len() / 4 {
            return Ok(None);
        }
        Ok(Some(paths))
    }
}
