//! Which inodes of a thin device's ext4 filesystem may differ from its
//! origin's: the blocks the device does not share with the origin (from
//! the pool's metadata), mapped to the inode tables they hit
//! ([`crate::ext4`]). A diff against the origin then has to look only at
//! those inodes and the directories among them.

use super::Pool;
use crate::error::Result;
use crate::ext4::{head_len, Geometry};

/// Bytes read first from a device to find the superblock.
const SUPER_HEAD: usize = 2048;

impl Pool {
    /// Runs `(first, count)` of inode numbers whose on-disk inodes on the
    /// active device `name` may differ from those of the device it was
    /// snapshotted from. `None` when that cannot be known: the device is
    /// not active, has no origin, its filesystem is not ext4 in a layout
    /// [`crate::ext4`] reads, or the metadata does not list it.
    ///
    /// The device is suspended and resumed first: suspending freezes a
    /// mounted filesystem, which checkpoints its journal, so every changed
    /// inode is then in its table on the device, not only in the journal.
    /// Changes made after that are not covered.
    ///
    /// # Errors
    /// [`crate::Error::DeviceNotFound`], [`crate::Error::Metadata`], kernel
    /// errors.
    pub fn changed_inodes(&mut self, name: &str) -> Result<Option<Vec<(u64, u64)>>> {
        self.activate()?;
        let d = self.device(name)?;
        if d.origin.is_none() {
            return Ok(None);
        }
        let dm = self.thin_dm_name(d.id);
        if !self.kernel.dm_info(&dm)?.is_some_and(|i| i.live_table) {
            return Ok(None);
        }
        let dev = crate::kernel::mapper_path(&dm);
        self.kernel.dm_suspend(&dm)?;
        self.kernel.dm_resume(&dm)?;
        let head = self.kernel.read_head(&dev, SUPER_HEAD)?;
        let Some(len) = head_len(&head) else {
            return Ok(None);
        };
        let head = self.kernel.read_head(&dev, len)?;
        let Some(geometry) = Geometry::parse(&head) else {
            return Ok(None);
        };
        let Some(ranges) = self.unshared_ranges(d.id)? else {
            return Ok(None);
        };
        Ok(Some(geometry.inodes_in(&ranges)))
    }
}
