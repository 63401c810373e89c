//! Reads dm-thin's on-disk metadata: the superblock and the mapping
//! btrees of a *held* metadata snapshot (`reserve_metadata_snap`), which
//! the kernel keeps unchanged while the pool runs on.
//!
//! It answers one question: which blocks of a thin device are not shared
//! with its origin. Removing a device on a loop pool discards only those,
//! so the data file gets its space back without a discard of the whole
//! virtual size, which costs time in proportion to everything the device
//! maps (dm-thin unmaps shared blocks one by one). The answer only steers
//! that discard: the device is deleted right after, so a wrong answer can
//! cost file space, never data, and any doubt (a node that does not look
//! right, an unknown layout) is an error the caller answers with a full
//! discard.
//!
//! Layout (dm-thin-metadata.c, persistent-data btrees), little endian,
//! 4 KiB blocks: the superblock at block 0 holds `held_root` at byte 56,
//! `data_mapping_root` at 320 and `data_block_size` (sectors) at 336. A
//! btree node has a 32-byte header (flags at 4, blocknr at 8, nr_entries
//! at 16, max_entries at 20, value_size at 24), then `max_entries` u64
//! keys, then the values. Internal nodes' values are child block numbers.
//! The top-level mapping tree maps a thin id to the root of that device's
//! tree, which maps a virtual block to `data_block << 24 | time`.

use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt};

use nix::fcntl::PosixFadviseAdvice;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::units::{Sectors, ThinId};

/// Metadata block size.
const BLOCK: usize = 4096;
/// `THIN_SUPERBLOCK_MAGIC`.
const MAGIC: u64 = 27_022_010;
const INTERNAL_NODE: u32 = 1;
const LEAF_NODE: u32 = 2;
const HEADER: usize = 32;
/// Deepest tree accepted (a 4 KiB-node btree of 2^24 devices' worth of
/// blocks is far shallower); stops a loop in damaged metadata.
const MAX_DEPTH: usize = 16;

/// What the held snapshot's superblock says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Root of the top-level mapping tree (thin id → device tree).
    pub mapping_root: u64,
    /// Pool data block size.
    pub block_size: Sectors,
}

/// One device's mappings, sorted by virtual block: (virtual block, data block).
pub type Mappings = Vec<(u64, u64)>;

/// A reader of one metadata device or file.
pub struct MetaReader {
    file: File,
    path: PathBuf,
}

fn bad(path: &Path, detail: String) -> Error {
    Error::Metadata {
        path: path.to_path_buf(),
        detail,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A checked btree node.
struct Node {
    leaf: bool,
    keys: Vec<u64>,
    /// Values as u64 (both trees read here have 8-byte values).
    values: Vec<u64>,
}

impl MetaReader {
    /// Opens the metadata at `path`. A loop pool's metadata file is read
    /// through its page cache, which the loop device writes through. The
    /// kernel writes a block device's metadata past the device's page
    /// cache, so pages cached by an earlier read are dropped first.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn open(path: &Path) -> Result<MetaReader> {
        let file = File::open(path).map_err(Error::io("open", path))?;
        let is_dev = file
            .metadata()
            .map_err(Error::io("stat", path))?
            .file_type()
            .is_block_device();
        if is_dev {
            nix::fcntl::posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
                .map_err(|e| Error::io("drop the cached pages of", path)(e.into()))?;
        }
        Ok(MetaReader {
            file,
            path: path.to_path_buf(),
        })
    }

    fn block(&self, n: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; BLOCK];
        let at = n
            .checked_mul(BLOCK as u64)
            .ok_or_else(|| bad(&self.path, format!("block {n} out of range")))?;
        self.file
            .read_exact_at(&mut buf, at)
            .map_err(Error::io("read", &self.path))?;
        Ok(buf)
    }

    /// The held metadata snapshot's roots.
    ///
    /// # Errors
    /// [`Error::Metadata`] when the superblock is not dm-thin's or no
    /// snapshot is held; [`Error::Io`].
    pub fn held(&self) -> Result<Held> {
        let sb = self.block(0)?;
        if u64_at(&sb, 32) != MAGIC {
            return Err(bad(&self.path, "no thin-pool superblock".into()));
        }
        let held = u64_at(&sb, 56);
        if held == 0 {
            return Err(bad(&self.path, "no metadata snapshot is held".into()));
        }
        let copy = self.block(held)?;
        if u64_at(&copy, 32) != MAGIC || u64_at(&copy, 8) != held {
            return Err(bad(&self.path, format!("block {held} is no superblock")));
        }
        let block_size = u64::from(u32_at(&copy, 336));
        if block_size == 0 {
            return Err(bad(&self.path, "data block size 0".into()));
        }
        Ok(Held {
            mapping_root: u64_at(&copy, 320),
            block_size: Sectors(block_size),
        })
    }

    fn node(&self, n: u64) -> Result<Node> {
        let b = self.block(n)?;
        let flags = u32_at(&b, 4);
        let nr = u32_at(&b, 16) as usize;
        let max = u32_at(&b, 20) as usize;
        let value_size = u32_at(&b, 24) as usize;
        let leaf = match flags {
            LEAF_NODE => true,
            INTERNAL_NODE => false,
            f => return Err(bad(&self.path, format!("block {n}: node flags {f}"))),
        };
        if u64_at(&b, 8) != n
            || value_size != 8
            || nr > max
            || HEADER + max * (8 + value_size) > BLOCK
        {
            return Err(bad(&self.path, format!("block {n} is no btree node")));
        }
        let vals = HEADER + max * 8;
        Ok(Node {
            leaf,
            keys: (0..nr).map(|i| u64_at(&b, HEADER + i * 8)).collect(),
            values: (0..nr).map(|i| u64_at(&b, vals + i * 8)).collect(),
        })
    }

    /// Every (key, value) of the tree at `root`, in key order.
    fn walk(&self, root: u64, depth: usize, out: &mut Vec<(u64, u64)>) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(bad(&self.path, "btree too deep".into()));
        }
        let node = self.node(root)?;
        if node.leaf {
            out.extend(node.keys.into_iter().zip(node.values));
            return Ok(());
        }
        for child in node.values {
            self.walk(child, depth + 1, out)?;
        }
        Ok(())
    }

    /// One key's value in the tree at `root`.
    fn lookup(&self, root: u64, key: u64) -> Result<Option<u64>> {
        let mut at = root;
        for _ in 0..=MAX_DEPTH {
            let node = self.node(at)?;
            // The last entry whose key is <= `key`.
            let i = node.keys.partition_point(|&k| k <= key);
            if i == 0 {
                return Ok(None);
            }
            if node.leaf {
                return Ok((node.keys[i - 1] == key).then(|| node.values[i - 1]));
            }
            at = node.values[i - 1];
        }
        Err(bad(&self.path, "btree too deep".into()))
    }

    /// A device's mappings in the held snapshot (`None`: no such device).
    ///
    /// # Errors
    /// [`Error::Metadata`] for a damaged tree; [`Error::Io`].
    pub fn mappings(&self, held: &Held, id: ThinId) -> Result<Option<Mappings>> {
        let Some(root) = self.lookup(held.mapping_root, u64::from(id.get()))? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        self.walk(root, 0, &mut out)?;
        // The time in the low 24 bits says when a block was mapped, not
        // where: only the data block matters for sharing.
        for m in &mut out {
            m.1 >>= 24;
        }
        Ok(Some(out))
    }
}

/// Runs of virtual blocks `(first, count)` that `dev` maps to a data block
/// its origin does not map at the same place: the blocks the device may
/// own alone. Without an origin, every mapped run.
pub fn unshared_runs(dev: &[(u64, u64)], origin: Option<&[(u64, u64)]>) -> Vec<(u64, u64)> {
    let shared = |v: u64, d: u64| {
        origin.is_some_and(|o| {
            o.binary_search_by_key(&v, |m| m.0)
                .is_ok_and(|i| o[i].1 == d)
        })
    };
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &(v, d) in dev {
        if shared(v, d) {
            continue;
        }
        match runs.last_mut() {
            Some((first, count)) if *first + *count == v => *count += 1,
            _ => runs.push((v, 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a node block.
    fn node(n: u64, leaf: bool, entries: &[(u64, u64)]) -> Vec<u8> {
        let max = 126usize;
        let mut b = vec![0u8; BLOCK];
        b[4..8].copy_from_slice(&(if leaf { LEAF_NODE } else { INTERNAL_NODE }).to_le_bytes());
        b[8..16].copy_from_slice(&n.to_le_bytes());
        b[16..20].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(max as u32).to_le_bytes());
        b[24..28].copy_from_slice(&8u32.to_le_bytes());
        for (i, (k, v)) in entries.iter().enumerate() {
            b[HEADER + i * 8..HEADER + i * 8 + 8].copy_from_slice(&k.to_le_bytes());
            let at = HEADER + max * 8 + i * 8;
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn superblock(n: u64, held: u64, root: u64) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK];
        b[8..16].copy_from_slice(&n.to_le_bytes());
        b[32..40].copy_from_slice(&MAGIC.to_le_bytes());
        b[56..64].copy_from_slice(&held.to_le_bytes());
        b[320..328].copy_from_slice(&root.to_le_bytes());
        b[336..340].copy_from_slice(&128u32.to_le_bytes());
        b
    }

    fn packed(data: u64, time: u64) -> u64 {
        data << 24 | time
    }

    /// Metadata with devices 1 (origin) and 2 (its snapshot, which wrote
    /// blocks 5 and 6 and shares the rest); device 2's tree has an
    /// internal node over two leaves.
    fn sample() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta");
        let blocks = vec![
            superblock(0, 1, 2),
            superblock(1, 0, 2),
            // top level: dev 1 -> block 3, dev 2 -> block 4
            node(2, true, &[(1, 3), (2, 4)]),
            node(
                3,
                true,
                &[
                    (0, packed(100, 0)),
                    (5, packed(105, 0)),
                    (9, packed(109, 0)),
                ],
            ),
            node(4, false, &[(0, 5), (6, 6)]),
            node(5, true, &[(0, packed(100, 0)), (5, packed(200, 1))]),
            node(6, true, &[(6, packed(201, 1)), (9, packed(109, 0))]),
        ];
        let mut f = File::create(&path).unwrap();
        for b in blocks {
            f.write_all(&b).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn reads_devices_of_the_held_snapshot() {
        let (_d, path) = sample();
        let r = MetaReader::open(&path).unwrap();
        let held = r.held().unwrap();
        assert_eq!(held.mapping_root, 2);
        assert_eq!(held.block_size, Sectors(128));
        let one = r.mappings(&held, ThinId::new(1).unwrap()).unwrap().unwrap();
        assert_eq!(one, vec![(0, 100), (5, 105), (9, 109)]);
        let two = r.mappings(&held, ThinId::new(2).unwrap()).unwrap().unwrap();
        assert_eq!(two, vec![(0, 100), (5, 200), (6, 201), (9, 109)]);
        assert_eq!(r.mappings(&held, ThinId::new(7).unwrap()).unwrap(), None);
        assert_eq!(unshared_runs(&two, Some(&one)), vec![(5, 2)]);
        assert_eq!(unshared_runs(&two, None), vec![(0, 1), (5, 2), (9, 1)]);
    }

    #[test]
    fn refuses_what_is_not_thin_metadata() {
        let (_d, path) = sample();
        let mut bytes = std::fs::read(&path).unwrap();
        // No snapshot held.
        bytes[56..64].copy_from_slice(&0u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(MetaReader::open(&path).unwrap().held().is_err());
        // A node whose blocknr is not where it lies.
        bytes[56..64].copy_from_slice(&1u64.to_le_bytes());
        bytes[4 * BLOCK + 8..4 * BLOCK + 16].copy_from_slice(&9u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let r = MetaReader::open(&path).unwrap();
        let held = r.held().unwrap();
        assert!(r.mappings(&held, ThinId::new(2).unwrap()).is_err());
        // Not a superblock at all.
        std::fs::write(&path, vec![0u8; BLOCK]).unwrap();
        assert!(MetaReader::open(&path).unwrap().held().is_err());
    }
}
