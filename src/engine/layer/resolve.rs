//! In-root path resolution. Every parent directory is opened from the
//! root fd with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a
//! symlink met on the way (`a -> ../../outside`, `a -> /etc`) resolves as
//! if the root were `/` and can never lead outside it; `..` is clamped
//! at the root by the kernel. Missing parents are created one component
//! at a time, each relative to the fd of its already resolved parent.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::Refusal;
use super::names::join;

/// Why a directory could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// Refused for safety or meaning (dangling symlink, loop, not a dir).
    Refused(Refusal),
    /// Some component does not exist (only from [`Root::open_dir`]).
    Missing,
    /// Another failure.
    Io(io::Error),
}

impl From<Errno> for ResolveError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::NOENT => ResolveError::Missing,
            Errno::NOTDIR => ResolveError::Refused(Refusal::ParentNotDirectory),
            Errno::LOOP => ResolveError::Refused(Refusal::SymlinkLoop),
            e => ResolveError::Io(e.into()),
        }
    }
}

/// The root of an extraction: a directory fd everything is resolved from.
pub(crate) struct Root {
    fd: OwnedFd,
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens `path` (followed: the caller chose it) as the root.
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rfs::open(path, flags, Mode::empty())?;
        Ok(Root { fd })
    }

    /// The root directory fd (opened for reading).
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Opens the directory `comps` (empty: the root) as an `O_PATH` fd,
    /// resolving symlinks inside the root.
    pub(crate) fn open_dir(&self, comps: &[&[u8]]) -> Result<OwnedFd, ResolveError> {
        let path = if comps.is_empty() {
            b".".to_vec()
        } else {
            join(comps)
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        open_in_root(&self.fd, &path, flags)
    }

    /// Like [`Root::open_dir`], creating missing directories (mode 0755,
    /// as Docker does for implied parents); `made` counts them.
    ///
    /// The walk goes one component at a time from the root fd, which is
    /// linear in the depth: a plain directory is opened with `O_NOFOLLOW`
    /// relative to its (already in-root) parent; only a symlink sends the
    /// prefix through `openat2(RESOLVE_IN_ROOT)` again.
    pub(crate) fn open_dir_creating(
        &self,
        comps: &[&[u8]],
        made: &mut u64,
    ) -> Result<OwnedFd, ResolveError> {
        match self.open_dir(comps) {
            Err(ResolveError::Missing) => {}
            other => return other,
        }
        let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut fd = self.open_dir(&[])?;
        for (i, comp) in comps.iter().enumerate() {
            fd = match rfs::openat(&fd, *comp, step, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::NOENT) => {
                    rfs::mkdirat(&fd, *comp, Mode::from_raw_mode(0o755))?;
                    *made += 1;
                    rfs::openat(&fd, *comp, step, Mode::empty())?
                }
                // A symlink (or not a directory): resolve it in-root.
                Err(Errno::NOTDIR | Errno::LOOP) => match self.open_dir(&comps[..=i]) {
                    // It exists, yet resolving it found nothing: a symlink
                    // whose in-root target is missing.
                    Err(ResolveError::Missing) => {
                        return Err(ResolveError::Refused(Refusal::DanglingParent))
                    }
                    other => other?,
                },
                Err(e) => return Err(e.into()),
            };
        }
        Ok(fd)
    }
}

/// `openat2` confined to the tree under `dir`, retrying the `EAGAIN` the
/// kernel returns when a concurrent rename makes `..` resolution unsafe.
fn open_in_root(dir: impl AsFd, path: &[u8], flags: OFlags) -> Result<OwnedFd, ResolveError> {
    let mut tries = 0;
    loop {
        match rfs::openat2(&dir, path, flags, Mode::empty(), IN_ROOT) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 64 => tries += 1,
            Err(Errno::NOSYS) => {
                return Err(ResolveError::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "openat2 is not available (Linux 5.6 or later is required)",
                )))
            }
            r => return Ok(r?),
        }
    }
}

/// Opens `rel` under `dir` with no symlink allowed anywhere on the way
/// (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`): for reading trees. Opened
/// `O_NOATIME` where allowed (see [`open_for_reading`]).
pub(crate) fn open_beneath(dir: impl AsFd, rel: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut noatime = OFlags::NOATIME;
    let mut tries = 0;
    loop {
        match rfs::openat2(
            &dir,
            path,
            flags | noatime | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            how,
        ) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 64 => tries += 1,
            // Only the owner (or CAP_FOWNER) may ask for O_NOATIME.
            Err(Errno::PERM) if !noatime.is_empty() => noatime = OFlags::empty(),
            r => return Ok(r?),
        }
    }
}

/// Opens the directory `path` (followed: the caller chose it) as the root
/// of a tree to read, with `O_NOATIME` where the kernel allows it: the
/// owner or CAP_FOWNER. Reading a container for a diff, a commit or an
/// export must not change it. Under `relatime` the first read of an
/// extracted file rewrites its inode (its atime is not newer than its
/// mtime), and on ext4 every inode-table block so dirtied joins the next
/// diff's scope (see `thinpool::ext4`), until an export alone could push
/// commit back to walking the whole tree.
pub(crate) fn open_for_reading(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rfs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => Ok(rfs::open(path, flags, Mode::empty())?),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        symlink("../../outside", root.join("up")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let r = Root::open(&root).unwrap();
        // `up` clamps to the root, which has no `outside`.
        assert!(matches!(r.open_dir(&[b"up"]), Err(ResolveError::Missing)));
        let mut made = 0;
        assert!(matches!(
            r.open_dir_creating(&[b"up", b"x"], &mut made),
            Err(ResolveError::Refused(Refusal::DanglingParent))
        ));
        assert_eq!(made, 0);
        assert!(r.open_dir(&[b"abs"]).is_ok());
        assert!(matches!(
            r.open_dir(&[b"loop1"]),
            Err(ResolveError::Refused(Refusal::SymlinkLoop))
        ));
        r.open_dir_creating(&[b"abs", b"n1", b"n2"], &mut made)
            .unwrap();
        assert_eq!(made, 2);
        assert!(root.join("real/n1/n2").is_dir());
        assert_eq!(
            std::fs::read_dir(t.path().join("outside")).unwrap().count(),
            0
        );
    }
}
