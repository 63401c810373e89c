//! Interoperability with real peers from Debian's packages: images built
//! with `umoci` and converted by `skopeo` load into thinsnap; archives
//! thinsnap saves are accepted by `skopeo` (docker-archive and oci-archive)
//! with the same digests, and `umoci` unpacks them to the same rootfs.
//!
//! Needs `skopeo` and `umoci` in PATH (`tools/setup` installs them) and
//! root (umoci keeps ownership only as root; the fixtures chown files and
//! make a device node). Without them each test prints why and passes.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{FileType, Mode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use thinsnap::engine::layer::{apply_layer, ApplyOptions};

// ---------------------------------------------------------------- running

/// Whether the peers (and root) are here; prints why not.
fn peers() -> bool {
    for tool in ["skopeo", "umoci"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            println!("skipped: `{tool}` is not in PATH (tools/setup installs it)");
            return false;
        }
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: needs root (umoci keeps ownership only as root)");
        return false;
    }
    true
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn umoci<S: AsRef<OsStr>>(args: &[S]) {
    run(Command::new("umoci").args(args));
}

/// `skopeo` without a signature policy file (CI machines may lack one).
fn skopeo<S: AsRef<OsStr>>(args: &[S]) -> Vec<u8> {
    run(Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("TMPDIR", std::env::temp_dir()))
}

fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    let mut args = vec!["copy", "-q"];
    args.extend_from_slice(extra);
    args.extend([src, dst]);
    skopeo(&args);
}

fn thinsnap<S: AsRef<OsStr>>(root: &Path, args: &[S]) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_thinsnap"))
        .arg("--driver")
        .arg("vfs")
        .arg("--root")
        .arg(root)
        .args(args));
    String::from_utf8(out).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// "oci:<dir>:<tag>" and the like.
fn at(transport: &str, path: &Path, tag: &str) -> String {
    let p = path.to_str().unwrap();
    assert!(!p.contains(':'), "{p} would confuse skopeo");
    if tag.is_empty() {
        format!("{transport}:{p}")
    } else {
        format!("{transport}:{p}:{tag}")
    }
}

/// What skopeo says about an image: raw manifest, its digest, config bytes.
struct Inspected {
    manifest: Value,
    manifest_digest: String,
    config: Vec<u8>,
}

impl Inspected {
    fn of(image: &str) -> Inspected {
        let raw = skopeo(&["inspect", "--raw", image]);
        Inspected {
            manifest: json(&raw),
            manifest_digest: sha256(&raw),
            config: skopeo(&["inspect", "--config", "--raw", image]),
        }
    }
    fn config_digest(&self) -> String {
        self.manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }
    fn layer_digests(&self) -> Vec<String> {
        self.manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }
    fn diff_ids(&self) -> Vec<String> {
        strs(&json(&self.config)["rootfs"]["diff_ids"])
    }
}

/// The image thinsnap holds under `name`: id and RootFS layers (diffIDs).
fn ts_image(root: &Path, name: &str) -> (String, Vec<String>) {
    let v: Value = serde_json::from_str(&thinsnap(root, &["inspect", name])).unwrap();
    let img = &v[0];
    (
        img["Id"].as_str().unwrap().to_string(),
        strs(&img["RootFS"]["Layers"]),
    )
}

/// `thinsnap images` lists `repo:tag` with the full id `id`.
fn assert_listed(root: &Path, repo: &str, tag: &str, id: &str) {
    let out = thinsnap(root, &["images", "--no-trunc", "--format", "json"]);
    let rows: Vec<Value> = out.lines().map(|l| json(l.as_bytes())).collect();
    assert!(
        rows.iter()
            .any(|r| r["Repository"] == repo && r["Tag"] == tag && r["ID"] == id),
        "images does not list {repo}:{tag} {id}:\n{out}"
    );
    let table = thinsnap(root, &["images"]);
    assert!(
        table.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 2 && cols[0] == repo && cols[1] == tag
        }),
        "the images table does not show {repo} {tag}:\n{table}"
    );
}

/// Reads a member of a tar file.
fn tar_member(archive: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new(name) {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return v;
        }
    }
    panic!("{name} is not in {}", archive.display())
}

fn tar_names(archive: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(fs::File::open(archive).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_str().unwrap().to_string())
        .collect()
}

/// Applies, with thinsnap's own layer code, the layers that a saved
/// archive's manifest.json lists for `repo_tag` onto an empty `dest`;
/// each layer's diffID is the name it is stored under.
fn apply_saved(archive: &Path, repo_tag: &str, dest: &Path) {
    let manifest = json(&tar_member(archive, "manifest.json"));
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .find(|e| strs(&e["RepoTags"]).iter().any(|t| t == repo_tag))
        .unwrap_or_else(|| panic!("{repo_tag} not in manifest.json: {manifest}"));
    for layer in strs(&entry["Layers"]) {
        let bytes = tar_member(archive, &layer);
        let stats = apply_layer(dest, &bytes[..], &ApplyOptions::default()).unwrap();
        assert_eq!(
            format!("blobs/sha256/{}", stats.diff_id.hex()),
            layer,
            "a saved layer is not named by its diffID"
        );
    }
}

// ---------------------------------------------------------------- trees

/// One object of a tree, as compared between implementations.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    /// Permission bits with setuid/setgid/sticky (not for symlinks).
    mode: u32,
    uid: u32,
    gid: u32,
    /// sha256 of a file, target of a symlink, rdev of a device.
    content: String,
    /// Seconds and nanoseconds, not for directories (see `compare`).
    mtime: Option<(i64, i64)>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// For a hardlinked file, the first path (sorted) sharing its inode.
    link_group: Option<String>,
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out = BTreeMap::new();
    for k in names[..n].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let mut v = vec![0u8; 65536];
        let m = rustix::fs::lgetxattr(path, k, &mut v[..]).unwrap();
        out.insert(String::from_utf8_lossy(k).into_owned(), v[..m].to_vec());
    }
    out
}

/// Every object under `root` (not the root itself), by relative path.
fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut paths = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(r.clone());
            }
            paths.push(r);
        }
    }
    paths.sort();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for rel in paths {
        let full = root.join(&rel);
        let name = rel.to_str().unwrap().to_string();
        let md = fs::symlink_metadata(&full).unwrap();
        let ft = md.file_type();
        let (kind, content) = if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&full).unwrap().to_str().unwrap().to_string(),
            )
        } else if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_file() {
            ("file", sha256(&fs::read(&full).unwrap()))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else if ft.is_char_device() {
            ("char", format!("{:x}", md.rdev()))
        } else if ft.is_block_device() {
            ("block", format!("{:x}", md.rdev()))
        } else {
            ("socket", String::new())
        };
        let link_group = (kind == "file" && md.nlink() > 1).then(|| {
            inodes
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| name.clone())
                .clone()
        });
        out.insert(
            name,
            Node {
                kind,
                mode: if kind == "symlink" {
                    0
                } else {
                    md.mode() & 0o7777
                },
                uid: md.uid(),
                gid: md.gid(),
                content,
                mtime: (kind != "dir").then(|| (md.mtime(), md.mtime_nsec())),
                xattrs: xattrs(&full),
                link_group,
            },
        );
    }
    out
}

/// Asserts two trees hold the same objects. Directory mtimes are not
/// compared. Observed: `umoci repack` leaves out a directory whose mtime
/// did not change at whole seconds even when a file in it did, and when a
/// layer writes into (or whites out in) a directory it has no entry for,
/// `umoci unpack` puts the directory's old mtime back afterwards, while
/// thinsnap leaves it at the time of the write.
/// Other mtimes are compared in full between trees unpacked from the same
/// layers; against the bundle umoci repacked from, only whole seconds
/// count (see [`seconds`]).
fn compare(what: &str, want: &BTreeMap<String, Node>, got: &BTreeMap<String, Node>) {
    let mut problems = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => problems.push(format!("missing {p} ({w:?})")),
            Some(g) if g != w => problems.push(format!("{p}:\n  want {w:?}\n  got  {g:?}")),
            Some(_) => {}
        }
    }
    for (p, g) in got {
        if !want.contains_key(p) {
            problems.push(format!("unexpected {p} ({g:?})"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: {} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// `t` with mtimes rounded to the nearest second. Observed with umoci
/// 0.4.7: `umoci repack` writes plain ustar headers, and Go's archive/tar
/// rounds `ModTime` to the nearest second (half up) when no format is
/// chosen, so a tree unpacked from its layers has whole-second mtimes
/// where the bundle it repacked has nanoseconds (x.649s became x+1).
fn seconds(mut t: BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    for n in t.values_mut() {
        if let Some((s, ns)) = n.mtime {
            n.mtime = Some((s + i64::from(ns >= 500_000_000), 0));
        }
    }
    t
}

/// The two-layer image's tree has what the fixture put in, so that the
/// comparisons are not vacuous (a peer dropping, say, xattrs on both sides).
fn assert_fixture(t: &BTreeMap<String, Node>) {
    let n = |p: &str| t.get(p).unwrap_or_else(|| panic!("{p} is missing"));
    assert_eq!(n("bin/su").mode, 0o4755);
    assert_eq!(n("bin/sg").mode, 0o2711);
    assert_eq!(n("tmp").mode, 0o1777);
    assert_eq!((n("etc/hello").uid, n("etc/hello").gid), (1000, 2000));
    assert_eq!(n("etc/hello").link_group.as_deref(), Some("etc/hardlink"));
    assert_eq!(
        n("etc/hardlink").link_group.as_deref(),
        Some("etc/hardlink")
    );
    assert_eq!(n("bin/link").content, "../etc/hello");
    assert_eq!(
        (n("bin/dangling").kind, n("bin/dangling").uid),
        ("symlink", 7)
    );
    assert_eq!(n("empty").kind, "dir");
    assert_eq!(n("data/fifo").kind, "fifo");
    assert_eq!((n("dev/null").kind, n("dev/null").mode), ("char", 0o666));
    assert_eq!(n("data/xattr").xattrs["user.k"], b"v\0\xffal");
    assert_eq!(n("data/chmod").mode, 0o600);
    assert_eq!(n("data/changed").content, sha256(b"version 2, longer\n"));
    assert!(t.contains_key("data/new"));
    for gone in ["data/gone", "data/dir-gone", "data/dir-gone/inner"] {
        assert!(!t.contains_key(gone), "{gone} survived its whiteout");
    }
    assert!(t.keys().any(|k| k.len() > 100 && k.starts_with(LONG_DIR)));
}

// ---------------------------------------------------------------- fixtures

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// Deterministic incompressible-ish bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const LONG_DIR: &str = "deep/a-directory-name-that-is-rather-long-to-push-paths-past-one-hundred";

/// The first layer: every kind of object tar carries.
fn populate(r: &Path) {
    mkdir(&r.join("etc"), 0o755);
    write(&r.join("etc/hello"), b"hello\n", 0o644);
    chown(&r.join("etc/hello"), 1000, 2000);
    fs::hard_link(r.join("etc/hello"), r.join("etc/hardlink")).unwrap();
    mkdir(&r.join("bin"), 0o755);
    write(&r.join("bin/su"), b"#!setuid\n", 0o4755);
    write(&r.join("bin/sg"), b"#!setgid\n", 0o2711);
    symlink("../etc/hello", r.join("bin/link")).unwrap();
    symlink("/etc/hello", r.join("bin/abs")).unwrap();
    symlink("nowhere", r.join("bin/dangling")).unwrap();
    chown(&r.join("bin/dangling"), 7, 8);
    mkdir(&r.join("empty"), 0o750);
    mkdir(&r.join("tmp"), 0o1777);
    mkdir(&r.join("data"), 0o755);
    write(&r.join("data/xattr"), b"with xattrs\n", 0o640);
    rustix::fs::lsetxattr(
        r.join("data/xattr"),
        "user.k",
        b"v\0\xffal",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        r.join("data/xattr"),
        "user.other",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    write(&r.join("data/big"), &noise(300 << 10, 7), 0o644);
    write(&r.join("data/empty-file"), b"", 0o600);
    write(&r.join("data/gone"), b"deleted in layer 2\n", 0o644);
    write(
        &r.join("data/dir-gone/inner"),
        b"deleted with its dir\n",
        0o644,
    );
    write(&r.join("data/changed"), b"version 1\n", 0o644);
    write(&r.join("data/chmod"), b"mode changes in layer 2\n", 0o644);
    write(&r.join("data/sp ace \u{fc}.txt"), b"unicode\n", 0o644);
    write(
        &r.join(LONG_DIR).join("and-a-file-with-a-long-name-too.txt"),
        b"long path\n",
        0o644,
    );
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("data/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    mkdir(&r.join("dev"), 0o755);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    // mknod obeys the umask.
    fs::set_permissions(r.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(r.join("data/fifo"), fs::Permissions::from_mode(0o640)).unwrap();
}

/// The second layer: deletions (whiteouts), a change, a mode change, an addition.
fn modify(r: &Path) {
    fs::remove_file(r.join("data/gone")).unwrap();
    fs::remove_dir_all(r.join("data/dir-gone")).unwrap();
    write(&r.join("data/changed"), b"version 2, longer\n", 0o644);
    fs::set_permissions(r.join("data/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&r.join("data/new"), b"added in layer 2\n", 0o644);
}

/// An OCI layout built with umoci; `rootfs[tag]` is the tree that tag's
/// image holds (the bundle it was repacked from).
struct Built {
    dir: TempDir,
    layout: PathBuf,
    rootfs: BTreeMap<String, PathBuf>,
}

/// Repacks into `layout:tag` what `edit` does to `from`'s rootfs (a fresh
/// image when `from` is None).
fn umoci_layer(b: &mut Built, from: Option<&str>, tag: &str, edit: impl FnOnce(&Path)) {
    let layout = b.layout.to_str().unwrap().to_string();
    let bundle = b.dir.path().join(format!("bundle-{tag}"));
    let src = from.unwrap_or(tag);
    if from.is_none() {
        umoci(&["new", "--image", &format!("{layout}:{tag}")]);
    }
    umoci(&[
        "unpack",
        "--image",
        &format!("{layout}:{src}"),
        bundle.to_str().unwrap(),
    ]);
    let rootfs = bundle.join("rootfs");
    edit(&rootfs);
    umoci(&[
        "repack",
        "--image",
        &format!("{layout}:{tag}"),
        bundle.to_str().unwrap(),
    ]);
    b.rootfs.insert(tag.to_string(), rootfs);
}

fn new_layout() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    Built {
        dir,
        layout,
        rootfs: BTreeMap::new(),
    }
}

/// `layout:v1`: two layers (the second with whiteouts) and a config.
fn two_layer_image() -> Built {
    let mut b = new_layout();
    umoci_layer(&mut b, None, "base", populate);
    umoci_layer(&mut b, Some("base"), "v1", modify);
    let image = format!("{}:v1", b.layout.display());
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/app",
        "--config.env",
        "GREETING=hello world",
        "--config.workingdir",
        "/srv",
        "--config.user",
        "1000:2000",
    ]);
    b
}

// ---------------------------------------------------------------- tests

/// umoci → skopeo (docker-archive and oci-archive) → thinsnap load: the
/// image id is the config digest skopeo reports, the layers' diffIDs are the
/// config's, and the layers thinsnap saves rebuild umoci's rootfs.
#[test]
fn an_image_built_with_umoci_loads() {
    if !peers() {
        return;
    }
    let b = two_layer_image();
    let work = tempfile::tempdir().unwrap();
    let src = at("oci", &b.layout, "v1");
    let want = Inspected::of(&src);
    let id = want.config_digest();
    assert_eq!(sha256(&want.config), id);
    assert_eq!(want.diff_ids().len(), 2);
    // umoci compresses: the layer digests are not the diffIDs.
    assert_ne!(want.layer_digests(), want.diff_ids());

    let docker = work.path().join("d.tar");
    let oci = work.path().join("o.tar");
    skopeo_copy(
        &src,
        &format!("docker-archive:{}:example.com/app:v1", docker.display()),
        &[],
    );
    skopeo_copy(&src, &at("oci-archive", &oci, "app:v1"), &[]);
    // skopeo keeps the config bytes in both conversions.
    assert_eq!(
        sha256(&skopeo(&[
            "inspect",
            "--config",
            "--raw",
            &at("docker-archive", &docker, "")
        ])),
        id
    );
    assert_eq!(
        Inspected::of(&at("oci-archive", &oci, "")).config_digest(),
        id
    );

    let mut saves = Vec::new();
    for (archive, repo, tag, familiar) in [
        (&docker, "example.com/app", "v1", "example.com/app:v1"),
        (&oci, "app", "v1", "app:v1"),
    ] {
        let root = work.path().join(format!(
            "root-{}",
            archive.file_stem().unwrap().to_str().unwrap()
        ));
        let out = thinsnap(&root, &["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out.trim(), format!("Loaded image: {familiar}"));
        assert_listed(&root, repo, tag, &id);
        let (got_id, layers) = ts_image(&root, familiar);
        assert_eq!(got_id, id, "{}", archive.display());
        assert_eq!(layers, want.diff_ids(), "{}", archive.display());

        // The rootfs from thinsnap's layers equals umoci's bundle.
        let saved = work
            .path()
            .join(format!("saved-{repo}.tar").replace('/', "_"));
        thinsnap(&root, &["save", "-o", saved.to_str().unwrap(), familiar]);
        let applied = tempfile::tempdir().unwrap();
        apply_saved(&saved, familiar, applied.path());
        assert_fixture(&tree(applied.path()));
        compare(
            &format!(
                "layers of {} applied by thinsnap vs umoci's bundle",
                archive.display()
            ),
            &seconds(tree(&b.rootfs["v1"])),
            &seconds(tree(applied.path())),
        );
        saves.push(saved);
    }
    // Whether the layers came gzipped (oci-archive) or not (docker-archive),
    // thinsnap saves the same blobs: config, manifest, uncompressed layers.
    let blobs = |p: &PathBuf| -> Vec<String> {
        tar_names(p)
            .into_iter()
            .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 13)
            .collect()
    };
    assert_eq!(blobs(&saves[0]), blobs(&saves[1]));
    assert_eq!(blobs(&saves[0]).len(), 4);
}

/// thinsnap's save → skopeo copy docker-archive / oci-archive → OCI
/// layouts with thinsnap's config digest and diffIDs (and, where skopeo
/// is told not to recompress, thinsnap's exact manifest and layers); the
/// rootfs umoci unpacks from each equals umoci's original bundle and the
/// tree thinsnap's layers make.
#[test]
fn a_saved_archive_is_accepted_by_skopeo_and_unpacked_by_umoci() {
    if !peers() {
        return;
    }
    let b = two_layer_image();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = at("oci", &b.layout, "v1");
    let orig = Inspected::of(&src);
    let root = w.join("root");
    // Loaded from an oci-archive, the layers are stored gzipped as umoci
    // made them: save must give them back uncompressed, named by diffID.
    let oci_in = w.join("in.tar");
    skopeo_copy(&src, &at("oci-archive", &oci_in, "example.com/app:v1"), &[]);
    thinsnap(&root, &["load", "-i", oci_in.to_str().unwrap()]);
    let (id, diff_ids) = ts_image(&root, "example.com/app:v1");
    assert_eq!(id, orig.config_digest());
    let saved = w.join("s.tar");
    thinsnap(
        &root,
        &["save", "-o", saved.to_str().unwrap(), "example.com/app:v1"],
    );
    let our_config = tar_member(&saved, &format!("blobs/sha256/{}", &id[7..]));
    let index = json(&tar_member(&saved, "index.json"));
    let our_manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );

    // docker-archive, read as skopeo reads it: the same config and layers
    // (uncompressed, so the layer digests are the diffIDs).
    let d = at("docker-archive", &saved, "");
    assert_eq!(sha256(&skopeo(&["inspect", "--config", "--raw", &d])), id);
    let di: Value = json(&skopeo(&["inspect", &d]));
    assert_eq!(strs(&di["Layers"]), diff_ids);
    let named = at("docker-archive", &saved, "example.com/app:v1");
    assert_eq!(
        sha256(&skopeo(&["inspect", "--config", "--raw", &named])),
        id
    );

    // docker-archive → dir: keeps the docker manifest, config bytes and layers as they are.
    let dir = w.join("dir");
    skopeo_copy(&d, &at("dir", &dir, ""), &[]);
    let dm = json(&fs::read(dir.join("manifest.json")).unwrap());
    assert_eq!(dm["config"]["digest"], id.as_str());
    let dl: Vec<String> = dm["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dl, diff_ids);
    for l in &diff_ids {
        assert_eq!(sha256(&fs::read(dir.join(&l[7..])).unwrap()), *l);
    }

    // docker-archive → oci: skopeo converts the docker manifest to OCI and
    // in doing so re-serialises the config (observed with skopeo 1.9: the
    // trailing newline umoci wrote is dropped), so the config digest
    // changes while its content does not; it also gzips the layers. The
    // diffIDs in the config are ours.
    let out_d = w.join("out-docker");
    skopeo_copy(&d, &at("oci", &out_d, "v1"), &[]);
    let got = Inspected::of(&at("oci", &out_d, "v1"));
    assert_eq!(got.diff_ids(), diff_ids);
    assert_eq!(
        json(&got.config),
        json(&our_config),
        "the config's content changed"
    );
    assert_eq!(
        String::from_utf8_lossy(&got.config).trim_end(),
        String::from_utf8_lossy(&our_config).trim_end()
    );

    // oci-archive → oci: the same config digest; gzipped layers by default.
    let out_o = w.join("out-oci");
    skopeo_copy(
        &at("oci-archive", &saved, ""),
        &at("oci", &out_o, "v1"),
        &[],
    );
    let got = Inspected::of(&at("oci", &out_o, "v1"));
    assert_eq!(got.config_digest(), id);
    assert_eq!(got.config, our_config);
    assert_eq!(got.diff_ids(), diff_ids);

    // oci-archive (selected by its ref.name) → oci without recompression:
    // thinsnap's manifest, config and layers, byte for byte.
    let out_p = w.join("out-preserved");
    skopeo_copy(
        &at("oci-archive", &saved, "v1"),
        &at("oci", &out_p, "v1"),
        &[
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
        ],
    );
    let got = Inspected::of(&at("oci", &out_p, "v1"));
    assert_eq!(got.manifest_digest, our_manifest_digest);
    assert_eq!(got.config_digest(), id);
    assert_eq!(got.layer_digests(), diff_ids);

    // umoci unpacks each to the original bundle's tree, which is also the
    // tree thinsnap's layers make.
    let bundle_tree = seconds(tree(&b.rootfs["v1"]));
    let applied = tempfile::tempdir().unwrap();
    apply_saved(&saved, "example.com/app:v1", applied.path());
    let ours = tree(applied.path());
    assert_fixture(&ours);
    compare(
        "thinsnap's layers applied by thinsnap vs umoci's bundle",
        &bundle_tree,
        &seconds(ours.clone()),
    );
    for (name, layout) in [
        ("docker-archive", &out_d),
        ("oci-archive", &out_o),
        ("oci-archive preserved", &out_p),
    ] {
        let bundle = w.join(format!(
            "unpacked-{}",
            layout.file_name().unwrap().to_str().unwrap()
        ));
        umoci(&[
            "unpack",
            "--image",
            &format!("{}:v1", layout.display()),
            bundle.to_str().unwrap(),
        ]);
        let theirs = tree(&bundle.join("rootfs"));
        assert_fixture(&theirs);
        compare(
            &format!("{name} unpacked by umoci vs umoci's bundle"),
            &bundle_tree,
            &seconds(theirs.clone()),
        );
        compare(
            &format!("{name} unpacked by umoci vs applied by thinsnap"),
            &ours,
            &theirs,
        );
        let cfg = json(&fs::read(bundle.join("config.json")).unwrap());
        assert_eq!(cfg["process"]["args"], serde_json::json!(["/bin/app"]));
        assert_eq!(cfg["process"]["cwd"], "/srv");
    }

    // And back: what skopeo made of our archive loads as the same image.
    let back = w.join("back.tar");
    skopeo_copy(
        &at("oci", &out_o, "v1"),
        &format!("docker-archive:{}:example.com/app:back", back.display()),
        &[],
    );
    thinsnap(&root, &["load", "-i", back.to_str().unwrap()]);
    assert_eq!(ts_image(&root, "example.com/app:back"), (id, diff_ids));
}

/// Several images sharing a base layer, saved in one archive: the shared
/// layer is stored once, and skopeo accepts each tag from both the
/// docker-archive and the OCI side with thinsnap's digests.
#[test]
fn a_multi_image_save_is_accepted_by_skopeo_for_each_tag() {
    if !peers() {
        return;
    }
    let mut b = new_layout();
    umoci_layer(&mut b, None, "base", populate);
    umoci_layer(&mut b, Some("base"), "v1", modify);
    umoci_layer(&mut b, Some("base"), "v2", |r| {
        fs::remove_file(r.join("etc/hardlink")).unwrap();
        write(&r.join("data/v2-only"), b"v2\n", 0o644);
    });
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root = w.join("root");
    let tags = ["base", "v1", "v2"];
    let mut ids = BTreeMap::new();
    for tag in tags {
        let ar = w.join(format!("in-{tag}.tar"));
        skopeo_copy(
            &at("oci", &b.layout, tag),
            &format!("docker-archive:{}:example.com/app:{tag}", ar.display()),
            &[],
        );
        thinsnap(&root, &["load", "-i", ar.to_str().unwrap()]);
        let refname = format!("example.com/app:{tag}");
        let (id, layers) = ts_image(&root, &refname);
        assert_eq!(
            id,
            Inspected::of(&at("oci", &b.layout, tag)).config_digest()
        );
        ids.insert(tag, (id, layers));
    }
    assert_eq!(ids["v1"].1[0], ids["base"].1[0]);
    assert_eq!(ids["v2"].1[0], ids["base"].1[0]);

    let saved = w.join("multi.tar");
    let names: Vec<String> = tags
        .iter()
        .map(|t| format!("example.com/app:{t}"))
        .collect();
    let mut args = vec!["save".to_string(), "-o".into(), saved.display().to_string()];
    args.extend(names.iter().cloned());
    thinsnap(&root, &args);

    // The shared base layer is stored once.
    let entries = tar_names(&saved);
    let unique: BTreeSet<&String> = entries.iter().collect();
    assert_eq!(
        unique.len(),
        entries.len(),
        "duplicate entries: {entries:?}"
    );
    let layer_blobs: BTreeSet<&String> = ids.values().flat_map(|(_, l)| l.iter()).collect();
    assert_eq!(layer_blobs.len(), 3);
    for l in &layer_blobs {
        assert!(entries.contains(&format!("blobs/sha256/{}", &l[7..])));
    }
    let manifest = json(&tar_member(&saved, "manifest.json"));
    assert_eq!(manifest.as_array().unwrap().len(), 3);

    for tag in tags {
        let (id, diff_ids) = &ids[tag];
        let refname = format!("example.com/app:{tag}");
        // docker-archive, selected by RepoTags.
        let d = at("docker-archive", &saved, &refname);
        assert_eq!(
            sha256(&skopeo(&["inspect", "--config", "--raw", &d])),
            *id,
            "{tag}"
        );
        let out_d = w.join(format!("out-d-{tag}"));
        skopeo_copy(&d, &at("oci", &out_d, tag), &[]);
        assert_eq!(
            Inspected::of(&at("oci", &out_d, tag)).diff_ids(),
            *diff_ids,
            "{tag}"
        );
        // oci-archive, selected by org.opencontainers.image.ref.name.
        let out_o = w.join(format!("out-o-{tag}"));
        skopeo_copy(
            &at("oci-archive", &saved, tag),
            &at("oci", &out_o, tag),
            &[
                "--preserve-digests",
                "--dest-oci-accept-uncompressed-layers",
            ],
        );
        let got = Inspected::of(&at("oci", &out_o, tag));
        assert_eq!(got.config_digest(), *id, "{tag}");
        assert_eq!(got.layer_digests(), *diff_ids, "{tag}");
        // And umoci unpacks the image to the bundle it was made from.
        let bundle = w.join(format!("unpacked-{tag}"));
        umoci(&[
            "unpack",
            "--image",
            &format!("{}:{tag}", out_d.display()),
            bundle.to_str().unwrap(),
        ]);
        compare(
            &format!("{tag} unpacked by umoci vs umoci's bundle"),
            &seconds(tree(&b.rootfs[tag])),
            &seconds(tree(&bundle.join("rootfs"))),
        );
        let applied = tempfile::tempdir().unwrap();
        apply_saved(&saved, &refname, applied.path());
        compare(
            &format!("{tag} unpacked by umoci vs applied by thinsnap"),
            &tree(applied.path()),
            &tree(&bundle.join("rootfs")),
        );
    }
}
