//! `images` (every flag and filter) and `tag` through the built binary on
//! a vfs root.
#![allow(clippy::unwrap_used)]

mod engine_common;

use engine_common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------- images

#[test]
fn images_columns_positional_and_no_trunc() {
    let env = Env::new();
    let l = layer("etc", "os-release", b"ID=test\n");
    let old = image(
        std::slice::from_ref(&l),
        &ago(15),
        &["base:1.0", "base:latest"],
    );
    let other = image(
        &[l.clone(), layer("app", "bin", &[7u8; 3000])],
        &ago(400),
        &["example.com:5000/team/app:v2"],
    );
    env.load(&docker_archive(&[old.clone(), other.clone()]));
    let rows = parse_table(&env.run(&["images"]).ok().stdout);
    let header = env.run(&["images"]).ok().lines()[0].to_string();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(!header.contains("DIGEST"));
    assert_eq!(rows.len(), 3, "one row per tag");
    // Newest first.
    assert_eq!(rows[0]["REPOSITORY"], "base");
    let base: Vec<_> = rows.iter().filter(|r| r["REPOSITORY"] == "base").collect();
    let mut tags: Vec<_> = base.iter().map(|r| r["TAG"].as_str()).collect();
    tags.sort();
    assert_eq!(tags, ["1.0", "latest"]);
    for r in &base {
        assert_eq!(r["IMAGE ID"], short(&old.id()));
        assert_eq!(r["CREATED"], "2 weeks ago");
        assert_eq!(r["SIZE"], thinsnap::engine::human::size(l.len() as u64));
    }
    let app = &rows[2];
    assert_eq!(app["REPOSITORY"], "example.com:5000/team/app");
    assert_eq!(app["TAG"], "v2");
    assert_eq!(app["CREATED"], "13 months ago");
    assert_eq!(app["IMAGE ID"], short(&other.id()));

    // --no-trunc: full ids.
    let rows = parse_table(&env.run(&["images", "--no-trunc"]).ok().stdout);
    assert_eq!(rows[2]["IMAGE ID"], other.id());

    // Positional REPOSITORY[:TAG].
    let only = |args: &[&str]| -> Vec<String> {
        parse_table(&env.run(args).ok().stdout)
            .iter()
            .map(|r| format!("{}:{}", r["REPOSITORY"], r["TAG"]))
            .collect()
    };
    assert_eq!(only(&["images", "base"]).len(), 2);
    assert_eq!(only(&["images", "base:1.0"]), ["base:1.0"]);
    assert_eq!(
        only(&["images", "example.com:5000/team/app"]),
        ["example.com:5000/team/app:v2"]
    );
    assert!(only(&["images", "nothing"]).is_empty());
}

#[test]
fn images_quiet_lists_each_id_once() {
    let env = Env::new();
    let id = env.import(&[("a", b"a")], Some("one:1"));
    env.run(&["tag", "one:1", "two:1"]).ok();
    env.run(&["tag", "one:1", "three/x:1"]).ok();
    let id2 = env.import(&[("b", b"b")], None);
    let table = parse_table(&env.run(&["images"]).ok().stdout);
    assert_eq!(table.len(), 4);
    let q = env.run(&["images", "-q"]).ok();
    let mut got = q.lines();
    got.sort();
    let mut want = vec![short(&id), short(&id2)];
    want.sort();
    assert_eq!(got, want);
    let q = env.run(&["images", "-q", "--no-trunc"]).ok();
    let mut got = q.lines();
    got.sort();
    let mut want = vec![id.as_str(), id2.as_str()];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn images_digests_from_an_oci_archive() {
    let env = Env::new();
    let img = image(&[gzip(&layer("d", "f", b"x"))], "2021-01-01T00:00:00Z", &[]);
    // Config diff ids must be of the uncompressed tar.
    let img = Img {
        config: config(&[layer("d", "f", b"x")], "2021-01-01T00:00:00Z", json!({})),
        tags: vec!["registry.example/team/web:3".into()],
        ..img
    };
    let mdigest = digest(&manifest(&img));
    env.load(&oci_archive(
        std::slice::from_ref(&img),
        "io.containerd.image.name",
    ));
    let plain = env.run(&["images"]).ok();
    assert!(!plain.lines()[0].contains("DIGEST"));
    let rows = parse_table(&env.run(&["images", "--digests"]).ok().stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["REPOSITORY"], "registry.example/team/web");
    assert_eq!(rows[0]["TAG"], "3");
    assert_eq!(rows[0]["DIGEST"], mdigest);
    assert_eq!(rows[0]["IMAGE ID"], short(&img.id()));
    let v = env.inspect("registry.example/team/web:3");
    assert_eq!(
        v["RepoDigests"],
        json!([format!("registry.example/team/web@{mdigest}")])
    );
    // The digest reference resolves too.
    let by_digest = env.inspect(&format!("registry.example/team/web@{mdigest}"));
    assert_eq!(by_digest["Id"], img.id());
    // An image without a digest shows <none>.
    env.import(&[("a", b"a")], Some("local:1"));
    let rows = parse_table(&env.run(&["images", "--digests", "local"]).ok().stdout);
    assert_eq!(rows[0]["DIGEST"], "<none>");
}

#[test]
fn images_filter_dangling() {
    let env = Env::new();
    let tagged = env.import(&[("a", b"a")], Some("t:1"));
    let loose = env.import(&[("b", b"b")], None);
    let ids = |f: &str| -> Vec<String> {
        env.run(&["images", "-q", "--no-trunc", "--filter", f])
            .ok()
            .lines()
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(ids("dangling=true"), [loose.as_str()]);
    assert_eq!(ids("dangling=false"), [tagged.as_str()]);
    // Retagging makes the old image dangling.
    env.run(&["tag", &loose, "t:1"]).ok();
    assert_eq!(ids("dangling=true"), [tagged]);
    assert_eq!(ids("dangling=false"), [loose]);
}

#[test]
fn images_filter_reference_patterns() {
    let env = Env::new();
    let mut want = std::collections::BTreeMap::new();
    for (i, name) in [
        "myapp:1.0",
        "myapp:2.0",
        "myapp:1.5-rc",
        "user/app:1",
        "other/app:2",
        "myother:1",
        "localhost:5000/ns/app:7",
    ]
    .iter()
    .enumerate()
    {
        let id = env.import(&[("f", format!("{i}").as_bytes())], Some(name));
        want.insert(name.to_string(), id);
    }
    let refs = |pats: &[&str]| -> Vec<String> {
        let mut args = vec!["images", "--format", "json"];
        for p in pats {
            args.extend(["--filter", p]);
        }
        let mut v: Vec<String> = env
            .run(&args)
            .ok()
            .stdout
            .lines()
            .map(|l| {
                let o: Value = serde_json::from_str(l).unwrap();
                format!(
                    "{}:{}",
                    o["Repository"].as_str().unwrap(),
                    o["Tag"].as_str().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        refs(&["reference=my*"]),
        ["myapp:1.0", "myapp:1.5-rc", "myapp:2.0", "myother:1"]
    );
    assert_eq!(refs(&["reference=*/app"]), ["other/app:2", "user/app:1"]);
    assert_eq!(refs(&["reference=myapp:1*"]), ["myapp:1.0", "myapp:1.5-rc"]);
    assert_eq!(refs(&["reference=myapp"]).len(), 3);
    assert_eq!(
        refs(&["reference=localhost:5000/*/app"]),
        ["localhost:5000/ns/app:7"]
    );
    assert!(refs(&["reference=nomatch*"]).is_empty());
    // Several reference filters: any may match.
    assert_eq!(
        refs(&["reference=myother", "reference=user/*"]),
        ["myother:1", "user/app:1"]
    );
}

#[test]
fn images_filter_before_and_since() {
    let env = Env::new();
    let l = layer("d", "f", b"x");
    let imgs: Vec<Img> = (0..3)
        .map(|i| {
            image(
                std::slice::from_ref(&l),
                &format!("2022-0{}-01T00:00:00Z", i + 1),
                &[&format!("seq:{i}")],
            )
        })
        .collect();
    env.load(&docker_archive(&imgs));
    let tags = |f: &str| -> Vec<String> {
        parse_table(&env.run(&["images", "--filter", f]).ok().stdout)
            .iter()
            .map(|r| r["TAG"].clone())
            .collect()
    };
    assert_eq!(tags("since=seq:0"), ["2", "1"]);
    assert_eq!(tags("before=seq:2"), ["1", "0"]);
    assert!(tags("before=seq:0").is_empty());
    assert!(tags("since=seq:2").is_empty());
    // By id prefix too.
    assert_eq!(tags(&format!("since={}", short(&imgs[1].id()))), ["2"]);
    // An unknown image in the filter: not found.
    env.run(&["images", "--filter", "since=nope:1"])
        .code(NOT_FOUND);
}

#[test]
fn images_filter_labels() {
    let env = Env::new();
    let path = env.input("r.tar", &rootfs(&[("a", b"a")]));
    env.run(&["import", "-c", "LABEL tier=web owner=ops", &path, "l:web"])
        .ok();
    let path2 = env.input("r2.tar", &rootfs(&[("b", b"b")]));
    env.run(&["import", "-c", "LABEL tier=db", &path2, "l:db"])
        .ok();
    env.import(&[("c", b"c")], Some("l:none"));
    let tags = |fs: &[&str]| -> Vec<String> {
        let mut a = vec!["images"];
        for f in fs {
            a.extend(["--filter", f]);
        }
        let mut v: Vec<String> = parse_table(&env.run(&a).ok().stdout)
            .iter()
            .map(|r| r["TAG"].clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(tags(&["label=tier"]), ["db", "web"]);
    assert_eq!(tags(&["label=tier=web"]), ["web"]);
    assert_eq!(tags(&["label=owner"]), ["web"]);
    assert!(tags(&["label=tier=cache"]).is_empty());
    // Several labels: all must match.
    assert_eq!(tags(&["label=tier", "label=owner=ops"]), ["web"]);
    assert!(tags(&["label=tier=db", "label=owner"]).is_empty());
}

#[test]
fn images_format_json() {
    let env = Env::new();
    let img = image(&[layer("d", "f", b"json")], &ago(3), &["fmt:1", "fmt:2"]);
    env.load(&docker_archive(std::slice::from_ref(&img)));
    let r = env.run(&["images", "--format", "json"]).ok();
    let objs: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2, "one JSON object per line, per tag");
    for o in &objs {
        assert_eq!(o["Repository"], "fmt");
        assert_eq!(o["ID"], short(&img.id()));
        assert_eq!(o["CreatedSince"], "3 days ago");
        assert_eq!(o["Digest"], "<none>");
        assert!(o["CreatedAt"].as_str().unwrap().starts_with(&ago(3)[..10]));
        assert_eq!(
            o["Size"],
            thinsnap::engine::human::size(layer("d", "f", b"json").len() as u64)
        );
    }
    let r = env.run(&["images", "--format", "json", "--no-trunc"]).ok();
    let o: Value = serde_json::from_str(r.lines()[0]).unwrap();
    assert_eq!(o["ID"], img.id());
    // `--format table` is the default table.
    assert_eq!(
        env.run(&["images", "--format", "table"]).ok().stdout,
        env.run(&["images"]).ok().stdout
    );
}

#[test]
fn images_bad_filter_or_format_is_a_usage_error() {
    let env = Env::new();
    env.import(&[("a", b"a")], Some("x:1"));
    for f in ["foo=bar", "dangling=maybe", "dangling", "label"] {
        env.run(&["images", "--filter", f])
            .code(USAGE)
            .fails_with(&["filter"]);
    }
    env.run(&["images", "--format", "{{.ID}}x"]).code(USAGE);
}

/// `-a` shows intermediate images: untagged parents of other images. Only
/// `commit` makes parents, and it does not exist yet, so the parent link is
/// written into the store file by hand here (the store's documented
/// `parent` field); everything else goes through the binary.
#[test]
fn images_all_shows_intermediate_parents_and_rmi_protects_them() {
    let env = Env::new();
    let parent = env.import(&[("p", b"p")], Some("parent:1"));
    let child = env.import(&[("c", b"c")], Some("child:1"));
    // Without parents, -a lists the same images.
    assert_eq!(
        env.run(&["images", "-a", "-q"]).ok().stdout,
        env.run(&["images", "-q"]).ok().stdout
    );
    let store = env.root.join("engine/store.json");
    let mut s: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    s["images"][&child]["parent"] = json!(parent);
    std::fs::write(&store, serde_json::to_vec_pretty(&s).unwrap()).unwrap();
    assert_eq!(env.inspect("child:1")["Parent"], parent);
    // Tagged parent: shown either way.
    assert_eq!(env.run(&["images", "-q"]).ok().lines().len(), 2);
    // Untagging a parent keeps it (it has a child) and hides it without -a.
    let r = env.run(&["rmi", "parent:1"]).ok();
    assert_eq!(r.lines(), ["Untagged: parent:1"]);
    assert_eq!(env.run(&["images", "-q"]).ok().lines(), [short(&child)]);
    let all = env.run(&["images", "-a", "-q"]).ok();
    let mut got = all.lines();
    got.sort();
    let mut want = vec![short(&child), short(&parent)];
    want.sort();
    assert_eq!(got, want);
    // An intermediate image is neither dangling nor named, with or without -a.
    for f in ["dangling=true", "dangling=false"] {
        for all in [false, true] {
            let mut args = vec!["images", "-q", "--filter", f];
            if all {
                args.push("-a");
            }
            let r = env.run(&args).ok();
            let want: &[&str] = if f == "dangling=false" {
                &[short(&child)]
            } else {
                &[]
            };
            assert_eq!(r.lines(), want, "{args:?}");
        }
    }
    // Deleting it is refused while the child exists, even with -f.
    env.run(&["rmi", &parent])
        .code(CONFLICT)
        .fails_with(&["child"]);
    env.run(&["tag", &parent, "parent:2"]).ok();
    let r = env.run(&["rmi", "-f", &parent]).ok();
    assert_eq!(r.lines(), ["Untagged: parent:2"]);
    assert!(env.ids().contains(&parent));
    // Once the child is gone, the parent can go.
    env.run(&["rmi", "child:1"]).ok();
    let r = env.run(&["rmi", &parent]).ok();
    assert!(r.lines().contains(&format!("Deleted: {parent}").as_str()));
    assert!(env.ids().is_empty());
}

// ---------------------------------------------------------------- tag

#[test]
fn tag_new_names_by_name_id_and_prefix() {
    let env = Env::new();
    let id = env.import(&[("a", b"a")], Some("src:1"));
    env.run(&["tag", "src:1", "dst:1"]).ok();
    env.run(&["tag", &id, "dst:2"]).ok();
    env.run(&["tag", short(&id), "example.com/ns/dst"]).ok();
    env.run(&["tag", &id[..7 + 5], "dst:3"]).ok();
    env.run(&["tag", &id[7..7 + 4], "dst:4"]).ok();
    // `src` means src:latest, which does not exist.
    env.run(&["tag", "src", "dst:5"]).code(NOT_FOUND);
    assert_eq!(
        env.tags(),
        [
            "dst:1",
            "dst:2",
            "dst:3",
            "dst:4",
            "example.com/ns/dst:latest",
            "src:1"
        ]
    );
    assert_eq!(env.ids(), [id.as_str()]);
    let v = env.inspect("dst:4");
    assert_eq!(v["Id"], id);
    assert_ne!(v["Metadata"]["LastTagTime"], "0001-01-01T00:00:00Z");
    // docker.io/library/ names are the same names.
    assert_eq!(env.inspect("docker.io/library/dst:1")["Id"], id);
}

#[test]
fn retagging_moves_the_tag_and_leaves_the_old_image_dangling() {
    let env = Env::new();
    let a = env.import(&[("a", b"a")], Some("app:latest"));
    let b = env.import(&[("b", b"b")], None);
    env.run(&["tag", &b, "app"]).ok();
    assert_eq!(env.inspect("app")["Id"], b);
    assert_eq!(env.inspect(&a)["RepoTags"], json!([]));
    assert_eq!(env.inspect(&b)["RepoTags"], json!(["app:latest"]));
    let dangling = env
        .run(&["images", "-q", "--no-trunc", "--filter", "dangling=true"])
        .ok();
    assert_eq!(dangling.lines(), [a.as_str()]);
}

#[test]
fn tag_unknown_ambiguous_and_bad_names() {
    let env = Env::new();
    // Two images whose ids share their first hex digit.
    let l = layer("d", "f", b"x");
    let mut imgs: Vec<Img> = Vec::new();
    let mut n = 0;
    while imgs.len() < 2 {
        let img = Img {
            config: config(
                std::slice::from_ref(&l),
                "2020-01-01T00:00:00Z",
                json!({"config": {"Labels": {"n": n.to_string()}}}),
            ),
            layers: vec![l.clone()],
            tags: vec![format!("amb:{n}")],
        };
        n += 1;
        if imgs.is_empty() || imgs[0].id()[7..8] == img.id()[7..8] {
            imgs.push(img);
        }
    }
    env.load(&docker_archive(&imgs));
    let prefix = &imgs[0].id()[7..8];
    env.run(&["tag", prefix, "x:1"])
        .code(USAGE)
        .fails_with(&["ambiguous"]);
    env.run(&["tag", "nosuch:1", "x:1"])
        .code(NOT_FOUND)
        .fails_with(&["nosuch:1"]);
    env.run(&["tag", &format!("sha256:{}", "0".repeat(64)), "x:1"])
        .code(NOT_FOUND);
    let long_tag = format!("x:{}", "t".repeat(129));
    let long_name = format!("{}:1", "n".repeat(256));
    for bad in [
        "Upper:1",
        "x:-bad",
        "x:.bad",
        "x:",
        long_tag.as_str(),
        long_name.as_str(),
        "x//y:1",
        "x:1@sha256:abc",
    ] {
        env.run(&["tag", "amb:0", bad]).code(USAGE);
    }
    let digest_target = format!("x@{}", imgs[0].id());
    env.run(&["tag", "amb:0", &digest_target])
        .code(USAGE)
        .fails_with(&["digest"]);
    let mut want: Vec<String> = imgs.iter().map(|i| i.tags[0].clone()).collect();
    want.sort();
    assert_eq!(env.tags(), want, "nothing was tagged");
}

#[test]
fn a_tag_wins_over_an_id_prefix() {
    let env = Env::new();
    let l = layer("d", "f", b"x");
    let (mut x, mut y);
    let mut n = 0;
    loop {
        let mk = |k: usize| Img {
            config: config(
                std::slice::from_ref(&l),
                T0,
                json!({"config": {"Labels": {"n": k.to_string()}}}),
            ),
            layers: vec![l.clone()],
            tags: vec![],
        };
        (x, y) = (mk(n), mk(n + 1));
        if x.id()[7..8] != y.id()[7..8] {
            break;
        }
        n += 2;
    }
    env.load(&docker_archive(&[x.clone(), y.clone()]));
    // A repository named like the first hex digit of x's id, on y.
    let name = &x.id()[7..8];
    env.run(&["tag", &y.id(), name]).ok();
    assert_eq!(env.inspect(&format!("{name}:latest"))["Id"], y.id());
    assert_eq!(env.inspect(name)["Id"], y.id());
}
