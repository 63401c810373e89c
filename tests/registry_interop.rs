//! thinsnap and `skopeo` through the same docker-registry: an image skopeo
//! pushed pulls with thinsnap (same manifest digest, config, files), an
//! image thinsnap pushed is what skopeo inspects and copies (same
//! manifest, layer and config digests, diff ids), and a `thinsnap save`
//! archive pushed by skopeo pulls back as the same image.
#![allow(clippy::unwrap_used)]

mod engine_common;
mod registry_common;

use engine_common::*;
use registry_common::*;
use serde_json::{json, Value};

fn ready() -> bool {
    have_registry() && have_skopeo()
}

#[test]
fn image_pushed_by_skopeo_pulls_with_thinsnap() {
    if !ready() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let tmp = tempfile::tempdir().unwrap();
    let tars = [
        layer("sk", "a", &noise("skopeo-a", 40_000)),
        layer("sk", "b", b"from skopeo"),
    ];
    let img = Img {
        config: config(&tars, T0, json!({})),
        layers: tars.iter().map(|t| gzip(t)).collect(),
        tags: vec!["sk/img:1".into()],
    };
    let arch = tmp.path().join("in.tar");
    std::fs::write(
        &arch,
        oci_archive(
            std::slice::from_ref(&img),
            "org.opencontainers.image.ref.name",
        ),
    )
    .unwrap();
    let r = format!("{}/sk/img:1", reg.host);
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", arch.display()),
        &format!("docker://{r}"),
    ]);
    let raw = skopeo_raw(&r, &[]);
    let c = Client::new();
    let out = c.run(&["pull", &r]).ok();
    assert_eq!(digest_line(&out), Some(digest(&raw)));
    let i = c.env.inspect(&r);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(i["Id"], m["config"]["digest"]);
    assert_eq!(i["Id"], img.id());
    let files = c.rootfs(&r);
    assert_eq!(files["sk/a"], noise("skopeo-a", 40_000));
    assert_eq!(files["sk/b"], b"from skopeo");
    // Pulled by digest too, as skopeo names it.
    let by_digest = format!("{}/sk/img@{}", reg.host, digest(&raw));
    let d = Client::new();
    d.run(&["pull", &by_digest]).ok();
    assert_eq!(d.env.inspect(&by_digest)["Id"], img.id());
}

#[test]
fn image_pushed_by_thinsnap_is_what_skopeo_sees() {
    if !ready() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let c = Client::new();
    let id = c.env.import(
        &[
            ("ts/big", &noise("thinsnap-push", 120_000)),
            ("ts/small", b"s"),
        ],
        Some("local/ts:1"),
    );
    let r = format!("{}/ts/img:2", reg.host);
    c.run(&["tag", "local/ts:1", &r]).ok();
    let (d, size) = push_line(&c.run(&["push", &r]).ok());
    let raw = skopeo_raw(&r, &[]);
    assert_eq!(digest(&raw), d);
    assert_eq!(raw.len() as u64, size);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m["config"]["digest"], id);
    // skopeo copies it out: every blob hashes to its name, and the config's
    // diff ids are thinsnap's layers.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("dir");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{r}"),
        &format!("dir:{}", out.display()),
    ]);
    let cfg = std::fs::read(out.join(&id[7..])).unwrap();
    assert_eq!(digest(&cfg), id);
    for l in manifest_layers(&raw) {
        let b = std::fs::read(out.join(&l[7..])).unwrap();
        assert_eq!(digest(&b), l);
    }
    let cfg: Value = serde_json::from_slice(&cfg).unwrap();
    let inspect = c.env.inspect("local/ts:1");
    assert_eq!(cfg["rootfs"]["diff_ids"], inspect["RootFS"]["Layers"]);
    // skopeo's own view of the manifest digest agrees.
    let v: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{r}"),
    ]))
    .unwrap();
    assert_eq!(v["Digest"], d);
    assert_eq!(json!(manifest_layers(&raw)), v["Layers"]);
}

#[test]
fn saved_archive_through_skopeo_pulls_back_the_same_image() {
    if !ready() {
        return;
    }
    let reg = DistRegistry::start(Auth::None);
    let c = Client::new();
    let id = c
        .env
        .import(&[("sv/f", b"saved then pushed")], Some("local/sv:1"));
    let saved = c.env.out_path("saved.tar");
    c.run(&["save", "-o", &saved, "local/sv:1"]).ok();
    let r = format!("{}/sv/img:1", reg.host);
    for (transport, tag) in [("docker-archive", "1"), ("oci-archive", "2")] {
        let r = format!("{}/sv/img:{tag}", reg.host);
        skopeo(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("{transport}:{saved}"),
            &format!("docker://{r}"),
        ]);
        let b = Client::new();
        let out = b.run(&["pull", &r]).ok();
        assert_eq!(digest_line(&out), Some(digest(&skopeo_raw(&r, &[]))));
        assert_eq!(b.env.inspect(&r)["Id"], id, "{transport}");
        assert_eq!(b.rootfs(&r)["sv/f"], b"saved then pushed");
    }
    let _ = r;
}
