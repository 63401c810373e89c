//! Containers on the vfs driver, through the binary: create, ps, mount,
//! unmount, diff, commit, rm, export, device, `--size`, rmi of an image a
//! container uses, and recovery of what a killed command left.
#![allow(clippy::unwrap_used)]

mod engine_common;

use std::collections::BTreeMap;

use engine_common::*;
use serde_json::{json, Value};

/// Exit code for what the driver cannot do (src/exit.rs).
const UNSUPPORTED: i32 = 7;

/// The base image's files.
const BASE: &[(&str, &[u8])] = &[
    ("etc/a", b"alpha"),
    ("etc/b", b"beta"),
    ("d/x", b"x"),
    ("d/sub/y", b"y"),
    ("k", b"keep?"),
];

fn create(env: &Env, args: &[&str]) -> String {
    let mut a = vec!["create"];
    a.extend(args);
    let id = env.run(&a).ok().stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    id
}

fn mount(env: &Env, name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env.run(&["mount", name]).ok().stdout.trim())
}

fn containers_in_snapshots(env: &Env) -> Vec<String> {
    env.snapshots()
        .into_iter()
        .filter(|s| s.starts_with("container-"))
        .collect()
}

/// The changes the diff, commit and export tests make in a container of BASE.
fn change(env: &Env, name: &str) {
    let m = mount(env, name);
    std::fs::write(m.join("etc/a"), b"ALPHA, changed").unwrap();
    std::fs::write(m.join("etc/c"), b"new in etc").unwrap();
    std::fs::write(m.join("new"), b"brand new").unwrap();
    std::fs::remove_dir_all(m.join("d")).unwrap();
    std::fs::remove_file(m.join("k")).unwrap();
    env.run(&["unmount", name]).ok();
}

/// The files of BASE after `change`.
fn changed_files() -> BTreeMap<String, Vec<u8>> {
    [
        ("etc/a", &b"ALPHA, changed"[..]),
        ("etc/b", b"beta"),
        ("etc/c", b"new in etc"),
        ("new", b"brand new"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect()
}

fn export_files(env: &Env, name: &str) -> BTreeMap<String, Vec<u8>> {
    let out = env.out_path(&format!("{name}.tar"));
    env.run(&["export", "-o", &out, name]).ok();
    let files = tar_files(&std::fs::read(&out).unwrap());
    std::fs::remove_file(&out).unwrap();
    files
}

fn hashes(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), sha256_hex(v)))
        .collect()
}

#[test]
fn create_lists_and_refuses_a_taken_name() {
    let env = Env::new();
    let image = env.import(BASE, Some("base:1"));
    let id = create(&env, &["--name", "web", "base:1"]);
    assert!(env.snapshots().contains(&format!("container-{id}")));
    let rows = parse_table(&env.run(&["ps"]).ok().stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["CONTAINER ID"], id[..12]);
    assert_eq!(rows[0]["IMAGE"], "base:1");
    assert_eq!(rows[0]["NAMES"], "web");
    assert!(rows[0]["CREATED"].ends_with("ago"), "{:?}", rows[0]);
    assert!(!rows[0]["SIZE"].is_empty());
    // -a changes nothing (no container ever runs); -q prints short ids.
    assert_eq!(
        parse_table(&env.run(&["ps", "-a"]).ok().stdout).len(),
        1,
        "ps -a"
    );
    assert_eq!(env.run(&["ps", "-q"]).ok().lines(), [&id[..12]]);
    let j: Value =
        serde_json::from_str(env.run(&["ps", "--format", "json"]).ok().lines()[0]).unwrap();
    assert_eq!(j["ID"], id[..12]);
    assert_eq!(j["Names"], "web");
    assert_eq!(j["Image"], "base:1");

    // A taken name: conflict, nothing made.
    let before = env.snapshots();
    env.run(&["create", "--name", "web", "base:1"])
        .code(CONFLICT)
        .fails_with(&["web", "already in use", &id[..12]]);
    assert_eq!(env.snapshots(), before);
    // Bad names and unknown images.
    env.run(&["create", "--name", "a/b", "base:1"])
        .code(USAGE)
        .fails_with(&["invalid container name"]);
    env.run(&["create", "nope:1"]).code(NOT_FOUND);
    assert_eq!(env.snapshots(), before);

    // The default name; a container by image id shows the short id.
    let other = create(&env, &[short(&image)]);
    let rows = parse_table(&env.run(&["ps"]).ok().stdout);
    assert_eq!(rows.len(), 2);
    let row = rows
        .iter()
        .find(|r| r["CONTAINER ID"] == other[..12])
        .unwrap();
    assert_eq!(row["NAMES"], format!("c-{}", &other[..12]));
    assert_eq!(row["IMAGE"], short(&image));
    // Found by name, id and id prefix.
    for n in [
        format!("c-{}", &other[..12]),
        other.clone(),
        other[..8].to_string(),
    ] {
        assert_eq!(env.run(&["inspect", &n]).ok().json()[0]["Id"], other);
    }
    env.run(&["mount", "nope"]).code(NOT_FOUND);
}

#[test]
fn mount_unmount_keeps_files_and_rm_needs_force_when_mounted() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    let id = create(&env, &["--name", "box", "base:1"]);
    let m = mount(&env, "box");
    assert_eq!(std::fs::read(m.join("etc/a")).unwrap(), b"alpha");
    std::fs::write(m.join("hello"), b"world").unwrap();
    assert_eq!(env.inspect("box")["Mounted"], true);
    env.run(&["unmount", "box"]).ok();
    assert_eq!(env.inspect("box")["Mounted"], false);
    let m = mount(&env, "box");
    assert_eq!(std::fs::read(m.join("hello")).unwrap(), b"world");

    // Mounted: rm needs -f.
    env.run(&["rm", "box"])
        .code(CONFLICT)
        .fails_with(&["mounted", "-f"]);
    assert_eq!(containers_in_snapshots(&env), [format!("container-{id}")]);
    env.run(&["rm", "-f", "box"]).ok();
    assert!(containers_in_snapshots(&env).is_empty());
    assert!(env.run(&["ps", "-q"]).ok().stdout.is_empty());
    env.run(&["rm", "box"]).code(NOT_FOUND);

    // Not mounted: plain rm.
    create(&env, &["--name", "box2", "base:1"]);
    env.run(&["rm", "box2"]).ok();
    assert!(containers_in_snapshots(&env).is_empty());
}

#[test]
fn diff_lists_added_changed_and_deleted_paths() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    create(&env, &["--name", "web", "base:1"]);
    assert!(env.run(&["diff", "web"]).ok().stdout.is_empty());
    change(&env, "web");
    assert_eq!(
        env.run(&["diff", "web"]).ok().lines(),
        ["D /d", "C /etc", "C /etc/a", "A /etc/c", "D /k", "A /new"]
    );
    // diff leaves a mounted container mounted.
    let m = mount(&env, "web");
    env.run(&["diff", "web"]).ok();
    assert_eq!(std::fs::read(m.join("new")).unwrap(), b"brand new");
    assert_eq!(env.inspect("web")["Mounted"], true);
}

#[test]
fn commit_makes_a_child_image_that_saves_and_loads_with_the_changes() {
    let env = Env::new();
    let base = env.import(BASE, Some("base:1"));
    let cid = create(&env, &["--name", "web", "base:1"]);
    change(&env, "web");
    assert_eq!(hashes(&export_files(&env, "web")), hashes(&changed_files()));

    let r = env
        .run(&[
            "commit",
            "-m",
            "my change",
            "-a",
            "Jane <jane@example.com>",
            "-c",
            "ENV A=1",
            "-c",
            "LABEL role=web",
            "web",
            "app:2",
        ])
        .ok();
    let new = r.stdout.trim().to_string();
    assert!(new.starts_with("sha256:") && new.len() == 71, "{new}");
    assert_ne!(new, base);

    // history: the new step on top, with its comment; the base below.
    let rows = parse_table(&env.run(&["history", "app:2"]).ok().stdout);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["IMAGE"], short(&new));
    assert_eq!(rows[0]["COMMENT"], "my change");
    assert_eq!(rows[0]["CREATED BY"], "");
    assert_eq!(rows[1]["IMAGE"], short(&base));
    // inspect: parent, author, comment, changes, two layers.
    let v = env.inspect("app:2");
    assert_eq!(v["Id"], new);
    assert_eq!(v["Parent"], base);
    assert_eq!(v["Author"], "Jane <jane@example.com>");
    assert_eq!(v["Comment"], "my change");
    assert_eq!(v["RepoTags"], json!(["app:2"]));
    assert_eq!(v["Config"]["Env"], json!(["A=1"]));
    assert_eq!(v["Config"]["Labels"], json!({"role": "web"}));
    let layers = v["RootFS"]["Layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0], env.inspect("base:1")["RootFS"]["Layers"][0]);
    // The raw config: history entry with author, and the container.
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(
            env.root
                .join("engine/blobs/sha256")
                .join(&new["sha256:".len()..]),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["container"], cid);
    let last = cfg["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["author"], "Jane <jane@example.com>");
    assert_eq!(last["comment"], "my change");
    assert_eq!(last["created_by"], "");
    // images -a: the base is still listed (tagged), the new one too.
    let ids = env.ids();
    assert!(ids.contains(&new) && ids.contains(&base), "{ids:?}");
    // Untag the base: it becomes an intermediate image, shown with -a only.
    env.run(&["rmi", "base:1"]).ok();
    let plain = env.run(&["images", "-q", "--no-trunc"]).ok().stdout;
    assert!(!plain.contains(&base), "{plain}");
    assert!(env.ids().contains(&base));

    // save, then load into a fresh root: a container of the loaded image
    // has the container's files; deletions travelled as whiteouts.
    let out = env.out_path("app.tar");
    env.run(&["save", "-o", &out, "app:2"]).ok();
    let archive = std::fs::read(&out).unwrap();
    let top = layers[1].as_str().unwrap();
    let blob = read_tar(&archive)
        .into_iter()
        .find(|e| e.0 == format!("blobs/sha256/{}", &top["sha256:".len()..]))
        .expect("the new layer's blob is in the archive")
        .2;
    assert_eq!(digest(&blob), top, "the layer is stored uncompressed");
    let names: Vec<String> = read_tar(&blob).into_iter().map(|e| e.0).collect();
    for w in [".wh.d", ".wh.k"] {
        assert!(
            names.iter().any(|n| n.trim_start_matches("./") == w),
            "{w} in {names:?}"
        );
    }
    let fresh = Env::new();
    fresh.load(&archive);
    assert_eq!(fresh.inspect("app:2")["Id"], new);
    create(&fresh, &["--name", "again", "app:2"]);
    assert_eq!(
        hashes(&export_files(&fresh, "again")),
        hashes(&changed_files())
    );
}

#[test]
fn an_image_used_by_a_container_cannot_be_removed_until_the_container_is() {
    let env = Env::new();
    let id = env.import(BASE, Some("base:1"));
    create(&env, &["--name", "user", "base:1"]);
    env.run(&["rmi", "base:1"])
        .code(CONFLICT)
        .fails_with(&["container user"]);
    assert_eq!(env.tags(), ["base:1"], "a refused rmi untags nothing");
    env.run(&["rmi", &id])
        .code(CONFLICT)
        .fails_with(&["container user"]);
    // -f only untags.
    env.run(&["rmi", "-f", "base:1"]).ok();
    assert!(env.tags().is_empty());
    assert_eq!(env.ids(), std::slice::from_ref(&id));
    env.run(&["rmi", &id])
        .code(CONFLICT)
        .fails_with(&["container user"]);
    // The container still works; once removed, rmi frees everything.
    assert_eq!(
        hashes(&export_files(&env, "user")),
        hashes(
            &BASE
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect()
        )
    );
    env.run(&["rm", "user"]).ok();
    env.run(&["rmi", &id]).ok();
    assert!(env.ids().is_empty());
    assert!(env.blobs().is_empty(), "{:?}", env.blobs());
    assert!(env.snapshots().is_empty(), "{:?}", env.snapshots());
}

#[test]
fn committed_images_and_their_containers_free_everything_when_removed() {
    let env = Env::new();
    let base = env.import(BASE, Some("base:1"));
    create(&env, &["--name", "web", "base:1"]);
    change(&env, "web");
    let new = env
        .run(&["commit", "web", "app:1"])
        .ok()
        .stdout
        .trim()
        .to_string();
    create(&env, &["--name", "child", "app:1"]);
    // The base has a child image: deleting it by id is refused.
    env.run(&["rmi", &base])
        .code(CONFLICT)
        .fails_with(&["child images"]);
    env.run(&["rmi", "app:1"])
        .code(CONFLICT)
        .fails_with(&["container child"]);
    env.run(&["rm", "child", "web"]).ok();
    assert!(env.run(&["rmi", "app:1"]).ok().stdout.contains(&new));
    env.run(&["rmi", "base:1"]).ok();
    assert!(env.blobs().is_empty(), "{:?}", env.blobs());
    assert!(env.snapshots().is_empty(), "{:?}", env.snapshots());
}

#[test]
fn device_and_size_are_refused_on_vfs() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    create(&env, &["--name", "web", "base:1"]);
    env.run(&["device", "web"])
        .code(UNSUPPORTED)
        .fails_with(&["the vfs driver has no block devices"]);
    let before = env.snapshots();
    env.run(&["create", "--size", "20G", "--name", "big", "base:1"])
        .code(UNSUPPORTED)
        .fails_with(&["--size", "devmapper", "vfs driver has no block devices"]);
    env.run(&["create", "--size", "twenty", "base:1"])
        .code(USAGE);
    assert_eq!(env.snapshots(), before);
    assert_eq!(env.run(&["ps", "-q"]).ok().lines().len(), 1);
    // inspect names the snapshot on vfs.
    let v = env.inspect("web");
    assert_eq!(v["GraphDriver"]["Name"], "vfs");
    assert!(v["GraphDriver"]["Data"]["Snapshot"]
        .as_str()
        .unwrap()
        .starts_with("container-"));
}

#[test]
fn export_falls_back_to_snapshot_keys_and_reserved_keys_are_refused() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    env.run(&["snapshot", "prepare", "container-mine"])
        .code(USAGE)
        .fails_with(&["container-"]);
    env.run(&["snapshot", "prepare", "plain"]).ok();
    assert!(export_files(&env, "plain").is_empty());
    env.run(&["export", "-o", &env.out_path("x.tar"), "nope"])
        .code(NOT_FOUND);
}

#[test]
fn leftovers_of_killed_commands_are_cleaned_at_the_next_open() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    let id = create(&env, &["--name", "gone", "base:1"]);
    let layer = env
        .snapshots()
        .into_iter()
        .find(|s| s.starts_with("layer-"))
        .unwrap();
    // A create killed after its snapshot was made, before its record.
    {
        use thinsnap::snapshot::Snapshotter;
        let mut s =
            thinsnap::snapshot::vfs::VfsSnapshotter::open(&env.root.join("snapshots/vfs")).unwrap();
        s.prepare("container-0123456789abcdef", Some(&layer))
            .unwrap();
    }
    // An rm killed after it marked the record, before the snapshot went.
    let store = env.root.join("engine/store.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    v["containers"][&id]["removing"] = json!(true);
    std::fs::write(&store, serde_json::to_vec(&v).unwrap()).unwrap();

    assert!(env.run(&["ps", "-q"]).ok().stdout.is_empty());
    assert_eq!(env.snapshots(), [layer]);
    let v: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert!(v.get("containers").is_none(), "{v}");
    env.run(&["rmi", "base:1"]).ok();
    assert!(env.blobs().is_empty());
}

#[test]
fn a_store_written_before_containers_still_loads() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    let store = env.root.join("engine/store.json");
    let v: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert!(v.get("containers").is_none());
    create(&env, &["base:1"]);
    let v: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert_eq!(v["containers"].as_object().unwrap().len(), 1);
}

/// Runs a command that must die by SIGKILL at crash point `at`.
fn crash(env: &Env, at: &str, args: &[&str]) {
    let mut c = env.cmd(args);
    c.env("THINSNAP_CRASH_AT", at);
    let r = Env::exec(&mut c, None);
    assert_eq!(r.code, -1, "{at}: expected death by SIGKILL: {r:?}");
}

#[test]
fn kill_9_during_create_rm_and_commit_is_recovered_by_the_next_command() {
    let env = Env::new();
    env.import(BASE, Some("base:1"));
    let start = env.state();
    crash(
        &env,
        "container-create-prepared",
        &["create", "--name", "xx", "base:1"],
    );
    assert!(env.run(&["ps", "-q"]).ok().stdout.is_empty());
    assert_eq!(env.state(), start, "the half-made container is gone");

    create(&env, &["--name", "xx", "base:1"]);
    crash(&env, "container-rm-marked", &["rm", "xx"]);
    assert!(env.run(&["ps", "-q"]).ok().stdout.is_empty());
    assert_eq!(env.state(), start, "the marked removal was finished");

    create(&env, &["--name", "yy", "base:1"]);
    change(&env, "yy");
    let with_y = env.state();
    crash(&env, "container-commit-unsaved", &["commit", "yy", "app:1"]);
    assert_eq!(env.run(&["ps", "-q"]).ok().lines().len(), 1);
    assert_eq!(env.state(), with_y, "the half-made image is gone");
    assert!(env.tags() == ["base:1"]);
    // And the commit works afterwards.
    env.run(&["commit", "yy", "app:1"]).ok();
    assert_eq!(env.tags(), ["app:1", "base:1"]);
}
