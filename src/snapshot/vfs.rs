//! The `vfs` snapshotter, after Docker's vfs graph driver: every snapshot
//! is a plain directory holding a full copy of its parent. It is slow and
//! takes a full copy's space per snapshot, but it needs nothing from the
//! kernel (no device-mapper, no overlayfs), so it runs anywhere and is the
//! reference the other drivers are checked against.
//!
//! Under the driver's directory:
//! - `lock`: an exclusive `flock`, held while a [`VfsSnapshotter`] is open;
//! - `metadata.json`: every snapshot's record, replaced atomically and
//!   durably after each change;
//! - `snapshots/<id>/fs`: a snapshot's filesystem. Ids are numbers from a
//!   counter in the metadata: keys may hold any character (`/`, `..`), so a
//!   key never becomes a path component.
//!
//! Crash safety, after containerd's devmapper `transition`: the intent is
//! recorded before the filesystem is touched. A new snapshot is recorded
//! `preparing` before its directory is made, and marked `ready` only once
//! its copy is complete (and flushed); a removal is recorded `removing`
//! before the directory goes. Opening finishes what a crash interrupted:
//! `preparing` snapshots are removed, `removing` ones are finished,
//! directories no record claims are deleted, and temp files are removed.
//! A commit changes only the metadata, so it is atomic by itself.

mod meta;
mod tree;

pub use meta::METADATA_VERSION;

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thinpool::store::atomic::{atomic_write, remove_stale_temps, sync_dir, LockGuard};

use self::meta::{load, Metadata, Record, State};
use super::{Info, Kind, Mount, Result, SnapshotError, Snapshotter, Usage};

/// Longest key or name, in bytes (containerd's limit).
pub const MAX_KEY_LEN: usize = 255;

const METADATA: &str = "metadata.json";
const SNAPSHOTS: &str = "snapshots";
const LOCK: &str = "lock";

/// Whether data is flushed to disk before an operation returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `syncfs` once a copy is complete and at every commit, so a power
    /// loss never leaves a snapshot marked ready whose files are missing.
    #[default]
    Sync,
    /// No `syncfs`: the metadata is still replaced atomically and durably,
    /// but after a power loss a snapshot may miss data. For tests and
    /// scratch roots, where the flushes cost more than the copies.
    NoSync,
}

/// Plain directories, a full copy of the parent per snapshot. See the
/// module docs for the layout and the crash rules.
#[derive(Debug)]
pub struct VfsSnapshotter {
    dir: PathBuf,
    meta: Metadata,
    durability: Durability,
    /// Whether copies may keep other users' ownership (`CAP_CHOWN`).
    privileged: bool,
    _lock: LockGuard,
}

/// Checks a key or name against containerd's rules: not empty, at most
/// [`MAX_KEY_LEN`] bytes, no NUL.
///
/// # Errors
/// [`SnapshotError::InvalidKey`].
pub fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 255 bytes"
    } else if key.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(SnapshotError::InvalidKey {
        key: key.to_string(),
        reason,
    })
}

/// The store helpers report `thinpool` errors; their I/O failures are
/// ours to report as such, not as pool failures.
fn store_err(e: thinpool::Error) -> SnapshotError {
    match e {
        thinpool::Error::Io { op, path, source } => SnapshotError::Io { op, path, source },
        other => SnapshotError::Pool(other),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::View => "a view",
        Kind::Active => "active",
        Kind::Committed => "committed",
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl VfsSnapshotter {
    /// Opens (creating if needed) the snapshotter in `dir` with
    /// [`Durability::Sync`]: takes the lock, waiting for another holder,
    /// and finishes what a crash interrupted.
    ///
    /// # Errors
    /// [`SnapshotError::Io`] when the directory, the lock or the metadata
    /// cannot be used (an unreadable or newer `metadata.json` is reported
    /// with [`io::ErrorKind::InvalidData`]), or recovery fails.
    pub fn open(dir: &Path) -> Result<VfsSnapshotter> {
        VfsSnapshotter::open_with(dir, Durability::Sync)
    }

    /// [`VfsSnapshotter::open`] with a choice of durability.
    ///
    /// # Errors
    /// As [`VfsSnapshotter::open`].
    pub fn open_with(dir: &Path, durability: Durability) -> Result<VfsSnapshotter> {
        let snapshots = dir.join(SNAPSHOTS);
        std::fs::create_dir_all(&snapshots).map_err(io_err("create directory", &snapshots))?;
        // Snapshots hold whatever images and containers put there, setuid
        // binaries included: other users must not reach them (Docker keeps
        // its root 0700 for the same reason).
        std::fs::set_permissions(&snapshots, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("change mode of", &snapshots))?;
        let lock = LockGuard::acquire(&dir.join(LOCK)).map_err(store_err)?;
        remove_stale_temps(dir).map_err(store_err)?;
        let meta = load(&dir.join(METADATA))?;
        let mut s = VfsSnapshotter {
            dir: dir.to_path_buf(),
            meta,
            durability,
            privileged: rustix::process::geteuid().is_root(),
            _lock: lock,
        };
        s.recover()?;
        Ok(s)
    }

    /// The driver's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.dir.join(SNAPSHOTS)
    }

    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.snapshots_dir().join(id.to_string())
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    /// Removes what interrupted operations left: records not `ready` with
    /// their directories, then directories no record claims.
    fn recover(&mut self) -> Result<()> {
        let unfinished: Vec<(String, u64)> = (self.meta.snapshots.iter())
            .filter(|(_, r)| r.state != State::Ready)
            .map(|(k, r)| (k.clone(), r.id))
            .collect();
        for (_, id) in &unfinished {
            tree::remove_tree(&self.snapshot_dir(*id))?;
        }
        let claimed: HashSet<String> = (self.meta.snapshots.values())
            .filter(|r| r.state == State::Ready)
            .map(|r| r.id.to_string())
            .collect();
        let snapshots = self.snapshots_dir();
        let mut removed = !unfinished.is_empty();
        let entries =
            std::fs::read_dir(&snapshots).map_err(io_err("read directory", &snapshots))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &snapshots))?;
            if !claimed.contains(entry.file_name().to_string_lossy().as_ref()) {
                tree::remove_tree(&entry.path())?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&snapshots).map_err(store_err)?;
        }
        if unfinished.is_empty() {
            return Ok(());
        }
        self.update(|m| {
            for (key, _) in &unfinished {
                m.snapshots.remove(key);
            }
        })
    }

    /// Applies `change` to a copy of the metadata, writes it, and only
    /// then adopts it, so memory never runs ahead of the disk.
    fn update(&mut self, change: impl FnOnce(&mut Metadata)) -> Result<()> {
        let mut next = self.meta.clone();
        change(&mut next);
        let path = self.dir.join(METADATA);
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| io_err("encode", &path)(io::Error::from(e)))?;
        atomic_write(&path, &bytes).map_err(store_err)?;
        self.meta = next;
        Ok(())
    }

    fn set_state(&mut self, key: &str, state: State) -> Result<()> {
        self.update(|m| {
            if let Some(r) = m.snapshots.get_mut(key) {
                r.state = state;
            }
        })
    }

    /// The record of a complete snapshot.
    fn ready(&self, key: &str) -> Result<&Record> {
        match self.meta.snapshots.get(key) {
            None => Err(SnapshotError::NotFound {
                key: key.to_string(),
            }),
            Some(r) if r.state != State::Ready => Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: format!(
                    "an interrupted operation left it {:?}; remove it, or reopen the \
                     snapshotter to clean it up",
                    r.state
                ),
            }),
            Some(r) => Ok(r),
        }
    }

    /// The filesystem of `parent`, which must be committed.
    fn parent_fs(&self, parent: &str) -> Result<PathBuf> {
        let r = self.ready(parent)?;
        if r.kind != Kind::Committed {
            return Err(SnapshotError::Precondition {
                key: parent.to_string(),
                reason: format!(
                    "only a committed snapshot can be a parent; this one is {}",
                    kind_name(r.kind)
                ),
            });
        }
        Ok(self.fs_dir(r.id))
    }

    /// Prepare and view: record the intent, make the directory, then mark
    /// the snapshot ready.
    fn create(&mut self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        validate_key(key)?;
        if let Some(p) = parent {
            validate_key(p)?;
        }
        if self.meta.snapshots.contains_key(key) {
            return Err(SnapshotError::Exists {
                key: key.to_string(),
            });
        }
        let parent_fs = parent.map(|p| self.parent_fs(p)).transpose()?;
        let id = self.meta.next;
        let record = Record {
            id,
            seq: id,
            kind,
            parent: parent.map(str::to_string),
            created: now(),
            state: State::Preparing,
        };
        self.update(|m| {
            m.next = id + 1;
            m.snapshots.insert(key.to_string(), record);
        })?;
        let made = self.populate(id, parent_fs.as_deref());
        if let Err(e) = made.and_then(|()| self.set_state(key, State::Ready)) {
            self.discard(key, id);
            return Err(e);
        }
        self.mounts(key)
    }

    /// Makes `snapshots/<id>/fs`: a copy of `parent`, or empty.
    fn populate(&self, id: u64, parent: Option<&Path>) -> Result<()> {
        let snap = self.snapshot_dir(id);
        std::fs::create_dir(&snap).map_err(io_err("create directory", &snap))?;
        let fs = self.fs_dir(id);
        match parent {
            Some(parent) => tree::copy_tree(parent, &fs, self.privileged)?,
            None => {
                std::fs::create_dir(&fs).map_err(io_err("create directory", &fs))?;
                // Explicitly, whatever the umask: an empty root is 0755.
                std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err("change mode of", &fs))?;
            }
        }
        self.sync_data(&fs)
    }

    /// Undoes a failed create, as far as it can. What it cannot undo keeps
    /// its `preparing` record, which the next open removes, so the error
    /// that made the create fail is the one worth returning.
    fn discard(&mut self, key: &str, id: u64) {
        if tree::remove_tree(&self.snapshot_dir(id)).is_ok() {
            let _ = self.update(|m| {
                m.snapshots.remove(key);
            });
        }
    }

    fn sync_data(&self, fs: &Path) -> Result<()> {
        match self.durability {
            Durability::Sync => tree::sync_filesystem(fs),
            Durability::NoSync => Ok(()),
        }
    }

    /// A bind mount of the fs directory. The source is a `String` in the
    /// interface, so a root path that is not UTF-8 comes out lossy.
    fn mounts_of(&self, key: &str, r: &Record) -> Result<Vec<Mount>> {
        let rw = match r.kind {
            Kind::Active => "rw",
            Kind::View => "ro",
            Kind::Committed => {
                return Err(SnapshotError::Precondition {
                    key: key.to_string(),
                    reason: "a committed snapshot has no mounts; prepare or view a child of it"
                        .into(),
                })
            }
        };
        Ok(vec![Mount {
            kind: "bind".into(),
            source: self.fs_dir(r.id).to_string_lossy().into_owned(),
            options: vec!["rbind".into(), rw.into()],
        }])
    }
}

fn info(key: &str, r: &Record) -> Info {
    Info {
        name: key.to_string(),
        parent: r.parent.clone(),
        kind: r.kind,
        created: r.created.clone(),
    }
}

impl Snapshotter for VfsSnapshotter {
    fn driver(&self) -> &'static str {
        "vfs"
    }

    fn prepare(&mut self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    /// A view is a copy too, so nothing done through it reaches the parent;
    /// its mount is read-only.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        self.create(key, Some(parent), Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.mounts_of(key, self.ready(key)?)
    }

    /// Only the metadata changes (the directory stays under its id), so
    /// the commit is one atomic write. With [`Durability::Sync`] the data
    /// is flushed first: a committed layer must not lose files.
    fn commit(&mut self, name: &str, key: &str) -> Result<()> {
        validate_key(name)?;
        let r = self.ready(key)?.clone();
        if r.kind != Kind::Active {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: format!(
                    "only an active snapshot can be committed; this one is {}",
                    kind_name(r.kind)
                ),
            });
        }
        if self.meta.snapshots.contains_key(name) {
            return Err(SnapshotError::Exists {
                key: name.to_string(),
            });
        }
        self.sync_data(&self.fs_dir(r.id))?;
        self.update(|m| {
            m.snapshots.remove(key);
            let seq = m.next;
            m.next += 1;
            let committed = Record {
                seq,
                kind: Kind::Committed,
                created: now(),
                ..r
            };
            m.snapshots.insert(name.to_string(), committed);
        })
    }

    /// Also finishes a removal an error interrupted.
    fn remove(&mut self, key: &str) -> Result<()> {
        let Some(r) = self.meta.snapshots.get(key).cloned() else {
            return Err(SnapshotError::NotFound {
                key: key.to_string(),
            });
        };
        let child = (self.meta.snapshots.iter()).find(|(_, c)| c.parent.as_deref() == Some(key));
        if let Some((child, _)) = child {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: format!("it has children ({child:?} among them); remove them first"),
            });
        }
        if r.state != State::Removing {
            self.set_state(key, State::Removing)?;
        }
        tree::remove_tree(&self.snapshot_dir(r.id))?;
        sync_dir(&self.snapshots_dir()).map_err(store_err)?;
        self.update(|m| {
            m.snapshots.remove(key);
        })
    }

    fn stat(&self, key: &str) -> Result<Info> {
        Ok(info(key, self.ready(key)?))
    }

    /// Every file of the snapshot's directory: vfs shares nothing with the
    /// parent, so an active snapshot or view counts its whole copy.
    fn usage(&mut self, key: &str) -> Result<Usage> {
        let id = self.ready(key)?.id;
        tree::usage(&self.fs_dir(id))
    }

    /// In creation order (a commit counts as a creation), then by name. A
    /// parent is committed before any child is made, so parents come
    /// before their children.
    fn walk(&self) -> Result<Vec<Info>> {
        let mut ready: Vec<(&String, &Record)> = (self.meta.snapshots.iter())
            .filter(|(_, r)| r.state == State::Ready)
            .collect();
        ready.sort_by(|a, b| (a.1.seq, a.0).cmp(&(b.1.seq, b.0)));
        Ok(ready.into_iter().map(|(k, r)| info(k, r)).collect())
    }

    fn path(&mut self, key: &str) -> Result<PathBuf> {
        let id = self.ready(key)?.id;
        Ok(self.fs_dir(id))
    }

    /// Nothing to undo: [`Snapshotter::path`] mounts nothing here.
    fn release(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> VfsSnapshotter {
        VfsSnapshotter::open_with(dir, Durability::NoSync).unwrap()
    }

    #[test]
    fn keys_follow_containerd_rules() {
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(validate_key("a/../b c").is_ok());
        for (bad, why) in [
            (String::new(), "empty"),
            ("k".repeat(MAX_KEY_LEN + 1), "longer than 255 bytes"),
            ("a\0b".to_string(), "contains a NUL byte"),
        ] {
            match validate_key(&bad) {
                Err(SnapshotError::InvalidKey { key, reason }) => {
                    assert_eq!((key, reason), (bad, why));
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_commit_counts_as_a_creation_in_walk() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.prepare("first", None).unwrap();
        s.prepare("second", None).unwrap();
        s.commit("first-done", "first").unwrap();
        s.prepare("child", Some("first-done")).unwrap();
        let names: Vec<String> = s.walk().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["second", "first-done", "child"]);
    }

    #[test]
    fn a_failed_metadata_write_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut s = open(d.path());
        s.prepare("a", None).unwrap();
        let before = s.meta.clone();
        // A directory where the temp file must go makes atomic_write fail.
        std::fs::create_dir(d.path().join("metadata.json.tmp")).unwrap();
        assert!(matches!(
            s.prepare("b", None),
            Err(SnapshotError::Io { .. })
        ));
        assert!(matches!(s.commit("c", "a"), Err(SnapshotError::Io { .. })));
        assert_eq!(s.meta, before);
        assert_eq!(s.stat("a").unwrap().kind, Kind::Active);
        std::fs::remove_dir(d.path().join("metadata.json.tmp")).unwrap();
        s.commit("c", "a").unwrap();
    }
}
