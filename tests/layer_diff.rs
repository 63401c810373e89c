//! Changes between trees, and the layer tars written from them: sorted,
//! deterministic, and reproducing the tree when applied.
#![allow(clippy::unwrap_used)]

#[path = "fixtures/layer/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{is_root, set_mtime, snapshot, Info};
use thinsnap::engine::digest::Digest;
use thinsnap::engine::layer::{
    apply_layer, changes, write_layer, write_tree, ApplyOptions, Change,
};

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn file(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    chmod(&p, mode);
}

fn setx(root: &Path, rel: &str, key: &str, value: &[u8]) {
    rustix::fs::lsetxattr(root.join(rel), key, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// Every kind of object, with setuid bits, owners, xattrs, nanosecond
/// and pre-1970 mtimes, hardlinks and long names. Mtimes are set last,
/// directories after their contents.
fn rich_tree(root: &Path) {
    file(root, "etc/passwd", b"root:x:0:0", 0o644);
    file(root, "bin/su", b"\x7fELF su", 0o4755);
    file(root, "bin/sg", b"\x7fELF sg", 0o2755);
    file(root, "home/user/notes", b"notes", 0o600);
    file(root, "empty-file", b"", 0o444);
    file(
        root,
        &format!("deep/{}/file", "x".repeat(120)),
        b"long",
        0o644,
    );
    fs::create_dir_all(root.join("tmp")).unwrap();
    chmod(&root.join("tmp"), 0o1777);
    fs::create_dir_all(root.join("emptydir")).unwrap();
    chmod(&root.join("emptydir"), 0o700);
    symlink("su", root.join("bin/sh")).unwrap();
    symlink("/etc/passwd", root.join("abs")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    symlink(format!("../{}", "t".repeat(150)), root.join("longlink")).unwrap();
    fs::hard_link(root.join("bin/su"), root.join("bin/su-hl")).unwrap();
    fs::hard_link(root.join("bin/su"), root.join("a-first-hl")).unwrap();
    fs::create_dir_all(root.join("run")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("run/fifo"),
        rustix::fs::FileType::Fifo,
        0o620.into(),
        0,
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("run/sock")).unwrap();
    setx(root, "etc/passwd", "user.a", b"1");
    setx(root, "etc", "user.dir", b"\x00\xff binary");
    if is_root() {
        fs::create_dir_all(root.join("dev")).unwrap();
        let dev = |name: &str, ft, maj, min| {
            let p = root.join("dev").join(name);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &p,
                ft,
                0o660.into(),
                rustix::fs::makedev(maj, min),
            )
            .unwrap();
        };
        dev("null", rustix::fs::FileType::CharacterDevice, 1, 3);
        dev("loop0", rustix::fs::FileType::BlockDevice, 7, 0);
        std::os::unix::fs::lchown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::lchown(root.join("home/user/notes"), Some(3_000_000), Some(1000))
            .unwrap();
        std::os::unix::fs::lchown(root.join("bin/sh"), Some(5), Some(6)).unwrap();
        setx(root, "bin/su", "trusted.t", b"x");
        // chown cleared the setgid bit? set it again after.
        chmod(&root.join("bin/sg"), 0o2755);
    }
    set_all_mtimes(root);
}

/// Gives every object a distinct mtime, children before parents.
fn set_all_mtimes(root: &Path) {
    let mut paths: Vec<PathBuf> = snapshot(root).into_keys().collect();
    paths.reverse();
    for (i, rel) in paths.iter().enumerate() {
        let secs = if rel == Path::new("empty-file") {
            -6
        } else {
            1_600_000_000 + i as i64
        };
        set_mtime(&root.join(rel), secs, (i as i64 * 7919) % 1_000_000_000);
    }
}

fn without_sockets(s: BTreeMap<PathBuf, Info>) -> BTreeMap<PathBuf, Info> {
    s.into_iter().filter(|(_, i)| i.kind != "socket").collect()
}

/// A copy of `src` made through our own tar round trip.
fn copy_tree(src: &Path, dst: &Path) {
    let mut tar = Vec::new();
    write_tree(src, &mut tar).unwrap();
    fs::create_dir_all(dst).unwrap();
    apply_layer(dst, &tar[..], &ApplyOptions::default()).unwrap();
}

#[test]
fn write_tree_round_trips_exactly() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    fs::create_dir(&a).unwrap();
    rich_tree(&a);
    set_mtime(&a, 1_234_567_890, 42);
    copy_tree(&a, &b);
    let (sa, sb) = (without_sockets(snapshot(&a)), snapshot(&b));
    assert_eq!(sa.keys().collect::<Vec<_>>(), sb.keys().collect::<Vec<_>>());
    for (k, v) in &sa {
        assert_eq!(Some(v), sb.get(k), "{k:?}");
    }
    assert_eq!(
        sb[Path::new("bin/su-hl")].inode_group,
        PathBuf::from("a-first-hl")
    );
}

#[test]
fn write_tree_is_deterministic_and_parseable() {
    let t = tempfile::tempdir().unwrap();
    rich_tree(t.path());
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let i1 = write_tree(t.path(), &mut one).unwrap();
    let i2 = write_tree(t.path(), &mut two).unwrap();
    assert_eq!(one, two);
    assert_eq!(i1, i2);
    assert_eq!(i1.diff_id, Digest::of(&one));
    assert_eq!(i1.size, one.len() as u64);
    let mut ar = tar::Archive::new(&one[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        let name = e.path_bytes().into_owned();
        if name.ends_with(b"su-hl") {
            assert_eq!(h.entry_type(), tar::EntryType::Link);
            assert_eq!(e.link_name_bytes().unwrap().as_ref(), b"a-first-hl");
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let key = name.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(name);
        names.push(key);
    }
    assert_eq!(names[0], b".");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries sorted bytewise");
    assert!(
        !names.iter().any(|n| n.ends_with(b"sock")),
        "sockets skipped"
    );
}

#[test]
fn walking_never_follows_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let (tree, outside) = (t.path().join("tree"), t.path().join("outside"));
    fs::create_dir_all(outside.join("secret-dir")).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::create_dir(&tree).unwrap();
    symlink(&outside, tree.join("link")).unwrap();
    symlink("../outside/secret", tree.join("file-link")).unwrap();
    let mut out = Vec::new();
    write_tree(&tree, &mut out).unwrap();
    let names: Vec<String> = tar::Archive::new(&out[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["./", "file-link", "link"], "followed a symlink");
    let ch = changes(None, &tree).unwrap();
    assert_eq!(
        ch,
        vec![
            Change::Added("/file-link".into()),
            Change::Added("/link".into())
        ]
    );
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn changes_follow_docker_diff() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir(&low).unwrap();
    file(&low, "a/b/c", b"c", 0o644);
    file(&low, "keep", b"same", 0o644);
    file(&low, "mod", b"v1", 0o644);
    file(&low, "x/y/z", b"z", 0o644);
    file(&low, "perm", b"p", 0o644);
    file(&low, "dir2file/child", b"c", 0o644);
    set_all_mtimes(&low);
    copy_tree(&low, &up);
    assert_eq!(changes(Some(&low), &up).unwrap(), vec![]);
    file(&up, "a/b/new", b"n", 0o644);
    fs::write(up.join("mod"), b"v2").unwrap();
    fs::remove_dir_all(up.join("x")).unwrap();
    chmod(&up.join("perm"), 0o600);
    fs::remove_dir_all(up.join("dir2file")).unwrap();
    fs::write(up.join("dir2file"), b"now a file").unwrap();
    let got = changes(Some(&low), &up).unwrap();
    assert_eq!(
        got,
        vec![
            Change::Modified(p("/a")),
            Change::Modified(p("/a/b")),
            Change::Added(p("/a/b/new")),
            Change::Modified(p("/dir2file")),
            Change::Modified(p("/mod")),
            Change::Modified(p("/perm")),
            Change::Deleted(p("/x")),
        ]
    );
    let all = changes(None, &low).unwrap();
    assert!(all.iter().all(|c| matches!(c, Change::Added(_))));
    assert_eq!(all.len(), 11);
}

#[test]
fn metadata_only_changes_are_detected() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir(&low).unwrap();
    file(&low, "x", b"same", 0o644);
    file(&low, "t", b"same", 0o644);
    symlink("one", low.join("s")).unwrap();
    set_all_mtimes(&low);
    copy_tree(&low, &up);
    setx(&up, "x", "user.new", b"1");
    let m = fs::symlink_metadata(up.join("t")).unwrap();
    use std::os::unix::fs::MetadataExt;
    set_mtime(&up.join("t"), m.mtime(), m.mtime_nsec() + 1);
    let sm = fs::symlink_metadata(up.join("s")).unwrap();
    fs::remove_file(up.join("s")).unwrap();
    symlink("two", up.join("s")).unwrap();
    set_mtime(&up.join("s"), sm.mtime(), sm.mtime_nsec());
    let got = changes(Some(&low), &up).unwrap();
    assert_eq!(
        got,
        vec![
            Change::Modified(p("/s")),
            Change::Modified(p("/t")),
            Change::Modified(p("/x"))
        ]
    );
}

/// Builds upper from lower with every kind of change, writes the layer,
/// applies it on another copy of lower and compares with upper.
#[test]
fn write_layer_reproduces_upper() {
    let t = tempfile::tempdir().unwrap();
    let (low, up, re) = (
        t.path().join("low"),
        t.path().join("up"),
        t.path().join("re"),
    );
    fs::create_dir(&low).unwrap();
    rich_tree(&low);
    copy_tree(&low, &up);
    copy_tree(&low, &re);
    fs::write(up.join("etc/passwd"), b"root:x:0:1").unwrap();
    fs::hard_link(up.join("etc/passwd"), up.join("etc/passwd-hl")).unwrap();
    fs::remove_file(up.join("bin/sg")).unwrap();
    fs::remove_dir_all(up.join("home")).unwrap();
    file(&up, "new/dir/file", b"new", 0o640);
    chmod(&up.join("etc"), 0o750);
    fs::remove_dir(up.join("emptydir")).unwrap();
    fs::write(up.join("emptydir"), b"was a dir").unwrap();
    fs::remove_file(up.join("abs")).unwrap();
    symlink("/bin/su", up.join("abs")).unwrap();
    setx(&up, "bin/su", "user.new", b"cap");
    file(&up, "tmp/scratch", b"s", 0o600);
    set_mtime(&up.join("tmp"), 1_700_000_000, 1);
    set_mtime(&up.join("etc"), 1_700_000_001, 2);
    set_mtime(&up.join("bin"), 1_700_000_002, 3);
    set_mtime(&up, 1_700_000_004, 0);
    let mut tar = Vec::new();
    let info = write_layer(Some(&low), &up, &mut tar).unwrap();
    assert_eq!(info.diff_id, Digest::of(&tar));
    let mut again = Vec::new();
    assert_eq!(write_layer(Some(&low), &up, &mut again).unwrap(), info);
    assert_eq!(tar, again, "same change, same bytes");
    let text = String::from_utf8_lossy(&tar);
    assert!(text.contains("bin/.wh.sg") && text.contains(".wh.home"));
    apply_layer(&re, &tar[..], &ApplyOptions::default()).unwrap();
    set_mtime(&re, 1_700_000_004, 0);
    let (su, sr) = (snapshot(&up), snapshot(&re));
    for (k, v) in &su {
        assert_eq!(Some(v), sr.get(k), "{k:?}");
    }
    assert_eq!(su.len(), sr.len());
    assert_eq!(changes(Some(&up), &re).unwrap(), vec![]);
}

#[test]
fn write_layer_without_lower_is_the_tree_minus_root() {
    let t = tempfile::tempdir().unwrap();
    file(t.path(), "d/f", b"x", 0o644);
    let (mut layer, mut tree) = (Vec::new(), Vec::new());
    write_layer(None, t.path(), &mut layer).unwrap();
    write_tree(t.path(), &mut tree).unwrap();
    assert!(
        layer.len() < tree.len() && tree.ends_with(&layer),
        "only the ./ entry differs"
    );
}

/// Access times of every path but symlinks (`readlink` always touches
/// the link's atime, and no open flag avoids it), by `lstat` only.
fn atimes(paths: &[PathBuf]) -> Vec<(PathBuf, i64, i64)> {
    paths
        .iter()
        .filter_map(|p| {
            let m = fs::symlink_metadata(p).unwrap();
            (!m.file_type().is_symlink()).then(|| (p.clone(), m.atime(), m.atime_nsec()))
        })
        .collect()
}

/// Reading trees for a diff or a layer leaves them as they were: no
/// access time moves. Under `relatime` an extracted file's first read
/// rewrites its inode, and in a container on ext4 every inode so dirtied
/// widens the next diff's scope.
#[test]
fn reading_trees_leaves_access_times_alone() {
    let t = tempfile::tempdir().unwrap();
    let (low, up) = (t.path().join("low"), t.path().join("up"));
    fs::create_dir(&low).unwrap();
    rich_tree(&low);
    copy_tree(&low, &up);
    fs::write(up.join("etc/passwd"), b"root:x:0:1").unwrap();
    file(&up, "new/dir/file", b"new", 0o640);
    file(t.path(), "control", b"read by a plain open", 0o644);
    let mut paths: Vec<PathBuf> = [&low, &up]
        .iter()
        .flat_map(|r| snapshot(r).into_keys().map(|k| r.join(k)))
        .collect();
    paths.push(t.path().join("control"));
    // Old access times, as after extraction: the next plain read of any
    // of these updates it (listing a directory counts as reading it).
    for p in paths.iter().rev() {
        set_mtime(p, 1_600_000_000, 0);
    }
    let before = atimes(&paths);
    fs::read(t.path().join("control")).unwrap();
    if atimes(&paths) == before {
        eprintln!("skipped: this filesystem does not update access times");
        return;
    }
    let before = atimes(&paths);
    changes(Some(&low), &up).unwrap();
    write_layer(Some(&low), &up, std::io::sink()).unwrap();
    write_tree(&up, std::io::sink()).unwrap();
    write_tree(&low, std::io::sink()).unwrap();
    assert_eq!(atimes(&paths), before);
}
