//! `thinsnap snapshot ...`: the snapshotter interface from the command
//! line, in containerd's vocabulary (`ctr snapshots`): a `key` names an
//! active snapshot or a view, a `name` a committed one.

use anyhow::Context;
use clap::Subcommand;
use thinpool::{format_size, Bytes};

use std::collections::BTreeSet;

use super::output::{print_json, print_table, table};
use super::Ctx;
use crate::engine::{CONTAINER_PREFIX, LAYER_PREFIX, WORK_PREFIX};
use crate::snapshot::{Kind, SnapshotError, Snapshotter, Usage};

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
    // Through the engine: it picks the root's driver (and refuses another
    // driver's root), and it knows which snapshots are image layers.
    let mut engine = super::image::open_engine(ctx)?;
    let layers: BTreeSet<String> = engine
        .state()
        .layers
        .values()
        .map(|l| l.snapshot.clone())
        .collect();
    let s = engine.snapshotter();
    match cmd {
        SnapshotCommand::Prepare { key, parent } => {
            not_reserved(&key)?;
            s.prepare(&key, parent.as_deref())
                .with_context(|| match &parent {
                    Some(p) => format!("failed to prepare {key} on {p}"),
                    None => format!("failed to prepare {key}"),
                })?;
            println!("{key}");
        }
        SnapshotCommand::View { key, parent } => {
            not_reserved(&key)?;
            s.view(&key, &parent)
                .with_context(|| format!("failed to view {parent} as {key}"))?;
            println!("{key}");
        }
        SnapshotCommand::Commit { name, key } => {
            not_reserved(&name)?;
            s.commit(&name, &key)
                .with_context(|| format!("failed to commit {key} as {name}"))?;
            println!("{name}");
        }
        SnapshotCommand::Rm { key } => rm(s, &layers, &key)?,
        SnapshotCommand::Ls { json } => ls(s, json)?,
        SnapshotCommand::Stat { key } => {
            let info = s
                .stat(&key)
                .with_context(|| format!("failed to stat {key}"))?;
            print_json(&info)?;
        }
        SnapshotCommand::Mounts { key } => mounts(s, &key)?,
        SnapshotCommand::Usage { key, json } => {
            let usage =
                (s.usage(&key)).with_context(|| format!("failed to get the usage of {key}"))?;
            print_usage(usage, json)?;
        }
    }
    Ok(())
}

/// Removes snapshot `key`, unless it is one of the image store's layers
/// (`layers`): those go with their image.
fn rm(s: &mut dyn Snapshotter, layers: &BTreeSet<String>, key: &str) -> anyhow::Result<()> {
    if layers.contains(key) {
        return Err(anyhow::Error::new(SnapshotError::Precondition {
            key: key.to_string(),
            reason: "it is an image layer: remove the image with `thinsnap rmi`".into(),
        })
        .context(format!("failed to remove snapshot {key}")));
    }
    s.remove(key)
        .with_context(|| format!("failed to remove snapshot {key}"))?;
    println!("{key}");
    Ok(())
}

/// Prints the mounts of snapshot `key` as JSON.
fn mounts(s: &mut dyn Snapshotter, key: &str) -> anyhow::Result<()> {
    // A container's device is activated at first use: the mounts name its
    // device node, so bring it up first.
    if s.stat(key).is_ok_and(|i| i.kind != Kind::Committed) {
        s.device(key)
            .with_context(|| format!("failed to activate {key}"))?;
    }
    let mounts = s
        .mounts(key)
        .with_context(|| format!("failed to get the mounts of {key}"))?;
    print_json(&mounts)
}

/// Keys the image store uses for its own snapshots (and removes when it
/// finds them unaccounted for) cannot be created here.
fn not_reserved(key: &str) -> anyhow::Result<()> {
    if key.starts_with(LAYER_PREFIX)
        || key.starts_with(WORK_PREFIX)
        || key.starts_with(CONTAINER_PREFIX)
    {
        return Err(SnapshotError::InvalidKey {
            key: key.to_string(),
            reason:
                "names starting with `layer-`, `work-` or `container-` belong to the image store",
        }
        .into());
    }
    Ok(())
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
