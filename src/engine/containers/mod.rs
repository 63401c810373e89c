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

mod commit;
pub use commit::CommitOptions;

/// How a diff reads the two trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Only the paths the snapshotter says may have changed, when it can
    /// tell; both whole trees otherwise.
    Scoped,
    /// Both whole trees.
    Full,
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
        let (id, name) = self.new_identity(&image_id, &created, name)?;
        let top = self.top_snapshot(&image_id)?;
        let key = format!("{CONTAINER_PREFIX}{id}");
        self.snap.prepare_idle(&key, top.as_deref())?;
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

    /// A new container's id (unique in the store) and its name: the one
    /// given (refused if another container has it), or one made from the
    /// id.
    fn new_identity(
        &self,
        image_id: &Digest,
        created: &str,
        name: Option<&str>,
    ) -> Result<(String, String)> {
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
        Ok((id, name))
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

    /// Runs `f` on the image's top layer (read-only), the container's
    /// tree and, unless `how` is [`Walk::Full`], the scope the snapshotter
    /// gives for a diff of the two (`None`: compare everything); then undoes
    /// the mounts it made.
    fn with_trees<T>(
        &mut self,
        c: &ContainerRecord,
        how: Walk,
        f: impl FnOnce(Option<&Path>, &Path, Option<&layer::Scope>) -> Result<T>,
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
        // Without a scope the diff is still right, only slower: a failure
        // to find one is not the command's failure.
        let scope = match how {
            Walk::Scoped if lower.is_some() => self.snap.changed_paths(&c.snapshot).ok().flatten(),
            _ => None,
        };
        let r = f(lower.as_deref(), &upper, scope.as_ref());
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
        self.container_diff_by(name, Walk::Scoped)
    }

    /// As [`Engine::container_diff`], choosing how the trees are read
    /// (the test suites compare the two ways).
    ///
    /// # Errors
    /// As [`Engine::container_diff`].
    pub fn container_diff_by(&mut self, name: &str, how: Walk) -> Result<Vec<Change>> {
        let c = self.container(name)?;
        let what = format!("container {}", c.name);
        self.with_trees(&c, how, |lower, upper, scope| {
            layer::changes_in(lower, upper, scope).map_err(layer_err(&what))
        })
    }

    /// The scope the snapshotter gives for a diff of the container (the
    /// paths of its image's tree that may have changed), `None` when it
    /// gives none.
    ///
    /// # Errors
    /// As [`Engine::container_diff`].
    pub fn container_diff_scope(&mut self, name: &str) -> Result<Option<layer::Scope>> {
        let c = self.container(name)?;
        self.with_trees(&c, Walk::Scoped, |_, _, scope| Ok(scope.cloned()))
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

    /// Space the container's snapshot uses on its own.
    ///
    /// # Errors
    /// Snapshot errors.
    pub fn container_usage(&mut self, c: &ContainerRecord) -> Result<u64> {
        Ok(self.snap.size(&c.snapshot)?)
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
