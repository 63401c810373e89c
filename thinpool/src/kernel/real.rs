//! The real kernel: device-mapper through the `devicemapper` crate's ioctl
//! API (no libdm, no udev needed), loop devices through `loopdev-3`, and
//! `/dev/mapper` nodes made with mknod because no udev may be running.

use std::cell::OnceCell;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use devicemapper::{errors, DevId, DmError, DmFlags, DmName, DmOptions, DmUuid, DM};
use loopdev::{LoopControl, LoopDevice};
use nix::errno::Errno;
use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};

use super::{mapper_path, DmInfo, Kernel, Target};
use crate::error::{Error, KernelError, Result};
use crate::units::Bytes;

/// Talks to the running kernel. The control device is opened on first use,
/// so commands that need no device-mapper work where it is absent.
#[derive(Default)]
pub struct RealKernel {
    dm: OnceCell<DM>,
}

impl RealKernel {
    /// A kernel handle; nothing is opened yet.
    pub fn new() -> RealKernel {
        RealKernel::default()
    }

    fn dm(&self, target: &str) -> Result<&DM> {
        if let Some(dm) = self.dm.get() {
            return Ok(dm);
        }
        let control = Path::new("/dev/mapper/control");
        if !control.exists() {
            return Err(Error::NoDeviceMapper {
                control: control.to_path_buf(),
            });
        }
        let dm = DM::new().map_err(|e| Error::Kernel {
            op: "open /dev/mapper/control for",
            target: target.to_string(),
            source: to_kernel_error(e),
        })?;
        Ok(self.dm.get_or_init(|| dm))
    }
}

fn to_kernel_error(e: DmError) -> KernelError {
    match e {
        DmError::Core(errors::Error::Ioctl(_, _, _, errno)) => KernelError::Errno(*errno),
        other => KernelError::Other(other.to_string()),
    }
}

fn dm_name(name: &str) -> Result<&DmName> {
    DmName::new(name).map_err(|_| Error::InvalidName {
        name: name.to_string(),
        reason: "not a valid device-mapper name",
    })
}

fn kerr(op: &'static str, target: &str) -> impl FnOnce(DmError) -> Error {
    let target = target.to_string();
    move |e| Error::Kernel {
        op,
        target,
        source: to_kernel_error(e),
    }
}

fn io_kerr(op: &'static str, target: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let target = target.display().to_string();
    move |e| Error::Kernel {
        op,
        target,
        source: e
            .raw_os_error()
            .map(|n| KernelError::Errno(Errno::from_raw(n)))
            .unwrap_or_else(|| KernelError::Other(e.to_string())),
    }
}

fn info_of(i: &devicemapper::DeviceInfo) -> DmInfo {
    let dev = i.device();
    DmInfo {
        major: dev.major,
        minor: dev.minor,
        open_count: i.open_count(),
        suspended: i.flags().contains(DmFlags::DM_SUSPEND),
        live_table: i.flags().contains(DmFlags::DM_ACTIVE_PRESENT),
    }
}

fn table_tuples(table: &[Target]) -> Vec<(u64, u64, String, String)> {
    table
        .iter()
        .map(|t| (t.start.0, t.len.0, t.kind.clone(), t.params.clone()))
        .collect()
}

/// Reads which file backs each loop device, from sysfs.
fn loop_backing(dev_name: &str) -> Option<PathBuf> {
    let p = Path::new("/sys/block")
        .join(dev_name)
        .join("loop/backing_file");
    std::fs::read_to_string(p)
        .ok()
        .map(|s| PathBuf::from(s.trim_end_matches('\n')))
}

impl Kernel for RealKernel {
    fn loop_attach(&self, file: &Path) -> Result<PathBuf> {
        if let Some(dev) = self.loop_find(file)? {
            return Ok(dev);
        }
        let ctl = LoopControl::open().map_err(io_kerr("open /dev/loop-control for", file))?;
        // Another process may take the free device between next_free and
        // attach (EBUSY); retry a bounded number of times as containerd does.
        let mut last = None;
        for _ in 0..20 {
            let dev = ctl
                .next_free()
                .map_err(io_kerr("find a free loop device for", file))?;
            match dev.with().autoclear(false).attach(file) {
                Ok(()) => {
                    return dev.path().ok_or_else(|| Error::Kernel {
                        op: "name the loop device attached to",
                        target: file.display().to_string(),
                        source: KernelError::Other("no path".into()),
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = Some(e),
                Err(e) => return Err(io_kerr("attach a loop device to", file)(e)),
            }
        }
        Err(io_kerr("attach a loop device to", file)(
            last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EBUSY)),
        ))
    }

    fn loop_find(&self, file: &Path) -> Result<Option<PathBuf>> {
        let want = std::fs::canonicalize(file).map_err(Error::io("resolve", file))?;
        let Ok(entries) = std::fs::read_dir("/sys/block") else {
            return Ok(None);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("loop") {
                continue;
            }
            if loop_backing(&name).is_some_and(|b| b == want) {
                return Ok(Some(Path::new("/dev").join(name)));
            }
        }
        Ok(None)
    }

    fn loop_detach(&self, dev: &Path) -> Result<()> {
        let d = LoopDevice::open(dev).map_err(io_kerr("open loop device", dev))?;
        d.detach().map_err(io_kerr("detach loop device", dev))
    }

    fn loop_refresh(&self, dev: &Path) -> Result<()> {
        let d = LoopDevice::open(dev).map_err(io_kerr("open loop device", dev))?;
        d.set_capacity()
            .map_err(io_kerr("refresh the capacity of", dev))
    }

    fn dev_number(&self, dev: &Path) -> Result<(u32, u32)> {
        let md = std::fs::metadata(dev).map_err(Error::io("stat", dev))?;
        if !md.file_type().is_block_device() {
            return Err(Error::Io {
                op: "use as a block device",
                path: dev.to_path_buf(),
                source: std::io::Error::other("not a block device"),
            });
        }
        let rdev = md.rdev();
        Ok((
            u32::try_from(major(rdev)).unwrap_or(u32::MAX),
            u32::try_from(minor(rdev)).unwrap_or(u32::MAX),
        ))
    }

    fn dev_size(&self, dev: &Path) -> Result<Bytes> {
        let mut f = File::open(dev).map_err(Error::io("open", dev))?;
        f.seek(SeekFrom::End(0))
            .map(Bytes)
            .map_err(Error::io("measure", dev))
    }

    fn dm_info(&self, name: &str) -> Result<Option<DmInfo>> {
        let dm = self.dm(name)?;
        match dm.device_info(&DevId::Name(dm_name(name)?)) {
            Ok(i) => Ok(Some(info_of(&i))),
            Err(e) => match to_kernel_error(e) {
                KernelError::Errno(Errno::ENXIO) => Ok(None),
                source => Err(Error::Kernel {
                    op: "query",
                    target: name.to_string(),
                    source,
                }),
            },
        }
    }

    fn dm_create(&self, name: &str, uuid: Option<&str>, table: &[Target]) -> Result<DmInfo> {
        let dm = self.dm(name)?;
        let n = dm_name(name)?;
        let u = match uuid {
            Some(u) => Some(DmUuid::new(u).map_err(|_| Error::InvalidName {
                name: u.to_string(),
                reason: "not a valid device-mapper uuid",
            })?),
            None => None,
        };
        dm.device_create(n, u, DmOptions::default())
            .map_err(kerr("create device", name))?;
        let id = DevId::Name(n);
        let loaded = dm
            .table_load(&id, &table_tuples(table), DmOptions::default())
            .and_then(|_| dm.device_suspend(&id, DmOptions::default()));
        match loaded {
            Ok(i) => Ok(info_of(&i)),
            Err(e) => {
                // Leave no table-less device behind.
                let _ = dm.device_remove(&id, DmOptions::default());
                Err(kerr("load the table of", name)(e))
            }
        }
    }

    fn dm_load(&self, name: &str, table: &[Target]) -> Result<()> {
        let dm = self.dm(name)?;
        dm.table_load(
            &DevId::Name(dm_name(name)?),
            &table_tuples(table),
            DmOptions::default(),
        )
        .map(|_| ())
        .map_err(kerr("load a table into", name))
    }

    fn dm_suspend(&self, name: &str) -> Result<()> {
        let dm = self.dm(name)?;
        dm.device_suspend(
            &DevId::Name(dm_name(name)?),
            DmOptions::default().set_flags(DmFlags::DM_SUSPEND),
        )
        .map(|_| ())
        .map_err(kerr("suspend", name))
    }

    fn dm_resume(&self, name: &str) -> Result<()> {
        let dm = self.dm(name)?;
        dm.device_suspend(&DevId::Name(dm_name(name)?), DmOptions::default())
            .map(|_| ())
            .map_err(kerr("resume", name))
    }

    fn dm_remove(&self, name: &str, deferred: bool) -> Result<()> {
        let dm = self.dm(name)?;
        let flags = if deferred {
            DmFlags::DM_DEFERRED_REMOVE
        } else {
            DmFlags::empty()
        };
        dm.device_remove(
            &DevId::Name(dm_name(name)?),
            DmOptions::default().set_flags(flags),
        )
        .map(|_| ())
        .map_err(kerr("remove", name))
    }

    fn dm_message(&self, name: &str, msg: &str) -> Result<Option<String>> {
        let dm = self.dm(name)?;
        dm.target_msg(&DevId::Name(dm_name(name)?), None, msg)
            .map(|(_, out)| out)
            .map_err(|e| Error::Kernel {
                op: "send a message to",
                target: format!("{name} ({msg})"),
                source: to_kernel_error(e),
            })
    }

    fn dm_status(&self, name: &str) -> Result<String> {
        let dm = self.dm(name)?;
        // NOFLUSH: without it a thin-pool commits its metadata (a write and
        // a flush of the metadata device) on every status read. Every pool
        // message already commits, and the kernel commits each second, so
        // the counts read without it are at most that old.
        let (_, lines) = dm
            .table_status(
                &DevId::Name(dm_name(name)?),
                DmOptions::default().set_flags(DmFlags::DM_NOFLUSH),
            )
            .map_err(kerr("read the status of", name))?;
        Ok(lines
            .into_iter()
            .next()
            .map(|(_, _, _, s)| s)
            .unwrap_or_default())
    }

    fn dm_list(&self) -> Result<Vec<String>> {
        let dm = self.dm("device list")?;
        Ok(dm
            .list_devices()
            .map_err(kerr("list", "device-mapper devices"))?
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .collect())
    }

    fn ensure_node(&self, name: &str, info: &DmInfo) -> Result<PathBuf> {
        let path = mapper_path(name);
        let want = makedev(u64::from(info.major), u64::from(info.minor));
        match std::fs::metadata(&path) {
            Ok(md) if md.file_type().is_block_device() && md.rdev() == want => return Ok(path),
            Ok(_) => std::fs::remove_file(&path).map_err(Error::io("remove stale node", &path))?,
            Err(_) => {}
        }
        match mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), want) {
            Ok(()) | Err(Errno::EEXIST) => Ok(path),
            Err(e) => Err(Error::io("create device node", &path)(
                std::io::Error::from(e),
            )),
        }
    }

    fn remove_node(&self, name: &str) -> Result<()> {
        let path = mapper_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove device node", &path)(e)),
        }
    }

    fn discard(&self, dev: &Path) -> Result<()> {
        let size = self.dev_size(dev)?;
        self.discard_ranges(dev, &[(Bytes(0), size)])
    }

    fn discard_ranges(&self, dev: &Path, ranges: &[(Bytes, Bytes)]) -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .open(dev)
            .map_err(Error::io("open", dev))?;
        for (offset, len) in ranges {
            crate::sys::blkdiscard(&f, offset.0, len.0).map_err(|e| Error::Kernel {
                op: "discard",
                target: dev.display().to_string(),
                source: KernelError::Errno(e),
            })?;
        }
        Ok(())
    }

    fn read_head(&self, dev: &Path, len: usize) -> Result<Vec<u8>> {
        read_head(dev, len)
    }

    fn write_head(&self, dev: &Path, data: &[u8]) -> Result<()> {
        write_head(dev, data)
    }
}

/// Reads the first `len` bytes of a file or device (shorter if it is shorter).
pub(crate) fn read_head(dev: &Path, len: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(len);
    File::open(dev)
        .and_then(|f| f.take(len as u64).read_to_end(&mut buf))
        .map_err(Error::io("read", dev))?;
    Ok(buf)
}

/// Writes `data` at offset 0 of a file or device and syncs it.
pub(crate) fn write_head(dev: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(Error::io("open", dev))?;
    f.write_all_at(data, 0).map_err(Error::io("write", dev))?;
    f.sync_all().map_err(Error::io("fsync", dev))
}
