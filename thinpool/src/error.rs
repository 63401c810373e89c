//! The crate's one error type. Every variant names what it was working on,
//! so callers can match on it and users can act on the message.

use std::path::PathBuf;

use nix::errno::Errno;

/// What the kernel (or the fake kernel in tests) answered.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A system call failed with this errno.
    #[error("{0}")]
    Errno(Errno),
    /// The device-mapper library reported something without an errno.
    #[error("{0}")]
    Other(String),
}

impl KernelError {
    /// The errno, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            KernelError::Errno(e) => Some(*e),
            KernelError::Other(_) => None,
        }
    }
}

/// Errors from thin pool and thin device management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or device operation failed.
    #[error("failed to {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or device.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A device-mapper or loop request failed.
    #[error("failed to {op} {target}")]
    Kernel {
        /// What was being done.
        op: &'static str,
        /// The device or pool it was done to.
        target: String,
        /// The cause.
        #[source]
        source: KernelError,
    },
    /// The kernel offers no device-mapper.
    #[error("device-mapper is not available on this host ({} is missing): load it with `modprobe dm_thin_pool`, or run on a kernel that has it (see README: the VM)", control.display())]
    NoDeviceMapper {
        /// The control node looked for.
        control: PathBuf,
    },
    /// The store file exists but cannot be read back.
    #[error("store {} is unreadable ({reason}); restore it from a backup or run `thinsnap pool check`", path.display())]
    StoreCorrupt {
        /// The store file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// No pool has been created under this root.
    #[error("no thin pool under {}: create one with `thinsnap pool create`", root.display())]
    NoPool {
        /// The root directory.
        root: PathBuf,
    },
    /// A pool already exists under this root.
    #[error("a thin pool already exists under {}", root.display())]
    PoolExists {
        /// The root directory.
        root: PathBuf,
    },
    /// The pool on disk is not the one the store describes.
    #[error("possibly using a different thin pool than the one created under this root: {detail}")]
    IdentityMismatch {
        /// What differed.
        detail: String,
    },
    /// A direct-mode metadata device already holds data.
    #[error("metadata device {} is not blank (its first 4 KiB are not zero); pass --force to overwrite it", device.display())]
    MetadataNotBlank {
        /// The device.
        device: PathBuf,
    },
    /// A create was refused by the free-space guard.
    #[error("thin pool has {free_pct:.1}% free {space} space, below the {min_pct}% minimum: run `thinsnap pool extend --{space}-size SIZE` or remove unused devices")]
    LowSpace {
        /// `data` or `metadata`.
        space: &'static str,
        /// Free percentage now.
        free_pct: f64,
        /// The configured minimum.
        min_pct: u8,
    },
    /// The kernel reports the pool in a state that must not take writes.
    #[error("thin pool {pool} is {state}: {hint}")]
    PoolUnhealthy {
        /// The pool's dm name.
        pool: String,
        /// What the kernel reports.
        state: String,
        /// What to run.
        hint: String,
    },
    /// No device by that name.
    #[error("no thin device named {name:?}")]
    DeviceNotFound {
        /// The name asked for.
        name: String,
    },
    /// A device by that name exists.
    #[error("a thin device named {name:?} already exists")]
    DeviceExists {
        /// The name asked for.
        name: String,
    },
    /// A device name that cannot be used.
    #[error("invalid device name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Destroy was asked of a pool that still holds devices.
    #[error("thin pool still holds {count} thin device(s); remove them first or pass --force")]
    DevicesExist {
        /// How many.
        count: usize,
    },
    /// A thin id past 24 bits.
    #[error("thin id {value} does not fit the kernel's 24 bits")]
    ThinIdOutOfRange {
        /// The value.
        value: u64,
    },
    /// Every thin id is taken or quarantined.
    #[error("no free thin id is left in this pool")]
    ThinIdsExhausted,
    /// A size that cannot be parsed or is out of range.
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize {
        /// The text given.
        input: String,
        /// Why.
        reason: String,
    },
    /// A setting out of range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The store and the pool disagree in a way the tool will not guess at.
    #[error("store and pool disagree: {detail}; run `thinsnap pool check` and see its report")]
    Unreconciled {
        /// What disagrees.
        detail: String,
    },
    /// The device is held open and could not be deactivated or deleted now.
    #[error(
        "thin device {name} is busy (still open or mounted); it is marked and will be retried"
    )]
    Busy {
        /// The device name.
        name: String,
    },
    /// The pool's on-disk metadata could not be read as dm-thin's.
    #[error("cannot read the thin metadata in {}: {detail}", path.display())]
    Metadata {
        /// The metadata device or file.
        path: PathBuf,
        /// What did not look right.
        detail: String,
    },
    /// An external checking tool failed to run.
    #[error("failed to run {tool}")]
    Tool {
        /// The program.
        tool: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// The errno of a failed kernel request, if that is what this is.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { source, .. } => source.errno(),
            Error::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
