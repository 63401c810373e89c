//! Creating each kind of entry at a leaf of an in-root directory fd, and
//! its metadata in the order that keeps it: owner first (chown clears
//! setuid bits and file capabilities), then xattrs, then mode and times.
//! Symlinks never get a chmod; hardlinks get no metadata at all.
//! Leaves are created first and cleared only if the name is taken
//! ([`Applier::make_leaf`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;

use rustix::fs::{self as rfs, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::apply::{entry_fs, Applier, DirMeta};
use super::compress::read_error;
use super::error::{LayerError, Refusal};
use super::fsops::{self, kind, lstat_at};
use super::meta::Kind;
use super::names::{join, normalize};
use super::resolve::ResolveError;
use super::tarread::TarEntry;

impl Applier<'_> {
    pub(super) fn file(
        &mut self,
        dir: &OwnedFd,
        comps: &[&[u8]],
        e: &TarEntry,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let leaf = comps[comps.len() - 1];
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self
            .make_leaf(dir, comps, e, || {
                rfs::openat(dir, leaf, flags, Mode::from_raw_mode(0o600))
            })?
            .map_err(|err| LayerError::fs("create", &e.path, err))?;
        let mut f = File::from(fd);
        copy_sparse(data, &mut f, e)?;
        if self.opts.same_owner {
            let (uid, gid) = ids(e)?;
            rfs::fchown(&f, Some(uid), Some(gid))
                .map_err(|err| LayerError::fs("chown", &e.path, err))?;
        }
        self.set_xattrs(e, |k, v| Ok(rfs::fsetxattr(&f, k, v, XattrFlags::empty())?))?;
        rfs::fchmod(&f, Mode::from_raw_mode(e.mode))
            .map_err(|err| LayerError::fs("chmod", &e.path, err))?;
        rfs::futimens(&f, &fsops::times(e.mtime))
            .map_err(|err| LayerError::fs("set times of", &e.path, err))?;
        self.writeback.hand_over(f);
        Ok(())
    }

    pub(super) fn dir(
        &mut self,
        dir: &OwnedFd,
        comps: &[&[u8]],
        e: &TarEntry,
    ) -> Result<(), LayerError> {
        let leaf = comps[comps.len() - 1];
        // 0700 until the end, so an unprivileged apply can fill it. A
        // directory already there stays (the second EEXIST), contents and all.
        let made = self.make_leaf(dir, comps, e, || {
            rfs::mkdirat(dir, leaf, Mode::from_raw_mode(0o700))
        })?;
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => return Err(LayerError::fs("create directory", &e.path, err)),
        }
        self.owner_and_xattrs(dir, leaf, e)?;
        let meta = DirMeta {
            mode: e.mode,
            mtime: e.mtime,
        };
        self.dirs.insert(join(comps), meta);
        Ok(())
    }

    pub(super) fn symlink(
        &mut self,
        dir: &OwnedFd,
        comps: &[&[u8]],
        e: &TarEntry,
    ) -> Result<(), LayerError> {
        let leaf = comps[comps.len() - 1];
        if e.link.contains(&0) {
            return Err(LayerError::refused_link(&e.path, &e.link, Refusal::NulByte));
        }
        if e.link.is_empty() {
            return Err(LayerError::refused_link(
                &e.path,
                &e.link,
                Refusal::EmptyName,
            ));
        }
        // The target is stored as data; it is only ever resolved in-root.
        self.make_leaf(dir, comps, e, || {
            rfs::symlinkat(e.link.as_slice(), dir, leaf)
        })?
        .map_err(|err| LayerError::fs("create symlink", &e.path, err))?;
        self.owner_and_xattrs(dir, leaf, e)?;
        fsops::utimes_at(dir, leaf, e.mtime).map_err(entry_fs(e, "set times of"))
    }

    pub(super) fn special(
        &mut self,
        dir: &OwnedFd,
        comps: &[&[u8]],
        e: &TarEntry,
    ) -> Result<(), LayerError> {
        let leaf = comps[comps.len() - 1];
        let (ft, dev) = match e.kind {
            Kind::Char => (FileType::CharacterDevice, rfs::makedev(e.dev.0, e.dev.1)),
            Kind::Block => (FileType::BlockDevice, rfs::makedev(e.dev.0, e.dev.1)),
            _ => (FileType::Fifo, 0),
        };
        if ft != FileType::Fifo && !self.privileged {
            // Skipped, yet it still replaces what lower layers had there.
            self.clear_leaf(dir, comps, e)?;
            self.counts.skipped_devices += 1;
            return Ok(());
        }
        let made = self.make_leaf(dir, comps, e, || {
            rfs::mknodat(dir, leaf, ft, Mode::from_raw_mode(0o600), dev)
        })?;
        match made {
            Ok(()) => {}
            // Root without CAP_MKNOD (a user namespace): skip like non-root.
            Err(Errno::PERM) if ft != FileType::Fifo => {
                self.counts.skipped_devices += 1;
                return Ok(());
            }
            Err(err) => return Err(LayerError::fs("create node", &e.path, err)),
        }
        self.owner_and_xattrs(dir, leaf, e)?;
        fsops::chmod_at(dir, leaf, e.mode).map_err(entry_fs(e, "chmod"))?;
        fsops::utimes_at(dir, leaf, e.mtime).map_err(entry_fs(e, "set times of"))
    }

    /// A hardlink to a non-directory already in the root. No metadata is
    /// applied: the inode keeps its own, and changing it through a link
    /// (to a symlink) is how CVE-2021-32760 escaped.
    pub(super) fn hardlink(
        &mut self,
        e: &TarEntry,
        comps: &[&[u8]],
        dir: &OwnedFd,
    ) -> Result<(), LayerError> {
        let refuse = |why| LayerError::refused_link(&e.path, &e.link, why);
        let target = normalize(&e.link).map_err(refuse)?;
        if target == comps {
            return Ok(());
        }
        let Some((tleaf, tparent)) = target.split_last() else {
            return Err(refuse(Refusal::HardlinkTargetKind));
        };
        let tdir = match self.root.open_dir(tparent) {
            Ok(fd) => fd,
            Err(ResolveError::Missing) => return Err(refuse(Refusal::HardlinkTargetMissing)),
            Err(ResolveError::Refused(why)) => return Err(refuse(why)),
            Err(ResolveError::Io(err)) => {
                return Err(LayerError::fs("resolve the target of", &e.path, err))
            }
        };
        let st = lstat_at(&tdir, tleaf).map_err(entry_fs(e, "stat the target of"))?;
        match st.as_ref().map(kind) {
            None => return Err(refuse(Refusal::HardlinkTargetMissing)),
            Some(Some(Kind::File | Kind::Symlink | Kind::Fifo | Kind::Char | Kind::Block)) => {}
            Some(_) => return Err(refuse(Refusal::HardlinkTargetKind)),
        }
        self.clear_leaf(dir, comps, e)?;
        let leaf = comps[comps.len() - 1];
        rfs::linkat(&tdir, *tleaf, dir, leaf, rfs::AtFlags::empty())
            .map_err(|err| LayerError::fs("create hardlink", &e.path, err))
    }

    /// The `./` entry: the root's own metadata.
    pub(super) fn root_entry(&mut self, e: &TarEntry) -> Result<(), LayerError> {
        if e.kind != Kind::Dir {
            return Err(LayerError::refused(&e.path, Refusal::EmptyName));
        }
        let fd = self.root.fd().try_clone().map_err(entry_fs(e, "open"))?;
        if self.opts.same_owner {
            let (uid, gid) = ids(e)?;
            rfs::fchown(&fd, Some(uid), Some(gid))
                .map_err(|err| LayerError::fs("chown", &e.path, err))?;
        }
        self.set_xattrs(e, |k, v| {
            Ok(rfs::fsetxattr(&fd, k, v, XattrFlags::empty())?)
        })?;
        let meta = DirMeta {
            mode: e.mode,
            mtime: e.mtime,
        };
        self.dirs.insert(Vec::new(), meta);
        Ok(())
    }

    /// Ownership first (chown clears setuid bits and file capabilities),
    /// then xattrs; the caller sets the mode afterwards.
    fn owner_and_xattrs(
        &mut self,
        dir: &OwnedFd,
        leaf: &[u8],
        e: &TarEntry,
    ) -> Result<(), LayerError> {
        if self.opts.same_owner {
            let (uid, gid) = ids(e)?;
            fsops::chown_at(dir, leaf, uid.as_raw(), gid.as_raw()).map_err(entry_fs(e, "chown"))?;
        }
        self.set_xattrs(e, |k, v| fsops::set_xattr_at(dir, leaf, k, v))
    }

    /// Sets the entry's xattrs; privileged namespaces are best effort.
    fn set_xattrs(
        &mut self,
        e: &TarEntry,
        mut set: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
    ) -> Result<(), LayerError> {
        for (k, v) in &e.xattrs {
            let user = k.starts_with(b"user.");
            if !user && !self.privileged {
                self.counts.skipped_xattrs += 1;
                continue;
            }
            match set(k, v) {
                Ok(()) => {}
                Err(err) if skippable_xattr(&err, user, e.kind) => self.counts.skipped_xattrs += 1,
                Err(err) => return Err(LayerError::fs("set xattr on", &e.path, err)),
            }
        }
        Ok(())
    }
}

/// Not supported by the filesystem, or not allowed for this kind of
/// inode: skipped, except `user.*` on files and directories.
fn skippable_xattr(err: &io::Error, user: bool, kind: Kind) -> bool {
    let code = err.raw_os_error();
    let refused =
        code == Some(Errno::OPNOTSUPP.raw_os_error()) || code == Some(Errno::PERM.raw_os_error());
    refused && !(user && matches!(kind, Kind::File | Kind::Dir))
}

fn ids(e: &TarEntry) -> Result<(rfs::Uid, rfs::Gid), LayerError> {
    let bad = |what: &str| LayerError::Unsupported {
        path: super::error::lossy(&e.path),
        what: format!("{what} over 32 bits"),
    };
    let uid = u32::try_from(e.uid).map_err(|_| bad("uid"))?;
    let gid = u32::try_from(e.gid).map_err(|_| bad("gid"))?;
    Ok((rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid)))
}

/// Copies the entry's data, seeking over all-zero blocks so zero runs
/// become holes (cheap on thin devices; a zero bomb stays sparse).
fn copy_sparse(data: &mut dyn Read, f: &mut File, e: &TarEntry) -> Result<(), LayerError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    // Whether the last bytes were skipped: only then is the size set.
    let mut hole_at_end = false;
    let write_err = |err| LayerError::fs("write", &e.path, err);
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(read_error(err)),
        };
        hole_at_end = buf[..n].iter().all(|b| *b == 0);
        if hole_at_end {
            f.seek(SeekFrom::Current(n as i64)).map_err(write_err)?;
        } else {
            f.write_all(&buf[..n]).map_err(write_err)?;
        }
        total += n as u64;
    }
    // The reader stops at the entry's size; a shorter entry is an error there.
    debug_assert_eq!(total, e.size);
    if hole_at_end {
        f.set_len(total).map_err(write_err)?;
    }
    Ok(())
}
