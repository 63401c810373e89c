//! Where an ext4 filesystem keeps its inodes: the superblock and group
//! descriptors, read from the start of a device, give each block group's
//! inode table, so a byte range of the device that changed maps to the
//! inode numbers whose on-disk inodes it may hold.
//!
//! Why: a thin snapshot's blocks that differ from its origin's are known
//! from the pool's metadata ([`crate::meta`]); every change to a file
//! (contents, size, times, owner, mode, xattrs, links) or a directory
//! (any entry added, removed or renamed) rewrites its inode, so the
//! inodes in the changed inode-table blocks are the only ones that can
//! differ. A diff then looks at those instead of walking both trees.
//! That holds only once the journal is checkpointed (the filesystem
//! frozen or unmounted); the caller makes sure of that.
//!
//! Layouts this does not read (no ext4 magic, `meta_bg`, sizes out of
//! range) give `None`, and the caller falls back to a full walk.

use crate::units::Bytes;

/// Byte offset of the superblock.
const SB_OFFSET: usize = 1024;
/// Bytes of the superblock.
const SB_LEN: usize = 1024;
const MAGIC: u16 = 0xEF53;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;

/// The inode tables of an ext4 filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Filesystem block size in bytes.
    pub block_size: u64,
    /// Inodes per block group.
    pub inodes_per_group: u64,
    /// Bytes per on-disk inode.
    pub inode_size: u64,
    /// First block of each group's inode table.
    pub tables: Vec<u64>,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The superblock fields the layout needs.
struct Super {
    block_size: u64,
    first_data_block: u64,
    groups: u64,
    inodes_per_group: u64,
    inode_size: u64,
    desc_size: u64,
}

impl Super {
    fn parse(head: &[u8]) -> Option<Super> {
        let sb = head.get(SB_OFFSET..SB_OFFSET + SB_LEN)?;
        if le16(sb, 56) != MAGIC {
            return None;
        }
        let incompat = le32(sb, 96);
        if incompat & INCOMPAT_META_BG != 0 {
            return None;
        }
        let log = le32(sb, 24);
        if log > 6 {
            return None;
        }
        let block_size = 1024u64 << log;
        let blocks = u64::from(le32(sb, 4))
            | if incompat & INCOMPAT_64BIT != 0 {
                u64::from(le32(sb, 0x150)) << 32
            } else {
                0
            };
        let first_data_block = u64::from(le32(sb, 20));
        let per_group = u64::from(le32(sb, 32));
        let inodes_per_group = u64::from(le32(sb, 40));
        let inode_size = if le32(sb, 76) == 0 {
            128
        } else {
            u64::from(le16(sb, 88))
        };
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            u64::from(le16(sb, 0xFE))
        } else {
            32
        };
        if per_group == 0
            || inodes_per_group == 0
            || !(128..=block_size).contains(&inode_size)
            || !(32..=1024).contains(&desc_size)
            || blocks <= first_data_block
        {
            return None;
        }
        Some(Super {
            block_size,
            first_data_block,
            groups: (blocks - first_data_block).div_ceil(per_group),
            inodes_per_group,
            inode_size,
            desc_size,
        })
    }

    /// Bytes from the device start to the end of the group descriptors.
    fn table_end(&self) -> u64 {
        (self.first_data_block + 1) * self.block_size + self.groups * self.desc_size
    }
}

/// How many bytes from the start of the device [`Geometry::parse`] needs,
/// given at least the first 2 KiB (`None` when that is not ext4 this
/// module reads).
pub fn head_len(head: &[u8]) -> Option<usize> {
    let s = Super::parse(head)?;
    usize::try_from(s.table_end()).ok()
}

impl Geometry {
    /// The layout, from the first [`head_len`] bytes of the device.
    pub fn parse(head: &[u8]) -> Option<Geometry> {
        let s = Super::parse(head)?;
        let start = usize::try_from((s.first_data_block + 1) * s.block_size).ok()?;
        let size = usize::try_from(s.desc_size).ok()?;
        let wide = s.desc_size >= 64;
        let mut tables = Vec::new();
        for g in 0..usize::try_from(s.groups).ok()? {
            let d = head.get(start + g * size..start + (g + 1) * size)?;
            let hi = if wide { u64::from(le32(d, 0x28)) } else { 0 };
            tables.push(u64::from(le32(d, 8)) | hi << 32);
        }
        Some(Geometry {
            block_size: s.block_size,
            inodes_per_group: s.inodes_per_group,
            inode_size: s.inode_size,
            tables,
        })
    }

    /// Bytes of one group's inode table.
    fn table_bytes(&self) -> u64 {
        self.inodes_per_group * self.inode_size
    }

    /// Runs `(first, count)` of the inode numbers whose on-disk inodes lie
    /// in any of the byte ranges (`(offset, length)`, sorted or not),
    /// sorted and merged.
    pub fn inodes_in(&self, ranges: &[(Bytes, Bytes)]) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        for (g, &table) in self.tables.iter().enumerate() {
            let t0 = table * self.block_size;
            let t1 = t0 + self.table_bytes();
            for &(off, len) in ranges {
                let (a, b) = (off.0.max(t0), (off.0 + len.0).min(t1));
                if a >= b {
                    continue;
                }
                let first = (a - t0) / self.inode_size;
                let last = (b - t0).div_ceil(self.inode_size);
                runs.push((g as u64 * self.inodes_per_group + first + 1, last - first));
            }
        }
        runs.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for (first, n) in runs {
            match out.last_mut() {
                Some((f, c)) if first <= *f + *c => *c = (*c).max(first + n - *f),
                _ => out.push((first, n)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB-block, 64bit filesystem head with `groups` groups whose
    /// inode tables start at block 100 + 1000 * g.
    fn head(groups: u32) -> Vec<u8> {
        let mut h = vec![0u8; 4096 + groups as usize * 64];
        let sb = &mut h[1024..2048];
        sb[4..8].copy_from_slice(&(groups * 32768).to_le_bytes());
        sb[24..28].copy_from_slice(&2u32.to_le_bytes());
        sb[32..36].copy_from_slice(&32768u32.to_le_bytes());
        sb[40..44].copy_from_slice(&8192u32.to_le_bytes());
        sb[56..58].copy_from_slice(&MAGIC.to_le_bytes());
        sb[76..80].copy_from_slice(&1u32.to_le_bytes());
        sb[88..90].copy_from_slice(&256u16.to_le_bytes());
        sb[96..100].copy_from_slice(&(INCOMPAT_64BIT | 0x200).to_le_bytes());
        sb[0xFE..0x100].copy_from_slice(&64u16.to_le_bytes());
        for g in 0..groups as usize {
            let d = 4096 + g * 64;
            h[d + 8..d + 12].copy_from_slice(&(100 + 1000 * g as u32).to_le_bytes());
        }
        h
    }

    #[test]
    fn reads_the_layout_of_a_64bit_filesystem() {
        let h = head(3);
        assert_eq!(head_len(&h[..2048]), Some(4096 + 3 * 64));
        let g = Geometry::parse(&h).expect("ext4");
        assert_eq!(g.block_size, 4096);
        assert_eq!(g.inode_size, 256);
        assert_eq!(g.inodes_per_group, 8192);
        assert_eq!(g.tables, vec![100, 1100, 2100]);
    }

    #[test]
    fn maps_changed_bytes_to_inode_numbers() {
        let g = Geometry::parse(&head(3)).expect("ext4");
        // One 64 KiB block at the start of group 0's table: 256 inodes.
        assert_eq!(
            g.inodes_in(&[(Bytes(100 * 4096), Bytes(65536))]),
            vec![(1, 256)]
        );
        // A range that ends inside an inode includes it; one that spans
        // the end of group 1's table (512 blocks) stops there.
        let end1 = (1100 + 512) * 4096;
        assert_eq!(
            g.inodes_in(&[(Bytes(end1 - 300), Bytes(10_000))]),
            vec![(8192 + 8192 - 2 + 1, 2)]
        );
        // Blocks outside any table (data, bitmaps) hold no inode.
        assert!(g.inodes_in(&[(Bytes(0), Bytes(100 * 4096))]).is_empty());
        // Adjacent and overlapping runs merge.
        let r = [
            (Bytes(2100 * 4096 + 512), Bytes(512)),
            (Bytes(2100 * 4096), Bytes(512)),
        ];
        assert_eq!(g.inodes_in(&r), vec![(2 * 8192 + 1, 4)]);
    }

    #[test]
    fn other_layouts_are_not_read() {
        let mut h = head(1);
        h[1024 + 56] = 0;
        assert_eq!(head_len(&h), None, "no magic");
        let mut h = head(1);
        h[1024 + 96] |= INCOMPAT_META_BG as u8;
        assert!(Geometry::parse(&h).is_none(), "meta_bg");
        let h = head(2);
        assert!(Geometry::parse(&h[..4096 + 64]).is_none(), "short head");
    }
}
