//! Cases on what snapshots hold: changes in lower layers seen from upper
//! ones, replaced directories, renames, ownership and modes, special files,
//! and a deep stack of layers.

use std::fs::{self, FileTimes};
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid};

use super::{attrs, is_root, put, read, Attrs, Harness};

/// Files added, changed and deleted in lower layers, seen from above; and
/// lower layers are not changed by what the upper ones do.
pub(super) fn lower_layer_changes(h: &mut Harness<'_>) {
    h.layer("l1", None, |root| {
        for (rel, data) in [
            ("a", "a1"),
            ("b", "b1"),
            ("c", "c1"),
            ("d/x", "x1"),
            ("d/y", "y1"),
        ] {
            put(root, rel, data)?;
        }
        Ok(())
    });
    h.layer("l2", Some("l1"), |root| {
        put(root, "a", "a2")?;
        fs::remove_file(root.join("b"))?;
        put(root, "e", "e2")?;
        fs::remove_file(root.join("d/x"))?;
        put(root, "d/y", "y2")
    });
    h.layer("l3", Some("l2"), |root| put(root, "c", "c3"));
    h.view("top", "l3");
    h.expect_files(
        "top",
        &[
            ("a", Some("a2")),
            ("b", None),
            ("c", Some("c3")),
            ("d/x", None),
            ("d/y", Some("y2")),
            ("e", Some("e2")),
        ],
    );
    h.view("bottom", "l1");
    h.expect_files(
        "bottom",
        &[
            ("a", Some("a1")),
            ("b", Some("b1")),
            ("c", Some("c1")),
            ("d/x", Some("x1")),
            ("e", None),
        ],
    );
}

/// A directory removed and recreated in an upper layer shows only its new
/// contents (what an overlay whiteout and opaque directory express); files
/// and directories replacing each other too.
pub(super) fn directory_replaced(h: &mut Harness<'_>) {
    h.layer("lower", None, |root| {
        put(root, "dir/f1", "1")?;
        put(root, "dir/f2", "2")?;
        put(root, "dir/sub/deep", "deep")?;
        put(root, "file2dir", "was a file")?;
        put(root, "dir2file/inner", "was in a dir")
    });
    h.layer("upper", Some("lower"), |root| {
        fs::remove_dir_all(root.join("dir"))?;
        put(root, "dir/f3", "3")?;
        fs::remove_file(root.join("file2dir"))?;
        put(root, "file2dir/inside", "now a dir")?;
        fs::remove_dir_all(root.join("dir2file"))?;
        put(root, "dir2file", "now a file")
    });
    h.prepare("top", Some("upper"));
    let names = h.list("top", "dir");
    h.eq(
        names,
        vec!["f3".to_string()],
        "entries of the recreated directory",
    );
    h.expect_files(
        "top",
        &[
            ("file2dir/inside", Some("now a dir")),
            ("dir2file", Some("now a file")),
        ],
    );
    h.expect_files(
        "lower",
        &[
            ("dir/sub/deep", Some("deep")),
            ("file2dir", Some("was a file")),
        ],
    );
}

/// Renamed files and directories move with their contents.
pub(super) fn renames(h: &mut Harness<'_>) {
    h.layer("l1", None, |root| {
        put(root, "old.txt", "payload")?;
        put(root, "olddir/a", "A")?;
        put(root, "olddir/sub/b", "B")
    });
    h.layer("l2", Some("l1"), |root| {
        fs::rename(root.join("old.txt"), root.join("new.txt"))?;
        fs::rename(root.join("olddir"), root.join("newdir"))?;
        fs::rename(root.join("newdir/a"), root.join("newdir/a2"))
    });
    h.view("v2", "l2");
    h.expect_files(
        "v2",
        &[
            ("old.txt", None),
            ("new.txt", Some("payload")),
            ("olddir/a", None),
            ("newdir/a", None),
            ("newdir/a2", Some("A")),
            ("newdir/sub/b", Some("B")),
        ],
    );
    h.view("v1", "l1");
    h.expect_files(
        "v1",
        &[
            ("old.txt", Some("payload")),
            ("new.txt", None),
            ("olddir/a", Some("A")),
        ],
    );
}

/// The fixed mtime the ownership case gives its files.
const MTIME: Duration = Duration::from_secs(1_000_000_000);

fn set_mtime(path: &Path) -> io::Result<()> {
    let t = SystemTime::UNIX_EPOCH + MTIME;
    fs::File::open(path)?.set_times(FileTimes::new().set_modified(t).set_accessed(t))
}

fn chmod(root: &Path, rel: &str, mode: u32) -> io::Result<()> {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode))
}

fn lchown(root: &Path, rel: &str, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    Ok(rustix::fs::chownat(
        rustix::fs::CWD,
        root.join(rel),
        u,
        g,
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// The files the ownership case checks.
const OWNED: [&str; 7] = [
    "plain", "exec", "setuid", "private", "sticky", "setgid", "link",
];

/// Files and directories with every kind of mode bit, other owners (as
/// root) and a fixed mtime.
fn fill_modes(root: &Path, root_user: bool) -> io::Result<()> {
    for rel in ["plain", "exec", "setuid"] {
        put(root, rel, rel)?;
    }
    for rel in ["private", "sticky", "setgid"] {
        fs::create_dir(root.join(rel))?;
    }
    symlink("plain", root.join("link"))?;
    if root_user {
        lchown(root, "plain", 1000, 1001)?;
        lchown(root, "setuid", 1234, 5678)?;
        lchown(root, "sticky", 42, 43)?;
        lchown(root, "link", 7, 8)?;
    }
    // After the chowns, which clear setuid and setgid bits.
    for (rel, mode) in [("plain", 0o640), ("exec", 0o755), ("setuid", 0o4750)] {
        chmod(root, rel, mode)?;
    }
    for (rel, mode) in [("private", 0o700), ("sticky", 0o1777), ("setgid", 0o2755)] {
        chmod(root, rel, mode)?;
    }
    for rel in ["plain", "exec", "setuid", "private"] {
        set_mtime(&root.join(rel))?;
    }
    Ok(())
}

fn owned_attrs(root: &Path) -> io::Result<Vec<Attrs>> {
    OWNED.iter().map(|f| attrs(root, f)).collect()
}

/// Ownership (as root), modes with setuid/setgid/sticky bits and mtimes
/// survive commits, and changes to them in an upper layer are seen.
pub(super) fn ownership_and_modes(h: &mut Harness<'_>) {
    let root_user = is_root();
    if !root_user {
        h.skip("ownership checks");
    }
    h.layer("l1", None, |root| fill_modes(root, root_user));
    let want = h.with_fs("l1", owned_attrs);
    h.eq(want[3].mtime.0, 1_000_000_000, "mtime set in l1");
    h.view("v1", "l1");
    let got = h.with_fs("v1", owned_attrs);
    for ((rel, want), got) in OWNED.iter().zip(&want).zip(&got) {
        h.eq(
            got,
            want,
            format_args!("attributes of {rel} in a view of l1"),
        );
    }
    h.layer("l2", Some("l1"), |root| {
        chmod(root, "plain", 0o600)?;
        if root_user {
            lchown(root, "plain", 2000, 2001)?;
        }
        Ok(())
    });
    h.view("v2", "l2");
    let got = h.with_fs("v2", |root| attrs(root, "plain"));
    h.eq(got.mode & 0o7777, 0o600, "mode changed in l2");
    if root_user {
        h.eq((got.uid, got.gid), (2000, 2001), "owner changed in l2");
    }
}

/// Symlinks, a hardlink, a fifo and (as root) `/dev/null`'s twin.
fn fill_special(root: &Path, root_user: bool) -> io::Result<()> {
    put(root, "target.txt", "shared")?;
    symlink("/etc/passwd", root.join("abs"))?;
    symlink("target.txt", root.join("rel"))?;
    symlink("nowhere/x", root.join("dangling"))?;
    fs::hard_link(root.join("target.txt"), root.join("hard"))?;
    let mode = Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, root.join("fifo"), FileType::Fifo, mode, 0)?;
    if root_user {
        let null = root.join("null");
        let dev = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(rustix::fs::CWD, null, FileType::CharacterDevice, mode, dev)?;
    }
    Ok(())
}

/// What [`special_files`] finds in the copy.
struct Special {
    links: Vec<Option<PathBuf>>,
    /// Whether `hard` and `target.txt` are one inode, and its link count.
    hard: (bool, u64),
    fifo: FileType,
    null: Option<(FileType, u64)>,
    /// `target.txt` after writing through `hard`.
    shared: Option<String>,
}

fn inspect_special(root: &Path) -> io::Result<Special> {
    let links = ["abs", "rel", "dangling"]
        .iter()
        .map(|l| fs::read_link(root.join(l)).ok())
        .collect();
    let target = fs::symlink_metadata(root.join("target.txt"))?;
    let hard = fs::symlink_metadata(root.join("hard"))?;
    let fifo = FileType::from_raw_mode(fs::symlink_metadata(root.join("fifo"))?.mode());
    let null = fs::symlink_metadata(root.join("null"))
        .ok()
        .map(|m| (FileType::from_raw_mode(m.mode()), m.rdev()));
    fs::write(root.join("hard"), "written through hard")?;
    Ok(Special {
        links,
        hard: (target.ino() == hard.ino(), hard.nlink()),
        fifo,
        null,
        shared: read(root, "target.txt")?,
    })
}

/// Symlinks (their targets, dangling ones too), hardlinks (still one
/// inode), fifos, and (as root) device nodes.
pub(super) fn special_files(h: &mut Harness<'_>) {
    let root_user = is_root();
    if !root_user {
        h.skip("device nodes");
    }
    h.layer("l1", None, |root| fill_special(root, root_user));
    h.prepare("child", Some("l1"));
    let got = h.with_fs("child", inspect_special);
    let want: Vec<_> = ["/etc/passwd", "target.txt", "nowhere/x"]
        .iter()
        .map(|t| Some(PathBuf::from(t)))
        .collect();
    h.eq(got.links, want, "symlink targets");
    h.eq(got.hard, (true, 2), "hardlink: same inode, two links");
    h.eq(got.fifo, FileType::Fifo, "fifo type");
    if root_user {
        let want = Some((FileType::CharacterDevice, rustix::fs::makedev(1, 3)));
        h.eq(got.null, want, "device node");
    }
    h.eq(
        got.shared.as_deref(),
        Some("written through hard"),
        "a write through one hardlink, read through the other",
    );
    h.expect_files("l1", &[("target.txt", Some("shared"))]);
}

const LAYERS: usize = 128;

/// 128 stacked layers, each adding one file and changing the one the
/// layer below added: the top sees every file at its last version.
pub(super) fn stacked_128_layers(h: &mut Harness<'_>) {
    let mut parent: Option<String> = None;
    for i in 0..LAYERS {
        let name = format!("layer-{i:03}");
        h.layer(&name, parent.as_deref(), |root| {
            put(root, &format!("files/{i:03}"), &format!("added in {i}"))?;
            if i > 0 {
                put(
                    root,
                    &format!("files/{:03}", i - 1),
                    &format!("changed in {i}"),
                )?;
            }
            put(root, "counter", &i.to_string())
        });
        parent = Some(name);
    }
    let top = format!("layer-{:03}", LAYERS - 1);
    h.view("top", &top);
    let (names, contents, counter) = h.with_fs("top", |root| {
        let mut names: Vec<String> = fs::read_dir(root.join("files"))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()?;
        names.sort();
        let contents = names
            .iter()
            .map(|n| fs::read_to_string(root.join("files").join(n)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((names, contents, read(root, "counter")?))
    });
    let want_names: Vec<String> = (0..LAYERS).map(|i| format!("{i:03}")).collect();
    h.eq(names, want_names, "files in the top layer");
    let want: Vec<String> = (0..LAYERS)
        .map(|i| {
            if i + 1 < LAYERS {
                format!("changed in {}", i + 1)
            } else {
                format!("added in {i}")
            }
        })
        .collect();
    h.eq(contents, want, "file versions in the top layer");
    h.eq(counter, Some((LAYERS - 1).to_string()), "counter");
    h.eq(h.walk().len(), LAYERS + 1, "walk length");
}
