//! Container commands at the top level, as Docker has them: `create`,
//! `ps`, `rm`, `mount`, `unmount`, `device`, `diff`, `commit`.

use anyhow::Context;
use chrono::Utc;
use clap::Args;

use super::image::open_engine;
use super::output::{print_table, table};
use super::Ctx;
use crate::engine::containers::CommitOptions;
use crate::engine::digest::Digest;
use crate::engine::layer::Change;
use crate::engine::store::ContainerRecord;
use crate::engine::{human, Engine};

/// `create` arguments.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the container (default: c-<first 12 hex digits of its id>).
    #[arg(long)]
    pub name: Option<String>,
    /// Size of the container's device (devmapper only; 10G, 512M, ...).
    #[arg(long)]
    pub size: Option<String>,
    /// Image (name or id).
    pub image: String,
}

/// `ps` arguments.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (none ever runs, so all are shown anyway).
    #[arg(short, long)]
    pub all: bool,
    /// Only container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: `json` (one object per line) or `table`.
    #[arg(long, value_parser = ["json", "table"])]
    pub format: Option<String>,
}

/// `commit` arguments.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author (e.g. "Jane Doe <jane@example.com>").
    #[arg(short, long)]
    pub author: Option<String>,
    /// Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, ONBUILD).
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Container (name or id).
    pub container: String,
    /// Repository[:tag] for the new image.
    pub reference: Option<String>,
}

/// Runs `create`: prints the new container's id.
///
/// # Errors
/// Engine errors.
pub fn create(a: CreateArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let size = a
        .size
        .as_deref()
        .map(thinpool::parse_size)
        .transpose()?
        .map(|b| b.0);
    let mut e = open_engine(ctx)?;
    let c = e
        .create_container(&a.image, a.name.as_deref(), size)
        .with_context(|| format!("failed to create a container of {}", a.image))?;
    println!("{}", c.id);
    Ok(())
}

/// How `ps` names a container's image: the name it was created with while
/// that still names the image, else the short id.
fn image_label(e: &Engine, c: &ContainerRecord) -> String {
    if !c.image_name.is_empty() && e.resolve(&c.image_name).ok().as_ref() == Some(&c.image) {
        return c.image_name.clone();
    }
    Digest::short(&c.image).to_string()
}

/// Runs `ps`.
///
/// # Errors
/// Engine errors.
pub fn ps(a: PsArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let list = e.containers();
    let _ = a.all;
    if a.quiet {
        list.iter().for_each(|c| println!("{}", &c.id[..12]));
        return Ok(());
    }
    let now = Utc::now();
    let mut rows = Vec::new();
    for c in &list {
        let size = match e.container_usage(c) {
            Ok(s) => human::size(s),
            Err(_) => "-".to_string(),
        };
        rows.push((c, image_label(&e, c), size));
    }
    if a.format.as_deref() == Some("json") {
        for (c, image, size) in rows {
            println!(
                "{}",
                serde_json::json!({
                    "ID": &c.id[..12], "Image": image, "CreatedAt": c.created,
                    "RunningFor": human::ago(&c.created, now), "Size": size,
                    "Names": c.name, "Mounted": c.mounted,
                })
            );
        }
        return Ok(());
    }
    let mut t = table(&["CONTAINER ID", "IMAGE", "CREATED", "SIZE", "NAMES"]);
    for (c, image, size) in rows {
        t.add_row(vec![
            c.id[..12].to_string(),
            image,
            human::ago(&c.created, now),
            size,
            c.name.clone(),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// Runs `rm`: every container is tried; the first failure is returned at
/// the end.
///
/// # Errors
/// The first failure.
pub fn rm(names: &[String], force: bool, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let mut first = None;
    for n in names {
        match e
            .remove_container(n, force)
            .with_context(|| format!("failed to remove container {n}"))
        {
            Ok(_) => println!("{n}"),
            // The first failure is printed by the caller, the others here.
            Err(err) if first.is_some() => eprintln!("error: {err:#}"),
            Err(err) => first = Some(err),
        }
    }
    first.map_or(Ok(()), Err)
}

/// Runs `mount`: prints the path of the container's filesystem.
///
/// # Errors
/// Engine errors.
pub fn mount(name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let p = e
        .mount_container(name)
        .with_context(|| format!("failed to mount container {name}"))?;
    println!("{}", p.display());
    Ok(())
}

/// Runs `unmount`.
///
/// # Errors
/// Engine errors.
pub fn unmount(name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    e.unmount_container(name)
        .with_context(|| format!("failed to unmount container {name}"))
}

/// Runs `device`: prints the container's block device.
///
/// # Errors
/// Engine errors (the vfs driver has no block devices).
pub fn device(name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let p = e
        .container_device(name)
        .with_context(|| format!("failed to get the block device of container {name}"))?;
    println!("{}", p.display());
    Ok(())
}

/// Runs `diff`: `A`/`C`/`D` lines, as `docker diff` prints them.
///
/// # Errors
/// Engine errors.
pub fn diff(name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let changes = e
        .container_diff(name)
        .with_context(|| format!("failed to diff container {name}"))?;
    print_changes(&changes);
    Ok(())
}

/// Prints `A`/`C`/`D` lines.
pub(super) fn print_changes(changes: &[Change]) {
    for c in changes {
        let (letter, p) = match &c {
            Change::Added(p) => ('A', p),
            Change::Modified(p) => ('C', p),
            Change::Deleted(p) => ('D', p),
        };
        println!("{letter} {}", p.display());
    }
}

/// Runs `commit`: prints the new image's id.
///
/// # Errors
/// Engine errors (the store is left as it was).
pub fn commit(a: CommitArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let opts = CommitOptions {
        message: a.message,
        author: a.author,
        changes: a.changes,
        reference: a.reference,
    };
    let id = e
        .commit_container(&a.container, &opts)
        .with_context(|| format!("failed to commit container {}", a.container))?;
    println!("{id}");
    Ok(())
}
