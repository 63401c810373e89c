//! Filesystems on thin devices: making them (ext4 with Docker's proven
//! options, or xfs), growing them, and mounting them under a directory with
//! private propagation, so copies of our mounts never leak into other mount
//! namespaces and keep devices busy (Docker's "device is busy" pain).

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::tool::run;

/// Filesystem kinds a device may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// ext4 (the default).
    Ext4,
    /// xfs, always mounted `nouuid`: every snapshot shares one UUID.
    Xfs,
}

impl FsKind {
    /// Parses `ext4` or `xfs`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
    pub fn parse(s: &str) -> Result<FsKind> {
        match s {
            "ext4" => Ok(FsKind::Ext4),
            "xfs" => Ok(FsKind::Xfs),
            other => Err(Error::InvalidConfig {
                field: "filesystem",
                reason: format!("{other:?}: use ext4 or xfs"),
            }),
        }
    }

    /// The name `mount` takes.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Xfs => "xfs",
        }
    }

    /// Options every mount of this kind needs.
    pub fn required_options(self) -> &'static [&'static str] {
        match self {
            FsKind::Ext4 => &[],
            FsKind::Xfs => &["nouuid"],
        }
    }
}

/// Makes a filesystem on `dev`. ext4 gets Docker's options (no discard at
/// mkfs, inode tables and journal written now rather than lazily behind
/// the snapshots' backs) and no periodic checks.
///
/// # Errors
/// [`Error::Tool`] with the tool's message.
pub fn mkfs(dev: &Path, kind: FsKind, extra: &[String]) -> Result<()> {
    let d = dev.to_string_lossy();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    match kind {
        FsKind::Ext4 => {
            let mut args = vec![
                "-q",
                "-F",
                "-E",
                "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
            ];
            args.extend(extra);
            args.push(&d);
            run("mkfs.ext4", &args)?;
            run("tune2fs", &["-c", "-1", "-i", "0", &d])
        }
        FsKind::Xfs => {
            let mut args = vec!["-q", "-f", "-K"];
            args.extend(extra);
            args.push(&d);
            run("mkfs.xfs", &args)
        }
    }
}

/// Grows the filesystem on `dev` (mounted at `mnt` for xfs) to the device.
///
/// # Errors
/// [`Error::Tool`].
pub fn grow(dev: &Path, kind: FsKind, mnt: &Path) -> Result<()> {
    match kind {
        FsKind::Ext4 => {
            // resize2fs insists on a recent check when offline.
            let _ = run("e2fsck", &["-f", "-y", &dev.to_string_lossy()]);
            run("resize2fs", &[&dev.to_string_lossy()])
        }
        FsKind::Xfs => run("xfs_growfs", &[&mnt.to_string_lossy()]),
    }
}

/// Whether something is mounted exactly at `path` (from mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Makes `dir` a mount point with private propagation (a bind mount of
/// itself), once.
///
/// # Errors
/// [`Error::Io`].
pub fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    if !is_mounted(dir) {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| Error::io("bind-mount", dir)(e.into()))?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::io("make private", dir)(e.into()))
}

/// Mounts `dev` at `target` (created if needed).
///
/// # Errors
/// [`Error::Io`] naming the device.
pub fn mount_dev(
    dev: &Path,
    target: &Path,
    kind: FsKind,
    read_only: bool,
    options: &[String],
) -> Result<PathBuf> {
    std::fs::create_dir_all(target).map_err(Error::io("create", target))?;
    let mut opts: Vec<&str> = kind.required_options().to_vec();
    opts.extend(options.iter().map(String::as_str));
    if read_only && kind == FsKind::Ext4 {
        // A read-only mount must not replay a journal onto a shared snapshot.
        opts.push("noload");
    }
    let data = opts.join(",");
    let flags = if read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some(dev),
        target,
        Some(kind.name()),
        flags,
        if data.is_empty() {
            None
        } else {
            Some(data.as_str())
        },
    )
    .map_err(|e| Error::io("mount", dev)(e.into()))?;
    Ok(target.to_path_buf())
}

/// Unmounts `target` and removes the directory. A plain unmount comes
/// first, so the device is closed when this returns (the caller usually
/// deactivates it next); only a busy mount is detached lazily, finishing
/// when its last user goes, so copies in other namespaces die with it.
///
/// # Errors
/// [`Error::Io`].
pub fn unmount(target: &Path) -> Result<()> {
    if is_mounted(target) {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
                .map_err(|e| Error::io("unmount", target)(e.into()))?,
            Err(e) => return Err(Error::io("unmount", target)(e.into())),
        }
    }
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", target)(e)),
    }
}

/// Inodes in use on the filesystem mounted at `path`.
///
/// # Errors
/// [`Error::Io`].
pub fn used_inodes(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::io("statfs", path)(e.into()))?;
    Ok((st.files() as u64).saturating_sub(st.files_free() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_xfs_needs_nouuid() {
        assert_eq!(
            FsKind::parse("xfs").unwrap().required_options(),
            &["nouuid"]
        );
        assert!(FsKind::parse("btrfs").is_err());
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
