//! Read-only views of the pool for `pool status` and `pool devices`.

use std::path::PathBuf;

use serde::Serialize;

use super::{Pool, IDENTITY_ID};
use crate::error::Result;
use crate::status::PoolMode;
use crate::store::{Backing, DeviceState};
use crate::units::{Bytes, DataBlocks};

/// Used, total and available bytes of one kind of space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Space {
    /// Used bytes.
    pub used: Bytes,
    /// Total bytes.
    pub total: Bytes,
    /// Bytes still available (for loop files, capped by the host's free space).
    pub available: Bytes,
    /// Used, in percent of total.
    pub used_pct: f64,
}

impl Space {
    fn new(used: u64, total: u64, host_free: Option<u64>) -> Space {
        let mut available = total.saturating_sub(used);
        if let Some(free) = host_free {
            available = available.min(free);
        }
        Space {
            used: Bytes(used),
            total: Bytes(total),
            available: Bytes(available),
            used_pct: if total == 0 {
                0.0
            } else {
                100.0 * used as f64 / total as f64
            },
        }
    }
}

/// The pool as `pool status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PoolReport {
    /// Device-mapper name.
    pub name: String,
    /// Pool uuid.
    pub uuid: String,
    /// `loop` or `direct`.
    pub mode: &'static str,
    /// Data file or device.
    pub data: PathBuf,
    /// Metadata file or device.
    pub metadata: PathBuf,
    /// Whether the pool is active in the kernel.
    pub active: bool,
    /// Data block size.
    pub block_size: Bytes,
    /// Data space (kernel figures when active).
    pub data_space: Option<Space>,
    /// Metadata space (kernel figures when active).
    pub metadata_space: Option<Space>,
    /// Transaction id (the kernel's when active).
    pub transaction_id: u64,
    /// Thin devices, the identity device excluded.
    pub thin_devices: usize,
    /// Low-water mark in data blocks.
    pub low_water_mark: DataBlocks,
    /// Zeroing of new blocks.
    pub zero_blocks: bool,
    /// Free-space guard in percent.
    pub min_free_space_pct: u8,
    /// Kernel I/O mode, when active.
    pub kernel_mode: Option<PoolMode>,
    /// Kernel asks for a metadata check.
    pub needs_check: bool,
    /// Writes fail at once when full.
    pub error_if_no_space: bool,
    /// Discards reach the data device.
    pub discard_passdown: bool,
    /// Devices whose removal is still pending.
    pub pending_deletes: usize,
}

/// One device as `pool devices` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    /// Thin id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Owner kind.
    pub owner: String,
    /// Virtual size.
    pub size: Bytes,
    /// Pool data it maps.
    pub mapped: Option<Bytes>,
    /// `active`, `inactive`, `creating` or `deleting`.
    pub state: &'static str,
    /// The device it was snapshotted from.
    pub origin: Option<String>,
    /// Its block device path when active.
    pub path: Option<PathBuf>,
    /// Creation time, seconds since the epoch.
    pub created: u64,
}

fn host_free(p: &std::path::Path) -> Option<u64> {
    let dir = p.parent()?;
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

impl Pool {
    /// The pool's status; kernel figures only when it is active (status
    /// never activates a pool the user deactivated).
    ///
    /// # Errors
    /// Kernel errors.
    pub fn status(&mut self) -> Result<PoolReport> {
        let (mode, data, metadata) = match &self.rec.backing {
            Backing::Loop {
                data_file,
                metadata_file,
            } => ("loop", data_file.clone(), metadata_file.clone()),
            Backing::Direct {
                data_dev,
                metadata_dev,
            } => ("direct", data_dev.clone(), metadata_dev.clone()),
        };
        let active = self
            .kernel
            .dm_info(&self.rec.dm_name)?
            .is_some_and(|i| i.live_table);
        let st = if active {
            Some(self.kernel_status()?)
        } else {
            None
        };
        let block = self.rec.block_size.bytes().0;
        let free = if mode == "loop" {
            host_free(&data)
        } else {
            None
        };
        let mfree = if mode == "loop" {
            host_free(&metadata)
        } else {
            None
        };
        let d = &self.store.data;
        Ok(PoolReport {
            name: self.rec.dm_name.clone(),
            uuid: self.rec.uuid.clone(),
            mode,
            data,
            metadata,
            active,
            block_size: Bytes(block),
            data_space: st
                .as_ref()
                .map(|s| Space::new(s.data_used.0 * block, s.data_total.0 * block, free)),
            metadata_space: st
                .as_ref()
                .map(|s| Space::new(s.meta_used * 4096, s.meta_total * 4096, mfree)),
            transaction_id: st
                .as_ref()
                .map(|s| s.transaction_id)
                .unwrap_or(d.transaction_id),
            thin_devices: d
                .devices
                .values()
                .filter(|x| x.id.get() != IDENTITY_ID)
                .count(),
            low_water_mark: self.rec.low_water,
            zero_blocks: self.rec.zero_blocks,
            min_free_space_pct: self.rec.min_free_pct,
            kernel_mode: st.as_ref().map(|s| s.mode),
            needs_check: st.as_ref().is_some_and(|s| s.needs_check),
            error_if_no_space: st.as_ref().is_some_and(|s| s.error_if_no_space),
            discard_passdown: st.as_ref().is_some_and(|s| s.discard_passdown),
            pending_deletes: d
                .devices
                .values()
                .filter(|x| x.state == DeviceState::Deleting)
                .count(),
        })
    }

    /// Every thin device, the identity device excluded, with mapped bytes.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn devices(&mut self) -> Result<Vec<DeviceReport>> {
        self.activate()?;
        let recs: Vec<_> = self
            .store
            .data
            .devices
            .values()
            .filter(|d| d.id.get() != IDENTITY_ID)
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(recs.len());
        for d in recs {
            let active = self.is_active(d.id)?;
            let state = match d.state {
                DeviceState::Creating => "creating",
                DeviceState::Deleting => "deleting",
                DeviceState::Ready if active => "active",
                DeviceState::Ready => "inactive",
            };
            let mapped = if d.state == DeviceState::Ready {
                Some(self.mapped(&d.name)?)
            } else {
                None
            };
            out.push(DeviceReport {
                id: d.id.get(),
                name: d.name.clone(),
                owner: d.owner.clone(),
                size: d.size.bytes(),
                mapped,
                state,
                origin: d.origin.clone(),
                path: active.then(|| crate::kernel::mapper_path(&self.thin_dm_name(d.id))),
                created: d.created,
            });
        }
        Ok(out)
    }
}
