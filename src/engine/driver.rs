//! Picks the storage driver for a root: `vfs` (directories, a full copy per
//! snapshot; runs anywhere) or `devmapper` (thin snapshots in the pool).

use std::path::Path;

use super::{EngineError, Result};
use crate::snapshot::{SnapshotError, Snapshotter};

/// The drivers there are.
pub const DRIVERS: [&str; 2] = ["devmapper", "vfs"];

/// The default driver.
pub const DEFAULT: &str = "devmapper";

/// Opens the named driver's snapshotter under `root`.
///
/// # Errors
/// An unknown driver, or the driver's own failure to open.
pub fn open(root: &Path, name: &str) -> Result<Box<dyn Snapshotter>> {
    match name {
        "vfs" => Ok(Box::new(crate::snapshot::vfs::VfsSnapshotter::open(
            &root.join("snapshots").join("vfs"),
        )?)),
        "devmapper" => open_devmapper(root),
        other => Err(EngineError::Snapshot(SnapshotError::InvalidKey {
            key: other.to_string(),
            reason: "unknown storage driver: use devmapper or vfs",
        })),
    }
}

fn open_devmapper(root: &Path) -> Result<Box<dyn Snapshotter>> {
    if !thinpool::pool::pool_dir(root).join("store").exists() {
        return Err(EngineError::Pool(Box::new(thinpool::Error::NoPool {
            root: root.to_path_buf(),
        })));
    }
    Err(EngineError::Snapshot(SnapshotError::Precondition {
        key: "devmapper".into(),
        reason: "image layers on the thin pool are not available in this build yet; use --driver vfs for images".into(),
    }))
}
