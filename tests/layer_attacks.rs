//! A corpus of hostile layer archives (containerd's `TestBreakouts`
//! families and more). Each is applied to `tmp/root/`, next to
//! `tmp/outside/` and `tmp/canary`; every test then proves the rest of
//! `tmp` is byte-for-byte as it was (content, mode, owner, mtime, xattrs)
//! and that no new file appeared outside the root.
#![allow(clippy::unwrap_used)]

#[path = "fixtures/layer/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{gzip, snapshot_skipping, Fields, Info, Raw};
use thinsnap::engine::layer::{apply_layer, ApplyOptions, ApplyStats, LayerError, Limit, Refusal};

struct Arena {
    tmp: tempfile::TempDir,
    root: PathBuf,
    before: BTreeMap<PathBuf, Info>,
}

impl Arena {
    fn new() -> Arena {
        Arena::with_root(|_| {})
    }

    /// `prepare` may populate the root (a lower layer) before the
    /// outside world is recorded.
    fn with_root(prepare: impl FnOnce(&Path)) -> Arena {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let out = tmp.path().join("outside");
        fs::create_dir_all(out.join("sub")).unwrap();
        fs::create_dir(&root).unwrap();
        fs::write(out.join("canary"), b"canary").unwrap();
        fs::set_permissions(out.join("canary"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(out.join("sub/inner"), b"inner").unwrap();
        symlink("canary", out.join("canary-link")).unwrap();
        fs::write(tmp.path().join("canary"), b"top").unwrap();
        prepare(&root);
        let before = snapshot_skipping(tmp.path(), &["root"]);
        Arena { tmp, root, before }
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    fn abs(&self, rel: &str) -> String {
        self.tmp.path().join(rel).to_str().unwrap().to_string()
    }

    fn apply(&self, tar: &[u8]) -> Result<ApplyStats, LayerError> {
        self.apply_with(tar, &ApplyOptions::default())
    }

    fn apply_with(&self, tar: &[u8], opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
        let r = apply_layer(&self.root, tar, opts);
        self.check();
        r
    }

    /// Nothing outside the root changed or appeared.
    fn check(&self) {
        let now = snapshot_skipping(self.tmp.path(), &["root"]);
        assert_eq!(now, self.before, "something outside the root changed");
    }
}

#[track_caller]
fn refused(r: Result<ApplyStats, LayerError>, why: Refusal) {
    match r {
        Err(LayerError::Refused { why: got, .. }) if got == why => {}
        other => panic!("expected refusal {why:?}, got {other:?}"),
    }
}

#[test]
fn absolute_file_path() {
    let a = Arena::new();
    let name = a.abs("outside/canary");
    refused(
        a.apply(&Raw::new().file(&name, b"pwned").finish()),
        Refusal::AbsolutePath,
    );
    refused(
        a.apply(&Raw::new().file("/evil", b"x").finish()),
        Refusal::AbsolutePath,
    );
}

#[test]
fn dotdot_climbing() {
    let a = Arena::new();
    for name in [
        "../canary",
        "../outside/canary",
        "a/../../outside/canary",
        "./../canary",
        "a/b/../../../canary",
    ] {
        refused(
            a.apply(&Raw::new().file(name, b"pwned").finish()),
            Refusal::EscapesRoot,
        );
    }
    refused(
        a.apply(&Raw::new().file("../outside/new", b"x").finish()),
        Refusal::EscapesRoot,
    );
}

#[test]
fn dotdot_directory_entry() {
    let a = Arena::new();
    refused(
        a.apply(&Raw::new().dir_mode("..", 0o777).finish()),
        Refusal::EscapesRoot,
    );
    refused(
        a.apply(&Raw::new().dir_mode("../", 0o777).finish()),
        Refusal::EscapesRoot,
    );
    refused(
        a.apply(&Raw::new().dir_mode("../outside", 0o777).finish()),
        Refusal::EscapesRoot,
    );
}

#[test]
fn symlink_absolute_then_write_through() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("abs", &a.abs("outside"))
        .file("abs/canary", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    // An absolute symlink to `/` is the root itself.
    let tar = Raw::new()
        .symlink("slash", "/")
        .file("slash/x", b"inside")
        .finish();
    a.apply(&tar).unwrap();
    assert_eq!(fs::read(a.root.join("x")).unwrap(), b"inside");
}

#[test]
fn symlink_up_and_out_then_write() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("a", "../../outside")
        .file("a/canary", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    let tar = Raw::new()
        .symlink("b", "../outside")
        .file("b/new", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
}

#[test]
fn symlink_up_and_out_lands_inside_when_target_exists_in_root() {
    let a = Arena::new();
    let tar = Raw::new()
        .dir("outside")
        .symlink("a", "../../outside")
        .file("a/canary", b"inside")
        .finish();
    a.apply(&tar).unwrap();
    assert_eq!(fs::read(a.root.join("outside/canary")).unwrap(), b"inside");
}

#[test]
fn multiple_symlink_chains() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("l1", "l2")
        .symlink("l2", "l3")
        .symlink("l3", "../../../outside")
        .file("l1/canary", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    // `..` through two hops still stops at the root.
    let tar = Raw::new()
        .symlink("up", "..")
        .symlink("upup", "up/..")
        .file("upup/outside/canary", b"inside")
        .finish();
    a.apply(&tar).unwrap();
    assert_eq!(fs::read(a.root.join("outside/canary")).unwrap(), b"inside");
}

#[test]
fn symlink_to_parent_directory_then_write() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("parent", "..")
        .file("parent/canary", b"inside")
        .hardlink("hl", "parent/canary")
        .finish();
    a.apply(&tar).unwrap();
    assert_eq!(fs::read(a.root.join("canary")).unwrap(), b"inside");
    assert!(fs::symlink_metadata(a.root.join("parent"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn symlink_replacing_directory_then_write_beneath() {
    let a = Arena::new();
    let tar = Raw::new()
        .dir("d")
        .file("d/f", b"x")
        .symlink("d", "../outside")
        .file("d/canary", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    assert!(!a.root.join("d/f").exists());
}

#[test]
fn existing_symlink_in_lower_layer_points_out() {
    let a = Arena::with_root(|root| {
        symlink("../outside", root.join("evil")).unwrap();
        symlink("/../../..", root.join("evil2")).unwrap();
    });
    refused(
        a.apply(&Raw::new().file("evil/canary", b"pwned").finish()),
        Refusal::DanglingParent,
    );
    a.apply(&Raw::new().file("evil2/new", b"inside").finish())
        .unwrap();
    assert_eq!(fs::read(a.root.join("new")).unwrap(), b"inside");
}

#[test]
fn regular_file_over_symlink_replaces_the_symlink() {
    let a = Arena::new();
    let canary = a.abs("outside/canary");
    let tar = Raw::new()
        .symlink("f", &canary)
        .file_mode("f", b"replaced", 0o777)
        .symlink("g", "../outside/canary")
        .dir_mode("g", 0o777)
        .finish();
    a.apply(&tar).unwrap();
    assert_eq!(fs::read(a.root.join("f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(a.root.join("g")).unwrap().is_dir());
}

#[test]
fn hardlink_to_absolute_path() {
    let a = Arena::new();
    let tar = Raw::new().hardlink("h", &a.abs("outside/canary")).finish();
    refused(a.apply(&tar), Refusal::AbsolutePath);
    refused(
        a.apply(&Raw::new().hardlink("h", "/etc/passwd").finish()),
        Refusal::AbsolutePath,
    );
}

#[test]
fn hardlink_down_and_out() {
    let a = Arena::new();
    for target in ["../outside/canary", "../canary", "x/../../canary"] {
        refused(
            a.apply(&Raw::new().hardlink("h", target).finish()),
            Refusal::EscapesRoot,
        );
    }
}

#[test]
fn hardlink_through_symlinked_directory() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("s", "../outside")
        .hardlink("h", "s/canary")
        .finish();
    refused(a.apply(&tar), Refusal::HardlinkTargetMissing);
    let tar = Raw::new()
        .symlink("abs", &a.abs("outside"))
        .hardlink("h2", "abs/canary")
        .finish();
    refused(a.apply(&tar), Refusal::HardlinkTargetMissing);
}

#[test]
fn hardlink_to_symlink_then_chmod_and_chown() {
    // CVE-2021-32760: metadata applied through a hardlink to a symlink.
    let a = Arena::new();
    let canary = a.abs("outside/canary");
    let f = Fields {
        mode: 0o4777,
        uid: 4242,
        gid: 4242,
        link: b"l",
        ..Fields::default()
    };
    let tar = Raw::new()
        .symlink("l", &canary)
        .pax(&[("SCHILY.xattr.user.evil", b"1"), ("mtime", b"1.5")])
        .entry(b"h", b'1', b"", &f)
        .symlink("rel", "../outside/canary")
        .entry(
            b"h2",
            b'1',
            b"",
            &Fields {
                link: b"rel",
                ..f.clone()
            },
        )
        .finish();
    a.apply(&tar).unwrap();
    use std::os::unix::fs::MetadataExt;
    let h = fs::symlink_metadata(a.root.join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_eq!(
        h.ino(),
        fs::symlink_metadata(a.root.join("l")).unwrap().ino()
    );
    assert_eq!(fs::read_link(a.root.join("h")).unwrap(), Path::new(&canary));
    // A later entry over the hardlink replaces it; it never writes through.
    let tar = Raw::new()
        .file_mode("h", b"new", 0o777)
        .dir_mode("h2", 0o777)
        .finish();
    a.apply(&tar).unwrap();
}

#[test]
fn metadata_of_symlink_entries_never_follows() {
    let a = Arena::new();
    let canary = a.abs("outside/canary");
    let f = Fields {
        mode: 0o777,
        uid: 1,
        gid: 1,
        mtime: 5,
        link: canary.as_bytes(),
        dev: (0, 0),
    };
    let tar = Raw::new()
        .pax(&[
            ("SCHILY.xattr.user.evil", b"1"),
            ("SCHILY.xattr.trusted.evil", b"1"),
        ])
        .entry(b"s", b'2', b"", &f)
        .finish();
    a.apply(&tar).unwrap();
}

#[test]
fn hardlink_to_directory() {
    let a = Arena::new();
    let tar = Raw::new().dir("d").hardlink("h", "d").finish();
    refused(a.apply(&tar), Refusal::HardlinkTargetKind);
    refused(
        a.apply(&Raw::new().hardlink("h", ".").finish()),
        Refusal::HardlinkTargetKind,
    );
    refused(
        a.apply(&Raw::new().hardlink("h", "missing").finish()),
        Refusal::HardlinkTargetMissing,
    );
}

#[test]
fn gnu_long_link_hardlink_out() {
    let a = Arena::new();
    let tar = Raw::new()
        .gnu_long(b'K', b"../outside/canary")
        .hardlink("h", "benign")
        .finish();
    refused(a.apply(&tar), Refusal::EscapesRoot);
}

#[test]
fn whiteout_dot_and_dotdot() {
    let a = Arena::new();
    for name in [".wh..", ".wh...", ".wh.", "a/.wh...", "./.wh.."] {
        refused(
            a.apply(&Raw::new().file(name, b"").finish()),
            Refusal::BadWhiteout,
        );
    }
}

#[test]
fn whiteout_climbing_out() {
    let a = Arena::new();
    for name in [
        "../.wh.canary",
        "../outside/.wh.canary",
        "a/../../outside/.wh.canary",
        "../.wh..wh..opq",
    ] {
        refused(
            a.apply(&Raw::new().file(name, b"").finish()),
            Refusal::EscapesRoot,
        );
    }
}

#[test]
fn whiteout_root_parent() {
    let a = Arena::with_root(|root| fs::write(root.join("keep"), b"k").unwrap());
    refused(
        a.apply(&Raw::new().file(".wh...", b"").finish()),
        Refusal::BadWhiteout,
    );
    // `.wh.root` at the top names `root/root`, not the root itself.
    a.apply(&Raw::new().file(".wh.root", b"").finish()).unwrap();
    assert!(a.root.join("keep").exists());
}

#[test]
fn whiteout_through_symlinked_parent() {
    let a = Arena::with_root(|root| symlink("../outside", root.join("pre")).unwrap());
    let tar = Raw::new()
        .symlink("link", "../outside")
        .file("link/.wh.canary", b"")
        .file("pre/.wh.canary", b"")
        .finish();
    let stats = a.apply(&tar).unwrap();
    assert_eq!(stats.whiteouts, 0);
    let tar = Raw::new()
        .symlink("abs", &a.abs("outside"))
        .file("abs/.wh.sub", b"")
        .file("abs/.wh.canary-link", b"")
        .finish();
    assert_eq!(a.apply(&tar).unwrap().whiteouts, 0);
}

#[test]
fn whiteout_through_symlink_acts_inside_the_root() {
    let a = Arena::with_root(|root| fs::write(root.join("canary"), b"inner").unwrap());
    let tar = Raw::new()
        .symlink("up", "../..")
        .file("up/.wh.canary", b"")
        .finish();
    let stats = a.apply(&tar).unwrap();
    assert_eq!(stats.whiteouts, 1);
    assert!(!a.root.join("canary").exists());
}

#[test]
fn opaque_marker_inside_symlinked_dir() {
    let a = Arena::with_root(|root| fs::write(root.join("lower"), b"l").unwrap());
    let tar = Raw::new()
        .symlink("link", "../outside")
        .file("link/.wh..wh..opq", b"")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    let tar = Raw::new()
        .symlink("abs", &a.abs("outside"))
        .file("abs/.wh..wh..opq", b"")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    // Pointing at the root, it empties the root and nothing else.
    let tar = Raw::new()
        .symlink("top", "/")
        .file("top/.wh..wh..opq", b"")
        .finish();
    a.apply(&tar).unwrap();
    assert!(!a.root.join("lower").exists());
}

#[test]
fn device_and_fifo_names_with_dotdot() {
    let a = Arena::new();
    let tars = [
        Raw::new().chardev("../outside/canary", 1, 3).finish(),
        Raw::new().chardev("a/../../outside/dev", 1, 3).finish(),
        Raw::new().fifo("../outside/canary").finish(),
        Raw::new().fifo("../canary").finish(),
        Raw::new()
            .entry(
                b"../outside/blk",
                b'4',
                b"",
                &Fields {
                    dev: (7, 0),
                    ..Fields::default()
                },
            )
            .finish(),
    ];
    for tar in tars {
        refused(a.apply(&tar), Refusal::EscapesRoot);
    }
}

#[test]
fn fifo_and_device_replacing_canary_through_symlink() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("o", "../outside")
        .fifo("o/canary")
        .finish();
    refused(a.apply(&tar), Refusal::DanglingParent);
    let tar = Raw::new()
        .symlink("c", &a.abs("outside/canary"))
        .chardev("c", 1, 3)
        .finish();
    a.apply(&tar).unwrap();
    // The symlink is replaced (by the device, or by nothing when an
    // unprivileged run skips devices), never written through.
    let c = fs::symlink_metadata(a.root.join("c"));
    assert!(c.map_or(true, |m| !m.file_type().is_symlink()));
    let tar = Raw::new()
        .symlink("p", &a.abs("outside/canary"))
        .fifo("p")
        .finish();
    a.apply(&tar).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(a.root.join("p"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn pax_path_override_pointing_out() {
    let a = Arena::new();
    let tar = Raw::new()
        .pax(&[("path", b"../outside/canary")])
        .file("benign", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::EscapesRoot);
    let canary = a.abs("outside/canary");
    let tar = Raw::new()
        .pax(&[("path", canary.as_bytes())])
        .file("benign", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::AbsolutePath);
    let tar = Raw::new()
        .pax(&[("linkpath", b"../outside/canary")])
        .hardlink("h", "benign")
        .finish();
    refused(a.apply(&tar), Refusal::EscapesRoot);
}

#[test]
fn gnu_long_name_pointing_out() {
    let a = Arena::new();
    // Longer than a ustar name, and one `..` more than it descends.
    let long = format!("{}{}outside/canary", "a/".repeat(60), "../".repeat(61));
    let tar = Raw::new()
        .gnu_long(b'L', long.as_bytes())
        .file("benign", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::EscapesRoot);
    let tar = Raw::new()
        .gnu_long(b'L', b"../outside/canary")
        .file("benign", b"pwned")
        .finish();
    refused(a.apply(&tar), Refusal::EscapesRoot);
}

#[test]
fn name_with_nul_byte() {
    let a = Arena::new();
    let tar = Raw::new()
        .pax(&[("path", b"ok\0/../../outside/canary")])
        .file("benign", b"x")
        .finish();
    refused(a.apply(&tar), Refusal::NulByte);
    let tar = Raw::new()
        .gnu_long(b'L', b"ok\0../../canary")
        .file("benign", b"x")
        .finish();
    refused(a.apply(&tar), Refusal::NulByte);
    let tar = Raw::new()
        .pax(&[("linkpath", b"t\0x")])
        .symlink("s", "t")
        .finish();
    refused(a.apply(&tar), Refusal::NulByte);
}

#[test]
fn huge_pax_header() {
    let a = Arena::new();
    let big = vec![b'a'; 2 << 20];
    let tar = Raw::new()
        .pax(&[("comment", &big)])
        .file("f", b"x")
        .finish();
    match a.apply(&tar) {
        Err(LayerError::LimitExceeded {
            what: Limit::PaxHeader,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A header that only claims to be huge is refused before reading.
    let mut claim = Raw::new().finish();
    claim.truncate(0);
    claim.extend_from_slice(&common::header(
        b"PaxHeader",
        b'x',
        1 << 32,
        &Fields::default(),
    ));
    match a.apply(&claim) {
        Err(LayerError::LimitExceeded {
            what: Limit::PaxHeader,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn decompression_bomb() {
    let a = Arena::new();
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&Raw::new().file("bomb", &zeros).finish());
    assert!(bomb.len() < 1 << 20, "the bomb compresses well");
    let opts = ApplyOptions {
        max_uncompressed: 16 << 20,
        ..ApplyOptions::default()
    };
    match a.apply_with(&bomb, &opts) {
        Err(LayerError::LimitExceeded {
            what: Limit::Uncompressed,
            limit,
        }) => assert_eq!(limit, 16 << 20),
        other => panic!("{other:?}"),
    }
    // Below the limit the same archive applies, and zeros stay sparse.
    let opts = ApplyOptions {
        max_uncompressed: 128 << 20,
        ..ApplyOptions::default()
    };
    a.apply_with(&bomb, &opts).unwrap();
    use std::os::unix::fs::MetadataExt;
    let md = fs::metadata(a.root.join("bomb")).unwrap();
    assert_eq!(md.len(), 64 << 20);
    assert!(md.blocks() * 512 < 1 << 20, "written sparse");
}

#[test]
fn entry_count_limit() {
    let a = Arena::new();
    let mut raw = Raw::new();
    for i in 0..100 {
        raw.file(&format!("f{i}"), b"");
    }
    let opts = ApplyOptions {
        max_entries: 10,
        ..ApplyOptions::default()
    };
    match a.apply_with(&raw.finish(), &opts) {
        Err(LayerError::LimitExceeded {
            what: Limit::Entries,
            limit: 10,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn symlink_loop_does_not_hang() {
    let a = Arena::new();
    let tar = Raw::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .symlink("self", "self")
        .file("a/x", b"x")
        .finish();
    let (tx, rx) = std::sync::mpsc::channel();
    let root = a.root.clone();
    std::thread::spawn(move || {
        tx.send(apply_layer(&root, &tar[..], &ApplyOptions::default()))
            .unwrap()
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("apply hung");
    refused(r, Refusal::SymlinkLoop);
    refused(
        a.apply(&Raw::new().file("self/x", b"x").finish()),
        Refusal::SymlinkLoop,
    );
    refused(
        a.apply(&Raw::new().hardlink("h", "a/x").finish()),
        Refusal::SymlinkLoop,
    );
}

#[test]
fn root_entry_and_empty_names() {
    let a = Arena::new();
    refused(
        a.apply(&Raw::new().file(".", b"x").finish()),
        Refusal::EmptyName,
    );
    refused(
        a.apply(&Raw::new().symlink("./", "../outside").finish()),
        Refusal::EmptyName,
    );
    refused(
        a.apply(&Raw::new().file("", b"x").finish()),
        Refusal::EmptyName,
    );
    // The root's own metadata may change; nothing else does.
    a.apply(&Raw::new().dir_mode("./", 0o700).finish()).unwrap();
    assert_eq!(
        fs::metadata(&a.root).unwrap().permissions().mode() & 0o7777,
        0o700
    );
}

#[test]
fn malformed_archives_fail_cleanly() {
    let a = Arena::new();
    let mut tar = Raw::new().file("f", b"data").finish();
    tar[148] = b'7';
    assert!(matches!(a.apply(&tar), Err(LayerError::Malformed { .. })));
    let tar = Raw::new().file("f", &[1u8; 2000]).finish();
    assert!(a.apply(&tar[..1024]).is_err());
    let tar = Raw::new()
        .entry(b"sparse", b'S', b"", &Fields::default())
        .finish();
    assert!(matches!(a.apply(&tar), Err(LayerError::Unsupported { .. })));
    assert!(fs::read_dir(a.outside()).unwrap().count() == 3);
}

#[test]
fn the_arena_notices_changes_outside() {
    let changes: [fn(&Path); 4] = [
        |out| fs::write(out.join("canary"), b"changed").unwrap(),
        |out| fs::set_permissions(out.join("canary"), fs::Permissions::from_mode(0o600)).unwrap(),
        |out| fs::write(out.join("new"), b"").unwrap(),
        |out| fs::write(out.join("../new"), b"").unwrap(),
    ];
    for change in changes {
        let a = Arena::new();
        change(&a.outside());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.check()));
        assert!(caught.is_err(), "a change outside went unnoticed");
    }
    let a = Arena::new();
    common::set_mtime(&a.outside().join("canary"), 5, 0);
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.check())).is_err());
}

#[test]
fn implied_directories_count_against_the_entry_limit() {
    let a = Arena::new();
    let deep = format!("{}f", "d/".repeat(1000));
    let opts = ApplyOptions {
        max_entries: 100,
        ..ApplyOptions::default()
    };
    match a.apply_with(
        &Raw::new()
            .pax(&[("path", deep.as_bytes())])
            .file("x", b"")
            .finish(),
        &opts,
    ) {
        Err(LayerError::LimitExceeded {
            what: Limit::Entries,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Within the limit, a deep path is created in linear time.
    let deep = deep.replace('d', "e");
    let start = std::time::Instant::now();
    let tar = Raw::new()
        .pax(&[("path", deep.as_bytes())])
        .file("x", b"deep")
        .finish();
    a.apply(&tar).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(fs::read(a.root.join(&deep)).unwrap(), b"deep");
}

#[test]
fn parent_that_is_not_a_directory() {
    let a = Arena::new();
    let tar = Raw::new()
        .file("f", b"file")
        .symlink("to-file", "f")
        .file("f/x", b"x")
        .finish();
    refused(a.apply(&tar), Refusal::ParentNotDirectory);
    refused(
        a.apply(&Raw::new().file("to-file/x", b"x").finish()),
        Refusal::ParentNotDirectory,
    );
}
