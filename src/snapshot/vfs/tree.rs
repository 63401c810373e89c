//! Directory trees for the vfs driver: the faithful copy of a parent that
//! `prepare` and `view` make, the removal of a snapshot's tree, and its
//! disk usage.
//!
//! The copy walks both trees through directory file descriptors and the
//! `*at` calls with `O_NOFOLLOW`, so a symlink swapped into the source
//! while it is copied can never lead the copy out of the snapshot. It keeps
//! what a container image relies on: file types (devices and fifos need
//! root, as with `cp -a`), hardlinks within the tree, ownership, modes with
//! the setuid/setgid/sticky bits, access and modification times, extended
//! attributes (ACLs and file capabilities included), and holes.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    self as rfs, AtFlags, Dir, FileType, Gid, Mode, OFlags, SeekFrom, Stat, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;

use crate::snapshot::{Result, SnapshotError, Usage};

/// Largest piece handed to one `copy_file_range` call.
const COPY_CHUNK: usize = 1 << 30;
/// Buffer of the read/write fallback when `copy_file_range` is refused.
const FALLBACK_BUF: usize = 1 << 20;

/// Maps an I/O failure to [`SnapshotError::Io`] naming the path.
fn err<E: Into<io::Error>>(op: &'static str, path: &Path) -> impl FnOnce(E) -> SnapshotError {
    let path = path.to_path_buf();
    move |e| SnapshotError::Io {
        op,
        path,
        source: e.into(),
    }
}

/// Copies the tree at `src` to `dst`, which must not exist yet.
///
/// # Errors
/// [`SnapshotError::Io`] naming the file that could not be read or made;
/// whatever was copied so far stays for the caller to remove.
pub(super) fn copy_tree(src: &Path, dst: &Path, privileged: bool) -> Result<()> {
    let src_fd = open_dir(rfs::CWD, src, src)?;
    let st = Meta::of(&rfs::fstat(&src_fd).map_err(err("stat", src))?);
    rfs::mkdir(dst, Mode::from_raw_mode(0o700)).map_err(err("create directory", dst))?;
    let dst_fd = open_dir(rfs::CWD, dst, dst)?;
    let mut copier = Copier {
        links: HashMap::new(),
        dst_root: open_dir(rfs::CWD, dst, dst)?,
        privileged,
    };
    let at = At {
        src: src.to_path_buf(),
        dst: dst.to_path_buf(),
        rel: PathBuf::new(),
    };
    copier.copy_dir(src_fd.as_fd(), dst_fd.as_fd(), &at)?;
    copier.finish(Obj::Fd(dst_fd.as_fd()), Obj::Fd(src_fd.as_fd()), &at, &st)
}

fn open_dir<P: rustix::path::Arg>(dir: BorrowedFd<'_>, name: P, path: &Path) -> Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::empty()).map_err(err("open directory", path))
}

/// Where the walk is: full paths (for messages and the path-based xattr
/// calls) and the path relative to the destination root (for hardlinks).
struct At {
    src: PathBuf,
    dst: PathBuf,
    rel: PathBuf,
}

impl At {
    fn child(&self, name: &CStr) -> At {
        let name = OsStr::from_bytes(name.to_bytes());
        At {
            src: self.src.join(name),
            dst: self.dst.join(name),
            rel: self.rel.join(name),
        }
    }
}

/// The parts of `struct stat` the copy keeps.
struct Meta {
    kind: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    dev: u64,
    ino: u64,
    nlink: u64,
    rdev: u64,
    size: u64,
    times: Timestamps,
}

impl Meta {
    // The field widths of `struct stat` differ between architectures, so
    // some of these casts are no-ops on one and widenings on another.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &Stat) -> Meta {
        Meta {
            kind: FileType::from_raw_mode(st.st_mode as _),
            mode: (st.st_mode as u32) & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            rdev: st.st_rdev as u64,
            size: st.st_size as u64,
            times: Timestamps {
                last_access: Timespec {
                    tv_sec: st.st_atime as i64,
                    tv_nsec: st.st_atime_nsec as _,
                },
                last_modification: Timespec {
                    tv_sec: st.st_mtime as i64,
                    tv_nsec: st.st_mtime_nsec as _,
                },
            },
        }
    }
}

/// A file to read or change attributes of: an open descriptor, or (for
/// symlinks and special files, which cannot be opened for that) a name in
/// an open directory plus its full path for the `l*xattr` calls.
#[derive(Clone, Copy)]
enum Obj<'a> {
    Fd(BorrowedFd<'a>),
    At {
        dir: BorrowedFd<'a>,
        name: &'a CStr,
        path: &'a Path,
    },
}

struct Copier {
    /// The first copy of every inode with more than one link, by (device,
    /// inode), relative to `dst_root`: later names become hardlinks to it.
    links: HashMap<(u64, u64), PathBuf>,
    dst_root: OwnedFd,
    /// Whether we may give files away (`CAP_CHOWN`).
    privileged: bool,
}

impl Copier {
    fn copy_dir(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>, at: &At) -> Result<()> {
        let entries = Dir::read_from(src).map_err(err("read directory", &at.src))?;
        for entry in entries {
            let entry = entry.map_err(err("read directory", &at.src))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let child = at.child(name);
            let st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(err("stat", &child.src))?;
            self.copy_entry(src, dst, name, &child, &Meta::of(&st))?;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        at: &At,
        st: &Meta,
    ) -> Result<()> {
        if st.kind != FileType::Directory && st.nlink > 1 {
            if let Some(first) = self.links.get(&(st.dev, st.ino)) {
                return rfs::linkat(&self.dst_root, first, dst, name, AtFlags::empty())
                    .map_err(err("create hardlink", &at.dst));
            }
            self.links.insert((st.dev, st.ino), at.rel.clone());
        }
        let here = |dir| Obj::At {
            dir,
            name,
            path: &at.dst,
        };
        let there = |dir| Obj::At {
            dir,
            name,
            path: &at.src,
        };
        match st.kind {
            FileType::Directory => {
                rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(err("create directory", &at.dst))?;
                let s = open_dir(src, name, &at.src)?;
                let d = open_dir(dst, name, &at.dst)?;
                self.copy_dir(s.as_fd(), d.as_fd(), at)?;
                self.finish(Obj::Fd(d.as_fd()), Obj::Fd(s.as_fd()), at, st)
            }
            FileType::RegularFile => self.copy_file(src, dst, name, at, st),
            FileType::Symlink => {
                let target =
                    rfs::readlinkat(src, name, Vec::new()).map_err(err("read symlink", &at.src))?;
                rfs::symlinkat(&target, dst, name).map_err(err("create symlink", &at.dst))?;
                self.finish(here(dst), there(src), at, st)
            }
            _ => {
                rfs::mknodat(dst, name, st.kind, Mode::from_raw_mode(0o600), st.rdev)
                    .map_err(err("create special file", &at.dst))?;
                self.finish(here(dst), there(src), at, st)
            }
        }
    }

    fn copy_file(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        at: &At,
        st: &Meta,
    ) -> Result<()> {
        let read = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let s =
            File::from(rfs::openat(src, name, read, Mode::empty()).map_err(err("open", &at.src))?);
        let create =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let d = File::from(
            rfs::openat(dst, name, create, Mode::from_raw_mode(0o600))
                .map_err(err("create", &at.dst))?,
        );
        copy_data(&s, &d, st.size).map_err(err("copy data to", &at.dst))?;
        self.finish(Obj::Fd(d.as_fd()), Obj::Fd(s.as_fd()), at, st)
    }

    /// Gives the copy the source's attributes. The order matters: `chown`
    /// clears setuid/setgid bits and file capabilities, so it goes first;
    /// user xattrs need write permission, so they go before the mode;
    /// times go last because every other change touches the ctime/mtime.
    fn finish(&self, dst: Obj<'_>, src: Obj<'_>, at: &At, st: &Meta) -> Result<()> {
        self.chown(dst, st)
            .map_err(err("change owner of", &at.dst))?;
        copy_xattrs(src, dst, at)?;
        let mode = Mode::from_raw_mode(st.mode);
        match dst {
            Obj::Fd(fd) => rfs::fchmod(fd, mode),
            // Symlinks have no mode of their own on Linux.
            Obj::At { .. } if st.kind == FileType::Symlink => Ok(()),
            Obj::At { dir, name, .. } => rfs::chmodat(dir, name, mode, AtFlags::empty()),
        }
        .map_err(err("change mode of", &at.dst))?;
        match dst {
            Obj::Fd(fd) => rfs::futimens(fd, &st.times),
            Obj::At { dir, name, .. } => {
                rfs::utimensat(dir, name, &st.times, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
        .map_err(err("set times of", &at.dst))
    }

    fn chown(&self, dst: Obj<'_>, st: &Meta) -> rustix::io::Result<()> {
        let (uid, gid) = (Some(Uid::from_raw(st.uid)), Some(Gid::from_raw(st.gid)));
        let r = match dst {
            Obj::Fd(fd) => rfs::fchown(fd, uid, gid),
            Obj::At { dir, name, .. } => {
                rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
        };
        match r {
            // Like `cp -a`: without CAP_CHOWN the copy keeps the caller as
            // owner (an unprivileged caller can only have its own files).
            Err(Errno::PERM) if !self.privileged => Ok(()),
            r => r,
        }
    }
}

/// Copies the file's data, keeping holes: only the ranges `SEEK_DATA`
/// reports are copied, then the length is set so a trailing hole stays.
fn copy_data(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut pos = 0;
    while pos < len {
        let start = match rfs::seek(src, SeekFrom::Data(pos)) {
            Ok(start) => start,
            // No data after `pos`: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if start >= len {
            break;
        }
        let end = rfs::seek(src, SeekFrom::Hole(start))?.min(len);
        copy_range(src, dst, start, end)?;
        pos = end;
    }
    dst.set_len(len)
}

/// Copies `start..end` in the kernel (no round trip through user space;
/// filesystems that can share extents do so), or with reads and writes
/// where `copy_file_range` is refused.
fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> io::Result<()> {
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from(end - off_in).map_or(COPY_CHUNK, |n| n.min(COPY_CHUNK));
        match rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            // The source shrank while we copied: what is left is gone.
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
                return copy_range_rw(src, dst, off_in, end)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_range_rw(src: &File, dst: &File, mut off: u64, end: u64) -> io::Result<()> {
    let mut buf = vec![0u8; FALLBACK_BUF];
    while off < end {
        let want = usize::try_from(end - off).map_or(buf.len(), |n| n.min(buf.len()));
        let got = src.read_at(&mut buf[..want], off)?;
        if got == 0 {
            return Ok(());
        }
        dst.write_all_at(&buf[..got], off)?;
        off += got as u64;
    }
    Ok(())
}

fn copy_xattrs(src: Obj<'_>, dst: Obj<'_>, at: &At) -> Result<()> {
    let names = list_xattrs(src).map_err(err("list extended attributes of", &at.src))?;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let value = match get_xattr(src, name) {
            Ok(v) => v,
            // Removed since it was listed.
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(err("read extended attribute of", &at.src)(e)),
        };
        let set = match dst {
            Obj::Fd(fd) => rfs::fsetxattr(fd, name, &value, XattrFlags::empty()),
            Obj::At { path, .. } => rfs::lsetxattr(path, name, &value, XattrFlags::empty()),
        };
        set.map_err(err("set extended attribute of", &at.dst))?;
    }
    Ok(())
}

/// The NUL-separated attribute names.
fn list_xattrs(obj: Obj<'_>) -> rustix::io::Result<Vec<u8>> {
    loop {
        let len = match obj {
            Obj::Fd(fd) => rfs::flistxattr_query(fd),
            Obj::At { path, .. } => rfs::llistxattr_query(path),
        };
        let len = match len {
            Ok(len) => len,
            // The filesystem keeps no extended attributes.
            Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; len];
        let got = match obj {
            Obj::Fd(fd) => rfs::flistxattr(fd, &mut buf[..]),
            Obj::At { path, .. } => rfs::llistxattr(path, &mut buf[..]),
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // An attribute was added between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn get_xattr(obj: Obj<'_>, name: &[u8]) -> rustix::io::Result<Vec<u8>> {
    loop {
        let len = match obj {
            Obj::Fd(fd) => rfs::fgetxattr_query(fd, name),
            Obj::At { path, .. } => rfs::lgetxattr_query(path, name),
        }?;
        let mut buf = vec![0u8; len];
        let got = match obj {
            Obj::Fd(fd) => rfs::fgetxattr(fd, name, &mut buf[..]),
            Obj::At { path, .. } => rfs::lgetxattr(path, name, &mut buf[..]),
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes a tree (or a single file); one that is already gone is fine
/// (recovery may run after a removal that got that far).
///
/// # Errors
/// [`SnapshotError::Io`].
pub(super) fn remove_tree(path: &Path) -> Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(path),
        _ => std::fs::remove_dir_all(path),
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        // Without CAP_DAC_OVERRIDE a directory without write or search
        // permission (a layer may ship one) cannot be emptied: open it up
        // and try again.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path).map_err(err("remove", path))
        }
        Err(e) => Err(err("remove", path)(e)),
    }
}

/// Gives the owner full access to every directory under `path`, so far
/// as it can (best effort: the retried removal reports what is left).
fn open_up(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            open_up(&entry.path());
        }
    }
}

/// Allocated bytes (blocks × 512, each inode once however many links it
/// has) and inodes of the tree at `root`, the root included.
///
/// # Errors
/// [`SnapshotError::Io`] when a directory or file cannot be read.
pub(super) fn usage(root: &Path) -> Result<Usage> {
    let meta = std::fs::symlink_metadata(root).map_err(err("stat", root))?;
    let mut usage = Usage {
        size: meta.blocks() * 512,
        inodes: 1,
    };
    let mut seen = HashSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(err("read directory", &dir))? {
            let entry = entry.map_err(err("read directory", &dir))?;
            let path = entry.path();
            // `DirEntry::metadata` does not follow symlinks.
            let meta = entry.metadata().map_err(err("stat", &path))?;
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            usage.size += meta.blocks() * 512;
            usage.inodes += 1;
        }
    }
    Ok(usage)
}

/// Flushes the filesystem holding `path` (every dirty page on it, which
/// is cheaper than an fsync per copied file and covers the directories).
///
/// # Errors
/// [`SnapshotError::Io`].
pub(super) fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(err("open", path))?;
    rfs::syncfs(&dir).map_err(err("sync the filesystem of", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileTypeExt};

    #[test]
    fn copy_keeps_types_modes_times_and_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("dir")).unwrap();
        std::fs::write(src.join("dir/file"), "data").unwrap();
        std::fs::hard_link(src.join("dir/file"), src.join("again")).unwrap();
        symlink("dir/file", src.join("link")).unwrap();
        let fifo = src.join("fifo");
        rfs::mknodat(
            rfs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        std::fs::set_permissions(src.join("dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst, false).unwrap();
        let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("again")).unwrap(), "data");
        assert_eq!(
            meta(&dst.join("again")).ino(),
            meta(&dst.join("dir/file")).ino()
        );
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("dir/file")
        );
        assert!(meta(&dst.join("fifo")).file_type().is_fifo());
        assert_eq!(meta(&dst.join("fifo")).mode() & 0o7777, 0o640);
        assert_eq!(meta(&dst.join("dir")).mode() & 0o7777, 0o750);
        for rel in ["dir", "dir/file", "link", ""] {
            let (s, c) = (meta(&src.join(rel)), meta(&dst.join(rel)));
            assert_eq!(
                (c.mtime(), c.mtime_nsec()),
                (s.mtime(), s.mtime_nsec()),
                "{rel}"
            );
        }
        assert!(
            copy_tree(&src, &dst, false).is_err(),
            "the destination exists"
        );
    }

    #[test]
    fn the_read_write_fallback_copies_a_range() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * FALLBACK_BUF + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(d.path().join("a"), &data).unwrap();
        let src = File::open(d.path().join("a")).unwrap();
        let dst = File::create(d.path().join("b")).unwrap();
        copy_range_rw(&src, &dst, 5, data.len() as u64).unwrap();
        let copied = std::fs::read(d.path().join("b")).unwrap();
        assert_eq!(&copied[5..], &data[5..]);
        assert!(copied[..5].iter().all(|b| *b == 0));
    }

    #[test]
    fn usage_counts_each_inode_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 8192]).unwrap();
        let one = usage(d.path()).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        let linked = usage(d.path()).unwrap();
        assert_eq!(one.inodes, 2);
        assert_eq!(linked.inodes, 2);
        assert_eq!(linked.size, one.size);
        assert!(one.size >= 8192);
    }

    #[test]
    fn removing_what_is_gone_or_a_file_works() {
        let d = tempfile::tempdir().unwrap();
        remove_tree(&d.path().join("missing")).unwrap();
        std::fs::write(d.path().join("file"), "x").unwrap();
        remove_tree(&d.path().join("file")).unwrap();
        assert!(!d.path().join("file").exists());
    }
}
