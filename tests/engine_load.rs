//! `save` and `load` through the built binary on a vfs root: the archive
//! `save` writes (both a docker-archive and an OCI layout, reproducible,
//! shared layers once), loading it back, older docker-archives, OCI layout
//! archives (nested indexes, platforms), compressed archives, and hostile
//! or damaged archives, each of which must leave the store exactly as it
//! was and write nothing outside the root.
#![allow(clippy::unwrap_used)]

mod engine_common;

use std::collections::BTreeMap;

use engine_common::*;
use serde_json::{json, Value};

fn save_bytes(env: &Env, names: &[&str], file: &str) -> Vec<u8> {
    let p = env.out_path(file);
    let mut args = vec!["save", "-o", &p];
    args.extend(names);
    env.run(&args).ok();
    std::fs::read(&p).unwrap()
}

/// The archive's files by name (plain tar).
fn files(b: &[u8]) -> BTreeMap<String, Vec<u8>> {
    tar_files(b)
}

#[test]
fn save_writes_a_docker_archive_and_an_oci_layout_reproducibly() {
    let env = Env::new();
    let (a, b) = two_sharing();
    env.load(&docker_archive(&[a.clone(), b.clone()]));
    let out = save_bytes(&env, &["shared/a:1", "b:2"], "s1.tar");
    // Twice, and to stdout: the same bytes.
    assert_eq!(save_bytes(&env, &["shared/a:1", "b:2"], "s2.tar"), out);
    let r = env.run(&["save", "shared/a:1", "b:2"]).ok();
    assert_eq!(r.out, out, "stdout gives the same bytes as -o");
    assert!(
        r.stderr.is_empty(),
        "nothing but the archive is written: {}",
        r.stderr
    );
    // No partial file is left next to the output.
    let ins: Vec<String> = std::fs::read_dir(env.dir.path().join("in"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!ins.iter().any(|n| n.contains("partial")), "{ins:?}");

    let entries = read_tar(&out);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    for want in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let mut uniq = names.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), names.len(), "no entry twice: {names:?}");
    // Fixed metadata.
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), 0);
        assert_eq!(e.header().uid().unwrap(), 0);
    }
    let f = files(&out);
    let blobs: BTreeMap<&str, &Vec<u8>> = f
        .iter()
        .filter_map(|(n, d)| n.strip_prefix("blobs/sha256/").map(|h| (h, d)))
        .collect();
    for (h, d) in &blobs {
        assert_eq!(sha256_hex(d), *h, "blob content matches its name");
    }
    // Blobs: 2 configs + 3 layers (the base once) + 2 manifests.
    assert_eq!(blobs.len(), 7, "{:?}", blobs.keys());
    let base_hex = sha256_hex(&a.layers[0]);
    assert_eq!(
        names.iter().filter(|n| n.ends_with(&base_hex)).count(),
        1,
        "the shared layer is stored once"
    );
    assert_eq!(f["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);

    // manifest.json (docker-archive).
    let m: Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
    let m = m.as_array().unwrap();
    assert_eq!(m.len(), 2);
    for (entry, img) in m.iter().zip([&a, &b]) {
        assert_eq!(entry["Config"], format!("blobs/sha256/{}", &img.id()[7..]));
        assert_eq!(entry["RepoTags"], json!(img.tags));
        let layers: Vec<String> = img
            .layers
            .iter()
            .map(|l| format!("blobs/sha256/{}", sha256_hex(l)))
            .collect();
        assert_eq!(entry["Layers"], json!(layers));
    }
    // repositories: familiar name → tag → top layer.
    let repos: Value = serde_json::from_slice(&f["repositories"]).unwrap();
    assert_eq!(
        repos,
        json!({
            "shared/a": {"1": sha256_hex(&a.layers[1])},
            "b": {"2": sha256_hex(&b.layers[1])},
        })
    );
    // index.json (OCI layout) → manifests → configs and layers.
    let idx: Value = serde_json::from_slice(&f["index.json"]).unwrap();
    assert_eq!(idx["schemaVersion"], 2);
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    for (d, (img, full, tag)) in ms.iter().zip([
        (&a, "docker.io/shared/a:1", "1"),
        (&b, "docker.io/library/b:2", "2"),
    ]) {
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert_eq!(d["annotations"]["io.containerd.image.name"], full);
        assert_eq!(d["annotations"]["org.opencontainers.image.ref.name"], tag);
        let mhex = d["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let mbytes = blobs[mhex];
        assert_eq!(d["size"], mbytes.len());
        let man: Value = serde_json::from_slice(mbytes).unwrap();
        assert_eq!(man["config"]["digest"], img.id());
        assert_eq!(man["config"]["size"], img.config.len());
        let layer_digests: Vec<String> = img.layers.iter().map(|l| digest(l)).collect();
        let got: Vec<&str> = man["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(got, layer_digests);
        // The config is saved byte for byte (the image id stays).
        assert_eq!(blobs[&img.id()[7..]], &img.config);
    }
    // One image, by id: no names anywhere.
    let one = save_bytes(&env, &[&b.id()], "id.tar");
    let f = files(&one);
    let m: Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
    assert_eq!(m[0]["RepoTags"], Value::Null);
    let idx: Value = serde_json::from_slice(&f["index.json"]).unwrap();
    assert!(idx["manifests"][0].get("annotations").is_none());
    assert_eq!(f["repositories"], b"{}");
    // Unknown names fail and write no file.
    let p = env.out_path("none.tar");
    env.run(&["save", "-o", &p, "b:2", "nope:1"])
        .code(NOT_FOUND)
        .fails_with(&["nope:1"]);
    assert!(!std::path::Path::new(&p).exists());
}

#[test]
fn save_a_repository_name_saves_all_its_tags() {
    let env = Env::new();
    let x = env.import(&[("x", b"x")], Some("repo:1"));
    let y = env.import(&[("y", b"y")], Some("repo:2"));
    env.import(&[("z", b"z")], Some("other:1"));
    let f = files(&save_bytes(&env, &["repo"], "r.tar"));
    let m: Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
    let mut cfgs: Vec<String> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Config"].as_str().unwrap()[13..].to_string())
        .collect();
    cfgs.sort();
    let mut want = vec![x[7..].to_string(), y[7..].to_string()];
    want.sort();
    assert_eq!(cfgs, want);
}

#[test]
fn load_round_trips_our_own_save() {
    let src = Env::new();
    // Imported from gzip and zstd tarballs: saved as uncompressed layers.
    let t1 = rootfs(&[("etc/one", b"1"), ("usr/bin/x", &[5u8; 3000])]);
    let t2 = rootfs(&[("etc/two", b"2")]);
    let p1 = src.input("t1.tar.gz", &gzip(&t1));
    let p2 = src.input("t2.tar.zst", &zstd(&t2));
    let id1 = src
        .run(&["import", "-c", "ENV A=1", &p1, "rt/one:1"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let id2 = src.run(&["import", &p2]).ok().stdout.trim().to_string();
    src.run(&["tag", "rt/one:1", "rt/one:latest"]).ok();
    let archive = save_bytes(&src, &["rt/one:1", "rt/one:latest", &id2], "rt.tar");
    let f = files(&archive);
    assert_eq!(f[&format!("blobs/sha256/{}", sha256_hex(&t1))], t1);
    assert_eq!(f[&format!("blobs/sha256/{}", sha256_hex(&t2))], t2);

    let dst = Env::new();
    let p = dst.input("rt.tar", &archive);
    let r = dst.run(&["load", "-i", &p]).ok();
    let mut lines = r.lines();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("Loaded image ID: {id2}").as_str(),
            "Loaded image: rt/one:1",
            "Loaded image: rt/one:latest",
        ]
    );
    assert_eq!(dst.ids(), src.ids());
    assert_eq!(dst.tags(), ["rt/one:1", "rt/one:latest"]);
    let (vs, vd) = (src.inspect("rt/one:1"), dst.inspect("rt/one:1"));
    for k in [
        "Id",
        "RepoTags",
        "Config",
        "Comment",
        "Created",
        "RootFS",
        "Size",
        "Architecture",
        "Os",
    ] {
        assert_eq!(vs[k], vd[k], "{k}");
    }
    assert_eq!(vd["Config"]["Env"], json!(["A=1"]));
    assert_eq!(vd["Id"], id1);
    // The same files.
    let export = |env: &Env, name: &str| -> BTreeMap<String, Vec<u8>> {
        let v = env.inspect(name);
        let out = env.out_path("x.tar");
        env.run(&[
            "export",
            "-o",
            &out,
            v["GraphDriver"]["Data"]["Snapshot"].as_str().unwrap(),
        ])
        .ok();
        tar_files(&std::fs::read(&out).unwrap())
    };
    assert_eq!(export(&dst, "rt/one:1"), export(&src, "rt/one:1"));
    assert_eq!(export(&dst, &id2)["etc/two"], b"2");
    // Saving the loaded images gives the same archive.
    assert_eq!(
        save_bytes(&dst, &["rt/one:1", "rt/one:latest", &id2], "again.tar"),
        archive
    );
    // Loading again (from stdin) changes nothing but prints the same.
    let before = dst.state();
    let r = dst.run_stdin(&["load"], &archive).ok();
    assert_eq!(r.lines().len(), 3);
    assert_eq!(dst.state().blobs, before.blobs);
    assert_eq!(dst.state().snapshots, before.snapshots);
    dst.assert_blobs_verified();
    // -q prints the same lines.
    let r = dst.run(&["load", "-q", "-i", &p]).ok();
    assert_eq!(r.lines().len(), 3);
}

/// An old docker-archive: `<v1id>/{VERSION,json,layer.tar}`, `<hex>.json`
/// configs, `manifest.json` and `repositories`; the second image's base
/// layer is a symlink to the first image's.
fn old_docker_archive(a: &Img, b: &Img) -> Vec<u8> {
    let mut e: Vec<Entry> = Vec::new();
    let mut manifest = Vec::new();
    let mut repos = serde_json::Map::new();
    let mut first_base: Option<String> = None;
    for (n, img) in [a, b].into_iter().enumerate() {
        let mut layers = Vec::new();
        let mut parent: Option<String> = None;
        for (i, l) in img.layers.iter().enumerate() {
            let v1 = sha256_hex(format!("{n}-{i}-{}", sha256_hex(l)).as_bytes());
            e.push(dir(&format!("{v1}/")));
            e.push(file(&format!("{v1}/VERSION"), b"1.0"));
            let mut j = json!({"id": v1, "created": T0, "container_config": {"Cmd": null}});
            if let Some(p) = &parent {
                j["parent"] = json!(p);
            }
            e.push(file(
                &format!("{v1}/json"),
                &serde_json::to_vec(&j).unwrap(),
            ));
            match (&first_base, i) {
                (Some(fb), 0) => e.push(symlink(
                    &format!("{v1}/layer.tar"),
                    &format!("../{fb}/layer.tar"),
                )),
                _ => e.push(file(&format!("{v1}/layer.tar"), l)),
            }
            if i == 0 && first_base.is_none() {
                first_base = Some(v1.clone());
            }
            layers.push(format!("{v1}/layer.tar"));
            parent = Some(v1);
        }
        let cfg = format!("{}.json", sha256_hex(&img.config));
        e.push(file(&cfg, &img.config));
        manifest.push(json!({"Config": cfg, "RepoTags": img.tags, "Layers": layers}));
        let (repo, tag) = img.tags[0].split_once(':').unwrap();
        repos.insert(repo.to_string(), json!({ tag: parent.unwrap() }));
    }
    e.push(file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    ));
    e.push(file(
        "repositories",
        &serde_json::to_vec(&Value::Object(repos)).unwrap(),
    ));
    tar(&e)
}

#[test]
fn load_an_older_docker_archive_with_a_symlinked_layer() {
    let env = Env::new();
    let (a, b) = two_sharing();
    let archive = old_docker_archive(&a, &b);
    assert!(
        read_tar(&archive).iter().any(|e| e.1 == 'l'),
        "has a symlink"
    );
    let r = env.load(&archive);
    assert_eq!(r.lines(), ["Loaded image: shared/a:1", "Loaded image: b:2"]);
    let mut want = vec![a.id(), b.id()];
    want.sort();
    assert_eq!(env.ids(), want);
    assert_eq!(env.snapshots().len(), 3, "the shared base layer once");
    let v = env.inspect("b:2");
    assert_eq!(
        v["RootFS"]["Layers"],
        json!([digest(&b.layers[0]), digest(&b.layers[1])])
    );
    let out = env.out_path("b.tar");
    env.run(&[
        "export",
        "-o",
        &out,
        v["GraphDriver"]["Data"]["Snapshot"].as_str().unwrap(),
    ])
    .ok();
    let f = tar_files(&std::fs::read(&out).unwrap());
    assert_eq!(f["base/os"], vec![9u8; 4000]);
    assert_eq!(f["b/f"], b"bb");
    env.assert_blobs_verified();
}

#[test]
fn load_an_oci_layout_archive_with_gzip_layers() {
    let env = Env::new();
    let l0 = layer("etc", "issue", b"oci\n");
    let l1 = layer("opt", "tool", &[3u8; 2000]);
    let img = Img {
        config: config(&[l0.clone(), l1.clone()], T0, json!({})),
        layers: vec![gzip(&l0), gzip(&l1)],
        tags: vec!["quay.io/org/tool:v1.2".into()],
    };
    let untagged = Img {
        config: config(std::slice::from_ref(&l0), T0, json!({"author": "x"})),
        layers: vec![gzip(&l0)],
        tags: vec!["latest".into()],
    };
    let archive = oci_archive(
        &[img.clone(), untagged.clone()],
        "org.opencontainers.image.ref.name",
    );
    assert!(!files(&archive).contains_key("manifest.json"));
    let r = env.load(&archive);
    assert_eq!(
        r.lines(),
        [
            "Loaded image: quay.io/org/tool:v1.2".to_string(),
            format!("Loaded image ID: {}", untagged.id()),
        ]
    );
    let v = env.inspect("quay.io/org/tool:v1.2");
    assert_eq!(v["Id"], img.id());
    assert_eq!(v["RootFS"]["Layers"], json!([digest(&l0), digest(&l1)]));
    assert_eq!(v["Size"], (l0.len() + l1.len()) as u64);
    // The compressed blobs are kept as they came.
    let blobs = env.blobs();
    for l in &img.layers {
        assert!(blobs.contains(&sha256_hex(l)));
    }
    // Saved back: uncompressed layers named by diff id.
    let f = files(&save_bytes(&env, &["quay.io/org/tool:v1.2"], "s.tar"));
    assert_eq!(f[&format!("blobs/sha256/{}", sha256_hex(&l1))], l1);
    env.assert_blobs_verified();
}

/// An index.json pointing at a nested index with one manifest per
/// platform; the manifests of the platforms in `absent` are left out of
/// the archive entirely.
fn multi_platform(imgs: &[(&Img, &str)], absent: &[&str]) -> Vec<u8> {
    let mut extra: Vec<Vec<u8>> = Vec::new();
    let mut descs = Vec::new();
    let mut present: Vec<Img> = Vec::new();
    for (img, arch) in imgs {
        let m = manifest(img);
        descs.push(desc(
            OCI_MANIFEST,
            &m,
            json!({}),
            Some(json!({"architecture": arch, "os": "linux"})),
        ));
        if !absent.contains(arch) {
            extra.push(m);
            present.push((*img).clone());
        }
    }
    let nested = index(descs);
    let mut e: Vec<Entry> = vec![dir("blobs/"), dir("blobs/sha256/")];
    let mut all: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in &present {
        all.insert(sha256_hex(&i.config), i.config.clone());
        for l in &i.layers {
            all.insert(sha256_hex(l), l.clone());
        }
    }
    for b in extra.iter().chain(std::iter::once(&nested)) {
        all.insert(sha256_hex(b), b.clone());
    }
    e.extend(
        all.iter()
            .map(|(h, b)| file(&format!("blobs/sha256/{h}"), b)),
    );
    e.push(file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#));
    e.push(file(
        "index.json",
        &index(vec![desc(
            OCI_INDEX,
            &nested,
            json!({"io.containerd.image.name": "docker.io/library/multi:1"}),
            None,
        )]),
    ));
    tar(&e)
}

fn platform_image(arch: &str) -> Img {
    let l = layer("arch", "name", arch.as_bytes());
    Img {
        config: config_for(&[digest(&l)], T0, json!({"architecture": arch})),
        layers: vec![gzip(&l)],
        tags: vec![],
    }
}

#[test]
fn load_a_nested_index_takes_only_the_host_platform() {
    let env = Env::new();
    let host = platform_image(host_arch());
    let other = platform_image(other_arch());
    let archive = multi_platform(
        &[(&other, other_arch()), (&host, host_arch())],
        &[other_arch()],
    );
    let r = env.load(&archive);
    assert_eq!(r.lines(), ["Loaded image: multi:1"]);
    assert_eq!(env.ids(), [host.id()]);
    let v = env.inspect("multi:1");
    assert_eq!(v["Architecture"], host_arch());
    assert_eq!(v["RepoDigests"].as_array().unwrap().len(), 1);
    // With every platform's blobs present, still only the host's.
    let env = Env::new();
    env.load(&multi_platform(
        &[(&other, other_arch()), (&host, host_arch())],
        &[],
    ));
    assert_eq!(env.ids(), [host.id()]);
    assert_eq!(env.snapshots().len(), 1);
}

#[test]
fn load_a_nested_index_without_the_host_platform_fails_cleanly() {
    let env = Env::new();
    env.import(&[("keep", b"k")], Some("keep:1"));
    let before = env.state();
    let s390 = platform_image("s390x");
    let ppc = platform_image("ppc64le");
    let p = env.input(
        "bad.tar",
        &multi_platform(&[(&s390, "s390x"), (&ppc, "ppc64le")], &[]),
    );
    env.run(&["load", "-i", &p])
        .fails_with(&["linux/s390x", "linux/ppc64le", host_arch()]);
    assert_eq!(env.state(), before);
}

#[test]
fn load_gzip_and_zstd_compressed_archives() {
    let (a, b) = two_sharing();
    let plain = docker_archive(&[a.clone(), b.clone()]);
    for (what, bytes) in [("gzip", gzip(&plain)), ("zstd", zstd(&plain))] {
        for stdin in [false, true] {
            let env = Env::new();
            let r = if stdin {
                env.run_stdin(&["load"], &bytes).ok()
            } else {
                let p = env.input("a.tar.x", &bytes);
                env.run(&["load", "-i", &p]).ok()
            };
            assert_eq!(
                r.lines(),
                ["Loaded image: shared/a:1", "Loaded image: b:2"],
                "{what}"
            );
            let mut want = vec![a.id(), b.id()];
            want.sort();
            assert_eq!(env.ids(), want, "{what}");
        }
    }
    // A compressed OCI archive with zstd layers, too.
    let env = Env::new();
    let l = layer("z", "f", b"zstd layer");
    let img = Img {
        config: config(std::slice::from_ref(&l), T0, json!({})),
        layers: vec![zstd(&l)],
        tags: vec!["z:1".into()],
    };
    let r = env.run_stdin(
        &["load"],
        &zstd(&oci_archive(
            std::slice::from_ref(&img),
            "io.containerd.image.name",
        )),
    );
    assert_eq!(r.ok().lines(), ["Loaded image: z:1"]);
    assert_eq!(env.inspect("z:1")["RootFS"]["Layers"], json!([digest(&l)]));
}

#[test]
fn load_one_image_listed_twice_under_two_names() {
    let (a, _) = two_sharing();
    let two = Img {
        tags: vec!["twice:2".into()],
        ..a.clone()
    };
    let a = Img {
        tags: vec!["twice:1".into()],
        ..a
    };
    for archive in [
        docker_archive(&[a.clone(), two.clone()]),
        oci_archive(&[a.clone(), two.clone()], "io.containerd.image.name"),
    ] {
        let env = Env::new();
        let p = env.input("twice.tar", &archive);
        let r = env.run(&["load", "-i", &p]).ok();
        assert_eq!(
            r.lines(),
            ["Loaded image: twice:1", "Loaded image: twice:2"]
        );
        assert_eq!(env.ids(), [a.id()]);
        assert_eq!(env.tags(), ["twice:1", "twice:2"]);
    }
}

#[test]
fn load_moves_a_tag_that_names_another_image() {
    let env = Env::new();
    let (a, b) = two_sharing();
    let a = Img {
        tags: vec!["moving:1".into()],
        ..a
    };
    let b = Img {
        tags: vec!["moving:1".into()],
        ..b
    };
    env.load(&docker_archive(std::slice::from_ref(&a)));
    assert_eq!(env.inspect("moving:1")["Id"], a.id());
    let r = env.load(&docker_archive(std::slice::from_ref(&b)));
    assert_eq!(r.lines(), ["Loaded image: moving:1"]);
    assert_eq!(env.inspect("moving:1")["Id"], b.id());
    let dangling = env
        .run(&["images", "-q", "--no-trunc", "--filter", "dangling=true"])
        .ok();
    assert_eq!(dangling.lines(), [a.id()]);
}

#[test]
fn save_names_each_reference_once() {
    let env = Env::new();
    env.import(&[("a", b"a")], Some("a:1"));
    env.run(&["tag", "a:1", "a:2"]).ok();
    let f = files(&save_bytes(&env, &["a:1", "a:1", "a:2", "a"], "d.tar"));
    let m: Value = serde_json::from_slice(&f["manifest.json"]).unwrap();
    assert_eq!(m[0]["RepoTags"], json!(["a:1", "a:2"]));
    let idx: Value = serde_json::from_slice(&f["index.json"]).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
}

#[test]
fn every_blob_a_kept_manifest_names_is_kept() {
    let env = Env::new();
    let l = layer("same", "f", b"same content");
    let cfg = |who: &str| config(std::slice::from_ref(&l), T0, json!({"author": who}));
    let a = Img {
        config: cfg("a"),
        layers: vec![gzip(&l)],
        tags: vec!["blobs/a:1".into()],
    };
    let b = Img {
        config: cfg("b"),
        layers: vec![zstd(&l)],
        tags: vec!["blobs/b:1".into()],
    };
    env.load(&oci_archive(
        std::slice::from_ref(&a),
        "io.containerd.image.name",
    ));
    env.load(&oci_archive(
        std::slice::from_ref(&b),
        "io.containerd.image.name",
    ));
    // (Any later command drops blobs no record names.)
    env.run(&["images"]).ok();
    let blobs = env.blobs();
    for img in [&a, &b] {
        assert!(blobs.contains(&sha256_hex(&manifest(img))), "manifest kept");
        for layer in &img.layers {
            assert!(
                blobs.contains(&sha256_hex(layer)),
                "{}: layer blob {} is gone",
                img.tags[0],
                digest(layer)
            );
        }
    }
}

/// Loads `archive` from a file (read in place: each layer once, while it
/// is applied) and from stdin (unpacked first) into two roots, and loads
/// the file again: every way ends with the same store, blobs and files.
fn file_and_stdin_agree(archive: &[u8], name: &str) {
    let by_file = Env::new();
    let by_stdin = Env::new();
    let first = by_file.load(archive);
    let r = by_stdin.run_stdin(&["load"], archive).ok();
    assert_eq!(first.lines(), r.lines());
    assert_eq!(by_file.ids(), by_stdin.ids());
    assert_eq!(by_file.blobs(), by_stdin.blobs());
    assert_eq!(by_file.snapshots(), by_stdin.snapshots());
    by_file.assert_blobs_verified();
    let export = |env: &Env| {
        let out = env.out_path("x.tar");
        env.run(&["create", "--name", "ctr", name]).ok();
        env.run(&["export", "-o", &out, "ctr"]).ok();
        files(&std::fs::read(out).unwrap())
    };
    assert_eq!(export(&by_file), export(&by_stdin));
    // Again from the file: the layers exist; the blobs are read and
    // checked again but not rewritten, and nothing else changes.
    let blobs = by_file.blobs();
    by_file.load(archive);
    assert_eq!(by_file.blobs(), blobs);
    by_file.assert_blobs_verified();
}

#[test]
fn a_file_is_loaded_in_place_as_stdin_is_unpacked() {
    let (a, b) = two_sharing();
    // docker-archive: layers promised by blobs/sha256 names.
    file_and_stdin_agree(&docker_archive(&[a.clone(), b.clone()]), "shared/a:1");
    // Old layout: layers named by v1 ids only (their diff id is expected).
    file_and_stdin_agree(&old_docker_archive(&a, &b), "b:2");
    // OCI layout with gzip layers: promised by their descriptors.
    let l0 = layer("etc", "issue", b"oci\n");
    let l1 = layer("opt", "tool", &[3u8; 300_000]);
    let gz = Img {
        config: config(&[l0.clone(), l1.clone()], T0, json!({})),
        layers: vec![gzip(&l0), gzip(&l1)],
        tags: vec!["quay.io/org/tool:v1".into()],
    };
    file_and_stdin_agree(
        &oci_archive(std::slice::from_ref(&gz), "io.containerd.image.name"),
        "quay.io/org/tool:v1",
    );
    // Old layout with a gzip layer nothing names: hashed before use.
    let old_gz = Img {
        layers: vec![gzip(&a.layers[0]), a.layers[1].clone()],
        ..a.clone()
    };
    file_and_stdin_agree(&old_docker_archive(&old_gz, &b), "shared/a:1");
}
