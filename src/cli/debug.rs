//! Hidden `thinsnap debug ...` commands for the test suites: running the
//! shared snapshotter conformance suite against the devmapper driver on a
//! real kernel (the VM suite calls it), each case on a fresh pool.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use thinpool::fs::FsKind;
use thinpool::{Bytes, CreateOptions, Pool, RealKernel};

use super::container::print_changes;
use super::image::open_engine;
use super::Ctx;
use crate::engine::containers::Walk;
use crate::snapshot::conformance;
use crate::snapshot::devmapper::{DevmapperSnapshotter, DmSettings};
use crate::snapshot::Snapshotter;

/// Debug commands.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Run the snapshotter conformance suite on the devmapper driver.
    Conformance {
        /// Filesystem of the base device.
        #[arg(long, default_value = "ext4")]
        fs: String,
        /// Only these cases (default: all).
        #[arg(long = "case")]
        cases: Vec<String>,
    },
    /// Print a container's diff as `diff` does, read one way: `--walk full`
    /// compares both whole trees, `--walk scoped` only what the storage
    /// says may have changed (what `diff` and `commit` do); `--scope`
    /// prints that scope instead (`-` when there is none).
    Diff {
        /// `full` or `scoped`.
        #[arg(long, default_value = "scoped")]
        walk: String,
        /// Print the scope, one path per line.
        #[arg(long)]
        scope: bool,
        /// Container name or id.
        container: String,
    },
    /// Print the byte ranges (offset length) of a pool device that its
    /// origin does not share: what removing it discards on a loop pool.
    Unshared {
        /// Pool device name (as `pool devices` shows it).
        device: String,
    },
}

fn diff(ctx: &Ctx, walk: &str, scope: bool, container: &str) -> anyhow::Result<()> {
    let how = match walk {
        "full" => Walk::Full,
        "scoped" => Walk::Scoped,
        other => anyhow::bail!("--walk {other}: expected full or scoped"),
    };
    let mut e = open_engine(ctx)?;
    if scope {
        match e.container_diff_scope(container)? {
            Some(paths) => {
                for p in paths {
                    println!("/{}", String::from_utf8_lossy(&p));
                }
            }
            None => println!("-"),
        }
        return Ok(());
    }
    print_changes(&e.container_diff_by(container, how)?);
    Ok(())
}

/// Runs a debug command.
///
/// # Errors
/// Setup failures; a failing case panics with its message (and exits 101).
pub fn run(cmd: DebugCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Diff {
            walk,
            scope,
            container,
        } => diff(ctx, &walk, scope, &container),
        DebugCommand::Unshared { device } => {
            let mut pool = Pool::open(&ctx.root, Box::new(RealKernel::new()))?;
            let ranges = pool
                .unshared(&device)?
                .context("the pool metadata does not list that device")?;
            for (offset, len) in ranges {
                println!("{} {}", offset.0, len.0);
            }
            Ok(())
        }
        DebugCommand::Conformance { fs, cases } => {
            let fs = FsKind::parse(&fs)?;
            let mut n = 0u32;
            let mut prev: Option<PathBuf> = None;
            let base = ctx.root.clone();
            std::fs::create_dir_all(&base)
                .with_context(|| format!("failed to create {}", base.display()))?;
            let mut make = || -> Box<dyn Snapshotter> {
                if let Some(p) = prev.take() {
                    cleanup(&p);
                }
                n += 1;
                let root: PathBuf = base.join(format!("case-{n}"));
                let opts = CreateOptions {
                    data_size: Bytes(8 << 30),
                    metadata_size: Bytes(128 << 20),
                    ..CreateOptions::default()
                };
                // The pool's lock is per open file: the created pool must be
                // closed before the snapshotter opens it again.
                if let Err(e) = Pool::create(&root, Box::new(RealKernel::new()), &opts).map(drop) {
                    panic!("cannot create a pool for case {n}: {e}");
                }
                prev = Some(root.clone());
                let settings = DmSettings {
                    base_size: Bytes(512 << 20),
                    fs,
                    ..DmSettings::default()
                };
                match DevmapperSnapshotter::open(&root, settings) {
                    Ok(s) => Box::new(s),
                    Err(e) => panic!("cannot open the devmapper snapshotter for case {n}: {e}"),
                }
            };
            let names: Vec<&str> = if cases.is_empty() {
                conformance::cases().iter().map(|c| c.name).collect()
            } else {
                cases.iter().map(String::as_str).collect()
            };
            conformance::run_cases(&names, &mut make);
            cleanup(&base.join(format!("case-{}", names.len())));
            println!(
                "conformance: {} case(s) passed on devmapper ({})",
                names.len(),
                fs.name()
            );
            Ok(())
        }
    }
}

/// Unmounts everything a case left under `root` and destroys its pool.
fn cleanup(root: &std::path::Path) {
    let mnt = root.join("mnt");
    if let Ok(entries) = std::fs::read_dir(&mnt) {
        for e in entries.flatten() {
            let _ = thinpool::fs::unmount(&e.path());
        }
    }
    let _ = thinpool::fs::unmount(&mnt);
    match Pool::open(root, Box::new(RealKernel::new())).and_then(|p| p.destroy(true)) {
        Ok(()) => {}
        // On stdout with the case lines, so the VM suite shows it.
        Err(e) => println!("conformance: cleanup of {} failed: {e:#}", root.display()),
    }
}
