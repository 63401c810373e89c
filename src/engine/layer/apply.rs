//! Applying a layer tar onto a directory. Each entry's name is normalised
//! ([`super::names`]), its parent opened inside the root ([`super::resolve`]),
//! and the leaf created with `*at` calls relative to that parent fd, never
//! following a symlink at the leaf ([`super::create`]). Whiteouts are in
//! [`super::whiteout`].
//! Directory modes and mtimes are set after all entries, because creating
//! entries changes a directory's mtime and a read-only mode would block
//! them.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, Mode};
use rustix::io::Errno;

use super::compress::{decompress_detect, read_error, Limited};
use super::error::{LayerError, Limit};
use super::fsops::{self, kind, lstat_at};
use super::meta::{Kind, Mtime};
use super::names::{join, normalize, whiteout, Whiteout};
use super::resolve::{ResolveError, Root};
use super::tarread::{TarEntry, TarReader};
use super::writeback::Writeback;
use crate::engine::digest::{Digest, DigestReader};

/// Caps and ownership policy for [`apply_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Most uncompressed bytes (tar headers and data) to read.
    pub max_uncompressed: u64,
    /// Most tar entries.
    pub max_entries: u64,
    /// Largest PAX or GNU long-name header, in bytes.
    pub max_pax_bytes: u64,
    /// Apply the archive's uid/gid (needs root).
    pub same_owner: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            max_uncompressed: 64 << 30,
            max_entries: 1 << 22,
            max_pax_bytes: 1 << 20,
            same_owner: rustix::process::geteuid().is_root(),
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Tar entries processed (whiteouts included, extension headers not).
    pub entries: u64,
    /// Whiteouts (and opaque-directory removals) that deleted something.
    pub whiteouts: u64,
    /// Device nodes skipped because we are not root.
    pub skipped_devices: u64,
    /// Privileged xattrs (`security.*`, `trusted.*`) skipped.
    pub skipped_xattrs: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub entries: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
}

pub(super) struct DirMeta {
    pub mode: u32,
    pub mtime: Mtime,
}

/// Applies a layer (tar, tar+gzip or tar+zstd) onto `root`.
///
/// Precondition: nothing else writes under `root` meanwhile. On error the
/// tree is left half-applied; the caller discards it.
///
/// # Errors
/// [`LayerError::Refused`] for an unsafe or meaningless entry,
/// [`LayerError::LimitExceeded`], [`LayerError::Malformed`],
/// [`LayerError::Unsupported`], and read or filesystem errors.
pub fn apply_layer(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    apply(root, reader, opts, None)
}

/// [`apply_layer`] of bytes whose sha256 the caller has already verified
/// to be `digest` (a blob read back from the content-addressed store,
/// whose file name is the digest of its content, checked when it was
/// written). When those bytes are an uncompressed tar, they are the
/// uncompressed stream, so `digest` is its diffID and is not computed a
/// second time; a compressed blob's diffID is computed as usual. Every
/// byte is still read to the end.
///
/// # Errors
/// As [`apply_layer`].
pub fn apply_layer_verified(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
    digest: &Digest,
) -> Result<ApplyStats, LayerError> {
    apply(root, reader, opts, Some(digest))
}

fn apply(
    root: &Path,
    reader: impl Read,
    opts: &ApplyOptions,
    verified: Option<&Digest>,
) -> Result<ApplyStats, LayerError> {
    let root_fd = Root::open(root)
        .map_err(|e| LayerError::fs("open the root", root.as_os_str().as_bytes(), e))?;
    let (stream, compressed) = decompress_detect(reader)?;
    let stream = Limited::new(stream, opts.max_uncompressed);
    let tally = match verified.filter(|_| !compressed) {
        Some(d) => Tally::Count(stream, 0, d.clone()),
        None => Tally::Hash(DigestReader::new(stream)),
    };
    let buffered = BufReader::with_capacity(1 << 16, tally);
    let mut tar = TarReader::new(buffered, opts.max_pax_bytes);
    let mut app = Applier::new(root_fd, opts);
    while let Some(entry) = tar.next_entry()? {
        app.counts.entries += 1;
        app.check_entries()?;
        app.apply(&entry, &mut tar)?;
    }
    app.finish_dirs()?;
    // Whatever follows the end marker is part of the diffID too.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_error)?;
    let (diff_id, size) = match rest.into_inner() {
        Tally::Hash(h) => h.finish(),
        Tally::Count(_, n, d) => (d, n),
    };
    let c = app.counts;
    Ok(ApplyStats {
        diff_id,
        size,
        entries: c.entries,
        whiteouts: c.whiteouts,
        skipped_devices: c.skipped_devices,
        skipped_xattrs: c.skipped_xattrs,
    })
}

/// The layer stream, hashed for its diffID, or only counted when the
/// diffID is already known ([`apply_layer_verified`]).
enum Tally<R> {
    Hash(DigestReader<R>),
    /// The stream, bytes read so far, and the diffID known beforehand.
    Count(R, u64, Digest),
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Tally::Hash(h) => h.read(buf),
            Tally::Count(r, n, _) => {
                let k = r.read(buf)?;
                *n += k as u64;
                Ok(k)
            }
        }
    }
}

/// The state of one application.
pub(super) struct Applier<'o> {
    pub root: Root,
    pub opts: &'o ApplyOptions,
    pub privileged: bool,
    /// Hashes of the paths this layer created (and of their ancestors):
    /// whiteouts and opaque markers leave them alone (OCI: they hide lower
    /// layers only). Keyed hashes, so a hostile layer of long names costs
    /// 8 bytes per path, and cannot aim at collisions.
    created: HashSet<u64>,
    hasher: RandomState,
    /// Directories created because an entry implied them; they count
    /// against `max_entries` like entries do.
    implicit_dirs: u64,
    /// Directory metadata to set at the end, by path ("" is the root).
    pub dirs: BTreeMap<Vec<u8>, DirMeta>,
    pub counts: Counts,
    /// The last parent directory resolved, by path: tar entries come
    /// grouped by directory. Dropped whenever anything is removed, the
    /// only way a resolved directory can stop being the one at its path.
    last_parent: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Starts the writeback of finished files on another thread.
    pub writeback: Writeback,
}

/// Maps an io error of an operation on entry `e`.
pub(super) fn entry_fs<'a>(
    e: &'a TarEntry,
    op: &'static str,
) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |err| LayerError::fs(op, &e.path, err)
}

impl<'o> Applier<'o> {
    fn new(root: Root, opts: &'o ApplyOptions) -> Self {
        Applier {
            root,
            opts,
            privileged: rustix::process::geteuid().is_root(),
            created: HashSet::new(),
            hasher: RandomState::new(),
            implicit_dirs: 0,
            dirs: BTreeMap::new(),
            counts: Counts::default(),
            last_parent: None,
            writeback: Writeback::new(),
        }
    }

    fn apply(&mut self, e: &TarEntry, data: &mut dyn Read) -> Result<(), LayerError> {
        let comps = normalize(&e.path).map_err(|why| LayerError::refused(&e.path, why))?;
        let Some((leaf, parent)) = comps.split_last() else {
            return self.root_entry(e);
        };
        match whiteout(leaf).map_err(|why| LayerError::refused(&e.path, why))? {
            Whiteout::Opaque => return super::whiteout::opaque(self, parent, e),
            Whiteout::Remove(name) => return super::whiteout::remove(self, parent, name, e),
            Whiteout::AufsMeta => return Ok(()),
            Whiteout::None => {}
        }
        let dir = self.parent_dir(parent, &e.path)?;
        self.mark_created(&comps);
        // Each kind clears what is at the leaf only when creating it
        // finds the name taken (see `make_leaf`).
        match e.kind {
            Kind::Hardlink => self.hardlink(e, &comps, &dir),
            Kind::File => self.file(&dir, &comps, e, data),
            Kind::Dir => self.dir(&dir, &comps, e),
            Kind::Symlink => self.symlink(&dir, &comps, e),
            Kind::Char | Kind::Block | Kind::Fifo => self.special(&dir, &comps, e),
            Kind::Socket => self.clear_leaf(&dir, &comps, e),
        }
    }

    fn check_entries(&self) -> Result<(), LayerError> {
        if self.counts.entries + self.implicit_dirs > self.opts.max_entries {
            return Err(LayerError::LimitExceeded {
                what: Limit::Entries,
                limit: self.opts.max_entries,
            });
        }
        Ok(())
    }

    /// Opens (creating if needed) the parent directory inside the root.
    pub(super) fn parent_dir(
        &mut self,
        comps: &[&[u8]],
        path: &[u8],
    ) -> Result<Rc<OwnedFd>, LayerError> {
        let key = join(comps);
        if let Some((k, fd)) = &self.last_parent {
            if *k == key {
                return Ok(fd.clone());
            }
        }
        let mut made = 0;
        let fd = self.root.open_dir_creating(comps, &mut made);
        self.implicit_dirs += made;
        self.check_entries()?;
        let fd = Rc::new(fd.map_err(|e| match e {
            ResolveError::Refused(why) => LayerError::refused(path, why),
            ResolveError::Missing => LayerError::fs("resolve the parent of", path, Errno::NOENT),
            ResolveError::Io(err) => LayerError::fs("resolve the parent of", path, err),
        })?);
        self.last_parent = Some((key, fd.clone()));
        Ok(fd)
    }

    /// Whether this layer created `key` (a joined path) or something below.
    pub(super) fn is_created(&self, key: &[u8]) -> bool {
        self.created.contains(&self.hasher.hash_one(key))
    }

    pub(super) fn mark_created(&mut self, comps: &[&[u8]]) {
        for n in (1..=comps.len()).rev() {
            // Ancestors of a recorded path are always recorded too.
            if !self.created.insert(self.hasher.hash_one(join(&comps[..n]))) {
                break;
            }
        }
    }

    /// Drops deferred metadata for `key` and everything below it, once
    /// that tree was removed (and the cached parent, which may be in it).
    pub(super) fn forget_dirs(&mut self, key: &[u8]) {
        self.last_parent = None;
        let mut lo = key.to_vec();
        lo.push(b'/');
        let mut hi = key.to_vec();
        hi.push(b'/' + 1);
        let below: Vec<Vec<u8>> = self.dirs.range(lo..hi).map(|(k, _)| k.clone()).collect();
        for k in below {
            self.dirs.remove(&k);
        }
        self.dirs.remove(key);
    }

    /// Creates the leaf with `create`; when the name is taken, clears it
    /// ([`Applier::clear_leaf`]) and tries once more. Most entries are new,
    /// so this saves a stat of each. `create` must fail with `EEXIST`
    /// whatever is at the leaf, without following it.
    pub(super) fn make_leaf<T>(
        &mut self,
        dir: &OwnedFd,
        comps: &[&[u8]],
        e: &TarEntry,
        mut create: impl FnMut() -> Result<T, Errno>,
    ) -> Result<Result<T, Errno>, LayerError> {
        match create() {
            Err(Errno::EXIST) => {
                self.clear_leaf(dir, comps, e)?;
                Ok(create())
            }
            r => Ok(r),
        }
    }

    /// Removes whatever is at the leaf unless a directory meets a
    /// directory (which keeps its contents and takes the new metadata).
    pub(super) fn clear_leaf(
        &mut self,
        dir: &OwnedFd,
        comps: &[&[u8]],
        e: &TarEntry,
    ) -> Result<(), LayerError> {
        let leaf = comps[comps.len() - 1];
        let Some(st) = lstat_at(dir, leaf).map_err(entry_fs(e, "stat"))? else {
            return Ok(());
        };
        if e.kind == Kind::Dir && kind(&st) == Some(Kind::Dir) {
            return Ok(());
        }
        fsops::remove_at(dir, leaf, &st).map_err(entry_fs(e, "replace"))?;
        self.forget_dirs(&join(comps));
        Ok(())
    }

    /// Sets the deferred directory modes and mtimes. Each directory is
    /// resolved again in-root and skipped if it is no longer a directory.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        for (key, meta) in std::mem::take(&mut self.dirs) {
            if key.is_empty() {
                let fd = self.root.fd();
                rfs::fchmod(fd, Mode::from_raw_mode(meta.mode))
                    .map_err(|err| LayerError::fs("chmod", b".", err))?;
                rfs::futimens(fd, &fsops::times(meta.mtime))
                    .map_err(|err| LayerError::fs("set times of", b".", err))?;
                continue;
            }
            let comps: Vec<&[u8]> = key.split(|b| *b == b'/').collect();
            let (leaf, parent) = comps.split_last().expect("non-empty key has a component");
            let dir = match self.root.open_dir(parent) {
                Ok(fd) => fd,
                Err(ResolveError::Io(err)) => return Err(LayerError::fs("resolve", &key, err)),
                Err(_) => continue,
            };
            match lstat_at(&dir, leaf).map_err(|err| LayerError::fs("stat", &key, err))? {
                Some(st) if kind(&st) == Some(Kind::Dir) => {}
                _ => continue,
            }
            fsops::chmod_at(&dir, leaf, meta.mode)
                .map_err(|err| LayerError::fs("chmod", &key, err))?;
            fsops::utimes_at(&dir, leaf, meta.mtime)
                .map_err(|err| LayerError::fs("set times of", &key, err))?;
        }
        Ok(())
    }
}
