//! `push`: sends an image's blobs and then its manifest. A blob the
//! registry has is skipped (HEAD); one that another repository of the same
//! registry is known to hold is mounted from there instead of uploaded;
//! the rest go up in one request or in chunks. An image that came with a
//! manifest is pushed with exactly that manifest, so its digest is kept;
//! others get an OCI manifest, recorded so the next push gives the same.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;

use super::client::Client;
use super::credentials::AuthFile;
use super::fetch::{parse_manifest, ManifestKind};
use super::http::{encode, header, Payload, Req};
use super::progress::Progress;
use super::{Options, RegistryError, Result};
use crate::engine::digest::{Digest, DigestWriter};
use crate::engine::model::{
    Descriptor, Manifest, DOCKER_LAYER, DOCKER_LAYER_GZIP, OCI_CONFIG, OCI_LAYER, OCI_LAYER_GZIP,
    OCI_MANIFEST,
};
use crate::engine::reference::Reference;
use crate::engine::store::BlobRef;
use crate::engine::{Engine, EngineError};

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The tag pushed.
    pub tag: String,
    /// The repository's full name.
    pub name: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
}

/// The manifest to push and the blobs it names.
struct Plan {
    bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
    blobs: Vec<Descriptor>,
    /// Made here (not received): to be recorded with the image.
    made: bool,
}

/// The OCI media type of a layer blob stored under a Docker one.
fn oci_layer_type(t: &str) -> &str {
    match t {
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER => OCI_LAYER,
        other => other,
    }
}

/// What to push for image `id`: its own manifest when that can be sent as
/// it is, or else a new one made from its layers.
fn plan(e: &Engine, id: &Digest) -> Result<Plan> {
    let img = e
        .state()
        .images
        .get(id)
        .ok_or_else(|| EngineError::ImageNotFound {
            name: id.to_string(),
        })?;
    if let Some(p) = img.manifest.as_ref().and_then(|md| stored_plan(e, md, id)) {
        return Ok(p);
    }
    made_plan(e, id, &img.chain)
}

/// The image's own manifest, byte for byte, when it is still stored, is an
/// image manifest for config `id`, and every blob it names is here: pushing
/// it keeps the digest the image was pulled or loaded under.
fn stored_plan(e: &Engine, manifest: &Digest, id: &Digest) -> Option<Plan> {
    let bytes = e.blobs().read(manifest, super::MAX_MANIFEST).ok()?;
    let Ok((media_type, ManifestKind::Image(m))) = parse_manifest(&bytes, "", "image") else {
        return None;
    };
    let mut blobs = m.layers.clone();
    blobs.push(m.config.clone());
    if m.config.digest != *id || !blobs.iter().all(|b| e.blobs().exists(&b.digest)) {
        return None;
    }
    Some(Plan {
        digest: Digest::of(&bytes),
        bytes,
        media_type,
        blobs,
        made: false,
    })
}

/// A new OCI manifest for config `id` over the layers of `chain`.
fn made_plan(e: &Engine, id: &Digest, chain: &[Digest]) -> Result<Plan> {
    let mut layers = Vec::new();
    for c in chain {
        let l = e
            .state()
            .layers
            .get(c)
            .ok_or_else(|| EngineError::archive(format!("layer {c} is missing")))?;
        // A compressed blob if the layer has one: smaller on the wire.
        let b = l
            .blobs
            .iter()
            .find(|b| b.media_type.ends_with("gzip") || b.media_type.ends_with("zstd"))
            .or(l.blobs.first())
            .ok_or_else(|| EngineError::archive(format!("layer {c} has no blob")))?;
        layers.push(Descriptor {
            media_type: oci_layer_type(&b.media_type).to_string(),
            digest: b.digest.clone(),
            size: e.blobs().size(&b.digest)?,
            annotations: Default::default(),
            platform: None,
        });
    }
    let config = Descriptor {
        media_type: OCI_CONFIG.into(),
        digest: id.clone(),
        size: e.blobs().size(id)?,
        annotations: Default::default(),
        platform: None,
    };
    let m = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config: config.clone(),
        layers: layers.clone(),
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&m).map_err(EngineError::json("manifest"))?;
    let mut blobs = layers;
    blobs.push(config);
    Ok(Plan {
        digest: Digest::of(&bytes),
        bytes,
        media_type: OCI_MANIFEST.into(),
        blobs,
        made: true,
    })
}

/// Gives every layer of image `id` that has only an uncompressed blob a
/// gzip one, as Docker pushes them, kept with the layer so that the next
/// push sends the same bytes. Returns whether any was made.
fn compress_layers(engine: &mut Engine, id: &Digest, progress: &Progress) -> Result<bool> {
    let chain = engine
        .state()
        .images
        .get(id)
        .map(|i| i.chain.clone())
        .unwrap_or_default();
    engine.transaction(|e| -> Result<bool> {
        let mut made = false;
        for c in &chain {
            let Some(mut l) = e.store.state.layers.get(c).cloned() else {
                continue;
            };
            if l.blobs
                .iter()
                .any(|b| b.media_type != OCI_LAYER && b.media_type != DOCKER_LAYER)
            {
                continue;
            }
            let Some(src) = l.blobs.first().cloned() else {
                continue;
            };
            progress.event(src.digest.short(), "Compressing");
            let tmp = e.blobs.temp()?;
            let what = format!("compressed layer {}", src.digest);
            let w = DigestWriter::new(std::io::BufWriter::new(tmp.as_file()));
            let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
            let mut input = e.blobs.open_blob(&src.digest)?;
            std::io::copy(&mut input, &mut gz).map_err(EngineError::io("write", &what))?;
            let (digest, size, mut inner) = gz
                .finish()
                .map_err(EngineError::io("write", &what))?
                .finish();
            inner.flush().map_err(EngineError::io("write", &what))?;
            drop(inner);
            e.blobs.commit_temp(tmp, &digest)?;
            l.blobs.push(BlobRef {
                digest,
                media_type: OCI_LAYER_GZIP.into(),
                size,
            });
            e.store.state.layers.insert(c.clone(), l);
            made = true;
        }
        Ok(made)
    })
}

/// Repositories of `registry` (other than `repo`) known to hold each blob:
/// those any local image holding it was pulled from or pushed to.
fn mount_sources(e: &Engine, registry: &str, repo: &str) -> BTreeMap<Digest, String> {
    let mut out = BTreeMap::new();
    let st = e.state();
    for img in st.images.values() {
        let Some(src) = img.repo_digests.iter().find_map(|rd| {
            let name = rd.split('@').next()?;
            let (dom, path) = name.split_once('/')?;
            (dom == registry && path != repo).then(|| path.to_string())
        }) else {
            continue;
        };
        let blobs = img
            .chain
            .iter()
            .filter_map(|c| st.layers.get(c))
            .flat_map(|l| l.blobs.iter().map(|b| b.digest.clone()))
            .chain(std::iter::once(img.id.clone()));
        for d in blobs {
            out.entry(d).or_insert_with(|| src.clone());
        }
    }
    out
}

/// Pushes the local image `r` names to the registry it names.
///
/// # Errors
/// [`EngineError::ImageNotFound`] when there is no such local image;
/// registry errors.
pub fn push(
    engine: &mut Engine,
    r: &Reference,
    opts: &Options,
    progress: &Progress,
) -> Result<Pushed> {
    if r.digest().is_some() {
        return Err(RegistryError::InvalidArgument(format!(
            "cannot push {}: push takes NAME[:TAG], not a digest",
            r.familiar()
        )));
    }
    let tag = r.tag_or_latest().to_string();
    let r = r
        .with_tag(&tag)
        .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?;
    let id = engine
        .tagged(&r.to_string())
        .ok_or_else(|| EngineError::ImageNotFound { name: r.familiar() })?;
    let mut plan = plan(engine, &id)?;
    if plan.made && compress_layers(engine, &id, progress)? {
        plan = self::plan(engine, &id)?;
    }
    let sources = mount_sources(engine, r.domain(), r.path());
    let mut scopes = vec![format!("repository:{}:pull,push", r.path())];
    let mut froms: Vec<&String> = plan
        .blobs
        .iter()
        .filter_map(|b| sources.get(&b.digest))
        .collect();
    froms.sort();
    froms.dedup();
    scopes.extend(froms.iter().map(|f| format!("repository:{f}:pull")));
    let creds = AuthFile::new(&opts.auth_file).get(r.domain())?;
    let client = Client::new(r.domain(), opts, creds, scopes)?;
    progress.line(&format!("The push refers to repository [{}]", r.name()));
    for b in &plan.blobs {
        push_blob(
            engine,
            &client,
            r.path(),
            b,
            sources.get(&b.digest),
            progress,
        )?;
    }
    put_manifest(&client, &r, &tag, &plan)?;
    let name = r.name();
    let (digest, bytes, made) = (plan.digest.clone(), plan.bytes.clone(), plan.made);
    engine.transaction(|e| -> Result<()> {
        if made {
            e.blobs.put(&bytes)?;
        }
        if let Some(img) = e.store.state.images.get_mut(&id) {
            if made {
                img.manifest = Some(digest.clone());
            }
            img.repo_digests.insert(format!("{name}@{digest}"));
        }
        Ok(())
    })?;
    Ok(Pushed {
        tag,
        name,
        size: plan.bytes.len() as u64,
        digest: plan.digest,
    })
}

/// Uploads the manifest under `tag`, checking the digest the registry
/// says it stored, when it says one.
fn put_manifest(client: &Client, r: &Reference, tag: &str, plan: &Plan) -> Result<()> {
    let url = client.url(&format!("/v2/{}/manifests/{tag}", r.path()));
    let req = Req::new("PUT", url)
        .header("Content-Type", plan.media_type.clone())
        .body(Payload::Bytes(&plan.bytes));
    let resp = client.request(&req, &format!("repository {}", r.name()))?;
    if let Some(said) =
        header(&resp, "docker-content-digest").and_then(|v| v.parse::<Digest>().ok())
    {
        if said != plan.digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("pushed manifest of {}", r.familiar()),
                expected: plan.digest.clone(),
                actual: said,
            });
        }
    }
    Ok(())
}

/// Sends one blob unless the registry has it or can mount it.
fn push_blob(
    e: &Engine,
    client: &Client,
    repo: &str,
    d: &Descriptor,
    from: Option<&String>,
    progress: &Progress,
) -> Result<()> {
    let label = d.digest.short();
    let head = Req::new(
        "HEAD",
        client.url(&format!("/v2/{repo}/blobs/{}", d.digest)),
    );
    let what = format!("blob {}", d.digest);
    let exists = client.retrying(|| {
        let resp = client.exchange(&head)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(client.status_error(&head, resp, &what)),
        }
    })?;
    if exists {
        progress.event(label, "Layer already exists");
        return Ok(());
    }
    let file = e.blobs().open_blob(&d.digest)?;
    let task = progress.task(label, "Pushing", d.size);
    client.retrying(|| {
        task.reset();
        let (status, location, min_chunk) = start_upload(client, repo, &d.digest, from)?;
        if status == 201 {
            task.finish(&format!("Mounted from {}", from.map_or("", |s| s.as_str())));
            return Ok(());
        }
        upload(client, &location, &file, d, min_chunk, &|n| task.inc(n))?;
        task.finish("Pushed");
        Ok(())
    })
}

/// Opens an upload session (or mounts): the status (201 = mounted), the
/// session's URL, and the registry's minimum chunk size.
fn start_upload(
    client: &Client,
    repo: &str,
    digest: &Digest,
    from: Option<&String>,
) -> Result<(u16, String, u64)> {
    let mut path = format!("/v2/{repo}/blobs/uploads/");
    if let Some(f) = from {
        path.push_str(&format!(
            "?mount={}&from={}",
            encode(&digest.to_string()),
            encode(f)
        ));
    }
    let req = Req::new("POST", client.url(&path));
    let resp = client.request(&req, &format!("repository {repo}"))?;
    let status = resp.status().as_u16();
    let min = header(&resp, "oci-chunk-min-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if status == 201 {
        return Ok((201, String::new(), min));
    }
    let loc = header(&resp, "location").ok_or_else(|| RegistryError::Protocol {
        registry: client.registry().to_string(),
        reason: format!("upload to {repo} started without a Location"),
    })?;
    Ok((status, client.resolve_location(&loc), min))
}

/// Uploads the blob to a session: one PUT, or PATCH chunks then a PUT.
fn upload(
    client: &Client,
    location: &str,
    file: &File,
    d: &Descriptor,
    min_chunk: u64,
    sent: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let what = format!("upload of {}", d.digest);
    let mut loc = location.to_string();
    let finish = |loc: &str| {
        let sep = if loc.contains('?') { '&' } else { '?' };
        format!("{loc}{sep}digest={}", encode(&d.digest.to_string()))
    };
    let Some(chunk) = client.options().push_chunk_size else {
        let req = Req::new("PUT", finish(&loc))
            .header("Content-Type", "application/octet-stream")
            .body(Payload::File {
                file,
                offset: 0,
                len: d.size,
                sent,
            });
        let resp = client.exchange(&req)?;
        return expect(client, &req, resp, 201, &what);
    };
    let chunk = chunk.max(min_chunk).max(1);
    let mut off = 0;
    while off < d.size {
        let n = chunk.min(d.size - off);
        let req = Req::new("PATCH", loc.clone())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{off}-{}", off + n - 1))
            .body(Payload::File {
                file,
                offset: off,
                len: n,
                sent,
            });
        let resp = client.exchange(&req)?;
        let next = header(&resp, "location").map(|l| client.resolve_location(&l));
        expect(client, &req, resp, 202, &what)?;
        if let Some(l) = next {
            loc = l;
        }
        off += n;
    }
    let req = Req::new("PUT", finish(&loc));
    let resp = client.exchange(&req)?;
    expect(client, &req, resp, 201, &what)
}

fn expect(
    client: &Client,
    req: &Req<'_>,
    resp: ureq::http::Response<ureq::Body>,
    want: u16,
    what: &str,
) -> Result<()> {
    let s = resp.status().as_u16();
    if s == want || (want == 201 && s == 204) {
        return Ok(());
    }
    if s >= 400 {
        return Err(client.status_error(req, resp, what));
    }
    Err(RegistryError::Protocol {
        registry: client.registry().to_string(),
        reason: format!("{what}: expected {want}, got {s}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::OCI_LAYER_ZSTD;

    #[test]
    fn docker_layer_types_map_to_oci() {
        assert_eq!(oci_layer_type(DOCKER_LAYER_GZIP), OCI_LAYER_GZIP);
        assert_eq!(oci_layer_type(DOCKER_LAYER), OCI_LAYER);
        assert_eq!(oci_layer_type(OCI_LAYER_ZSTD), OCI_LAYER_ZSTD);
    }
}
