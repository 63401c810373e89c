//! `thinsnap pull` against a registry that misbehaves (the fault server):
//! each fault gives its outcome, and every failed pull leaves the store
//! exactly as it was (no image, no blob, nothing in `engine/tmp`). Faults
//! that are transient (5xx, 429, truncated or stalled bodies) are retried
//! and give the right image; a cut body resumes with `Range` when the
//! server answers 206 and restarts when it answers 200.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod registry_common;

use std::time::{Duration, Instant};

use engine_common::*;
use registry_common::*;
use serde_json::json;

const ALWAYS: usize = usize::MAX;

/// A fault server with one image `f/img:1` (three layers, the middle one
/// 300 KB of noise).
fn server() -> (FaultServer, RegImage, String) {
    let fs = FaultServer::start();
    let img = RegImage::oci("faults", host_arch(), &[2000, 300_000, 10]);
    fs.put_image("f/img", "1", &img);
    let r = format!("{}/f/img:1", fs.host());
    (fs, img, r)
}

/// Statuses of the requests (any method) whose path contains `part`.
fn statuses(fs: &FaultServer, part: &str) -> Vec<u16> {
    fs.log()
        .iter()
        .filter(|l| l.path().contains(part))
        .map(|l| l.status)
        .collect()
}

/// Pulls `r` expecting failure with all of `words` in stderr; the store is
/// untouched.
#[track_caller]
fn pull_fails(c: &Client, r: &str, words: &[&str]) -> Run {
    let before = c.env.state();
    let out = c.run(&["pull", r]).fails_with(words);
    c.assert_untouched(&before);
    out
}

#[test]
fn blob_with_the_wrong_bytes_is_refused() {
    let (fs, img, r) = server();
    let l = img.layer_digests()[1].clone();
    let mut evil = img.layers[1].clone();
    evil[1000] ^= 0xff;
    fs.fault(
        Fault::BlobBytes {
            digest: l.clone(),
            bytes: evil,
        },
        ALWAYS,
    );
    let c = Client::seeded();
    pull_fails(&c, &r, &["digest mismatch"]);
    // The config too.
    let (fs, img, r) = server();
    fs.fault(
        Fault::BlobBytes {
            digest: img.id(),
            bytes:
                br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                    .to_vec(),
        },
        ALWAYS,
    );
    pull_fails(&c, &r, &["digest mismatch"]);
}

#[test]
fn manifest_digest_mismatch_is_refused() {
    // The Docker-Content-Digest header does not match the bytes.
    let (fs, _, r) = server();
    fs.fault(
        Fault::ManifestHeader {
            digest: digest(b"something else"),
        },
        ALWAYS,
    );
    let c = Client::seeded();
    pull_fails(&c, &r, &["digest mismatch"]);
    // Asked by digest, answered with another (valid) manifest.
    let (fs, img, _) = server();
    let other = RegImage::oci("other", host_arch(), &[10]);
    for b in other.blobs() {
        fs.put_blob("f/img", &b);
    }
    fs.fault(
        Fault::ManifestBytes {
            reference: img.digest(),
            bytes: other.manifest.clone(),
        },
        ALWAYS,
    );
    let r = format!("{}/f/img@{}", fs.host(), img.digest());
    pull_fails(&c, &r, &["digest mismatch"]);
}

#[test]
fn truncated_body_resumes_with_range() {
    let (fs, img, r) = server();
    let l = img.layer_digests()[1].clone();
    fs.fault(
        Fault::Truncate {
            digest: l.clone(),
            keep: 100_000,
        },
        1,
    );
    let c = Client::new();
    c.run(&["pull", &r]).ok();
    c.assert_image(&r, &img);
    c.env.assert_blobs_verified();
    let gets = fs.requests("GET", &l);
    assert_eq!(gets.len(), 2, "one cut, one resumed: {gets:?}");
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(gets[1].header("range"), Some("bytes=100000-"));
    assert_eq!(gets[1].status, 206);
}

#[test]
fn truncated_body_restarts_when_the_server_ignores_range() {
    let (fs, img, r) = server();
    fs.set_range(false);
    let l = img.layer_digests()[1].clone();
    fs.fault(
        Fault::Truncate {
            digest: l.clone(),
            keep: 100_000,
        },
        2,
    );
    let c = Client::new();
    c.run(&["pull", &r]).ok();
    c.assert_image(&r, &img);
    c.env.assert_blobs_verified();
    let gets = fs.requests("GET", &l);
    assert_eq!(gets.len(), 3, "two cuts, then the whole blob: {gets:?}");
    assert!(gets.iter().all(|g| g.status == 200));
}

#[test]
fn truncated_every_time_fails_after_the_retries() {
    let (fs, img, r) = server();
    let l = img.layer_digests()[1].clone();
    fs.set_range(false);
    fs.fault(
        Fault::Truncate {
            digest: l.clone(),
            keep: 1000,
        },
        ALWAYS,
    );
    let c = Client::seeded();
    c.set_registry("retries = 2\nretry_base_ms = 10\ntimeout_secs = 10\n");
    pull_fails(&c, &r, &[]);
    assert_eq!(fs.requests("GET", &l).len(), 3, "1 attempt + 2 retries");
}

#[test]
fn stalled_body_times_out_and_is_retried() {
    let (fs, img, r) = server();
    let l = img.layer_digests()[1].clone();
    fs.fault(
        Fault::Slow {
            digest: l.clone(),
            chunk: 1000,
            pause: Duration::from_millis(2500),
        },
        1,
    );
    let c = Client::with_registry("retries = 2\nretry_base_ms = 10\ntimeout_secs = 1\n");
    let t = Instant::now();
    c.run(&["pull", &r]).ok();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    c.assert_image(&r, &img);
    assert_eq!(
        fs.requests("GET", &l).len(),
        2,
        "the stalled attempt and one more"
    );
    // Stalled every time: fails, and the store is as before.
    let (fs, img, r) = server();
    let l = img.layer_digests()[1].clone();
    fs.fault(
        Fault::Slow {
            digest: l.clone(),
            chunk: 1000,
            pause: Duration::from_millis(2500),
        },
        ALWAYS,
    );
    let c = Client::seeded();
    c.set_registry("retries = 1\nretry_base_ms = 10\ntimeout_secs = 1\n");
    let t = Instant::now();
    pull_fails(&c, &r, &[]);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(fs.requests("GET", &l).len(), 2);
}

#[test]
fn server_errors_are_retried_then_given_up() {
    let (fs, img, r) = server();
    let l = img.layer_digests()[0].clone();
    fs.fault(
        Fault::Status {
            path: "/manifests/1".into(),
            method: None,
            status: 500,
            retry_after: None,
        },
        3,
    );
    fs.fault(
        Fault::Status {
            path: l.clone(),
            method: Some("GET".into()),
            status: 503,
            retry_after: None,
        },
        2,
    );
    let c = Client::new();
    c.run(&["pull", &r]).ok();
    c.assert_image(&r, &img);
    // (HEAD or GET: whatever the client sends, it retried.)
    let st = statuses(&fs, "/manifests/1");
    assert_eq!(st[..4], [500, 500, 500, 200], "manifest: {st:?}");
    let st = statuses(&fs, &l);
    assert_eq!(st, [503, 503, 200], "layer: {st:?}");

    // Always 500: 1 + retries attempts, then failure, store untouched.
    let (fs, _, r) = server();
    fs.fault(
        Fault::Status {
            path: "/manifests/".into(),
            method: None,
            status: 500,
            retry_after: None,
        },
        ALWAYS,
    );
    let c = Client::seeded();
    c.set_registry("retries = 2\nretry_base_ms = 10\ntimeout_secs = 10\n");
    pull_fails(&c, &r, &[]);
    assert_eq!(
        statuses(&fs, "/manifests/1"),
        [500; 3],
        "1 attempt + 2 retries"
    );
    // A 4xx other than 429 is not retried.
    let (fs, img, r) = server();
    fs.fault(
        Fault::Status {
            path: img.layer_digests()[0].clone(),
            method: None,
            status: 403,
            retry_after: None,
        },
        ALWAYS,
    );
    pull_fails(&c, &r, &[]);
    assert_eq!(statuses(&fs, &img.layer_digests()[0]), [403]);
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let (fs, img, r) = server();
    let l = img.layer_digests()[2].clone();
    fs.fault(
        Fault::Status {
            path: l.clone(),
            method: Some("GET".into()),
            status: 429,
            retry_after: Some(1),
        },
        1,
    );
    let c = Client::new();
    c.run(&["pull", &r]).ok();
    c.assert_image(&r, &img);
    let gets = fs.requests("GET", &l);
    assert_eq!(
        gets.iter().map(|g| g.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = gets[1].at.duration_since(gets[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "waited only {waited:?} (Retry-After: 1)"
    );
}

#[test]
fn index_without_the_host_platform_is_refused() {
    let fs = FaultServer::start();
    let a = RegImage::oci("plat-a", "s390x", &[10]);
    let b = RegImage::oci("plat-b", "riscv64", &[10]);
    for i in [&a, &b] {
        for bl in i.blobs() {
            fs.put_blob("p/img", &bl);
        }
        fs.put_manifest("p/img", &i.digest(), &i.media_type, &i.manifest);
    }
    let (mt, idx) = index_of(&[&a, &b], false);
    fs.put_manifest("p/img", "1", &mt, &idx);
    let c = Client::seeded();
    let out = pull_fails(&c, &format!("{}/p/img:1", fs.host()), &[]);
    let want = format!("linux/{}", host_arch());
    assert!(
        out.stderr.contains(&want) || out.stderr.contains("platform"),
        "{}",
        out.stderr
    );
    assert_eq!(fs.count("GET", "/blobs/"), 0, "no blob fetched");
}

#[test]
fn schema1_manifests_are_refused_clearly() {
    let fs = FaultServer::start();
    let s1 = serde_json::to_vec(&json!({
        "schemaVersion": 1, "name": "old/img", "tag": "1", "architecture": host_arch(),
        "fsLayers": [{"blobSum": digest(b"x")}],
        "history": [{"v1Compatibility": "{\"id\":\"abc\"}"}],
    }))
    .unwrap();
    fs.put_manifest("old/img", "1", SCHEMA1, &s1);
    fs.put_manifest("old/img", "2", SCHEMA1_SIGNED, &s1);
    let c = Client::seeded();
    for tag in ["1", "2"] {
        pull_fails(&c, &format!("{}/old/img:{tag}", fs.host()), &["schema 1"]);
    }
}

#[test]
fn oversized_manifest_is_refused() {
    let fs = FaultServer::start();
    let img = RegImage::oci("huge", host_arch(), &[10]);
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["annotations"] = json!({"pad": "x".repeat(4 * 1024 * 1024 + 10)});
    let big = serde_json::to_vec(&m).unwrap();
    for b in img.blobs() {
        fs.put_blob("big/img", &b);
    }
    fs.put_manifest("big/img", "1", OCI_MANIFEST, &big);
    let c = Client::seeded();
    let out = pull_fails(&c, &format!("{}/big/img:1", fs.host()), &[]);
    assert!(
        out.stderr.contains("too large") || out.stderr.contains("limit"),
        "{}",
        out.stderr
    );
    assert_eq!(fs.count("GET", "/blobs/"), 0);
}

#[test]
fn layer_that_does_not_match_its_diff_id_is_refused() {
    // Every blob matches its descriptor; only the uncompressed content of
    // the second layer differs from what the config promises.
    let fs = FaultServer::start();
    let mut img = RegImage::oci("diffid", host_arch(), &[2000, 3000]);
    let mut cfg: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    cfg["rootfs"]["diff_ids"][1] = json!(digest(b"another layer"));
    img.config = serde_json::to_vec(&cfg).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&img.manifest).unwrap();
    m["config"]["digest"] = json!(digest(&img.config));
    m["config"]["size"] = json!(img.config.len());
    img.manifest = serde_json::to_vec(&m).unwrap();
    fs.put_image("f/bad", "1", &img);
    let c = Client::seeded();
    // The first layer was applied before the second failed: rolled back too.
    pull_fails(
        &c,
        &format!("{}/f/bad:1", fs.host()),
        &["diff id", "digest mismatch"],
    );
}
