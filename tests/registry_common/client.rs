//! The client under test: [`Client`], one test's thinsnap root with its
//! own auth file and config file, and helpers that read thinsnap's output
//! ([`digest_line`], [`push_line`]) or run skopeo ([`skopeo`],
//! [`skopeo_fails`], [`skopeo_raw`], [`manifest_layers`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::image::RegImage;
use super::now_secs;
use crate::engine_common::*;

/// A thinsnap root with its own auth file and config file.
pub struct Client {
    pub env: Env,
    pub auth_file: PathBuf,
    pub config: PathBuf,
}

/// Registry settings for fast tests.
pub const FAST: &str = "retries = 4\nretry_base_ms = 10\ntimeout_secs = 10\n";

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client::with_registry(FAST)
    }

    /// `registry` is the body of the `[registry]` section.
    pub fn with_registry(registry: &str) -> Client {
        let env = Env::new();
        let auth_file = env.dir.path().join("auth.json");
        let config = env.dir.path().join("config.toml");
        std::fs::write(&config, format!("[registry]\n{registry}")).unwrap();
        Client {
            env,
            auth_file,
            config,
        }
    }

    pub fn set_registry(&self, registry: &str) {
        std::fs::write(&self.config, format!("[registry]\n{registry}")).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd(&["--config", self.config.to_str().unwrap()]);
        c.args(args).env("THINSNAP_AUTH_FILE", &self.auth_file);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Env::exec(&mut self.cmd(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        Env::exec(&mut self.cmd(args), Some(input))
    }

    /// A root that already holds one image, so a failed pull has a store
    /// to leave alone.
    pub fn seeded() -> Client {
        let c = Client::new();
        c.env.import(&[("seed/file", b"seed")], Some("seed:1"));
        c
    }

    /// The regular files of image `name`'s rootfs (through a container and
    /// `export`), and the container is removed again.
    pub fn rootfs(&self, name: &str) -> BTreeMap<String, Vec<u8>> {
        let cname = format!("probe{}", now_secs() % 100_000);
        self.run(&["create", "--name", &cname, name]).ok();
        let out = self.env.out_path(&format!("{cname}.tar"));
        self.run(&["export", "-o", &out, &cname]).ok();
        self.run(&["rm", "-f", &cname]).ok();
        let b = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        tar_files(&b)
    }

    /// Asserts that `name` is `img`: same image id and the same files.
    #[track_caller]
    pub fn assert_image(&self, name: &str, img: &RegImage) {
        let i = self.env.inspect(name);
        assert_eq!(i["Id"], img.id(), "image id of {name}");
        let files = self.rootfs(name);
        for (p, data) in &img.files {
            assert!(
                files.get(p) == Some(data),
                "{name}: {p} differs or is missing (have {:?})",
                files.keys().collect::<Vec<_>>()
            );
        }
    }

    /// Asserts that a failed command left the store as `before` and no
    /// scratch files in `engine/tmp`.
    #[track_caller]
    pub fn assert_untouched(&self, before: &State) {
        assert_eq!(&self.env.state(), before, "the store changed");
        let tmp = self.env.root.join("engine/tmp");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            let left: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "left in engine/tmp: {left:?}");
        }
    }

    /// The parsed credentials file.
    pub fn auths(&self) -> Value {
        match std::fs::read(&self.auth_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => json!({}),
        }
    }
}

/// The `Digest: sha256:…` line of a pull's stdout.
pub fn digest_line(r: &Run) -> Option<String> {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: ").map(|d| d.trim().to_string()))
}

/// The `<tag>: digest: sha256:… size: N` line of a push: (digest, size).
pub fn push_line(r: &Run) -> (String, u64) {
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(": digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line in push output: {}", r.stdout));
    let d = line
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let size = line.split("size: ").nth(1).unwrap().trim().parse().unwrap();
    (d.to_string(), size)
}

/// Runs `skopeo` with no signature policy.
fn skopeo_output(args: &[&str]) -> Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .unwrap()
}

/// `skopeo` with no signature policy; returns stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = skopeo_output(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo` that must fail; returns stderr.
pub fn skopeo_fails(args: &[&str]) -> String {
    let out = skopeo_output(args);
    assert!(!out.status.success(), "skopeo {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The raw manifest skopeo sees at `docker://host/repo:tag` (plain HTTP).
pub fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    let r = format!("docker://{reference}");
    args.push(&r);
    skopeo(&args)
}

/// Layer digests of a manifest.
pub fn manifest_layers(m: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(m).unwrap();
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}
