//! `thinsnap volume ...`: raw thin volumes for users who want block devices
//! rather than images (a golden VM disk cloned per test VM in milliseconds).

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use thinpool::sparse::copy_sparse;
use thinpool::{format_size, parse_size, Bytes, Pool};

use super::output::{print_json, print_table, size, table};
use super::{open_pool, Ctx};

const OWNER: &str = "volume";

/// Volume commands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create an empty thin volume.
    Create {
        /// Volume name.
        name: String,
        /// Virtual size (thin: takes pool space only as it is written).
        #[arg(long)]
        size: String,
    },
    /// Snapshot a volume (copy-on-write; instant whatever its size).
    Snapshot {
        /// The volume to snapshot.
        source: String,
        /// The new volume's name.
        name: String,
    },
    /// Activate a volume and print its block device path.
    Path {
        /// Volume name.
        name: String,
    },
    /// Deactivate a volume (its data stays).
    Deactivate {
        /// Volume name.
        name: String,
    },
    /// Remove volumes and free their pool space.
    Rm {
        /// Volume names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List volumes.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a volume from a raw disk image; all-zero blocks are not written.
    Import(ImportArgs),
    /// Write a volume to a sparse raw image file.
    Export {
        /// Volume name.
        name: String,
        /// Output file.
        file: PathBuf,
    },
}

/// `volume import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// New volume name.
    pub name: String,
    /// Raw disk image.
    pub file: PathBuf,
    /// Volume size, if larger than the image.
    #[arg(long)]
    pub size: Option<String>,
}

/// Runs a volume command.
///
/// # Errors
/// The command's failure, with context.
pub fn run(cmd: VolumeCommand, ctx: &Ctx) -> anyhow::Result<()> {
    let mut pool = open_pool(ctx)?;
    match cmd {
        VolumeCommand::Create { name, size } => {
            let size = parse_size(&size)?;
            pool.create_thin(&name, OWNER, size)
                .with_context(|| format!("failed to create volume {name}"))?;
            println!("{name}");
        }
        VolumeCommand::Snapshot { source, name } => {
            volume(&pool, &source)?;
            pool.snapshot(&source, &name, OWNER)
                .with_context(|| format!("failed to snapshot volume {source} as {name}"))?;
            println!("{name}");
        }
        VolumeCommand::Path { name } => {
            volume(&pool, &name)?;
            let p = pool
                .activate_thin(&name)
                .with_context(|| format!("failed to activate volume {name}"))?;
            println!("{}", p.display());
        }
        VolumeCommand::Deactivate { name } => {
            volume(&pool, &name)?;
            let done = pool
                .deactivate_thin(&name)
                .with_context(|| format!("failed to deactivate volume {name}"))?;
            if !done {
                eprintln!("{name} is still open; it will be removed when its last user closes it");
            }
        }
        VolumeCommand::Rm { names } => {
            let mut failed = None;
            for name in names {
                let r = volume(&pool, &name).and_then(|_| Ok(pool.delete_thin(&name)?));
                match r.with_context(|| format!("failed to remove volume {name}")) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        VolumeCommand::Ls { json } => ls(&mut pool, json)?,
        VolumeCommand::Import(a) => import(&mut pool, a)?,
        VolumeCommand::Export { name, file } => export(&mut pool, &name, &file)?,
    }
    Ok(())
}

/// Refuses names that are not volumes (layer and container devices belong
/// to the engine).
fn volume(pool: &Pool, name: &str) -> anyhow::Result<()> {
    match pool.store().by_name(name) {
        Some(d) if d.owner == OWNER => Ok(()),
        _ => Err(thinpool::Error::DeviceNotFound {
            name: name.to_string(),
        }
        .into()),
    }
}

fn ls(pool: &mut Pool, json: bool) -> anyhow::Result<()> {
    let devs: Vec<_> = pool
        .devices()?
        .into_iter()
        .filter(|d| d.owner == OWNER)
        .collect();
    if json {
        return print_json(&devs);
    }
    let mut t = table(&["NAME", "ID", "SIZE", "MAPPED", "ORIGIN", "ACTIVE"]);
    for d in &devs {
        t.add_row(vec![
            d.name.clone(),
            d.id.to_string(),
            format_size(d.size),
            size(d.mapped),
            d.origin.clone().unwrap_or_else(|| "-".into()),
            if d.state == "active" { "yes" } else { "no" }.to_string(),
        ]);
    }
    print_table(&t);
    Ok(())
}

fn import(pool: &mut Pool, a: ImportArgs) -> anyhow::Result<()> {
    let mut src =
        File::open(&a.file).with_context(|| format!("failed to open {}", a.file.display()))?;
    let len = src.metadata()?.len();
    let size = match &a.size {
        Some(s) => parse_size(s)?,
        None => Bytes(len.div_ceil(512) * 512),
    };
    if size.0 < len {
        bail!(
            "--size {} is smaller than the image ({})",
            format_size(size),
            format_size(Bytes(len))
        );
    }
    if size.0 == 0 {
        bail!("{} is empty", a.file.display());
    }
    // Filled under a staging name and published only when complete, so a
    // killed import leaves no half-written volume (recovery removes it).
    let staging = pool
        .create_staging(&a.name, OWNER, size)
        .with_context(|| format!("failed to create volume {}", a.name))?;
    let chunk = usize::try_from(pool.record().block_size.bytes().0).unwrap_or(64 << 10);
    let copied = (|| -> anyhow::Result<_> {
        let dev = pool.activate_thin(&staging)?;
        let out = OpenOptions::new()
            .write(true)
            .open(&dev)
            .with_context(|| format!("failed to open {}", dev.display()))?;
        let stats = copy_sparse(&mut src, &a.file, &out, &dev, chunk)?;
        drop(out);
        pool.deactivate_thin(&staging)?;
        pool.publish(&staging, &a.name)?;
        Ok(stats)
    })();
    match copied {
        Ok(stats) => {
            println!(
                "imported {} as {}: {} image, {} written",
                a.file.display(),
                a.name,
                format_size(stats.total),
                format_size(stats.written)
            );
            Ok(())
        }
        Err(e) => {
            // Leave the pool as it was before the command.
            let _ = pool.deactivate_thin(&staging);
            if let Err(undo) = pool.delete_thin(&staging) {
                eprintln!("warning: could not remove the partial volume {staging}: {undo:#} (the next command retries)");
            }
            Err(e.context(format!(
                "failed to import {} into volume {}",
                a.file.display(),
                a.name
            )))
        }
    }
}

fn export(pool: &mut Pool, name: &str, file: &std::path::Path) -> anyhow::Result<()> {
    volume(pool, name)?;
    let d = pool.device(name)?;
    let was_active = pool.is_active(d.id)?;
    let dev = pool.activate_thin(name)?;
    let result = (|| -> anyhow::Result<_> {
        let mut src =
            File::open(&dev).with_context(|| format!("failed to open {}", dev.display()))?;
        let out =
            File::create(file).with_context(|| format!("failed to create {}", file.display()))?;
        out.set_len(d.size.bytes().0)?;
        let chunk = usize::try_from(pool.record().block_size.bytes().0).unwrap_or(64 << 10);
        Ok(copy_sparse(&mut src, &dev, &out, file, chunk)?)
    })();
    if !was_active {
        pool.deactivate_thin(name)?;
    }
    let stats = result.with_context(|| format!("failed to export volume {name}"))?;
    println!(
        "exported {name} to {}: {}, {} of data",
        file.display(),
        format_size(stats.total),
        format_size(stats.written)
    );
    Ok(())
}
