//! `import`, `export` and `--driver` through the built binary on a vfs
//! root. Inputs are built in code so the tests know every byte, id and
//! digest. (`images`/`tag` are in engine_images.rs, `rmi`/`history`/
//! `inspect` in engine_rmi.rs, `save`/`load` in engine_load*.rs, `snapshot`
//! in engine_snapshot.rs.)
#![allow(clippy::unwrap_used)]

mod engine_common;

use engine_common::*;
use serde_json::json;

// ---------------------------------------------------------------- import

#[test]
fn import_plain_gzip_zstd_file_and_stdin() {
    let env = Env::new();
    let tree = |i: usize| {
        rootfs(&[
            ("etc/hello", b"hello\n"),
            ("bin/tool", format!("#{i}").as_bytes()),
        ])
    };
    for (i, (name, blob)) in [
        ("plain.tar", tree(0)),
        ("r.tar.gz", gzip(&tree(1))),
        ("r.tar.zst", zstd(&tree(2))),
    ]
    .into_iter()
    .enumerate()
    {
        let plain = tree(i);
        let diff_id = digest(&plain);
        let path = env.input(name, &blob);
        let tag = format!("imp:{i}");
        let id = env
            .run(&["import", &path, &tag])
            .ok()
            .stdout
            .trim()
            .to_string();
        let v = env.inspect(&tag);
        assert_eq!(v["Id"], id);
        assert_eq!(v["RootFS"]["Layers"], json!([diff_id]), "{name}");
        assert_eq!(v["RootFS"]["Type"], "layers");
        assert_eq!(v["Comment"], format!("Imported from {path}"));
        assert_eq!(v["Size"], plain.len(), "uncompressed size");
        // The tarball is kept as the layer's blob, exactly as given.
        assert!(
            env.blobs().contains(&sha256_hex(&blob)),
            "{name}: blob kept"
        );
        // The files are in the layer's snapshot.
        let snap = v["GraphDriver"]["Data"]["Snapshot"].as_str().unwrap();
        let out = env.out_path("export.tar");
        env.run(&["export", "-o", &out, snap]).ok();
        let files = tar_files(&std::fs::read(&out).unwrap());
        assert_eq!(files["etc/hello"], b"hello\n");
        assert_eq!(files["bin/tool"], format!("#{i}").as_bytes());
    }
    // From stdin, untagged, the same tree as the gzip one: its layer is reused.
    let plain = tree(1);
    let diff_id = digest(&plain);
    let id = env
        .run_stdin(&["import", "-"], &gzip(&plain))
        .ok()
        .stdout
        .trim()
        .to_string();
    let v = env.inspect(&id);
    assert_eq!(v["RepoTags"], json!([]));
    assert_eq!(v["Comment"], "Imported from -");
    assert_eq!(v["RootFS"]["Layers"], json!([diff_id]));
    // Four images (created at different times), three layers.
    assert_eq!(env.ids().len(), 4);
    let mut layers: Vec<String> = (0..3)
        .map(|i| format!("layer-{}", sha256_hex(&tree(i))))
        .collect();
    layers.sort();
    assert_eq!(env.snapshots(), layers);
    let rows = parse_table(&env.run(&["images"]).ok().stdout);
    let untagged: Vec<_> = rows.iter().filter(|r| r["TAG"] == "<none>").collect();
    assert_eq!(untagged.len(), 1);
    assert_eq!(untagged[0]["REPOSITORY"], "<none>");
    assert_eq!(untagged[0]["IMAGE ID"], short(&id));
    env.assert_blobs_verified();
}

#[test]
fn import_applies_every_change_instruction() {
    let env = Env::new();
    let path = env.input("r.tar", &rootfs(&[("a", b"a")]));
    env.run(&[
        "import",
        "-c",
        r#"CMD ["nginx", "-g", "daemon off;"]"#,
        "-c",
        "ENTRYPOINT /entry.sh",
        "-c",
        "ENV PATH=/usr/bin MODE=\"a b\"",
        "-c",
        "EXPOSE 80 53/udp",
        "-c",
        "LABEL version=1.2 team=\"core x\"",
        "-c",
        "USER nobody:nogroup",
        "-c",
        r#"VOLUME ["/data", "/logs"]"#,
        "-c",
        "WORKDIR /srv",
        "-c",
        "ONBUILD RUN make",
        &path,
        "web:1",
    ])
    .ok();
    let c = &env.inspect("web:1")["Config"];
    assert_eq!(c["Cmd"], json!(["nginx", "-g", "daemon off;"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/entry.sh"]));
    assert_eq!(c["Env"], json!(["PATH=/usr/bin", "MODE=a b"]));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Labels"], json!({"version": "1.2", "team": "core x"}));
    assert_eq!(c["User"], "nobody:nogroup");
    assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["OnBuild"], json!(["RUN make"]));
    // Labels from -c are what label filters see.
    let q = env
        .run(&["images", "-q", "--filter", "label=team=core x"])
        .ok();
    assert_eq!(q.lines().len(), 1);
}

#[test]
fn import_message_shows_in_inspect_and_history() {
    let env = Env::new();
    let path = env.input("r.tar", &rootfs(&[("a", b"a")]));
    let id = env
        .run(&["import", "-m", "first cut of the base", &path])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(env.inspect(&id)["Comment"], "first cut of the base");
    let rows = parse_table(&env.run(&["history", &id]).ok().stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["COMMENT"], "first cut of the base");
    assert_eq!(rows[0]["IMAGE"], short(&id));
    assert_eq!(
        rows[0]["SIZE"],
        thinsnap::engine::human::size(rootfs(&[("a", b"a")]).len() as u64)
    );
}

#[test]
fn import_with_a_bad_change_or_name_stores_nothing() {
    let env = Env::new();
    env.import(&[("keep", b"1")], Some("keep:1"));
    let before = env.state();
    let path = env.input("r.tar", &rootfs(&[("new", b"2")]));
    for (args, words) in [
        (vec!["-c", "RUN make"], vec!["RUN"]),
        (vec!["-c", "EXPOSE http"], vec!["EXPOSE"]),
        (vec!["-c", "CMD [\"open\""], vec!["CMD"]),
        (vec!["-c", "ONBUILD FROM x"], vec!["ONBUILD"]),
        (vec!["-c", "FROB x"], vec!["FROB"]),
    ] {
        let mut a = vec!["import"];
        a.extend(args);
        a.extend([path.as_str(), "new:1"]);
        env.run(&a).code(USAGE).fails_with(&words);
        assert_eq!(env.state(), before, "{a:?} changed the store");
    }
    for bad in ["New:1", "new:-x", "new@sha256:abc"] {
        env.run(&["import", &path, bad]).code(USAGE);
        assert_eq!(env.state(), before, "{bad} changed the store");
    }
    env.run(&["import", "/nonexistent/r.tar"])
        .fails_with(&["/nonexistent/r.tar"]);
    assert_eq!(env.state(), before);
}

// ---------------------------------------------------------------- export

#[test]
fn export_a_snapshot_and_a_missing_name() {
    let env = Env::new();
    env.run(&["snapshot", "prepare", "base-key"]).ok();
    let src = |key: &str| -> std::path::PathBuf {
        let m = env.run(&["snapshot", "mounts", key]).ok().json();
        std::path::PathBuf::from(m[0]["source"].as_str().unwrap())
    };
    let dir = src("base-key");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/conf"), b"v=1\n").unwrap();
    std::fs::write(dir.join("gone"), b"bye").unwrap();
    env.run(&["snapshot", "commit", "base", "base-key"]).ok();
    env.run(&["snapshot", "prepare", "ctr", "base"]).ok();
    let dir = src("ctr");
    std::fs::write(dir.join("etc/conf"), b"v=2\n").unwrap();
    std::fs::remove_file(dir.join("gone")).unwrap();
    std::os::unix::fs::symlink("etc/conf", dir.join("link")).unwrap();
    let out = env.out_path("ctr.tar");
    env.run(&["export", "-o", &out, "ctr"]).ok();
    let bytes = std::fs::read(&out).unwrap();
    let entries = read_tar(&bytes);
    let files = tar_files(&bytes);
    assert_eq!(files.len(), 1);
    assert_eq!(files["etc/conf"], b"v=2\n");
    assert!(entries
        .iter()
        .any(|e| e.0.trim_start_matches("./") == "link" && e.1 == 'l'));
    assert!(!entries.iter().any(|e| e.0.contains("wh.")), "a flat tree");
    // To stdout: the same bytes (deterministic).
    let r = env.run(&["export", "ctr"]).ok();
    assert_eq!(r.out, bytes);
    // The committed snapshot exports its own tree.
    env.run(&["export", "-o", &out, "base"]).ok();
    let files = tar_files(&std::fs::read(&out).unwrap());
    assert_eq!(files["etc/conf"], b"v=1\n");
    assert_eq!(files["gone"], b"bye");
    // Missing: exit 3, and no output file left behind.
    let missing = env.out_path("missing.tar");
    env.run(&["export", "-o", &missing, "nosuch"])
        .code(NOT_FOUND)
        .fails_with(&["nosuch"]);
    assert!(!std::path::Path::new(&missing).exists());
}

// ---------------------------------------------------------------- driver

#[test]
fn a_vfs_root_refuses_the_devmapper_driver() {
    let env = Env::new();
    env.import(&[("a", b"a")], Some("a:1"));
    let before = env.state();
    for args in [
        vec!["--driver", "devmapper", "images"],
        vec!["--driver", "devmapper", "rmi", "a:1"],
        vec!["--driver", "devmapper", "load", "-i", "/dev/null"],
    ] {
        let r = Env::exec(&mut env.bare(&args), None);
        assert_eq!(r.code, CONFLICT, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("vfs"), "{}", r.stderr);
        assert!(r.stderr.contains("devmapper"), "{}", r.stderr);
    }
    // THINSNAP_DRIVER counts the same as the flag.
    let r = Env::exec(
        env.bare(&["images"]).env("THINSNAP_DRIVER", "devmapper"),
        None,
    );
    assert_eq!(r.code, CONFLICT, "{}", r.stderr);
    // And no flag means devmapper (the default).
    let r = Env::exec(&mut env.bare(&["images"]), None);
    assert_eq!(r.code, CONFLICT, "{}", r.stderr);
    assert_eq!(env.state(), before);
}

#[test]
fn devmapper_without_a_pool_says_how_to_make_one() {
    let env = Env::new();
    let r = Env::exec(&mut env.bare(&["--driver", "devmapper", "images"]), None);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("thinsnap pool create"), "{}", r.stderr);
    assert!(r.stderr.contains("--driver vfs"), "{}", r.stderr);
    // Nothing was claimed for devmapper: vfs still works on this root.
    env.import(&[("a", b"a")], Some("a:1"));
    assert_eq!(env.tags(), ["a:1"]);
    // An unknown driver is a usage error.
    let r = Env::exec(&mut env.bare(&["--driver", "zfs", "images"]), None);
    assert_eq!(r.code, USAGE);
}

#[test]
fn devmapper_without_a_pool_is_not_found() {
    let env = Env::new();
    let r = Env::exec(&mut env.bare(&["--driver", "devmapper", "images"]), None);
    assert_eq!(r.code, NOT_FOUND, "{}", r.stderr);
}

#[test]
fn the_config_file_picks_the_driver() {
    let env = Env::new();
    std::fs::create_dir_all(&env.root).unwrap();
    std::fs::write(env.root.join("config.toml"), "driver = \"vfs\"\n").unwrap();
    let rf = env.input("r.tar", &rootfs(&[("a", b"a")]));
    Env::exec(&mut env.bare(&["import", &rf, "cfg:1"]), None).ok();
    let r = Env::exec(&mut env.bare(&["inspect", "cfg:1"]), None).ok();
    assert_eq!(r.json()[0]["GraphDriver"]["Name"], "vfs");
    // The flag wins over the file.
    let r = Env::exec(&mut env.bare(&["--driver", "devmapper", "images"]), None);
    assert_eq!(r.code, CONFLICT, "{}", r.stderr);
    // --config FILE, elsewhere.
    let other = Env::new();
    let cfg = other.input("c.toml", b"driver = \"vfs\"\n");
    Env::exec(&mut other.bare(&["--config", &cfg, "images"]), None).ok();
    let r = Env::exec(
        &mut other.bare(&["--config", &cfg, "snapshot", "ls", "--json"]),
        None,
    )
    .ok();
    assert_eq!(r.json(), json!([]));
    // A bad driver in the file: usage error.
    let bad = other.input("bad.toml", b"driver = \"zfs\"\n");
    let r = Env::exec(&mut other.bare(&["--config", &bad, "images"]), None);
    assert_eq!(r.code, USAGE, "{}", r.stderr);
    assert!(r.stderr.contains("zfs"), "{}", r.stderr);
}

#[test]
fn import_refuses_what_is_not_a_safe_rootfs_tarball() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.import(&[("keep", b"1")], Some("keep:1"));
    let before = env.state();
    let passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let marker = "thinsnap-test-escape-import";
    let deep = format!("{}tmp/{marker}", "../".repeat(16));
    let hard = |target: &str| Entry {
        name: "h".into(),
        kind: Kind::Hardlink(target.into()),
        mode: 0o644,
    };
    for (name, bytes) in [
        ("junk.bin", b"not a tarball\n".repeat(100)),
        ("dotdot.tar", tar(&[file(&format!("../{marker}"), b"x")])),
        ("deep.tar.gz", gzip(&tar(&[file(&deep, b"x")]))),
        (
            "abs.tar.zst",
            zstd(&tar(&[file(&format!("/tmp/{marker}"), b"x")])),
        ),
        (
            "through-link.tar",
            tar(&[symlink("up", "/tmp"), file(&format!("up/{marker}"), b"x")]),
        ),
        ("hard-abs.tar", tar(&[hard("/etc/passwd")])),
        (
            "hard-up.tar",
            tar(&[hard("../../../../../../../../../etc/passwd")]),
        ),
    ] {
        let p = env.input(name, &bytes);
        let r = env.run(&["import", &p, "evil:1"]);
        assert_ne!(r.code, 0, "{name} was imported");
        assert_ne!(r.code, 101, "{name}: panicked: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{name}: {}", r.stdout);
        assert_eq!(
            env.state(),
            before,
            "{name} changed the store: {}",
            r.stderr
        );
        std::fs::remove_file(&p).unwrap();
        env.assert_nothing_outside_root(&["rootfs.tar"], marker);
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().nlink(),
            passwd_links,
            "{name}"
        );
    }
    assert_eq!(env.tags(), ["keep:1"]);
}

#[test]
fn save_to_an_unwritable_place_leaves_nothing() {
    let env = Env::new();
    env.import(&[("a", b"a")], Some("a:1"));
    let p = env.out_path("nodir/x.tar");
    env.run(&["save", "-o", &p, "a:1"]).fails_with(&["nodir"]);
    assert!(!env.dir.path().join("in/nodir").exists());
    env.run(&["save"]).code(USAGE);
}

#[test]
fn a_failed_export_or_save_keeps_an_existing_output_file() {
    let env = Env::new();
    env.import(&[("a", b"a")], Some("a:1"));
    let p = env.input("precious.tar", b"precious");
    env.run(&["export", "-o", &p, "nosuch"]).code(NOT_FOUND);
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    env.run(&["save", "-o", &p, "nosuch:1"]).code(NOT_FOUND);
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
    env.assert_nothing_outside_root(&["precious.tar", "rootfs.tar"], "nomarker");
    // A successful one replaces it.
    let layer = env.inspect("a:1")["GraphDriver"]["Data"]["Snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    env.run(&["export", "-o", &p, &layer]).ok();
    assert_eq!(tar_files(&std::fs::read(&p).unwrap())["a"], b"a");
    env.assert_nothing_outside_root(&["precious.tar", "rootfs.tar"], "nomarker");
}

// ---------------------------------------------------------------- recovery

#[test]
fn the_next_command_clears_what_a_killed_one_left() {
    use thinsnap::snapshot::Snapshotter;
    let env = Env::new();
    env.import(&[("keep", b"k")], Some("keep:1"));
    let before = env.state();
    // A load killed while it reads the archive from stdin.
    let (a, b) = two_sharing();
    let archive = docker_archive(&[a, b]);
    let mut child = env
        .cmd(&["load"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut w = child.stdin.take().unwrap();
        w.write_all(&archive[..archive.len() / 2]).unwrap();
        w.flush().unwrap();
        let staged = env.root.join("engine/tmp");
        let t = std::time::Instant::now();
        while files_under(&staged).is_empty() {
            assert!(t.elapsed().as_secs() < 20, "load never staged anything");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(!files_under(&env.root.join("engine/tmp")).is_empty());
    // Leftovers of a command killed later on: a blob no record names, a
    // temp blob, a work snapshot and a layer snapshot the store lacks.
    let stray = b"stray blob";
    std::fs::write(
        env.root.join("engine/blobs/sha256").join(sha256_hex(stray)),
        stray,
    )
    .unwrap();
    std::fs::write(env.root.join("engine/blobs/tmp/.tmpXYZ"), b"half").unwrap();
    {
        let mut s =
            thinsnap::snapshot::vfs::VfsSnapshotter::open(&env.root.join("snapshots/vfs")).unwrap();
        s.prepare("work-0123", None).unwrap();
        s.prepare("k", None).unwrap();
        s.commit(&format!("layer-{}", "ab".repeat(32)), "k")
            .unwrap();
    }
    // Any command clears them.
    env.run(&["images"]).ok();
    assert_eq!(env.state(), before);
    assert_eq!(env.tags(), ["keep:1"]);
}

#[test]
fn missing_arguments_are_usage_errors() {
    let env = Env::new();
    for args in [
        vec!["tag", "x:1"],
        vec!["tag"],
        vec!["rmi"],
        vec!["history"],
        vec!["inspect"],
        vec!["save"],
        vec!["import"],
        vec!["export"],
        vec!["images", "--filter"],
        vec!["images", "a", "b"],
        vec!["load", "--bogus"],
    ] {
        let r = env.run(&args);
        assert_eq!(r.code, USAGE, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}");
    }
    for cmd in [
        "images", "tag", "rmi", "history", "inspect", "save", "load", "import", "export",
    ] {
        let r = env.run(&[cmd, "--help"]).ok();
        assert!(r.stdout.contains("Usage:"), "{cmd}: {}", r.stdout);
    }
}
