//! `thinsnap snapshot ...`: the snapshotter interface from the command
//! line, in containerd's vocabulary (`ctr snapshots`): a `key` names an
//! active snapshot or a view, a `name` a committed one.

use anyhow::Context;
use clap::Subcommand;
use thinpool::{format_size, Bytes};

use super::output::{print_json, print_table, table};
use super::Ctx;
use crate::snapshot::vfs::VfsSnapshotter;
use crate::snapshot::{Kind, Snapshotter, Usage};

/// Snapshot commands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Create an active (writable) snapshot, empty or on a committed parent.
    Prepare {
        /// Key of the new snapshot.
        key: String,
        /// Committed parent.
        parent: Option<String>,
    },
    /// Create a read-only view of a committed snapshot.
    View {
        /// Key of the new view.
        key: String,
        /// Committed parent.
        parent: String,
    },
    /// Commit an active snapshot as NAME; KEY is consumed.
    Commit {
        /// Name of the committed snapshot.
        name: String,
        /// Key of the active snapshot.
        key: String,
    },
    /// Remove a snapshot (refused for a committed one with children).
    Rm {
        /// Key or name.
        key: String,
    },
    /// List snapshots, parents before children.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a snapshot's metadata as JSON.
    Stat {
        /// Key or name.
        key: String,
    },
    /// Print the mounts of an active snapshot or view as JSON.
    Mounts {
        /// Key.
        key: String,
    },
    /// Print the space a snapshot uses by itself.
    Usage {
        /// Key or name.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a snapshot command.
///
/// # Errors
/// The command's failure, with context naming it.
pub fn run(cmd: SnapshotCommand, ctx: &Ctx) -> anyhow::Result<()> {
    let mut s = open_snapshotter(ctx)?;
    match cmd {
        SnapshotCommand::Prepare { key, parent } => {
            s.prepare(&key, parent.as_deref())
                .with_context(|| match &parent {
                    Some(p) => format!("failed to prepare {key} on {p}"),
                    None => format!("failed to prepare {key}"),
                })?;
            println!("{key}");
        }
        SnapshotCommand::View { key, parent } => {
            s.view(&key, &parent)
                .with_context(|| format!("failed to view {parent} as {key}"))?;
            println!("{key}");
        }
        SnapshotCommand::Commit { name, key } => {
            s.commit(&name, &key)
                .with_context(|| format!("failed to commit {key} as {name}"))?;
            println!("{name}");
        }
        SnapshotCommand::Rm { key } => {
            s.remove(&key)
                .with_context(|| format!("failed to remove snapshot {key}"))?;
            println!("{key}");
        }
        SnapshotCommand::Ls { json } => ls(s.as_ref(), json)?,
        SnapshotCommand::Stat { key } => {
            let info = s
                .stat(&key)
                .with_context(|| format!("failed to stat {key}"))?;
            print_json(&info)?;
        }
        SnapshotCommand::Mounts { key } => {
            let mounts =
                (s.mounts(&key)).with_context(|| format!("failed to get the mounts of {key}"))?;
            print_json(&mounts)?;
        }
        SnapshotCommand::Usage { key, json } => {
            let usage =
                (s.usage(&key)).with_context(|| format!("failed to get the usage of {key}"))?;
            print_usage(usage, json)?;
        }
    }
    Ok(())
}

/// The snapshotter under the root: the one place that picks the driver.
///
/// # Errors
/// The driver's open errors, with context naming its directory.
pub fn open_snapshotter(ctx: &Ctx) -> anyhow::Result<Box<dyn Snapshotter>> {
    let dir = ctx.root.join("snapshots").join("vfs");
    let s = VfsSnapshotter::open(&dir)
        .with_context(|| format!("failed to open the vfs snapshotter in {}", dir.display()))?;
    Ok(Box::new(s))
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::View => "view",
        Kind::Active => "active",
        Kind::Committed => "committed",
    }
}

fn ls(s: &dyn Snapshotter, json: bool) -> anyhow::Result<()> {
    let infos = s.walk().context("failed to list snapshots")?;
    if json {
        return print_json(&infos);
    }
    let mut t = table(&["KEY", "PARENT", "KIND"]);
    for i in &infos {
        t.add_row(vec![
            i.name.clone(),
            i.parent.clone().unwrap_or_else(|| "-".into()),
            kind_label(i.kind).to_string(),
        ]);
    }
    print_table(&t);
    Ok(())
}

fn print_usage(usage: Usage, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&usage);
    }
    let mut t = table(&["SIZE", "INODES"]);
    t.add_row(vec![
        format_size(Bytes(usage.size)),
        usage.inodes.to_string(),
    ]);
    print_table(&t);
    Ok(())
}
