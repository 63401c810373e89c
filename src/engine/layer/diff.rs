//! Differences between two trees (`docker diff`) and the layer tars that
//! carry them, plus whole-tree tars for export.
//!
//! **Change rule.** A path is *Modified* when its type, permission bits
//! (with setuid/setgid/sticky), owner, group, xattrs differ, or, for
//! non-directories, its size, mtime (nanoseconds), device number or
//! symlink target differ. Contents are not compared: equal size, mtime and
//! metadata count as unchanged (what Docker's and containerd's naive
//! differs assume). A directory's own size and mtime are ignored, since
//! they change whenever an entry is added or removed; instead, as
//! `docker diff` does, every directory above a change (except `/`) is
//! listed as Modified. A deleted directory is listed alone, not its
//! children.
//!
//! **Reading.** Both trees are walked whole, unless the storage gives a
//! [`Scope`]: the paths whose inodes may have changed, from which only
//! the parts of the trees that can differ are read (see
//! [`super::scope`]); the result is the same.
//!
//! **Tars** list entries sorted bytewise by path (parents first), with
//! deletions as `.wh.<name>` entries; inodes seen twice (by device and
//! inode number) become hardlink entries to the first path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::error::LayerError;
use super::meta::{Kind, Mtime};
use super::names::WH_PREFIX;
use super::scope::read_scoped;
use super::tarwrite::{Spec, TarWriter};
use super::walk::{Node, Tree};
use crate::engine::digest::Digest;

/// Paths of a lower tree (relative, no leading `/`; `""` is the root)
/// whose inodes may have changed in an upper tree made from it.
pub type Scope = BTreeSet<Vec<u8>>;

/// One difference, with the path absolute inside the tree (`/etc/hosts`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Present in upper only.
    Added(PathBuf),
    /// Present in both, different (or a directory above a change).
    Modified(PathBuf),
    /// Present in lower only.
    Deleted(PathBuf),
}

/// The digest and size of an uncompressed layer tar that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Added,
    Modified,
    Deleted,
}

/// The changes that turn `lower` (or an empty tree) into `upper`,
/// sorted by path.
///
/// Precondition: neither tree is modified meanwhile.
///
/// # Errors
/// [`LayerError::Fs`] if a tree cannot be read.
pub fn changes(lower: Option<&Path>, upper: &Path) -> Result<Vec<Change>, LayerError> {
    changes_in(lower, upper, None)
}

/// As [`changes`], reading only what `scope` says may differ when given:
/// the paths of `lower` whose inodes may have changed in `upper`, which
/// must be a snapshot of `lower`'s filesystem (see [`super::scope`]).
///
/// # Errors
/// As [`changes`].
pub fn changes_in(
    lower: Option<&Path>,
    upper: &Path,
    scope: Option<&Scope>,
) -> Result<Vec<Change>, LayerError> {
    let (low, up) = read_pair(lower, upper, scope)?;
    let ops = compute(low.as_ref(), &up);
    Ok(ops
        .into_iter()
        .map(|(rel, op)| {
            let mut p = b"/".to_vec();
            p.extend_from_slice(&rel);
            let p = PathBuf::from(OsString::from_vec(p));
            match op {
                Op::Added => Change::Added(p),
                Op::Modified => Change::Modified(p),
                Op::Deleted => Change::Deleted(p),
            }
        })
        .collect())
}

/// Writes the layer tar of `changes(lower, upper)` to `out`.
///
/// # Errors
/// [`LayerError::Fs`] if a tree cannot be read, [`LayerError::Write`] if
/// `out` fails.
pub fn write_layer(
    lower: Option<&Path>,
    upper: &Path,
    out: impl Write,
) -> Result<LayerInfo, LayerError> {
    write_layer_in(lower, upper, None, out)
}

/// As [`write_layer`], with a `scope` as for [`changes_in`].
///
/// # Errors
/// As [`write_layer`].
pub fn write_layer_in(
    lower: Option<&Path>,
    upper: &Path,
    scope: Option<&Scope>,
    out: impl Write,
) -> Result<LayerInfo, LayerError> {
    let (low, mut up) = read_pair(lower, upper, scope)?;
    let ops = compute(low.as_ref(), &up);
    // Entries are written with their xattrs (directories above a change
    // may not have had them read yet).
    for (rel, op) in &ops {
        if *op != Op::Deleted {
            up.read_xattrs(rel)?;
        }
    }
    // Whiteout names sort differently from the paths they delete.
    let mut items: Vec<(Vec<u8>, Option<&Node>)> = ops
        .iter()
        .map(|(rel, op)| match op {
            Op::Deleted => (whiteout_name(rel), None),
            _ => (rel.clone(), up.nodes.get(rel)),
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = TarWriter::new(out);
    let mut links = HashMap::new();
    for (name, node) in &items {
        match node {
            Some(node) => emit(&mut w, &up, name, node, &mut links)?,
            None => w.append(&whiteout_spec(name), None)?,
        }
    }
    let (diff_id, size) = w.finish()?;
    Ok(LayerInfo { diff_id, size })
}

/// Writes the whole tree under `root` (with `./` for the root itself).
///
/// # Errors
/// [`LayerError::Fs`] if the tree cannot be read, [`LayerError::Write`]
/// if `out` fails.
pub fn write_tree(root: &Path, out: impl Write) -> Result<LayerInfo, LayerError> {
    let tree = Tree::read(root)?;
    let mut w = TarWriter::new(out);
    let mut links = HashMap::new();
    for (rel, node) in &tree.nodes {
        emit(&mut w, &tree, rel, node, &mut links)?;
    }
    let (diff_id, size) = w.finish()?;
    Ok(LayerInfo { diff_id, size })
}

/// Reads `lower` and `upper` for a diff. xattrs are read only for nodes
/// that may have changed: a node of `upper` whose inode number, type,
/// mode, owner, group, size, mtime, ctime, link count, device number and
/// symlink target all equal those of the same path in `lower` is
/// unchanged, xattrs included, and neither side's xattrs are read.
///
/// Why that is sound: `upper` is a snapshot (a block-level copy) of
/// `lower`'s filesystem, so an unchanged path has the same inode number
/// in both. Every change of an inode's xattrs (or owner, mode, contents,
/// links) sets its ctime to the current time, and userspace cannot set a
/// ctime. `lower` is a committed layer, frozen before the snapshot was
/// taken, so a change made in `upper` afterwards leaves a ctime that is
/// later than any in `lower`, unless the clock was set back to the very
/// nanosecond of the old ctime. A path removed and made again in `upper`
/// gets a new ctime too, even if it reuses the inode number. Filesystems
/// with whole-second timestamps (nanoseconds all 0) do not give that
/// guarantee within a second, so for them xattrs are always compared.
/// Trees that are not related that way simply have different inode
/// numbers or ctimes, and everything is compared.
///
/// With a `scope`, only the parts of the trees it implies are read.
fn read_pair(
    lower: Option<&Path>,
    upper: &Path,
    scope: Option<&Scope>,
) -> Result<(Option<Tree>, Tree), LayerError> {
    let Some(lower) = lower else {
        return Ok((None, Tree::read(upper)?));
    };
    let (mut low, mut up) = match scope {
        Some(scope) => read_scoped(lower, upper, scope)?,
        None => read_both(lower, upper)?,
    };
    let need: Vec<Vec<u8>> = up
        .nodes
        .iter()
        .filter(|(p, u)| !p.is_empty() && !low.nodes.get(*p).is_some_and(|l| same_inode(l, u)))
        .map(|(p, _)| p.clone())
        .collect();
    for p in &need {
        up.read_xattrs(p)?;
        low.read_xattrs(p)?;
    }
    Ok((Some(low), up))
}

/// Both whole trees, without xattrs.
fn read_both(lower: &Path, upper: &Path) -> Result<(Tree, Tree), LayerError> {
    // The two trees are on different devices and mostly not in the page
    // cache (a freshly activated layer): reading them at once keeps both
    // CPUs and both devices busy, nearly halving a commit's walk.
    let (low, up) = std::thread::scope(|s| {
        let low = s.spawn(|| Tree::read_with(lower, false));
        let up = Tree::read_with(upper, false);
        (low.join(), up)
    });
    let low = low.map_err(|_| {
        LayerError::fs(
            "read",
            lower.as_os_str().as_encoded_bytes(),
            std::io::Error::other("the thread reading the tree panicked"),
        )
    })??;
    Ok((low, up?))
}

/// Whether two stats show the same, unchanged inode (see [`read_pair`]).
fn same_inode(a: &Node, b: &Node) -> bool {
    a.ino == b.ino
        && a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.size == b.size
        && a.mtime == b.mtime
        && a.ctime == b.ctime
        && a.ctime.nanos != 0
        && a.nlink == b.nlink
        && a.rdev == b.rdev
        && a.target == b.target
}

fn is_dir(n: Option<&Node>) -> bool {
    n.is_some_and(|n| n.kind == Kind::Dir)
}

fn parent_of(rel: &[u8]) -> &[u8] {
    rel.iter()
        .rposition(|b| *b == b'/')
        .map_or(&[][..], |i| &rel[..i])
}

fn differs(a: &Node, b: &Node) -> bool {
    if a.kind != b.kind
        || a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.xattrs != b.xattrs
    {
        return true;
    }
    a.kind != Kind::Dir
        && (a.size != b.size || a.mtime != b.mtime || a.rdev != b.rdev || a.target != b.target)
}

fn compute(lower: Option<&Tree>, upper: &Tree) -> BTreeMap<Vec<u8>, Op> {
    let empty = BTreeMap::new();
    let low = lower.map_or(&empty, |t| &t.nodes);
    let up = &upper.nodes;
    let mut ops = BTreeMap::new();
    for (p, u) in up.iter().filter(|(p, _)| !p.is_empty()) {
        match low.get(p) {
            None => _ = ops.insert(p.clone(), Op::Added),
            Some(l) if differs(l, u) => _ = ops.insert(p.clone(), Op::Modified),
            Some(_) => {}
        }
    }
    for p in low.keys().filter(|p| !p.is_empty() && !up.contains_key(*p)) {
        // Only the top of a deleted tree; below a directory that became a
        // file the parent's own change says it all.
        let parent = parent_of(p);
        if is_dir(up.get(parent)) && is_dir(low.get(parent)) {
            ops.insert(p.clone(), Op::Deleted);
        }
    }
    let changed: Vec<Vec<u8>> = ops.keys().cloned().collect();
    for p in changed {
        let mut a = parent_of(&p);
        while !a.is_empty() && !ops.contains_key(a) {
            ops.insert(a.to_vec(), Op::Modified);
            a = parent_of(a);
        }
    }
    ops
}

fn whiteout_name(rel: &[u8]) -> Vec<u8> {
    let parent = parent_of(rel);
    let base = if parent.is_empty() {
        rel
    } else {
        &rel[parent.len() + 1..]
    };
    let mut name = parent.to_vec();
    if !name.is_empty() {
        name.push(b'/');
    }
    name.extend_from_slice(WH_PREFIX);
    name.extend_from_slice(base);
    name
}

fn whiteout_spec(name: &[u8]) -> Spec<'_> {
    Spec {
        name,
        kind: Kind::File,
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: Mtime::default(),
        rdev: (0, 0),
        link: b"",
        xattrs: &[],
    }
}

/// Writes one node; a second name of an inode already written becomes a
/// hardlink entry. Sockets are skipped.
fn emit<W: Write>(
    w: &mut TarWriter<W>,
    tree: &Tree,
    rel: &[u8],
    node: &Node,
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Result<(), LayerError> {
    if node.kind == Kind::Socket {
        return Ok(());
    }
    let mut spec = Spec {
        name: rel,
        kind: node.kind,
        mode: node.mode,
        uid: node.uid,
        gid: node.gid,
        size: node.size,
        mtime: node.mtime,
        rdev: node.rdev,
        link: &node.target,
        xattrs: &node.xattrs,
    };
    if node.kind != Kind::Dir && node.nlink > 1 {
        if let Some(first) = links.get(&(node.dev, node.ino)).cloned() {
            spec.kind = Kind::Hardlink;
            spec.link = &first;
            spec.size = 0;
            spec.xattrs = &[];
            return w.append(&spec, None);
        }
        links.insert((node.dev, node.ino), rel.to_vec());
    }
    if node.kind == Kind::File {
        let mut f = tree.open_file(rel, node)?;
        return w.append(&spec, Some(&mut f));
    }
    w.append(&spec, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind) -> Node {
        Node {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Mtime { secs: 1, nanos: 0 },
            ctime: Mtime { secs: 1, nanos: 7 },
            rdev: (0, 0),
            dev: 1,
            ino: 1,
            nlink: 1,
            target: Vec::new(),
            xattrs: Vec::new(),
            xattrs_read: true,
        }
    }

    #[test]
    fn names_of_whiteouts_and_parents() {
        assert_eq!(whiteout_name(b"a"), b".wh.a");
        assert_eq!(whiteout_name(b"d/e/f"), b"d/e/.wh.f");
        assert_eq!(parent_of(b"d/e/f"), b"d/e");
        assert_eq!(parent_of(b"f"), b"");
    }

    #[test]
    fn directory_times_and_sizes_do_not_count() {
        let a = node(Kind::Dir);
        let mut b = a.clone();
        b.mtime.nanos = 5;
        b.size = 4096;
        b.ino = 9;
        assert!(!differs(&a, &b));
        b.mode = 0o700;
        assert!(differs(&a, &b));
        let f = node(Kind::File);
        let mut g = f.clone();
        g.nlink = 3;
        assert!(!differs(&f, &g), "a new hardlink elsewhere is not a change");
        g.mtime.nanos = 1;
        assert!(differs(&f, &g));
        let mut h = f.clone();
        h.xattrs.push((b"user.x".to_vec(), Vec::new()));
        assert!(differs(&f, &h));
    }

    #[test]
    fn same_inode_needs_every_stat_field_and_a_fine_ctime() {
        let a = node(Kind::File);
        assert!(same_inode(&a, &a.clone()));
        let mut b = a.clone();
        b.ctime.nanos = 8;
        assert!(!same_inode(&a, &b), "ctime");
        let mut b = a.clone();
        b.ino = 2;
        assert!(!same_inode(&a, &b), "inode number");
        let mut b = a.clone();
        b.nlink = 2;
        assert!(!same_inode(&a, &b), "links");
        let mut c = a.clone();
        c.ctime.nanos = 0;
        assert!(
            !same_inode(&c, &c.clone()),
            "whole-second ctimes prove nothing"
        );
    }
}
