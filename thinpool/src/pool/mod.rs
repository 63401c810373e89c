//! A thin pool under a root directory: its creation, opening with lazy
//! activation, and the shared helpers the other pool modules use. The
//! pool owns its [`Store`] (and so the lock) for as long as it is open.

mod activate;
mod changes;
mod check;
mod discard;
mod recover;
mod report;
mod thin;

pub use check::CheckReport;
pub use recover::RecoveryReport;
pub use report::{DeviceReport, PoolReport};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::fault::FaultPlan;
use crate::kernel::{Kernel, Target};
use crate::status::{parse_pool_status, PoolMode, PoolStatus, PoolStatusLine};
use crate::store::{Backing, PoolRecord, Store};
use crate::units::{Bytes, DataBlocks, Sectors, ThinId};

/// Thin id 0 is the pool's identity device: one block holding the pool's
/// uuid, checked whenever the pool table is loaded, so that a swapped data
/// or metadata file or device is caught before anything is written.
pub const IDENTITY_ID: u32 = 0;
/// Name of the identity device in the store.
pub const IDENTITY_NAME: &str = ".identity";
const IDENTITY_MAGIC: &str = "thinsnap-pool-identity";

/// Settings for a new pool. Defaults follow Docker's loop-lvm.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Data size (loop mode; direct mode uses the device's size).
    pub data_size: Bytes,
    /// Metadata size (loop mode).
    pub metadata_size: Bytes,
    /// Data block size: 64 KiB to 1 GiB, a multiple of 64 KiB.
    pub block_size: Bytes,
    /// Low-water mark; default 32768 blocks, at most a tenth of the pool.
    pub low_water: Option<DataBlocks>,
    /// Zero new blocks before first use.
    pub zero_blocks: bool,
    /// Free-space guard in percent.
    pub min_free_pct: u8,
    /// Direct mode: (data device, metadata device).
    pub direct: Option<(PathBuf, PathBuf)>,
    /// Overwrite a non-blank metadata device.
    pub force: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            data_size: Bytes(100 << 30),
            metadata_size: Bytes(2 << 30),
            block_size: Bytes(64 << 10),
            low_water: None,
            zero_blocks: false,
            min_free_pct: 10,
            direct: None,
            force: false,
        }
    }
}

/// Largest metadata the kernel uses (255 × 16320 blocks of 4 KiB).
pub const MAX_METADATA: Bytes = Bytes(255 * 16320 * 4096);

impl CreateOptions {
    fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::InvalidConfig { field, reason });
        let bs = self.block_size.0;
        if !(64 << 10..=1 << 30).contains(&bs) || !bs.is_multiple_of(64 << 10) {
            return bad(
                "block size",
                "must be a multiple of 64K between 64K and 1G".into(),
            );
        }
        if self.direct.is_none() {
            if self.metadata_size < Bytes(2 << 20) || self.metadata_size > MAX_METADATA {
                return bad("metadata size", "must be between 2M and 15.9G".into());
            }
            if self.data_size.0 < bs * 16 {
                return bad(
                    "data size",
                    format!("must hold at least 16 blocks ({})", Bytes(bs * 16)),
                );
            }
        }
        if self.min_free_pct > 99 {
            return bad("minimum free space", "must be 0 to 99 percent".into());
        }
        Ok(())
    }
}

/// An open pool: store locked, kernel state activated on demand.
pub struct Pool {
    dir: PathBuf,
    store: Store,
    kernel: Box<dyn Kernel>,
    rec: PoolRecord,
    activated: bool,
    /// What the last activation's reconciliation did.
    pub recovery: RecoveryReport,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The directory of the pool under a root.
pub fn pool_dir(root: &Path) -> PathBuf {
    root.join("pool")
}

impl Pool {
    /// Creates a pool under `root` and activates it.
    ///
    /// # Errors
    /// [`Error::PoolExists`], [`Error::InvalidConfig`],
    /// [`Error::MetadataNotBlank`], or what the kernel reports; on error the
    /// store holds no pool and created files are removed.
    pub fn create(root: &Path, kernel: Box<dyn Kernel>, opts: &CreateOptions) -> Result<Pool> {
        Self::create_with(root, kernel, opts, None)
    }

    /// [`Pool::create`] with saves routed through a fault plan (tests).
    ///
    /// # Errors
    /// As [`Pool::create`].
    pub fn create_with(
        root: &Path,
        kernel: Box<dyn Kernel>,
        opts: &CreateOptions,
        faults: Option<Arc<FaultPlan>>,
    ) -> Result<Pool> {
        opts.validate()?;
        let dir = pool_dir(root);
        let mut store = Store::open(&dir)?;
        if let Some(f) = faults {
            store.set_faults(f);
        }
        if store.data.pool.is_some() {
            return Err(Error::PoolExists {
                root: root.to_path_buf(),
            });
        }
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let (backing, data_size, metadata_size) = match &opts.direct {
            None => Self::make_files(&dir, opts)?,
            Some((data, meta)) => Self::check_direct(kernel.as_ref(), data, meta, opts.force)?,
        };
        let blocks = data_size.0 / opts.block_size.0;
        let low_water = opts
            .low_water
            .unwrap_or(DataBlocks(32768.min(blocks / 10).max(1)));
        let rec = PoolRecord {
            dm_name: format!("thinsnap-{}-pool", &uuid[..12]),
            uuid,
            backing,
            data_size,
            metadata_size,
            block_size: opts.block_size.sectors(),
            low_water,
            zero_blocks: opts.zero_blocks,
            min_free_pct: opts.min_free_pct,
            created: now(),
        };
        store.data = Default::default();
        store.data.pool = Some(rec.clone());
        store.save()?;
        let mut pool = Pool {
            dir,
            store,
            kernel,
            rec,
            activated: false,
            recovery: RecoveryReport::default(),
        };
        if let Err(e) = pool.activate() {
            // Leave the root as it was before the command.
            pool.undo_create();
            return Err(e);
        }
        Ok(pool)
    }

    /// Best-effort teardown of a pool whose creation failed.
    fn undo_create(&mut self) {
        let _ = self.deactivate();
        if let Backing::Loop {
            data_file,
            metadata_file,
        } = &self.rec.backing
        {
            let _ = std::fs::remove_file(data_file);
            let _ = std::fs::remove_file(metadata_file);
        }
        let _ = self.store.remove();
    }

    fn make_files(dir: &Path, opts: &CreateOptions) -> Result<(Backing, Bytes, Bytes)> {
        let data_file = dir.join("data");
        let metadata_file = dir.join("metadata");
        for (path, size) in [
            (&data_file, opts.data_size),
            (&metadata_file, opts.metadata_size),
        ] {
            // Truncating to 0 first drops whatever a failed earlier create left.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(Error::io("create", path.as_path()))?;
            f.set_len(size.0)
                .map_err(Error::io("size", path.as_path()))?;
            f.sync_all().map_err(Error::io("fsync", path.as_path()))?;
        }
        // The kernel formats metadata whose first 4 KiB are zero; a new
        // sparse file already reads as zeros, this makes it explicit.
        crate::kernel::real::write_head(&metadata_file, &[0u8; 4096])?;
        crate::store::atomic::sync_dir(dir)?;
        Ok((
            Backing::Loop {
                data_file,
                metadata_file,
            },
            opts.data_size,
            opts.metadata_size,
        ))
    }

    fn check_direct(
        k: &dyn Kernel,
        data: &Path,
        meta: &Path,
        force: bool,
    ) -> Result<(Backing, Bytes, Bytes)> {
        k.dev_number(data)?;
        k.dev_number(meta)?;
        if data == meta {
            return Err(Error::InvalidConfig {
                field: "devices",
                reason: "data and metadata devices must differ".into(),
            });
        }
        let head = k.read_head(meta, 4096)?;
        if head.iter().any(|b| *b != 0) {
            if !force {
                return Err(Error::MetadataNotBlank {
                    device: meta.to_path_buf(),
                });
            }
            k.write_head(meta, &[0u8; 4096])?;
        }
        let data_size = k.dev_size(data)?;
        let meta_size = k.dev_size(meta)?.min(MAX_METADATA);
        Ok((
            Backing::Direct {
                data_dev: data.to_path_buf(),
                metadata_dev: meta.to_path_buf(),
            },
            data_size,
            meta_size,
        ))
    }

    /// Opens the pool under `root` without touching the kernel.
    ///
    /// # Errors
    /// [`Error::NoPool`] when none was created, or store errors.
    pub fn open(root: &Path, kernel: Box<dyn Kernel>) -> Result<Pool> {
        Self::open_with(root, kernel, None)
    }

    /// [`Pool::open`] with saves routed through a fault plan (tests).
    ///
    /// # Errors
    /// As [`Pool::open`].
    pub fn open_with(
        root: &Path,
        kernel: Box<dyn Kernel>,
        faults: Option<Arc<FaultPlan>>,
    ) -> Result<Pool> {
        let dir = pool_dir(root);
        if !dir.join("store").exists() {
            return Err(Error::NoPool {
                root: root.to_path_buf(),
            });
        }
        let mut store = Store::open(&dir)?;
        if let Some(f) = faults {
            store.set_faults(f);
        }
        let rec = store.data.pool.clone().ok_or_else(|| Error::NoPool {
            root: root.to_path_buf(),
        })?;
        Ok(Pool {
            dir,
            store,
            kernel,
            rec,
            activated: false,
            recovery: RecoveryReport::default(),
        })
    }

    /// The pool's record.
    pub fn record(&self) -> &PoolRecord {
        &self.rec
    }

    /// The store's data (read-only).
    pub fn store(&self) -> &crate::store::StoreData {
        &self.store.data
    }

    /// The directory holding the store and loop files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dm name of thin device `id`.
    pub fn thin_dm_name(&self, id: ThinId) -> String {
        let prefix = self
            .rec
            .dm_name
            .strip_suffix("-pool")
            .unwrap_or(&self.rec.dm_name);
        format!("{prefix}-{id}")
    }

    fn save(&mut self) -> Result<()> {
        self.store.data.pool = Some(self.rec.clone());
        self.store.save()
    }

    fn pool_table(&self, meta: &Path, data: &Path) -> Result<Vec<Target>> {
        let (mj, mn) = self.kernel.dev_number(meta)?;
        let (dj, dn) = self.kernel.dev_number(data)?;
        let mut features = vec!["error_if_no_space"];
        if !self.rec.zero_blocks {
            features.push("skip_block_zeroing");
        }
        Ok(vec![Target {
            start: Sectors(0),
            len: self.rec.data_size.sectors(),
            kind: "thin-pool".into(),
            params: format!(
                "{mj}:{mn} {dj}:{dn} {} {} {} {}",
                self.rec.block_size.0,
                self.rec.low_water.0,
                features.len(),
                features.join(" ")
            ),
        }])
    }

    fn thin_table(&self, id: ThinId, size: Sectors) -> Result<Vec<Target>> {
        let info = self
            .kernel
            .dm_info(&self.rec.dm_name)?
            .ok_or_else(|| Error::Unreconciled {
                detail: format!("pool {} is not active", self.rec.dm_name),
            })?;
        Ok(vec![Target {
            start: Sectors(0),
            len: size,
            kind: "thin".into(),
            params: format!("{} {id}", info.devno()),
        }])
    }

    /// The kernel's status of the pool.
    ///
    /// # Errors
    /// Kernel errors, or [`Error::PoolUnhealthy`] when the pool failed.
    pub fn kernel_status(&self) -> Result<PoolStatusLine> {
        let line = self.kernel.dm_status(&self.rec.dm_name)?;
        match parse_pool_status(&line) {
            Some(PoolStatus::Working(w)) => Ok(w),
            Some(PoolStatus::Fail) | Some(PoolStatus::Error) => Err(self.unhealthy("failed")),
            None => Err(Error::Unreconciled {
                detail: format!("unreadable pool status {line:?}"),
            }),
        }
    }

    fn unhealthy(&self, state: &str) -> Error {
        Error::PoolUnhealthy {
            pool: self.rec.dm_name.clone(),
            state: state.to_string(),
            hint: "deactivate it with `thinsnap pool deactivate`, then run `thinsnap pool check` (thin_check; thin_repair if it reports damage)".into(),
        }
    }

    /// Refuses changes to a pool the kernel reports as read-only, failed
    /// or needing a check.
    fn writable_status(&self) -> Result<PoolStatusLine> {
        let st = self.kernel_status()?;
        if st.needs_check {
            return Err(self.unhealthy("flagged needs_check"));
        }
        if st.mode == PoolMode::ReadOnly {
            return Err(self.unhealthy("read-only"));
        }
        Ok(st)
    }

    /// Refuses a new device when free data or metadata is below the guard.
    fn guard_space(&self) -> Result<()> {
        let st = self.writable_status()?;
        let pct = |used: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * (total - used.min(total)) as f64 / total as f64
            }
        };
        let min = self.rec.min_free_pct;
        let data_free = pct(st.data_used.0, st.data_total.0);
        if st.mode == PoolMode::OutOfDataSpace || data_free < f64::from(min) {
            return Err(Error::LowSpace {
                space: "data",
                free_pct: data_free,
                min_pct: min,
            });
        }
        let meta_free = pct(st.meta_used, st.meta_total);
        if meta_free < f64::from(min) {
            return Err(Error::LowSpace {
                space: "metadata",
                free_pct: meta_free,
                min_pct: min,
            });
        }
        Ok(())
    }

    fn identity_bytes(&self) -> Vec<u8> {
        let mut b = format!("{IDENTITY_MAGIC} {}\n", self.rec.uuid).into_bytes();
        b.resize(512, 0);
        b
    }
}
