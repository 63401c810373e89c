//! The registry test servers checked on their own, with `skopeo` and raw
//! HTTP as the client: docker-registry (plain, htpasswd, token auth, TLS
//! on 127.0.0.2), the token server, the recording proxy and the fault
//! server with its faults. The thinsnap registry tests rely on these.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod registry_common;

use std::time::{Duration, Instant};

use engine_common::*;
use registry_common::*;
use serde_json::Value;

/// An oci-archive of one small image, written under `dir`.
fn small_archive(dir: &std::path::Path) -> (String, Img) {
    // Gzip layers: skopeo would compress plain ones on the way to a registry.
    let tar = layer("srv", "f", b"hello registry");
    let img = Img {
        config: config(std::slice::from_ref(&tar), T0, serde_json::json!({})),
        layers: vec![gzip(&tar)],
        tags: vec!["x:1".into()],
    };
    let p = dir.join("small.tar");
    std::fs::write(
        &p,
        oci_archive(
            std::slice::from_ref(&img),
            "org.opencontainers.image.ref.name",
        ),
    )
    .unwrap();
    (format!("oci-archive:{}", p.display()), img)
}

#[test]
fn dist_registry_round_trips_with_skopeo() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = small_archive(tmp.path());
    let dst = format!("docker://{}/servers/plain:1", reg.host);
    skopeo(&["copy", "-q", "--dest-tls-verify=false", &src, &dst]);
    let raw = skopeo_raw(&format!("{}/servers/plain:1", reg.host), &[]);
    assert_eq!(manifest_layers(&raw), vec![digest(&img.layers[0])]);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["config"]["digest"], img.id());
    // The registry answers by digest with the same bytes.
    let (st, hs, body) = http(
        &reg.host,
        "GET",
        &format!("/v2/servers/plain/manifests/{}", digest(&raw)),
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    assert_eq!(st, 200);
    assert_eq!(body, raw);
    assert_eq!(
        header_in(&hs, "docker-content-digest"),
        Some(digest(&raw).as_str())
    );
}

#[test]
fn htpasswd_registry_wants_the_password() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = DistRegistry::start(Auth::Basic {
        user: "alice",
        pass: "s3cret",
    });
    let (st, hs, _) = http(&reg.host, "GET", "/v2/", &[], b"");
    assert_eq!(st, 401);
    assert!(header_in(&hs, "www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    let good = format!("Basic {}", b64(b"alice:s3cret"));
    assert_eq!(
        http(&reg.host, "GET", "/v2/", &[("Authorization", &good)], b"").0,
        200
    );
    let bad = format!("Basic {}", b64(b"alice:wrong"));
    assert_eq!(
        http(&reg.host, "GET", "/v2/", &[("Authorization", &bad)], b"").0,
        401
    );

    let tmp = tempfile::tempdir().unwrap();
    let (src, _) = small_archive(tmp.path());
    let dst = format!("docker://{}/servers/basic:1", reg.host);
    skopeo_fails(&["copy", "-q", "--dest-tls-verify=false", &src, &dst]);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret",
        &src,
        &dst,
    ]);
}

#[test]
fn token_server_works_with_skopeo() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let ts = TokenServer::start("bob", "hunter2");
    let reg = DistRegistry::start(Auth::Token(&ts));
    let (st, hs, _) = http(&reg.host, "GET", "/v2/", &[], b"");
    assert_eq!(st, 401);
    let challenge = header_in(&hs, "www-authenticate").unwrap().to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&ts.realm()), "{challenge}");
    assert!(challenge.contains(&ts.service), "{challenge}");

    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = small_archive(tmp.path());
    let dst = format!("docker://{}/servers/token:1", reg.host);
    skopeo_fails(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:nope",
        &src,
        &dst,
    ]);
    assert!(ts.log().iter().all(|t| !t.granted));
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:hunter2",
        &src,
        &dst,
    ]);
    let granted: Vec<TokenReq> = ts.log().into_iter().filter(|t| t.granted).collect();
    assert!(!granted.is_empty());
    assert!(
        granted.iter().any(|t| t
            .scopes
            .iter()
            .any(|s| s.starts_with("repository:servers/token:") && s.contains("push"))),
        "{granted:?}"
    );
    assert!(granted
        .iter()
        .all(|t| t.service.as_deref() == Some(ts.service.as_str())));
    // The registry accepted the JWT: the image is there.
    let raw = skopeo_raw(
        &format!("{}/servers/token:1", reg.host),
        &["--creds", "bob:hunter2"],
    );
    assert_eq!(manifest_layers(&raw), vec![digest(&img.layers[0])]);
    // A token straight from the server works on the registry; a forged one not.
    let (st, _, body) = http(
        &ts.addr,
        "GET",
        &format!(
            "/token?service={}&scope=repository:servers/token:pull",
            ts.service
        ),
        &[("Authorization", &format!("Basic {}", b64(b"bob:hunter2")))],
        b"",
    );
    assert_eq!(st, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["access_token"], v["token"]);
    assert!(v["expires_in"].as_u64().unwrap() > 0 && v["issued_at"].is_string());
    let path = format!("/v2/servers/token/manifests/{}", digest(&raw));
    let auth = format!("Bearer {token}");
    let accept = [("Authorization", auth.as_str()), ("Accept", OCI_MANIFEST)];
    assert_eq!(http(&reg.host, "GET", &path, &accept, b"").0, 200);
    // One signature character changed (not the last: it holds padding bits).
    let mut forged: Vec<char> = token.chars().collect();
    let k = forged.len() - 10;
    forged[k] = if forged[k] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    let auth = format!("Bearer {forged}");
    let bad = [("Authorization", auth.as_str()), ("Accept", OCI_MANIFEST)];
    assert_eq!(http(&reg.host, "GET", &path, &bad, b"").0, 401);
    // A pull-only token does not allow pushing elsewhere.
    let other = "/v2/servers/other/blobs/uploads/";
    let auth = format!("Bearer {token}");
    assert_eq!(
        http(
            &reg.host,
            "POST",
            other,
            &[("Authorization", auth.as_str())],
            b""
        )
        .0,
        401
    );
}

#[test]
fn tls_registry_on_127_0_0_2_needs_its_ca() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = DistRegistry::start_tls(Auth::None);
    assert!(reg.host.starts_with("127.0.0.2:"));
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = small_archive(tmp.path());
    let dst = format!("docker://{}/servers/tls:1", reg.host);
    let err = skopeo_fails(&["copy", "-q", &src, &dst]);
    assert!(err.contains("certificate") || err.contains("x509"), "{err}");
    let certs = reg.certs_dir(tmp.path());
    let cert_dir = certs.join(&reg.host);
    let flag = format!("--dest-cert-dir={}", cert_dir.display());
    skopeo(&["copy", "-q", &flag, &src, &dst]);
    let flag = format!("--cert-dir={}", cert_dir.display());
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &flag,
        &format!("docker://{}/servers/tls:1", reg.host),
    ]);
    assert_eq!(manifest_layers(&raw), vec![digest(&img.layers[0])]);
}

#[test]
fn recorder_sees_what_skopeo_sends() {
    if !have_registry() || !have_skopeo() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let rec = Recorder::start(&reg.host);
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = small_archive(tmp.path());
    let dst = format!("docker://{}/servers/rec:1", rec.host());
    skopeo(&["copy", "-q", "--dest-tls-verify=false", &src, &dst]);
    let log = rec.log();
    assert!(
        log.iter().any(|l| l.method == "PUT"
            && l.path() == "/v2/servers/rec/manifests/1"
            && l.status == 201),
        "{log:?}"
    );
    let layer = digest(&img.layers[0]);
    assert!(
        log.iter().any(|l| l.method == "PUT"
            && l.path().contains("/blobs/uploads/")
            && l.query("digest").as_deref() == Some(layer.as_str())
            && l.status == 201),
        "{log:?}"
    );
    // Upload URLs the registry hands out point at the proxy, not past it.
    assert!(!log.iter().any(|l| l.status == 0), "{log:?}");
    let raw = skopeo_raw(&format!("{}/servers/rec:1", rec.host()), &[]);
    assert_eq!(manifest_layers(&raw), vec![layer]);
}

#[test]
fn fault_server_serves_skopeo_and_its_faults() {
    if !have_skopeo() {
        return;
    }
    let fs = FaultServer::start();
    let img = RegImage::docker("fsk", host_arch(), &[3000, 70_000]);
    fs.put_image("fault/img", "1", &img);
    let tmp = tempfile::tempdir().unwrap();
    let dst = format!("dir:{}", tmp.path().join("out").display());
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{}/fault/img:1", fs.host()),
        &dst,
    ]);
    for b in img.blobs() {
        let p = tmp.path().join("out").join(sha256_hex(&b));
        if !p.exists() {
            panic!("{p:?} missing: {:?}", files_under(&tmp.path().join("out")));
        }
        assert_eq!(std::fs::read(p).unwrap(), b);
    }
    let raw = skopeo_raw(&format!("{}/fault/img:1", fs.host()), &[]);
    assert_eq!(raw, img.manifest);
    // Skopeo pushes to it too (uploads, PUT manifest).
    let dst = format!("docker://{}/fault/copy:2", fs.host());
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("docker://{}/fault/img:1", fs.host()),
        &dst,
        "--src-tls-verify=false",
    ]);
    assert_eq!(fs.manifest("fault/copy", "2").unwrap().1, img.manifest);
    assert!(img
        .blobs()
        .iter()
        .all(|b| fs.has_blob("fault/copy", &digest(b))));
    assert!(fs.count("POST", "/blobs/uploads") > 0);

    let l1 = digest(&img.layers[1]);
    let path = format!("/v2/fault/img/blobs/{l1}");
    let h = fs.host();
    // Truncated: the length announced, fewer bytes, then closed.
    fs.fault(
        Fault::Truncate {
            digest: l1.clone(),
            keep: 1000,
        },
        1,
    );
    let (st, hs, body) = http(&h, "GET", &path, &[], b"");
    assert_eq!(st, 200);
    assert_eq!(
        header_in(&hs, "content-length").unwrap(),
        img.layers[1].len().to_string()
    );
    assert_eq!(body.len(), 1000);
    // Range.
    let (st, hs, body) = http(&h, "GET", &path, &[("Range", "bytes=1000-")], b"");
    assert_eq!(st, 206);
    assert_eq!(body, img.layers[1][1000..]);
    assert!(header_in(&hs, "content-range")
        .unwrap()
        .starts_with("bytes 1000-"));
    fs.set_range(false);
    let (st, _, body) = http(&h, "GET", &path, &[("Range", "bytes=1000-")], b"");
    assert_eq!((st, body.len()), (200, img.layers[1].len()));
    // Slow.
    fs.fault(
        Fault::Slow {
            digest: l1.clone(),
            chunk: 20_000,
            pause: Duration::from_millis(300),
        },
        1,
    );
    let t = Instant::now();
    let (st, _, body) = http(&h, "GET", &path, &[], b"");
    assert_eq!((st, body.len()), (200, img.layers[1].len()));
    assert!(t.elapsed() >= Duration::from_millis(900));
    // Status codes, twice, then the blob.
    fs.fault(
        Fault::Status {
            path: l1.clone(),
            method: None,
            status: 429,
            retry_after: Some(1),
        },
        2,
    );
    let (st, hs, _) = http(&h, "GET", &path, &[], b"");
    assert_eq!((st, header_in(&hs, "retry-after")), (429, Some("1")));
    assert_eq!(http(&h, "GET", &path, &[], b"").0, 429);
    assert_eq!(http(&h, "GET", &path, &[], b"").0, 200);
    // Wrong bytes, wrong manifest digest header.
    fs.fault(
        Fault::BlobBytes {
            digest: l1.clone(),
            bytes: b"evil".to_vec(),
        },
        1,
    );
    assert_eq!(http(&h, "GET", &path, &[], b"").2, b"evil");
    fs.fault(
        Fault::ManifestHeader {
            digest: digest(b"other"),
        },
        1,
    );
    let (_, hs, body) = http(&h, "GET", "/v2/fault/img/manifests/1", &[], b"");
    assert_eq!(body, img.manifest);
    assert_eq!(
        header_in(&hs, "docker-content-digest"),
        Some(digest(b"other").as_str())
    );
    // Redirects to another host, which records the Authorization header.
    let bh = BlobHost::start("127.0.0.3");
    bh.put(&img.layers[1]);
    fs.fault(
        Fault::Redirect {
            digest: l1.clone(),
            base: bh.base(),
        },
        1,
    );
    let (st, hs, _) = http(&h, "GET", &path, &[], b"");
    assert_eq!(st, 307);
    let loc = header_in(&hs, "location").unwrap().to_string();
    let target = loc.strip_prefix("http://").unwrap();
    let (addr, rest) = target.split_once('/').unwrap();
    let (st, _, body) = http(
        addr,
        "GET",
        &format!("/{rest}"),
        &[("Authorization", "Basic eA==")],
        b"",
    );
    assert_eq!((st, body), (200, img.layers[1].clone()));
    assert_eq!(bh.log.lock().unwrap()[0].1.as_deref(), Some("Basic eA=="));
    // Basic auth.
    fs.require_basic("u", "p");
    assert_eq!(http(&h, "GET", "/v2/", &[], b"").0, 401);
    let good = format!("Basic {}", b64(b"u:p"));
    assert_eq!(
        http(&h, "GET", "/v2/", &[("Authorization", &good)], b"").0,
        200
    );
    // Unknown names.
    let (st, _, body) = http(
        &h,
        "GET",
        "/v2/fault/none/manifests/1",
        &[("Authorization", &good)],
        b"",
    );
    assert_eq!(st, 404);
    assert!(String::from_utf8_lossy(&body).contains("NAME_UNKNOWN"));
    let (st, _, body) = http(
        &h,
        "GET",
        "/v2/fault/img/manifests/2",
        &[("Authorization", &good)],
        b"",
    );
    assert_eq!(st, 404);
    assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
}
