//! Pool lifecycle: activate (idempotent; after a reboot re-attaches the
//! loop files, reloads the table, checks identity, reconciles and
//! re-activates devices), deactivate, extend online, destroy.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{Pool, IDENTITY_ID, IDENTITY_NAME, MAX_METADATA};
use crate::error::{Error, Result};
use crate::fault::crash_point;
use crate::store::{Backing, DeviceState};
use crate::units::{Bytes, Sectors, ThinId};

impl Pool {
    /// Brings the pool up if it is not; safe to call any number of times.
    ///
    /// # Errors
    /// [`Error::IdentityMismatch`] when the files or devices are not this
    /// pool's; [`Error::Unreconciled`]; kernel errors.
    pub fn activate(&mut self) -> Result<()> {
        if self.activated {
            return Ok(());
        }
        let (meta, data) = self.attach_backing()?;
        let pool = self.rec.dm_name.clone();
        let fresh = match self.kernel.dm_info(&pool)? {
            None => {
                let table = self.pool_table(&meta, &data)?;
                self.kernel.dm_create(
                    &pool,
                    Some(&format!("thinsnap-{}", self.rec.uuid)),
                    &table,
                )?;
                true
            }
            Some(i) if !i.live_table => {
                let table = self.pool_table(&meta, &data)?;
                self.kernel.dm_load(&pool, &table)?;
                self.kernel.dm_resume(&pool)?;
                true
            }
            Some(i) => {
                if i.suspended {
                    self.kernel.dm_resume(&pool)?;
                }
                false
            }
        };
        if fresh {
            if let Err(e) = self.verify_identity() {
                // Leave the kernel as we found it.
                let _ = self.kernel.dm_remove(&pool, false);
                return Err(e);
            }
        }
        self.recovery = self.reconcile()?;
        self.activated = true;
        self.complete_resize(&meta, &data)?;
        if self.store.data.by_name(IDENTITY_NAME).is_none() {
            self.make_identity()?;
        }
        Ok(())
    }

    /// The metadata and data block devices, attaching loop files as needed.
    fn attach_backing(&mut self) -> Result<(PathBuf, PathBuf)> {
        match self.rec.backing.clone() {
            Backing::Loop {
                data_file,
                metadata_file,
            } => {
                let meta = self.attach_file(&metadata_file, self.rec.metadata_size)?;
                let data = self.attach_file(&data_file, self.rec.data_size)?;
                Ok((meta, data))
            }
            Backing::Direct {
                data_dev,
                metadata_dev,
            } => {
                for (dev, want) in [
                    (&data_dev, self.rec.data_size),
                    (&metadata_dev, self.rec.metadata_size),
                ] {
                    self.kernel
                        .dev_number(dev)
                        .map_err(|e| Error::IdentityMismatch {
                            detail: format!("device {} is not usable ({e})", dev.display()),
                        })?;
                    let have = self.kernel.dev_size(dev)?;
                    if have < want {
                        return Err(Error::IdentityMismatch {
                            detail: format!(
                                "{} is {have}, the pool was recorded as {want}",
                                dev.display()
                            ),
                        });
                    }
                }
                Ok((metadata_dev, data_dev))
            }
        }
    }

    fn attach_file(&mut self, file: &Path, want: Bytes) -> Result<PathBuf> {
        let md = std::fs::metadata(file).map_err(|_| Error::IdentityMismatch {
            detail: format!("pool file {} is missing", file.display()),
        })?;
        if md.len() < want.0 {
            // An extend recorded its new size but died before growing the file.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .map_err(Error::io("open", file))?;
            f.set_len(want.0).map_err(Error::io("grow", file))?;
        }
        let dev = self.kernel.loop_attach(file)?;
        if self.kernel.dev_size(&dev)? < want {
            self.kernel.loop_refresh(&dev)?;
        }
        Ok(dev)
    }

    fn verify_identity(&mut self) -> Result<()> {
        let Some(d) = self
            .store
            .data
            .by_name(IDENTITY_NAME)
            .filter(|d| d.state == DeviceState::Ready)
        else {
            return Ok(());
        };
        let (id, size) = (d.id, d.size);
        let mismatch = |detail: String| Error::IdentityMismatch { detail };
        let path = self.bring_up(id, size).map_err(|e| match e.errno() {
            Some(Errno::ENODATA) | Some(Errno::EINVAL) => {
                mismatch("the pool has no identity device".into())
            }
            _ => e,
        })?;
        let head = self.kernel.read_head(&path, 512);
        self.take_down(id)?;
        if head? != self.identity_bytes() {
            return Err(mismatch(format!(
                "the pool's identity block does not name pool {}; were the data or metadata files or devices swapped?",
                self.rec.uuid
            )));
        }
        Ok(())
    }

    fn make_identity(&mut self) -> Result<()> {
        let size = Sectors(self.rec.block_size.0);
        let id = self.create_thin_inner(IDENTITY_NAME, "pool", size, IDENTITY_ID)?;
        if id.get() != IDENTITY_ID {
            return Err(Error::Unreconciled {
                detail: format!("identity device got thin id {id}, expected {IDENTITY_ID}"),
            });
        }
        let path = self.bring_up(id, size)?;
        let bytes = self.identity_bytes();
        let wrote = self.kernel.write_head(&path, &bytes);
        self.take_down(id)?;
        wrote
    }

    /// Reloads the table if the record is larger than what the kernel
    /// serves: an extend that died between recording and reloading.
    fn complete_resize(&mut self, meta: &Path, data: &Path) -> Result<()> {
        let st = self.kernel_status()?;
        let block_bytes = self.rec.block_size.bytes().0;
        let want_data = self.rec.data_size.0 / block_bytes;
        let want_meta = self.rec.metadata_size.0 / 4096;
        if st.data_total.0 < want_data || st.meta_total < want_meta {
            self.reload(meta, data)?;
        }
        Ok(())
    }

    fn reload(&mut self, meta: &Path, data: &Path) -> Result<()> {
        let pool = self.rec.dm_name.clone();
        let table = self.pool_table(meta, data)?;
        self.kernel.dm_load(&pool, &table)?;
        self.kernel.dm_suspend(&pool)?;
        crash_point("extend-suspended");
        // Always resume: a pool left suspended hangs every device on it.
        self.kernel.dm_resume(&pool)
    }

    /// Grows data and/or metadata to the new totals, online.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a shrink or a size past the device;
    /// kernel errors.
    pub fn extend(&mut self, data: Option<Bytes>, metadata: Option<Bytes>) -> Result<()> {
        self.activate()?;
        let bad = |field, reason: String| Error::InvalidConfig { field, reason };
        let new_data = data.unwrap_or(self.rec.data_size);
        let new_meta = metadata.unwrap_or(self.rec.metadata_size);
        if new_data < self.rec.data_size {
            return Err(bad(
                "data size",
                format!("a pool cannot shrink (now {})", self.rec.data_size),
            ));
        }
        if new_meta < self.rec.metadata_size {
            return Err(bad(
                "metadata size",
                format!("a pool cannot shrink (now {})", self.rec.metadata_size),
            ));
        }
        if new_meta > MAX_METADATA {
            return Err(bad(
                "metadata size",
                format!("the kernel uses at most {MAX_METADATA}"),
            ));
        }
        if let Backing::Direct {
            data_dev,
            metadata_dev,
        } = &self.rec.backing
        {
            for (dev, want) in [(data_dev, new_data), (metadata_dev, new_meta)] {
                let have = self.kernel.dev_size(dev)?;
                if have < want {
                    return Err(bad(
                        "size",
                        format!("{} holds only {have}; grow the device first", dev.display()),
                    ));
                }
            }
        }
        if new_data == self.rec.data_size && new_meta == self.rec.metadata_size {
            return Ok(());
        }
        self.rec.data_size = new_data;
        self.rec.metadata_size = new_meta;
        self.save()?;
        crash_point("extend-after-intent");
        // Grows the files and refreshes the loop devices' capacity.
        let (meta, data) = self.attach_backing()?;
        self.reload(&meta, &data)
    }

    /// Deactivates every device and the pool, and detaches loop files. The
    /// store keeps which devices were active, for the next activation.
    ///
    /// # Errors
    /// [`Error::Busy`] when a device is held open; kernel errors.
    pub fn deactivate(&mut self) -> Result<()> {
        let ids: Vec<(ThinId, String)> = self
            .store
            .data
            .devices
            .values()
            .map(|d| (d.id, d.name.clone()))
            .collect();
        if self.kernel.dm_info(&self.rec.dm_name)?.is_some() {
            for (id, name) in ids {
                if !self.take_down(id)? && !self.wait_gone(&self.thin_dm_name(id)) {
                    return Err(Error::Busy { name });
                }
            }
            // Thin devices of this pool the store does not name (left by a
            // killed command) would hold the pool open: take them down too.
            let prefix = format!(
                "{}-",
                self.rec
                    .dm_name
                    .strip_suffix("-pool")
                    .unwrap_or(&self.rec.dm_name)
            );
            for dm in self.kernel.dm_list()? {
                if dm.starts_with(&prefix) && dm != self.rec.dm_name {
                    match self.kernel.dm_remove(&dm, true) {
                        Ok(()) => {}
                        Err(e) if e.errno() == Some(Errno::ENXIO) => {}
                        Err(e) => return Err(e),
                    }
                    if !self.wait_gone(&dm) {
                        return Err(Error::Busy { name: dm });
                    }
                    self.kernel.remove_node(&dm)?;
                }
            }
            self.remove_pool_device()?;
        }
        self.detach_loops()?;
        self.activated = false;
        Ok(())
    }

    /// Removes the pool's dm device, waiting up to 5 s while it is still
    /// held by thin devices whose removal is finishing.
    fn remove_pool_device(&mut self) -> Result<()> {
        let pool = self.rec.dm_name.clone();
        let mut last = None;
        for _ in 0..50 {
            match self.kernel.dm_remove(&pool, false) {
                Ok(()) => return Ok(()),
                Err(e) if e.errno() == Some(Errno::ENXIO) => return Ok(()),
                Err(e) if e.errno() == Some(Errno::EBUSY) => last = Some(e),
                Err(e) => return Err(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(last.unwrap_or(Error::Busy { name: pool }))
    }

    /// Waits up to 5 s for a deferred removal to finish (a device closed
    /// a moment ago, e.g. by a filesystem still being torn down).
    fn wait_gone(&self, dm: &str) -> bool {
        for _ in 0..50 {
            match self.kernel.dm_info(dm) {
                Ok(None) => return true,
                Ok(Some(_)) => std::thread::sleep(std::time::Duration::from_millis(100)),
                Err(_) => return false,
            }
        }
        false
    }

    fn detach_loops(&mut self) -> Result<()> {
        if let Backing::Loop {
            data_file,
            metadata_file,
        } = self.rec.backing.clone()
        {
            for f in [data_file, metadata_file] {
                if f.exists() {
                    if let Some(dev) = self.kernel.loop_find(&f)? {
                        self.kernel.loop_detach(&dev)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Tears down the pool: devices, pool, loop devices, files, store.
    ///
    /// # Errors
    /// [`Error::DevicesExist`] unless `force`; [`Error::Busy`]; kernel errors.
    pub fn destroy(mut self, force: bool) -> Result<()> {
        let user = self
            .store
            .data
            .devices
            .values()
            .filter(|d| d.id.get() != IDENTITY_ID)
            .count();
        if user > 0 && !force {
            return Err(Error::DevicesExist { count: user });
        }
        self.deactivate()?;
        match self.rec.backing.clone() {
            Backing::Loop {
                data_file,
                metadata_file,
            } => {
                for f in [data_file, metadata_file] {
                    match std::fs::remove_file(&f) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("remove", f)(e)),
                    }
                }
            }
            Backing::Direct { metadata_dev, .. } => {
                // A blank metadata head lets the next create take the device.
                self.kernel.write_head(&metadata_dev, &[0u8; 4096])?;
            }
        }
        self.store.remove()
    }
}
