//! The conformance suite every [`Snapshotter`] must pass, after containerd's
//! `testsuite.SnapshotterSuite`: the same cases run against vfs on any host
//! and against devmapper on a real kernel.
//!
//! It is part of the library, not of the test harness, so a plain binary
//! (the VM suite's) can run it: [`run_all`] runs every case, each on a
//! fresh snapshotter from the caller's factory, reports each case on
//! stderr, and panics naming the cases that failed. A failing check panics
//! with the driver, the case and what was expected.
//!
//! Cases read and write the filesystem only through [`Snapshotter::path`]
//! and give it back with [`Snapshotter::release`], so drivers that must
//! mount to reach a snapshot run them unchanged. Checks that need root
//! (ownership, device nodes) are skipped, with a line on stderr, otherwise.

mod api;
mod files;

use std::fmt::{Debug, Display};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::{Info, Kind, Mount, Result, SnapshotError, Snapshotter, Usage};

/// One case of the suite.
pub struct Case {
    /// Its name, as [`run_case`] takes it.
    pub name: &'static str,
    run: fn(&mut Harness<'_>),
}

const fn case(name: &'static str, run: fn(&mut Harness<'_>)) -> Case {
    Case { name, run }
}

/// Every case, in the order [`run_all`] runs them.
const ALL: &[Case] = &[
    case("basics", api::basics),
    case("lower_layer_changes", files::lower_layer_changes),
    case("directory_replaced", files::directory_replaced),
    case("renames", files::renames),
    case("ownership_and_modes", files::ownership_and_modes),
    case("special_files", files::special_files),
    case("remove_rules", api::remove_rules),
    case("views_are_read_only", api::views_are_read_only),
    case("commit_consumes_key", api::commit_consumes_key),
    case("name_collisions", api::name_collisions),
    case("key_rules", api::key_rules),
    case("parent_must_be_committed", api::parent_must_be_committed),
    case("stat_walk_usage", api::stat_walk_usage),
    case("stacked_128_layers", files::stacked_128_layers),
];

/// Every case, in the order [`run_all`] runs them.
pub fn cases() -> &'static [Case] {
    ALL
}

/// Runs every case, each on a fresh snapshotter from `make`, and reports
/// each on stderr.
///
/// # Panics
/// After all cases ran, when any failed, naming them.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn Snapshotter>) {
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    run_cases(&names, make);
}

/// [`run_all`] for the cases called `names` only.
///
/// # Panics
/// When a name is not a case (before running any), or after all ran, when
/// any failed, naming them.
pub fn run_cases(names: &[&str], make: &mut dyn FnMut() -> Box<dyn Snapshotter>) {
    let selected: Vec<&Case> = names.iter().map(|n| find(n)).collect();
    let mut failed = Vec::new();
    for case in &selected {
        let mut s = make();
        let driver = s.driver();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_one(case, s.as_mut())));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        eprintln!("conformance ({driver}) {}: {verdict}", case.name);
        if outcome.is_err() {
            failed.push(case.name);
        }
    }
    if !failed.is_empty() {
        panic!(
            "snapshotter conformance: {} of {} cases failed: {}",
            failed.len(),
            selected.len(),
            failed.join(", ")
        );
    }
}

fn find(name: &str) -> &'static Case {
    match cases().iter().find(|c| c.name == name) {
        Some(case) => case,
        None => panic!("snapshotter conformance: no case named {name:?}"),
    }
}

/// Runs the case called `name` on a fresh snapshotter from `make`.
///
/// # Panics
/// When the case fails, or no case has that name.
pub fn run_case(name: &str, make: &mut dyn FnMut() -> Box<dyn Snapshotter>) {
    let case = find(name);
    let mut s = make();
    run_one(case, s.as_mut());
}

fn run_one(case: &Case, s: &mut dyn Snapshotter) {
    let mut h = Harness { case: case.name, s };
    (case.run)(&mut h);
}

/// The error a call must fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    NotFound,
    Exists,
    Precondition,
    InvalidKey,
}

impl Want {
    fn matches(self, e: &SnapshotError) -> bool {
        matches!(
            (self, e),
            (Want::NotFound, SnapshotError::NotFound { .. })
                | (Want::Exists, SnapshotError::Exists { .. })
                | (Want::Precondition, SnapshotError::Precondition { .. })
                | (Want::InvalidKey, SnapshotError::InvalidKey { .. })
        )
    }
}

/// A case's view of the snapshotter: every call either succeeds or panics
/// with the driver, the case and what was being done.
struct Harness<'a> {
    case: &'static str,
    s: &'a mut dyn Snapshotter,
}

impl Harness<'_> {
    fn fail(&self, what: impl Display) -> ! {
        panic!(
            "snapshotter conformance ({}) {}: {what}",
            self.s.driver(),
            self.case
        )
    }

    fn check(&self, ok: bool, what: impl Display) {
        if !ok {
            self.fail(what);
        }
    }

    fn eq<T: PartialEq + Debug>(&self, got: T, want: T, what: impl Display) {
        if got != want {
            self.fail(format_args!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn ok<T>(&self, r: Result<T>, what: impl Display) -> T {
        r.unwrap_or_else(|e| self.fail(format_args!("{what}: {e} ({e:?})")))
    }

    fn io<T>(&self, r: io::Result<T>, what: impl Display) -> T {
        r.unwrap_or_else(|e| self.fail(format_args!("{what}: {e}")))
    }

    /// `call` must fail with `want`.
    fn refused<T: Debug>(
        &mut self,
        want: Want,
        what: impl Display,
        call: impl FnOnce(&mut dyn Snapshotter) -> Result<T>,
    ) {
        match call(&mut *self.s) {
            Ok(v) => self.fail(format_args!("{what}: succeeded ({v:?}), want {want:?}")),
            Err(e) if !want.matches(&e) => self.fail(format_args!(
                "{what}: failed with {e} ({e:?}), want {want:?}"
            )),
            Err(_) => {}
        }
    }

    fn skip(&self, what: &str) {
        eprintln!(
            "conformance ({}) {}: skipped {what}: not root",
            self.s.driver(),
            self.case
        );
    }

    fn prepare(&mut self, key: &str, parent: Option<&str>) -> Vec<Mount> {
        let r = self.s.prepare(key, parent);
        let m = self.ok(r, format_args!("prepare {key:?} on {parent:?}"));
        self.writable(&m, key, true);
        m
    }

    fn view(&mut self, key: &str, parent: &str) -> Vec<Mount> {
        let r = self.s.view(key, parent);
        let m = self.ok(r, format_args!("view {key:?} of {parent:?}"));
        self.writable(&m, key, false);
        m
    }

    fn commit(&mut self, name: &str, key: &str) {
        let r = self.s.commit(name, key);
        self.ok(r, format_args!("commit {key:?} as {name:?}"));
    }

    fn remove(&mut self, key: &str) {
        let r = self.s.remove(key);
        self.ok(r, format_args!("remove {key:?}"));
    }

    fn stat(&self, key: &str) -> Info {
        self.ok(self.s.stat(key), format_args!("stat {key:?}"))
    }

    fn usage(&mut self, key: &str) -> Usage {
        let r = self.s.usage(key);
        self.ok(r, format_args!("usage of {key:?}"))
    }

    fn walk(&self) -> Vec<Info> {
        self.ok(self.s.walk(), "walk")
    }

    /// Views mount read-only; active snapshots do not.
    fn writable(&self, mounts: &[Mount], key: &str, rw: bool) {
        self.check(!mounts.is_empty(), format_args!("{key:?} has no mounts"));
        for m in mounts {
            let ro = m.options.iter().any(|o| o == "ro");
            self.check(
                ro != rw,
                format_args!(
                    "mount of {key:?} must be read-{}: {m:?}",
                    if rw { "write" } else { "only" }
                ),
            );
        }
    }

    /// Runs `f` on the snapshot's filesystem between `path` and `release`.
    fn with_fs<T>(&mut self, key: &str, f: impl FnOnce(&Path) -> io::Result<T>) -> T {
        let root = self.s.path(key);
        let root = self.ok(root, format_args!("path of {key:?}"));
        let out = f(&root);
        let released = self.s.release(key);
        self.ok(released, format_args!("release {key:?}"));
        self.io(out, format_args!("files of {key:?}"))
    }

    /// A committed layer `name` on `parent`, filled by `f`.
    fn layer(&mut self, name: &str, parent: Option<&str>, f: impl FnOnce(&Path) -> io::Result<()>) {
        let key = format!("{name}-active");
        self.prepare(&key, parent);
        self.with_fs(&key, f);
        self.commit(name, &key);
    }

    /// Each path holds the given text, or does not exist (`None`).
    fn expect_files(&mut self, key: &str, want: &[(&str, Option<&str>)]) {
        let got = self.with_fs(key, |root| {
            want.iter()
                .map(|(rel, _)| read(root, rel))
                .collect::<io::Result<Vec<_>>>()
        });
        for ((rel, want), got) in want.iter().zip(got) {
            self.eq(
                got.as_deref(),
                *want,
                format_args!("{key:?}: contents of {rel}"),
            );
        }
    }

    /// The names in a directory of the snapshot, sorted.
    fn list(&mut self, key: &str, rel: &str) -> Vec<String> {
        self.with_fs(key, |root| {
            let mut names = std::fs::read_dir(root.join(rel))?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<Vec<_>>>()?;
            names.sort();
            Ok(names)
        })
    }

    /// Walk lists exactly `want` (by name and kind), parents first.
    fn expect_walk(&self, want: &[(&str, Kind)]) {
        let infos = self.walk();
        let mut got: Vec<(&str, Kind)> = infos.iter().map(|i| (i.name.as_str(), i.kind)).collect();
        let mut want = want.to_vec();
        got.sort_by(|a, b| a.0.cmp(b.0));
        want.sort_by(|a, b| a.0.cmp(b.0));
        self.eq(got, want, "walk");
        for (i, info) in infos.iter().enumerate() {
            if let Some(p) = &info.parent {
                let at = infos.iter().position(|x| &x.name == p);
                self.check(
                    at.is_some_and(|at| at < i),
                    format_args!("walk lists {:?} before its parent {p:?}", info.name),
                );
            }
        }
    }
}

/// Writes `data` at `rel`, making parent directories.
fn put(root: &Path, rel: &str, data: &str) -> io::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, data)
}

/// The text at `rel`, or `None` when nothing is there.
fn read(root: &Path, rel: &str) -> io::Result<Option<String>> {
    match std::fs::read_to_string(root.join(rel)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the copy of a file must keep: type and mode, owner, mtime, and
/// for symlinks the target.
#[derive(Debug, PartialEq, Eq)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    link: Option<std::path::PathBuf>,
}

fn attrs(root: &Path, rel: &str) -> io::Result<Attrs> {
    let path = root.join(rel);
    let m = std::fs::symlink_metadata(&path)?;
    let link = if m.file_type().is_symlink() {
        Some(std::fs::read_link(&path)?)
    } else {
        None
    };
    Ok(Attrs {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        link,
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
