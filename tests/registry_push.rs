//! `thinsnap push` seen from the registry side: blobs the registry has are
//! not uploaded again (HEAD), a push to another repository of the same
//! registry mounts the layers (`POST …/uploads/?mount=&from=`) instead of
//! uploading them, on the fault server and on docker-registry, and chunked
//! uploads (`push_chunk_size`) round-trip with identical digests.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod registry_common;

use engine_common::*;
use registry_common::*;
use serde_json::Value;

/// An image of two layers (a commit on top of an import), tagged `name`.
fn two_layer_image(c: &Client, name: &str, big: usize) -> String {
    c.env.import(
        &[("base/data", &noise("push-base", big)), ("base/x", b"x")],
        Some("tmp/base:1"),
    );
    c.run(&["create", "--name", "work", "tmp/base:1"]).ok();
    let m = c.run(&["mount", "work"]).ok().stdout.trim().to_string();
    std::fs::write(std::path::Path::new(&m).join("added"), b"second layer").unwrap();
    c.run(&["commit", "work", name]).ok();
    c.run(&["rm", "-f", "work"]).ok();
    c.env.inspect(name)["Id"].as_str().unwrap().to_string()
}

/// Manifest of `repo:tag` on the fault server, parsed.
fn manifest_json(fs: &FaultServer, repo: &str, tag: &str) -> (Vec<u8>, Value) {
    let (_, b) = fs.manifest(repo, tag).unwrap();
    let v = serde_json::from_slice(&b).unwrap();
    (b, v)
}

#[test]
fn push_uploads_each_blob_once_and_skips_what_the_registry_has() {
    let fs = FaultServer::start();
    let c = Client::new();
    let id = two_layer_image(&c, "local/p:1", 100_000);
    let r = format!("{}/team/a:1", fs.host());
    c.run(&["tag", "local/p:1", &r]).ok();
    let out = c.run(&["push", &r]).ok();
    let (d, size) = push_line(&out);
    let (raw, m) = manifest_json(&fs, "team/a", "1");
    assert_eq!(digest(&raw), d);
    assert_eq!(raw.len() as u64, size);
    assert_eq!(m["config"]["digest"], id);
    let layers = manifest_layers(&raw);
    assert_eq!(layers.len(), 2);
    for b in layers.iter().chain([&id]) {
        assert!(fs.has_blob("team/a", b), "{b} uploaded");
        // Exactly one upload finished with this digest.
        let puts = fs
            .log()
            .into_iter()
            .filter(|l| {
                (l.method == "PUT" || l.method == "POST")
                    && l.query("digest").as_deref() == Some(b.as_str())
                    && l.status == 201
            })
            .count();
        assert_eq!(puts, 1, "{b} uploaded once");
    }
    // Again: HEADs only, no upload, the same digest.
    fs.clear_log();
    let again = c.run(&["push", &r]).ok();
    assert_eq!(push_line(&again).0, d);
    let log = fs.log();
    assert!(
        !log.iter()
            .any(|l| l.path().contains("/blobs/uploads") || l.method == "PATCH"),
        "nothing uploaded: {log:?}"
    );
    for b in layers.iter().chain([&id]) {
        assert!(fs.count("HEAD", b) >= 1, "{b} checked with HEAD");
    }
}

#[test]
fn push_to_another_repository_mounts_the_blobs() {
    let fs = FaultServer::start();
    let c = Client::new();
    let id = two_layer_image(&c, "local/m:1", 50_000);
    let a = format!("{}/team/a:1", fs.host());
    let b = format!("{}/team/b:1", fs.host());
    c.run(&["tag", "local/m:1", &a]).ok();
    c.run(&["tag", "local/m:1", &b]).ok();
    let da = push_line(&c.run(&["push", &a]).ok()).0;
    fs.clear_log();
    let db = push_line(&c.run(&["push", &b]).ok()).0;
    assert_eq!(da, db, "the same manifest");
    let (raw, _) = manifest_json(&fs, "team/b", "1");
    let layers = manifest_layers(&raw);
    let log = fs.log();
    for l in &layers {
        assert!(
            log.iter().any(|x| x.method == "POST"
                && x.query("mount").as_deref() == Some(l.as_str())
                && x.query("from").as_deref() == Some("team/a")
                && x.status == 201),
            "{l} mounted from team/a: {log:?}"
        );
        assert!(fs.has_blob("team/b", l));
    }
    assert!(fs.has_blob("team/b", &id));
    // No blob data was sent: no PATCH, no upload PUT, no body on any POST.
    assert!(
        !log.iter().any(|x| x.method == "PATCH"
            || (x.method == "PUT" && x.path().contains("/blobs/uploads"))
            || (x.method == "POST"
                && x.body_len > 0
                && x.query("digest").is_some_and(|d| layers.contains(&d)))),
        "{log:?}"
    );
}

#[test]
fn cross_repository_mount_on_docker_registry() {
    if !have_registry() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let rec = Recorder::start(&reg.host);
    let c = Client::new();
    two_layer_image(&c, "local/m:1", 50_000);
    let a = format!("{}/team/a:1", rec.host());
    let b = format!("{}/other/b:1", rec.host());
    c.run(&["tag", "local/m:1", &a]).ok();
    c.run(&["tag", "local/m:1", &b]).ok();
    let da = push_line(&c.run(&["push", &a]).ok()).0;
    rec.clear();
    let db = push_line(&c.run(&["push", &b]).ok()).0;
    assert_eq!(da, db);
    let log = rec.log();
    let (_, _, raw) = http(
        &reg.host,
        "GET",
        "/v2/other/b/manifests/1",
        &[("Accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))],
        b"",
    );
    assert_eq!(digest(&raw), db);
    for l in manifest_layers(&raw) {
        assert!(
            log.iter().any(|x| x.method == "POST"
                && x.query("mount").as_deref() == Some(l.as_str())
                && x.query("from").as_deref() == Some("team/a")
                && x.status == 201),
            "{l} mounted: {log:?}"
        );
    }
    assert!(
        !log.iter().any(|x| x.method == "PATCH"),
        "no layer data sent again: {log:?}"
    );
}

#[test]
fn chunked_push_round_trips_through_docker_registry() {
    if !have_registry() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let rec = Recorder::start(&reg.host);
    let c = Client::with_registry(&format!("{FAST}push_chunk_size = \"64KiB\"\n"));
    let id = two_layer_image(&c, "local/big:1", 300_000);
    let r = format!("{}/chunk/big:1", rec.host());
    c.run(&["tag", "local/big:1", &r]).ok();
    let d = push_line(&c.run(&["push", &r]).ok()).0;
    let log = rec.log();
    let patches: Vec<&Logged> = log.iter().filter(|l| l.method == "PATCH").collect();
    // The big layer (~300 KB, incompressible) alone needs at least 5 chunks.
    assert!(patches.len() >= 5, "{} PATCH requests", patches.len());
    assert!(
        patches
            .iter()
            .all(|p| p.body_len <= 64 * 1024 && p.status == 202),
        "chunks of at most 64 KiB, all accepted: {:?}",
        patches
            .iter()
            .map(|p| (p.body_len, p.status))
            .collect::<Vec<_>>()
    );
    // Pull it back into a fresh root.
    let b = Client::new();
    let out = b.run(&["pull", &r]).ok();
    assert_eq!(digest_line(&out), Some(d.clone()));
    assert_eq!(b.env.inspect(&r)["Id"], id);
    assert_eq!(b.rootfs(&r), c.rootfs("local/big:1"));
    // The registry's copy hashes right (it verified each blob on PUT).
    let (_, _, raw) = http(
        &reg.host,
        "GET",
        "/v2/chunk/big/manifests/1",
        &[("Accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))],
        b"",
    );
    assert_eq!(digest(&raw), d);
    for l in manifest_layers(&raw) {
        let (st, _, blob) = http(
            &reg.host,
            "GET",
            &format!("/v2/chunk/big/blobs/{l}"),
            &[],
            b"",
        );
        assert_eq!(st, 200);
        assert_eq!(digest(&blob), l);
    }
}
