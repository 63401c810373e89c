//! The base device: one thin device per pool holding an empty filesystem
//! of the base size, made on first use. Every snapshot without a parent
//! is a thin snapshot of it, so mkfs runs once per pool, not per layer.
//! Also the removal of the `lost+found` that mkfs.ext4 and e2fsck (run
//! before a resize) make.

use std::path::Path;

use thinpool::fs::{self as tfs, FsKind};

use super::{Base, DevmapperSnapshotter, BASE_DEVICE};
use crate::snapshot::Result;

impl DevmapperSnapshotter {
    /// The base device, made (with its filesystem) on first use.
    pub(super) fn ensure_base(&mut self) -> Result<FsKind> {
        if let Some(b) = self.meta.base.as_ref().filter(|b| b.ready) {
            return Ok(b.fs);
        }
        let fs = self.settings.fs;
        self.meta.base = Some(Base {
            fs,
            size: self.settings.base_size,
            ready: false,
        });
        self.save()?;
        self.pool
            .create_thin(BASE_DEVICE, "base", self.settings.base_size)?;
        let dev = self.pool.activate_thin(BASE_DEVICE)?;
        let made = tfs::mkfs(&dev, fs, &self.settings.mkfs_options)
            .and_then(|()| self.drop_lost_found(&dev, fs));
        self.pool.deactivate_thin(BASE_DEVICE)?;
        made?;
        if let Some(b) = self.meta.base.as_mut() {
            b.ready = true;
        }
        self.save()?;
        Ok(fs)
    }

    /// Removes the `lost+found` that mkfs.ext4 (and e2fsck) make: it is in
    /// no image, and would show up in every container and export.
    pub(super) fn drop_lost_found(&self, dev: &Path, fs: FsKind) -> thinpool::Result<()> {
        if fs != FsKind::Ext4 {
            return Ok(());
        }
        let at = self.mnt.join("mkfs");
        tfs::mount_dev(dev, &at, fs, false, &self.settings.mount_options)?;
        let removed = match std::fs::remove_dir(at.join("lost+found")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(thinpool::Error::io("remove lost+found on", dev)(e)),
        };
        tfs::unmount(&at)?;
        removed
    }
}
