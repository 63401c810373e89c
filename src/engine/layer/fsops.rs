//! Filesystem operations on a leaf `name` inside an already resolved
//! directory fd. None of them follows a symlink at the leaf: stat, chown
//! and utimes use `AT_SYMLINK_NOFOLLOW`; chmod goes through an `O_PATH |
//! O_NOFOLLOW` handle and refuses symlinks; xattrs use the `l*` calls on
//! `/proc/self/fd/<dir>/<name>`, where only our own directory fd is a
//! magic link.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::meta::{Kind, Mtime};

/// The kind of a stat result.
pub(crate) fn kind(st: &Stat) -> Option<Kind> {
    Kind::of_mode(st.st_mode)
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub(crate) fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `name` in `dir` for reading, never through a symlink.
pub(crate) fn open_subdir(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rfs::openat(dir, name, flags, Mode::empty())?)
}

/// The names in a directory opened for reading, without `.` and `..`.
pub(crate) fn list_names(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = d.read() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes `name` from `dir`: unlinks a non-directory, removes a
/// directory tree depth first. Symlinks are unlinked, never followed.
pub(crate) fn remove_at(dir: impl AsFd, name: &[u8], st: &Stat) -> io::Result<()> {
    if kind(st) != Some(Kind::Dir) {
        return Ok(rfs::unlinkat(dir, name, AtFlags::empty())?);
    }
    let sub = match open_subdir(&dir, name) {
        Err(e) if e.raw_os_error() == Some(Errno::ACCESS.raw_os_error()) => {
            // Unprivileged: a 0o000 directory must be opened up to empty it.
            chmod_at(&dir, name, 0o700)?;
            open_subdir(&dir, name)?
        }
        other => other?,
    };
    for child in list_names(&sub)? {
        if let Some(cst) = lstat_at(&sub, &child)? {
            remove_at(&sub, &child, &cst)?;
        }
    }
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// `lchown` of `name` in `dir`.
pub(crate) fn chown_at(dir: impl AsFd, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid));
    Ok(rfs::chownat(
        dir,
        name,
        Some(u),
        Some(g),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// `chmod` of `name` in `dir`, refusing (silently skipping) symlinks:
/// permissions of a symlink mean nothing and chmod would follow it
/// (CVE-2021-32760).
pub(crate) fn chmod_at(dir: impl AsFd, name: &[u8], mode: u32) -> io::Result<()> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let handle = rfs::openat(&dir, name, flags, Mode::empty())?;
    if kind(&rfs::fstat(&handle)?) == Some(Kind::Symlink) {
        return Ok(());
    }
    chmod_handle(&handle, mode)
}

/// `chmod` of the object an `O_PATH` fd refers to (`fchmod` refuses
/// `O_PATH` fds; the `/proc/self/fd` link reaches the same inode).
pub(crate) fn chmod_handle(handle: &OwnedFd, mode: u32) -> io::Result<()> {
    let perm = std::fs::Permissions::from_mode(mode);
    if proc_fd_available() {
        let path = format!("/proc/self/fd/{}", handle.as_raw_fd());
        return std::fs::set_permissions(path, perm);
    }
    // Without /proc only a real fd will do; a directory can be reopened
    // through its O_PATH handle.
    let fd = rfs::openat(handle, ".", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(rfs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Timestamps with atime = mtime, as Docker sets them.
pub(crate) fn times(t: Mtime) -> Timestamps {
    let ts = Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nanos.into(),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// `lutimes` of `name` in `dir`.
pub(crate) fn utimes_at(dir: impl AsFd, name: &[u8], t: Mtime) -> io::Result<()> {
    Ok(rfs::utimensat(
        dir,
        name,
        &times(t),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::path::Path::new("/proc/self/fd").is_dir())
}

/// `/proc/self/fd/<dir>/<name>`: a path whose only symlink is the magic
/// link to our own directory fd, for the `l*xattr` calls that have no
/// `*at` form.
fn proc_path(dir: &impl AsRawFd, name: &[u8]) -> io::Result<PathBuf> {
    if !proc_fd_available() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "/proc is not mounted; xattrs of special files need /proc/self/fd",
        ));
    }
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    Ok(PathBuf::from(OsString::from_vec(p)))
}

/// `lsetxattr` of `name` in `dir`.
pub(crate) fn set_xattr_at(
    dir: &impl AsRawFd,
    name: &[u8],
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    let path = proc_path(dir, name)?;
    Ok(rfs::lsetxattr(&path, key, value, XattrFlags::empty())?)
}

/// All xattrs of `name` in `dir` (or of `dir` itself when `name` is
/// empty), sorted by name. Filesystems without xattrs yield none.
pub(crate) fn xattrs_at(dir: &impl AsFd, name: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = if name.is_empty() {
        retry_sized(|buf| rfs::flistxattr(dir, buf))?
    } else {
        let path = proc_path(&dir.as_fd(), name)?;
        retry_sized(|buf| rfs::llistxattr(&path, buf))?
    };
    let mut out = Vec::new();
    for key in list.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let value = if name.is_empty() {
            retry_sized(|buf| rfs::fgetxattr(dir, key, buf))
        } else {
            let path = proc_path(&dir.as_fd(), name)?;
            retry_sized(|buf| rfs::lgetxattr(&path, key, buf))
        };
        match value {
            Ok(v) => out.push((key.to_vec(), v)),
            // Removed between the list and the get.
            Err(e) if e.raw_os_error() == Some(Errno::NODATA.raw_os_error()) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Calls a size-probing xattr syscall with a growing buffer.
fn retry_sized(mut f: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Vec<u8>> {
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if size < (1 << 26) => size *= 4,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn removing_a_tree_never_follows_its_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let (tree, keep) = (t.path().join("tree"), t.path().join("keep"));
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::create_dir(&keep).unwrap();
        std::fs::write(keep.join("file"), b"k").unwrap();
        symlink(&keep, tree.join("a/to-keep")).unwrap();
        symlink(keep.join("file"), tree.join("a/b/to-file")).unwrap();
        std::fs::set_permissions(tree.join("a/b"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let parent = rfs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let st = lstat_at(&parent, b"tree").unwrap().unwrap();
        remove_at(&parent, b"tree", &st).unwrap();
        assert!(!tree.exists());
        assert_eq!(std::fs::read(keep.join("file")).unwrap(), b"k");
    }

    #[test]
    fn chmod_skips_symlinks_and_reads_xattrs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"").unwrap();
        symlink("f", t.path().join("l")).unwrap();
        let dir = rfs::open(t.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        chmod_at(&dir, b"l", 0o777).unwrap();
        chmod_at(&dir, b"f", 0o4700).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(t.path().join(p))
                .unwrap()
                .permissions()
                .mode()
        };
        assert_eq!(mode("f") & 0o7777, 0o4700);
        set_xattr_at(&dir, b"f", b"user.k", b"v").unwrap();
        let want = vec![(b"user.k".to_vec(), b"v".to_vec())];
        assert_eq!(xattrs_at(&dir, b"f").unwrap(), want);
        assert_eq!(xattrs_at(&dir, b"l").unwrap(), vec![]);
    }
}
