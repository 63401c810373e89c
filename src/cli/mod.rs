//! Command-line parsing and dispatch. Each command group lives in its own
//! module with its clap arguments and a `run` function; `anyhow` context is
//! added here, at the edge, and nowhere deeper.

pub mod container;
pub mod debug;
pub mod image;
pub mod output;
pub mod pool;
pub mod registry;
pub mod snapshot;
pub mod volume;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// Default root directory.
pub const DEFAULT_ROOT: &str = "/var/lib/thinsnap";

/// thinsnap: block-level thin-provisioning snapshots on device-mapper.
#[derive(Debug, Parser)]
#[command(name = "thinsnap", version, about, long_about = None)]
pub struct Cli {
    /// Root directory holding the pool and its store.
    #[arg(long, global = true, env = "THINSNAP_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Configuration file (default: $THINSNAP_CONFIG, else <root>/config.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Storage driver for images and snapshots: devmapper (thin pool) or vfs (directories) [default: devmapper, or `driver` in the config].
    #[arg(long, global = true, env = "THINSNAP_DRIVER", value_parser = ["devmapper", "vfs"])]
    pub driver: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the thin pool.
    #[command(subcommand)]
    Pool(pool::PoolCommand),
    /// Raw thin volumes: block devices, snapshots, import and export.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Snapshots, directly (containerd's snapshotter interface).
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Test helpers.
    #[command(subcommand, hide = true)]
    Debug(debug::DebugCommand),
    /// List images.
    Images(image::ImagesArgs),
    /// Give an image another name.
    Tag {
        /// Image (name or id).
        source: String,
        /// New name, REPOSITORY[:TAG].
        target: String,
    },
    /// Remove images.
    Rmi {
        /// Untag from every repository, or untag only where the image cannot be deleted.
        #[arg(short, long)]
        force: bool,
        /// Images (names or ids).
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image's history.
    History {
        /// Do not truncate.
        #[arg(long)]
        no_trunc: bool,
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Image.
        image: String,
    },
    /// Show images as JSON.
    Inspect {
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Write images to a tar archive (docker-archive and OCI layout at once).
    Save {
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load images from a docker-archive or OCI archive (plain, gzip or zstd).
    Load {
        /// Input file (default: stdin).
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Print only the loaded images.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Make a one-layer image from a rootfs tarball.
    Import(image::ImportArgs),
    /// Create a container: a writable snapshot of an image; prints its id.
    Create(container::CreateArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Remove containers.
    Rm {
        /// Unmount a mounted container first.
        #[arg(short, long)]
        force: bool,
        /// Containers (names or ids).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Mount a container's filesystem; prints its path.
    Mount {
        /// Container (name or id).
        container: String,
    },
    /// Unmount a container's filesystem.
    Unmount {
        /// Container (name or id).
        container: String,
    },
    /// Print a container's block device (devmapper driver).
    Device {
        /// Container (name or id).
        container: String,
    },
    /// Show a container's changes against its image (A/C/D lines).
    Diff {
        /// Container (name or id).
        container: String,
    },
    /// Make a new image from a container's changes; prints its id.
    Commit(container::CommitArgs),
    /// Download an image from a registry.
    Pull(registry::PullArgs),
    /// Upload an image to a registry.
    Push(registry::PushArgs),
    /// Log in to a registry (credentials are checked, then stored 0600).
    Login(registry::LoginArgs),
    /// Forget the credentials of a registry.
    Logout {
        /// Registry (host[:port]) [default: docker.io].
        registry: Option<String>,
    },
    /// Write a container's filesystem as a tar.
    Export {
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Container (or snapshot key).
        container: String,
    },
}

/// What every command gets.
pub struct Ctx {
    /// Root directory.
    pub root: PathBuf,
    /// Loaded configuration.
    pub config: Config,
    /// Storage driver.
    pub driver: String,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, with context naming the command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config =
        Config::load(cli.config.as_deref(), &cli.root).context("failed to load configuration")?;
    let driver = cli
        .driver
        .or_else(|| config.driver.clone())
        .unwrap_or_else(|| crate::engine::driver::DEFAULT.to_string());
    if !crate::engine::driver::DRIVERS.contains(&driver.as_str()) {
        return Err(crate::config::ConfigError::Driver { driver }.into());
    }
    let ctx = Ctx {
        root: cli.root,
        config,
        driver,
    };
    match cli.command {
        Command::Pool(cmd) => pool::run(cmd, &ctx),
        Command::Volume(cmd) => volume::run(cmd, &ctx),
        Command::Snapshot(cmd) => snapshot::run(cmd, &ctx),
        Command::Debug(cmd) => debug::run(cmd, &ctx),
        Command::Images(a) => image::images(a, &ctx),
        Command::Tag { source, target } => image::tag(&source, &target, &ctx),
        Command::Rmi { force, images } => image::rmi(&images, force, &ctx),
        Command::History {
            no_trunc,
            quiet,
            image,
        } => image::history(&image, no_trunc, quiet, &ctx),
        Command::Inspect { images } => image::inspect(&images, &ctx),
        Command::Save { output, images } => image::save(&images, output, &ctx),
        Command::Load { input, quiet } => image::load(input, quiet, &ctx),
        Command::Import(a) => image::import(a, &ctx),
        Command::Export { output, container } => image::export(&container, output, &ctx),
        Command::Create(a) => container::create(a, &ctx),
        Command::Ps(a) => container::ps(a, &ctx),
        Command::Rm { force, containers } => container::rm(&containers, force, &ctx),
        Command::Mount { container } => container::mount(&container, &ctx),
        Command::Unmount { container } => container::unmount(&container, &ctx),
        Command::Device { container } => container::device(&container, &ctx),
        Command::Diff { container } => container::diff(&container, &ctx),
        Command::Commit(a) => container::commit(a, &ctx),
        Command::Pull(a) => registry::pull(a, &ctx),
        Command::Push(a) => registry::push(a, &ctx),
        Command::Login(a) => registry::login(a, &ctx),
        Command::Logout { registry } => registry::logout(registry.as_deref(), &ctx),
    }
}

/// The storage driver with its settings from the config file.
///
/// # Errors
/// Invalid sizes or filesystem names in `[devmapper]`.
pub fn driver(ctx: &Ctx) -> anyhow::Result<crate::engine::driver::Driver> {
    let mut d = crate::engine::driver::Driver::named(&ctx.driver);
    let c = &ctx.config.devmapper;
    if let Some(s) = &c.base_size {
        d.devmapper.base_size = thinpool::parse_size(s)?;
    }
    if let Some(f) = &c.fs {
        d.devmapper.fs = thinpool::fs::FsKind::parse(f)?;
    }
    d.devmapper.mkfs_options = c.mkfs_options.clone();
    d.devmapper.mount_options = c.mount_options.clone();
    Ok(d)
}

/// Opens the pool under the root with the real kernel.
///
/// # Errors
/// [`thinpool::Error::NoPool`] and store errors.
pub fn open_pool(ctx: &Ctx) -> anyhow::Result<thinpool::Pool> {
    thinpool::Pool::open(&ctx.root, Box::new(thinpool::RealKernel::new()))
        .with_context(|| format!("failed to open the thin pool under {}", ctx.root.display()))
}
