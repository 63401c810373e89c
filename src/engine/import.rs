//! `import`: a rootfs tarball becomes a one-layer image (the tarball is
//! kept as the layer's blob, exactly as given); `export`: a snapshot's
//! flat filesystem as a tar.

use std::io::{BufRead, Read, Write};

use serde_json::{json, Map, Value};

use crate::engine::changes;
use crate::engine::digest::{Digest, DigestReader};
use crate::engine::images::now;
use crate::engine::model::{host_platform, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::engine::reference::Reference;
use crate::engine::store::BlobRef;
use crate::engine::{decompress, Engine, EngineError, Result};

/// `import` options.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// `-c` Dockerfile instructions.
    pub changes: Vec<String>,
    /// `-m` commit message.
    pub message: Option<String>,
    /// Repository and tag to give the image.
    pub reference: Option<String>,
    /// Where the tarball came from (for the default message).
    pub source: String,
}

fn media_type(head: &[u8]) -> &'static str {
    match head {
        [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => OCI_LAYER_ZSTD,
        _ => OCI_LAYER,
    }
}

impl Engine {
    /// Imports a rootfs tarball (plain, gzip or zstd) as a new image.
    ///
    /// # Errors
    /// Bad changes or reference (checked before anything is stored), layer
    /// errors; the store is then as it was before.
    pub fn import(&mut self, mut input: Box<dyn BufRead>, opts: &ImportOptions) -> Result<Digest> {
        let mut rc = Map::new();
        for c in &opts.changes {
            changes::apply(&mut rc, c)?;
        }
        let target = Engine::parse_target(opts.reference.as_deref(), "an imported")?;
        let head = input
            .fill_buf()
            .map_err(EngineError::io("read", &opts.source))?
            .to_vec();
        let (blob, size) = self.blobs.ingest(&mut input, None, u64::MAX)?;
        let blob = BlobRef {
            digest: blob,
            media_type: media_type(&head).to_string(),
            size,
        };
        self.transaction(|e| e.import_blob(blob, rc, target, opts))
    }

    fn import_blob(
        &mut self,
        blob: BlobRef,
        rc: Map<String, Value>,
        target: Option<Reference>,
        opts: &ImportOptions,
    ) -> Result<Digest> {
        let mut r = DigestReader::new(self.uncompressed(&blob.digest)?);
        std::io::copy(&mut r, &mut std::io::sink())
            .map_err(EngineError::io("read", &opts.source))?;
        let (diff_id, _) = r.finish();
        let never = |actual: Digest| {
            EngineError::archive(format!("layer content changed while importing ({actual})"))
        };
        self.create_layer(None, &diff_id, &diff_id, blob, &never)?;
        let created = now();
        let msg = opts
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", opts.source));
        let p = host_platform();
        let cfg = json!({
            "architecture": p.architecture,
            "os": p.os,
            "created": created,
            "comment": msg,
            "config": Value::Object(rc),
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "comment": msg}],
        });
        let bytes = serde_json::to_vec(&cfg).map_err(EngineError::json("image config"))?;
        let id = self.blobs.put(&bytes)?;
        self.record_image(&id, vec![diff_id], None, target.as_ref(), &created);
        Ok(id)
    }

    /// Writes the flat filesystem of snapshot `key` as a tar.
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`] when there is no such snapshot;
    /// layer and write errors.
    pub fn export_snapshot(&mut self, key: &str, out: &mut dyn Write) -> Result<()> {
        if self.snap.stat(key).is_err() {
            return Err(EngineError::ContainerNotFound {
                name: key.to_string(),
            });
        }
        let dir = self.snap.path(key)?;
        let r = crate::engine::layer::diff::write_tree(&dir, out).map_err(|e| EngineError::Layer {
            layer: key.to_string(),
            source: Box::new(e),
        });
        self.snap.release(key)?;
        r.map(|_| ())
    }
}

/// Reads everything (used by tests to drain an export).
pub fn drain(mut r: impl Read) -> std::io::Result<u64> {
    std::io::copy(&mut r, &mut std::io::sink())
}

/// A reader over a file or stdin (`-`), buffered, ready for sniffing.
///
/// # Errors
/// [`EngineError::Io`].
pub fn open_input(path: &str) -> Result<Box<dyn BufRead>> {
    if path == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let f = std::fs::File::open(path).map_err(EngineError::io("open", path))?;
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// Parses `decompress` lazily for callers that only have a path.
///
/// # Errors
/// [`EngineError::Io`].
pub fn open_decompressed(path: &str) -> Result<Box<dyn Read>> {
    decompress(open_input(path)?, path)
}
