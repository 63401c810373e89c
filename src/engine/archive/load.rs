//! `load`: docker-archive (manifest.json; old layouts with `<id>/layer.tar`
//! and Docker 25+'s `blobs/sha256/`), OCI layout archives (index.json,
//! nested indexes, platform selection), gzip/zstd compressed or plain.
//! Every blob is checked against its digest and every layer against the
//! config's diff ids; on any error the store is left exactly as before.
//! An uncompressed archive file is read in place ([`Stage::index`]): each
//! layer is read once, applied, hashed and stored in the same pass, and
//! checked before anything of it is kept.

use std::fs::File;
use std::io::BufRead;
use std::os::unix::fs::FileExt;

use serde::Deserialize;

use super::stage::{Stage, Staged};
use super::Loaded;
use crate::engine::blobs::MAX_JSON;
use crate::engine::digest::Digest;
use crate::engine::images::now;
use crate::engine::model::{
    chain_ids, host_platform, Descriptor, ImageConfig, Index, Manifest, Platform, DOCKER_LIST,
    OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
};
use crate::engine::reference::Reference;
use crate::engine::store::BlobRef;
use crate::engine::{decompress, Engine, EngineError, PendingBlob, Result, Source};

/// One image found in an archive, before it is stored.
struct Candidate {
    config: Staged,
    layers: Vec<LayerFile>,
    names: Vec<Reference>,
    manifest: Option<Staged>,
}

/// A layer blob in the archive.
struct LayerFile {
    /// Its path in the archive.
    path: String,
    staged: Staged,
    media_type: String,
    /// The digest its name or descriptor promises, checked when it is read.
    promised: Option<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a manifest.json path promises: `blobs/sha256/<hex>` and
/// `<hex>.json` names do, and the content must keep that promise.
fn promised(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json").filter(|h| h.len() == 64))
        .and_then(|h| Digest::from_hex(h).ok())
}

/// Checks a known digest against `promise`.
fn keeps(path: &str, s: &Staged, promise: Option<&Digest>) -> Result<()> {
    match (&s.digest, promise) {
        (Some(actual), Some(d)) if actual != d => Err(EngineError::DigestMismatch {
            what: path.to_string(),
            expected: d.clone(),
            actual: actual.clone(),
        }),
        _ => Ok(()),
    }
}

/// A document named by a manifest.json, copied out and checked.
fn document(stage: &Stage, path: &str) -> Result<Staged> {
    let missing = || EngineError::archive(format!("{path} is missing"));
    if stage.get(path).ok_or_else(missing)?.size > MAX_JSON {
        return Err(EngineError::TooLarge {
            what: path.to_string(),
            limit: MAX_JSON,
        });
    }
    let s = stage.settled(path)?.ok_or_else(missing)?;
    keeps(path, &s, promised(path).as_ref())?;
    Ok(s)
}

/// A layer named by a manifest.json, left where it is.
fn layer_file(stage: &Stage, path: &str) -> Result<LayerFile> {
    let staged = stage
        .get(path)
        .ok_or_else(|| EngineError::archive(format!("{path} is missing")))?;
    let promise = promised(path);
    keeps(path, &staged, promise.as_ref())?;
    Ok(LayerFile {
        path: path.to_string(),
        media_type: sniff(stage, &staged),
        staged,
        promised: promise,
    })
}

fn parse_ref(s: &str) -> Result<Reference> {
    Reference::parse(s)
        .map_err(|e| EngineError::archive(format!("bad image name {s:?} in the archive: {e}")))
}

fn sniff(stage: &Stage, s: &Staged) -> String {
    let mut head = [0u8; 4];
    let n = stage
        .reader(s)
        .ok()
        .and_then(|mut r| crate::engine::layer::read_full(&mut r, &mut head).ok())
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
            let config = document(stage, &e.config)?;
            let layers = e
                .layers
                .iter()
                .map(|l| layer_file(stage, l))
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
            let s = stage.blob_settled(&d.digest, Some(d.size))?;
            let bytes = s.read_json("index")?;
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
        let ms = stage.blob_settled(&d.digest, Some(d.size))?;
        let bytes = ms.read_json("manifest")?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(EngineError::json(format!("manifest {}", d.digest)))?;
        let config = stage.blob_settled(&m.config.digest, Some(m.config.size))?;
        let layers = m
            .layers
            .iter()
            .map(|l| {
                Ok(LayerFile {
                    path: format!("blobs/sha256/{}", l.digest.hex()),
                    staged: stage.blob(&l.digest, Some(l.size))?,
                    media_type: l.media_type.clone(),
                    promised: Some(l.digest.clone()),
                })
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
        self.load_stage(&stage)
    }

    /// Loads every image of an archive file. An uncompressed one is read
    /// in place: each layer once, while it is applied.
    ///
    /// # Errors
    /// As [`Engine::load`].
    pub fn load_file(&mut self, file: File) -> Result<Vec<Loaded>> {
        let mut head = [0u8; 4];
        let n = file
            .read_at(&mut head, 0)
            .map_err(EngineError::io("read", "the archive"))?;
        let compressed =
            head[..n].starts_with(&[0x1f, 0x8b]) || head[..n] == [0x28, 0xb5, 0x2f, 0xfd];
        let seekable = file.metadata().is_ok_and(|m| m.is_file());
        if compressed || !seekable {
            return self.load(Box::new(std::io::BufReader::new(file)));
        }
        let tmp = self.tmp_dir()?;
        let stage = Stage::index(file, tmp.path())?;
        self.load_stage(&stage)
    }

    fn load_stage(&mut self, stage: &Stage) -> Result<Vec<Loaded>> {
        let candidates = if stage.has("manifest.json") {
            docker_candidates(stage)?
        } else if stage.has("index.json") {
            oci_candidates(stage)?
        } else {
            return Err(EngineError::archive("it contains neither a manifest.json (docker-archive) nor an index.json (OCI layout)"));
        };
        self.transaction(|e| e.store_candidates(stage, candidates))
    }

    fn store_candidates(
        &mut self,
        stage: &Stage,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Loaded>> {
        let mut out = Vec::new();
        for c in candidates {
            out.push(self.store_candidate(stage, c)?);
        }
        Ok(out)
    }

    fn store_candidate(&mut self, stage: &Stage, c: Candidate) -> Result<Loaded> {
        let (id, cfg) = self.candidate_config(&c)?;
        if cfg.rootfs.diff_ids.len() != c.layers.len() {
            return Err(EngineError::archive(format!(
                "image {id}: its config lists {} layers, the archive gives {}",
                cfg.rootfs.diff_ids.len(),
                c.layers.len()
            )));
        }
        self.blobs.adopt(&c.config.file, &id)?;
        let manifest = match &c.manifest {
            Some(m) => {
                let d = m.digest.clone().ok_or_else(unsettled)?;
                self.blobs.adopt(&m.file, &d)?;
                Some(d)
            }
            None => None,
        };
        let chain = self.store_layers(stage, &c, &id, &cfg)?;
        let rec = self.image_entry(&id, chain, None, &now());
        if let Some(m) = &manifest {
            rec.manifest.get_or_insert(m.clone());
            for n in &c.names {
                rec.repo_digests.insert(format!("{}@{}", n.name(), m));
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

    /// The config of candidate `c` and its digest. An image listed twice
    /// finds its config already stored: the first listing moved the staged
    /// file in.
    fn candidate_config(&self, c: &Candidate) -> Result<(Digest, ImageConfig)> {
        let id = c.config.digest.clone().ok_or_else(unsettled)?;
        let bytes = if c.config.file.exists() {
            c.config.read_json("image config")?
        } else {
            self.blobs.read(&id, MAX_JSON)?
        };
        Ok((id, ImageConfig::parse(&bytes)?))
    }

    /// Applies the layers of candidate `c` (image `id`, config `cfg`) in
    /// order, each checked against its diff id, and returns the chain ids.
    fn store_layers(
        &mut self,
        stage: &Stage,
        c: &Candidate,
        id: &Digest,
        cfg: &ImageConfig,
    ) -> Result<Vec<Digest>> {
        let chain = chain_ids(&cfg.rootfs.diff_ids);
        for (i, l) in c.layers.iter().enumerate() {
            let diff_id = &cfg.rootfs.diff_ids[i];
            let (blob, source) = self.layer_blob(stage, l, diff_id)?;
            let image = id.clone();
            let mismatch = move |actual: Digest| EngineError::DiffIdMismatch {
                image: image.clone(),
                index: i,
                expected: diff_id.clone(),
                actual,
            };
            self.create_layer_from(
                i.checked_sub(1).map(|p| &chain[p]),
                &chain[i],
                diff_id,
                blob,
                source,
                &mismatch,
            )?;
        }
        Ok(chain)
    }
}

impl Engine {
    /// Where a layer's blob comes from: a copy already hashed, or the
    /// archive itself, read once while the layer is applied and checked
    /// against the digest its name or descriptor promises (for an
    /// uncompressed layer with no promise: its diff id, which it must
    /// have anyway).
    fn layer_blob(
        &mut self,
        stage: &Stage,
        l: &LayerFile,
        diff_id: &Digest,
    ) -> Result<(BlobRef, Source)> {
        let blob = |digest: Digest| BlobRef {
            digest,
            media_type: l.media_type.clone(),
            size: l.staged.size,
        };
        if let Some(d) = &l.staged.digest {
            self.blobs.adopt(&l.staged.file, d)?;
            return Ok((blob(d.clone()), Source::Stored));
        }
        let expected = l
            .promised
            .clone()
            .or_else(|| (l.media_type == OCI_LAYER).then(|| diff_id.clone()));
        let Some(expected) = expected else {
            // A compressed layer named by nothing: hash it first.
            let s = stage.settled(&l.path)?.ok_or_else(unsettled)?;
            let d = s.digest.clone().ok_or_else(unsettled)?;
            self.blobs.adopt(&s.file, &d)?;
            return Ok((blob(d), Source::Stored));
        };
        let pending = PendingBlob {
            name: l.path.clone(),
            reader: stage.reader(&l.staged)?,
            file: l.staged.file.clone(),
        };
        Ok((blob(expected), Source::Pending(pending)))
    }
}

fn unsettled() -> EngineError {
    EngineError::archive("internal: a document was not hashed")
}
