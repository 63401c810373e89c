//! `load` of hostile or damaged archives through the built binary on a
//! vfs root: each must fail with a message naming the problem, leave the
//! store exactly as it was (store file, blobs, snapshots, files) and write
//! nothing outside the root.
#![allow(clippy::unwrap_used)]

mod engine_common;

use engine_common::*;
use serde_json::{json, Value};

// ------------------------------------------------------ hostile archives

/// A root with one image already in it; `load` of `archive` must fail
/// with a message holding every one of `words` and leave the root exactly
/// as before, with nothing written outside it.
fn refused(archive: &[u8], words: &[&str], marker: &str) {
    let env = Env::new();
    env.import(&[("keep", b"k")], Some("keep:1"));
    let before = env.state();
    let p = env.input("bad.tar", archive);
    let r = env.run(&["load", "-i", &p]);
    assert_ne!(r.code, 0, "loaded: {}", r.stdout);
    assert_ne!(r.code, 101, "panicked: {}", r.stderr);
    for w in words {
        assert!(r.stderr.contains(w), "stderr lacks {w:?}: {}", r.stderr);
    }
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert_eq!(env.state(), before, "the store changed: {}", r.stderr);
    env.assert_nothing_outside_root(&["bad.tar", "rootfs.tar"], marker);
    assert_eq!(env.tags(), ["keep:1"]);
    // From stdin: the same.
    let r = env.run_stdin(&["load"], archive);
    assert_ne!(r.code, 0);
    assert_eq!(env.state(), before);
}

#[test]
fn refuses_a_blob_whose_content_does_not_match_its_digest() {
    // OCI layout: a layer blob changed, its name and descriptor kept.
    let (a, _) = two_sharing();
    let mut e = oci_archive_entries(std::slice::from_ref(&a), "io.containerd.image.name");
    let name = format!("blobs/sha256/{}", sha256_hex(&a.layers[1]));
    let mut changed = a.layers[1].clone();
    let n = changed.len();
    changed[n - 2000] ^= 1;
    replace(&mut e, &name, &changed);
    refused(&tar(&e), &["digest", &sha256_hex(&a.layers[1])], "nomarker");
}

#[test]
fn refuses_a_docker_archive_blob_whose_content_does_not_match_its_name() {
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    let name = format!("blobs/sha256/{}", sha256_hex(&a.config));
    let mut cfg: Value = serde_json::from_slice(&a.config).unwrap();
    cfg["author"] = json!("mallory");
    replace(&mut e, &name, &serde_json::to_vec(&cfg).unwrap());
    refused(&tar(&e), &["digest"], "nomarker");
}

#[test]
fn refuses_a_layer_whose_diff_id_differs_from_the_config() {
    let (a, b) = two_sharing();
    // Config claims b's top layer; the archive carries a's.
    let diff_ids = vec![digest(&a.layers[0]), digest(&b.layers[1])];
    let bad = Img {
        config: config_for(&diff_ids, T0, json!({})),
        ..a.clone()
    };
    refused(
        &docker_archive(&[bad]),
        &["diff id", &digest(&a.layers[1]), &digest(&b.layers[1])],
        "nomarker",
    );
}

#[test]
fn refuses_a_missing_layer_file() {
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    let name = format!("blobs/sha256/{}", sha256_hex(&a.layers[1]));
    e.retain(|x| x.name != name);
    refused(
        &tar(&e),
        &["missing", &sha256_hex(&a.layers[1])],
        "nomarker",
    );
    // And in an OCI layout.
    let mut e = oci_archive_entries(std::slice::from_ref(&a), "io.containerd.image.name");
    e.retain(|x| x.name != name);
    refused(
        &tar(&e),
        &["missing", &sha256_hex(&a.layers[1])],
        "nomarker",
    );
}

#[test]
fn refuses_a_truncated_tar() {
    let (a, b) = two_sharing();
    let full = docker_archive(&[a, b]);
    // Cut in the middle of the blobs (the manifest comes last).
    refused(&full[..full.len() / 2 + 100], &["damaged"], "nomarker");
    // Also compressed.
    let gz = gzip(&full);
    refused(&gz[..gz.len() / 2], &["archive"], "nomarker");
}

#[test]
fn refuses_a_file_that_is_not_a_tar() {
    refused(
        &b"this is not an archive at all\n".repeat(100),
        &["archive"],
        "nomarker",
    );
    refused(b"", &["manifest.json", "index.json"], "nomarker");
}

#[test]
fn refuses_an_entry_climbing_out_of_the_archive() {
    let marker = "thinsnap-test-escape-dotdot";
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    e.insert(0, file(&format!("../{marker}"), b"escaped"));
    refused(&tar(&e), &["climbs out"], marker);
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    e.push(file(&format!("blobs/../../../../{marker}"), b"escaped"));
    refused(&tar(&e), &["climbs out"], marker);
}

#[test]
fn refuses_an_absolute_entry_name() {
    let marker = "thinsnap-test-escape-absolute";
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    e.insert(0, file(&format!("/tmp/{marker}"), b"escaped"));
    refused(&tar(&e), &["absolute"], marker);
}

#[test]
fn refuses_links_leading_out_of_the_archive() {
    let marker = "thinsnap-test-escape-link";
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    e.insert(0, symlink("blobs/evil", &format!("../../{marker}")));
    refused(&tar(&e), &["climbs out"], marker);
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    e.insert(
        0,
        Entry {
            name: "blobs/hard".into(),
            kind: Kind::Hardlink("/etc/passwd".into()),
            mode: 0o644,
        },
    );
    refused(&tar(&e), &["absolute"], marker);
}

#[test]
fn refuses_a_device_entry() {
    let (a, _) = two_sharing();
    for kind in [Kind::Char(1, 3), Kind::Fifo] {
        let mut e = docker_archive_entries(std::slice::from_ref(&a));
        e.insert(
            0,
            Entry {
                name: "blobs/dev".into(),
                kind,
                mode: 0o666,
            },
        );
        refused(&tar(&e), &["blobs/dev", "not a regular file"], "nomarker");
    }
}

#[test]
fn refuses_a_manifest_json_over_20_mib() {
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    let m = match &e.last().unwrap().kind {
        Kind::File(d) => d.clone(),
        _ => unreachable!(),
    };
    // Valid JSON, padded with blanks past the limit.
    let mut big = m.clone();
    big.extend(std::iter::repeat_n(b' ', (20 << 20) + 1 - m.len()));
    assert_eq!(big.len(), (20 << 20) + 1);
    replace(&mut e, "manifest.json", &big);
    refused(&tar(&e), &["manifest.json", "limit"], "nomarker");
    // An index.json over the limit in an OCI layout, too.
    let mut e = oci_archive_entries(std::slice::from_ref(&a), "io.containerd.image.name");
    let idx = match &e.last().unwrap().kind {
        Kind::File(d) => d.clone(),
        _ => unreachable!(),
    };
    let mut big = idx.clone();
    big.extend(std::iter::repeat_n(b'\n', (20 << 20) + 1 - idx.len()));
    replace(&mut e, "index.json", &big);
    refused(&tar(&e), &["index.json", "limit"], "nomarker");
}

#[test]
fn refuses_a_layer_with_a_dotdot_escape() {
    let marker = "thinsnap-test-escape-layer";
    let (a, _) = two_sharing();
    let deep = format!("{}tmp/{marker}", "../".repeat(16));
    for evil in [
        tar(&[dir("ok/"), file(&format!("../{marker}"), b"x")]),
        tar(&[dir("ok/"), file(&deep, b"x")]),
        tar(&[file(&format!("/{marker}"), b"x")]),
        // A symlink out, then a write through it.
        tar(&[
            symlink("up", "../../../../../../../../../../tmp"),
            file(&format!("up/{marker}"), b"x"),
        ]),
    ] {
        let img = Img {
            config: config(&[a.layers[0].clone(), evil.clone()], T0, json!({})),
            layers: vec![a.layers[0].clone(), evil],
            tags: vec!["evil:1".into()],
        };
        refused(&docker_archive(&[img]), &["layer"], marker);
    }
}

#[test]
fn refuses_a_config_with_fewer_diff_ids_than_layers() {
    let (a, _) = two_sharing();
    let bad = Img {
        config: config(&a.layers[..1], T0, json!({})),
        ..a.clone()
    };
    refused(
        &docker_archive(&[bad]),
        &["1 layers", "gives 2"],
        "nomarker",
    );
    // More diff ids than layers.
    let bad = Img {
        config: config(
            &[
                a.layers[0].clone(),
                a.layers[1].clone(),
                layer("x", "y", b"z"),
            ],
            T0,
            json!({}),
        ),
        ..a.clone()
    };
    refused(
        &docker_archive(&[bad]),
        &["3 layers", "gives 2"],
        "nomarker",
    );
}

#[test]
fn a_bad_second_image_undoes_the_first() {
    let (a, b) = two_sharing();
    let bad_b = Img {
        config: config(&b.layers[..1], T0, json!({})),
        ..b.clone()
    };
    refused(
        &docker_archive(&[a.clone(), bad_b]),
        &["layers"],
        "nomarker",
    );
    // The same with a diff id mismatch in the second image's top layer.
    let bad_b = Img {
        config: config_for(
            &[digest(&b.layers[0]), digest(&layer("c", "f", b"c"))],
            T0,
            json!({}),
        ),
        ..b
    };
    refused(&docker_archive(&[a, bad_b]), &["diff id"], "nomarker");
}

#[test]
fn refuses_malformed_documents() {
    let (a, _) = two_sharing();
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    replace(&mut e, "manifest.json", b"[{\"Config\": 7}]");
    refused(&tar(&e), &["manifest.json"], "nomarker");
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    replace(&mut e, "manifest.json", b"[]");
    refused(&tar(&e), &["no images"], "nomarker");
    let mut e = docker_archive_entries(std::slice::from_ref(&a));
    let m = serde_json::to_vec(&json!([{
        "Config": format!("blobs/sha256/{}", sha256_hex(&a.config)),
        "RepoTags": ["Bad:Name"],
        "Layers": a.layers.iter().map(|l| format!("blobs/sha256/{}", sha256_hex(l))).collect::<Vec<_>>(),
    }]))
    .unwrap();
    replace(&mut e, "manifest.json", &m);
    refused(&tar(&e), &["Bad:Name"], "nomarker");
    // A descriptor size that does not match the blob.
    let mut e = oci_archive_entries(std::slice::from_ref(&a), "io.containerd.image.name");
    let m = manifest(&a);
    let mut mv: Value = serde_json::from_slice(&m).unwrap();
    mv["layers"][0]["size"] = json!(12);
    let m2 = serde_json::to_vec(&mv).unwrap();
    e.retain(|x| x.name != format!("blobs/sha256/{}", sha256_hex(&m)));
    e.insert(2, file(&format!("blobs/sha256/{}", sha256_hex(&m2)), &m2));
    replace(
        &mut e,
        "index.json",
        &index(vec![desc(OCI_MANIFEST, &m2, json!({}), None)]),
    );
    refused(&tar(&e), &["bytes"], "nomarker");
}

#[test]
fn refuses_a_wrong_layer_even_when_its_chain_is_already_stored() {
    let env = Env::new();
    let (a, b) = two_sharing();
    env.load(&docker_archive(std::slice::from_ref(&a)));
    let before = env.state();
    // Same diff ids as `a` (so the same chain), another config, and b's
    // top layer in the place of a's.
    let bad = Img {
        config: config(&a.layers, "2024-01-01T00:00:00Z", json!({})),
        layers: vec![a.layers[0].clone(), b.layers[1].clone()],
        tags: vec!["bad:1".into()],
    };
    let p = env.input("bad.tar", &docker_archive(&[bad]));
    env.run(&["load", "-i", &p]).fails_with(&["diff id"]);
    assert_eq!(env.state(), before);
}
