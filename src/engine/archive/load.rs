//! `load`: docker-archive (manifest.json; old layouts with `<id>/layer.tar`
//! and Docker 25+'s `blobs/sha256/`), OCI layout archives (index.json,
//! nested indexes, platform selection), gzip/zstd compressed or plain.
//! Every blob is checked against its digest and every layer against the
//! config's diff ids; on any error the store is left exactly as before.

use std::io::BufRead;

use serde::Deserialize;

use super::stage::{Stage, Staged};
use super::Loaded;
use crate::engine::digest::Digest;
use crate::engine::images::now;
use crate::engine::model::{
    chain_ids, host_platform, Descriptor, ImageConfig, Index, Manifest, Platform, DOCKER_LIST,
    OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
};
use crate::engine::reference::Reference;
use crate::engine::store::BlobRef;
use crate::engine::{decompress, Engine, EngineError, Result};

/// One image found in an archive, before it is stored.
struct Candidate {
    config: Staged,
    layers: Vec<(Staged, String)>,
    names: Vec<Reference>,
    manifest: Option<Staged>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A file named by a manifest.json: `blobs/sha256/<hex>` and `<hex>.json`
/// names promise a digest, and the content must keep that promise.
fn staged<'a>(stage: &'a Stage, path: &str) -> Result<&'a Staged> {
    let s = stage
        .get(path)
        .ok_or_else(|| EngineError::archive(format!("{path} is missing")))?;
    let named = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json").filter(|h| h.len() == 64));
    if let Some(d) = named.and_then(|h| Digest::from_hex(h).ok()) {
        if s.digest != d {
            return Err(EngineError::DigestMismatch {
                what: path.to_string(),
                expected: d,
                actual: s.digest.clone(),
            });
        }
    }
    Ok(s)
}

fn parse_ref(s: &str) -> Result<Reference> {
    Reference::parse(s)
        .map_err(|e| EngineError::archive(format!("bad image name {s:?} in the archive: {e}")))
}

fn sniff(stage: &Staged) -> String {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(&stage.file)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    match &head[..n] {
        [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => OCI_LAYER_ZSTD,
        _ => OCI_LAYER,
    }
    .to_string()
}

fn docker_candidates(stage: &Stage) -> Result<Vec<Candidate>> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&stage.read_json_bytes("manifest.json")?)
            .map_err(EngineError::json("manifest.json"))?;
    if entries.is_empty() {
        return Err(EngineError::archive("manifest.json lists no images"));
    }
    entries
        .into_iter()
        .map(|e| {
            let config = staged(stage, &e.config)?.clone();
            let layers = e
                .layers
                .iter()
                .map(|l| staged(stage, l).map(|s| (s.clone(), sniff(s))))
                .collect::<Result<Vec<_>>>()?;
            let names = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| parse_ref(t))
                .collect::<Result<Vec<_>>>()?;
            Ok(Candidate {
                config,
                layers,
                names,
                manifest: None,
            })
        })
        .collect()
}

fn platform_ok(p: &Option<Platform>, host: &Platform) -> bool {
    p.as_ref()
        .is_none_or(|p| p.os == host.os && p.architecture == host.architecture)
}

/// Manifests reachable from an index, one platform's only when it has several.
fn walk_index(stage: &Stage, index: &Index, depth: usize, out: &mut Vec<Descriptor>) -> Result<()> {
    if depth > 4 {
        return Err(EngineError::archive("indexes nested too deep"));
    }
    let host = host_platform();
    let multi = index
        .manifests
        .iter()
        .filter(|d| d.platform.is_some())
        .count()
        > 1;
    let before = out.len();
    for d in &index.manifests {
        if multi && !platform_ok(&d.platform, &host) {
            continue;
        }
        if d.media_type == OCI_INDEX || d.media_type == DOCKER_LIST {
            let s = stage.blob(&d.digest, Some(d.size))?;
            let bytes = crate::engine::blobs::read_limited(
                std::fs::File::open(&s.file).map_err(EngineError::io("open", &s.file))?,
                crate::engine::blobs::MAX_JSON,
                "index",
            )?;
            let nested: Index = serde_json::from_slice(&bytes)
                .map_err(EngineError::json(format!("index {}", d.digest)))?;
            let mut inner = Vec::new();
            walk_index(stage, &nested, depth + 1, &mut inner)?;
            for mut m in inner {
                for (k, v) in &d.annotations {
                    m.annotations.entry(k.clone()).or_insert_with(|| v.clone());
                }
                out.push(m);
            }
        } else {
            out.push(d.clone());
        }
    }
    if multi && out.len() == before {
        let have: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        return Err(EngineError::archive(format!(
            "no image for {}/{} in the archive (it has {})",
            host.os,
            host.architecture,
            have.join(", ")
        )));
    }
    Ok(())
}

fn oci_candidates(stage: &Stage) -> Result<Vec<Candidate>> {
    let index: Index = serde_json::from_slice(&stage.read_json_bytes("index.json")?)
        .map_err(EngineError::json("index.json"))?;
    let mut manifests = Vec::new();
    walk_index(stage, &index, 0, &mut manifests)?;
    let mut out = Vec::new();
    for d in manifests {
        let ms = stage.blob(&d.digest, Some(d.size))?.clone();
        let bytes = crate::engine::blobs::read_limited(
            std::fs::File::open(&ms.file).map_err(EngineError::io("open", &ms.file))?,
            crate::engine::blobs::MAX_JSON,
            "manifest",
        )?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(EngineError::json(format!("manifest {}", d.digest)))?;
        let config = stage.blob(&m.config.digest, Some(m.config.size))?.clone();
        let layers = m
            .layers
            .iter()
            .map(|l| {
                Ok((
                    stage.blob(&l.digest, Some(l.size))?.clone(),
                    l.media_type.clone(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut names = Vec::new();
        if let Some(n) = d.annotations.get("io.containerd.image.name") {
            names.push(parse_ref(n)?);
        } else if let Some(n) = d.annotations.get("org.opencontainers.image.ref.name") {
            // A bare tag ("latest") names no repository: the image loads untagged.
            if n.contains(':') || n.contains('/') {
                names.push(parse_ref(n)?);
            }
        }
        out.push(Candidate {
            config,
            layers,
            names,
            manifest: Some(ms),
        });
    }
    Ok(out)
}

impl Engine {
    /// Loads every image of an archive.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`], digest and diff id mismatches,
    /// layer errors; the store is then as it was before.
    pub fn load(&mut self, input: Box<dyn BufRead>) -> Result<Vec<Loaded>> {
        let reader = decompress(input, "archive")?;
        let tmp = self.tmp_dir()?;
        let stage = Stage::unpack(reader, tmp.path())?;
        let candidates = if stage.has("manifest.json") {
            docker_candidates(&stage)?
        } else if stage.has("index.json") {
            oci_candidates(&stage)?
        } else {
            return Err(EngineError::archive("it contains neither a manifest.json (docker-archive) nor an index.json (OCI layout)"));
        };
        self.transaction(|e| e.store_candidates(candidates))
    }

    fn store_candidates(&mut self, candidates: Vec<Candidate>) -> Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for c in candidates {
            out.push(self.store_candidate(c)?);
        }
        Ok(out)
    }

    fn store_candidate(&mut self, c: Candidate) -> Result<Loaded> {
        // An image listed twice: the first listing moved the staged file in.
        let bytes = if c.config.file.exists() {
            crate::engine::blobs::read_limited(
                std::fs::File::open(&c.config.file)
                    .map_err(EngineError::io("open", &c.config.file))?,
                crate::engine::blobs::MAX_JSON,
                "image config",
            )?
        } else {
            self.blobs
                .read(&c.config.digest, crate::engine::blobs::MAX_JSON)?
        };
        let cfg = ImageConfig::parse(&bytes)?;
        let id = c.config.digest.clone();
        if cfg.rootfs.diff_ids.len() != c.layers.len() {
            return Err(EngineError::archive(format!(
                "image {id}: its config lists {} layers, the archive gives {}",
                cfg.rootfs.diff_ids.len(),
                c.layers.len()
            )));
        }
        self.blobs.adopt(&c.config.file, &id)?;
        if let Some(m) = &c.manifest {
            self.blobs.adopt(&m.file, &m.digest)?;
        }
        let chain = chain_ids(&cfg.rootfs.diff_ids);
        for (i, (staged, media_type)) in c.layers.iter().enumerate() {
            self.blobs.adopt(&staged.file, &staged.digest)?;
            let blob = BlobRef {
                digest: staged.digest.clone(),
                media_type: media_type.clone(),
                size: staged.size,
            };
            let expected = cfg.rootfs.diff_ids[i].clone();
            let image = id.clone();
            let mismatch = move |actual: Digest| EngineError::DiffIdMismatch {
                image: image.clone(),
                index: i,
                expected: expected.clone(),
                actual,
            };
            self.create_layer(
                i.checked_sub(1).map(|p| &chain[p]),
                &chain[i],
                &cfg.rootfs.diff_ids[i],
                blob,
                &mismatch,
            )?;
        }
        let rec = self.image_entry(&id, chain, None, &now());
        if let Some(m) = &c.manifest {
            rec.manifest.get_or_insert(m.digest.clone());
            for n in &c.names {
                rec.repo_digests
                    .insert(format!("{}@{}", n.name(), m.digest));
            }
        }
        let mut refs = Vec::new();
        // A name with only a digest records a repo digest (above), no tag.
        for n in c.names.iter().filter(|n| n.tag().is_some()) {
            self.store.state.tags.insert(n.to_string(), id.clone());
            refs.push(n.familiar());
        }
        if !refs.is_empty() {
            if let Some(r) = self.store.state.images.get_mut(&id) {
                r.last_tag_time = Some(now());
            }
        }
        Ok(Loaded { id, refs })
    }
}
