//! `save`: one tar that is both a docker-archive (`manifest.json`,
//! `repositories`) and an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`), as Docker 25+ writes it. Layers are uncompressed tars
//! named by diff id, stored once however many images share them; entries
//! come in a fixed order with fixed metadata, so saving twice gives
//! identical bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::engine::digest::{Digest, DigestWriter};
use crate::engine::model::{
    Descriptor, Index, Manifest, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};
use crate::engine::reference::Reference;
use crate::engine::{Engine, EngineError, Result};

/// Where a blob's bytes come from when writing the tar.
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// One image to save, with the references to record for it.
struct Item {
    id: Digest,
    refs: Vec<Reference>,
}

fn header(path: &str, size: u64, dir: bool) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // Path lengths here are fixed and short ("blobs/sha256/<64 hex>").
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

impl Engine {
    fn save_items(&self, names: &[String]) -> Result<Vec<Item>> {
        let mut items: Vec<Item> = Vec::new();
        let mut add = |id: Digest, r: Option<Reference>| match items.iter_mut().find(|i| i.id == id)
        {
            Some(i) => {
                if let Some(r) = r.filter(|r| !i.refs.contains(r)) {
                    i.refs.push(r);
                }
            }
            None => items.push(Item {
                id,
                refs: r.into_iter().collect(),
            }),
        };
        for n in names {
            let id = self.resolve(n);
            let parsed = Reference::parse(n).ok();
            match (id, parsed) {
                // A repository name alone saves every tag of that repository.
                (Err(EngineError::ImageNotFound { .. }), Some(r)) if r.is_name_only() => {
                    let repo = r.name();
                    let hits: Vec<(String, Digest)> = self
                        .store
                        .state
                        .tags
                        .iter()
                        .filter(|(t, _)| Reference::parse(t).is_ok_and(|x| x.name() == repo))
                        .map(|(t, d)| (t.clone(), d.clone()))
                        .collect();
                    if hits.is_empty() {
                        return Err(EngineError::ImageNotFound { name: n.clone() });
                    }
                    for (t, d) in hits {
                        add(d, Reference::parse(&t).ok());
                    }
                }
                (Ok(id), Some(r))
                    if r.digest().is_none()
                        && self.store.state.tags.get(&r.to_string()) == Some(&id) =>
                {
                    add(id, Some(r))
                }
                (Ok(id), _) => add(id, None),
                (Err(e), _) => return Err(e),
            }
        }
        Ok(items)
    }

    /// An uncompressed layer tar named by its diff id: the stored blob when
    /// it is already uncompressed, else a decompressed copy (checked).
    fn layer_source(&self, chain: &Digest, tmp: &std::path::Path) -> Result<(Digest, u64, Source)> {
        let l = self
            .store
            .state
            .layers
            .get(chain)
            .ok_or_else(|| EngineError::archive(format!("layer {chain} is missing")))?;
        if let Some(b) = l.blobs.iter().find(|b| b.digest == l.diff_id) {
            return Ok((
                l.diff_id.clone(),
                b.size,
                Source::File(self.blobs.path(&b.digest)),
            ));
        }
        let b = l
            .blobs
            .first()
            .ok_or_else(|| EngineError::archive(format!("layer {chain} has no blob")))?;
        let path = tmp.join(l.diff_id.hex());
        let out = File::create(&path).map_err(EngineError::io("create", &path))?;
        let mut w = DigestWriter::new(std::io::BufWriter::new(out));
        std::io::copy(&mut self.uncompressed(&b.digest)?, &mut w)
            .map_err(EngineError::io("decompress", &path))?;
        let (d, size, mut inner) = w.finish();
        inner.flush().map_err(EngineError::io("write", &path))?;
        if d != l.diff_id {
            return Err(EngineError::DigestMismatch {
                what: format!("layer {chain}"),
                expected: l.diff_id.clone(),
                actual: d,
            });
        }
        Ok((d, size, Source::File(path)))
    }

    /// Writes the images `names` as one archive.
    ///
    /// # Errors
    /// Resolution errors, missing blobs, write errors.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<()> {
        let items = self.save_items(names)?;
        let tmp = self.tmp_dir()?;
        let mut contents = Contents::default();
        for item in &items {
            self.add_image(&mut contents, item, tmp.path())?;
        }
        write_tar(out, &contents.blobs, &contents.documents()?)
    }

    /// Adds `item`'s config and layer blobs to `c`, then its manifest.
    fn add_image(&self, c: &mut Contents, item: &Item, tmp: &Path) -> Result<()> {
        let img =
            self.store
                .state
                .images
                .get(&item.id)
                .ok_or_else(|| EngineError::ImageNotFound {
                    name: item.id.to_string(),
                })?;
        let cfg_size = self.blobs.size(&item.id)?;
        c.blobs.insert(
            item.id.clone(),
            (cfg_size, Source::File(self.blobs.path(&item.id))),
        );
        let mut layers = Vec::new();
        for chain in &img.chain {
            let (d, size, src) = self.layer_source(chain, tmp)?;
            layers.push(Descriptor {
                media_type: OCI_LAYER.into(),
                digest: d.clone(),
                size,
                annotations: Default::default(),
                platform: None,
            });
            c.blobs.entry(d).or_insert((size, src));
        }
        c.add_manifest(item, cfg_size, layers)
    }
}

/// What an archive holds, gathered image by image before anything is
/// written.
#[derive(Default)]
struct Contents {
    blobs: BTreeMap<Digest, (u64, Source)>,
    /// `index.json`'s manifests: one per reference, or one unnamed.
    index: Vec<Descriptor>,
    /// `manifest.json`'s entries.
    docker: Vec<serde_json::Value>,
    /// `repositories`: name, tag, top layer.
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

impl Contents {
    /// Adds the manifest of `item` (its config and `layers`), named by
    /// each of its references in both layouts.
    fn add_manifest(&mut self, item: &Item, cfg_size: u64, layers: Vec<Descriptor>) -> Result<()> {
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: OCI_CONFIG.into(),
                digest: item.id.clone(),
                size: cfg_size,
                annotations: Default::default(),
                platform: None,
            },
            layers,
            annotations: Default::default(),
        };
        let layers = &manifest.layers;
        let mbytes = serde_json::to_vec(&manifest).map_err(EngineError::json("manifest"))?;
        let mdigest = Digest::of(&mbytes);
        let mdesc = |annotations| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: mdigest.clone(),
            size: mbytes.len() as u64,
            annotations,
            platform: None,
        };
        if item.refs.is_empty() {
            self.index.push(mdesc(Default::default()));
        }
        for r in &item.refs {
            let tag = r.tag_or_latest().to_string();
            let ann = BTreeMap::from([
                ("io.containerd.image.name".to_string(), r.to_string()),
                ("org.opencontainers.image.ref.name".to_string(), tag.clone()),
            ]);
            self.index.push(mdesc(ann));
            if let Some(top) = layers.last() {
                self.repositories
                    .entry(r.familiar_name())
                    .or_default()
                    .insert(tag, top.digest.hex().to_string());
            }
        }
        self.docker.push(json!({
            "Config": format!("blobs/sha256/{}", item.id.hex()),
            "RepoTags": if item.refs.is_empty() { serde_json::Value::Null } else { json!(item.refs.iter().map(|r| r.familiar()).collect::<Vec<_>>()) },
            "Layers": layers.iter().map(|l| format!("blobs/sha256/{}", l.digest.hex())).collect::<Vec<_>>(),
        }));
        self.blobs.insert(
            mdigest.clone(),
            (mbytes.len() as u64, Source::Bytes(mbytes)),
        );
        Ok(())
    }

    /// The top-level documents of both layouts.
    fn documents(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: self.index.clone(),
            annotations: Default::default(),
        };
        Ok(vec![
            (
                "index.json",
                serde_json::to_vec(&idx).map_err(EngineError::json("index"))?,
            ),
            (
                "manifest.json",
                serde_json::to_vec(&self.docker).map_err(EngineError::json("manifest.json"))?,
            ),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "repositories",
                serde_json::to_vec(&self.repositories)
                    .map_err(EngineError::json("repositories"))?,
            ),
        ])
    }
}

fn write_tar(
    out: &mut dyn Write,
    blobs: &BTreeMap<Digest, (u64, Source)>,
    files: &[(&str, Vec<u8>)],
) -> Result<()> {
    let mut b = tar::Builder::new(out);
    let werr = |e: std::io::Error| EngineError::Io {
        op: "write",
        path: "archive".into(),
        source: e,
    };
    for d in ["blobs/", "blobs/sha256/"] {
        b.append(&header(d, 0, true), std::io::empty())
            .map_err(werr)?;
    }
    let mut seen = BTreeSet::new();
    for (d, (size, src)) in blobs {
        if !seen.insert(d.clone()) {
            continue;
        }
        let h = header(&format!("blobs/sha256/{}", d.hex()), *size, false);
        match src {
            Source::Bytes(v) => b.append(&h, &v[..]).map_err(werr)?,
            Source::File(p) => {
                let f = File::open(p).map_err(EngineError::io("open", p))?;
                b.append(&h, f.take(*size)).map_err(werr)?
            }
        }
    }
    for (name, bytes) in files {
        b.append(&header(name, bytes.len() as u64, false), &bytes[..])
            .map_err(werr)?;
    }
    b.finish().map_err(werr)?;
    Ok(())
}
