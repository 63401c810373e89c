//! Durable file replacement and the exclusive lock.
//!
//! A write goes to a temp file in the same directory, is fsynced, renamed
//! over the target, and then the directory is fsynced: the rename is atomic
//! but not durable until the directory's own metadata reaches the disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Suffix of temp files; any left by a crash are removed on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically and durably.
///
/// # Errors
/// [`Error::Io`] naming the step that failed; the old content stays.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(Error::io("create", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    f.sync_all().map_err(Error::io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(Error::io("rename into place", path))?;
    sync_dir(dir)
}

/// Fsyncs a directory so that renames and unlinks in it are durable.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Removes temp files a crash left in `dir`.
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read.
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("read directory", dir))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(Error::io("remove stale temp file", &p))?;
        }
    }
    Ok(())
}

/// An exclusive `flock` on a lock file, held until dropped. Every command
/// that reads or changes the store holds it, so two processes never
/// interleave their steps.
#[derive(Debug)]
pub struct LockGuard {
    _lock: Flock<File>,
    path: PathBuf,
}

impl LockGuard {
    /// Takes the lock, waiting for another holder to finish.
    ///
    /// # Errors
    /// [`Error::Io`] when the lock file cannot be opened or locked.
    pub fn acquire(path: &Path) -> Result<LockGuard> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::io("open lock file", path))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
            op: "lock",
            path: path.to_path_buf(),
            source: std::io::Error::from(errno),
        })?;
        let _ = lock.as_fd();
        Ok(LockGuard {
            _lock: lock,
            path: path.to_path_buf(),
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("store");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn stale_temps_are_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("store.tmp"), b"half").unwrap();
        std::fs::write(d.path().join("keep"), b"x").unwrap();
        remove_stale_temps(d.path()).unwrap();
        assert!(!d.path().join("store.tmp").exists());
        assert!(d.path().join("keep").exists());
    }

    #[test]
    fn lock_is_exclusive_across_open_file_descriptions() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let g = LockGuard::acquire(&p).unwrap();
        let f = File::open(&p).unwrap();
        let second = Flock::lock(f, FlockArg::LockExclusiveNonblock);
        assert!(
            second.is_err(),
            "a second holder must be refused while the first holds it"
        );
        drop(g);
        let f = File::open(&p).unwrap();
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
