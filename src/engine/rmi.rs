//! `rmi`: removing an image name, and the image with its last name, as
//! Docker does: refused while child images, containers or snapshots on its
//! layers need it (`-f` untags instead), and followed by the layers and
//! blobs no other image uses.

use std::collections::BTreeSet;

use super::digest::Digest;
use super::images::familiar;
use super::reference::Reference;
use super::{Engine, EngineError, Result};

impl Engine {
    /// After the last tag of repository `repo` left image `id`, its digest
    /// references in that repository go too, as in Docker; digest
    /// references of other repositories stay (and keep the image).
    fn drop_orphan_digests(&mut self, id: &Digest, repo: &str) -> Vec<String> {
        let tag_left = self
            .store
            .state
            .tags_of(id)
            .iter()
            .any(|t| Reference::parse(t).is_ok_and(|x| x.name() == repo));
        let Some(img) = self.store.state.images.get_mut(id).filter(|_| !tag_left) else {
            return Vec::new();
        };
        let gone: Vec<String> = img
            .repo_digests
            .iter()
            .filter(|d| d.split('@').next() == Some(repo))
            .cloned()
            .collect();
        gone.iter()
            .map(|d| {
                img.repo_digests.remove(d);
                format!("Untagged: {}", familiar(d))
            })
            .collect()
    }

    /// Removes one image name, Docker's way. Returns `Untagged:`/`Deleted:` lines.
    ///
    /// # Errors
    /// [`EngineError::Conflict`] with what `-f` would do; resolution errors.
    pub fn rmi(&mut self, name: &str, force: bool) -> Result<Vec<String>> {
        let id = self.resolve(name)?;
        if self.names_by_id(name) {
            self.rmi_by_id(id, force)
        } else {
            self.rmi_by_name(name, id, force)
        }
    }

    /// Whether `name` names an image by id (or id prefix) rather than by
    /// reference: resolve() tries tags first, then ids, and so does this.
    fn names_by_id(&self, name: &str) -> bool {
        self.tagged(name).is_none() && super::reference::is_short_id_candidate(name) && {
            let prefix = name.strip_prefix("sha256:").unwrap_or(name);
            self.store
                .state
                .images
                .keys()
                .any(|d| d.hex().starts_with(prefix))
        }
    }

    /// `rmi REFERENCE`: removes that one name; the image goes with its
    /// last name, unless children or containers still need it.
    fn rmi_by_name(&mut self, name: &str, id: Digest, force: bool) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let r = Reference::parse(name).map_err(|e| EngineError::Reference(e.to_string()))?;
        let before = self.store.state.clone();
        if let Some(d) = r.digest() {
            let key = format!("{}@{d}", r.name());
            if let Some(img) = self.store.state.images.get_mut(&id) {
                img.repo_digests.remove(&key);
            }
            lines.push(format!("Untagged: {}", familiar(&key)));
        } else {
            self.store.state.tags.remove(&r.to_string());
            lines.push(format!("Untagged: {}", r.familiar()));
            lines.extend(self.drop_orphan_digests(&id, &r.name()));
        }
        let still_named = !self.store.state.tags_of(&id).is_empty()
            || self
                .store
                .state
                .images
                .get(&id)
                .is_some_and(|i| !i.repo_digests.is_empty());
        if still_named || !self.store.state.children_of(&id).is_empty() {
            self.store.save()?;
            return Ok(lines);
        }
        let users = self.users(&id)?;
        if !users.is_empty() {
            if !force {
                self.store.state = before;
                return Err(in_use(name, &users));
            }
            self.store.save()?;
            return Ok(lines);
        }
        self.store.save()?;
        lines.extend(self.delete_image(&id)?);
        Ok(lines)
    }

    /// `rmi ID`: removes the image with all its names, refused when tags in
    /// several repositories, children or containers would lose it.
    fn rmi_by_id(&mut self, id: Digest, force: bool) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        let tags = self.store.state.tags_of(&id);
        let repos: BTreeSet<String> = tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| r.name())
            .collect();
        let short = id.short().to_string();
        if repos.len() > 1 && !force {
            return Err(EngineError::Conflict {
                action: "delete",
                image: short,
                reason:
                    "image is referenced in multiple repositories (use -f to untag and delete it)"
                        .into(),
            });
        }
        if !self.store.state.children_of(&id).is_empty() {
            if !force {
                return Err(EngineError::Conflict {
                    action: "delete",
                    image: short,
                    reason: "image has dependent child images (-f only untags it)".into(),
                });
            }
            for t in tags {
                self.store.state.tags.remove(&t);
                lines.push(format!("Untagged: {}", familiar(&t)));
            }
            self.store.save()?;
            return Ok(lines);
        }
        let users = self.users(&id)?;
        if !users.is_empty() && !force {
            return Err(in_use(&short, &users));
        }
        for t in tags {
            self.store.state.tags.remove(&t);
            lines.push(format!("Untagged: {}", familiar(&t)));
        }
        if !users.is_empty() {
            self.store.save()?;
            return Ok(lines);
        }
        if let Some(img) = self.store.state.images.get(&id) {
            for d in &img.repo_digests {
                lines.push(format!("Untagged: {}", familiar(d)));
            }
        }
        self.store.save()?;
        lines.extend(self.delete_image(&id)?);
        Ok(lines)
    }

    /// Containers of image `id`, then other snapshots made on layers that
    /// deleting it would free: while there are any, it cannot be deleted.
    fn users(&self, id: &Digest) -> Result<Vec<String>> {
        let st = &self.store.state;
        let label =
            |c: &super::store::ContainerRecord| format!("container {} ({})", c.name, &c.id[..12]);
        let mut out: Vec<String> = st
            .containers
            .values()
            .filter(|c| c.image == *id)
            .map(label)
            .collect();
        for s in self.snapshot_users(id)? {
            let l = match st.containers.values().find(|c| c.snapshot == s) {
                Some(c) => label(c),
                None => format!("snapshot {s}"),
            };
            if !out.contains(&l) {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// Snapshots (containers, views) made on layers that deleting image
    /// `id` would free: while there are any, the image cannot be deleted.
    fn snapshot_users(&self, id: &Digest) -> Result<Vec<String>> {
        let st = &self.store.state;
        let Some(img) = st.images.get(id) else {
            return Ok(Vec::new());
        };
        let kept: BTreeSet<&Digest> = st
            .images
            .values()
            .filter(|i| i.id != *id)
            .flat_map(|i| i.chain.iter())
            .collect();
        let freed: BTreeSet<&str> = img
            .chain
            .iter()
            .filter(|c| !kept.contains(c))
            .filter_map(|c| st.layers.get(c))
            .map(|l| l.snapshot.as_str())
            .collect();
        if freed.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .snap
            .walk()?
            .into_iter()
            .filter(|i| {
                i.parent.as_deref().is_some_and(|p| freed.contains(p))
                    && !freed.contains(i.name.as_str())
            })
            .map(|i| i.name)
            .collect())
    }

    /// Deletes an image record, then the layers and blobs no one needs.
    fn delete_image(&mut self, id: &Digest) -> Result<Vec<String>> {
        self.store.state.images.remove(id);
        self.store.state.tags.retain(|_, v| v != id);
        self.store.save()?;
        let mut lines = vec![format!("Deleted: {id}")];
        for c in self.remove_unused_layers()? {
            lines.push(format!("Deleted: {c}"));
        }
        Ok(lines)
    }
}

fn in_use(image: &str, users: &[String]) -> EngineError {
    EngineError::Conflict {
        action: "delete",
        image: image.to_string(),
        reason: format!(
            "image is in use by {} (remove it first; -f only untags the image)",
            users.join(", ")
        ),
    }
}
