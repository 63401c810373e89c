//! The narrow boundary between pool logic and the kernel: loop devices and
//! device-mapper verbs, nothing more. [`real::RealKernel`] speaks to the
//! kernel through the `devicemapper` and `loopdev-3` crates; [`fake::FakeKernel`]
//! models dm-thin in memory so that pool logic, recovery and crash handling
//! are tested on any host, without root.

pub mod fake;
pub mod real;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::units::{Bytes, Sectors};

/// What the kernel says about one device-mapper device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmInfo {
    /// Block device major number.
    pub major: u32,
    /// Block device minor number.
    pub minor: u32,
    /// How many holders have it open (mounts, other dm devices).
    pub open_count: i32,
    /// Whether I/O is suspended.
    pub suspended: bool,
    /// Whether a live table is loaded.
    pub live_table: bool,
}

impl DmInfo {
    /// `major:minor`, as tables name devices.
    pub fn devno(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// One line of a device-mapper table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// First sector covered.
    pub start: Sectors,
    /// Sectors covered.
    pub len: Sectors,
    /// Target type (`thin-pool`, `thin`).
    pub kind: String,
    /// Target parameters.
    pub params: String,
}

/// The kernel verbs the pool needs. Every call is one request to the
/// kernel (or one step of the fake), so a fault plan can stop at any of them.
pub trait Kernel {
    /// Attaches `file` to a loop device, reusing an existing association
    /// for the same file, and returns the device path.
    fn loop_attach(&self, file: &Path) -> Result<PathBuf>;
    /// The loop device `file` is attached to, if any.
    fn loop_find(&self, file: &Path) -> Result<Option<PathBuf>>;
    /// Detaches a loop device.
    fn loop_detach(&self, dev: &Path) -> Result<()>;
    /// Makes a loop device pick up its file's new size.
    fn loop_refresh(&self, dev: &Path) -> Result<()>;
    /// `(major, minor)` of a block device.
    fn dev_number(&self, dev: &Path) -> Result<(u32, u32)>;
    /// Size of a block device.
    fn dev_size(&self, dev: &Path) -> Result<Bytes>;
    /// Information on a dm device, `None` when it does not exist.
    fn dm_info(&self, name: &str) -> Result<Option<DmInfo>>;
    /// Creates a dm device, loads `table` and resumes it.
    fn dm_create(&self, name: &str, uuid: Option<&str>, table: &[Target]) -> Result<DmInfo>;
    /// Loads `table` as the inactive table of an existing device.
    fn dm_load(&self, name: &str, table: &[Target]) -> Result<()>;
    /// Suspends a device, flushing outstanding I/O.
    fn dm_suspend(&self, name: &str) -> Result<()>;
    /// Resumes a device, swapping in an inactive table if one is loaded.
    fn dm_resume(&self, name: &str) -> Result<()>;
    /// Removes a device; `deferred` lets the kernel finish once it is closed.
    fn dm_remove(&self, name: &str, deferred: bool) -> Result<()>;
    /// Sends a target message (`create_thin 5`, ...).
    fn dm_message(&self, name: &str, msg: &str) -> Result<Option<String>>;
    /// The status line of a single-target device.
    fn dm_status(&self, name: &str) -> Result<String>;
    /// Names of all dm devices.
    fn dm_list(&self) -> Result<Vec<String>>;
    /// Makes `/dev/mapper/<name>` for a device (no udev is assumed).
    fn ensure_node(&self, name: &str, info: &DmInfo) -> Result<PathBuf>;
    /// Removes `/dev/mapper/<name>` if this tool made it.
    fn remove_node(&self, name: &str) -> Result<()>;
    /// Discards every block of a block device.
    fn discard(&self, dev: &Path) -> Result<()>;
    /// Discards byte ranges `(offset, length)` of a block device.
    fn discard_ranges(&self, dev: &Path, ranges: &[(Bytes, Bytes)]) -> Result<()>;
    /// Reads the first `len` bytes of a device or file.
    fn read_head(&self, dev: &Path, len: usize) -> Result<Vec<u8>>;
    /// Writes `data` at offset 0 of a device or file and syncs it.
    fn write_head(&self, dev: &Path, data: &[u8]) -> Result<()>;
}

/// The path a dm device's node has.
pub fn mapper_path(name: &str) -> PathBuf {
    Path::new("/dev/mapper").join(name)
}
