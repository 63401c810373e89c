//! `thinsnap snapshot ...` through the built binary on a vfs root:
//! prepare, view, commit, rm, ls, stat, mounts and usage, containerd's
//! rules and the exit code of every refusal; snapshot commands follow the
//! root's driver like the image commands do, and keep off the image
//! store's own snapshots.
#![allow(clippy::unwrap_used)]

mod engine_common;

use std::path::PathBuf;

use engine_common::*;
use serde_json::{json, Value};

fn source(env: &Env, key: &str) -> PathBuf {
    let m = env.run(&["snapshot", "mounts", key]).ok().json();
    PathBuf::from(m[0]["source"].as_str().unwrap())
}

#[test]
fn prepare_fill_commit_view_and_stat() {
    let env = Env::new();
    let r = env.run(&["snapshot", "prepare", "k1"]).ok();
    assert_eq!(r.stdout, "k1\n");
    let m = env.run(&["snapshot", "mounts", "k1"]).ok().json();
    assert_eq!(m.as_array().unwrap().len(), 1);
    assert_eq!(m[0]["type"], "bind");
    assert_eq!(m[0]["options"], json!(["rbind", "rw"]));
    let dir = PathBuf::from(m[0]["source"].as_str().unwrap());
    assert!(dir.starts_with(&env.root), "{dir:?} is under the root");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "empty");
    std::fs::write(dir.join("data"), vec![1u8; 64 * 1024]).unwrap();
    std::fs::create_dir(dir.join("d")).unwrap();

    let st = env.run(&["snapshot", "stat", "k1"]).ok().json();
    assert_eq!(st["name"], "k1");
    assert_eq!(st["kind"], "active");
    assert_eq!(st["parent"], Value::Null);
    assert!(chrono::DateTime::parse_from_rfc3339(st["created"].as_str().unwrap()).is_ok());

    env.run(&["snapshot", "commit", "base", "k1"]).ok();
    // The key is consumed.
    env.run(&["snapshot", "stat", "k1"]).code(NOT_FOUND);
    let st = env.run(&["snapshot", "stat", "base"]).ok().json();
    assert_eq!(st["kind"], "committed");
    // A committed snapshot has no mounts.
    env.run(&["snapshot", "mounts", "base"])
        .code(CONFLICT)
        .fails_with(&["committed"]);

    // A child sees the parent's files; a view is read-only.
    env.run(&["snapshot", "prepare", "child", "base"]).ok();
    let cdir = source(&env, "child");
    assert_eq!(
        std::fs::read(cdir.join("data")).unwrap(),
        vec![1u8; 64 * 1024]
    );
    assert!(cdir.join("d").is_dir());
    let st = env.run(&["snapshot", "stat", "child"]).ok().json();
    assert_eq!(st["parent"], "base");
    env.run(&["snapshot", "view", "look", "base"]).ok();
    let m = env.run(&["snapshot", "mounts", "look"]).ok().json();
    assert_eq!(m[0]["options"], json!(["rbind", "ro"]));
    let vdir = PathBuf::from(m[0]["source"].as_str().unwrap());
    assert!(vdir.join("data").is_file());
    let st = env.run(&["snapshot", "stat", "look"]).ok().json();
    assert_eq!(st["kind"], "view");
    assert_eq!(st["parent"], "base");

    // ls: parents before children, as a table and as JSON.
    let rows = parse_table(&env.run(&["snapshot", "ls"]).ok().stdout);
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r["KEY"].clone(), r["PARENT"].clone(), r["KIND"].clone()))
        .collect();
    assert_eq!(got[0], ("base".into(), "-".into(), "committed".into()));
    assert_eq!(got.len(), 3);
    assert!(got.contains(&("child".into(), "base".into(), "active".into())));
    assert!(got.contains(&("look".into(), "base".into(), "view".into())));
    let js = env.run(&["snapshot", "ls", "--json"]).ok().json();
    assert_eq!(js.as_array().unwrap().len(), 3);
    assert_eq!(js[0]["name"], "base");

    // usage: bytes and inodes, as a table and as JSON.
    let u = env
        .run(&["snapshot", "usage", "base", "--json"])
        .ok()
        .json();
    assert!(u["size"].as_u64().unwrap() >= 64 * 1024, "{u}");
    assert_eq!(u["inodes"], 3, "the root, data and d");
    let rows = parse_table(&env.run(&["snapshot", "usage", "base"]).ok().stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["INODES"], "3");
    assert!(!rows[0]["SIZE"].is_empty());
    let u = env
        .run(&["snapshot", "usage", "child", "--json"])
        .ok()
        .json();
    assert_eq!(u["inodes"], 3);

    // rm: children first.
    env.run(&["snapshot", "rm", "base"])
        .code(CONFLICT)
        .fails_with(&["base"]);
    assert_eq!(env.run(&["snapshot", "rm", "child"]).ok().stdout, "child\n");
    env.run(&["snapshot", "rm", "look"]).ok();
    env.run(&["snapshot", "rm", "base"]).ok();
    assert!(env.snapshots().is_empty());
    assert!(!dir.exists() && !cdir.exists() && !vdir.exists());
}

#[test]
fn refusals_and_their_exit_codes() {
    let env = Env::new();
    env.run(&["snapshot", "prepare", "a"]).ok();
    env.run(&["snapshot", "commit", "c", "a"]).ok();
    env.run(&["snapshot", "prepare", "act", "c"]).ok();
    env.run(&["snapshot", "view", "v", "c"]).ok();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        // Exists.
        (vec!["prepare", "act"], CONFLICT),
        (vec!["prepare", "c"], CONFLICT),
        (vec!["view", "v", "c"], CONFLICT),
        (vec!["commit", "c", "act"], CONFLICT),
        // Missing.
        (vec!["prepare", "x", "nosuch"], NOT_FOUND),
        (vec!["view", "x", "nosuch"], NOT_FOUND),
        (vec!["commit", "x", "nosuch"], NOT_FOUND),
        (vec!["rm", "nosuch"], NOT_FOUND),
        (vec!["stat", "nosuch"], NOT_FOUND),
        (vec!["mounts", "nosuch"], NOT_FOUND),
        (vec!["usage", "nosuch"], NOT_FOUND),
        // Parents must be committed; views and committed ones cannot be committed.
        (vec!["prepare", "x", "act"], CONFLICT),
        (vec!["prepare", "x", "v"], CONFLICT),
        (vec!["view", "x", "act"], CONFLICT),
        (vec!["commit", "x", "v"], CONFLICT),
        (vec!["commit", "x", "c"], CONFLICT),
        // A committed snapshot with children.
        (vec!["rm", "c"], CONFLICT),
        // Bad keys.
        (vec!["prepare", ""], USAGE),
        (vec!["commit", "", "act"], USAGE),
        // Missing arguments.
        (vec!["view", "x"], USAGE),
        (vec!["commit", "x"], USAGE),
        (vec!["prepare"], USAGE),
    ];
    let long = "k".repeat(256);
    let mut cases = cases;
    cases.push((vec!["prepare", long.as_str()], USAGE));
    let before = env.run(&["snapshot", "ls", "--json"]).ok().stdout;
    for (args, code) in cases {
        let mut a = vec!["snapshot"];
        a.extend(&args);
        let r = env.run(&a);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
        if code != USAGE || !args.iter().any(|x| x.is_empty()) {
            assert!(r.stderr.starts_with("error:"), "{args:?}: {}", r.stderr);
        }
    }
    assert_eq!(env.run(&["snapshot", "ls", "--json"]).ok().stdout, before);
}

#[test]
fn image_layers_are_snapshots_but_stay_the_image_stores() {
    let env = Env::new();
    env.import(&[("etc/os", b"layered")], Some("img:1"));
    let layer = env.inspect("img:1")["GraphDriver"]["Data"]["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(env.snapshots(), [layer.as_str()]);
    let st = env.run(&["snapshot", "stat", &layer]).ok().json();
    assert_eq!(st["kind"], "committed");
    // A container-like snapshot on an image layer.
    env.run(&["snapshot", "prepare", "ctr", &layer]).ok();
    assert_eq!(
        std::fs::read(source(&env, "ctr").join("etc/os")).unwrap(),
        b"layered"
    );
    // The layer cannot be removed behind the image store's back...
    env.run(&["snapshot", "rm", "ctr"]).ok();
    env.run(&["snapshot", "rm", &layer])
        .code(CONFLICT)
        .fails_with(&["rmi"]);
    assert_eq!(env.snapshots(), [layer.as_str()]);
    // ...and the store's names cannot be taken (it would remove them).
    for key in ["layer-mine", "work-1"] {
        env.run(&["snapshot", "prepare", key])
            .code(USAGE)
            .fails_with(&[key]);
    }
    env.run(&["snapshot", "prepare", "k"]).ok();
    env.run(&["snapshot", "commit", "layer-x", "k"]).code(USAGE);
    env.run(&["snapshot", "view", "work-v", &layer]).code(USAGE);
    env.run(&["snapshot", "commit", "mine", "k"]).ok();
    // They survive any engine command.
    env.run(&["images"]).ok();
    let mut want = vec![layer.clone(), "mine".to_string()];
    want.sort();
    assert_eq!(env.snapshots(), want);
    // rmi removes the layer snapshot.
    env.run(&["rmi", "img:1"]).ok();
    assert_eq!(env.snapshots(), ["mine"]);
}

#[test]
fn snapshot_commands_follow_the_roots_driver() {
    let env = Env::new();
    env.run(&["snapshot", "prepare", "k"]).ok();
    // The root is vfs now: devmapper is refused, by flag or by default.
    for args in [
        vec!["--driver", "devmapper", "snapshot", "ls"],
        vec!["snapshot", "ls"],
        vec!["--driver", "devmapper", "snapshot", "prepare", "other"],
    ] {
        let r = Env::exec(&mut env.bare(&args), None);
        assert_eq!(r.code, CONFLICT, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("vfs"), "{}", r.stderr);
    }
    assert_eq!(env.snapshots(), ["k"]);
    // A fresh root with devmapper and no pool: the hint, and nothing made for vfs.
    let fresh = Env::new();
    let r = Env::exec(
        &mut fresh.bare(&["--driver", "devmapper", "snapshot", "ls"]),
        None,
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("thinsnap pool create"), "{}", r.stderr);
    assert!(r.stderr.contains("--driver vfs"), "{}", r.stderr);
    assert!(!fresh.root.join("snapshots/vfs").exists());
    fresh.run(&["snapshot", "prepare", "k"]).ok();
}

#[test]
fn rmi_refuses_an_image_whose_layers_carry_snapshots() {
    let env = Env::new();
    let base = layer("base", "f", b"base");
    let a = image(&[base.clone(), layer("a", "f", b"a")], T0, &["used:1"]);
    let b = image(std::slice::from_ref(&base), T0, &["other:1"]);
    env.load(&docker_archive(&[a.clone(), b.clone()]));
    let top = env.inspect("used:1")["GraphDriver"]["Data"]["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let base_snap = format!("layer-{}", sha256_hex(&base));
    env.run(&["snapshot", "prepare", "ctr", &top]).ok();
    env.run(&["snapshot", "view", "look", &base_snap]).ok();
    let before = env.state();
    // By name and by id: refused, naming the snapshot.
    env.run(&["rmi", "used:1"])
        .code(CONFLICT)
        .fails_with(&["ctr", "-f"]);
    env.run(&["rmi", &a.id()])
        .code(CONFLICT)
        .fails_with(&["ctr"]);
    assert_eq!(env.state(), before);
    // The base layer is shared with `other`: a view on it does not block
    // removing `other` (the layer stays for `used`).
    let r = env.run(&["rmi", "other:1"]).ok();
    assert_eq!(
        r.lines(),
        [
            "Untagged: other:1".to_string(),
            format!("Deleted: {}", b.id())
        ]
    );
    // -f only untags; the image stays (dangling) and the root stays usable.
    let r = env.run(&["rmi", "-f", "used:1"]).ok();
    assert_eq!(r.lines(), ["Untagged: used:1"]);
    assert_eq!(env.ids(), [a.id()]);
    env.run(&["images"]).ok();
    let mut snaps = env.snapshots();
    snaps.sort();
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    // Once the snapshots are gone, the image can go, and everything with it.
    env.run(&["rmi", &a.id()]).code(CONFLICT);
    env.run(&["snapshot", "rm", "ctr"]).ok();
    env.run(&["rmi", &a.id()])
        .code(CONFLICT)
        .fails_with(&["look"]);
    env.run(&["snapshot", "rm", "look"]).ok();
    env.run(&["rmi", &a.id()]).ok();
    assert!(env.snapshots().is_empty());
    assert!(env.blobs().is_empty());
}
