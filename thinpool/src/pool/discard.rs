//! Discarding a device before it is deleted from a loop pool, so the data
//! file gets the space back (dm-thin's delete frees blocks in the pool's
//! space map only).
//!
//! Only the blocks the device does not share with its origin are
//! discarded: the rest is still the origin's, and a discard of the whole
//! virtual size costs time in proportion to everything the device maps
//! (a container of a large image maps the whole image), which is what
//! made removal slow. The blocks come from a held metadata snapshot read
//! in-process ([`crate::meta`]); when that cannot be read, the whole device
//! is discarded as before, so space is returned either way.

use std::path::Path;

use nix::errno::Errno;

use super::Pool;
use crate::error::Result;
use crate::meta::{unshared_runs, MetaReader};
use crate::units::{Bytes, Sectors, ThinId};

impl Pool {
    /// Discards the blocks of a device nobody holds open. A device that
    /// owns no blocks (a container never written to) is left inactive.
    pub(super) fn discard_if_unused(&mut self, id: ThinId) -> Result<()> {
        let dm = self.thin_dm_name(id);
        let info = self.kernel.dm_info(&dm)?;
        if info.as_ref().is_some_and(|i| i.open_count > 0) {
            return Ok(());
        }
        // Unreadable metadata: discard it all.
        let ranges = self.unshared_ranges(id).ok().flatten();
        if ranges.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(());
        }
        if info.is_none() {
            let size = self
                .store
                .data
                .devices
                .get(&id)
                .map(|d| d.size)
                .unwrap_or(Sectors(8));
            let table = self.thin_table(id, size)?;
            match self.kernel.dm_create(&dm, None, &table) {
                Ok(info) => {
                    self.kernel.ensure_node(&dm, &info)?;
                }
                // No such thin id in the kernel: nothing to discard.
                Err(e) if e.errno() == Some(Errno::ENODATA) || e.errno() == Some(Errno::EINVAL) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
        let dev = crate::kernel::mapper_path(&dm);
        match ranges {
            Some(r) => self.kernel.discard_ranges(&dev, &r),
            None => self.kernel.discard(&dev),
        }
    }

    /// Byte ranges of device `name` that its origin does not map to the
    /// same data blocks (all it maps, without an origin): on a loop pool,
    /// what removing it discards. `None` when the metadata does not list
    /// the device.
    ///
    /// # Errors
    /// [`crate::Error::DeviceNotFound`]; [`crate::Error::Metadata`] when the
    /// metadata cannot be read; kernel errors.
    pub fn unshared(&mut self, name: &str) -> Result<Option<Vec<(Bytes, Bytes)>>> {
        self.activate()?;
        let id = self.device(name)?.id;
        self.unshared_ranges(id)
    }

    /// As [`Pool::unshared`], by thin id.
    pub(super) fn unshared_ranges(&mut self, id: ThinId) -> Result<Option<Vec<(Bytes, Bytes)>>> {
        // The file, not the loop device: see [`MetaReader::open`].
        let file = self.metadata_path(false)?;
        let origin = self
            .store
            .data
            .devices
            .get(&id)
            .and_then(|d| d.origin.as_deref())
            .and_then(|o| self.store.data.by_name(o))
            .map(|o| o.id);
        self.with_metadata_snap(|| read_ranges(&file, id, origin))
    }

    /// Runs `f` while the pool holds a metadata snapshot. A snapshot left
    /// held by a killed command is released first.
    pub(super) fn with_metadata_snap<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let pool = self.rec.dm_name.clone();
        if self
            .kernel
            .dm_message(&pool, "reserve_metadata_snap")
            .is_err()
        {
            self.kernel.dm_message(&pool, "release_metadata_snap")?;
            self.kernel.dm_message(&pool, "reserve_metadata_snap")?;
        }
        crate::fault::crash_point("metadata-snap-held");
        let got = f();
        let released = self.kernel.dm_message(&pool, "release_metadata_snap");
        let v = got?;
        released?;
        Ok(v)
    }
}

fn read_ranges(
    file: &Path,
    id: ThinId,
    origin: Option<ThinId>,
) -> Result<Option<Vec<(Bytes, Bytes)>>> {
    let r = MetaReader::open(file)?;
    let held = r.held()?;
    let Some(mine) = r.mappings(&held, id)? else {
        return Ok(None);
    };
    let theirs = match origin {
        Some(o) => r.mappings(&held, o)?,
        None => None,
    };
    let block = held.block_size.0 * 512;
    Ok(Some(
        unshared_runs(&mine, theirs.as_deref())
            .into_iter()
            .map(|(first, n)| (Bytes(first * block), Bytes(n * block)))
            .collect(),
    ))
}
