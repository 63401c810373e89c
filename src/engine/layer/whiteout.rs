//! OCI whiteouts while applying: `.wh.<name>` deletes `<name>` from lower
//! layers, `.wh..wh..opq` empties a directory of everything lower layers
//! put there. Both resolve their directory inside the root (a whiteout
//! under a symlinked parent acts on the in-root target, never outside)
//! and both spare what this same layer created, whatever the order of
//! entries in the tar (image-spec: whiteouts hide lower layers only).

use std::os::fd::OwnedFd;

use rustix::fs::{self as rfs, Mode, OFlags};

use super::apply::Applier;
use super::error::{LayerError, Refusal};
use super::fsops::{kind, list_names, lstat_at, open_subdir, remove_at};
use super::meta::Kind;
use super::names::{child, join};
use super::resolve::ResolveError;
use super::tarread::TarEntry;

/// `parent/.wh.name`: deletes `parent/name` if a lower layer has it.
pub(super) fn remove(
    app: &mut Applier<'_>,
    parent: &[&[u8]],
    name: &[u8],
    e: &TarEntry,
) -> Result<(), LayerError> {
    let key = child(&join(parent), name);
    if app.is_created(&key) {
        return Ok(());
    }
    let dir = match app.root.open_dir(parent) {
        Ok(fd) => fd,
        // Nothing below a missing directory or a file to delete.
        Err(ResolveError::Missing | ResolveError::Refused(Refusal::ParentNotDirectory)) => {
            return Ok(())
        }
        Err(ResolveError::Refused(why)) => return Err(LayerError::refused(&e.path, why)),
        Err(ResolveError::Io(err)) => {
            return Err(LayerError::fs("resolve the parent of", &e.path, err))
        }
    };
    let fs_err = |err| LayerError::fs("apply whiteout", &e.path, err);
    if let Some(st) = lstat_at(&dir, name).map_err(fs_err)? {
        remove_at(&dir, name, &st).map_err(fs_err)?;
        app.forget_dirs(&key);
        app.counts.whiteouts += 1;
    }
    Ok(())
}

/// `dir/.wh..wh..opq`: removes everything under `dir` this layer did not
/// create. Entries of this layer that come later are created afterwards;
/// earlier ones are in `created` and spared.
pub(super) fn opaque(app: &mut Applier<'_>, dir: &[&[u8]], e: &TarEntry) -> Result<(), LayerError> {
    let fd = app.parent_dir(dir, &e.path)?;
    app.mark_created(dir);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let readable = rfs::openat(&fd, ".", flags, Mode::empty())
        .map_err(|err| LayerError::fs("open the opaque directory of", &e.path, err))?;
    prune(app, &readable, &join(dir))
        .map_err(|err| LayerError::fs("apply opaque whiteout", &e.path, err))
}

/// Removes the children of `dir` (whose path is `prefix`) not in
/// `created`, descending into created directories: a lower layer's files
/// inside a directory this layer also lists are hidden too.
fn prune(app: &mut Applier<'_>, dir: &OwnedFd, prefix: &[u8]) -> std::io::Result<()> {
    for name in list_names(dir)? {
        let key = child(prefix, &name);
        let Some(st) = lstat_at(dir, &name)? else {
            continue;
        };
        if !app.is_created(&key) {
            remove_at(dir, &name, &st)?;
            app.forget_dirs(&key);
            app.counts.whiteouts += 1;
        } else if kind(&st) == Some(Kind::Dir) {
            let sub = open_subdir(dir, &name)?;
            prune(app, &sub, &key)?;
        }
    }
    Ok(())
}
