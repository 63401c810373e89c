//! Cases on the snapshotter's rules: kinds, keys and names, parents,
//! removal, stat, walk and usage.

use std::fs;
use std::io::Write;

use super::{put, Harness, Want};
use crate::snapshot::Kind;

/// Prepare, commit, view and a child, and the kinds, parents and mounts
/// they report.
pub(super) fn basics(h: &mut Harness<'_>) {
    let mounts = h.prepare("base-active", None);
    let got = h.ok(h.s.mounts("base-active"), "mounts of base-active");
    h.eq(got, mounts, "mounts returned by prepare and by mounts");
    let info = h.stat("base-active");
    h.eq(
        (info.name.as_str(), info.parent, info.kind),
        ("base-active", None, Kind::Active),
        "stat",
    );
    h.with_fs("base-active", |root| put(root, "hello.txt", "hello"));
    h.commit("base", "base-active");
    let info = h.stat("base");
    h.eq(
        (info.kind, info.parent),
        (Kind::Committed, None),
        "stat of the commit",
    );
    h.refused(Want::Precondition, "mounts of a committed snapshot", |s| {
        s.mounts("base")
    });
    h.expect_files("base", &[("hello.txt", Some("hello"))]);

    h.view("view", "base");
    let info = h.stat("view");
    h.eq(
        (info.kind, info.parent.as_deref()),
        (Kind::View, Some("base")),
        "stat of the view",
    );
    h.expect_files("view", &[("hello.txt", Some("hello"))]);

    h.prepare("child", Some("base"));
    let info = h.stat("child");
    h.eq(
        (info.kind, info.parent.as_deref()),
        (Kind::Active, Some("base")),
        "stat of the child",
    );
    h.expect_files("child", &[("hello.txt", Some("hello"))]);
}

/// A committed snapshot with children (active, committed or views) cannot
/// be removed; once the children are gone, it can.
pub(super) fn remove_rules(h: &mut Harness<'_>) {
    h.layer("base", None, |root| put(root, "f", "base"));
    h.layer("mid", Some("base"), |root| put(root, "f", "mid"));
    h.prepare("leaf", Some("mid"));
    h.view("v", "mid");
    h.refused(Want::Precondition, "remove base, which has a child", |s| {
        s.remove("base")
    });
    h.refused(Want::Precondition, "remove mid, which has children", |s| {
        s.remove("mid")
    });
    h.remove("leaf");
    h.refused(Want::NotFound, "stat of a removed snapshot", |s| {
        s.stat("leaf")
    });
    h.refused(Want::NotFound, "remove twice", |s| s.remove("leaf"));
    h.refused(
        Want::Precondition,
        "remove mid, which still has a view",
        |s| s.remove("mid"),
    );
    h.remove("v");
    h.remove("mid");
    h.expect_files("base", &[("f", Some("base"))]);
    h.remove("base");
    h.expect_walk(&[]);
    h.refused(Want::NotFound, "remove a missing snapshot", |s| {
        s.remove("missing")
    });
}

/// Views mount read-only, and whatever is written through a view's path
/// (if the driver lets it) never reaches the parent. A view can be neither
/// committed nor a parent.
pub(super) fn views_are_read_only(h: &mut Harness<'_>) {
    h.layer("base", None, |root| put(root, "f", "orig"));
    h.view("v", "base");
    h.with_fs("v", |root| {
        // Refusing the writes (a read-only mount) is as good as keeping
        // them to the view.
        let _ = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(root.join("f"))
            .and_then(|mut f| f.write_all(b"changed"));
        let _ = fs::write(root.join("new"), "new");
        Ok(())
    });
    h.expect_files("base", &[("f", Some("orig")), ("new", None)]);
    h.prepare("child", Some("base"));
    h.expect_files("child", &[("f", Some("orig")), ("new", None)]);
    h.refused(Want::Precondition, "commit a view", |s| {
        s.commit("from-view", "v")
    });
    h.refused(Want::Precondition, "prepare on a view", |s| {
        s.prepare("on-view", Some("v"))
    });
    h.eq(
        h.stat("v").kind,
        Kind::View,
        "the view after the refused commit",
    );
}

/// A commit consumes its key: the key is gone (and free for reuse), the
/// name is committed with the same parent.
pub(super) fn commit_consumes_key(h: &mut Harness<'_>) {
    h.layer("base", None, |root| put(root, "f", "base"));
    h.prepare("k", Some("base"));
    h.with_fs("k", |root| put(root, "g", "k"));
    h.commit("c1", "k");
    h.refused(Want::NotFound, "stat of a committed key", |s| s.stat("k"));
    h.refused(Want::NotFound, "mounts of a committed key", |s| {
        s.mounts("k")
    });
    h.refused(Want::NotFound, "commit a consumed key", |s| {
        s.commit("c2", "k")
    });
    h.refused(Want::NotFound, "remove a consumed key", |s| s.remove("k"));
    let info = h.stat("c1");
    h.eq(
        (info.kind, info.parent.as_deref()),
        (Kind::Committed, Some("base")),
        "stat of the commit",
    );
    h.expect_files("c1", &[("f", Some("base")), ("g", Some("k"))]);
    h.refused(Want::Precondition, "commit a committed snapshot", |s| {
        s.commit("c3", "c1")
    });
    h.prepare("k", Some("c1"));
    h.expect_files("k", &[("g", Some("k"))]);
    h.commit("c2", "k");
    h.eq(
        h.stat("c2").parent.as_deref(),
        Some("c1"),
        "parent of the reused key's commit",
    );
}

/// Keys and names share one namespace: every create or commit onto a
/// taken key or name is refused, and changes nothing.
pub(super) fn name_collisions(h: &mut Harness<'_>) {
    h.layer("base", None, |_| Ok(()));
    h.prepare("a", None);
    h.prepare("other", None);
    h.refused(Want::Exists, "prepare an existing key", |s| {
        s.prepare("a", None)
    });
    h.refused(Want::Exists, "view with an active key", |s| {
        s.view("a", "base")
    });
    h.refused(Want::Exists, "view with a committed name", |s| {
        s.view("base", "base")
    });
    h.refused(Want::Exists, "prepare with a committed name", |s| {
        s.prepare("base", None)
    });
    h.refused(Want::Exists, "commit to a committed name", |s| {
        s.commit("base", "a")
    });
    h.refused(Want::Exists, "commit to an active key", |s| {
        s.commit("other", "a")
    });
    h.refused(Want::Exists, "commit to its own key", |s| {
        s.commit("a", "a")
    });
    h.eq(
        h.stat("a").kind,
        Kind::Active,
        "the key after refused commits",
    );
    h.expect_walk(&[
        ("base", Kind::Committed),
        ("a", Kind::Active),
        ("other", Kind::Active),
    ]);
}

/// Empty keys, keys over 255 bytes and keys holding NUL are refused; any
/// other string is a key, whatever characters it holds (a driver that
/// makes paths of keys fails here).
pub(super) fn key_rules(h: &mut Harness<'_>) {
    h.layer("base", None, |_| Ok(()));
    h.prepare("a", None);
    let long = "x".repeat(256);
    for bad in ["", long.as_str(), "nul\0inside"] {
        h.refused(Want::InvalidKey, format_args!("prepare {bad:?}"), |s| {
            s.prepare(bad, None)
        });
        h.refused(Want::InvalidKey, format_args!("view {bad:?}"), |s| {
            s.view(bad, "base")
        });
        h.refused(Want::InvalidKey, format_args!("commit as {bad:?}"), |s| {
            s.commit(bad, "a")
        });
    }
    let max = "m".repeat(255);
    let odd = [
        max.as_str(),
        "with/slash",
        "../dotdot",
        ".",
        "sp ace",
        "ünïcode",
        "-dash",
    ];
    for (i, key) in odd.iter().enumerate() {
        h.prepare(key, Some("base"));
        h.with_fs(key, |root| put(root, "which", &i.to_string()));
    }
    for (i, key) in odd.iter().enumerate() {
        h.expect_files(key, &[("which", Some(i.to_string().as_str()))]);
        let name = format!("{key}/committed");
        let name = if name.len() > 255 {
            "n".repeat(255)
        } else {
            name
        };
        h.commit(&name, key);
        h.eq(
            h.stat(&name).kind,
            Kind::Committed,
            format_args!("stat {name:?}"),
        );
    }
}

/// Parents must exist and be committed.
pub(super) fn parent_must_be_committed(h: &mut Harness<'_>) {
    h.refused(Want::NotFound, "prepare on a missing parent", |s| {
        s.prepare("x", Some("missing"))
    });
    h.refused(Want::NotFound, "view of a missing parent", |s| {
        s.view("x", "missing")
    });
    h.prepare("act", None);
    h.refused(Want::Precondition, "prepare on an active snapshot", |s| {
        s.prepare("x", Some("act"))
    });
    h.refused(Want::Precondition, "view of an active snapshot", |s| {
        s.view("x", "act")
    });
    h.commit("base", "act");
    h.view("v", "base");
    h.refused(Want::Precondition, "prepare on a view", |s| {
        s.prepare("x", Some("v"))
    });
    h.refused(Want::Precondition, "view of a view", |s| s.view("x", "v"));
    h.refused(Want::NotFound, "stat after refused creates", |s| {
        s.stat("x")
    });
    h.expect_walk(&[("base", Kind::Committed), ("v", Kind::View)]);
}

/// Stat and walk agree; usage grows with what is written.
pub(super) fn stat_walk_usage(h: &mut Harness<'_>) {
    h.layer("base", None, |root| put(root, "f", "base"));
    h.layer("mid", Some("base"), |root| put(root, "g", "mid"));
    h.view("v", "mid");
    h.prepare("top", Some("mid"));
    let info = h.stat("v");
    h.eq(
        (info.name.as_str(), info.parent.as_deref(), info.kind),
        ("v", Some("mid"), Kind::View),
        "stat",
    );
    h.check(
        chrono::DateTime::parse_from_rfc3339(&info.created).is_ok(),
        format_args!("created is not RFC 3339: {:?}", info.created),
    );
    h.expect_walk(&[
        ("base", Kind::Committed),
        ("mid", Kind::Committed),
        ("v", Kind::View),
        ("top", Kind::Active),
    ]);
    for info in h.walk() {
        let stat = h.stat(&info.name);
        h.eq(&stat, &info, "walk and stat");
    }
    let before = h.usage("top");
    h.with_fs("top", |root| {
        let mut f = fs::File::create(root.join("big"))?;
        f.write_all(&vec![0x5a; 256 << 10])?;
        // So that drivers below a page cache (block devices) see it.
        f.sync_all()
    });
    let after = h.usage("top");
    h.check(
        after.size >= before.size + (256 << 10) && after.inodes > before.inodes,
        format_args!("usage after writing a 256 KiB file: {before:?} -> {after:?}"),
    );
    h.refused(Want::NotFound, "usage of a missing snapshot", |s| {
        s.usage("missing")
    });
}
