//! The vfs snapshotter: the shared conformance suite (one test per case,
//! each in a fresh directory) and what only vfs promises: recovery after a
//! crash, faithful copies (hardlinks, setuid, xattrs, holes), the lock, and
//! the metadata surviving a reopen.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use thinsnap::snapshot::conformance;
use thinsnap::snapshot::vfs::{Durability, VfsSnapshotter};
use thinsnap::snapshot::{Info, Kind, Mount, Result, SnapshotError, Snapshotter, Usage};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn skip(test: &str, what: &str) {
    eprintln!("{test}: skipped {what}: not root");
}

/// Runs one conformance case on vfs in fresh temp directories (without
/// `syncfs`: the flushes would cost more than the case).
fn run_case(name: &str) {
    let mut dirs: Vec<TempDir> = Vec::new();
    conformance::run_case(name, &mut || {
        let dir = tempfile::tempdir().unwrap();
        let s = VfsSnapshotter::open_with(dir.path(), Durability::NoSync).unwrap();
        dirs.push(dir);
        Box::new(s)
    });
}

macro_rules! conformance_cases {
    ($($name:ident),* $(,)?) => {
        mod conformance_vfs {
            $(
                #[test]
                fn $name() {
                    super::run_case(stringify!($name));
                }
            )*

            #[test]
            fn every_case_is_listed_here() {
                let mut here = vec![$(stringify!($name)),*];
                let mut all: Vec<_> =
                    thinsnap::snapshot::conformance::cases().iter().map(|c| c.name).collect();
                here.sort_unstable();
                all.sort_unstable();
                assert_eq!(here, all);
            }
        }
    };
}

conformance_cases!(
    basics,
    lower_layer_changes,
    directory_replaced,
    renames,
    ownership_and_modes,
    special_files,
    remove_rules,
    views_are_read_only,
    commit_consumes_key,
    name_collisions,
    key_rules,
    parent_must_be_committed,
    stat_walk_usage,
    stacked_128_layers,
);

fn open(dir: &Path) -> VfsSnapshotter {
    VfsSnapshotter::open_with(dir, Durability::NoSync).unwrap()
}

/// `base` (one file `f`) committed in a fresh snapshotter.
fn with_base(dir: &Path) -> VfsSnapshotter {
    let mut s = open(dir);
    s.prepare("base-active", None).unwrap();
    fs::write(s.path("base-active").unwrap().join("f"), "base").unwrap();
    s.commit("base", "base-active").unwrap();
    s
}

fn metadata(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("metadata.json")).unwrap()).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// vfs with a commit that does nothing and says it worked.
struct LazyCommit(VfsSnapshotter);

impl Snapshotter for LazyCommit {
    fn driver(&self) -> &'static str {
        "vfs-lazy-commit"
    }
    fn prepare(&mut self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.0.prepare(key, parent)
    }
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        self.0.view(key, parent)
    }
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.0.mounts(key)
    }
    fn commit(&mut self, _name: &str, _key: &str) -> Result<()> {
        Ok(())
    }
    fn remove(&mut self, key: &str) -> Result<()> {
        self.0.remove(key)
    }
    fn stat(&self, key: &str) -> Result<Info> {
        self.0.stat(key)
    }
    fn usage(&mut self, key: &str) -> Result<Usage> {
        self.0.usage(key)
    }
    fn walk(&self) -> Result<Vec<Info>> {
        self.0.walk()
    }
    fn path(&mut self, key: &str) -> Result<PathBuf> {
        self.0.path(key)
    }
    fn release(&mut self, key: &str) -> Result<()> {
        self.0.release(key)
    }
}

#[test]
fn the_suite_catches_a_broken_driver() {
    let mut dirs: Vec<TempDir> = Vec::new();
    let mut make = || -> Box<dyn Snapshotter> {
        let dir = tempfile::tempdir().unwrap();
        let s = VfsSnapshotter::open_with(dir.path(), Durability::NoSync).unwrap();
        dirs.push(dir);
        Box::new(LazyCommit(s))
    };
    let names = ["basics", "commit_consumes_key"];
    let failure = catch_unwind(AssertUnwindSafe(|| {
        conformance::run_cases(&names, &mut make)
    }))
    .expect_err("a driver whose commit does nothing passed");
    let msg = failure.downcast::<String>().unwrap();
    assert!(
        msg.contains("2 of 2 cases failed: basics, commit_consumes_key"),
        "{msg}"
    );
}

#[test]
fn recovery_removes_preparing_records_stray_dirs_and_temps() {
    let d = tempfile::tempdir().unwrap();
    let base_path = {
        let mut s = with_base(d.path());
        s.path("base").unwrap()
    };
    // What a crash in the middle of a prepare on `base` leaves, plus a
    // directory without a record and a half-written metadata temp file.
    let mut meta = metadata(d.path());
    meta["snapshots"]["half"] = json!({
        "id": 99, "seq": 99, "kind": "active", "parent": "base",
        "created": "2024-01-01T00:00:00Z", "state": "preparing"
    });
    fs::write(d.path().join("metadata.json"), meta.to_string()).unwrap();
    let snapshots = d.path().join("snapshots");
    fs::create_dir_all(snapshots.join("99/fs/usr")).unwrap();
    fs::create_dir_all(snapshots.join("77/fs")).unwrap();
    fs::write(snapshots.join("junk"), "stray").unwrap();
    fs::write(d.path().join("metadata.json.tmp"), "{half").unwrap();

    let mut s = open(d.path());
    assert!(matches!(
        s.stat("half"),
        Err(SnapshotError::NotFound { .. })
    ));
    let base_id = base_path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(entries(&snapshots), vec![base_id]);
    assert!(!d.path().join("metadata.json.tmp").exists());
    assert!(metadata(d.path())["snapshots"].get("half").is_none());
    assert_eq!(fs::read_to_string(base_path.join("f")).unwrap(), "base");
    // The interrupted child no longer holds the parent.
    s.remove("base").unwrap();
}

#[test]
fn recovery_finishes_removing() {
    let d = tempfile::tempdir().unwrap();
    let base_path = {
        let mut s = with_base(d.path());
        s.path("base").unwrap()
    };
    let mut meta = metadata(d.path());
    meta["snapshots"]["base"]["state"] = json!("removing");
    fs::write(d.path().join("metadata.json"), meta.to_string()).unwrap();
    let s = open(d.path());
    assert!(matches!(
        s.stat("base"),
        Err(SnapshotError::NotFound { .. })
    ));
    assert!(!base_path.exists());
    assert!(entries(&d.path().join("snapshots")).is_empty());
    assert!(s.walk().unwrap().is_empty());
}

#[test]
fn failed_prepare_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut s = with_base(d.path());
    let base = s.path("base").unwrap();
    // A parent whose files vanished cannot be copied.
    fs::remove_dir_all(&base).unwrap();
    let err = s.prepare("child", Some("base")).unwrap_err();
    assert!(matches!(err, SnapshotError::Io { .. }), "{err:?}");
    assert!(matches!(
        s.stat("child"),
        Err(SnapshotError::NotFound { .. })
    ));
    let base_id = base
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(entries(&d.path().join("snapshots")), vec![base_id]);
    assert!(metadata(d.path())["snapshots"].get("child").is_none());
}

#[test]
fn metadata_survives_reopen_and_ids_are_not_reused() {
    let d = tempfile::tempdir().unwrap();
    let (walk, view_path) = {
        let mut s = with_base(d.path());
        s.view("v", "base").unwrap();
        s.prepare("a/../b", Some("base")).unwrap();
        (s.walk().unwrap(), s.path("v").unwrap())
    };
    let mut s = open(d.path());
    assert_eq!(s.walk().unwrap(), walk);
    assert_eq!(s.path("v").unwrap(), view_path);
    s.remove("v").unwrap();
    s.view("v", "base").unwrap();
    assert_ne!(
        s.path("v").unwrap(),
        view_path,
        "a removed snapshot's id was reused"
    );
}

#[test]
fn mounts_are_rbind_of_the_fs_dir() {
    let d = tempfile::tempdir().unwrap();
    let mut s = with_base(d.path());
    let active = s.prepare("../../escape", None).unwrap();
    let path = s.path("../../escape").unwrap();
    assert!(
        path.starts_with(d.path().join("snapshots")),
        "{}",
        path.display()
    );
    let want = |rw: &str| {
        vec![Mount {
            kind: "bind".into(),
            source: path.to_string_lossy().into_owned(),
            options: vec!["rbind".into(), rw.into()],
        }]
    };
    assert_eq!(active, want("rw"));
    assert_eq!(s.mounts("../../escape").unwrap(), want("rw"));
    let view = s.view("v", "base").unwrap();
    assert_eq!(view[0].options, vec!["rbind", "ro"]);
    assert_eq!(view[0].source, s.path("v").unwrap().to_string_lossy());
    s.release("v").unwrap();
}

#[test]
fn hardlinks_are_preserved_within_the_copy() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    s.prepare("l1-active", None).unwrap();
    let root = s.path("l1-active").unwrap();
    fs::write(root.join("a"), "linked").unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::hard_link(root.join("a"), root.join("b")).unwrap();
    fs::hard_link(root.join("a"), root.join("sub/c")).unwrap();
    s.commit("l1", "l1-active").unwrap();
    s.prepare("child", Some("l1")).unwrap();
    let child = s.path("child").unwrap();
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    let a = fs::metadata(child.join("a")).unwrap();
    assert_eq!(a.nlink(), 3);
    assert_eq!(ino(&child.join("b")), a.ino());
    assert_eq!(ino(&child.join("sub/c")), a.ino());
    assert_ne!(
        a.ino(),
        ino(&root.join("a")),
        "the copy links into its parent"
    );
    fs::write(child.join("sub/c"), "changed").unwrap();
    assert_eq!(fs::read_to_string(child.join("b")).unwrap(), "changed");
    assert_eq!(fs::read_to_string(root.join("a")).unwrap(), "linked");
    // Hardlinks are counted once.
    let usage = s.usage("child").unwrap();
    assert_eq!(usage.inodes, 3, "root, sub and one file: {usage:?}");
}

#[test]
fn setuid_and_xattrs_are_preserved() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    s.prepare("l1-active", None).unwrap();
    let root = s.path("l1-active").unwrap();
    fs::write(root.join("tool"), "#!/bin/sh\n").unwrap();
    fs::create_dir(root.join("shared")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("link")).unwrap();
    if is_root() {
        std::os::unix::fs::chown(root.join("tool"), Some(1000), Some(1000)).unwrap();
    } else {
        skip(
            "setuid_and_xattrs_are_preserved",
            "foreign owner, trusted.* xattr",
        );
    }
    fs::set_permissions(root.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    let set = |p: &Path, name: &str, value: &[u8]| {
        rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
    };
    set(&root.join("tool"), "user.origin", b"layer one");
    set(&root.join("shared"), "user.empty", b"");
    if is_root() {
        // user.* is refused on symlinks; root may use trusted.*.
        set(&root.join("link"), "trusted.note", b"on a symlink");
    }
    s.commit("l1", "l1-active").unwrap();
    s.view("v", "l1").unwrap();
    let view = s.path("v").unwrap();
    let get = |p: &Path, name: &str| {
        let mut buf = vec![0u8; 256];
        let n = rustix::fs::lgetxattr(p, name, &mut buf[..]).unwrap();
        buf.truncate(n);
        buf
    };
    let tool = fs::metadata(view.join("tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::metadata(view.join("shared")).unwrap().mode() & 0o7777,
        0o2775
    );
    assert_eq!(get(&view.join("tool"), "user.origin"), b"layer one");
    assert_eq!(get(&view.join("shared"), "user.empty"), b"");
    if is_root() {
        assert_eq!((tool.uid(), tool.gid()), (1000, 1000));
        assert_eq!(get(&view.join("link"), "trusted.note"), b"on a symlink");
    }
}

#[test]
fn holes_stay_holes() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    s.prepare("l1-active", None).unwrap();
    let root = s.path("l1-active").unwrap();
    let f = fs::File::create(root.join("sparse")).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"head", 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"tail", (64 << 20) - 4).unwrap();
    drop(f);
    s.commit("l1", "l1-active").unwrap();
    s.view("v", "l1").unwrap();
    let copy = s.path("v").unwrap().join("sparse");
    let meta = fs::metadata(&copy).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        meta.blocks() * 512
    );
    let data = fs::read(&copy).unwrap();
    assert_eq!(&data[..4], b"head");
    assert_eq!(&data[data.len() - 4..], b"tail");
    assert!(data[4..data.len() - 4].iter().all(|b| *b == 0));
    let usage = s.usage("v").unwrap();
    assert!(
        usage.size < 1 << 20,
        "usage counts allocated blocks: {usage:?}"
    );
}

#[test]
fn other_users_cannot_reach_snapshots() {
    let d = tempfile::tempdir().unwrap();
    drop(open(d.path()));
    let snapshots = d.path().join("snapshots");
    fs::set_permissions(&snapshots, fs::Permissions::from_mode(0o755)).unwrap();
    drop(open(d.path()));
    assert_eq!(fs::metadata(&snapshots).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn the_lock_is_exclusive() {
    let d = tempfile::tempdir().unwrap();
    let first = open(d.path());
    let (tx, rx) = mpsc::channel();
    let dir = d.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let second = open(&dir);
        tx.send(()).unwrap();
        drop(second);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a second snapshotter opened while the first held the lock"
    );
    drop(first);
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    waiter.join().unwrap();
}

#[test]
fn newer_metadata_is_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(with_base(d.path()));
    let mut meta = metadata(d.path());
    meta["version"] = json!(99);
    fs::write(d.path().join("metadata.json"), meta.to_string()).unwrap();
    let err = VfsSnapshotter::open(d.path()).unwrap_err();
    match &err {
        SnapshotError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidData);
            assert!(source.to_string().contains("version 99"), "{source}");
        }
        other => panic!("want an Io error, got {other:?}"),
    }
}

#[test]
fn durable_mode_works_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let mut s = VfsSnapshotter::open(d.path()).unwrap();
    s.prepare("a", None).unwrap();
    fs::write(s.path("a").unwrap().join("f"), "x").unwrap();
    s.commit("base", "a").unwrap();
    s.view("v", "base").unwrap();
    assert_eq!(
        fs::read_to_string(s.path("v").unwrap().join("f")).unwrap(),
        "x"
    );
    assert_eq!(s.stat("v").unwrap().kind, Kind::View);
    assert_eq!(s.driver(), "vfs");
}

#[test]
fn removal_copes_with_unwritable_directories() {
    let d = tempfile::tempdir().unwrap();
    let mut s = open(d.path());
    s.prepare("a", None).unwrap();
    let root = s.path("a").unwrap();
    fs::create_dir_all(root.join("locked/inner")).unwrap();
    fs::write(root.join("locked/inner/f"), "x").unwrap();
    fs::set_permissions(root.join("locked/inner"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    s.remove("a").unwrap();
    assert!(!root.exists());
}
