//! The devmapper snapshotter: every snapshot is a thin device in the pool.
//! A base device holds an empty filesystem (made once); a snapshot without
//! a parent is a thin snapshot of the base, any other a thin snapshot of
//! its committed parent, so layers shared by many images exist once and a
//! new snapshot costs the same whatever its parent's size: no data is
//! copied, no process is spawned.
//!
//! The snapshot records live in `<root>/snapshots/devmapper/metadata.json`,
//! replaced atomically while the pool's lock is held (the pool is open for
//! the snapshotter's whole life). A new snapshot is recorded once the pool
//! has its device; a removal is marked (`removing`) before the device goes.
//! On open, unfinished changes are rolled back or finished, and pool
//! devices owned by the snapshotter that no record names are deleted.
//!
//! A diff of an active snapshot against its parent reads only the paths
//! whose inodes the pool says may have changed (ext4), through an inode
//! index of the parent kept beside the records ([`index`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thinpool::fs::{self as tfs, FsKind};
use thinpool::store::atomic::atomic_write;
use thinpool::{Bytes, Pool};

use super::vfs::validate_key;

mod base;
mod index;
mod recover;
use super::{DeviceInfo, Info, Kind, Mount, Result, SnapshotError, Snapshotter, Usage};

/// Owner recorded on the pool devices of snapshots.
pub const OWNER: &str = "snapshot";
/// Name of the base device in the pool.
pub const BASE_DEVICE: &str = "snapshot-base";

/// Settings of the driver (config `[devmapper]`).
#[derive(Clone, Debug)]
pub struct DmSettings {
    /// Size of the base device: the largest a snapshot's filesystem starts.
    pub base_size: Bytes,
    /// Filesystem of the base device.
    pub fs: FsKind,
    /// Extra mkfs arguments.
    pub mkfs_options: Vec<String>,
    /// Extra mount options.
    pub mount_options: Vec<String>,
}

impl Default for DmSettings {
    fn default() -> Self {
        DmSettings {
            base_size: Bytes(10 << 30),
            fs: FsKind::Ext4,
            mkfs_options: vec![],
            mount_options: vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Ready,
    Preparing,
    Removing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rec {
    seq: u64,
    device: String,
    parent: Option<String>,
    kind: Kind,
    created: String,
    state: State,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Base {
    fs: FsKind,
    size: Bytes,
    ready: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Meta {
    next: u64,
    base: Option<Base>,
    snaps: BTreeMap<String, Rec>,
}

/// Snapshots as thin devices.
pub struct DevmapperSnapshotter {
    pool: Pool,
    file: PathBuf,
    mnt: PathBuf,
    meta: Meta,
    settings: DmSettings,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.to_path_buf();
    move |source| SnapshotError::Io { op, path, source }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl DevmapperSnapshotter {
    /// Opens the snapshotter on the pool under `root`, recovering what a
    /// killed command left.
    ///
    /// # Errors
    /// Pool errors ([`thinpool::Error::NoPool`] first of all), I/O errors.
    pub fn open(root: &Path, settings: DmSettings) -> Result<DevmapperSnapshotter> {
        let mut pool = Pool::open(root, Box::new(thinpool::RealKernel::new()))?;
        pool.activate()?;
        let dir = root.join("snapshots").join("devmapper");
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let file = dir.join("metadata.json");
        let meta = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| SnapshotError::Io {
                op: "parse",
                path: file.clone(),
                source: e.into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(io("read", &file)(e)),
        };
        let mnt = root.join("mnt");
        tfs::make_private_dir(&mnt)?;
        let mut s = DevmapperSnapshotter {
            pool,
            file,
            mnt,
            meta,
            settings,
        };
        s.recover()?;
        Ok(s)
    }

    /// The pool underneath.
    pub fn pool(&mut self) -> &mut Pool {
        &mut self.pool
    }

    fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.meta).map_err(|e| SnapshotError::Io {
            op: "encode",
            path: self.file.clone(),
            source: e.into(),
        })?;
        Ok(atomic_write(&self.file, &bytes)?)
    }

    /// The record of active `key`, checking that it may be committed as
    /// `name`.
    fn committable(&self, name: &str, key: &str) -> Result<Rec> {
        validate_key(name)?;
        let r = self.rec(key)?.clone();
        if r.kind != Kind::Active {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: "only an active snapshot can be committed".into(),
            });
        }
        if self.meta.snaps.contains_key(name) {
            return Err(SnapshotError::Exists {
                key: name.to_string(),
            });
        }
        Ok(r)
    }

    fn fs(&self) -> FsKind {
        self.meta
            .base
            .as_ref()
            .map(|b| b.fs)
            .unwrap_or(self.settings.fs)
    }

    fn rec(&self, key: &str) -> Result<&Rec> {
        self.meta
            .snaps
            .get(key)
            .filter(|r| r.state == State::Ready)
            .ok_or_else(|| SnapshotError::NotFound {
                key: key.to_string(),
            })
    }

    /// A new snapshot device of `parent` (of the base without one). It is
    /// recorded only once the pool has it: a kill before that leaves a pool
    /// device no record names, which every open deletes. `activate` brings
    /// it up, so the mounts [`Snapshotter::prepare`] returns are usable.
    fn create(
        &mut self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        activate: bool,
    ) -> Result<()> {
        validate_key(key)?;
        if self.meta.snaps.contains_key(key) {
            return Err(SnapshotError::Exists {
                key: key.to_string(),
            });
        }
        let origin = match parent {
            Some(p) => {
                let r = self.rec(p)?;
                if r.kind != Kind::Committed {
                    return Err(SnapshotError::Precondition {
                        key: key.to_string(),
                        reason: format!("parent {p:?} is not committed"),
                    });
                }
                r.device.clone()
            }
            None => {
                self.ensure_base()?;
                BASE_DEVICE.to_string()
            }
        };
        let seq = self.meta.next;
        let device = format!("snap-{seq}");
        self.pool.snapshot(&origin, &device, OWNER)?;
        self.meta.next += 1;
        self.meta.snaps.insert(
            key.to_string(),
            Rec {
                seq,
                device: device.clone(),
                parent: parent.map(str::to_string),
                kind,
                created: now(),
                state: State::Ready,
            },
        );
        if let Err(e) = self.save() {
            self.meta.snaps.remove(key);
            self.meta.next -= 1;
            let _ = self.delete_device(&device);
            return Err(e);
        }
        // Active snapshots and views stay active once up, so their mounts
        // are valid for as long as they exist; committed ones rest inactive.
        if activate {
            self.pool.activate_thin(&device)?;
        }
        Ok(())
    }

    /// Inodes used by a snapshot's filesystem (mounting it briefly).
    fn inodes(&mut self, key: &str) -> Result<u64> {
        let r = self.rec(key)?.clone();
        let was_mounted = tfs::is_mounted(&self.mount_dir(&r));
        let dir = self.path(key)?;
        let n = tfs::used_inodes(&dir);
        if !was_mounted {
            self.release(key)?;
        }
        Ok(n?)
    }

    fn mount_dir(&self, r: &Rec) -> PathBuf {
        self.mnt.join(r.seq.to_string())
    }

    fn has_children(&self, key: &str) -> bool {
        self.meta
            .snaps
            .values()
            .any(|r| r.parent.as_deref() == Some(key))
    }

    /// The block device of a snapshot, activated (for microVMs).
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`], pool errors.
    pub fn device(&mut self, key: &str) -> Result<PathBuf> {
        let dev = self.rec(key)?.device.clone();
        Ok(self.pool.activate_thin(&dev)?)
    }

    /// The pool device name of a snapshot.
    ///
    /// # Errors
    /// [`SnapshotError::NotFound`].
    pub fn device_name(&self, key: &str) -> Result<String> {
        Ok(self.rec(key)?.device.clone())
    }
}

impl Snapshotter for DevmapperSnapshotter {
    fn driver(&self) -> &'static str {
        "devmapper"
    }

    fn prepare(&mut self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active, true)?;
        self.mounts(key)
    }

    /// As Docker's devmapper driver did, the device is activated at its
    /// first mount (or `device`), not at create.
    fn prepare_idle(&mut self, key: &str, parent: Option<&str>) -> Result<()> {
        self.create(key, parent, Kind::Active, false)
    }

    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        self.create(key, Some(parent), Kind::View, true)?;
        self.mounts(key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let r = self.rec(key)?;
        if r.kind == Kind::Committed {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: "a committed snapshot has no mounts; view it first".into(),
            });
        }
        let fs = self.fs();
        let mut options: Vec<String> = fs
            .required_options()
            .iter()
            .map(|s| s.to_string())
            .collect();
        options.extend(self.settings.mount_options.iter().cloned());
        if r.kind == Kind::View {
            options.push("ro".into());
        }
        let source =
            thinpool::kernel::mapper_path(&self.pool.thin_dm_name(self.pool.device(&r.device)?.id));
        Ok(vec![Mount {
            kind: fs.name().to_string(),
            source: source.display().to_string(),
            options,
        }])
    }

    fn commit(&mut self, name: &str, key: &str) -> Result<()> {
        let r = self.committable(name, key)?;
        // Unmounting flushes the filesystem; deactivating flushes the device.
        tfs::unmount(&self.mount_dir(&r))?;
        self.pool.deactivate_thin(&r.device)?;
        self.meta.snaps.remove(key);
        self.meta.snaps.insert(
            name.to_string(),
            Rec {
                kind: Kind::Committed,
                ..r
            },
        );
        self.save()
    }

    fn remove(&mut self, key: &str) -> Result<()> {
        let r = self
            .meta
            .snaps
            .get(key)
            .cloned()
            .ok_or_else(|| SnapshotError::NotFound {
                key: key.to_string(),
            })?;
        if self.has_children(key) {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: "it has children; remove them first".into(),
            });
        }
        tfs::unmount(&self.mount_dir(&r))?;
        if let Some(x) = self.meta.snaps.get_mut(key) {
            x.state = State::Removing;
        }
        self.save()?;
        self.delete_device(&r.device)?;
        self.meta.snaps.remove(key);
        self.save()
    }

    fn stat(&self, key: &str) -> Result<Info> {
        let r = self.rec(key)?;
        Ok(Info {
            name: key.to_string(),
            parent: r.parent.clone(),
            kind: r.kind,
            created: r.created.clone(),
        })
    }

    fn usage(&mut self, key: &str) -> Result<Usage> {
        let r = self.rec(key)?.clone();
        let own = self.pool.mapped(&r.device)?.0;
        let own_inodes = self.inodes(key)?;
        let (parent, parent_inodes) = match &r.parent {
            Some(p) => {
                let pd = self.rec(p)?.device.clone();
                (self.pool.mapped(&pd)?.0, self.inodes(p)?)
            }
            None => (0, 0),
        };
        Ok(Usage {
            size: own.saturating_sub(parent),
            inodes: own_inodes.saturating_sub(parent_inodes),
        })
    }

    /// The bytes of the blocks the device does not share with its
    /// parent's, read from the pool's metadata without activating or
    /// mounting anything; [`Snapshotter::usage`]'s count where the
    /// metadata cannot be read.
    fn size(&mut self, key: &str) -> Result<u64> {
        let device = self.rec(key)?.device.clone();
        match self.pool.unshared(&device) {
            Ok(Some(ranges)) => Ok(ranges.iter().map(|(_, len)| len.0).sum()),
            _ => Ok(self.usage(key)?.size),
        }
    }

    fn walk(&self) -> Result<Vec<Info>> {
        let mut v: Vec<(&String, &Rec)> = self
            .meta
            .snaps
            .iter()
            .filter(|(_, r)| r.state == State::Ready)
            .collect();
        v.sort_by_key(|(k, r)| (r.seq, (*k).clone()));
        // A commit keeps the device and sequence of its key, so a parent can
        // have a higher sequence than a child; order parents first.
        let mut out: Vec<Info> = Vec::new();
        let mut placed = std::collections::BTreeSet::new();
        while out.len() < v.len() {
            let before = out.len();
            for (k, r) in &v {
                if !placed.contains(*k) && r.parent.as_ref().is_none_or(|p| placed.contains(p)) {
                    placed.insert((*k).clone());
                    out.push(Info {
                        name: (*k).clone(),
                        parent: r.parent.clone(),
                        kind: r.kind,
                        created: r.created.clone(),
                    });
                }
            }
            if out.len() == before {
                break;
            }
        }
        Ok(out)
    }

    fn path(&mut self, key: &str) -> Result<PathBuf> {
        let r = self.rec(key)?.clone();
        let dev = self.pool.activate_thin(&r.device)?;
        let target = self.mount_dir(&r);
        if !tfs::is_mounted(&target) {
            tfs::mount_dev(
                &dev,
                &target,
                self.fs(),
                r.kind != Kind::Active,
                &self.settings.mount_options,
            )?;
        }
        Ok(target)
    }

    fn release(&mut self, key: &str) -> Result<()> {
        let r = self.rec(key)?.clone();
        tfs::unmount(&self.mount_dir(&r))?;
        if r.kind == Kind::Committed {
            self.pool.deactivate_thin(&r.device)?;
        }
        Ok(())
    }

    fn device(&mut self, key: &str) -> Result<Option<PathBuf>> {
        DevmapperSnapshotter::device(self, key).map(Some)
    }

    fn commit_copy(&mut self, name: &str, key: &str) -> Result<bool> {
        let r = self.committable(name, key)?;
        let seq = self.meta.next;
        self.meta.next += 1;
        let device = format!("snap-{seq}");
        self.meta.snaps.insert(
            name.to_string(),
            Rec {
                seq,
                device: device.clone(),
                parent: r.parent.clone(),
                kind: Kind::Committed,
                created: now(),
                state: State::Preparing,
            },
        );
        self.save()?;
        // A live origin is suspended around create_snap, which freezes a
        // mounted filesystem first, so the copy is consistent.
        if let Err(e) = self.pool.snapshot(&r.device, &device, OWNER) {
            self.meta.snaps.remove(name);
            self.save()?;
            return Err(e.into());
        }
        if let Some(x) = self.meta.snaps.get_mut(name) {
            x.state = State::Ready;
        }
        self.save()?;
        Ok(true)
    }

    fn changed_paths(&mut self, key: &str) -> Result<Option<BTreeSet<Vec<u8>>>> {
        self.changed_paths_of(key)
    }

    fn grow(&mut self, key: &str, size: u64) -> Result<()> {
        let r = self.rec(key)?.clone();
        if r.kind != Kind::Active {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: "only an active snapshot can grow".into(),
            });
        }
        let target = self.mount_dir(&r);
        if tfs::is_mounted(&target) {
            return Err(SnapshotError::Precondition {
                key: key.to_string(),
                reason: "unmount it before growing it".into(),
            });
        }
        self.pool.resize_thin(&r.device, Bytes(size))?;
        let dev = self.pool.activate_thin(&r.device)?;
        match self.fs() {
            // ext4 grows offline; xfs only while mounted.
            FsKind::Ext4 => {
                tfs::grow(&dev, FsKind::Ext4, &target)?;
                self.drop_lost_found(&dev, FsKind::Ext4)?;
            }
            FsKind::Xfs => {
                self.path(key)?;
                let grown = tfs::grow(&dev, FsKind::Xfs, &target);
                self.release(key)?;
                grown?;
            }
        }
        Ok(())
    }

    fn device_info(&self, key: &str) -> Result<Option<DeviceInfo>> {
        let d = self.pool.device(&self.device_name(key)?)?;
        Ok(Some(DeviceInfo {
            id: d.id.get(),
            name: d.name,
            size: d.size.bytes().0,
            path: thinpool::kernel::mapper_path(&self.pool.thin_dm_name(d.id)),
        }))
    }
}
