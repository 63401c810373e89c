//! Containers: a writable snapshot of an image's top layer, under a
//! unique name. `create`, `rm`, `mount`/`unmount`, `device`, `diff`,
//! `commit` and `export` work on any driver (`device` and `--size` need
//! block devices, so devmapper).
//!
//! Crash safety: `create` prepares the snapshot (`container-<id>`) before
//! the record is saved, and every open removes `container-*` snapshots no
//! record names; `rm` marks the record `removing` before the snapshot
//! goes, and every open finishes marked removals. `commit` stores its
//! layer and image like `import` does: a failure (or a kill) leaves only
//! what the next open's reconciliation removes. Crash points (for tests,
//! `THINSNAP_CRASH_AT`): `container-create-prepared`,
//! `container-rm-marked`, `container-commit-unsaved`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use thinpool::fault::crash_point;

use super::blobs::MAX_JSON;
use super::changes;
use super::digest::Digest;
use super::images::now;
use super::layer::{self, Change};
use super::model::{ImageConfig, OCI_LAYER};
use super::reference::Reference;
use super::store::{BlobRef, ContainerRecord, ImageRecord};
use super::{Engine, EngineError, Result, CONTAINER_PREFIX};
use crate::snapshot::SnapshotError;

/// `commit` options.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// `-m` commit message.
    pub message: Option<String>,
    /// `-a` author.
    pub author: Option<String>,
    /// `-c` Dockerfile instructions applied to the runtime config.
    pub changes: Vec<String>,
    /// REPOSITORY[:TAG] for the new image.
    pub reference: Option<String>,
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 255 {
        return Ok(());
    }
    Err(EngineError::InvalidArgument(format!(
        "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters"
    )))
}

fn layer_err(what: &str) -> impl FnOnce(layer::LayerError) -> EngineError + '_ {
    move |e| EngineError::Layer {
        layer: what.to_string(),
        source: Box::new(e),
    }
}

impl Engine {
    /// Every container, newest first.
    pub fn containers(&self) -> Vec<ContainerRecord> {
        let mut v: Vec<ContainerRecord> = self.store.state.containers.values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        v
    }

    /// A container by id, name or unique id prefix.
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`]; [`EngineError::InvalidArgument`]
    /// for an ambiguous prefix.
    pub fn container(&self, name: &str) -> Result<ContainerRecord> {
        let all = &self.store.state.containers;
        if let Some(c) = all.get(name) {
            return Ok(c.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        if let Some(c) = all.values().find(|c| c.name == bare) {
            return Ok(c.clone());
        }
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_hexdigit()) {
            let hits: Vec<&ContainerRecord> =
                all.values().filter(|c| c.id.starts_with(name)).collect();
            match hits.len() {
                0 => {}
                1 => return Ok(hits[0].clone()),
                n => {
                    return Err(EngineError::InvalidArgument(format!(
                        "container id prefix {name} is ambiguous: it matches {n} containers; give more characters"
                    )))
                }
            }
        }
        Err(EngineError::ContainerNotFound {
            name: name.to_string(),
        })
    }

    /// The committed snapshot of an image's top layer (`None` for an image
    /// without layers).
    fn top_snapshot(&self, image: &Digest) -> Result<Option<String>> {
        let st = &self.store.state;
        let img = st
            .images
            .get(image)
            .ok_or_else(|| EngineError::ImageNotFound {
                name: image.to_string(),
            })?;
        match img.chain.last() {
            None => Ok(None),
            Some(c) => st
                .layers
                .get(c)
                .map(|l| Some(l.snapshot.clone()))
                .ok_or_else(|| {
                    EngineError::archive(format!("layer {c} of image {image} is missing"))
                }),
        }
    }

    /// Creates a container of `image`: a writable snapshot of its top layer.
    ///
    /// # Errors
    /// Resolution errors; [`EngineError::Conflict`] for a name in use;
    /// [`EngineError::InvalidArgument`] and [`EngineError::Unsupported`]
    /// for a `size` the driver cannot give; snapshot errors.
    pub fn create_container(
        &mut self,
        image: &str,
        name: Option<&str>,
        size: Option<u64>,
    ) -> Result<ContainerRecord> {
        let image_id = self.resolve(image)?;
        if let Some(n) = name {
            valid_name(n)?;
        }
        if size.is_some() && self.snap.driver() != "devmapper" {
            return Err(EngineError::Unsupported(format!(
                "--size needs the devmapper driver: the {} driver has no block devices to size",
                self.snap.driver()
            )));
        }
        let created = now();
        let mut n = 0u64;
        let id = loop {
            let d =
                Digest::of(format!("{created} {} {image_id} {n}", std::process::id()).as_bytes());
            if !self.store.state.containers.contains_key(d.hex()) {
                break d.hex().to_string();
            }
            n += 1;
        };
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| format!("c-{}", &id[..12]));
        if let Some(other) = self
            .store
            .state
            .containers
            .values()
            .find(|c| c.name == name)
        {
            return Err(EngineError::Conflict {
                action: "create container",
                image: name.clone(),
                reason: format!(
                    "the name is already in use by container {} (remove it or choose another name)",
                    &other.id[..12]
                ),
            });
        }
        let top = self.top_snapshot(&image_id)?;
        let key = format!("{CONTAINER_PREFIX}{id}");
        self.snap.prepare(&key, top.as_deref())?;
        crash_point("container-create-prepared");
        if let Some(want) = size {
            if let Err(e) = self.check_size(&key, want) {
                let _ = self.snap.remove(&key);
                return Err(e);
            }
        }
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            image: image_id,
            image_name: image.to_string(),
            snapshot: key.clone(),
            created,
            size,
            mounted: false,
            removing: false,
        };
        self.store.state.containers.insert(id.clone(), rec.clone());
        if let Err(e) = self.store.save() {
            self.store.state.containers.remove(&id);
            let _ = self.snap.remove(&key);
            return Err(e);
        }
        Ok(rec)
    }

    /// `--size`: smaller than the base is refused; larger grows the
    /// container's device and its filesystem.
    fn check_size(&mut self, key: &str, want: u64) -> Result<()> {
        let Some(info) = self.snap.device_info(key)? else {
            return Err(EngineError::Unsupported(format!(
                "--size needs block devices, which the {} driver does not have",
                self.snap.driver()
            )));
        };
        let (want_b, base_b) = (thinpool::Bytes(want), thinpool::Bytes(info.size));
        if want < info.size {
            return Err(EngineError::InvalidArgument(format!(
                "--size {want_b}: smaller than the base device ({base_b}) is refused"
            )));
        }
        if want > info.size {
            self.snap.grow(key, want)?;
        }
        Ok(())
    }

    /// Removes a container (`force` unmounts a mounted one first).
    /// Returns its name.
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`]; [`EngineError::Conflict`] for a
    /// mounted container without `force`; snapshot errors (the removal is
    /// then retried by later commands).
    pub fn remove_container(&mut self, name: &str, force: bool) -> Result<String> {
        let c = self.container(name)?;
        if c.mounted && !force {
            return Err(EngineError::Conflict {
                action: "remove container",
                image: c.name.clone(),
                reason: "it is mounted (unmount it first, or use -f)".into(),
            });
        }
        if c.mounted {
            self.snap.release(&c.snapshot)?;
        }
        if let Some(r) = self.store.state.containers.get_mut(&c.id) {
            r.mounted = false;
            r.removing = true;
        }
        self.store.save()?;
        crash_point("container-rm-marked");
        match self.snap.remove(&c.snapshot) {
            Ok(()) | Err(SnapshotError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.state.containers.remove(&c.id);
        self.store.save()?;
        Ok(c.name)
    }

    /// Finishes removals a killed `rm` left marked (at open).
    pub(crate) fn finish_container_removals(&mut self) -> Result<()> {
        let pending: Vec<ContainerRecord> = self
            .store
            .state
            .containers
            .values()
            .filter(|c| c.removing)
            .cloned()
            .collect();
        for c in pending {
            let _ = self.snap.release(&c.snapshot);
            match self.snap.remove(&c.snapshot) {
                Ok(()) | Err(SnapshotError::NotFound { .. }) => {
                    self.store.state.containers.remove(&c.id);
                    self.store.save()?;
                }
                Err(e) => eprintln!(
                    "warning: could not finish removing container {}: {e}",
                    c.name
                ),
            }
        }
        Ok(())
    }

    /// Makes the container's filesystem reachable and returns its path; it
    /// stays mounted until [`Engine::unmount_container`].
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`], snapshot errors.
    pub fn mount_container(&mut self, name: &str) -> Result<PathBuf> {
        let c = self.container(name)?;
        let p = self.snap.path(&c.snapshot)?;
        if !c.mounted {
            if let Some(r) = self.store.state.containers.get_mut(&c.id) {
                r.mounted = true;
            }
            self.store.save()?;
        }
        Ok(p)
    }

    /// Undoes [`Engine::mount_container`] (a container not mounted is fine).
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`], snapshot errors.
    pub fn unmount_container(&mut self, name: &str) -> Result<()> {
        let c = self.container(name)?;
        self.snap.release(&c.snapshot)?;
        if c.mounted {
            if let Some(r) = self.store.state.containers.get_mut(&c.id) {
                r.mounted = false;
            }
            self.store.save()?;
        }
        Ok(())
    }

    /// The container's block device, activated (devmapper only).
    ///
    /// # Errors
    /// [`EngineError::Unsupported`] on drivers without block devices.
    pub fn container_device(&mut self, name: &str) -> Result<PathBuf> {
        let c = self.container(name)?;
        self.snap.device(&c.snapshot)?.ok_or_else(|| {
            EngineError::Unsupported(format!(
                "the {} driver has no block devices: `device` needs the devmapper driver",
                self.snap.driver()
            ))
        })
    }

    /// Runs `f` on the image's top layer (read-only) and the container's
    /// tree, then undoes the mounts it made.
    fn with_trees<T>(
        &mut self,
        c: &ContainerRecord,
        f: impl FnOnce(Option<&Path>, &Path) -> Result<T>,
    ) -> Result<T> {
        let lower_snap = self.top_snapshot(&c.image)?;
        let upper = self.snap.path(&c.snapshot)?;
        let lower = match &lower_snap {
            Some(s) => match self.snap.path(s) {
                Ok(p) => Some(p),
                Err(e) => {
                    if !c.mounted {
                        let _ = self.snap.release(&c.snapshot);
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        let r = f(lower.as_deref(), &upper);
        let released_lower = lower_snap.as_ref().map(|s| self.snap.release(s));
        let released_upper = if c.mounted {
            Ok(())
        } else {
            self.snap.release(&c.snapshot)
        };
        let out = r?;
        released_lower.transpose()?;
        released_upper?;
        Ok(out)
    }

    /// The container's changes against its image, sorted by path.
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`], snapshot and layer errors.
    pub fn container_diff(&mut self, name: &str) -> Result<Vec<Change>> {
        let c = self.container(name)?;
        let what = format!("container {}", c.name);
        self.with_trees(&c, |lower, upper| {
            layer::changes(lower, upper).map_err(layer_err(&what))
        })
    }

    /// Writes the container's flat filesystem as a tar.
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`], snapshot, layer and write errors.
    pub fn export_container(&mut self, name: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.container(name)?;
        let dir = self.snap.path(&c.snapshot)?;
        let r = layer::write_tree(&dir, out).map_err(layer_err(&c.name));
        if !c.mounted {
            self.snap.release(&c.snapshot)?;
        }
        r.map(|_| ())
    }

    /// Commits the container's changes as a new image on top of its
    /// image; returns the new image id.
    ///
    /// # Errors
    /// Bad changes or reference (checked before anything is stored),
    /// layer and snapshot errors; the store is then as it was before.
    pub fn commit_container(&mut self, name: &str, opts: &CommitOptions) -> Result<Digest> {
        let target = opts
            .reference
            .as_deref()
            .map(|r| Reference::parse(r).map_err(|e| EngineError::Reference(e.to_string())))
            .transpose()?;
        if target.as_ref().is_some_and(|t| t.digest().is_some()) {
            return Err(EngineError::Reference(
                "a committed image is named REPOSITORY[:TAG], without a digest".into(),
            ));
        }
        let c = self.container(name)?;
        let img = self
            .store
            .state
            .images
            .get(&c.image)
            .cloned()
            .ok_or_else(|| EngineError::ImageNotFound {
                name: c.image.to_string(),
            })?;
        let mut cfg: Value = serde_json::from_slice(&self.blobs.read(&c.image, MAX_JSON)?)
            .map_err(EngineError::json("image config"))?;
        let obj = cfg
            .as_object_mut()
            .ok_or_else(|| EngineError::archive("image config is not a JSON object"))?;
        let mut rc = match obj.remove("config") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for ch in &opts.changes {
            changes::apply(&mut rc, ch)?;
        }
        obj.insert("config".into(), Value::Object(rc));

        // The layer: the file-level diff, stored uncompressed (blob digest
        // == diff id), then made into a layer on the image's top layer.
        let tmp = self.blobs.temp()?;
        let what = format!("container {}", c.name);
        let info = self.with_trees(&c, |lower, upper| {
            let mut w = std::io::BufWriter::new(tmp.as_file());
            let info = layer::write_layer(lower, upper, &mut w).map_err(layer_err(&what))?;
            w.flush().map_err(EngineError::io("write", tmp.path()))?;
            Ok(info)
        })?;
        self.blobs.commit_temp(tmp, &info.diff_id)?;

        self.transaction(|e| {
            let id = e.commit_image(&c, &img, cfg, &info, target, opts)?;
            crash_point("container-commit-unsaved");
            Ok(id)
        })
    }

    fn commit_image(
        &mut self,
        c: &ContainerRecord,
        img: &ImageRecord,
        mut cfg: Value,
        info: &layer::LayerInfo,
        target: Option<Reference>,
        opts: &CommitOptions,
    ) -> Result<Digest> {
        let diff_id = info.diff_id.clone();
        let parent = img.chain.last().cloned();
        let chain_id = match &parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        };
        let never = |actual: Digest| {
            EngineError::archive(format!(
                "committed layer content changed while storing it ({actual})"
            ))
        };
        let blob = BlobRef {
            digest: diff_id.clone(),
            media_type: OCI_LAYER.to_string(),
            size: info.size,
        };
        let name = format!("{}{}", crate::engine::LAYER_PREFIX, chain_id.hex());
        // On devmapper the new layer is a thin snapshot of the container: no
        // data is copied in the pool. Elsewhere the diff is applied onto a
        // new snapshot of the parent layer.
        if !self.store.state.layers.contains_key(&chain_id)
            && self.snap.commit_copy(&name, &c.snapshot)?
        {
            self.store.state.layers.insert(
                chain_id.clone(),
                crate::engine::store::LayerRecord {
                    chain_id: chain_id.clone(),
                    diff_id: diff_id.clone(),
                    parent: parent.clone(),
                    snapshot: name,
                    size: info.size,
                    blobs: vec![blob],
                },
            );
        } else {
            self.create_layer(parent.as_ref(), &chain_id, &diff_id, blob, &never)?;
        }
        let created = now();
        let obj = cfg
            .as_object_mut()
            .ok_or_else(|| EngineError::archive("image config is not a JSON object"))?;
        obj.insert("created".into(), json!(created));
        obj.insert("container".into(), json!(c.id));
        // The parent's build container does not describe this image.
        obj.remove("container_config");
        for (key, v) in [("author", &opts.author), ("comment", &opts.message)] {
            match v {
                Some(v) => obj.insert(key.into(), json!(v)),
                None => obj.remove(key),
            };
        }
        obj.get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
            .and_then(Value::as_array_mut)
            .ok_or_else(|| EngineError::archive("image config has no rootfs.diff_ids"))?
            .push(json!(diff_id));
        let mut step = Map::new();
        step.insert("created".into(), json!(created));
        step.insert("created_by".into(), json!(""));
        if let Some(a) = &opts.author {
            step.insert("author".into(), json!(a));
        }
        if let Some(m) = &opts.message {
            step.insert("comment".into(), json!(m));
        }
        match obj.get_mut("history").and_then(Value::as_array_mut) {
            Some(h) => h.push(Value::Object(step)),
            None => {
                obj.insert("history".into(), json!([Value::Object(step)]));
            }
        }
        let bytes = serde_json::to_vec(&cfg).map_err(EngineError::json("image config"))?;
        ImageConfig::parse(&bytes)?;
        let id = self.blobs.put(&bytes)?;
        let mut chain = img.chain.clone();
        chain.push(chain_id);
        self.store
            .state
            .images
            .entry(id.clone())
            .or_insert_with(|| ImageRecord {
                id: id.clone(),
                chain,
                parent: Some(img.id.clone()),
                repo_digests: Default::default(),
                manifest: None,
                added: created.clone(),
                last_tag_time: None,
            });
        if let Some(t) = target {
            self.store.state.tags.insert(t.to_string(), id.clone());
            if let Some(i) = self.store.state.images.get_mut(&id) {
                i.last_tag_time = Some(created);
            }
        }
        Ok(id)
    }

    /// Space the container's snapshot uses on its own.
    ///
    /// # Errors
    /// Snapshot errors.
    pub fn container_usage(&mut self, c: &ContainerRecord) -> Result<u64> {
        Ok(self.snap.usage(&c.snapshot)?.size)
    }

    /// `inspect` JSON of one container.
    ///
    /// # Errors
    /// [`EngineError::ContainerNotFound`], snapshot errors.
    pub fn inspect_container(&self, name: &str) -> Result<Value> {
        let c = self.container(name)?;
        let data = match self.snap.device_info(&c.snapshot)? {
            Some(d) => json!({
                "DeviceId": d.id.to_string(),
                "DeviceName": d.name,
                "DeviceSize": d.size.to_string(),
                "DevicePath": d.path.display().to_string(),
            }),
            None => json!({ "Snapshot": c.snapshot }),
        };
        Ok(json!({
            "Id": c.id,
            "Name": c.name,
            "Image": c.image,
            "ImageName": c.image_name,
            "Created": c.created,
            "Mounted": c.mounted,
            "GraphDriver": { "Name": self.snap.driver(), "Data": data },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a1", "my_box.2-x", "A-b"] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "-x", "_x", "a/b", "a b", "é1"] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }
}
