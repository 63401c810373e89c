//! Reading a whole tree into memory (metadata only, sorted bytewise by
//! path) for diffs and tar writing. Directories and files are opened
//! from the tree's root fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
//! so a symlink in the tree (say in a container's rootfs) is recorded as
//! a symlink and never followed.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, OFlags, Stat};
use rustix::io::Errno;

use super::error::LayerError;
use super::fsops::{list_names, xattrs_at};
use super::meta::{Kind, Mtime};
use super::names::child;
use super::resolve::{open_beneath, open_for_reading};

/// The metadata of one filesystem object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Mtime,
    /// Status change time: any change to the inode (owner, mode, xattrs,
    /// contents, links) sets it to the current time.
    pub ctime: Mtime,
    /// Device number (major, minor) of a device node.
    pub rdev: (u32, u32),
    /// Identity for hardlink detection.
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// Symlink target.
    pub target: Vec<u8>,
    /// Sorted by name; empty until read when the tree was read without
    /// xattrs (see [`Tree::read_xattrs`]).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether `xattrs` has been read.
    pub xattrs_read: bool,
}

impl Node {
    // `Stat` field widths differ between architectures, hence the casts.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn from_stat(st: &Stat) -> Option<Node> {
        let kind = Kind::of_mode(st.st_mode as u32)?;
        let rdev = st.st_rdev as u64;
        Some(Node {
            kind,
            mode: st.st_mode as u32 & 0o7777,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: if kind == Kind::File {
                st.st_size as u64
            } else {
                0
            },
            mtime: Mtime {
                secs: st.st_mtime as i64,
                nanos: st.st_mtime_nsec as u32,
            },
            ctime: Mtime {
                secs: st.st_ctime as i64,
                nanos: st.st_ctime_nsec as u32,
            },
            rdev: match kind {
                Kind::Char | Kind::Block => (rfs::major(rdev), rfs::minor(rdev)),
                _ => (0, 0),
            },
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            target: Vec::new(),
            xattrs: Vec::new(),
            xattrs_read: false,
        })
    }
}

/// A tree read into memory: paths relative to the root, without a
/// leading `/` (the root itself is `""`).
pub(crate) struct Tree {
    root: OwnedFd,
    pub nodes: BTreeMap<Vec<u8>, Node>,
    /// The directory [`Tree::probe`] opened last: probes come sorted, so
    /// siblings reuse it.
    last_dir: Option<(Vec<u8>, OwnedFd)>,
}

/// `a/b/c` as (`a/b`, `c`); a top-level name has the parent `""`.
fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[][..], rel),
    }
}

/// Whether a failure to open a path means it is not there as a walk
/// would see it (missing, under a non-directory or a symlink).
fn gone(e: &std::io::Error) -> bool {
    [Errno::NOENT, Errno::NOTDIR, Errno::LOOP, Errno::XDEV]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

/// Stats entry `name` of `dir` (the node at `path`), with its symlink
/// target; `None` when it vanished or is of no known type.
fn stat_child(dir: &OwnedFd, path: &[u8], name: &[u8]) -> Result<Option<Node>, LayerError> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(LayerError::fs("stat", path, e)),
    };
    let Some(mut node) = Node::from_stat(&st) else {
        return Ok(None);
    };
    if node.kind == Kind::Symlink {
        let t = rfs::readlinkat(dir, name, Vec::new());
        node.target = t
            .map_err(|e| LayerError::fs("read link", path, e))?
            .into_bytes();
    }
    Ok(Some(node))
}

fn fs_err<'a>(op: &'static str, rel: &'a [u8]) -> impl FnOnce(std::io::Error) -> LayerError + 'a {
    move |e| LayerError::fs(op, rel, e)
}

impl Tree {
    /// Reads the tree under `path`, with every node's xattrs.
    ///
    /// Precondition: the tree is not being modified meanwhile.
    ///
    /// # Errors
    /// [`LayerError::Fs`] if any directory, symlink or xattr list cannot
    /// be read.
    pub(crate) fn read(path: &Path) -> Result<Tree, LayerError> {
        Tree::read_with(path, true)
    }

    /// Reads the tree under `path`; with `xattrs` false no node's xattrs
    /// are read (read them with [`Tree::read_xattrs`] where needed).
    ///
    /// # Errors
    /// As [`Tree::read`].
    pub(crate) fn read_with(path: &Path, xattrs: bool) -> Result<Tree, LayerError> {
        let mut tree = Tree::root_only(path, xattrs)?;
        tree.read_below(b"", xattrs)?;
        Ok(tree)
    }

    /// The tree under `path` with only its root node read; parts are added
    /// with [`Tree::probe`], [`Tree::list`] and [`Tree::read_below`].
    ///
    /// # Errors
    /// [`LayerError::Fs`] if the root cannot be opened.
    pub(crate) fn root_only(path: &Path, xattrs: bool) -> Result<Tree, LayerError> {
        let root = open_for_reading(path)
            .map_err(|e| LayerError::fs("open", path.as_os_str().as_bytes(), e))?;
        let st = rfs::fstat(&root).map_err(|e| LayerError::fs("stat", b".", e))?;
        let mut top = Node::from_stat(&st).expect("an opened directory has a known type");
        if xattrs {
            top.xattrs = xattrs_at(&root, b"").map_err(fs_err("list xattrs of", b"."))?;
            top.xattrs_read = true;
        }
        let mut nodes = BTreeMap::new();
        nodes.insert(Vec::new(), top);
        Ok(Tree {
            root,
            nodes,
            last_dir: None,
        })
    }

    /// Reads everything below directory `rel` (without xattrs when
    /// `xattrs` is false).
    ///
    /// # Errors
    /// [`LayerError::Fs`] if a directory, symlink or xattr list cannot be
    /// read.
    pub(crate) fn read_below(&mut self, rel: &[u8], xattrs: bool) -> Result<(), LayerError> {
        let mut pending = vec![rel.to_vec()];
        while let Some(rel) = pending.pop() {
            self.read_dir(&rel, &mut pending, xattrs)?;
        }
        Ok(())
    }

    /// Reads the entries of directory `rel`, one level, without xattrs.
    ///
    /// # Errors
    /// As [`Tree::read_below`].
    pub(crate) fn list(&mut self, rel: &[u8]) -> Result<(), LayerError> {
        self.read_dir(rel, &mut Vec::new(), false)
    }

    /// Reads node `rel` (not its xattrs) if it exists and its parent is
    /// reachable from the root without symlinks, as a walk would reach it.
    ///
    /// # Errors
    /// [`LayerError::Fs`] for failures other than "not there".
    pub(crate) fn probe(&mut self, rel: &[u8]) -> Result<(), LayerError> {
        if self.nodes.contains_key(rel) {
            return Ok(());
        }
        let (parent, name) = split_parent(rel);
        let dir = match self.last_dir.take() {
            Some((p, fd)) if p == parent => fd,
            _ => match open_beneath(&self.root, parent, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(d) => d,
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(LayerError::fs("open directory", parent, e)),
            },
        };
        let node = stat_child(&dir, rel, name)?;
        self.last_dir = Some((parent.to_vec(), dir));
        if let Some(node) = node {
            self.nodes.insert(rel.to_vec(), node);
        }
        Ok(())
    }

    /// Reads the xattrs of node `rel` if they have not been read yet.
    ///
    /// # Errors
    /// [`LayerError::Fs`] if the node's directory or xattrs cannot be read.
    pub(crate) fn read_xattrs(&mut self, rel: &[u8]) -> Result<(), LayerError> {
        let Some(node) = self.nodes.get(rel) else {
            return Ok(());
        };
        if node.xattrs_read {
            return Ok(());
        }
        let xattrs = if node.kind == Kind::Socket {
            Vec::new()
        } else if rel.is_empty() {
            xattrs_at(&self.root, b"").map_err(fs_err("list xattrs of", b"."))?
        } else {
            let (parent, name) = split_parent(rel);
            let dir = open_beneath(&self.root, parent, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(fs_err("open directory", parent))?;
            xattrs_at(&dir, name).map_err(fs_err("list xattrs of", rel))?
        };
        if let Some(node) = self.nodes.get_mut(rel) {
            node.xattrs = xattrs;
            node.xattrs_read = true;
        }
        Ok(())
    }

    fn read_dir(
        &mut self,
        rel: &[u8],
        pending: &mut Vec<Vec<u8>>,
        xattrs: bool,
    ) -> Result<(), LayerError> {
        let dir = open_beneath(&self.root, rel, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(fs_err("open directory", rel))?;
        for name in list_names(&dir).map_err(fs_err("list", rel))? {
            let path = child(rel, &name);
            let Some(mut node) = stat_child(&dir, &path, &name)? else {
                continue;
            };
            if xattrs {
                if node.kind != Kind::Socket {
                    node.xattrs =
                        xattrs_at(&dir, &name).map_err(fs_err("list xattrs of", &path))?;
                }
                node.xattrs_read = true;
            }
            if node.kind == Kind::Dir {
                pending.push(path.clone());
            }
            self.nodes.insert(path, node);
        }
        Ok(())
    }

    /// Opens the regular file `rel` for reading, checking it is still the
    /// inode that was walked.
    pub(crate) fn open_file(&self, rel: &[u8], node: &Node) -> Result<File, LayerError> {
        let fd = open_beneath(&self.root, rel, OFlags::RDONLY).map_err(fs_err("open", rel))?;
        let st = rfs::fstat(&fd).map_err(|e| LayerError::fs("stat", rel, e))?;
        match Node::from_stat(&st) {
            Some(now) if now.ino == node.ino && now.dev == node.dev && now.kind == Kind::File => {
                Ok(File::from(fd))
            }
            _ => Err(LayerError::fs(
                "read",
                rel,
                std::io::Error::other("the file changed while the tree was read"),
            )),
        }
    }
}
