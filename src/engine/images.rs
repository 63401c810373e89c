//! Image commands on the store: list (with Docker's filters), tag,
//! history and inspect. `rmi` has its own module, `engine::rmi`.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::blobs::MAX_JSON;
use super::digest::Digest;
use super::model::ImageConfig;
use super::reference::Reference;
use super::{Engine, EngineError, Result};

/// The current time as the store records it.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// One image as `images` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    /// Image id.
    pub id: Digest,
    /// Familiar `repo:tag` names.
    pub repo_tags: Vec<String>,
    /// Familiar `repo@digest` names.
    pub repo_digests: Vec<String>,
    /// Creation time from the config.
    pub created: String,
    /// Total uncompressed size of its layers.
    pub size: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Parent image id.
    pub parent: Option<Digest>,
    /// Untagged and no image depends on it.
    pub dangling: bool,
    /// Untagged parent of another image (shown with `-a`).
    pub intermediate: bool,
}

/// `images --filter` conditions.
#[derive(Clone, Debug, Default)]
pub struct ImageFilter {
    /// `dangling=true|false`.
    pub dangling: Option<bool>,
    /// `reference=<pattern>` (any may match).
    pub reference: Vec<String>,
    /// `before=<image>`.
    pub before: Option<String>,
    /// `since=<image>`.
    pub since: Option<String>,
    /// `label=<k>[=<v>]` (all must match).
    pub labels: Vec<(String, Option<String>)>,
}

impl ImageFilter {
    /// Adds one `key=value` filter.
    ///
    /// # Errors
    /// [`EngineError::Reference`] for an unknown key or bad value.
    pub fn add(&mut self, f: &str) -> Result<()> {
        let bad = |why: &str| EngineError::Reference(format!("invalid filter {f:?}: {why}"));
        let (k, v) = f.split_once('=').ok_or_else(|| bad("expected key=value"))?;
        match k {
            "dangling" => {
                self.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("dangling takes true or false")),
                })
            }
            "reference" => self.reference.push(v.to_string()),
            "before" => self.before = Some(v.to_string()),
            "since" => self.since = Some(v.to_string()),
            "label" => self.labels.push(match v.split_once('=') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (v.to_string(), None),
            }),
            _ => {
                return Err(bad(
                    "known filters: dangling, reference, before, since, label",
                ))
            }
        }
        Ok(())
    }
}

pub(super) fn familiar(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.to_string())
}

impl Engine {
    /// An image's config, parsed.
    ///
    /// # Errors
    /// [`EngineError::BlobMissing`], [`EngineError::Json`].
    pub fn config(&self, id: &Digest) -> Result<ImageConfig> {
        ImageConfig::parse(&self.blobs.read(id, MAX_JSON)?)
    }

    /// Every image, newest first.
    ///
    /// # Errors
    /// Store errors.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let st = &self.store.state;
        let mut out = Vec::new();
        for img in st.images.values() {
            let cfg = self.config(&img.id)?;
            let tags = st.tags_of(&img.id);
            let has_children = !st.children_of(&img.id).is_empty();
            let size = img
                .chain
                .iter()
                .filter_map(|c| st.layers.get(c))
                .map(|l| l.size)
                .sum();
            out.push(ImageSummary {
                id: img.id.clone(),
                repo_tags: tags.iter().map(|t| familiar(t)).collect(),
                repo_digests: img.repo_digests.iter().map(|t| familiar(t)).collect(),
                created: cfg.created.clone().unwrap_or_default(),
                size,
                labels: cfg.labels(),
                parent: img.parent.clone(),
                dangling: tags.is_empty() && !has_children,
                intermediate: tags.is_empty() && has_children,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Images passing `filter` (intermediate ones only with `all`).
    ///
    /// # Errors
    /// Resolution errors for before/since.
    pub fn filtered(
        &self,
        all: bool,
        repo: Option<&str>,
        filter: &ImageFilter,
    ) -> Result<Vec<ImageSummary>> {
        let list = self.list()?;
        let created_of = |name: &str| -> Result<String> {
            let id = self.resolve(name)?;
            Ok(self.config(&id)?.created.unwrap_or_default())
        };
        let before = filter.before.as_deref().map(created_of).transpose()?;
        let since = filter.since.as_deref().map(created_of).transpose()?;
        // Like Docker, a reference pattern (positional or filter) keeps an
        // image by the names that match, and lists it under those only.
        let by_ref = repo.is_some() || !filter.reference.is_empty();
        let keep_name = |name: &String| {
            Reference::parse(name).is_ok_and(|r| {
                repo.is_none_or(|p| r.matches_pattern(p))
                    && (filter.reference.is_empty()
                        || filter.reference.iter().any(|p| r.matches_pattern(p)))
            })
        };
        Ok(list
            .into_iter()
            // Docker's rules: intermediate images only with -a, and never
            // for `dangling=...` (true: untagged leaves; false: named ones).
            .filter(|s| match filter.dangling {
                None => all || !s.intermediate,
                Some(true) => s.dangling,
                Some(false) => !s.dangling && !s.intermediate,
            })
            .filter_map(|mut s| {
                if by_ref {
                    s.repo_tags.retain(keep_name);
                    s.repo_digests.retain(keep_name);
                    if s.repo_tags.is_empty() && s.repo_digests.is_empty() {
                        return None;
                    }
                }
                Some(s)
            })
            .filter(|s| before.as_ref().is_none_or(|b| s.created < *b))
            .filter(|s| since.as_ref().is_none_or(|b| s.created > *b))
            .filter(|s| {
                filter.labels.iter().all(|(k, v)| {
                    s.labels
                        .get(k)
                        .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
                })
            })
            .collect())
    }

    /// Points `target` at the image `source` names.
    ///
    /// # Errors
    /// Resolution and reference errors.
    pub fn tag(&mut self, source: &str, target: &str) -> Result<()> {
        let id = self.resolve(source)?;
        let r = Reference::parse(target).map_err(|e| EngineError::Reference(e.to_string()))?;
        if r.digest().is_some() {
            return Err(EngineError::Reference(format!(
                "{target}: a tag cannot contain a digest"
            )));
        }
        self.store.state.tags.insert(r.to_string(), id.clone());
        if let Some(img) = self.store.state.images.get_mut(&id) {
            img.last_tag_time = Some(now());
        }
        self.store.save()
    }

    /// History rows, newest first.
    ///
    /// # Errors
    /// Resolution and store errors.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let id = self.resolve(name)?;
        let cfg = self.config(&id)?;
        let img = self
            .store
            .state
            .images
            .get(&id)
            .ok_or_else(|| EngineError::ImageNotFound {
                name: name.to_string(),
            })?;
        let sizes: Vec<u64> = img
            .chain
            .iter()
            .map(|c| self.store.state.layers.get(c).map(|l| l.size).unwrap_or(0))
            .collect();
        // The step at which each ancestor image ends gets that image's id.
        let mut owners: BTreeMap<usize, Digest> = BTreeMap::new();
        owners.insert(cfg.history.len().saturating_sub(1), id.clone());
        let mut cur = img.parent.clone();
        while let Some(p) = cur {
            if let Ok(pc) = self.config(&p) {
                owners
                    .entry(pc.history.len().saturating_sub(1))
                    .or_insert(p.clone());
            }
            cur = self
                .store
                .state
                .images
                .get(&p)
                .and_then(|i| i.parent.clone());
        }
        let mut layer = 0;
        let mut rows = Vec::new();
        for (i, h) in cfg.history.iter().enumerate() {
            let size = if h.empty_layer {
                0
            } else {
                layer += 1;
                sizes.get(layer - 1).copied().unwrap_or(0)
            };
            rows.push(HistoryRow {
                image: owners.get(&i).cloned(),
                created: h.created.clone().unwrap_or_default(),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        if rows.is_empty() {
            rows.push(HistoryRow {
                image: Some(id),
                created: cfg.created.unwrap_or_default(),
                created_by: String::new(),
                size: sizes.iter().sum(),
                comment: String::new(),
            });
        }
        rows.reverse();
        Ok(rows)
    }

    /// `inspect` JSON of one image.
    ///
    /// # Errors
    /// Resolution and store errors.
    pub fn inspect(&self, name: &str) -> Result<Value> {
        let id = self.resolve(name)?;
        let cfg = self.config(&id)?;
        let st = &self.store.state;
        let img = st
            .images
            .get(&id)
            .ok_or_else(|| EngineError::ImageNotFound {
                name: name.to_string(),
            })?;
        let size: u64 = img
            .chain
            .iter()
            .filter_map(|c| st.layers.get(c))
            .map(|l| l.size)
            .sum();
        let top = img.chain.last().and_then(|c| st.layers.get(c));
        let mut gd = serde_json::Map::new();
        if let Some(l) = top {
            gd.insert("Snapshot".into(), json!(l.snapshot));
            gd.insert("ChainID".into(), json!(l.chain_id));
        }
        let mut v = json!({
            "Id": id,
            "RepoTags": st.tags_of(&id).iter().map(|t| familiar(t)).collect::<Vec<_>>(),
            "RepoDigests": img.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
            "Parent": img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            "Comment": cfg.extra.get("comment").and_then(|c| c.as_str()).unwrap_or_default(),
            "Created": cfg.created.clone().unwrap_or_default(),
            "Author": cfg.author.clone().unwrap_or_default(),
            "Config": cfg.config.clone().unwrap_or(Value::Null),
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Size": size,
            "GraphDriver": { "Name": self.snap.driver(), "Data": gd },
            "RootFS": { "Type": "layers", "Layers": cfg.rootfs.diff_ids },
            "Metadata": { "LastTagTime": img.last_tag_time.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()) },
        });
        if let (Some(var), Some(o)) = (cfg.variant, v.as_object_mut()) {
            o.insert("Variant".into(), json!(var));
        }
        Ok(v)
    }
}

/// One `history` row.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryRow {
    /// The image this step produced, when it is a local image.
    pub image: Option<Digest>,
    /// When.
    pub created: String,
    /// Command.
    pub created_by: String,
    /// Layer size (0 for steps without a layer).
    pub size: u64,
    /// Comment.
    pub comment: String,
}
