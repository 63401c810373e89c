//! The pool's one metadata store: the pool's identity and geometry, the
//! transaction id kept in step with the kernel's, and every thin device
//! record with its state. Serialised with bincode behind a magic, a format
//! version and a SHA-256 checksum, and only ever replaced atomically under
//! the exclusive lock (see [`atomic`]).

pub mod atomic;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fault::FaultPlan;
use crate::units::{Bytes, DataBlocks, Sectors, ThinId};

const MAGIC: &[u8; 8] = b"THINSNAP";
/// Format version of the store file; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Where the pool's data and metadata live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backing {
    /// Sparse files attached to loop devices (Docker's loop-lvm).
    Loop {
        /// The data file.
        data_file: PathBuf,
        /// The metadata file.
        metadata_file: PathBuf,
    },
    /// Block devices given by the user.
    Direct {
        /// The data device.
        data_dev: PathBuf,
        /// The metadata device.
        metadata_dev: PathBuf,
    },
}

/// The pool's identity and geometry, fixed at create (sizes grow on extend).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// Random id written into the pool's identity device and its dm uuid.
    pub uuid: String,
    /// Device-mapper name of the pool.
    pub dm_name: String,
    /// Files or devices.
    pub backing: Backing,
    /// Data size.
    pub data_size: Bytes,
    /// Metadata size.
    pub metadata_size: Bytes,
    /// Data block size.
    pub block_size: Sectors,
    /// Low-water mark.
    pub low_water: DataBlocks,
    /// Whether new blocks are zeroed before first use.
    pub zero_blocks: bool,
    /// Free-space guard, in percent of data and of metadata.
    pub min_free_pct: u8,
    /// Creation time, seconds since the epoch.
    pub created: u64,
}

/// Where a device is in its life. Every state but `Ready` is an intent
/// recorded before a kernel message; recovery resolves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceState {
    /// `create_thin`/`create_snap` is about to be or was sent.
    Creating,
    /// Exists in the pool and in the store.
    Ready,
    /// `delete` is about to be or was sent, or failed and will be retried.
    Deleting,
}

/// One thin device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The kernel's id.
    pub id: ThinId,
    /// Unique name in this pool.
    pub name: String,
    /// Who uses it: `volume`, `layer`, `container`, `base`, `pool`.
    pub owner: String,
    /// Virtual size.
    pub size: Sectors,
    /// The device it was snapshotted from, by name, if any.
    pub origin: Option<String>,
    /// Life state.
    pub state: DeviceState,
    /// Whether it should be active (re-activated after a reboot).
    pub want_active: bool,
    /// Creation time, seconds since the epoch.
    pub created: u64,
}

/// Everything the store holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreData {
    /// The pool, once created.
    pub pool: Option<PoolRecord>,
    /// The transaction id the kernel's pool should report.
    pub transaction_id: u64,
    /// Every device, by thin id.
    pub devices: BTreeMap<ThinId, DeviceRecord>,
    /// Ids never to reuse: their kernel state is unknown.
    pub quarantined: BTreeSet<ThinId>,
}

impl StoreData {
    /// The device named `name`.
    pub fn by_name(&self, name: &str) -> Option<&DeviceRecord> {
        self.devices.values().find(|d| d.name == name)
    }

    /// Lowest id from `first` that is neither used nor quarantined.
    pub fn free_id(&self, first: u32) -> Result<ThinId> {
        let mut candidate = u64::from(first);
        loop {
            let id = ThinId::new(candidate).map_err(|_| Error::ThinIdsExhausted)?;
            if !self.devices.contains_key(&id) && !self.quarantined.contains(&id) {
                return Ok(id);
            }
            candidate += 1;
        }
    }
}

/// The store file, its lock, and the data last read or written.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    _lock: atomic::LockGuard,
    /// The records; change them, then [`Store::save`].
    pub data: StoreData,
    faults: Option<Arc<FaultPlan>>,
}

impl Store {
    /// Locks `dir` and reads its store (empty when there is none yet).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::StoreCorrupt`].
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        let lock = atomic::LockGuard::acquire(&dir.join("lock"))?;
        atomic::remove_stale_temps(dir)?;
        let path = dir.join("store");
        let data = match std::fs::read(&path) {
            Ok(bytes) => decode(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreData::default(),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        Ok(Store {
            path,
            _lock: lock,
            data,
            faults: None,
        })
    }

    /// Routes saves through a fault plan (tests only).
    pub fn set_faults(&mut self, plan: Arc<FaultPlan>) {
        self.faults = Some(plan);
    }

    /// Writes the current data atomically.
    ///
    /// # Errors
    /// [`Error::Io`]; the file then still holds the previous data.
    pub fn save(&mut self) -> Result<()> {
        if let Some(plan) = &self.faults {
            plan.step("store save")?;
        }
        atomic::atomic_write(&self.path, &encode(&self.data)?)
    }

    /// Removes the store file (pool destroyed).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn remove(&mut self) -> Result<()> {
        self.data = StoreData::default();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &self.path)(e)),
        }
        if let Some(dir) = self.path.parent() {
            atomic::sync_dir(dir)?;
        }
        Ok(())
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode(data: &StoreData) -> Result<Vec<u8>> {
    let body = bincode::serialize(data).map_err(|e| Error::StoreCorrupt {
        path: PathBuf::new(),
        reason: format!("cannot encode: {e}"),
    })?;
    let mut out = Vec::with_capacity(body.len() + 44);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode(path: &Path, bytes: &[u8]) -> Result<StoreData> {
    let bad = |reason: String| Error::StoreCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 44 || &bytes[..8] != MAGIC {
        return Err(bad("not a thinsnap store".into()));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}, this thinsnap reads {FORMAT_VERSION}"
        )));
    }
    let (sum, body) = bytes[12..].split_at(32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(bad("checksum mismatch".into()));
    }
    bincode::deserialize(body).map_err(|e| bad(format!("cannot decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, name: &str) -> DeviceRecord {
        DeviceRecord {
            id: ThinId::new(id.into()).unwrap(),
            name: name.into(),
            owner: "volume".into(),
            size: Sectors(2048),
            origin: None,
            state: DeviceState::Ready,
            want_active: false,
            created: 1,
        }
    }

    #[test]
    fn round_trips_and_detects_corruption() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(d.path()).unwrap();
            s.data.transaction_id = 7;
            s.data
                .devices
                .insert(ThinId::new(3).unwrap(), record(3, "a"));
            s.save().unwrap();
        }
        let s = Store::open(d.path()).unwrap();
        assert_eq!(s.data.transaction_id, 7);
        assert_eq!(s.data.by_name("a").unwrap().id.get(), 3);
        let path = s.path().to_path_buf();
        drop(s);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(d.path()).unwrap_err();
        assert!(
            matches!(err, Error::StoreCorrupt { ref reason, .. } if reason.contains("checksum")),
            "{err}"
        );
    }

    #[test]
    fn failed_save_keeps_previous_content() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        s.data.transaction_id = 1;
        s.save().unwrap();
        s.set_faults(Arc::new(FaultPlan::fail_at(1)));
        s.data.transaction_id = 2;
        assert!(s.save().is_err());
        drop(s);
        assert_eq!(Store::open(d.path()).unwrap().data.transaction_id, 1);
    }

    #[test]
    fn free_id_skips_used_and_quarantined() {
        let mut data = StoreData::default();
        data.devices.insert(ThinId::new(1).unwrap(), record(1, "a"));
        data.quarantined.insert(ThinId::new(2).unwrap());
        assert_eq!(data.free_id(1).unwrap().get(), 3);
        assert_eq!(data.free_id(0).unwrap().get(), 0);
    }
}
