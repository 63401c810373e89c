//! The image engine: digests and references, content-addressed blobs,
//! layer application and diffs, and the image store. It reaches storage
//! only through the [`crate::snapshot::Snapshotter`] interface.
//!
//! An [`Engine`] holds the engine store's lock for its whole life, so one
//! command's steps never interleave with another's; every open reconciles
//! the snapshotter with the store, removing what a killed command left.

pub mod archive;
pub mod blobs;
pub mod changes;
pub mod containers;
pub mod digest;
pub mod driver;
pub mod error;
pub mod human;
pub mod images;
pub mod import;
pub mod layer;
mod layers;
pub mod model;
pub mod reference;
mod rmi;
pub mod store;
mod tee;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::EngineError;
pub(crate) use layers::{PendingBlob, Source};

use blobs::BlobStore;
use digest::Digest;
use store::EngineStore;

use crate::snapshot::{Kind, Snapshotter};

/// Results of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

/// Prefix of committed layer snapshots.
pub const LAYER_PREFIX: &str = "layer-";
/// Prefix of snapshots being filled; removed if found at open.
pub const WORK_PREFIX: &str = "work-";
/// Prefix of containers' snapshots; removed at open when no container
/// record names them.
pub const CONTAINER_PREFIX: &str = "container-";

/// The engine over one root and one driver.
pub struct Engine {
    root: PathBuf,
    pub(crate) store: EngineStore,
    pub(crate) blobs: BlobStore,
    pub(crate) snap: Box<dyn Snapshotter>,
}

impl Engine {
    /// Opens the engine under `root` with the named driver.
    ///
    /// # Errors
    /// [`EngineError::DriverMismatch`] when the root belongs to another
    /// driver; the driver's own errors (no pool yet, ...).
    pub fn open(root: &Path, driver: &driver::Driver) -> Result<Engine> {
        let name = driver.name.as_str();
        let dir = root.join("engine");
        let mut store = EngineStore::open(&dir)?;
        if let Some(have) = &store.state.driver {
            if have != name {
                return Err(EngineError::DriverMismatch {
                    root: root.to_path_buf(),
                    have: have.clone(),
                    want: name.to_string(),
                });
            }
        }
        let snap = driver::open(root, driver)?;
        if store.state.driver.is_none() {
            store.state.driver = Some(name.to_string());
            store.save()?;
        }
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(EngineError::io("clean", &tmp))?;
        }
        let mut e = Engine {
            root: root.to_path_buf(),
            store,
            blobs,
            snap,
        };
        e.reconcile()?;
        Ok(e)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's records (read-only).
    pub fn state(&self) -> &store::EngineState {
        &self.store.state
    }

    /// The blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The snapshotter.
    pub fn snapshotter(&mut self) -> &mut dyn Snapshotter {
        self.snap.as_mut()
    }

    /// Removes snapshots and blobs no record points to: what a command
    /// killed half-way left behind (the lock guarantees none is running).
    fn reconcile(&mut self) -> Result<()> {
        self.finish_container_removals()?;
        let containers: std::collections::BTreeSet<String> = self
            .store
            .state
            .containers
            .values()
            .map(|c| c.snapshot.clone())
            .collect();
        let wanted: std::collections::BTreeSet<String> = self
            .store
            .state
            .layers
            .values()
            .map(|l| l.snapshot.clone())
            .collect();
        let infos = self.snap.walk()?;
        for info in infos.iter().rev() {
            let stale = match info.kind {
                Kind::Committed => {
                    info.name.starts_with(LAYER_PREFIX) && !wanted.contains(&info.name)
                }
                Kind::Active | Kind::View => {
                    info.name.starts_with(WORK_PREFIX)
                        || (info.name.starts_with(CONTAINER_PREFIX)
                            && !containers.contains(&info.name))
                }
            };
            if stale {
                // One stuck snapshot (a child still on it) must not lock
                // every command out of the root: warn and go on.
                if let Err(e) = self.snap.remove(&info.name) {
                    eprintln!(
                        "warning: could not remove leftover snapshot {}: {e}",
                        info.name
                    );
                }
            }
        }
        self.remove_unreferenced_blobs()
    }

    /// Runs `f` as one store transaction: on success the store is saved
    /// once; on error it is restored as it was and whatever `f` made that
    /// the restored store does not reference (snapshots, blobs) is removed.
    /// A crash in between leaves the same to the next open's reconcile.
    pub(crate) fn transaction<T, E: From<EngineError>>(
        &mut self,
        f: impl FnOnce(&mut Engine) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let before = self.store.state.clone();
        match f(self) {
            Ok(v) => {
                self.store.save()?;
                Ok(v)
            }
            Err(e) => {
                self.store.state = before;
                let _ = self.reconcile_after_failure();
                Err(e)
            }
        }
    }

    /// After a failed command: drops what the restored store no longer
    /// references (snapshots, blobs) and saves the store as it was.
    pub(crate) fn reconcile_after_failure(&mut self) -> Result<()> {
        self.reconcile()?;
        self.store.save()
    }

    /// A scratch directory under the engine's own directory (same
    /// filesystem as the blobs, so files move in by rename); removed on
    /// drop, and by the next open if this process dies.
    pub(crate) fn tmp_dir(&self) -> Result<tempfile::TempDir> {
        let base = self.root.join("engine").join("tmp");
        std::fs::create_dir_all(&base).map_err(EngineError::io("create", &base))?;
        tempfile::TempDir::new_in(&base).map_err(EngineError::io("create a directory in", &base))
    }

    pub(crate) fn remove_unreferenced_blobs(&mut self) -> Result<()> {
        let keep = self.store.state.referenced_blobs();
        for d in self.blobs.list()? {
            if !keep.contains(&d) {
                self.blobs.remove(&d)?;
            }
        }
        Ok(())
    }

    /// Resolves an image id (or unique prefix) or a reference to an image id.
    ///
    /// # Errors
    /// [`EngineError::ImageNotFound`], [`EngineError::AmbiguousId`],
    /// [`EngineError::Reference`].
    pub fn resolve(&self, name: &str) -> Result<Digest> {
        // A tag wins over an id prefix, as in Docker ("7" may be both).
        if let Some(id) = self.tagged(name) {
            return Ok(id);
        }
        if reference::is_short_id_candidate(name) {
            let prefix = name.strip_prefix("sha256:").unwrap_or(name);
            let hits: Vec<&Digest> = self
                .store
                .state
                .images
                .keys()
                .filter(|d| d.hex().starts_with(prefix))
                .collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                n => {
                    return Err(EngineError::AmbiguousId {
                        prefix: prefix.to_string(),
                        count: n,
                    })
                }
            }
            if name.starts_with("sha256:") || prefix.len() == 64 {
                return Err(EngineError::ImageNotFound {
                    name: name.to_string(),
                });
            }
        }
        let r =
            reference::Reference::parse(name).map_err(|e| EngineError::Reference(e.to_string()))?;
        let found = match r.digest() {
            Some(d) => {
                let want = format!("{}@{d}", r.name());
                self.store
                    .state
                    .images
                    .values()
                    .find(|i| i.repo_digests.contains(&want))
                    .map(|i| i.id.clone())
            }
            None => None,
        };
        found.ok_or_else(|| EngineError::ImageNotFound {
            name: name.to_string(),
        })
    }

    /// The image a tag names, when `name` is a tag that exists.
    pub(crate) fn tagged(&self, name: &str) -> Option<Digest> {
        let r = reference::Reference::parse(name).ok()?;
        if r.digest().is_some() {
            return None;
        }
        self.store.state.tags.get(&r.to_string()).cloned()
    }

    /// Parses the REPOSITORY[:TAG] a new image is to be named by (`what`
    /// says which kind of image, for the message); a digest is refused.
    pub(crate) fn parse_target(
        reference: Option<&str>,
        what: &str,
    ) -> Result<Option<reference::Reference>> {
        let target = reference
            .map(|r| {
                reference::Reference::parse(r).map_err(|e| EngineError::Reference(e.to_string()))
            })
            .transpose()?;
        if target.as_ref().is_some_and(|t| t.digest().is_some()) {
            return Err(EngineError::Reference(format!(
                "{what} image is named REPOSITORY[:TAG], without a digest"
            )));
        }
        Ok(target)
    }

    /// Records a new image (kept if it exists) and tags it with `target`.
    pub(crate) fn record_image(
        &mut self,
        id: &Digest,
        chain: Vec<Digest>,
        parent: Option<Digest>,
        target: Option<&reference::Reference>,
        created: &str,
    ) {
        self.image_entry(id, chain, parent, created);
        if let Some(t) = target {
            self.store.state.tags.insert(t.to_string(), id.clone());
            if let Some(img) = self.store.state.images.get_mut(id) {
                img.last_tag_time = Some(created.to_string());
            }
        }
    }

    /// The record of image `id`, made with these fields if it is new.
    pub(crate) fn image_entry(
        &mut self,
        id: &Digest,
        chain: Vec<Digest>,
        parent: Option<Digest>,
        added: &str,
    ) -> &mut store::ImageRecord {
        self.store
            .state
            .images
            .entry(id.clone())
            .or_insert_with(|| store::ImageRecord {
                id: id.clone(),
                chain,
                parent,
                repo_digests: Default::default(),
                manifest: None,
                added: added.to_string(),
                last_tag_time: None,
            })
    }

    /// Deletes layers no image needs (their snapshots too, children first),
    /// then unreferenced blobs. Returns the chain ids removed.
    ///
    /// # Errors
    /// Snapshot and file errors.
    pub(crate) fn remove_unused_layers(&mut self) -> Result<Vec<Digest>> {
        let needed = self.store.state.referenced_layers();
        let mut unused: Vec<(usize, Digest)> = self
            .store
            .state
            .layers
            .keys()
            .filter(|c| !needed.contains(*c))
            .map(|c| (self.depth(c), c.clone()))
            .collect();
        // Deepest first: a layer's snapshot is the parent of its children's.
        unused.sort_by_key(|u| std::cmp::Reverse(u.0));
        let mut removed = Vec::new();
        for (_, c) in unused {
            if let Some(l) = self.store.state.layers.remove(&c) {
                self.store.save()?;
                match self.snap.remove(&l.snapshot) {
                    Ok(()) | Err(crate::snapshot::SnapshotError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                removed.push(c);
            }
        }
        self.remove_unreferenced_blobs()?;
        Ok(removed)
    }

    fn depth(&self, chain: &Digest) -> usize {
        let mut n = 0;
        let mut cur = self
            .store
            .state
            .layers
            .get(chain)
            .and_then(|l| l.parent.clone());
        while let Some(p) = cur {
            n += 1;
            cur = self
                .store
                .state
                .layers
                .get(&p)
                .and_then(|l| l.parent.clone());
        }
        n
    }

    /// Opens a blob as uncompressed tar bytes, whatever its compression.
    ///
    /// # Errors
    /// [`EngineError::BlobMissing`], decoder errors.
    pub fn uncompressed(&self, blob: &Digest) -> Result<Box<dyn Read>> {
        let f = self.blobs.open_blob(blob)?;
        decompress(Box::new(std::io::BufReader::new(f)), &blob.to_string())
    }
}

/// Wraps a reader in the decoder its first bytes call for (gzip, zstd, or none).
///
/// # Errors
/// [`EngineError::Io`].
pub fn decompress(mut r: Box<dyn std::io::BufRead>, what: &str) -> Result<Box<dyn Read>> {
    let head = r.fill_buf().map_err(EngineError::io("read", what))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(EngineError::io("decode zstd", what))?,
        ))
    } else {
        Ok(Box::new(r))
    }
}
