//! The scoped diff against the full walk, on real ext4: an upper
//! filesystem made as a block-level copy of a lower one (what a thin
//! snapshot is), changed in many ways, then diffed both ways. The scope
//! comes the way `commit` gets it on devmapper: the blocks that differ,
//! mapped through the ext4 layout to inode numbers, then to the lower
//! tree's paths through its inode index. Needs root (loop mounts).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use thinpool::ext4::{head_len, Geometry};
use thinpool::Bytes;
use thinsnap::engine::layer::{changes, changes_in, write_layer, write_layer_in, Scope};
use thinsnap::snapshot::inodes::InodeIndex;

/// Block granularity of the comparison: dm-thin's default data block.
const CHUNK: usize = 64 << 10;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loop-mounted ext4 image, unmounted on drop.
struct Mounted(PathBuf);

impl Mounted {
    /// Read-write mounts are `noatime`: the test lists directories between
    /// changes, and atime updates would put every directory's inode in the
    /// scope (still right, but then the scope would not be tested).
    fn new(img: &Path, at: &Path, ro: bool) -> Mounted {
        fs::create_dir_all(at).unwrap();
        let opts = if ro { "loop,ro" } else { "loop,noatime" };
        run(
            "mount",
            &["-o", opts, img.to_str().unwrap(), at.to_str().unwrap()],
        );
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A small deterministic generator (no test may depend on luck).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// A tree of 160 directories, 4000 files (inodes in many 64 KiB blocks of
/// the inode tables), hardlinks, symlinks and xattrs.
fn populate(root: &Path) {
    for d in 0..160 {
        for f in 0..25 {
            let p = root.join(format!("d{}/s{}/f{f}", d % 8, d));
            write(&p, format!("file {d} {f}").as_bytes());
        }
    }
    fs::hard_link(root.join("d0/s0/f0"), root.join("d1/link-to-f0")).unwrap();
    symlink("../d0/s0", root.join("d2/sym")).unwrap();
    rustix::fs::lsetxattr(
        root.join("d3/s3/f1"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
}

/// Paths of regular files and directories under `root` (relative).
fn listing(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dirs.push(r.clone());
                todo.push(r);
            } else if t.is_file() {
                files.push(r);
            }
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs)
}

/// One of many kinds of change, on a path picked by `g`.
fn mutate(root: &Path, g: &mut Lcg, step: usize) {
    let (files, dirs) = listing(root);
    let pick = |g: &mut Lcg, v: &[PathBuf]| v.get(g.next(v.len().max(1))).cloned();
    let (Some(f), Some(d)) = (pick(g, &files), pick(g, &dirs)) else {
        return;
    };
    let (f, d) = (root.join(f), root.join(d));
    let new = d.join(format!("new{step}"));
    // Failures (say, renaming a directory into itself) are fine: the
    // point is whatever state results.
    let _ = match g.next(14) {
        0 => fs::write(&f, format!("changed {step}")),
        1 => fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut h| std::io::Write::write_all(&mut h, b"+")),
        2 => fs::set_permissions(&f, fs::Permissions::from_mode(0o600)),
        3 => std::os::unix::fs::lchown(&f, Some(1000 + step as u32), None),
        4 => fs::write(&new, b"new file"),
        5 => fs::create_dir_all(new.join("deep/er"))
            .and_then(|()| fs::write(new.join("deep/x"), b"x")),
        6 => fs::remove_file(&f),
        7 => fs::remove_dir_all(&d),
        8 => fs::rename(&f, &new),
        9 => fs::rename(&d, root.join(format!("moved{step}"))),
        10 => fs::hard_link(&f, &new),
        11 => rustix::fs::lsetxattr(&f, "user.n", b"1", rustix::fs::XattrFlags::empty())
            .map_err(std::io::Error::from),
        // A directory replaced by a file, a file by a directory.
        12 => fs::remove_dir_all(&d).and_then(|()| fs::write(&d, b"was a dir")),
        _ => fs::remove_file(&f).and_then(|()| fs::create_dir(&f)),
    };
}

/// Byte ranges where two images differ, in [`CHUNK`]s.
fn differing(a: &Path, b: &Path) -> Vec<(Bytes, Bytes)> {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut out = Vec::new();
    let mut off = 0u64;
    loop {
        let na = fa.read(&mut ba).unwrap();
        let nb = fb.read(&mut bb).unwrap();
        assert_eq!(na, nb, "images of different sizes");
        if na == 0 {
            return out;
        }
        if ba[..na] != bb[..nb] {
            out.push((Bytes(off), Bytes(na as u64)));
        }
        off += na as u64;
    }
}

fn scope_of(lower_img: &Path, upper_img: &Path, lower: &Path) -> (Scope, usize) {
    let head = fs::read(upper_img).unwrap();
    let len = head_len(&head[..2048]).expect("an ext4 layout this reads");
    let geometry = Geometry::parse(&head[..len]).unwrap();
    assert!(geometry.tables.len() >= 3, "several block groups");
    let runs = geometry.inodes_in(&differing(lower_img, upper_img));
    let index = InodeIndex::build(lower).unwrap();
    (index.paths_in(&runs), index.len())
}

fn digest_of(lower: &Path, upper: &Path, scope: Option<&Scope>) -> String {
    let mut out = Vec::new();
    let info = match scope {
        Some(s) => write_layer_in(Some(lower), upper, Some(s), &mut out).unwrap(),
        None => write_layer(Some(lower), upper, &mut out).unwrap(),
    };
    info.diff_id.to_string()
}

#[test]
fn the_scoped_diff_equals_the_full_walk_on_ext4_snapshots() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for loop mounts");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (limg, uimg) = (t.path().join("lower.img"), t.path().join("upper.img"));
    let (lmnt, umnt) = (t.path().join("l"), t.path().join("u"));
    fs::File::create(&limg).unwrap().set_len(400 << 20).unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-E",
            "lazy_itable_init=0",
            limg.to_str().unwrap(),
        ],
    );
    {
        let m = Mounted::new(&limg, &lmnt, false);
        populate(&m.0);
    }
    let mut g = Lcg(7);
    for round in 0..4 {
        run(
            "cp",
            &[
                "--sparse=always",
                limg.to_str().unwrap(),
                uimg.to_str().unwrap(),
            ],
        );
        {
            let u = Mounted::new(&uimg, &umnt, false);
            if round == 0 {
                write(&u.0.join("d5/s21/new"), b"one new file");
                write(&u.0.join("d7/s95/f3"), b"one changed file");
            }
            for step in 0..[0, 4, 12, 40][round] {
                mutate(&u.0, &mut g, step);
            }
            // Unmounting checkpoints the journal, as freezing does.
        }
        let low = Mounted::new(&limg, &lmnt, true);
        let up = Mounted::new(&uimg, &umnt, true);
        let (scope, total) = scope_of(&limg, &uimg, &low.0);
        // Two files and their directories: a few 64 KiB blocks of inodes
        // (256 each). Many changes can touch every such block.
        assert!(
            round > 0 || scope.len() <= 4 * 256 && scope.len() < total / 3,
            "round {round}: a scope of {} paths in {total}",
            scope.len()
        );
        let full = changes(Some(&low.0), &up.0).unwrap();
        assert!(!full.is_empty(), "round {round} changed something");
        let scoped = changes_in(Some(&low.0), &up.0, Some(&scope)).unwrap();
        assert_eq!(scoped, full, "round {round}");
        assert_eq!(
            digest_of(&low.0, &up.0, Some(&scope)),
            digest_of(&low.0, &up.0, None),
            "round {round}: the layer tars"
        );
    }
}

#[test]
fn an_untouched_copy_has_an_empty_scope_and_no_changes() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root for loop mounts");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (limg, uimg) = (t.path().join("lower.img"), t.path().join("upper.img"));
    fs::File::create(&limg).unwrap().set_len(200 << 20).unwrap();
    run("mkfs.ext4", &["-q", "-F", limg.to_str().unwrap()]);
    {
        let m = Mounted::new(&limg, &t.path().join("w"), false);
        populate(&m.0);
    }
    run(
        "cp",
        &[
            "--sparse=always",
            limg.to_str().unwrap(),
            uimg.to_str().unwrap(),
        ],
    );
    let low = Mounted::new(&limg, &t.path().join("l"), true);
    let up = Mounted::new(&uimg, &t.path().join("u"), true);
    let (scope, _) = scope_of(&limg, &uimg, &low.0);
    assert!(scope.is_empty(), "{scope:?}");
    assert!(changes_in(Some(&low.0), &up.0, Some(&scope))
        .unwrap()
        .is_empty());
}
