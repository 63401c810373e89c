//! The snapshotter interface the engine stores filesystems through, in
//! containerd's vocabulary: `key` names an active (or view) snapshot,
//! `name` a committed one; both share one namespace. Drivers: `vfs` (plain
//! directories, a full copy per snapshot) and, later, `devmapper`.

pub mod conformance;
pub mod devmapper;
pub mod inodes;
pub mod vfs;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What kind of snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-only view of a committed snapshot.
    View,
    /// Writable, not yet committed.
    Active,
    /// Committed: immutable; may be a parent.
    Committed,
}

/// One snapshot's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Key (active/view) or name (committed).
    pub name: String,
    /// Committed parent, if any.
    pub parent: Option<String>,
    /// Kind.
    pub kind: Kind,
    /// Creation time, RFC 3339.
    pub created: String,
}

/// A mount a caller would perform to see the snapshot's filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type (`bind`, `ext4`, `xfs`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Source directory or block device.
    pub source: String,
    /// Mount options (`rbind`, `ro`, `nouuid`, ...).
    pub options: Vec<String>,
}

/// Space a snapshot uses on its own (not counting its parents).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// A snapshot's block device (devmapper driver), as `inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The pool's thin id.
    pub id: u32,
    /// The device's name in the pool.
    pub name: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// The device-mapper node (present while the device is active).
    pub path: PathBuf,
}

/// Errors of snapshotters.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot by that key or name.
    #[error("snapshot {key:?} does not exist")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The key or name is taken.
    #[error("snapshot {key:?} already exists")]
    Exists {
        /// The key.
        key: String,
    },
    /// The operation does not fit the snapshot's kind or state
    /// (committing a view, a parent that is not committed, removing a
    /// snapshot that has children, ...).
    #[error("snapshot {key:?}: {reason}")]
    Precondition {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A key or name that cannot be used.
    #[error("invalid snapshot key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("failed to {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The thin pool failed (devmapper driver).
    #[error(transparent)]
    Pool(#[from] thinpool::Error),
}

/// Result of snapshotter calls.
pub type Result<T> = std::result::Result<T, SnapshotError>;

/// Storage as the engine sees it. Rules (containerd's):
/// - `prepare(key, parent)`: a new active snapshot, empty or on a committed parent;
/// - `view(key, parent)`: a read-only snapshot of a committed parent;
/// - `commit(name, key)`: the active `key` becomes committed `name`; `key` is consumed;
/// - `remove(key)`: refused for a committed snapshot that has children;
/// - active snapshots and views can never be parents.
pub trait Snapshotter {
    /// The driver's name (`vfs`, `devmapper`).
    fn driver(&self) -> &'static str;
    /// New active snapshot.
    fn prepare(&mut self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// New active snapshot that is used only through [`Snapshotter::path`]
    /// and [`Snapshotter::device`], which make it ready on first use: a
    /// driver may then leave work (activating a device) until then.
    fn prepare_idle(&mut self, key: &str, parent: Option<&str>) -> Result<()> {
        self.prepare(key, parent).map(drop)
    }
    /// New read-only view of a committed snapshot.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>>;
    /// The mounts for an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Commits active `key` as `name`.
    fn commit(&mut self, name: &str, key: &str) -> Result<()>;
    /// Removes a snapshot.
    fn remove(&mut self, key: &str) -> Result<()>;
    /// One snapshot's metadata.
    fn stat(&self, key: &str) -> Result<Info>;
    /// Space used by the snapshot itself.
    fn usage(&mut self, key: &str) -> Result<Usage>;
    /// Bytes the snapshot holds beyond its parent (`ps`'s SIZE): the size
    /// part of [`Snapshotter::usage`], which a driver may find without
    /// counting inodes.
    fn size(&mut self, key: &str) -> Result<u64> {
        Ok(self.usage(key)?.size)
    }
    /// Every snapshot, parents before children.
    fn walk(&self) -> Result<Vec<Info>>;
    /// Makes the snapshot's filesystem reachable at a directory in this
    /// process (vfs: its directory; devmapper: a mount under the root)
    /// and returns it. Works for every kind (committed: read-only use only).
    fn path(&mut self, key: &str) -> Result<PathBuf>;
    /// Undoes [`Snapshotter::path`] when the driver had to mount.
    fn release(&mut self, key: &str) -> Result<()>;
    /// The snapshot's block device, activated, when the driver has one
    /// (devmapper); `None` for drivers without block devices (vfs).
    fn device(&mut self, _key: &str) -> Result<Option<PathBuf>> {
        Ok(None)
    }
    /// The snapshot's block device record, when the driver has one.
    fn device_info(&self, _key: &str) -> Result<Option<DeviceInfo>> {
        Ok(None)
    }
    /// Commits the current content of active `key` as a new committed
    /// snapshot `name` with the same parent, keeping `key` active, when the
    /// driver can do it without copying data (devmapper: a thin snapshot).
    /// Returns `false`, having done nothing, when it cannot (vfs).
    fn commit_copy(&mut self, _name: &str, _key: &str) -> Result<bool> {
        Ok(false)
    }
    /// The paths of the parent's tree (relative, no leading `/`; `""` is
    /// the root) whose inodes may differ in active snapshot `key`, for a
    /// diff that reads only those ([`crate::engine::layer::Scope`]).
    /// `None` when the driver cannot tell: then everything is compared.
    /// Call it while `key` and its parent are reachable through
    /// [`Snapshotter::path`]; changes made after it returns are not
    /// covered.
    fn changed_paths(&mut self, _key: &str) -> Result<Option<BTreeSet<Vec<u8>>>> {
        Ok(None)
    }
    /// Grows an active snapshot's device and filesystem to `size` bytes.
    /// Drivers without block devices refuse.
    fn grow(&mut self, key: &str, _size: u64) -> Result<()> {
        Err(SnapshotError::Precondition {
            key: key.to_string(),
            reason: format!("the {} driver has no block devices to grow", self.driver()),
        })
    }
}
