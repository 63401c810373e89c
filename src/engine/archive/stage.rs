//! Unpacks an archive's entries into a staging directory, each file hashed
//! as it is written (on a second thread, see [`HashPipe`]), so that later
//! steps can look entries up by path and know every file's digest without
//! reading it again. Only plain files,
//! directories and in-archive links are accepted; paths are normalised and
//! checked before use, and nothing is ever created from an archive path:
//! staged files are named by number.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::engine::blobs::{read_limited, MAX_JSON};
use crate::engine::digest::{Digest, HashPipe};
use crate::engine::layer::read_full;
use crate::engine::{EngineError, Result};

/// Most entries an archive may have.
const MAX_ENTRIES: usize = 100_000;

/// A staged file.
#[derive(Clone, Debug)]
pub struct Staged {
    /// Where it was written.
    pub file: PathBuf,
    /// Content digest.
    pub digest: Digest,
    /// Size.
    pub size: u64,
}

/// The unpacked archive.
pub struct Stage {
    files: BTreeMap<String, Staged>,
    links: BTreeMap<String, String>,
}

/// Normalises an archive path: no absolute paths, no climbing, no NUL.
fn clean(raw: &Path) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| EngineError::archive(format!("entry {raw:?} is not UTF-8")))?
                    .to_string(),
            ),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(EngineError::archive(format!(
                        "entry {} climbs out of the archive",
                        raw.display()
                    )));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(EngineError::archive(format!(
                    "entry {} has an absolute path",
                    raw.display()
                )))
            }
        }
    }
    Ok(parts.join("/"))
}

impl Stage {
    /// Unpacks `input` (a tar) into `dir`.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`] for anything but files, dirs and
    /// in-archive links, bad paths, or too many entries.
    pub fn unpack(input: impl Read, dir: &Path) -> Result<Stage> {
        let mut ar = tar::Archive::new(input);
        let mut stage = Stage {
            files: BTreeMap::new(),
            links: BTreeMap::new(),
        };
        let entries = ar
            .entries()
            .map_err(|e| EngineError::archive(format!("not a tar archive: {e}")))?;
        let mut pipe = HashPipe::new().map_err(EngineError::io("start hashing", dir))?;
        // Files in archive order; their digests come from the pipe at the end.
        let mut written: Vec<(String, PathBuf)> = Vec::new();
        for (n, entry) in entries.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(EngineError::archive(format!(
                    "more than {MAX_ENTRIES} entries"
                )));
            }
            let mut entry = entry.map_err(|e| EngineError::archive(format!("damaged tar: {e}")))?;
            let path = clean(
                &entry
                    .path()
                    .map_err(|e| EngineError::archive(format!("bad entry name: {e}")))?,
            )?;
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() {
                continue;
            }
            if kind.is_symlink() || kind.is_hard_link() {
                stage.add_link(&mut entry, path, kind.is_symlink())?;
                continue;
            }
            if !kind.is_file() {
                return Err(EngineError::archive(format!(
                    "entry {path} is not a regular file"
                )));
            }
            let file = dir.join(format!("f{n}"));
            copy_hashed(&mut entry, &file, &mut pipe, &path)?;
            written.push((path, file));
        }
        let sums = pipe
            .finish()
            .map_err(EngineError::io("hash the entries of", dir))?;
        // A later entry of the same path replaces an earlier one.
        for ((path, file), (digest, size)) in written.into_iter().zip(sums) {
            stage.files.insert(path, Staged { file, digest, size });
        }
        Ok(stage)
    }

    fn add_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: String,
        symlink: bool,
    ) -> Result<()> {
        let target = entry
            .link_name()
            .map_err(|e| EngineError::archive(format!("bad link in {path}: {e}")))?
            .ok_or_else(|| EngineError::archive(format!("link {path} has no target")))?;
        let base = if symlink {
            Path::new(&path)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&target)
        } else {
            target.to_path_buf()
        };
        self.links.insert(path, clean(&base)?);
        Ok(())
    }

    /// The staged file at `path`, following in-archive links (a few hops).
    pub fn get(&self, path: &str) -> Option<&Staged> {
        let mut p = clean(Path::new(path)).ok()?;
        for _ in 0..8 {
            if let Some(s) = self.files.get(&p) {
                return Some(s);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    /// Whether `path` is present.
    pub fn has(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// A small file's bytes (JSON documents), capped.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`] when missing; [`EngineError::TooLarge`].
    pub fn read_json_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let s = self
            .get(path)
            .ok_or_else(|| EngineError::archive(format!("{path} is missing")))?;
        let f = File::open(&s.file).map_err(EngineError::io("open", &s.file))?;
        read_limited(f, MAX_JSON, path)
    }

    /// The blob `blobs/sha256/<hex>`, checked against `digest` and `size`.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`] when missing, [`EngineError::DigestMismatch`].
    pub fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<&Staged> {
        let path = format!("blobs/sha256/{}", digest.hex());
        let s = self
            .get(&path)
            .ok_or_else(|| EngineError::archive(format!("blob {digest} is missing")))?;
        if s.digest != *digest {
            return Err(EngineError::DigestMismatch {
                what: path,
                expected: digest.clone(),
                actual: s.digest.clone(),
            });
        }
        if let Some(want) = size {
            if want != s.size {
                return Err(EngineError::archive(format!(
                    "blob {digest} is {} bytes, its descriptor says {want}",
                    s.size
                )));
            }
        }
        Ok(s)
    }
}

/// Copies one entry into `file` in large pieces, each handed to the
/// hashing thread once written.
fn copy_hashed(entry: &mut impl Read, file: &Path, pipe: &mut HashPipe, path: &str) -> Result<()> {
    let mut out = File::create(file).map_err(EngineError::io("create", file))?;
    let damaged = |e: io::Error| EngineError::archive(format!("damaged entry {path}: {e}"));
    loop {
        let mut buf = pipe.buffer().map_err(EngineError::io("hash", file))?;
        let n = read_full(entry, &mut buf).map_err(damaged)?;
        if n == 0 {
            pipe.give_back(buf);
            break;
        }
        out.write_all(&buf[..n])
            .map_err(EngineError::io("write", file))?;
        pipe.hash(buf, n).map_err(EngineError::io("hash", file))?;
    }
    pipe.end_file().map_err(EngineError::io("hash", file))
}

#[cfg(test)]
mod tests {
    use super::clean;
    use std::path::Path;

    #[test]
    fn paths_are_normalised_and_checked() {
        assert_eq!(
            clean(Path::new("./blobs/sha256/ab")).unwrap(),
            "blobs/sha256/ab"
        );
        assert_eq!(clean(Path::new("a/../b")).unwrap(), "b");
        assert!(clean(Path::new("../x")).is_err());
        assert!(clean(Path::new("/etc/passwd")).is_err());
    }
}
