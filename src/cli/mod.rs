//! Command-line parsing and dispatch. Each command group lives in its own
//! module with its clap arguments and a `run` function; `anyhow` context is
//! added here, at the edge, and nowhere deeper.

pub mod output;
pub mod pool;
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
}

/// What every command gets.
pub struct Ctx {
    /// Root directory.
    pub root: PathBuf,
    /// Loaded configuration.
    pub config: Config,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, with context naming the command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config =
        Config::load(cli.config.as_deref(), &cli.root).context("failed to load configuration")?;
    let ctx = Ctx {
        root: cli.root,
        config,
    };
    match cli.command {
        Command::Pool(cmd) => pool::run(cmd, &ctx),
        Command::Volume(cmd) => volume::run(cmd, &ctx),
    }
}

/// Opens the pool under the root with the real kernel.
///
/// # Errors
/// [`thinpool::Error::NoPool`] and store errors.
pub fn open_pool(ctx: &Ctx) -> anyhow::Result<thinpool::Pool> {
    thinpool::Pool::open(&ctx.root, Box::new(thinpool::RealKernel::new()))
        .with_context(|| format!("failed to open the thin pool under {}", ctx.root.display()))
}
