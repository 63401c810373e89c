//! The inode index of a committed snapshot's filesystem: every path with
//! its inode number, kept beside the snapshot records so that a diff of a
//! child snapshot can turn "these inode numbers may have changed" (from the
//! block level, see [`thinpool::ext4`]) into the paths to compare, without
//! walking the tree.
//!
//! A committed snapshot never changes, so its index never goes stale. It
//! is made by listing directories only (`getdents` gives each entry's inode
//! number and type, so nothing is stat'ed). A missing or unreadable index
//! only means the diff walks the whole tree, as without one.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};

/// Guards against reading an index of another format.
const MAGIC: &str = "thinsnap-inode-index-1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    /// Index of the parent directory's entry (the root: itself, 0).
    parent: u32,
    ino: u64,
    name: Vec<u8>,
}

/// Paths by inode number of one tree; entry 0 is the root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InodeIndex {
    magic: String,
    entries: Vec<Entry>,
}

fn too_many() -> io::Error {
    io::Error::other("more than 2^32 entries in one tree")
}

impl InodeIndex {
    /// Lists the tree under `root` (not following symlinks, not crossing
    /// into other mounts' contents beyond what `getdents` shows).
    ///
    /// # Errors
    /// Any directory that cannot be opened or listed.
    pub fn build(root: &Path) -> io::Result<InodeIndex> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rfs::open(root, flags, Mode::empty())?;
        let st = rfs::fstat(&fd)?;
        let mut entries = vec![Entry {
            parent: 0,
            ino: st.st_ino,
            name: Vec::new(),
        }];
        let mut pending: Vec<(u32, OwnedFd)> = vec![(0, fd)];
        while let Some((at, dir)) = pending.pop() {
            let mut d = rfs::Dir::read_from(&dir)?;
            while let Some(e) = d.read() {
                let e = e?;
                let name = e.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let kind = match e.file_type() {
                    FileType::Unknown => {
                        let st = rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                        FileType::from_raw_mode(st.st_mode)
                    }
                    k => k,
                };
                let me = u32::try_from(entries.len()).map_err(|_| too_many())?;
                entries.push(Entry {
                    parent: at,
                    ino: e.ino(),
                    name: name.to_vec(),
                });
                if kind == FileType::Directory {
                    let sub = rfs::openat(&dir, name, flags | OFlags::NOFOLLOW, Mode::empty())?;
                    pending.push((me, sub));
                }
            }
        }
        Ok(InodeIndex {
            magic: MAGIC.to_string(),
            entries,
        })
    }

    /// Encodes the index.
    ///
    /// # Errors
    /// Never in practice (bincode of plain data).
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        bincode::serialize(self).map_err(io::Error::other)
    }

    /// Decodes an index written by [`InodeIndex::encode`].
    ///
    /// # Errors
    /// Bytes that are not such an index (wrong format or version, parents
    /// that do not come before their children).
    pub fn decode(bytes: &[u8]) -> io::Result<InodeIndex> {
        let x: InodeIndex = bincode::deserialize(bytes).map_err(io::Error::other)?;
        let sane = x.magic == MAGIC
            && !x.entries.is_empty()
            && x.entries
                .iter()
                .enumerate()
                .skip(1)
                .all(|(i, e)| (e.parent as usize) < i && !e.name.is_empty());
        if !sane {
            return Err(io::Error::other("not an inode index of this version"));
        }
        Ok(x)
    }

    /// The path of entry `i`, relative to the root, without a leading `/`.
    fn path(&self, mut i: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        while i != 0 {
            let e = &self.entries[i];
            parts.push(&e.name[..]);
            i = e.parent as usize;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// Every path whose inode number lies in one of the sorted, disjoint
    /// runs `(first, count)`, relative to the root (the root itself is
    /// `""`), sorted.
    pub fn paths_in(&self, runs: &[(u64, u64)]) -> BTreeSet<Vec<u8>> {
        let hit = |ino: u64| {
            let i = runs.partition_point(|(f, _)| *f <= ino);
            i > 0 && ino < runs[i - 1].0 + runs[i - 1].1
        };
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| hit(e.ino))
            .map(|(i, _)| self.path(i))
            .collect()
    }

    /// How many paths the index holds (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn finds_every_path_of_the_inodes_asked_for() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/b/f"), b"x").unwrap();
        std::fs::hard_link(r.join("a/b/f"), r.join("g")).unwrap();
        std::fs::write(r.join("h"), b"y").unwrap();
        std::os::unix::fs::symlink("a", r.join("s")).unwrap();
        let idx = InodeIndex::build(r).unwrap();
        assert_eq!(idx.len(), 7);
        let back = InodeIndex::decode(&idx.encode().unwrap()).unwrap();
        assert_eq!(back, idx);

        let ino = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap().ino();
        let f = ino("a/b/f");
        let got = idx.paths_in(&[(f, 1)]);
        let want: BTreeSet<Vec<u8>> = [b"a/b/f".to_vec(), b"g".to_vec()].into();
        assert_eq!(got, want, "both names of a hardlinked inode");
        let mut runs = vec![(ino(""), 1), (ino("a/b"), 1), (ino("s"), 1)];
        runs.sort_unstable();
        let got = idx.paths_in(&runs);
        let want: BTreeSet<Vec<u8>> = [Vec::new(), b"a/b".to_vec(), b"s".to_vec()].into();
        assert_eq!(got, want);
        assert!(idx.paths_in(&[]).is_empty());
    }

    #[test]
    fn refuses_bytes_that_are_not_an_index() {
        assert!(InodeIndex::decode(b"garbage").is_err());
        let bad = InodeIndex {
            magic: MAGIC.to_string(),
            entries: vec![
                Entry {
                    parent: 0,
                    ino: 2,
                    name: Vec::new(),
                },
                Entry {
                    parent: 5,
                    ino: 3,
                    name: b"x".to_vec(),
                },
            ],
        };
        assert!(InodeIndex::decode(&bad.encode().unwrap()).is_err());
    }
}
