//! Image commands at the top level, as Docker has them: `images`, `tag`,
//! `rmi`, `history`, `inspect`, `save`, `load`, `import`, `export`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::Args;

use super::output::{print_json, print_table, table};
use super::Ctx;
use crate::engine::images::ImageFilter;
use crate::engine::import::{open_input, ImportOptions};
use crate::engine::{human, Engine};

/// Opens the engine for the root and driver in `ctx`.
///
/// # Errors
/// The engine's open errors, with a hint when no pool exists.
pub fn open_engine(ctx: &Ctx) -> anyhow::Result<Engine> {
    Engine::open(&ctx.root, &super::driver(ctx)?).with_context(|| format!("failed to open the image store under {} (driver {}; `thinsnap pool create` makes a pool, or use --driver vfs)", ctx.root.display(), ctx.driver))
}

/// `images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (or pattern), optionally with :TAG.
    pub repository: Option<String>,
    /// Show all images, intermediate ones included.
    #[arg(short, long)]
    pub all: bool,
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Do not truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: dangling=true|false, reference=PATTERN, before=IMAGE, since=IMAGE, label=KEY[=VALUE].
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Output format: `json` (one object per line) or `table`.
    #[arg(long, value_parser = ["json", "table"])]
    pub format: Option<String>,
}

/// Runs `images`.
///
/// # Errors
/// Engine errors.
pub fn images(a: ImagesArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let engine = open_engine(ctx)?;
    let mut f = ImageFilter::default();
    for x in &a.filters {
        f.add(x)?;
    }
    let list = engine.filtered(a.all, a.repository.as_deref(), &f)?;
    let id = |d: &crate::engine::digest::Digest| {
        if a.no_trunc {
            d.to_string()
        } else {
            d.short().to_string()
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for s in &list {
            if seen.insert(s.id.clone()) {
                println!("{}", id(&s.id));
            }
        }
        return Ok(());
    }
    let now = Utc::now();
    let rows: Vec<_> = list
        .iter()
        .flat_map(|s| {
            name_rows(s)
                .into_iter()
                .map(move |(repo, tag, digest)| (repo, tag, digest, s))
        })
        .collect();
    if a.format.as_deref() == Some("json") {
        for (repo, tag, digest, s) in rows {
            println!(
                "{}",
                serde_json::json!({
                    "Repository": repo, "Tag": tag, "Digest": digest, "ID": id(&s.id),
                    "CreatedAt": s.created, "CreatedSince": human::ago(&s.created, now), "Size": human::size(s.size),
                })
            );
        }
        return Ok(());
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut t = table(&header);
    for (repo, tag, digest, s) in rows {
        let mut row = vec![repo, tag];
        if a.digests {
            row.push(digest);
        }
        row.extend([id(&s.id), human::ago(&s.created, now), human::size(s.size)]);
        t.add_row(row);
    }
    print_table(&t);
    Ok(())
}

/// The rows of one image in `images`: (repository, tag, digest), one per
/// tag, or one with the repository of its first digest reference (or
/// `<none>`) when it has no tag.
fn name_rows(s: &crate::engine::images::ImageSummary) -> Vec<(String, String, String)> {
    let pairs: Vec<(String, String)> = if s.repo_tags.is_empty() {
        match s.repo_digests.first() {
            Some(d) => vec![(
                d.split('@').next().unwrap_or("<none>").to_string(),
                "<none>".into(),
            )],
            None => vec![("<none>".into(), "<none>".into())],
        }
    } else {
        s.repo_tags
            .iter()
            .map(
                |t| match t.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
                    Some((r, tag)) => (r.to_string(), tag.to_string()),
                    None => (t.clone(), "<none>".into()),
                },
            )
            .collect()
    };
    pairs
        .into_iter()
        .map(|(repo, tag)| {
            let digest = s
                .repo_digests
                .iter()
                .find(|d| d.split('@').next() == Some(repo.as_str()))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>")
                .to_string();
            (repo, tag, digest)
        })
        .collect()
}

/// Runs `tag`.
///
/// # Errors
/// Engine errors.
pub fn tag(source: &str, target: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    e.tag(source, target)
        .with_context(|| format!("failed to tag {source} as {target}"))
}

/// Runs `rmi`: every name is tried; the first failure is returned at the end.
///
/// # Errors
/// The first failure.
pub fn rmi(names: &[String], force: bool, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let mut first = None;
    for n in names {
        match e
            .rmi(n, force)
            .with_context(|| format!("failed to remove image {n}"))
        {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(err) => {
                eprintln!("error: {err:#}");
                first.get_or_insert(err);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Runs `history`.
///
/// # Errors
/// Engine errors.
pub fn history(name: &str, no_trunc: bool, quiet: bool, ctx: &Ctx) -> anyhow::Result<()> {
    let e = open_engine(ctx)?;
    let rows = e
        .history(name)
        .with_context(|| format!("failed to read the history of {name}"))?;
    let id = |r: &crate::engine::images::HistoryRow| match &r.image {
        Some(d) if no_trunc => d.to_string(),
        Some(d) => d.short().to_string(),
        None => "<missing>".into(),
    };
    if quiet {
        rows.iter().for_each(|r| println!("{}", id(r)));
        return Ok(());
    }
    let now = Utc::now();
    let mut t = table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for r in &rows {
        let by = r.created_by.replace('\t', " ");
        let by = if no_trunc || by.chars().count() <= 45 {
            by
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        t.add_row(vec![
            id(r),
            human::ago(&r.created, now),
            by,
            human::size(r.size),
            r.comment.clone(),
        ]);
    }
    print_table(&t);
    Ok(())
}

/// Runs `inspect`.
///
/// # Errors
/// The first image that cannot be inspected (the others still print).
pub fn inspect(names: &[String], ctx: &Ctx) -> anyhow::Result<()> {
    let e = open_engine(ctx)?;
    let mut out = Vec::new();
    let mut first = None;
    for n in names {
        // Images first, then containers.
        match e
            .inspect(n)
            .or_else(|err| e.inspect_container(n).map_err(|_| err))
        {
            Ok(v) => out.push(v),
            Err(err) => {
                eprintln!("error: no such image: {n}");
                first.get_or_insert(
                    anyhow::Error::new(err).context(format!("failed to inspect {n}")),
                );
            }
        }
    }
    print_json(&out)?;
    first.map_or(Ok(()), Err)
}

/// Runs `save`.
///
/// # Errors
/// Engine and write errors; a partial output file is removed.
pub fn save(names: &[String], output: Option<PathBuf>, ctx: &Ctx) -> anyhow::Result<()> {
    let e = open_engine(ctx)?;
    match output {
        Some(p) => {
            let tmp = p.with_extension("partial");
            let r = (|| -> anyhow::Result<()> {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&tmp)
                        .with_context(|| format!("failed to create {}", tmp.display()))?,
                );
                e.save(names, &mut f)?;
                f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, &p)?;
                Ok(())
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r.with_context(|| format!("failed to save {}", names.join(" ")))
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            e.save(names, &mut lock)
                .with_context(|| format!("failed to save {}", names.join(" ")))?;
            lock.flush()?;
            Ok(())
        }
    }
}

/// Runs `load`.
///
/// # Errors
/// Engine errors (the store is left as it was).
pub fn load(input: Option<PathBuf>, quiet: bool, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let src = input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let loaded = match &input {
        // A file is read in place (each layer once); stdin is unpacked.
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("failed to open {src}"))?;
            e.load_file(f)
        }
        None => e.load(open_input(&src)?),
    }
    .with_context(|| format!("failed to load {src}"))?;
    for l in loaded {
        if l.refs.is_empty() {
            println!("Loaded image ID: {}", l.id);
        }
        for r in l.refs {
            println!("Loaded image: {r}");
        }
    }
    let _ = quiet;
    Ok(())
}

/// `import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, ONBUILD).
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Tarball, or `-` for stdin.
    pub file: String,
    /// Repository[:tag] for the new image.
    pub reference: Option<String>,
}

/// Runs `import`.
///
/// # Errors
/// Engine errors (the store is left as it was).
pub fn import(a: ImportArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    let opts = ImportOptions {
        changes: a.changes,
        message: a.message,
        reference: a.reference,
        source: a.file.clone(),
    };
    let id = e
        .import(open_input(&a.file)?, &opts)
        .with_context(|| format!("failed to import {}", a.file))?;
    println!("{id}");
    Ok(())
}

/// Exports a container by name or id, else a snapshot by key.
fn export_to(e: &mut Engine, name: &str, out: &mut dyn Write) -> crate::engine::Result<()> {
    if e.container(name).is_ok() {
        return e.export_container(name, out);
    }
    e.export_snapshot(name, out)
}

/// Runs `export`.
///
/// # Errors
/// Engine errors; a partial output file is removed.
pub fn export(name: &str, output: Option<PathBuf>, ctx: &Ctx) -> anyhow::Result<()> {
    let mut e = open_engine(ctx)?;
    match output {
        Some(p) => {
            // Written aside and renamed, as `save` does: a failure never
            // clobbers or removes a file that was already there.
            let tmp = p.with_extension("partial");
            let r = (|| -> anyhow::Result<()> {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&tmp)
                        .with_context(|| format!("failed to create {}", tmp.display()))?,
                );
                export_to(&mut e, name, &mut f)?;
                f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&tmp, &p)?;
                Ok(())
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r.with_context(|| format!("failed to export {name}"))
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            export_to(&mut e, name, &mut lock)
                .with_context(|| format!("failed to export {name}"))?;
            lock.flush()?;
            Ok(())
        }
    }
}
