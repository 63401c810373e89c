//! Images as a registry holds them: [`RegImage`] (real gzip layers, a
//! config and an OCI or Docker schema 2 manifest) and [`index_of`] for an
//! OCI index or Docker manifest list of several.

use std::collections::BTreeMap;

use serde_json::json;

use super::{noise, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST};
use crate::engine_common::*;

/// An image as a registry holds it: gzip layers, config, manifest.
#[derive(Clone, Debug)]
pub struct RegImage {
    pub config: Vec<u8>,
    /// Uncompressed layer tars.
    pub tars: Vec<Vec<u8>>,
    /// The gzip blobs.
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// Every file of the rootfs.
    pub files: BTreeMap<String, Vec<u8>>,
    pub arch: String,
}

impl RegImage {
    /// An OCI image for `arch` with `sizes.len()` layers; layer `i` holds
    /// `seed/l<i>` with `sizes[i]` bytes of noise.
    pub fn oci(seed: &str, arch: &str, sizes: &[usize]) -> RegImage {
        RegImage::build(seed, arch, sizes, false)
    }

    /// The same as a Docker schema 2 image.
    pub fn docker(seed: &str, arch: &str, sizes: &[usize]) -> RegImage {
        RegImage::build(seed, arch, sizes, true)
    }

    fn build(seed: &str, arch: &str, sizes: &[usize], docker: bool) -> RegImage {
        let mut files = BTreeMap::new();
        let mut tars = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let data = noise(&format!("{seed}/{i}"), *n);
            files.insert(format!("{seed}/l{i}"), data.clone());
            tars.push(layer(seed, &format!("l{i}"), &data));
        }
        let layers: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
        let config = config(&tars, T0, json!({"architecture": arch, "os": "linux"}));
        let (mt, ct, lt) = if docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": ct, "digest": digest(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": lt, "digest": digest(l), "size": l.len()
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        RegImage {
            config,
            tars,
            layers,
            manifest,
            media_type: mt.to_string(),
            files,
            arch: arch.to_string(),
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }

    /// The image id (config digest).
    pub fn id(&self) -> String {
        digest(&self.config)
    }

    /// Config and layers.
    pub fn blobs(&self) -> Vec<Vec<u8>> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| digest(l)).collect()
    }
}

/// An index (OCI) or manifest list (Docker) of `imgs`, by their arch.
pub fn index_of(imgs: &[&RegImage], docker: bool) -> (String, Vec<u8>) {
    let mt = if docker { DOCKER_LIST } else { OCI_INDEX };
    let b = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": imgs.iter().map(|i| json!({
            "mediaType": i.media_type, "digest": i.digest(), "size": i.manifest.len(),
            "platform": {"architecture": i.arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    (mt.to_string(), b)
}
