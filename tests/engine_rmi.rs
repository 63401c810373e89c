//! `rmi`, `history` and `inspect` through the built binary on a vfs root.
#![allow(clippy::unwrap_used)]

mod engine_common;

use engine_common::*;
use serde_json::json;

// ---------------------------------------------------------------- rmi

#[test]
fn rmi_untags_first_then_deletes_image_and_layers() {
    let env = Env::new();
    let l0 = layer("base", "f", b"0");
    let l1 = layer("top", "f", b"1");
    let img = image(
        &[l0.clone(), l1.clone()],
        "2020-01-01T00:00:00Z",
        &["r:1", "r:2"],
    );
    env.load(&docker_archive(std::slice::from_ref(&img)));
    let chain = chain_ids(&[digest(&l0), digest(&l1)]);
    assert_eq!(env.snapshots().len(), 2);
    let r = env.run(&["rmi", "r:1"]).ok();
    assert_eq!(r.lines(), ["Untagged: r:1"]);
    assert_eq!(env.ids(), [img.id()]);
    let r = env.run(&["rmi", "r:2"]).ok();
    let mut want = vec![
        "Untagged: r:2".to_string(),
        format!("Deleted: {}", img.id()),
    ];
    // Top layer first.
    want.push(format!("Deleted: {}", chain[1]));
    want.push(format!("Deleted: {}", chain[0]));
    assert_eq!(r.lines(), want);
    assert!(env.ids().is_empty());
    assert!(env.blobs().is_empty());
    assert!(env.snapshots().is_empty());
    env.run(&["rmi", "r:2"]).code(NOT_FOUND);
}

#[test]
fn rmi_by_id_in_several_repositories_needs_force() {
    let env = Env::new();
    let id = env.import(&[("a", b"a")], Some("one:1"));
    env.run(&["tag", "one:1", "two:1"]).ok();
    env.run(&["tag", "one:1", "one:2"]).ok();
    let before = env.state();
    env.run(&["rmi", short(&id)])
        .code(CONFLICT)
        .fails_with(&["-f", "repositories"]);
    assert_eq!(env.state(), before);
    let r = env.run(&["rmi", "-f", short(&id)]).ok();
    let lines = r.lines();
    assert_eq!(
        &lines[..3],
        ["Untagged: one:1", "Untagged: one:2", "Untagged: two:1"]
    );
    assert_eq!(lines[3], format!("Deleted: {id}"));
    assert!(lines[4].starts_with("Deleted: sha256:"));
    assert_eq!(lines.len(), 5);
    assert!(env.ids().is_empty());
    assert!(env.blobs().is_empty());
    // One repository, several tags, by id: no -f needed.
    let id = env.import(&[("b", b"b")], Some("solo:1"));
    env.run(&["tag", "solo:1", "solo:2"]).ok();
    let r = env.run(&["rmi", &id]).ok();
    assert_eq!(&r.lines()[..2], ["Untagged: solo:1", "Untagged: solo:2"]);
    assert!(env.ids().is_empty());
}

#[test]
fn rmi_keeps_layers_shared_with_another_image() {
    let env = Env::new();
    let base = layer("base", "os", &[1u8; 5000]);
    let a = image(
        &[base.clone(), layer("a", "f", b"a")],
        "2020-01-01T00:00:00Z",
        &["a:1"],
    );
    let b = image(
        &[base.clone(), layer("b", "f", b"b")],
        "2020-01-02T00:00:00Z",
        &["b:1"],
    );
    env.load(&docker_archive(&[a.clone(), b.clone()]));
    assert_eq!(env.snapshots().len(), 3, "the base layer is stored once");
    let save = |name: &str| -> Vec<u8> {
        let p = env.out_path(name);
        env.run(&["save", "-o", &p, "b:1"]).ok();
        std::fs::read(&p).unwrap()
    };
    let before = save("b1.tar");
    let r = env.run(&["rmi", "a:1"]).ok();
    let chain_a = chain_ids(&[digest(&base), digest(&a.layers[1])]);
    assert_eq!(
        r.lines(),
        [
            "Untagged: a:1".to_string(),
            format!("Deleted: {}", a.id()),
            format!("Deleted: {}", chain_a[1]),
        ],
        "the shared base layer is not deleted"
    );
    assert_eq!(save("b2.tar"), before, "b saves to the same bytes");
    let v = env.inspect("b:1");
    let out = env.out_path("b.tar");
    env.run(&[
        "export",
        "-o",
        &out,
        v["GraphDriver"]["Data"]["Snapshot"].as_str().unwrap(),
    ])
    .ok();
    let files = tar_files(&std::fs::read(&out).unwrap());
    assert_eq!(files["base/os"], vec![1u8; 5000]);
    assert_eq!(files["b/f"], b"b");
    assert!(!files.contains_key("a/f"));
    env.assert_blobs_verified();
    // Removing the last image empties the store.
    env.run(&["rmi", "b:1"]).ok();
    assert!(env.blobs().is_empty());
    assert!(env.snapshots().is_empty());
    assert!(env.run(&["images", "-a", "-q"]).ok().stdout.is_empty());
}

#[test]
fn rmi_several_names_one_failing() {
    let env = Env::new();
    let a = env.import(&[("a", b"a")], Some("a:1"));
    let b = env.import(&[("b", b"b")], Some("b:1"));
    let r = env.run(&["rmi", "a:1", "missing:1", "b:1"]);
    assert_eq!(r.code, NOT_FOUND);
    assert!(r.stderr.contains("missing:1"), "{}", r.stderr);
    assert!(r.stdout.contains(&format!("Deleted: {a}")), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("Deleted: {b}")), "{}", r.stdout);
    assert!(env.ids().is_empty());
    // Needs at least one name.
    env.run(&["rmi"]).code(USAGE);
}

#[test]
fn rmi_by_digest_reference() {
    let env = Env::new();
    let l = layer("d", "f", b"dig");
    let img = Img {
        tags: vec!["reg.example/x:1".into()],
        ..image(std::slice::from_ref(&l), "2020-01-01T00:00:00Z", &[])
    };
    let md = digest(&manifest(&img));
    env.load(&oci_archive(
        std::slice::from_ref(&img),
        "io.containerd.image.name",
    ));
    let by_digest = format!("reg.example/x@{md}");
    let r = env.run(&["rmi", &by_digest]).ok();
    assert_eq!(r.lines(), [format!("Untagged: {by_digest}")]);
    assert_eq!(env.inspect("reg.example/x:1")["RepoDigests"], json!([]));
    let r = env.run(&["rmi", "reg.example/x:1"]).ok();
    assert_eq!(r.lines()[0], "Untagged: reg.example/x:1");
    assert_eq!(r.lines()[1], format!("Deleted: {}", img.id()));
    // Removing the last tag also drops (and reports) the digest names.
    env.load(&oci_archive(
        std::slice::from_ref(&img),
        "io.containerd.image.name",
    ));
    let r = env.run(&["rmi", "reg.example/x:1"]).ok();
    assert_eq!(
        r.lines(),
        [
            "Untagged: reg.example/x:1".to_string(),
            format!("Untagged: {by_digest}"),
            format!("Deleted: {}", img.id()),
            format!("Deleted: {}", digest(&l)),
        ]
    );
    assert!(env.blobs().is_empty());
}

// ---------------------------------------------------------------- history

fn multi_step_image() -> Img {
    let l0 = layer("base", "f", &[0u8; 1500]);
    let l1 = layer("app", "bin", b"app");
    let created = "2021-06-01T10:00:00Z";
    let long_cmd = format!("/bin/sh -c apt-get install -y {}", "package ".repeat(10));
    let cfg = config(
        &[l0.clone(), l1.clone()],
        created,
        json!({
            "author": "someone@example.com",
            "history": [
                {"created": created, "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
                {"created": created, "created_by": "/bin/sh -c #(nop)  ENV A=1", "empty_layer": true},
                {"created": created, "created_by": long_cmd, "comment": "buildkit.dockerfile.v0"},
                {"created": created, "created_by": "/bin/sh -c #(nop)  CMD [\"app\"]", "empty_layer": true},
            ],
        }),
    );
    Img {
        config: cfg,
        layers: vec![l0, l1],
        tags: vec!["hist:1".into()],
    }
}

#[test]
fn history_of_a_loaded_multi_step_image() {
    let env = Env::new();
    let img = multi_step_image();
    env.load(&docker_archive(std::slice::from_ref(&img)));
    let r = env.run(&["history", "hist:1"]).ok();
    let rows = parse_table(&r.stdout);
    assert_eq!(
        r.lines()[0].split_whitespace().collect::<Vec<_>>(),
        ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    );
    assert_eq!(rows.len(), 4, "newest first, one row per history entry");
    let ids: Vec<&str> = rows.iter().map(|r| r["IMAGE"].as_str()).collect();
    assert_eq!(
        ids,
        [short(&img.id()), "<missing>", "<missing>", "<missing>"]
    );
    assert_eq!(rows[0]["SIZE"], "0B", "empty_layer step");
    assert_eq!(
        rows[1]["SIZE"],
        thinsnap::engine::human::size(img.layers[1].len() as u64)
    );
    assert_eq!(rows[1]["COMMENT"], "buildkit.dockerfile.v0");
    assert!(rows[1]["CREATED BY"].ends_with('…'), "{:?}", rows[1]);
    assert!(rows[1]["CREATED BY"].chars().count() <= 45);
    assert_eq!(rows[2]["SIZE"], "0B");
    assert_eq!(
        rows[3]["SIZE"],
        thinsnap::engine::human::size(img.layers[0].len() as u64)
    );
    assert!(rows[3]["CREATED"].ends_with("years ago"));

    let full = env.run(&["history", "--no-trunc", "hist:1"]).ok();
    assert!(full.stdout.contains(&img.id()));
    assert!(full.stdout.contains(&format!(
        "apt-get install -y {}",
        "package ".repeat(10).trim_end()
    )));

    let q = env.run(&["history", "-q", "hist:1"]).ok();
    assert_eq!(
        q.lines(),
        [short(&img.id()), "<missing>", "<missing>", "<missing>"]
    );
    let q = env.run(&["history", "-q", "--no-trunc", "hist:1"]).ok();
    assert_eq!(q.lines()[0], img.id());

    env.run(&["history", "nope:1"]).code(NOT_FOUND);
}

// ---------------------------------------------------------------- inspect

#[test]
fn inspect_has_every_field_and_keeps_going_past_unknown_names() {
    let env = Env::new();
    let img = multi_step_image();
    env.load(&docker_archive(std::slice::from_ref(&img)));
    let imported = env.import(&[("x", b"x")], Some("imp:1"));
    let r = env.run(&["inspect", "hist:1", "nope:9", &imported]);
    assert_eq!(r.code, NOT_FOUND);
    assert!(r.stderr.contains("nope:9"), "{}", r.stderr);
    let arr = r.json();
    let arr = arr.as_array().unwrap();
    assert_eq!(arr.len(), 2, "the known images still print");
    let v = &arr[0];
    for k in [
        "Id",
        "RepoTags",
        "RepoDigests",
        "Parent",
        "Comment",
        "Created",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "RootFS",
        "Metadata",
        "GraphDriver",
    ] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    let diff_ids: Vec<String> = img.layers.iter().map(|l| digest(l)).collect();
    let chain = chain_ids(&diff_ids);
    assert_eq!(v["Id"], img.id());
    assert_eq!(v["RepoTags"], json!(["hist:1"]));
    assert_eq!(v["RepoDigests"], json!([]));
    assert_eq!(v["Parent"], "");
    assert_eq!(v["Created"], "2021-06-01T10:00:00Z");
    assert_eq!(v["Author"], "someone@example.com");
    assert_eq!(v["Config"], json!({"Cmd": ["/bin/sh"]}));
    assert_eq!(v["Architecture"], host_arch());
    assert_eq!(v["Os"], "linux");
    assert_eq!(
        v["Size"],
        (img.layers[0].len() + img.layers[1].len()) as u64
    );
    assert_eq!(v["RootFS"], json!({"Type": "layers", "Layers": diff_ids}));
    assert!(v["Metadata"]["LastTagTime"].as_str().unwrap().len() > 10);
    assert_eq!(v["GraphDriver"]["Name"], "vfs");
    assert_eq!(v["GraphDriver"]["Data"]["ChainID"], chain[1]);
    assert_eq!(
        v["GraphDriver"]["Data"]["Snapshot"],
        format!("layer-{}", &chain[1][7..])
    );
    assert!(env
        .snapshots()
        .contains(&format!("layer-{}", &chain[1][7..])));
    let w = &arr[1];
    assert_eq!(w["Id"], imported);
    assert_eq!(w["RepoTags"], json!(["imp:1"]));
    assert_eq!(w["Author"], "");
    assert!(w["Comment"].as_str().unwrap().starts_with("Imported from "));
    assert_eq!(w["Config"], json!({}));
    // An untagged image: LastTagTime is Docker's zero time.
    let loose = env.import(&[("y", b"y")], None);
    assert_eq!(
        env.inspect(&loose)["Metadata"]["LastTagTime"],
        "0001-01-01T00:00:00Z"
    );
    // Only unknown names: exit 3, empty array.
    let r = env.run(&["inspect", "nope:1"]).code(NOT_FOUND);
    assert_eq!(r.json(), json!([]));
}
