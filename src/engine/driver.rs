//! Picks the storage driver for a root: `vfs` (directories, a full copy per
//! snapshot; runs anywhere) or `devmapper` (thin snapshots in the pool).

use std::path::Path;

use super::{EngineError, Result};
use crate::snapshot::devmapper::{DevmapperSnapshotter, DmSettings};
use crate::snapshot::{SnapshotError, Snapshotter};

/// A driver with its settings.
#[derive(Clone, Debug)]
pub struct Driver {
    /// `devmapper` or `vfs`.
    pub name: String,
    /// Settings of the devmapper driver.
    pub devmapper: DmSettings,
}

impl Driver {
    /// A driver by name with default settings.
    pub fn named(name: &str) -> Driver {
        Driver {
            name: name.to_string(),
            devmapper: DmSettings::default(),
        }
    }
}

/// The drivers there are.
pub const DRIVERS: [&str; 2] = ["devmapper", "vfs"];

/// The default driver.
pub const DEFAULT: &str = "devmapper";

/// Opens the named driver's snapshotter under `root`.
///
/// # Errors
/// An unknown driver, or the driver's own failure to open.
pub fn open(root: &Path, driver: &Driver) -> Result<Box<dyn Snapshotter>> {
    match driver.name.as_str() {
        "vfs" => Ok(Box::new(crate::snapshot::vfs::VfsSnapshotter::open(
            &root.join("snapshots").join("vfs"),
        )?)),
        "devmapper" => open_devmapper(root, &driver.devmapper),
        other => Err(EngineError::Snapshot(SnapshotError::InvalidKey {
            key: other.to_string(),
            reason: "unknown storage driver: use devmapper or vfs",
        })),
    }
}

fn open_devmapper(root: &Path, settings: &DmSettings) -> Result<Box<dyn Snapshotter>> {
    if !thinpool::pool::pool_dir(root).join("store").exists() {
        return Err(EngineError::Pool(Box::new(thinpool::Error::NoPool {
            root: root.to_path_buf(),
        })));
    }
    Ok(Box::new(DevmapperSnapshotter::open(
        root,
        settings.clone(),
    )?))
}
