//! Shared helpers for the engine CLI tests (`engine_*.rs`): a temp root per
//! test, the built binary run on it with `--driver vfs`, tar files built
//! byte by byte (raw entry names, so hostile ones too), rootfs tarballs,
//! docker-archive and OCI archives assembled by hand, and a fingerprint of
//! a root's store to show that a failed command changed nothing.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_thinsnap");

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

// Exit codes (src/exit.rs).
pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const CONFLICT: i32 = 4;

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `sha256:<hex>` of `b`.
pub fn digest(b: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(b))
}

/// The 12-character short id of `sha256:<hex>`.
pub fn short(id: &str) -> &str {
    &id.trim_start_matches("sha256:")[..12]
}

/// Chain ids of diff ids (the spec's formula).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// RFC 3339 time `days` ago.
pub fn ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The host platform's OCI architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// An architecture that is not the host's.
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

// ---------------------------------------------------------------- running

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub out: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Run {
    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "{} failed:\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Asserts exit code `want`.
    #[track_caller]
    pub fn code(self, want: i32) -> Run {
        assert_eq!(
            self.code, want,
            "{}: exit code\nstdout: {}\nstderr: {}",
            self.what, self.stdout, self.stderr
        );
        self
    }

    /// Asserts a failure (non-zero) whose stderr contains every one of `words`.
    #[track_caller]
    pub fn fails_with(self, words: &[&str]) -> Run {
        assert_ne!(self.code, 0, "{} succeeded: {}", self.what, self.stdout);
        for w in words {
            assert!(
                self.stderr.contains(w),
                "{}: stderr lacks {w:?}: {}",
                self.what,
                self.stderr
            );
        }
        self
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// One test's world: `dir/root` (the thinsnap root), `dir/in` (inputs the
/// test writes), `dir/cwd` (the commands' working directory). Nothing else
/// may appear in `dir`.
pub struct Env {
    pub dir: TempDir,
    pub root: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["in", "cwd"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Env { dir, root }
    }

    /// A command on this root with no driver chosen (nor from the environment).
    pub fn bare(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("THINSNAP_DRIVER")
            .env_remove("THINSNAP_ROOT")
            .env_remove("THINSNAP_CONFIG")
            .current_dir(self.dir.path().join("cwd"))
            .stdin(Stdio::null());
        c
    }

    /// A command on this root with `--driver vfs`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.bare(&["--driver", "vfs"]);
        c.args(args);
        c
    }

    pub fn exec(c: &mut Command, stdin: Option<&[u8]>) -> Run {
        let what = format!("{c:?}");
        let out = match stdin {
            None => c.output().unwrap(),
            Some(input) => {
                c.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = c.spawn().unwrap();
                let mut w = child.stdin.take().unwrap();
                let input = input.to_vec();
                let feeder = std::thread::spawn(move || {
                    // A command that fails early may close its stdin.
                    let _ = w.write_all(&input);
                });
                let out = child.wait_with_output().unwrap();
                feeder.join().unwrap();
                out
            }
        };
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            out: out.stdout,
            what,
        }
    }

    /// Runs `thinsnap --root R --driver vfs ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        Env::exec(&mut self.cmd(args), None)
    }

    /// Same, with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        Env::exec(&mut self.cmd(args), Some(input))
    }

    /// Writes an input file under `dir/in` and returns its path.
    pub fn input(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join("in").join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// A path under `dir/in` (for outputs).
    pub fn out_path(&self, name: &str) -> String {
        self.dir.path().join("in").join(name).display().to_string()
    }

    /// Imports a rootfs with `files` (plus the needed dirs) and returns the id.
    pub fn import(&self, files: &[(&str, &[u8])], reference: Option<&str>) -> String {
        let tarball = self.input("rootfs.tar", &rootfs(files));
        let mut args = vec!["import", tarball.as_str()];
        args.extend(reference);
        let r = self.run(&args).ok();
        let id = r.stdout.trim().to_string();
        assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
        id
    }

    /// Loads an archive from bytes (via a file), asserting success.
    pub fn load(&self, archive: &[u8]) -> Run {
        let p = self.input("load.tar", archive);
        self.run(&["load", "-i", &p]).ok()
    }

    pub fn inspect(&self, name: &str) -> Value {
        let v = self.run(&["inspect", name]).ok().json();
        v.as_array().unwrap()[0].clone()
    }

    /// Full image ids, as `images -q --no-trunc` prints them, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .run(&["images", "-a", "-q", "--no-trunc"])
            .ok()
            .lines()
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.sort();
        v
    }

    /// Familiar repo:tag names of every image, sorted.
    pub fn tags(&self) -> Vec<String> {
        let mut v = Vec::new();
        for line in self
            .run(&["images", "-a", "--format", "json"])
            .ok()
            .stdout
            .lines()
        {
            let o: Value = serde_json::from_str(line).unwrap();
            if o["Tag"] != "<none>" {
                v.push(format!(
                    "{}:{}",
                    o["Repository"].as_str().unwrap(),
                    o["Tag"].as_str().unwrap()
                ));
            }
        }
        v.sort();
        v
    }

    /// The blob files present, sorted by name.
    pub fn blobs(&self) -> Vec<String> {
        let dir = self.root.join("engine/blobs/sha256");
        let mut v: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Every blob's content hashes to its name.
    pub fn assert_blobs_verified(&self) {
        for b in self.blobs() {
            let bytes = std::fs::read(self.root.join("engine/blobs/sha256").join(&b)).unwrap();
            assert_eq!(sha256_hex(&bytes), b, "blob content matches its name");
        }
    }

    /// What `snapshot ls` prints (names only, sorted).
    pub fn snapshots(&self) -> Vec<String> {
        let v = self.run(&["snapshot", "ls", "--json"]).ok().json();
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    /// A fingerprint of the store: `engine/store.json` bytes, blob names,
    /// `snapshot ls --json` output and the list of files under the root
    /// (scratch directories included: they must be left empty), minus the
    /// locks and the vfs metadata (its id counter moves on).
    pub fn state(&self) -> State {
        State {
            store: std::fs::read(self.root.join("engine/store.json")).unwrap_or_default(),
            blobs: self.blobs(),
            snapshots: self.run(&["snapshot", "ls", "--json"]).ok().stdout,
            files: files_under(&self.root)
                .into_iter()
                .filter(|p| !p.ends_with("lock") && !p.ends_with("metadata.json"))
                .collect(),
        }
    }

    /// Asserts that `dir` holds only `root`, `in` (with just `inputs`) and
    /// an empty `cwd`, and that no file named `marker` exists anywhere under
    /// it nor at `/tmp/<marker>`.
    pub fn assert_nothing_outside_root(&self, inputs: &[&str], marker: &str) {
        let mut top: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(top, ["cwd", "in", "root"]);
        assert_eq!(
            std::fs::read_dir(self.dir.path().join("cwd"))
                .unwrap()
                .count(),
            0,
            "the working directory stays empty"
        );
        let mut ins: Vec<String> = std::fs::read_dir(self.dir.path().join("in"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ins.sort();
        let mut want: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(ins, want);
        for f in files_under(self.dir.path()) {
            assert!(!f.contains(marker), "{f} was written");
        }
        assert!(!Path::new("/tmp").join(marker).exists());
    }
}

/// A fingerprint of a root (see [`Env::state`]).
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    pub store: Vec<u8>,
    pub blobs: Vec<String>,
    pub snapshots: String,
    pub files: Vec<String>,
}

/// Every non-directory under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Parses a borderless table by its header's column positions.
pub fn parse_table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let hchars: Vec<char> = header.chars().collect();
    // Columns start after two or more blanks (or at 0); names may hold one blank.
    let mut starts = vec![0usize];
    let mut i = 0;
    while i < hchars.len() {
        if hchars[i] == ' ' && i + 1 < hchars.len() && hchars[i + 1] == ' ' {
            let mut j = i;
            while j < hchars.len() && hchars[j] == ' ' {
                j += 1;
            }
            starts.push(j);
            i = j;
        } else {
            i += 1;
        }
    }
    let cut = |chars: &[char], a: usize, b: Option<usize>| -> String {
        let end = b.unwrap_or(chars.len()).min(chars.len());
        if a >= end {
            return String::new();
        }
        chars[a..end].iter().collect::<String>().trim().to_string()
    };
    let names: Vec<String> = (0..starts.len())
        .map(|k| cut(&hchars, starts[k], starts.get(k + 1).copied()))
        .collect();
    lines
        .map(|l| {
            let c: Vec<char> = l.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(k, n)| (n.clone(), cut(&c, starts[k], starts.get(k + 1).copied())))
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------- tars

/// What a tar entry is.
#[derive(Clone, Debug)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    Char(u32, u32),
    Fifo,
}

/// One tar entry; its name is written as given, unchecked.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub mode: u32,
}

pub fn file(name: &str, data: &[u8]) -> Entry {
    Entry {
        name: name.into(),
        kind: Kind::File(data.to_vec()),
        mode: 0o644,
    }
}

pub fn dir(name: &str) -> Entry {
    Entry {
        name: name.into(),
        kind: Kind::Dir,
        mode: 0o755,
    }
}

pub fn symlink(name: &str, target: &str) -> Entry {
    Entry {
        name: name.into(),
        kind: Kind::Symlink(target.into()),
        mode: 0o777,
    }
}

/// A ustar file of `entries`, fixed mtimes and owners, names unchecked.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (ty, data, link): (tar::EntryType, &[u8], Option<&str>) = match &e.kind {
            Kind::File(d) => (tar::EntryType::Regular, d, None),
            Kind::Dir => (tar::EntryType::Directory, &[], None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, &[], Some(t)),
            Kind::Hardlink(t) => (tar::EntryType::Link, &[], Some(t)),
            Kind::Char(..) => (tar::EntryType::Char, &[], None),
            Kind::Fifo => (tar::EntryType::Fifo, &[], None),
        };
        h.set_entry_type(ty);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        if let Kind::Char(maj, min) = e.kind {
            h.set_device_major(maj).unwrap();
            h.set_device_minor(min).unwrap();
        }
        let raw = h.as_old_mut();
        assert!(e.name.len() <= 100, "name too long for ustar: {}", e.name);
        raw.name = [0; 100];
        raw.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(l) = link {
            raw.linkname = [0; 100];
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A rootfs tarball: the parent directories of `files` and the files.
pub fn rootfs(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut dirs = std::collections::BTreeSet::new();
    for (p, _) in files {
        let mut acc = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push_str(part);
            acc.push('/');
            dirs.insert(acc.clone());
        }
    }
    let mut entries: Vec<Entry> = dirs.iter().map(|d| dir(d)).collect();
    entries.extend(files.iter().map(|(p, d)| file(p, d)));
    tar(&entries)
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub fn zstd(b: &[u8]) -> Vec<u8> {
    zstd::encode_all(b, 3).unwrap()
}

/// Entries of a tar (plain), in order: (name, kind letter, content).
pub fn read_tar(b: &[u8]) -> Vec<(String, char, Vec<u8>)> {
    let mut ar = tar::Archive::new(b);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = match e.header().entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => '?',
        };
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, kind, data));
    }
    out
}

/// Regular files of a tar by normalised name (`./a/b` → `a/b`).
pub fn tar_files(b: &[u8]) -> BTreeMap<String, Vec<u8>> {
    read_tar(b)
        .into_iter()
        .filter(|e| e.1 == 'f')
        .map(|(n, _, d)| (n.trim_start_matches("./").to_string(), d))
        .collect()
}

// ---------------------------------------------------------------- images

/// One image to put in an archive.
#[derive(Clone, Debug)]
pub struct Img {
    /// Config bytes (the image id is their digest).
    pub config: Vec<u8>,
    /// Layer blobs as stored in the archive (maybe compressed).
    pub layers: Vec<Vec<u8>>,
    /// Names for `RepoTags` / annotations.
    pub tags: Vec<String>,
}

impl Img {
    pub fn id(&self) -> String {
        digest(&self.config)
    }
}

/// A config for `layers` (uncompressed tars) made at `created`, with
/// `extra` merged in at the top level.
pub fn config(layers: &[Vec<u8>], created: &str, extra: Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    config_for(&diff_ids, created, extra)
}

pub fn config_for(diff_ids: &[String], created: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({
        "architecture": host_arch(),
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| json!({"created": created, "created_by": "ADD file"})).collect::<Vec<_>>(),
    });
    if let Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    serde_json::to_vec(&v).unwrap()
}

/// An image of uncompressed `layers` with `tags`.
pub fn image(layers: &[Vec<u8>], created: &str, tags: &[&str]) -> Img {
    Img {
        config: config(layers, created, json!({})),
        layers: layers.to_vec(),
        tags: tags.iter().map(|s| s.to_string()).collect(),
    }
}

fn blob_entries(imgs: &[Img], extra: &[Vec<u8>]) -> Vec<Entry> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in imgs {
        blobs.insert(sha256_hex(&i.config), i.config.clone());
        for l in &i.layers {
            blobs.insert(sha256_hex(l), l.clone());
        }
    }
    for b in extra {
        blobs.insert(sha256_hex(b), b.clone());
    }
    let mut out = vec![dir("blobs/"), dir("blobs/sha256/")];
    out.extend(
        blobs
            .iter()
            .map(|(h, b)| file(&format!("blobs/sha256/{h}"), b)),
    );
    out
}

/// A docker-archive in Docker 25's blob layout, with only `manifest.json`.
pub fn docker_archive_entries(imgs: &[Img]) -> Vec<Entry> {
    let mut e = blob_entries(imgs, &[]);
    let m: Vec<Value> = imgs
        .iter()
        .map(|i| {
            json!({
                "Config": format!("blobs/sha256/{}", sha256_hex(&i.config)),
                "RepoTags": if i.tags.is_empty() { Value::Null } else { json!(i.tags) },
                "Layers": i.layers.iter().map(|l| format!("blobs/sha256/{}", sha256_hex(l))).collect::<Vec<_>>(),
            })
        })
        .collect();
    e.push(file("manifest.json", &serde_json::to_vec(&m).unwrap()));
    e
}

pub fn docker_archive(imgs: &[Img]) -> Vec<u8> {
    tar(&docker_archive_entries(imgs))
}

/// The media type of a layer blob, from its first bytes.
pub fn layer_media_type(blob: &[u8]) -> &'static str {
    if blob.starts_with(&[0x1f, 0x8b]) {
        OCI_LAYER_GZIP
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER
    }
}

/// The OCI manifest of an image.
pub fn manifest(i: &Img) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(&i.config), "size": i.config.len()},
        "layers": i.layers.iter().map(|l| json!({
            "mediaType": layer_media_type(l), "digest": digest(l), "size": l.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A descriptor.
pub fn desc(media_type: &str, bytes: &[u8], annotations: Value, platform: Option<Value>) -> Value {
    let mut d = json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()});
    if annotations.as_object().is_some_and(|o| !o.is_empty()) {
        d["annotations"] = annotations;
    }
    if let Some(p) = platform {
        d["platform"] = p;
    }
    d
}

pub fn index(manifests: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))
        .unwrap()
}

/// An OCI layout archive (no manifest.json). Each image's first tag, if
/// any, goes in the annotation `annotation` (`io.containerd.image.name` or
/// `org.opencontainers.image.ref.name`).
pub fn oci_archive_entries(imgs: &[Img], annotation: &str) -> Vec<Entry> {
    let manifests: Vec<Vec<u8>> = imgs.iter().map(manifest).collect();
    let mut e = blob_entries(imgs, &manifests);
    let descs = imgs
        .iter()
        .zip(&manifests)
        .map(|(i, m)| {
            let ann = match i.tags.first() {
                Some(t) => json!({ annotation: t }),
                None => json!({}),
            };
            desc(OCI_MANIFEST, m, ann, None)
        })
        .collect();
    e.push(file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#));
    e.push(file("index.json", &index(descs)));
    e
}

pub fn oci_archive(imgs: &[Img], annotation: &str) -> Vec<u8> {
    tar(&oci_archive_entries(imgs, annotation))
}

/// A layer tar with one file `name` holding `data`, inside dir `d/`.
pub fn layer(d: &str, name: &str, data: &[u8]) -> Vec<u8> {
    tar(&[dir(&format!("{d}/")), file(&format!("{d}/{name}"), data)])
}

/// Replaces the content of entry `name` in `entries`.
pub fn replace(entries: &mut [Entry], name: &str, data: &[u8]) {
    let e = entries
        .iter_mut()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {name}"));
    e.kind = Kind::File(data.to_vec());
}

/// A fixed creation time.
pub const T0: &str = "2023-03-01T12:00:00Z";

/// Two images sharing their base layer, tagged `shared/a:1` and `b:2`.
pub fn two_sharing() -> (Img, Img) {
    let base = layer("base", "os", &[9u8; 4000]);
    let a = image(&[base.clone(), layer("a", "f", b"a")], T0, &["shared/a:1"]);
    let b = image(
        &[base, layer("b", "f", b"bb")],
        "2023-03-02T12:00:00Z",
        &["b:2"],
    );
    (a, b)
}
