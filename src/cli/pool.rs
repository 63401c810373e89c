//! `thinsnap pool ...`: create, status, extend, activate, deactivate,
//! destroy, check, devices.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use thinpool::{
    format_size, parse_size, Bytes, CreateOptions, DataBlocks, Pool, PoolReport, RealKernel,
};

use super::output::{print_json, print_table, size, table};
use super::{open_pool, Ctx};

/// Pool commands.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create the thin pool (sparse loop files, or --data-dev/--metadata-dev).
    Create(CreateArgs),
    /// Show space, health and settings.
    Status(JsonArg),
    /// Grow data and/or metadata, online. SIZE is a new total or +INCREMENT.
    Extend(ExtendArgs),
    /// Activate the pool and the devices that were active (idempotent).
    Activate,
    /// Deactivate every device and the pool; detach loop devices.
    Deactivate,
    /// Tear down devices, pool, loop devices and files.
    Destroy(ForceArg),
    /// Reconcile store and pool; verify metadata with thin-provisioning-tools.
    Check(JsonArg),
    /// List every thin device.
    Devices(JsonArg),
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--force`.
#[derive(Debug, Args)]
pub struct ForceArg {
    /// Remove the pool even though thin devices exist.
    #[arg(long, short)]
    pub force: bool,
}

/// `pool create` options; unset ones come from the config file, then defaults.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Data file size (loop mode) [default: 100G].
    #[arg(long)]
    pub data_size: Option<String>,
    /// Metadata file size (loop mode) [default: 2G].
    #[arg(long)]
    pub metadata_size: Option<String>,
    /// Data block size, 64K to 1G in steps of 64K [default: 64K].
    #[arg(long)]
    pub block_size: Option<String>,
    /// Low-water mark in data blocks [default: 32768, at most a tenth of the pool].
    #[arg(long)]
    pub low_water_mark: Option<u64>,
    /// Zero each new block before first use (slower first writes; see README).
    #[arg(long)]
    pub zero_blocks: bool,
    /// Refuse new devices below this much free data or metadata, percent [default: 10].
    #[arg(long)]
    pub min_free_space: Option<u8>,
    /// Data block device (direct mode).
    #[arg(long, requires = "metadata_dev")]
    pub data_dev: Option<PathBuf>,
    /// Metadata block device (direct mode); must start with 4 KiB of zeros.
    #[arg(long, requires = "data_dev")]
    pub metadata_dev: Option<PathBuf>,
    /// Overwrite a metadata device that is not blank.
    #[arg(long)]
    pub force: bool,
}

/// `pool extend` options.
#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// New data size, or +INCREMENT (direct mode: default is the device's size).
    #[arg(long, allow_hyphen_values = false)]
    pub data_size: Option<String>,
    /// New metadata size, or +INCREMENT.
    #[arg(long)]
    pub metadata_size: Option<String>,
}

/// Runs a pool command.
///
/// # Errors
/// The command's failure, with context.
pub fn run(cmd: PoolCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        PoolCommand::Create(a) => create(a, ctx),
        PoolCommand::Status(a) => {
            let mut pool = open_pool(ctx)?;
            let rep = pool.status().context("failed to read pool status")?;
            if a.json {
                print_json(&rep)
            } else {
                print_status(&rep);
                Ok(())
            }
        }
        PoolCommand::Extend(a) => extend(a, ctx),
        PoolCommand::Activate => {
            let mut pool = open_pool(ctx)?;
            pool.activate().context("failed to activate the pool")?;
            for f in &pool.recovery.fixed {
                println!("recovered: {f}");
            }
            println!("pool {} is active", pool.record().dm_name);
            Ok(())
        }
        PoolCommand::Deactivate => {
            let mut pool = open_pool(ctx)?;
            pool.deactivate().context("failed to deactivate the pool")?;
            println!("pool {} is inactive", pool.record().dm_name);
            Ok(())
        }
        PoolCommand::Destroy(a) => {
            let pool = open_pool(ctx)?;
            let name = pool.record().dm_name.clone();
            pool.destroy(a.force)
                .context("failed to destroy the pool")?;
            forget_devmapper_data(&ctx.root)?;
            println!("destroyed pool {name}");
            Ok(())
        }
        PoolCommand::Check(a) => check(a, ctx),
        PoolCommand::Devices(a) => devices(a, ctx),
    }
}

/// After the pool is gone, so are the images and snapshots that lived in
/// it: drop the devmapper snapshotter's records, its mount directory, and
/// the image store when it belongs to the devmapper driver, so that a new
/// pool under the same root starts clean.
fn forget_devmapper_data(root: &std::path::Path) -> anyhow::Result<()> {
    let mnt = root.join("mnt");
    if mnt.exists() {
        if let Ok(entries) = std::fs::read_dir(&mnt) {
            for e in entries.flatten() {
                thinpool::fs::unmount(&e.path())?;
            }
        }
        thinpool::fs::unmount(&mnt)?;
    }
    let snaps = root.join("snapshots").join("devmapper");
    if snaps.exists() {
        std::fs::remove_dir_all(&snaps)
            .with_context(|| format!("failed to remove {}", snaps.display()))?;
    }
    let engine = root.join("engine");
    let store = std::fs::read(engine.join("store.json")).unwrap_or_default();
    let devmapper = serde_json::from_slice::<serde_json::Value>(&store)
        .ok()
        .is_some_and(|v| v.get("driver").and_then(|d| d.as_str()) == Some("devmapper"));
    if devmapper {
        std::fs::remove_dir_all(&engine)
            .with_context(|| format!("failed to remove {}", engine.display()))?;
    }
    Ok(())
}

fn opt_size(flag: Option<String>, config: &Option<String>) -> anyhow::Result<Option<Bytes>> {
    match flag.as_ref().or(config.as_ref()) {
        Some(s) => Ok(Some(parse_size(s)?)),
        None => Ok(None),
    }
}

fn create(a: CreateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let c = &ctx.config.pool;
    let mut o = CreateOptions::default();
    if let Some(s) = opt_size(a.data_size, &c.data_size)? {
        o.data_size = s;
    }
    if let Some(s) = opt_size(a.metadata_size, &c.metadata_size)? {
        o.metadata_size = s;
    }
    if let Some(s) = opt_size(a.block_size, &c.block_size)? {
        o.block_size = s;
    }
    o.low_water = a.low_water_mark.or(c.low_water_mark).map(DataBlocks);
    o.zero_blocks = a.zero_blocks || c.zero_blocks.unwrap_or(false);
    o.min_free_pct = a
        .min_free_space
        .or(c.min_free_space)
        .unwrap_or(o.min_free_pct);
    let data = a.data_dev.or_else(|| c.data_dev.clone());
    let meta = a.metadata_dev.or_else(|| c.metadata_dev.clone());
    o.direct = match (data, meta) {
        (Some(d), Some(m)) => Some((d, m)),
        (None, None) => None,
        _ => bail!("direct mode needs both a data device and a metadata device"),
    };
    o.force = a.force;
    let pool = Pool::create(&ctx.root, Box::new(RealKernel::new()), &o)
        .with_context(|| format!("failed to create a thin pool under {}", ctx.root.display()))?;
    let r = pool.record();
    println!(
        "created pool {} (data {}, metadata {}, block size {})",
        r.dm_name,
        format_size(r.data_size),
        format_size(r.metadata_size),
        format_size(r.block_size.bytes())
    );
    if o.direct.is_none() {
        eprintln!("warning: loop-backed pools are for development and testing; use --data-dev/--metadata-dev on real block devices in production");
    }
    Ok(())
}

/// A new total from `NEW` or `+INCREMENT` relative to `now`.
fn new_total(arg: Option<String>, now: Bytes) -> anyhow::Result<Option<Bytes>> {
    let Some(s) = arg else { return Ok(None) };
    Ok(Some(match s.strip_prefix('+') {
        Some(inc) => Bytes(now.0.saturating_add(parse_size(inc)?.0)),
        None => parse_size(&s)?,
    }))
}

fn extend(a: ExtendArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut pool = open_pool(ctx)?;
    let (d0, m0) = (pool.record().data_size, pool.record().metadata_size);
    let mut data = new_total(a.data_size, d0)?;
    let meta = new_total(a.metadata_size, m0)?;
    if data.is_none() && meta.is_none() {
        match &pool.record().backing {
            thinpool::store::Backing::Direct { data_dev, .. } => {
                // Direct mode: take up whatever the device has grown to.
                let dev = data_dev.clone();
                data = Some(thinpool::Kernel::dev_size(&RealKernel::new(), &dev)?);
            }
            thinpool::store::Backing::Loop { .. } => {
                bail!("give --data-size and/or --metadata-size (a new total, or +INCREMENT)")
            }
        }
    }
    pool.extend(data, meta)
        .context("failed to extend the pool")?;
    let r = pool.record();
    println!(
        "pool {}: data {}, metadata {}",
        r.dm_name,
        format_size(r.data_size),
        format_size(r.metadata_size)
    );
    Ok(())
}

/// One `Key:   value` line of `pool status`.
fn kv(k: &str, v: String) {
    println!("{:<26}{v}", format!("{k}:"));
}

fn print_status(r: &PoolReport) {
    kv("Pool Name", r.name.clone());
    kv("Pool UUID", r.uuid.clone());
    kv("Mode", r.mode.to_string());
    kv(
        if r.mode == "loop" {
            "Data file"
        } else {
            "Data device"
        },
        r.data.display().to_string(),
    );
    kv(
        if r.mode == "loop" {
            "Metadata file"
        } else {
            "Metadata device"
        },
        r.metadata.display().to_string(),
    );
    kv(
        "State",
        if r.active {
            "active".into()
        } else {
            "inactive (any device command, or `thinsnap pool activate`, activates it)".into()
        },
    );
    kv("Pool Blocksize", format_size(r.block_size));
    for (label, sp) in [("Data", r.data_space), ("Metadata", r.metadata_space)] {
        if let Some(s) = sp {
            kv(
                &format!("{label} Space Used"),
                format!("{} ({:.1}%)", format_size(s.used), s.used_pct),
            );
            kv(&format!("{label} Space Total"), format_size(s.total));
            kv(
                &format!("{label} Space Available"),
                format_size(s.available),
            );
        }
    }
    kv("Transaction Id", r.transaction_id.to_string());
    kv("Thin Devices", r.thin_devices.to_string());
    kv("Low Water Mark", format!("{} blocks", r.low_water_mark.0));
    kv(
        "Block Zeroing",
        if r.zero_blocks {
            "on".into()
        } else {
            "off".into()
        },
    );
    kv("Minimum Free Space", format!("{}%", r.min_free_space_pct));
    if r.active {
        print_health(r);
    }
    if r.pending_deletes > 0 {
        kv("Pending Deletes", r.pending_deletes.to_string());
    }
}

/// The kernel's view of an active pool: its flags, its health, and what
/// to do when it refuses changes.
fn print_health(r: &PoolReport) {
    kv("Error If No Space", yes(r.error_if_no_space));
    kv("Discard Passdown", yes(r.discard_passdown));
    let mut health = vec![];
    match r.kernel_mode {
        Some(thinpool::status::PoolMode::ReadOnly) => health.push("read-only"),
        Some(thinpool::status::PoolMode::OutOfDataSpace) => health.push("out_of_data_space"),
        _ => {}
    }
    if r.needs_check {
        health.push("needs_check");
    }
    kv(
        "Health",
        if health.is_empty() {
            "ok".into()
        } else {
            health.join(", ")
        },
    );
    if r.needs_check || r.kernel_mode == Some(thinpool::status::PoolMode::ReadOnly) {
        println!(
            "The pool refuses changes: run `thinsnap pool deactivate`, then `thinsnap pool check`."
        );
    } else if r.kernel_mode == Some(thinpool::status::PoolMode::OutOfDataSpace) {
        println!(
            "The pool is full: run `thinsnap pool extend --data-size +SIZE`, or remove devices."
        );
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn check(a: JsonArg, ctx: &Ctx) -> anyhow::Result<()> {
    let mut pool = open_pool(ctx)?;
    let tools = which("thin_check") && which("thin_dump");
    let rep = pool.check(tools).context("failed to check the pool")?;
    if a.json {
        print_json(&rep)?;
    } else {
        for f in &rep.recovery.fixed {
            println!("fixed: {f}");
        }
        match (&rep.tool, rep.metadata_ok) {
            (Some(t), Some(true)) => println!("metadata: {t}: ok"),
            (Some(t), Some(false)) => println!(
                "metadata: {t} FAILED:\n{}",
                rep.tool_output.clone().unwrap_or_default()
            ),
            _ => {
                println!("metadata: not verified (install thin-provisioning-tools for thin_check)")
            }
        }
        if let Some(ids) = &rep.pool_ids {
            println!(
                "thin ids in pool metadata: {}, in store: {}",
                ids.len(),
                pool.store().devices.len()
            );
        }
        for m in &rep.missing_in_pool {
            println!("problem: {m} is recorded but missing from the pool");
        }
        for id in &rep.unknown_in_pool {
            println!("problem: thin id {id} is in the pool but not in the store (quarantined, never reused)");
        }
        for p in &rep.recovery.problems {
            println!("problem: {p}");
        }
        println!(
            "{}",
            if rep.clean() {
                "pool is clean"
            } else {
                "pool has problems"
            }
        );
    }
    if !rep.clean() {
        return Err(crate::Problems("pool check found problems".into()).into());
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn devices(a: JsonArg, ctx: &Ctx) -> anyhow::Result<()> {
    let mut pool = open_pool(ctx)?;
    let devs = pool.devices().context("failed to list thin devices")?;
    if a.json {
        return print_json(&devs);
    }
    let mut t = table(&["ID", "NAME", "OWNER", "SIZE", "MAPPED", "STATE", "ORIGIN"]);
    for d in &devs {
        t.add_row(vec![
            d.id.to_string(),
            d.name.clone(),
            d.owner.clone(),
            format_size(d.size),
            size(d.mapped),
            d.state.to_string(),
            d.origin.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_sizes_are_totals_or_increments() {
        let now = Bytes(10 << 30);
        assert_eq!(
            new_total(Some("+5G".into()), now).unwrap(),
            Some(Bytes(15 << 30))
        );
        assert_eq!(
            new_total(Some("20G".into()), now).unwrap(),
            Some(Bytes(20 << 30))
        );
        assert_eq!(new_total(None, now).unwrap(), None);
        assert!(new_total(Some("+x".into()), now).is_err());
    }
}
