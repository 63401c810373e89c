//! `pull`: resolves a reference to one platform's image manifest (through
//! an index or manifest list), checks every document against its digest,
//! downloads the layers it lacks several at a time, and applies them in
//! order as they arrive, all inside one store transaction: on any error
//! the store is left as it was, with no partial blob or layer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use super::client::Client;
use super::credentials::AuthFile;
use super::fetch::{fetch_blob, fetch_manifest, ManifestDoc, ManifestKind};
use super::http::Req;
use super::progress::Progress;
use super::{Options, RegistryError, Result};
use crate::engine::blobs::MAX_JSON;
use crate::engine::digest::Digest;
use crate::engine::images::now;
use crate::engine::model::{chain_ids, host_platform, Descriptor, ImageConfig, Manifest, Platform};
use crate::engine::reference::Reference;
use crate::engine::store::BlobRef;
use crate::engine::{Engine, EngineError};

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image id.
    pub id: Digest,
    /// The digest of the manifest (or index) the reference resolved to.
    pub digest: Digest,
    /// The full reference pulled.
    pub reference: String,
    /// False when the image and its name were already here.
    pub changed: bool,
}

/// Parses `os/arch[/variant]`.
///
/// # Errors
/// [`RegistryError::InvalidArgument`].
pub fn parse_platform(s: &str) -> Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    let bad = || {
        RegistryError::InvalidArgument(format!(
            "invalid platform {s:?}: use os/arch[/variant], e.g. linux/arm64/v8"
        ))
    };
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    Ok(Platform {
        os: parts[0].to_ascii_lowercase(),
        architecture: parts[1].to_ascii_lowercase(),
        variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
    })
}

fn show(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// arm64's variant v8 is the default, so it counts as none.
fn variant(p: &Platform) -> Option<&str> {
    match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", Some("v8")) => None,
        (_, v) => v,
    }
}

/// The index entry for `want`: os and architecture must match; a wanted
/// variant must match too, otherwise an entry without variant is preferred.
fn select<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let mut hits: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .filter(|d| {
            variant(want).is_none() || d.platform.as_ref().and_then(|p| variant(p)) == variant(want)
        })
        .collect();
    hits.sort_by_key(|d| d.platform.as_ref().and_then(|p| variant(p)).is_some());
    hits.first().copied()
}

/// Resolves the reference to one image manifest.
fn resolve(client: &Client, r: &Reference, want: &Platform) -> Result<(ManifestDoc, ManifestDoc)> {
    let shown = r.familiar();
    let target = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, t) => t.unwrap_or("latest").to_string(),
    };
    let top = fetch_manifest(client, r.path(), &target, r.digest(), None, &shown)?;
    let ManifestKind::Index(index) = &top.kind else {
        return Ok((top.clone(), top));
    };
    let d = select(&index.manifests, want).ok_or_else(|| {
        let have: BTreeSet<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(show))
            .collect();
        RegistryError::NoPlatform {
            reference: shown.clone(),
            want: show(want),
            have: if have.is_empty() {
                "none".into()
            } else {
                have.into_iter().collect::<Vec<_>>().join(", ")
            },
        }
    })?;
    let inner = fetch_manifest(
        client,
        r.path(),
        &d.digest.to_string(),
        Some(&d.digest),
        Some(d.size),
        &shown,
    )?;
    if matches!(inner.kind, ManifestKind::Index(_)) {
        return Err(RegistryError::MediaType {
            reference: shown,
            media_type: "an index inside an index".into(),
        });
    }
    Ok((top, inner))
}

/// The config blob, read whole and checked.
fn fetch_config(client: &Client, repo: &str, d: &Descriptor) -> Result<Vec<u8>> {
    if d.size > MAX_JSON {
        return Err(RegistryError::TooLarge {
            what: format!("image config {}", d.digest),
            limit: MAX_JSON,
        });
    }
    let req = Req::new("GET", client.url(&format!("/v2/{repo}/blobs/{}", d.digest)));
    let what = format!("image config {}", d.digest);
    let (_, _, bytes) = client.fetch_small(&req, &what, MAX_JSON)?;
    let got = Digest::of(&bytes);
    if got != d.digest {
        return Err(RegistryError::DigestMismatch {
            what,
            expected: d.digest.clone(),
            actual: got,
        });
    }
    Ok(bytes)
}

/// Pulls `r` (tag `latest` when it names neither tag nor digest).
///
/// # Errors
/// Registry, digest and store errors; the store is then as it was.
pub fn pull(
    engine: &mut Engine,
    r: &Reference,
    platform: Option<&Platform>,
    opts: &Options,
    progress: &Progress,
) -> Result<Pulled> {
    let r = if r.tag().is_none() && r.digest().is_none() {
        r.with_tag("latest")
            .map_err(|e| RegistryError::InvalidArgument(e.to_string()))?
    } else {
        r.clone()
    };
    let creds = AuthFile::new(&opts.auth_file).get(r.domain())?;
    let scope = format!("repository:{}:pull", r.path());
    let client = Client::new(r.domain(), opts, creds, vec![scope])?;
    let want = platform.cloned().unwrap_or_else(host_platform);
    let (top, doc) = resolve(&client, &r, &want)?;
    let ManifestKind::Image(manifest) = &doc.kind else {
        return Err(RegistryError::MediaType {
            reference: r.familiar(),
            media_type: doc.media_type.clone(),
        });
    };
    let config_bytes = fetch_config(&client, r.path(), &manifest.config)?;
    let config = ImageConfig::parse(&config_bytes)?;
    check_config(&r, platform.map(|_| &want), &config, manifest)?;
    progress.line(&format!("Pulling {}", r.familiar()));
    let job = Job {
        client: &client,
        repo: r.path(),
        manifest,
        config: &config,
        opts,
        progress,
    };
    let changed = engine.transaction(|e| -> Result<bool> {
        job.layers(e)?;
        job.keep(e, &r, &config_bytes, &doc, &top.digest)
    })?;
    Ok(Pulled {
        id: Digest::of(&config_bytes),
        digest: top.digest,
        reference: r.to_string(),
        changed,
    })
}

/// Checks that the config fits the manifest (one diff id per layer) and,
/// when a platform was asked for (`want`), that it is that platform's.
fn check_config(
    r: &Reference,
    want: Option<&Platform>,
    config: &ImageConfig,
    manifest: &Manifest,
) -> Result<()> {
    if let Some(want) = want.filter(|w| config.os != w.os || config.architecture != w.architecture)
    {
        return Err(RegistryError::NoPlatform {
            reference: r.familiar(),
            want: show(want),
            have: format!("{}/{}", config.os, config.architecture),
        });
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Protocol {
            registry: r.domain().to_string(),
            reason: format!(
                "{}: the config lists {} layers, the manifest {}",
                r.familiar(),
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    Ok(())
}

/// The layer work of one pull.
struct Job<'a> {
    client: &'a Client,
    repo: &'a str,
    manifest: &'a Manifest,
    config: &'a ImageConfig,
    opts: &'a Options,
    progress: &'a Progress,
}

impl Job<'_> {
    /// Keeps the image once its layers are in: its config and manifest
    /// blobs, its record, the repo digest `top` it was pulled by and, when
    /// pulled by tag, the tag. Returns whether anything a user sees changed.
    fn keep(
        &self,
        e: &mut Engine,
        r: &Reference,
        config_bytes: &[u8],
        doc: &ManifestDoc,
        top: &Digest,
    ) -> Result<bool> {
        let id = Digest::of(config_bytes);
        let existed = e.store.state.images.contains_key(&id);
        let tagged = e.store.state.tags.get(&r.to_string()).cloned();
        e.blobs.put(config_bytes)?;
        e.blobs.put(&doc.bytes)?;
        let chain = chain_ids(&self.config.rootfs.diff_ids);
        let whole = self
            .manifest
            .layers
            .iter()
            .all(|l| e.blobs.exists(&l.digest));
        let rec = e.image_entry(&id, chain, None, &now());
        // Keep the manifest as received, so a push reproduces its digest.
        if whole || rec.manifest.is_none() {
            rec.manifest = Some(doc.digest.clone());
        }
        let new_digest = rec.repo_digests.insert(format!("{}@{top}", r.name()));
        let retagged = r.digest().is_none() && tagged.as_ref() != Some(&id);
        if r.digest().is_none() {
            e.store.state.tags.insert(r.to_string(), id.clone());
        }
        if retagged {
            if let Some(i) = e.store.state.images.get_mut(&id) {
                i.last_tag_time = Some(now());
            }
        }
        Ok(!existed || retagged || new_digest)
    }

    /// Downloads what is missing (several at once) and applies each layer
    /// in order as soon as it and those below it are in.
    fn layers(&self, e: &mut Engine) -> Result<()> {
        let diff_ids = &self.config.rootfs.diff_ids;
        let chain = chain_ids(diff_ids);
        let layers = &self.manifest.layers;
        let mut wanted: Vec<usize> = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, l) in layers.iter().enumerate() {
            let present = e.store.state.layers.contains_key(&chain[i]);
            if present {
                self.progress.event(l.digest.short(), "Already exists");
            } else if !e.blobs.exists(&l.digest) && seen.insert(l.digest.clone()) {
                wanted.push(i);
            }
        }
        let queue = Mutex::new(wanted.clone());
        queue.lock().map_err(|_| poisoned())?.reverse();
        let abort = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(Digest, Result<()>)>();
        let workers = self
            .opts
            .max_concurrent_downloads
            .clamp(1, 16)
            .min(wanted.len());
        let blobs = e.blobs.clone();
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..workers {
                let tx = tx.clone();
                let (queue, abort, blobs) = (&queue, &abort, &blobs);
                s.spawn(move || loop {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some(i) = next else { return };
                    let d = &layers[i];
                    let task = self.progress.task(d.digest.short(), "Downloading", d.size);
                    let r = fetch_blob(self.client, self.repo, d, blobs, &task, abort);
                    task.finish(if r.is_ok() {
                        "Download complete"
                    } else {
                        "Failed"
                    });
                    if tx.send((d.digest.clone(), r)).is_err() {
                        return;
                    }
                });
            }
            drop(tx);
            let result = self.apply_in_order(e, &chain, &rx);
            if result.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            result
        })
    }

    fn apply_in_order(
        &self,
        e: &mut Engine,
        chain: &[Digest],
        rx: &mpsc::Receiver<(Digest, Result<()>)>,
    ) -> Result<()> {
        let diff_ids = &self.config.rootfs.diff_ids;
        let mut arrived: BTreeMap<Digest, ()> = BTreeMap::new();
        for (i, l) in self.manifest.layers.iter().enumerate() {
            if e.store.state.layers.contains_key(&chain[i]) {
                continue;
            }
            while !e.blobs.exists(&l.digest) && !arrived.contains_key(&l.digest) {
                let (d, r) = rx.recv().map_err(|_| poisoned())?;
                r?;
                arrived.insert(d, ());
            }
            let blob = BlobRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            };
            let (expected, layer_digest) = (diff_ids[i].clone(), l.digest.clone());
            let mismatch = move |actual: Digest| EngineError::DigestMismatch {
                what: format!(
                    "layer {layer_digest} (uncompressed content against the config's diff id)"
                ),
                expected: expected.clone(),
                actual,
            };
            e.create_layer(
                i.checked_sub(1).map(|p| &chain[p]),
                &chain[i],
                &diff_ids[i],
                blob,
                &mismatch,
            )?;
            self.progress.event(l.digest.short(), "Pull complete");
        }
        Ok(())
    }
}

fn poisoned() -> RegistryError {
    RegistryError::InvalidArgument("a download worker failed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: crate::engine::model::OCI_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            annotations: Default::default(),
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(String::from),
            }),
        }
    }

    #[test]
    fn platforms_parse_and_select() {
        let idx = vec![
            entry("linux", "arm", Some("v7"), 1),
            entry("linux", "arm64", Some("v8"), 2),
            entry("linux", "amd64", None, 3),
            entry("windows", "amd64", None, 4),
        ];
        let p = |s| parse_platform(s).unwrap();
        assert_eq!(
            select(&idx, &p("linux/amd64")).unwrap().digest,
            Digest::of(&[3])
        );
        assert_eq!(
            select(&idx, &p("linux/arm64")).unwrap().digest,
            Digest::of(&[2])
        );
        assert_eq!(
            select(&idx, &p("linux/arm/v7")).unwrap().digest,
            Digest::of(&[1])
        );
        assert!(select(&idx, &p("linux/arm/v6")).is_none());
        assert!(select(&idx, &p("linux/s390x")).is_none());
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux//v7").is_err());
    }
}
