//! The engine's metadata store: images (by id = config digest), layers (by
//! chain id, with the exact blobs they came from), tags, and which driver
//! the root belongs to. One JSON file, replaced atomically (temp, fsync,
//! rename, fsync dir) under an exclusive lock held for the whole command,
//! exactly like the pool's store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thinpool::store::atomic::{atomic_write, remove_stale_temps, LockGuard};

use super::digest::Digest;
use super::EngineError;

/// Format version of the store file.
pub const VERSION: u32 = 1;

/// A blob a layer came from, kept so that save and push reproduce it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Blob digest.
    pub digest: Digest,
    /// Media type (compression).
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// One layer: a committed snapshot holding the layer stack up to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Chain id (the key).
    pub chain_id: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Parent layer's chain id.
    pub parent: Option<Digest>,
    /// Committed snapshot name.
    pub snapshot: String,
    /// Uncompressed size.
    pub size: u64,
    /// Blobs it came from (the first is used for save and push).
    pub blobs: Vec<BlobRef>,
}

/// One image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Image id: the config's digest.
    pub id: Digest,
    /// Chain ids of its layers, base first.
    pub chain: Vec<Digest>,
    /// The image it was committed from, if any.
    pub parent: Option<Digest>,
    /// `repo@sha256:...` of manifests it was pulled or loaded by.
    #[serde(default)]
    pub repo_digests: BTreeSet<String>,
    /// The manifest blob it came with, if any.
    #[serde(default)]
    pub manifest: Option<Digest>,
    /// When it was added here, RFC 3339.
    pub added: String,
    /// When it was last tagged, RFC 3339.
    #[serde(default)]
    pub last_tag_time: Option<String>,
}

/// One container: a writable snapshot of an image's top layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Id: 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image it was created from.
    pub image: Digest,
    /// The image as it was named at `create`.
    #[serde(default)]
    pub image_name: String,
    /// Its active snapshot's key.
    pub snapshot: String,
    /// When it was created, RFC 3339.
    pub created: String,
    /// Device size asked for with `create --size`.
    #[serde(default)]
    pub size: Option<u64>,
    /// Mounted by `mount` (until `unmount`).
    #[serde(default)]
    pub mounted: bool,
    /// Being removed: the next open finishes the removal.
    #[serde(default)]
    pub removing: bool,
}

/// Everything the engine records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// Format version.
    pub version: u32,
    /// The storage driver this root belongs to.
    pub driver: Option<String>,
    /// Images by id.
    pub images: BTreeMap<Digest, ImageRecord>,
    /// Layers by chain id.
    pub layers: BTreeMap<Digest, LayerRecord>,
    /// Full reference (`docker.io/library/ubuntu:latest`) → image id.
    pub tags: BTreeMap<String, Digest>,
    /// Containers by id (absent from stores written before containers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, ContainerRecord>,
}

impl EngineState {
    /// Tags pointing at `id`, sorted.
    pub fn tags_of(&self, id: &Digest) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Images whose parent is `id`.
    pub fn children_of(&self, id: &Digest) -> Vec<Digest> {
        self.images
            .values()
            .filter(|i| i.parent.as_ref() == Some(id))
            .map(|i| i.id.clone())
            .collect()
    }

    /// Every blob some image or layer needs.
    pub fn referenced_blobs(&self) -> BTreeSet<Digest> {
        let mut out = BTreeSet::new();
        for i in self.images.values() {
            out.insert(i.id.clone());
            out.extend(i.manifest.iter().cloned());
        }
        for l in self.layers.values() {
            out.extend(l.blobs.iter().map(|b| b.digest.clone()));
        }
        out
    }

    /// Every layer some image needs.
    pub fn referenced_layers(&self) -> BTreeSet<Digest> {
        self.images
            .values()
            .flat_map(|i| i.chain.iter().cloned())
            .collect()
    }
}

/// The store file and its lock.
#[derive(Debug)]
pub struct EngineStore {
    path: PathBuf,
    _lock: LockGuard,
    /// The records; change them, then [`EngineStore::save`].
    pub state: EngineState,
}

impl EngineStore {
    /// Locks `dir` and loads its store.
    ///
    /// # Errors
    /// [`EngineError::Io`], [`EngineError::Json`], or a version it cannot read.
    pub fn open(dir: &Path) -> Result<EngineStore, EngineError> {
        std::fs::create_dir_all(dir).map_err(EngineError::io("create", dir))?;
        let lock = LockGuard::acquire(&dir.join("lock"))?;
        remove_stale_temps(dir)?;
        let path = dir.join("store.json");
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<EngineState>(&b)
                .map_err(EngineError::json(path.display().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => EngineState {
                version: VERSION,
                ..EngineState::default()
            },
            Err(e) => return Err(EngineError::io("read", &path)(e)),
        };
        if state.version != VERSION {
            return Err(EngineError::archive(format!(
                "{} has format version {}, this thinsnap reads {VERSION}",
                path.display(),
                state.version
            )));
        }
        Ok(EngineStore {
            path,
            _lock: lock,
            state,
        })
    }

    /// Writes the state atomically.
    ///
    /// # Errors
    /// [`EngineError::Io`]; the file keeps its previous content.
    pub fn save(&mut self) -> Result<(), EngineError> {
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(EngineError::json("engine store"))?;
        atomic_write(&self.path, &bytes)?;
        Ok(())
    }
}
