//! Recovery on open: what a killed command left half done is finished or
//! rolled back. A snapshot marked `preparing` or `removing` loses its
//! device and record (a device still busy is left for a later open), an
//! unfinished base device is deleted, pool devices
//! of this snapshotter that no record names are deleted, and mount points
//! of snapshots that are gone are unmounted.

use thinpool::fs as tfs;

use super::{DevmapperSnapshotter, Rec, State, BASE_DEVICE, OWNER};
use crate::snapshot::{Result, SnapshotError};

impl DevmapperSnapshotter {
    pub(super) fn recover(&mut self) -> Result<()> {
        let unfinished: Vec<(String, Rec)> = self
            .meta
            .snaps
            .iter()
            .filter(|(_, r)| r.state != State::Ready)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, r) in unfinished {
            let _ = tfs::unmount(&self.mnt.join(r.seq.to_string()));
            match self.delete_device(&r.device) {
                Ok(()) => {
                    self.meta.snaps.remove(&key);
                }
                Err(SnapshotError::Pool(thinpool::Error::Busy { .. })) => continue,
                Err(e) => return Err(e),
            }
            self.save()?;
        }
        if self.meta.base.as_ref().is_some_and(|b| !b.ready) {
            self.delete_device(BASE_DEVICE)?;
            self.meta.base = None;
            self.save()?;
        }
        let named: std::collections::BTreeSet<String> =
            self.meta.snaps.values().map(|r| r.device.clone()).collect();
        let orphans: Vec<String> = self
            .pool
            .store()
            .devices
            .values()
            .filter(|d| d.owner == OWNER && !named.contains(&d.name))
            .map(|d| d.name.clone())
            .collect();
        for d in orphans {
            self.delete_device(&d)?;
        }
        // Mount points whose snapshot is gone (a crash between unmount and rmdir).
        let live: std::collections::BTreeSet<String> = self
            .meta
            .snaps
            .values()
            .map(|r| r.seq.to_string())
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.mnt) {
            for e in entries.flatten() {
                if !live.contains(&e.file_name().to_string_lossy().to_string()) {
                    let _ = tfs::unmount(&e.path());
                }
            }
        }
        Ok(())
    }

    pub(super) fn delete_device(&mut self, name: &str) -> Result<()> {
        match self.pool.delete_thin(name) {
            Ok(()) | Err(thinpool::Error::DeviceNotFound { .. }) => {
                self.drop_index(name);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
