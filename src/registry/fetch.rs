//! Getting documents and blobs out of a registry, checked: a manifest
//! against the digest asked for and the registry's `Docker-Content-Digest`,
//! a blob against its descriptor's size and digest while it streams to a
//! temp file. A blob download cut short resumes with a `Range` request
//! where the registry allows it, and starts over where it does not.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest as _, Sha256};

use super::client::Client;
use super::http::{header, Req};
use super::progress::Task;
use super::{RegistryError, Result, MAX_MANIFEST};
use crate::engine::blobs::BlobStore;
use crate::engine::digest::Digest;
use crate::engine::model::{
    Descriptor, Index, Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use crate::engine::EngineError;

/// Docker schema 1 media types, recognised only to be refused clearly.
const SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// What a manifest request accepts, preferred first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1";

/// A parsed manifest or index.
#[derive(Clone, Debug)]
pub enum ManifestKind {
    /// An OCI index or Docker manifest list.
    Index(Index),
    /// An OCI or Docker schema 2 image manifest.
    Image(Manifest),
}

/// A manifest as received: exact bytes, their digest, and what they say.
#[derive(Clone, Debug)]
pub struct ManifestDoc {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Their digest.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Parsed.
    pub kind: ManifestKind,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

pub(crate) fn parse_manifest(
    bytes: &[u8],
    header_type: &str,
    shown: &str,
) -> Result<(String, ManifestKind)> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(EngineError::json(format!("manifest of {shown}")))?;
    let media_type = probe
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| header_type.to_string());
    if probe.schema_version == Some(1) || SCHEMA1.contains(&media_type.as_str()) {
        return Err(RegistryError::Schema1 {
            reference: shown.to_string(),
        });
    }
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || (probe.manifests.is_some() && probe.config.is_none());
    let is_image = media_type == OCI_MANIFEST
        || media_type == DOCKER_MANIFEST
        || (probe.config.is_some() && probe.manifests.is_none());
    let kind = if is_index {
        ManifestKind::Index(
            serde_json::from_slice(bytes)
                .map_err(EngineError::json(format!("index of {shown}")))?,
        )
    } else if is_image {
        ManifestKind::Image(
            serde_json::from_slice(bytes)
                .map_err(EngineError::json(format!("manifest of {shown}")))?,
        )
    } else {
        return Err(RegistryError::MediaType {
            reference: shown.to_string(),
            media_type,
        });
    };
    let media_type = match (&kind, media_type.is_empty()) {
        (ManifestKind::Index(_), true) => OCI_INDEX.to_string(),
        (ManifestKind::Image(_), true) => OCI_MANIFEST.to_string(),
        (_, false) => media_type,
    };
    Ok((media_type, kind))
}

/// Fetches the manifest `target` (tag or digest) of `repo`, checked against
/// `expected` and `size` when given and against `Docker-Content-Digest`.
///
/// # Errors
/// [`RegistryError::NotFound`], [`RegistryError::DigestMismatch`],
/// [`RegistryError::TooLarge`], [`RegistryError::Schema1`], others.
pub fn fetch_manifest(
    client: &Client,
    repo: &str,
    target: &str,
    expected: Option<&Digest>,
    size: Option<u64>,
    shown: &str,
) -> Result<ManifestDoc> {
    if let Some(n) = size.filter(|n| *n > MAX_MANIFEST) {
        return Err(RegistryError::TooLarge {
            what: format!("manifest of {shown} ({n} bytes)"),
            limit: MAX_MANIFEST,
        });
    }
    let req = Req::new("GET", client.url(&format!("/v2/{repo}/manifests/{target}")))
        .header("Accept", ACCEPT);
    let what = format!("manifest {shown}");
    let (header_type, header_digest, bytes) = client.fetch_small(&req, &what, MAX_MANIFEST)?;
    let digest = Digest::of(&bytes);
    if let Some(want) = expected.filter(|w| **w != digest) {
        return Err(RegistryError::DigestMismatch {
            what,
            expected: want.clone(),
            actual: digest,
        });
    }
    if let Some(h) = header_digest.filter(|h| h.starts_with("sha256:")) {
        let said: Digest = h.parse().map_err(EngineError::from)?;
        if said != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("{what} (the registry's Docker-Content-Digest)"),
                expected: said,
                actual: digest,
            });
        }
    }
    if let Some(n) = size.filter(|n| *n != bytes.len() as u64) {
        return Err(RegistryError::SizeMismatch {
            what,
            expected: n,
            actual: bytes.len() as u64,
        });
    }
    let (media_type, kind) = parse_manifest(&bytes, &header_type, shown)?;
    Ok(ManifestDoc {
        bytes,
        digest,
        media_type,
        kind,
    })
}

/// Where a blob download stands across attempts.
struct Partial {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    have: u64,
}

impl Partial {
    fn restart(&mut self, task: &Task) -> std::io::Result<()> {
        self.hasher = Sha256::new();
        self.have = 0;
        task.reset();
        self.file.as_file().set_len(0)?;
        self.file.as_file_mut().seek(SeekFrom::Start(0)).map(|_| ())
    }
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |e| RegistryError::Engine(EngineError::io("write", what)(e))
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = header(resp, "content-range")?;
    v.trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// One attempt: asks for the bytes not yet in, and streams them in.
fn attempt(
    client: &Client,
    url: &str,
    d: &Descriptor,
    p: &mut Partial,
    task: &Task,
    abort: &AtomicBool,
) -> Result<()> {
    let what = format!("blob {}", d.digest);
    let mut req = Req::new("GET", url.to_string());
    if p.have > 0 {
        req = req.header("Range", format!("bytes={}-", p.have));
    }
    let resp = client.exchange(&req)?;
    match resp.status().as_u16() {
        206 if p.have > 0 && range_start(&resp) == Some(p.have) => {}
        200 if p.have > 0 => p.restart(task).map_err(io_err(&what))?,
        200 => {}
        s if s >= 400 => return Err(client.status_error(&req, resp, &what)),
        s => {
            return Err(RegistryError::Protocol {
                registry: client.registry().to_string(),
                reason: format!("unexpected answer {s} to GET {url}"),
            })
        }
    }
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(RegistryError::InvalidArgument("download cancelled".into()));
        }
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(RegistryError::Transport {
                    method: "GET".into(),
                    url: url.to_string(),
                    source: Box::new(ureq::Error::Io(e)),
                })
            }
        };
        if p.have + n as u64 > d.size {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: d.size,
                actual: p.have + n as u64,
            });
        }
        p.file.write_all(&buf[..n]).map_err(io_err(&what))?;
        p.hasher.update(&buf[..n]);
        p.have += n as u64;
        task.inc(n as u64);
    }
    if p.have < d.size {
        return Err(RegistryError::Truncated {
            what,
            got: p.have,
            expected: d.size,
        });
    }
    Ok(())
}

/// Downloads blob `d` of `repo` into the blob store, checked.
///
/// # Errors
/// [`RegistryError::DigestMismatch`] (the partial file is deleted),
/// [`RegistryError::SizeMismatch`], transport errors after the retries.
pub fn fetch_blob(
    client: &Client,
    repo: &str,
    d: &Descriptor,
    blobs: &BlobStore,
    task: &Task,
    abort: &AtomicBool,
) -> Result<()> {
    let url = client.url(&format!("/v2/{repo}/blobs/{}", d.digest));
    let mut p = Partial {
        file: blobs.temp()?,
        hasher: Sha256::new(),
        have: 0,
    };
    let mut tries = 0;
    loop {
        match attempt(client, &url, d, &mut p, task, abort) {
            Ok(()) => break,
            Err(e) if e.is_transient() && tries < client.options().retries => {
                task.note(&format!("Retrying ({e})"));
                std::thread::sleep(client.backoff(tries, &e));
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
    p.file
        .flush()
        .map_err(io_err(&format!("blob {}", d.digest)))?;
    let got = Digest::from_hasher(p.hasher);
    if got != d.digest {
        // Dropping the temp file deletes it: nothing of it stays.
        return Err(RegistryError::DigestMismatch {
            what: format!("blob {}", d.digest),
            expected: d.digest.clone(),
            actual: got,
        });
    }
    blobs.commit_temp(p.file, &got)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_classified_and_schema1_refused() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        let (t, k) = parse_manifest(m, "", "x").unwrap();
        assert_eq!(t, OCI_MANIFEST);
        assert!(matches!(k, ManifestKind::Image(_)));
        let (t, k) = parse_manifest(m, DOCKER_MANIFEST, "x").unwrap();
        assert_eq!(t, DOCKER_MANIFEST);
        assert!(matches!(k, ManifestKind::Image(_)));
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_manifest(i, "", "x").unwrap().1,
            ManifestKind::Index(_)
        ));
        let s1 = br#"{"schemaVersion":1,"name":"a","fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest(s1, "", "x"),
            Err(RegistryError::Schema1 { .. })
        ));
        let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        assert!(matches!(
            parse_manifest(other, "", "x"),
            Err(RegistryError::MediaType { .. })
        ));
    }
}
