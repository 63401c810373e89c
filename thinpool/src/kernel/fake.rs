//! An in-memory model of loop devices and dm-thin, faithful where pool
//! logic depends on it: thin ids and their errnos (`EEXIST`, `ENODATA`),
//! the transaction id, suspend state, tables that must name existing thin
//! ids, and pool metadata that outlives a "reboot" while devices do not.
//! Every call is one step of an optional [`FaultPlan`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;

use super::{mapper_path, DmInfo, Kernel, Target};
use crate::error::{Error, KernelError, Result};
use crate::fault::FaultPlan;
use crate::units::Bytes;

/// One pool's metadata, as the metadata device would hold it.
#[derive(Clone, Debug, Default)]
pub struct FakePoolMeta {
    /// Transaction id.
    pub txid: u64,
    /// Thin id → mapped data blocks.
    pub thins: BTreeMap<u32, u64>,
    /// Extra used data blocks set by tests (to drive the free-space guard).
    pub extra_used: u64,
    /// First bytes written to each thin device.
    pub heads: BTreeMap<u32, Vec<u8>>,
    /// Health the kernel reports: `None`, `Some("ro")`, `Some("needs_check")`, `Some("fail")`.
    pub health: Option<String>,
}

#[derive(Clone, Debug)]
struct FakeDev {
    major: u32,
    minor: u32,
    live: Option<Vec<Target>>,
    inactive: Option<Vec<Target>>,
    suspended: bool,
    open_count: i32,
}

/// The shared state: what the kernel (and the disks) hold.
#[derive(Debug, Default)]
pub struct FakeState {
    loops: BTreeMap<PathBuf, PathBuf>,
    next_loop: u32,
    next_minor: u32,
    numbers: BTreeMap<PathBuf, (u32, u32)>,
    devs: BTreeMap<String, FakeDev>,
    /// Pool metadata keyed by the metadata file or device path.
    pub metas: BTreeMap<PathBuf, FakePoolMeta>,
}

impl FakeState {
    fn path_of(&self, devno: &str) -> Option<PathBuf> {
        let (ma, mi) = devno.split_once(':')?;
        let want = (ma.parse().ok()?, mi.parse().ok()?);
        if want.0 == 7 {
            return self
                .loops
                .get(&PathBuf::from(format!("/dev/loop{}", want.1)))
                .cloned();
        }
        self.numbers
            .iter()
            .find(|(_, n)| **n == want)
            .map(|(p, _)| p.clone())
    }

    fn dm_by_devno(&self, devno: &str) -> Option<String> {
        self.devs
            .iter()
            .find(|(_, d)| format!("{}:{}", d.major, d.minor) == devno)
            .map(|(n, _)| n.clone())
    }

    /// The pool metadata path and block size behind a pool dm device.
    fn pool_of(&self, name: &str) -> Option<(PathBuf, PathBuf, u64)> {
        let dev = self.devs.get(name)?;
        let t = dev.live.as_ref()?.first()?;
        if t.kind != "thin-pool" {
            return None;
        }
        let mut it = t.params.split_whitespace();
        let meta = self.path_of(it.next()?)?;
        let data = self.path_of(it.next()?)?;
        let block: u64 = it.next()?.parse().ok()?;
        Some((meta, data, block))
    }
}

/// The fake kernel; clones share one state, like processes on one host.
#[derive(Clone, Debug, Default)]
pub struct FakeKernel {
    state: Arc<Mutex<FakeState>>,
    faults: Option<Arc<FaultPlan>>,
}

fn errno(op: &'static str, target: &str, e: Errno) -> Error {
    Error::Kernel {
        op,
        target: target.to_string(),
        source: KernelError::Errno(e),
    }
}

impl FakeKernel {
    /// A fresh, empty kernel.
    pub fn new() -> FakeKernel {
        FakeKernel::default()
    }

    /// The same kernel seen by a process that fails per `plan`.
    pub fn with_faults(&self, plan: Arc<FaultPlan>) -> FakeKernel {
        FakeKernel {
            state: Arc::clone(&self.state),
            faults: Some(plan),
        }
    }

    /// Locks and returns the shared state (for test assertions).
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every loop and dm device, keeping pool metadata: a reboot.
    pub fn reboot(&self) {
        let mut s = self.state();
        s.loops.clear();
        s.devs.clear();
    }

    /// Thin ids in the pool whose metadata lives at `meta`.
    pub fn thin_ids(&self, meta: &Path) -> Vec<u32> {
        self.state()
            .metas
            .get(meta)
            .map(|m| m.thins.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Names of dm devices that are suspended.
    pub fn suspended(&self) -> Vec<String> {
        self.state()
            .devs
            .iter()
            .filter(|(_, d)| d.suspended)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Names of all dm devices.
    pub fn dm_names(&self) -> Vec<String> {
        self.state().devs.keys().cloned().collect()
    }

    /// Sets the open count of a dm device (a mount holding it).
    pub fn set_open(&self, name: &str, n: i32) {
        if let Some(d) = self.state().devs.get_mut(name) {
            d.open_count = n;
        }
    }

    /// Marks `blocks` data blocks used by a thin device, as writes would.
    pub fn write_blocks(&self, meta: &Path, id: u32, blocks: u64) {
        if let Some(m) = self.state().metas.get_mut(meta) {
            if let Some(mapped) = m.thins.get_mut(&id) {
                *mapped += blocks;
            }
        }
    }

    /// Sets the health the pool at `meta` reports (see [`FakePoolMeta::health`]).
    pub fn set_health(&self, meta: &Path, health: Option<&str>) {
        if let Some(m) = self.state().metas.get_mut(meta) {
            m.health = health.map(str::to_string);
        }
    }

    /// Marks data blocks used outside any thin device (tests of the guard).
    pub fn set_extra_used(&self, meta: &Path, blocks: u64) {
        if let Some(m) = self.state().metas.get_mut(meta) {
            m.extra_used = blocks;
        }
    }

    fn step(&self, what: &str) -> Result<()> {
        match &self.faults {
            Some(p) => p.step(what),
            None => Ok(()),
        }
    }

    fn pool_message(s: &mut FakeState, name: &str, msg: &str) -> Result<()> {
        let (meta, _, _) = s
            .pool_of(name)
            .ok_or_else(|| errno("send a message to", name, Errno::EINVAL))?;
        let words: Vec<&str> = msg.split_whitespace().collect();
        let num = |i: usize| -> Result<u64> {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| errno("parse message", msg, Errno::EINVAL))
        };
        let active_ids: Vec<u32> = s
            .devs
            .values()
            .filter_map(|d| d.live.as_ref()?.first().cloned())
            .filter(|t| t.kind == "thin")
            .filter_map(|t| t.params.split_whitespace().nth(1)?.parse().ok())
            .collect();
        let m = s.metas.entry(meta).or_default();
        match words.first().copied() {
            Some("create_thin") => {
                let id =
                    u32::try_from(num(1)?).map_err(|_| errno("create_thin", msg, Errno::EINVAL))?;
                if m.thins.contains_key(&id) {
                    return Err(errno("send a message to", msg, Errno::EEXIST));
                }
                m.thins.insert(id, 0);
            }
            Some("create_snap") => {
                let id =
                    u32::try_from(num(1)?).map_err(|_| errno("create_snap", msg, Errno::EINVAL))?;
                let origin =
                    u32::try_from(num(2)?).map_err(|_| errno("create_snap", msg, Errno::EINVAL))?;
                if m.thins.contains_key(&id) {
                    return Err(errno("send a message to", msg, Errno::EEXIST));
                }
                let mapped = *m
                    .thins
                    .get(&origin)
                    .ok_or_else(|| errno("send a message to", msg, Errno::ENODATA))?;
                m.thins.insert(id, mapped);
                if let Some(h) = m.heads.get(&origin).cloned() {
                    m.heads.insert(id, h);
                }
            }
            Some("delete") => {
                let id = u32::try_from(num(1)?).map_err(|_| errno("delete", msg, Errno::EINVAL))?;
                if active_ids.contains(&id) {
                    return Err(errno("send a message to", msg, Errno::EBUSY));
                }
                m.heads.remove(&id);
                if m.thins.remove(&id).is_none() {
                    return Err(errno("send a message to", msg, Errno::ENODATA));
                }
            }
            Some("set_transaction_id") => {
                if m.txid != num(1)? {
                    return Err(errno("send a message to", msg, Errno::EINVAL));
                }
                m.txid = num(2)?;
            }
            Some("reserve_metadata_snap") | Some("release_metadata_snap") => {}
            _ => return Err(errno("send a message to", msg, Errno::EINVAL)),
        }
        Ok(())
    }

    fn check_table(s: &FakeState, table: &[Target]) -> Result<()> {
        for t in table {
            if t.kind == "thin" {
                let mut it = t.params.split_whitespace();
                let pool = it.next().and_then(|d| s.dm_by_devno(d));
                let id: Option<u32> = it.next().and_then(|i| i.parse().ok());
                let ok = match (pool, id) {
                    (Some(p), Some(id)) => s
                        .pool_of(&p)
                        .and_then(|(meta, _, _)| s.metas.get(&meta))
                        .is_some_and(|m| m.thins.contains_key(&id)),
                    _ => false,
                };
                if !ok {
                    return Err(errno("load a table for thin", &t.params, Errno::ENODATA));
                }
            }
        }
        Ok(())
    }
}

impl Kernel for FakeKernel {
    fn loop_attach(&self, file: &Path) -> Result<PathBuf> {
        self.step("loop attach")?;
        if let Some(d) = self.loop_find_inner(file) {
            return Ok(d);
        }
        if !file.exists() {
            return Err(errno(
                "attach a loop device to",
                &file.display().to_string(),
                Errno::ENOENT,
            ));
        }
        let mut s = self.state();
        let dev = PathBuf::from(format!("/dev/loop{}", s.next_loop));
        s.next_loop += 1;
        s.loops.insert(dev.clone(), file.to_path_buf());
        Ok(dev)
    }

    fn loop_find(&self, file: &Path) -> Result<Option<PathBuf>> {
        Ok(self.loop_find_inner(file))
    }

    fn loop_detach(&self, dev: &Path) -> Result<()> {
        self.step("loop detach")?;
        self.state().loops.remove(dev);
        Ok(())
    }

    fn loop_refresh(&self, _dev: &Path) -> Result<()> {
        self.step("loop refresh")
    }

    fn dev_number(&self, dev: &Path) -> Result<(u32, u32)> {
        if let Some(n) = dev
            .to_str()
            .and_then(|d| d.strip_prefix("/dev/loop"))
            .and_then(|n| n.parse().ok())
        {
            return Ok((7, n));
        }
        if !dev.exists() {
            return Err(Error::io("stat", dev)(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            )));
        }
        let mut s = self.state();
        let next = s.numbers.len() as u32;
        Ok(*s.numbers.entry(dev.to_path_buf()).or_insert((8, next * 16)))
    }

    fn dev_size(&self, dev: &Path) -> Result<Bytes> {
        let file = self
            .state()
            .loops
            .get(dev)
            .cloned()
            .unwrap_or_else(|| dev.to_path_buf());
        std::fs::metadata(&file)
            .map(|m| Bytes(m.len()))
            .map_err(Error::io("measure", dev))
    }

    fn dm_info(&self, name: &str) -> Result<Option<DmInfo>> {
        self.step("dm info")?;
        Ok(self.state().devs.get(name).map(|d| DmInfo {
            major: d.major,
            minor: d.minor,
            open_count: d.open_count,
            suspended: d.suspended,
            live_table: d.live.is_some(),
        }))
    }

    fn dm_create(&self, name: &str, _uuid: Option<&str>, table: &[Target]) -> Result<DmInfo> {
        self.step("dm create")?;
        let mut s = self.state();
        if s.devs.contains_key(name) {
            return Err(errno("create device", name, Errno::EBUSY));
        }
        Self::check_table(&s, table)?;
        let minor = s.next_minor;
        s.next_minor += 1;
        s.devs.insert(
            name.to_string(),
            FakeDev {
                major: 253,
                minor,
                live: Some(table.to_vec()),
                inactive: None,
                suspended: false,
                open_count: 0,
            },
        );
        Ok(DmInfo {
            major: 253,
            minor,
            open_count: 0,
            suspended: false,
            live_table: true,
        })
    }

    fn dm_load(&self, name: &str, table: &[Target]) -> Result<()> {
        self.step("dm load")?;
        let mut s = self.state();
        Self::check_table(&s, table)?;
        let d = s
            .devs
            .get_mut(name)
            .ok_or_else(|| errno("load a table into", name, Errno::ENXIO))?;
        d.inactive = Some(table.to_vec());
        Ok(())
    }

    fn dm_suspend(&self, name: &str) -> Result<()> {
        self.step("dm suspend")?;
        let mut s = self.state();
        let d = s
            .devs
            .get_mut(name)
            .ok_or_else(|| errno("suspend", name, Errno::ENXIO))?;
        d.suspended = true;
        Ok(())
    }

    fn dm_resume(&self, name: &str) -> Result<()> {
        self.step("dm resume")?;
        let mut s = self.state();
        let d = s
            .devs
            .get_mut(name)
            .ok_or_else(|| errno("resume", name, Errno::ENXIO))?;
        if let Some(t) = d.inactive.take() {
            d.live = Some(t);
        }
        d.suspended = false;
        Ok(())
    }

    fn dm_remove(&self, name: &str, deferred: bool) -> Result<()> {
        self.step("dm remove")?;
        let mut s = self.state();
        let d = s
            .devs
            .get(name)
            .ok_or_else(|| errno("remove", name, Errno::ENXIO))?;
        if d.open_count > 0 {
            return if deferred {
                Ok(())
            } else {
                Err(errno("remove", name, Errno::EBUSY))
            };
        }
        s.devs.remove(name);
        Ok(())
    }

    fn dm_message(&self, name: &str, msg: &str) -> Result<Option<String>> {
        self.step("dm message")?;
        let mut s = self.state();
        Self::pool_message(&mut s, name, msg)?;
        Ok(None)
    }

    fn dm_status(&self, name: &str) -> Result<String> {
        self.step("dm status")?;
        let s = self.state();
        let d = s
            .devs
            .get(name)
            .ok_or_else(|| errno("read the status of", name, Errno::ENXIO))?;
        let t = d
            .live
            .as_ref()
            .and_then(|t| t.first())
            .ok_or_else(|| errno("read the status of", name, Errno::ENXIO))?;
        if t.kind == "thin-pool" {
            let (meta, data, block) = s
                .pool_of(name)
                .ok_or_else(|| errno("read the status of", name, Errno::EINVAL))?;
            let m = s.metas.get(&meta).cloned().unwrap_or_default();
            let meta_total = std::fs::metadata(&meta)
                .map(|m| m.len() / 4096)
                .unwrap_or(0);
            let data_total = std::fs::metadata(&data)
                .map(|m| m.len() / (block * 512))
                .unwrap_or(0);
            let used: u64 = m.thins.values().sum::<u64>() + m.extra_used;
            let meta_used = 20 + m.thins.len() as u64;
            if m.health.as_deref() == Some("fail") {
                return Ok("Fail".into());
            }
            let mode = match m.health.as_deref() {
                Some("ro") => "ro",
                _ if used >= data_total => "out_of_data_space",
                _ => "rw",
            };
            let check = if m.health.as_deref() == Some("needs_check") {
                "needs_check"
            } else {
                "-"
            };
            return Ok(format!(
                "{} {meta_used}/{meta_total} {}/{data_total} - {mode} discard_passdown error_if_no_space {check} 0",
                m.txid,
                used.min(data_total)
            ));
        }
        let mut it = t.params.split_whitespace();
        let pool = it
            .next()
            .and_then(|p| s.dm_by_devno(p))
            .ok_or_else(|| errno("read the status of", name, Errno::EINVAL))?;
        let id: u32 = it.next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let (meta, _, block) = s
            .pool_of(&pool)
            .ok_or_else(|| errno("read the status of", name, Errno::EINVAL))?;
        let mapped = s
            .metas
            .get(&meta)
            .and_then(|m| m.thins.get(&id))
            .copied()
            .unwrap_or(0);
        Ok(format!(
            "{} {}",
            mapped * block,
            (mapped * block).saturating_sub(1)
        ))
    }

    fn dm_list(&self) -> Result<Vec<String>> {
        self.step("dm list")?;
        Ok(self.dm_names())
    }

    fn ensure_node(&self, name: &str, _info: &DmInfo) -> Result<PathBuf> {
        Ok(mapper_path(name))
    }

    fn remove_node(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// The fake keeps no block maps: any range discards the whole device.
    fn discard_ranges(&self, dev: &Path, _ranges: &[(Bytes, Bytes)]) -> Result<()> {
        self.discard(dev)
    }

    fn discard(&self, dev: &Path) -> Result<()> {
        self.step("discard")?;
        let name = dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut s = self.state();
        let Some(t) = s
            .devs
            .get(&name)
            .and_then(|d| d.live.as_ref()?.first().cloned())
        else {
            return Err(errno("discard", &name, Errno::ENXIO));
        };
        let mut it = t.params.split_whitespace();
        let pool = it.next().and_then(|p| s.dm_by_devno(p));
        let id: Option<u32> = it.next().and_then(|i| i.parse().ok());
        if let (Some(pool), Some(id)) = (pool, id) {
            if let Some((meta, _, _)) = s.pool_of(&pool) {
                if let Some(m) = s.metas.get_mut(&meta).and_then(|m| m.thins.get_mut(&id)) {
                    *m = 0;
                }
            }
        }
        Ok(())
    }

    fn read_head(&self, dev: &Path, len: usize) -> Result<Vec<u8>> {
        self.step("read")?;
        if dev.starts_with("/dev/mapper") {
            let (meta, id) = self
                .thin_behind(dev)
                .ok_or_else(|| errno("read", &dev.display().to_string(), Errno::ENXIO))?;
            let mut h = self
                .state()
                .metas
                .get(&meta)
                .and_then(|m| m.heads.get(&id).cloned())
                .unwrap_or_default();
            h.resize(len, 0);
            return Ok(h);
        }
        let file = self
            .state()
            .loops
            .get(dev)
            .cloned()
            .unwrap_or_else(|| dev.to_path_buf());
        super::real::read_head(&file, len)
    }

    fn write_head(&self, dev: &Path, data: &[u8]) -> Result<()> {
        self.step("write")?;
        if dev.starts_with("/dev/mapper") {
            let (meta, id) = self
                .thin_behind(dev)
                .ok_or_else(|| errno("write", &dev.display().to_string(), Errno::ENXIO))?;
            if let Some(m) = self.state().metas.get_mut(&meta) {
                m.heads.insert(id, data.to_vec());
                if let Some(mapped) = m.thins.get_mut(&id) {
                    *mapped = (*mapped).max(1);
                }
            }
            return Ok(());
        }
        let file = self
            .state()
            .loops
            .get(dev)
            .cloned()
            .unwrap_or_else(|| dev.to_path_buf());
        super::real::write_head(&file, data)
    }
}

impl FakeKernel {
    /// The thin device behind a `/dev/mapper` path: (metadata path, id).
    fn thin_behind(&self, dev: &Path) -> Option<(PathBuf, u32)> {
        let name = dev.strip_prefix("/dev/mapper").ok()?.to_str()?.to_string();
        let s = self.state();
        let t = s.devs.get(&name)?.live.as_ref()?.first()?.clone();
        let mut it = t.params.split_whitespace();
        let pool = s.dm_by_devno(it.next()?)?;
        let id: u32 = it.next()?.parse().ok()?;
        let (meta, _, _) = s.pool_of(&pool)?;
        Some((meta, id))
    }

    fn loop_find_inner(&self, file: &Path) -> Option<PathBuf> {
        self.state()
            .loops
            .iter()
            .find(|(_, f)| f.as_path() == file)
            .map(|(d, _)| d.clone())
    }
}
