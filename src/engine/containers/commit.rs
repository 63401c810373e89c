//! `commit`: a container's changes become a new layer and a new image
//! whose config carries the history entry, author and comment.

#[allow(clippy::wildcard_imports)]
use super::*;

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

impl Engine {
    /// Commits the container's changes as a new image on top of its
    /// image; returns the new image id.
    ///
    /// # Errors
    /// Bad changes or reference (checked before anything is stored),
    /// layer and snapshot errors; the store is then as it was before.
    pub fn commit_container(&mut self, name: &str, opts: &CommitOptions) -> Result<Digest> {
        let target = Engine::parse_target(opts.reference.as_deref(), "a committed")?;
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
        let info = self.with_trees(&c, Walk::Scoped, |lower, upper, scope| {
            let mut w = std::io::BufWriter::new(tmp.as_file());
            let info =
                layer::write_layer_in(lower, upper, scope, &mut w).map_err(layer_err(&what))?;
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

    /// Records the commit's layer and its image (config, chain, name), in
    /// the caller's transaction.
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
        let chain_id = self.commit_layer(c, img, info)?;
        let created = now();
        child_config(&mut cfg, c, &diff_id, opts, &created)?;
        let bytes = serde_json::to_vec(&cfg).map_err(EngineError::json("image config"))?;
        ImageConfig::parse(&bytes)?;
        let id = self.blobs.put(&bytes)?;
        let mut chain = img.chain.clone();
        chain.push(chain_id);
        self.record_image(&id, chain, Some(img.id.clone()), target.as_ref(), &created);
        Ok(id)
    }

    /// The layer of a commit, recorded by chain id: on devmapper a thin
    /// snapshot of the container, so no data is copied in the pool;
    /// elsewhere the diff applied onto a new snapshot of the parent layer.
    fn commit_layer(
        &mut self,
        c: &ContainerRecord,
        img: &ImageRecord,
        info: &layer::LayerInfo,
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
        Ok(chain_id)
    }
}

/// Turns the image's config `cfg` into its child's: the new layer's diff
/// id, the creation time, the container, and a history step with the
/// author and comment of `opts`.
fn child_config(
    cfg: &mut Value,
    c: &ContainerRecord,
    diff_id: &Digest,
    opts: &CommitOptions,
    created: &str,
) -> Result<()> {
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
    Ok(())
}
