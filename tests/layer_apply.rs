//! Applying layer tars: entry kinds, metadata, compression and diffIDs,
//! whiteouts and opaque directories, replacement rules.
#![allow(clippy::unwrap_used)]

#[path = "fixtures/layer/common.rs"]
mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::{gzip, is_root, xattrs, Fields, Raw};
use thinsnap::engine::digest::Digest;
use thinsnap::engine::layer::{
    apply_layer, apply_layer_verified, diff_id_of, ApplyOptions, ApplyStats,
};

fn apply(root: &Path, tar: &[u8]) -> ApplyStats {
    apply_layer(root, tar, &ApplyOptions::default()).unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// Files with setuid/setgid, a sticky dir, a symlink, a hardlink, a fifo
/// and a nanosecond mtime with a binary xattr, all owned by 1000:2000.
fn every_kind_tar() -> Vec<u8> {
    let f = |mode, mtime, link| Fields {
        mode,
        mtime,
        link,
        uid: 1000,
        gid: 2000,
        ..Fields::default()
    };
    Raw::new()
        .entry(b"bin/", b'5', b"", &f(0o755, 100, b""))
        .entry(b"bin/su", b'0', b"#!suid", &f(0o4755, 200, b""))
        .entry(b"bin/sg", b'0', b"sg", &f(0o2711, 201, b""))
        .entry(b"tmp/", b'5', b"", &f(0o1777, 300, b""))
        .entry(b"bin/sh", b'2', b"", &f(0o777, 400, b"su"))
        .entry(b"bin/su2", b'1', b"", &f(0o4755, 0, b"bin/su"))
        .entry(b"fifo", b'6', b"", &f(0o640, 500, b""))
        .pax(&[
            ("mtime", b"600.123456789"),
            ("SCHILY.xattr.user.k", b"v\n\0w"),
        ])
        .entry(b"nanos", b'0', b"n", &f(0o600, 0, b""))
        .finish()
}

#[test]
fn applies_every_kind_with_modes_and_times() {
    let t = tempfile::tempdir().unwrap();
    let tar = every_kind_tar();
    let stats = apply(t.path(), &tar);
    assert_eq!(stats.entries, 8);
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(stats.size, tar.len() as u64);
    let r = t.path();
    assert_eq!(fs::read(r.join("bin/su")).unwrap(), b"#!suid");
    assert_eq!(mode(&r.join("bin/su")), 0o4755);
    assert_eq!(mode(&r.join("bin/sg")), 0o2711);
    assert_eq!(mode(&r.join("tmp")), 0o1777);
    assert_eq!(mode(&r.join("bin")), 0o755);
    let dir_time = mtime(&r.join("bin"));
    assert_eq!(dir_time, (100, 0), "directory mtime set after its entries");
    assert_eq!(mtime(&r.join("bin/su")), (200, 0));
    assert_eq!(mtime(&r.join("bin/sh")), (400, 0));
    assert_eq!(fs::read_link(r.join("bin/sh")).unwrap(), Path::new("su"));
    let fifo = fs::symlink_metadata(r.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(mode(&r.join("fifo")), 0o640);
    assert_eq!(mtime(&r.join("nanos")), (600, 123_456_789));
    let want = vec![(b"user.k".to_vec(), b"v\n\0w".to_vec())];
    assert_eq!(xattrs(&r.join("nanos")), want);
}

#[test]
fn hardlinks_share_the_inode_and_owners_are_applied() {
    let t = tempfile::tempdir().unwrap();
    apply(t.path(), &every_kind_tar());
    let r = t.path();
    let a = fs::metadata(r.join("bin/su")).unwrap();
    let b = fs::metadata(r.join("bin/su2")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    if is_root() {
        assert_eq!((a.uid(), a.gid()), (1000, 2000));
        assert_eq!(a.mode() & 0o7777, 0o4755, "setuid survives the chown");
        let l = fs::symlink_metadata(r.join("bin/sh")).unwrap();
        assert_eq!((l.uid(), l.gid()), (1000, 2000));
    }
}

#[test]
fn devices_and_privileged_xattrs_as_root() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Raw::new()
        .chardev("dev/null", 1, 3)
        .entry(
            b"dev/loop9",
            b'4',
            b"",
            &Fields {
                dev: (7, 9),
                mode: 0o660,
                ..Fields::default()
            },
        )
        .pax(&[
            ("SCHILY.xattr.trusted.t", b"1"),
            (
                "SCHILY.xattr.security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
        ])
        .file_mode("ping", b"elf", 0o755)
        .pax(&[("SCHILY.xattr.trusted.s", b"on-a-symlink")])
        .symlink("ln", "ping")
        .finish();
    let stats = apply(t.path(), &tar);
    assert_eq!(stats.skipped_devices, 0);
    let null = fs::symlink_metadata(t.path().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let blk = fs::symlink_metadata(t.path().join("dev/loop9")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.mode() & 0o7777, 0o660);
    let names: Vec<Vec<u8>> = xattrs(&t.path().join("ping"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(names.contains(&b"trusted.t".to_vec()));
    assert!(names.contains(&b"security.capability".to_vec()));
    assert_eq!(
        xattrs(&t.path().join("ln")),
        vec![(b"trusted.s".to_vec(), b"on-a-symlink".to_vec())]
    );
}

#[test]
fn same_owner_off_keeps_our_ids() {
    let t = tempfile::tempdir().unwrap();
    let tar = Raw::new()
        .entry(
            b"f",
            b'0',
            b"x",
            &Fields {
                uid: 4321,
                gid: 4321,
                ..Fields::default()
            },
        )
        .finish();
    let opts = ApplyOptions {
        same_owner: false,
        ..ApplyOptions::default()
    };
    apply_layer(t.path(), &tar[..], &opts).unwrap();
    let md = fs::metadata(t.path().join("f")).unwrap();
    assert_eq!(md.uid(), rustix::process::geteuid().as_raw());
}

/// A layer with `d/f` (40000 bytes), and the same followed by 8 KiB of
/// zeros after its end marker (which the diffID covers too).
fn content_tars() -> (Vec<u8>, Vec<u8>) {
    let tar = Raw::new()
        .dir("d")
        .file("d/f", &b"content ".repeat(5000))
        .finish();
    let mut trailing = tar.clone();
    trailing.extend_from_slice(&[0u8; 8192]);
    (tar, trailing)
}

#[test]
fn compressed_layers_and_diff_ids() {
    let (tar, trailing) = content_tars();
    let zst = zstd::stream::encode_all(&tar[..], 3).unwrap();
    for (input, plain) in [
        (tar.clone(), &tar),
        (gzip(&tar), &tar),
        (zst, &tar),
        (gzip(&trailing), &trailing),
    ] {
        let t = tempfile::tempdir().unwrap();
        let stats = apply(t.path(), &input);
        assert_eq!(
            stats.diff_id,
            Digest::of(plain),
            "diffID covers the whole uncompressed stream"
        );
        assert_eq!(stats.size, plain.len() as u64);
        assert_eq!(
            diff_id_of(&input[..]).unwrap(),
            (stats.diff_id.clone(), stats.size)
        );
        assert_eq!(fs::read(t.path().join("d/f")).unwrap().len(), 40000);
    }
}

#[test]
fn verified_blobs_skip_only_the_hash_of_plain_streams() {
    let (tar, trailing) = content_tars();
    for (input, plain) in [(tar.clone(), &tar), (trailing.clone(), &trailing)] {
        let t = tempfile::tempdir().unwrap();
        let blob = Digest::of(&input);
        let opts = ApplyOptions::default();
        let stats = apply_layer_verified(t.path(), &input[..], &opts, &blob).unwrap();
        assert_eq!(stats.diff_id, Digest::of(plain));
        assert_eq!(stats.size, plain.len() as u64, "every byte is still read");
        assert_eq!(fs::read(t.path().join("d/f")).unwrap().len(), 40000);
    }
    // A compressed blob's digest is not its diffID: that is computed.
    let gz = gzip(&tar);
    let t = tempfile::tempdir().unwrap();
    let opts = ApplyOptions::default();
    let stats = apply_layer_verified(t.path(), &gz[..], &opts, &Digest::of(&gz)).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(stats.size, tar.len() as u64);
}

#[test]
fn missing_parents_are_created() {
    let t = tempfile::tempdir().unwrap();
    apply(t.path(), &Raw::new().file("a/b/c/f", b"x").finish());
    assert_eq!(fs::read(t.path().join("a/b/c/f")).unwrap(), b"x");
    assert!(fs::metadata(t.path().join("a/b")).unwrap().is_dir());
}

#[test]
fn whiteouts_delete_lower_entries() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    apply(
        r,
        &Raw::new()
            .file("etc/a", b"a")
            .file("etc/b", b"b")
            .file("var/x/y", b"y")
            .symlink("l", "etc")
            .finish(),
    );
    let stats = apply(
        r,
        &Raw::new()
            .file("etc/.wh.a", b"")
            .file(".wh.var", b"")
            .file(".wh.l", b"")
            .file(".wh.nothing", b"")
            .finish(),
    );
    assert_eq!(stats.whiteouts, 3);
    assert!(!r.join("etc/a").exists());
    assert!(r.join("etc/b").exists());
    assert!(!r.join("var").exists());
    assert!(fs::symlink_metadata(r.join("l")).is_err());
    assert!(!r.join("etc/.wh.a").exists(), "whiteouts are never created");
}

#[test]
fn whiteout_spares_entries_of_the_same_layer_in_any_order() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    apply(
        r,
        &Raw::new().file("a", b"lower").file("b", b"lower").finish(),
    );
    apply(
        r,
        &Raw::new()
            .file(".wh.a", b"")
            .file("a", b"upper")
            .file("b", b"upper")
            .file(".wh.b", b"")
            .finish(),
    );
    assert_eq!(fs::read(r.join("a")).unwrap(), b"upper");
    assert_eq!(fs::read(r.join("b")).unwrap(), b"upper");
}

#[test]
fn opaque_directory_before_and_after_its_entries() {
    for marker_first in [true, false] {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        apply(
            r,
            &Raw::new()
                .file("d/old", b"o")
                .file("d/sub/old", b"o")
                .file("d/keep/old", b"o")
                .file("other", b"o")
                .finish(),
        );
        let mut raw = Raw::new();
        raw.dir_mode("d", 0o750);
        if marker_first {
            raw.file("d/.wh..wh..opq", b"");
        }
        raw.dir("d/keep")
            .file("d/keep/new", b"n")
            .file("d/new", b"n");
        if !marker_first {
            raw.file("d/.wh..wh..opq", b"");
        }
        apply(r, &raw.finish());
        let mut names: Vec<_> = walk(r);
        names.sort();
        assert_eq!(
            names,
            ["d", "d/keep", "d/keep/new", "d/new", "other"],
            "marker first: {marker_first}"
        );
        assert_eq!(mode(&r.join("d")), 0o750);
    }
}

fn walk(root: &Path) -> Vec<String> {
    common::snapshot(root)
        .keys()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn replacing_entries_of_another_type() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    apply(
        r,
        &Raw::new()
            .file("d/x/y", b"1")
            .file("f", b"1")
            .dir("keep")
            .file("keep/child", b"c")
            .symlink("s", "f")
            .finish(),
    );
    let tar = Raw::new()
        .file("d", b"now a file")
        .dir("f")
        .dir_mode("keep", 0o700)
        .fifo("s")
        .finish();
    apply(r, &tar);
    assert_eq!(fs::read(r.join("d")).unwrap(), b"now a file");
    assert!(fs::metadata(r.join("f")).unwrap().is_dir());
    assert_eq!(
        fs::read(r.join("keep/child")).unwrap(),
        b"c",
        "a dir over a dir keeps its contents"
    );
    assert_eq!(mode(&r.join("keep")), 0o700);
    assert!(fs::symlink_metadata(r.join("s"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn root_entry_metadata_and_readonly_dirs() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("r");
    fs::create_dir(&r).unwrap();
    let tar = Raw::new()
        .entry(
            b"./",
            b'5',
            b"",
            &Fields {
                mode: 0o751,
                mtime: 77,
                ..Fields::default()
            },
        )
        .dir_mode("ro", 0o555)
        .file("ro/f", b"written after the dir entry")
        .finish();
    apply(&r, &tar);
    assert_eq!(mode(&r), 0o751);
    assert_eq!(mtime(&r), (77, 0));
    assert_eq!(mode(&r.join("ro")), 0o555);
    assert!(r.join("ro/f").exists());
    fs::set_permissions(r.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn duplicate_entries_last_one_wins() {
    let t = tempfile::tempdir().unwrap();
    let tar = Raw::new()
        .file("f", b"first")
        .file_mode("f", b"second", 0o600)
        .dir_mode("d", 0o700)
        .dir_mode("d", 0o711)
        .finish();
    apply(t.path(), &tar);
    assert_eq!(fs::read(t.path().join("f")).unwrap(), b"second");
    assert_eq!(mode(&t.path().join("d")), 0o711);
}

#[test]
fn long_names_through_pax_and_gnu() {
    let t = tempfile::tempdir().unwrap();
    let long = format!("{}/file", "n".repeat(200));
    let longer = format!("{}/other", "m".repeat(180));
    let tar = Raw::new()
        .pax(&[("path", long.as_bytes())])
        .file("short", b"pax")
        .gnu_long(b'L', longer.as_bytes())
        .file("short2", b"gnu")
        .gnu_long(b'K', long.as_bytes())
        .hardlink("hl", "x")
        .finish();
    apply(t.path(), &tar);
    assert_eq!(fs::read(t.path().join(&long)).unwrap(), b"pax");
    assert_eq!(fs::read(t.path().join(&longer)).unwrap(), b"gnu");
    assert_eq!(fs::read(t.path().join("hl")).unwrap(), b"pax");
}
