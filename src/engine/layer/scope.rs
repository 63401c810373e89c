//! Reading only the parts of two trees where they can differ, when the
//! storage knows which paths of `lower` hold an inode that may have changed
//! in `upper` (a snapshot of `lower`'s filesystem: same inode numbers).
//!
//! **Why this finds every change.** Any change to a file (contents, size,
//! times, owner, mode, xattrs, link count) rewrites its inode, and so does
//! any change to a directory's entries (an entry added, removed, renamed or
//! replaced). So a path whose node differs between the trees either is in
//! the scope (its inode changed) or sits in a directory whose entries
//! changed: a directory in the scope, or one that is new or replaced in
//! `upper`. Those directories are listed on both sides; a directory new in
//! `upper` or replaced there (another inode number at the same path) is read
//! whole, on both sides, as a full walk would. An inode number reused in
//! `upper` for something else is itself a changed inode, so it is in the
//! scope. Every path read on one side is read on the other, and every
//! parent of a path read is read, so the diff over the partial trees is the
//! diff over the whole ones.

use std::collections::BTreeSet;
use std::path::Path;

use super::error::LayerError;
use super::meta::Kind;
use super::walk::{Node, Tree};

/// `lower` and `upper` read as far as `scope` (paths relative to the root,
/// no leading `/`; `""` is the root) needs; xattrs are not read.
///
/// # Errors
/// [`LayerError::Fs`] if a tree cannot be read.
pub(crate) fn read_scoped(
    lower: &Path,
    upper: &Path,
    scope: &BTreeSet<Vec<u8>>,
) -> Result<(Tree, Tree), LayerError> {
    let mut low = Tree::root_only(lower, false)?;
    let mut up = Tree::root_only(upper, false)?;
    for p in scope.iter().filter(|p| !p.is_empty()) {
        for (i, b) in p.iter().enumerate() {
            if *b == b'/' {
                low.probe(&p[..i])?;
                up.probe(&p[..i])?;
            }
        }
        low.probe(p)?;
        up.probe(p)?;
    }
    for p in scope {
        expand(&mut low, &mut up, p)?;
    }
    Ok((low, up))
}

fn dir_ino(t: &Tree, p: &[u8]) -> Option<u64> {
    t.nodes
        .get(p)
        .filter(|n: &&Node| n.kind == Kind::Dir)
        .map(|n| n.ino)
}

/// Reads what may differ at and below a scope path `p`.
fn expand(low: &mut Tree, up: &mut Tree, p: &[u8]) -> Result<(), LayerError> {
    match (dir_ino(low, p), dir_ino(up, p)) {
        (Some(l), Some(u)) if l == u => {
            low.list(p)?;
            up.list(p)?;
            for c in child_dirs(up, p) {
                match (dir_ino(low, &c), dir_ino(up, &c)) {
                    (Some(l), Some(u)) if l == u => {}
                    (l, _) => whole(low, up, &c, l.is_some())?,
                }
            }
            Ok(())
        }
        (l, Some(_)) => whole(low, up, p, l.is_some()),
        // Gone from upper, or not a directory there: its own node says it.
        _ => Ok(()),
    }
}

/// Reads the directory `p` whole in `upper`, and in `lower` too when it is
/// a directory there.
fn whole(low: &mut Tree, up: &mut Tree, p: &[u8], in_lower: bool) -> Result<(), LayerError> {
    if in_lower {
        low.read_below(p, false)?;
    }
    up.read_below(p, false)
}

/// Paths of the directories directly inside `p` in `t`.
fn child_dirs(t: &Tree, p: &[u8]) -> Vec<Vec<u8>> {
    let is_child = |k: &[u8]| {
        let rest = if p.is_empty() {
            k
        } else if k.len() > p.len() + 1 && k.starts_with(p) && k[p.len()] == b'/' {
            &k[p.len() + 1..]
        } else {
            return false;
        };
        !rest.is_empty() && !rest.contains(&b'/')
    };
    let start = if p.is_empty() {
        Vec::new()
    } else {
        [p, b"/"].concat()
    };
    t.nodes
        .range(start..)
        .take_while(|(k, _)| p.is_empty() || k.starts_with(p))
        .filter(|(k, n)| n.kind == Kind::Dir && is_child(k))
        .map(|(k, _)| k.clone())
        .collect()
}
