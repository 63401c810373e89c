//! Making an image layer from its blob: a snapshot of the parent layer,
//! the blob applied on it and checked against the config's diff id, then
//! committed. The blob is in the store already ([`Source::Stored`]), or is
//! read once from a loaded archive while it is applied and stored only
//! once its digest is checked ([`Source::Pending`], see [`BlobTee`]).

use std::io::Read;
use std::path::PathBuf;

use super::digest::Digest;
use super::store::{BlobRef, LayerRecord};
use super::tee::BlobTee;
use super::{layer, Engine, EngineError, Result, LAYER_PREFIX, WORK_PREFIX};

/// Where the bytes of a layer's blob come from.
pub(crate) enum Source {
    /// The blob store (checked when it was stored).
    Stored,
    /// Not stored or checked yet.
    Pending(PendingBlob),
}

/// A blob read from an archive: its digest is the one its [`BlobRef`]
/// claims only once every byte has been hashed.
pub(crate) struct PendingBlob {
    /// Its path in the archive, for messages.
    pub name: String,
    pub reader: Box<dyn Read + Send>,
    /// Where to write it (a new file in the engine's scratch space, moved
    /// into the blob store once checked).
    pub file: PathBuf,
}

impl Engine {
    /// Makes the layer `chain_id` from a stored blob on top of `parent`,
    /// checking the content against `diff_id`. An existing layer is reused.
    /// On error nothing is left: the work snapshot is removed.
    ///
    /// # Errors
    /// [`EngineError::DiffIdMismatch`]-like errors via `on_mismatch`, layer
    /// and snapshot errors.
    pub(crate) fn create_layer(
        &mut self,
        parent: Option<&Digest>,
        chain_id: &Digest,
        diff_id: &Digest,
        blob: BlobRef,
        on_mismatch: &dyn Fn(Digest) -> EngineError,
    ) -> Result<LayerRecord> {
        self.create_layer_from(parent, chain_id, diff_id, blob, Source::Stored, on_mismatch)
    }

    /// [`Engine::create_layer`] from a blob that may not be stored yet.
    ///
    /// # Errors
    /// As [`Engine::create_layer`]; [`EngineError::DigestMismatch`] when a
    /// pending blob is not what its [`BlobRef`] claims.
    pub(crate) fn create_layer_from(
        &mut self,
        parent: Option<&Digest>,
        chain_id: &Digest,
        diff_id: &Digest,
        blob: BlobRef,
        source: Source,
        on_mismatch: &dyn Fn(Digest) -> EngineError,
    ) -> Result<LayerRecord> {
        if let Some(l) = self.store.state.layers.get(chain_id).cloned() {
            return self.link_blob(l, blob, source, diff_id, on_mismatch);
        }
        let parent_snap = match parent {
            Some(p) => Some(
                self.store
                    .state
                    .layers
                    .get(p)
                    .map(|l| l.snapshot.clone())
                    .ok_or_else(|| EngineError::archive(format!("parent layer {p} is missing")))?,
            ),
            None => None,
        };
        let key = format!("{WORK_PREFIX}{}", chain_id.hex());
        self.snap.prepare(&key, parent_snap.as_deref())?;
        let applied = self.apply_blob(&key, &blob, source);
        let result = applied.and_then(|(got, size)| {
            if got != *diff_id {
                return Err(on_mismatch(got));
            }
            Ok(size)
        });
        let size = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = self.snap.release(&key);
                let _ = self.snap.remove(&key);
                return Err(e);
            }
        };
        self.snap.release(&key)?;
        let name = format!("{LAYER_PREFIX}{}", chain_id.hex());
        self.snap.commit(&name, &key)?;
        let rec = LayerRecord {
            chain_id: chain_id.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            snapshot: name,
            size,
            blobs: vec![blob],
        };
        self.store
            .state
            .layers
            .insert(chain_id.clone(), rec.clone());
        Ok(rec)
    }

    /// A stored layer met again through another blob (another compression):
    /// checks that the blob holds the same content, then keeps it with the
    /// layer so that manifests naming it stay whole for save and push. A
    /// pending blob is read and checked even when the layer has it already.
    fn link_blob(
        &mut self,
        mut l: LayerRecord,
        blob: BlobRef,
        source: Source,
        diff_id: &Digest,
        on_mismatch: &dyn Fn(Digest) -> EngineError,
    ) -> Result<LayerRecord> {
        let known = l.blobs.iter().any(|b| b.digest == blob.digest);
        let layer_err = |e| EngineError::Layer {
            layer: blob.digest.to_string(),
            source: Box::new(e),
        };
        let got = match source {
            Source::Stored if known => return Ok(l),
            Source::Stored => {
                let f = std::io::BufReader::new(self.blobs.open_blob(&blob.digest)?);
                layer::diff_id_of(f).map_err(layer_err)?.0
            }
            Source::Pending(p) => {
                let mut r = self.start_reading(p, &blob)?;
                let got = layer::diff_id_of(&mut r.tee);
                let got = settle_after(got, r, &blob, |r| self.settle(r, &blob))?;
                got.map_err(layer_err)?.0
            }
        };
        if got != *diff_id {
            return Err(on_mismatch(got));
        }
        if !known {
            l.blobs.push(blob);
            self.store
                .state
                .layers
                .insert(l.chain_id.clone(), l.clone());
        }
        Ok(l)
    }

    /// Applies a layer blob onto an active snapshot; returns the diff id
    /// and uncompressed size of what was applied.
    fn apply_blob(&mut self, key: &str, blob: &BlobRef, source: Source) -> Result<(Digest, u64)> {
        let dir = self.snap.path(key)?;
        let opts = layer::apply::ApplyOptions::default();
        let layer_err = |e| EngineError::Layer {
            layer: blob.digest.to_string(),
            source: Box::new(e),
        };
        // The blob's content has its digest (a stored blob was checked as
        // it was written; a pending one is checked below, before anything
        // is kept): an uncompressed one is not hashed again for its diff id.
        let stats = match source {
            Source::Stored => {
                let f = std::io::BufReader::new(self.blobs.open_blob(&blob.digest)?);
                layer::apply::apply_layer_verified(&dir, f, &opts, &blob.digest)
                    .map_err(layer_err)?
            }
            Source::Pending(p) => {
                let mut r = self.start_reading(p, blob)?;
                let stats =
                    layer::apply::apply_layer_verified(&dir, &mut r.tee, &opts, &blob.digest);
                settle_after(stats, r, blob, |r| self.settle(r, blob))?.map_err(layer_err)?
            }
        };
        Ok((stats.diff_id, stats.size))
    }

    /// Starts reading a pending blob; it is written out too unless the
    /// store has that digest already (then it is only checked).
    fn start_reading(&self, p: PendingBlob, blob: &BlobRef) -> Result<Reading> {
        let keep = !self.blobs.exists(&blob.digest);
        let tee = BlobTee::new(p.reader, keep.then_some(p.file.as_path()))
            .map_err(EngineError::io("store blob", &p.file))?;
        Ok(Reading {
            tee,
            name: p.name,
            file: p.file,
            keep,
        })
    }

    /// Ends reading a pending blob: checks its digest, then moves it into
    /// the store.
    fn settle(&self, r: Reading, blob: &BlobRef) -> Result<()> {
        let (actual, _) = r.tee.finish().map_err(EngineError::io("read", &r.name))?;
        if actual != blob.digest {
            return Err(EngineError::DigestMismatch {
                what: r.name,
                expected: blob.digest.clone(),
                actual,
            });
        }
        if r.keep {
            self.blobs.adopt(&r.file, &blob.digest)?;
        }
        Ok(())
    }
}

/// Settles a pending blob after `outcome`, the work done while reading
/// it. A blob that is not what it claims is reported as such even when
/// the work failed first (a changed byte usually breaks the tar too):
/// that is the cause.
fn settle_after<T, E>(
    outcome: std::result::Result<T, E>,
    r: Reading,
    blob: &BlobRef,
    settle: impl FnOnce(Reading) -> Result<()>,
) -> Result<std::result::Result<T, E>> {
    if outcome.is_ok() {
        settle(r)?;
        return Ok(outcome);
    }
    if let Ok((actual, _)) = r.tee.finish() {
        if actual != blob.digest {
            return Err(EngineError::DigestMismatch {
                what: r.name,
                expected: blob.digest.clone(),
                actual,
            });
        }
    }
    Ok(outcome)
}

/// A pending blob being read.
struct Reading {
    tee: BlobTee,
    name: String,
    file: PathBuf,
    /// Whether it is written out, to be moved into the store.
    keep: bool,
}
