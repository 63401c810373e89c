//! `thinsnap pull` and `push` through the built binary on vfs roots:
//! a round trip through docker-registry (image id, files, manifest digest
//! and size as push printed them, the output lines of pull), OCI and
//! Docker schema 2 images, multi-platform indexes and manifest lists,
//! pulls by digest (RepoDigests, `images --digests`) and missing
//! repositories or tags (exit 3, store untouched), and parallel downloads
//! bounded by `max_concurrent_downloads`.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod registry_common;

use engine_common::*;
use registry_common::*;

/// The files of the test image made with `import`.
fn app_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("app/bin", noise("app-bin", 50_000)),
        ("app/conf/settings", b"debug = false\n".to_vec()),
        ("etc/motd", b"hello from the registry\n".to_vec()),
    ]
}

fn import_app(c: &Client, name: &str) -> String {
    let files = app_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    c.env.import(&refs, Some(name))
}

#[test]
fn push_then_pull_back_gives_the_same_image() {
    if !have_registry() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let a = Client::new();
    let id = import_app(&a, "local/app:1");
    let r = format!("{}/rt/app:v1", reg.host);
    a.run(&["tag", "local/app:1", &r]).ok();
    let p = a.run(&["push", &r]).ok();
    let (d, size) = push_line(&p);
    assert!(
        p.stdout
            .lines()
            .any(|l| l.starts_with("v1: digest: sha256:")),
        "{}",
        p.stdout
    );
    // What push printed is what the registry holds.
    let (st, hs, raw) = http(
        &reg.host,
        "GET",
        "/v2/rt/app/manifests/v1",
        &[("Accept", &format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}"))],
        b"",
    );
    assert_eq!(st, 200);
    assert_eq!(digest(&raw), d);
    assert_eq!(raw.len() as u64, size);
    assert_eq!(header_in(&hs, "docker-content-digest"), Some(d.as_str()));
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["config"]["digest"], id);
    // push -q prints name@digest only.
    let q = a.run(&["push", "-q", &r]).ok();
    assert_eq!(q.stdout.trim(), format!("{}/rt/app@{d}", reg.host));

    let b = Client::new();
    let pulled = b.run(&["pull", &r]).ok();
    assert_eq!(
        digest_line(&pulled).as_deref(),
        Some(d.as_str()),
        "{}",
        pulled.stdout
    );
    assert!(
        pulled
            .stdout
            .contains(&format!("Status: Downloaded newer image for {r}")),
        "{}",
        pulled.stdout
    );
    assert_eq!(pulled.lines().last().copied(), Some(r.as_str()));
    assert_eq!(b.env.inspect(&r)["Id"], id);
    let want: std::collections::BTreeMap<String, Vec<u8>> = app_files()
        .into_iter()
        .map(|(p, d)| (p.to_string(), d))
        .collect();
    let got = b.rootfs(&r);
    for (p, data) in &want {
        assert_eq!(got.get(p), Some(data), "{p}");
    }
    assert_eq!(got, a.rootfs("local/app:1"), "the same files on both sides");
    b.env.assert_blobs_verified();
    // Again: up to date, and nothing new.
    let before = b.env.state();
    let again = b.run(&["pull", &r]).ok();
    assert!(
        again
            .stdout
            .contains(&format!("Status: Image is up to date for {r}")),
        "{}",
        again.stdout
    );
    assert_eq!(b.env.state(), before);
    // -q: only the reference.
    let c = Client::new();
    let q = c.run(&["pull", "-q", &r]).ok();
    assert_eq!(q.stdout, format!("{r}\n"));
    assert_eq!(c.env.inspect(&r)["Id"], id);
}

#[test]
fn pulls_oci_and_docker_schema2_images() {
    let fs = FaultServer::start();
    let oci = RegImage::oci("ocipull", host_arch(), &[10_000, 200_000, 5]);
    let dock = RegImage::docker("dockpull", host_arch(), &[70_000, 3]);
    fs.put_image("lib/oci", "1", &oci);
    fs.put_image("lib/docker", "2", &dock);
    let c = Client::new();
    for (r, img) in [
        (format!("{}/lib/oci:1", fs.host()), &oci),
        (format!("{}/lib/docker:2", fs.host()), &dock),
    ] {
        let out = c.run(&["pull", &r]).ok();
        assert_eq!(digest_line(&out), Some(img.digest()), "{}", out.stdout);
        assert_eq!(out.lines().last().copied(), Some(r.as_str()));
        c.assert_image(&r, img);
    }
    c.env.assert_blobs_verified();
    // Every blob was fetched once (no needless retries).
    for img in [&oci, &dock] {
        for b in img.blobs() {
            assert_eq!(fs.count("GET", &digest(&b)), 1, "{}", digest(&b));
        }
    }
}

#[test]
fn multi_platform_images_pull_the_right_platform() {
    let fs = FaultServer::start();
    for (docker, repo) in [(false, "multi/oci"), (true, "multi/docker")] {
        let mk = |seed: &str, arch: &str| {
            if docker {
                RegImage::docker(seed, arch, &[1000, 2000])
            } else {
                RegImage::oci(seed, arch, &[1000, 2000])
            }
        };
        let host = mk(&format!("{repo}-host"), host_arch());
        let other = mk(&format!("{repo}-other"), other_arch());
        for i in [&host, &other] {
            for b in i.blobs() {
                fs.put_blob(repo, &b);
            }
            fs.put_manifest(repo, &i.digest(), &i.media_type, &i.manifest);
        }
        // The other platform first: the host's must be chosen, not the first.
        let (mt, idx) = index_of(&[&other, &host], docker);
        fs.put_manifest(repo, "latest", &mt, &idx);
        let r = format!("{}/{repo}:latest", fs.host());

        let c = Client::new();
        let out = c.run(&["pull", &r]).ok();
        c.assert_image(&r, &host);
        // The digest shown is the index's (what the tag points at).
        assert_eq!(digest_line(&out), Some(digest(&idx)), "{}", out.stdout);
        assert!(
            fs.count("GET", &other.layer_digests()[0]) == 0,
            "other platform's layers not fetched"
        );

        let d = Client::new();
        let plat = format!("linux/{}", other_arch());
        d.run(&["pull", "--platform", &plat, &r]).ok();
        let i = d.env.inspect(&r);
        assert_eq!(i["Id"], other.id());
        assert_eq!(i["Architecture"], other_arch());
        // An unknown platform is refused.
        let e = Client::seeded();
        let before = e.env.state();
        let f = e.run(&["pull", "--platform", "linux/s390x", &r]);
        assert_ne!(f.code, 0);
        assert!(
            f.stderr.contains("platform") || f.stderr.contains("linux/s390x"),
            "{}",
            f.stderr
        );
        e.assert_untouched(&before);
    }
}

#[test]
fn pull_by_digest_records_the_repo_digest() {
    let fs = FaultServer::start();
    let img = RegImage::oci("bydigest", host_arch(), &[4000]);
    fs.put_image("dig/img", "t", &img);
    let c = Client::new();
    let r = format!("{}/dig/img@{}", fs.host(), img.digest());
    let out = c.run(&["pull", &r]).ok();
    assert_eq!(digest_line(&out), Some(img.digest()));
    assert_eq!(out.lines().last().copied(), Some(r.as_str()));
    let i = c.env.inspect(&r);
    assert_eq!(i["Id"], img.id());
    let rd: Vec<String> = i["RepoDigests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(rd, vec![r.clone()]);
    // It was asked for by digest, not by tag.
    assert_eq!(fs.count("GET", "/manifests/t"), 0);
    let imgs = c.run(&["images", "--digests", "--no-trunc"]).ok();
    let rows = parse_table(&imgs.stdout);
    assert!(
        rows.iter()
            .any(|row| row.get("DIGEST") == Some(&img.digest())
                && row.get("REPOSITORY").map(String::as_str)
                    == Some(&format!("{}/dig/img", fs.host()))),
        "{}",
        imgs.stdout
    );
    c.assert_image(&r, &img);
    // rmi of the last tag of another repository keeps the image, which the
    // digest reference still names (Docker's rule); rmi of the reference
    // itself then deletes it.
    c.run(&["tag", &r, "chk:1"]).ok();
    let out = c.run(&["rmi", "chk:1"]).ok();
    assert_eq!(out.stdout.trim(), "Untagged: chk:1");
    assert_eq!(c.env.inspect(&r)["Id"], img.id());
    let out = c.run(&["rmi", &r]).ok();
    assert!(
        out.stdout.contains(&format!("Deleted: {}", img.id())),
        "{}",
        out.stdout
    );
    // Pulled by tag too: the last tag of the repository takes its digest
    // reference with it.
    let tagged = format!("{}/dig/img:t", fs.host());
    c.run(&["pull", &r]).ok();
    c.run(&["pull", &tagged]).ok();
    let out = c.run(&["rmi", &tagged]).ok();
    assert!(
        out.stdout.contains(&format!("Untagged: {r}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("Deleted: {}", img.id())),
        "{}",
        out.stdout
    );
}

#[test]
fn missing_repository_or_tag_is_exit_3_and_changes_nothing() {
    let fs = FaultServer::start();
    let img = RegImage::oci("present", host_arch(), &[100]);
    fs.put_image("here/img", "1", &img);
    let c = Client::seeded();
    let before = c.env.state();
    for r in [
        format!("{}/nowhere/img:1", fs.host()),
        format!("{}/here/img:2", fs.host()),
        format!("{}/here/img@{}", fs.host(), digest(b"no such manifest")),
    ] {
        c.run(&["pull", &r]).code(NOT_FOUND);
        c.assert_untouched(&before);
    }
    if have_registry() {
        let reg = DistRegistry::start(Auth::None);
        for r in [
            format!("{}/nowhere/img:1", reg.host),
            format!("{}/nowhere/img@{}", reg.host, digest(b"x")),
        ] {
            c.run(&["pull", &r]).code(NOT_FOUND);
            c.assert_untouched(&before);
        }
        // Pushing an image that is not here is refused too, and nothing is sent.
        c.run(&["push", &format!("{}/nowhere/img:1", reg.host)])
            .code(NOT_FOUND);
    }
}

#[test]
fn downloads_run_in_parallel_up_to_the_limit() {
    for limit in [1usize, 3] {
        let fs = FaultServer::start();
        let img = RegImage::oci(&format!("par{limit}"), host_arch(), &[100; 6]);
        fs.put_image("par/img", "1", &img);
        fs.set_blob_delay(std::time::Duration::from_millis(300));
        let c = Client::with_registry(&format!("{FAST}max_concurrent_downloads = {limit}\n"));
        let r = format!("{}/par/img:1", fs.host());
        c.run(&["pull", &r]).ok();
        c.assert_image(&r, &img);
        assert_eq!(
            fs.max_inflight(),
            limit,
            "max_concurrent_downloads = {limit}: blob GETs at once"
        );
    }
}
