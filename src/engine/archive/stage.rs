//! An archive's entries by path. A stream (stdin, a compressed archive) is
//! unpacked into a staging directory, each file hashed as it is written
//! (on a second thread, see [`HashPipe`]). An uncompressed archive file is
//! only indexed: its entries stay where they are until used, so a layer is
//! read from the archive once, while it is applied ([`crate::engine::tee`]),
//! instead of being copied out first. Documents are copied and hashed the
//! first time their digest is needed ([`Stage::settled`]).
//! Only plain files, directories and in-archive links are accepted; paths
//! are normalised and checked before use, and nothing is ever created from
//! an archive path: staged files are named by number.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::engine::blobs::{read_limited, MAX_JSON};
use crate::engine::digest::{Digest, HashPipe};
use crate::engine::layer::read_full;
use crate::engine::{EngineError, Result};

/// Most entries an archive may have.
const MAX_ENTRIES: usize = 100_000;

/// An archive's file.
#[derive(Clone, Debug)]
pub struct Staged {
    /// Where it was copied, or (while it is only in the archive) where a
    /// copy goes.
    pub file: PathBuf,
    /// Content digest; `None` while the file is only in the archive.
    pub digest: Option<Digest>,
    /// Size.
    pub size: u64,
    /// Where its bytes start in the archive, while they are only there.
    at: Option<u64>,
}

impl Staged {
    /// The bytes of a settled (copied-out) JSON document, capped at
    /// [`MAX_JSON`]; `what` names it in errors.
    ///
    /// # Errors
    /// I/O errors, [`EngineError::TooLarge`].
    pub fn read_json(&self, what: &str) -> Result<Vec<u8>> {
        let f = File::open(&self.file).map_err(EngineError::io("open", &self.file))?;
        read_limited(f, MAX_JSON, what)
    }
}

/// The archive's files and links.
pub struct Stage {
    /// Interior mutability: documents are copied out on first use.
    files: RefCell<BTreeMap<String, Staged>>,
    links: BTreeMap<String, String>,
    /// The indexed archive (None when unpacked).
    archive: Option<Arc<File>>,
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
    fn new(archive: Option<Arc<File>>) -> Stage {
        Stage {
            files: RefCell::new(BTreeMap::new()),
            links: BTreeMap::new(),
            archive,
        }
    }

    /// Unpacks `input` (a tar) into `dir`.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`] for anything but files, dirs and
    /// in-archive links, bad paths, or too many entries.
    pub fn unpack(input: impl Read, dir: &Path) -> Result<Stage> {
        let mut ar = tar::Archive::new(input);
        let mut stage = Stage::new(None);
        let entries = ar
            .entries()
            .map_err(|e| EngineError::archive(format!("not a tar archive: {e}")))?;
        let mut pipe = HashPipe::new().map_err(EngineError::io("start hashing", dir))?;
        // Files in archive order; their digests come from the pipe at the end.
        let mut written: Vec<(String, PathBuf)> = Vec::new();
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| EngineError::archive(format!("damaged tar: {e}")))?;
            let Some(path) = stage.accept(n, &mut entry)? else {
                continue;
            };
            let file = dir.join(format!("f{n}"));
            copy_hashed(&mut entry, &file, &mut pipe, &path)?;
            written.push((path, file));
        }
        let sums = pipe
            .finish()
            .map_err(EngineError::io("hash the entries of", dir))?;
        // A later entry of the same path replaces an earlier one.
        let files = stage.files.get_mut();
        for ((path, file), (digest, size)) in written.into_iter().zip(sums) {
            let digest = Some(digest);
            let at = None;
            files.insert(
                path,
                Staged {
                    file,
                    digest,
                    size,
                    at,
                },
            );
        }
        Ok(stage)
    }

    /// Indexes `archive` (an uncompressed tar file) without reading its
    /// files; copies of them go into `dir` when needed.
    ///
    /// # Errors
    /// As [`Stage::unpack`]; a file that the archive cuts short.
    pub fn index(archive: File, dir: &Path) -> Result<Stage> {
        let len = archive
            .metadata()
            .map_err(EngineError::io("stat", dir))?
            .len();
        let archive = Arc::new(archive);
        let mut stage = Stage::new(Some(archive.clone()));
        let mut ar = tar::Archive::new(&*archive);
        let entries = ar
            .entries_with_seek()
            .map_err(|e| EngineError::archive(format!("not a tar archive: {e}")))?;
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| EngineError::archive(format!("damaged tar: {e}")))?;
            let Some(path) = stage.accept(n, &mut entry)? else {
                continue;
            };
            let size = entry.size();
            let at = entry.raw_file_position();
            if at.checked_add(size).is_none_or(|end| end > len) {
                return Err(EngineError::archive(format!(
                    "damaged tar: the archive ends inside {path}"
                )));
            }
            let file = dir.join(format!("f{n}"));
            let s = Staged {
                file,
                digest: None,
                size,
                at: Some(at),
            };
            stage.files.get_mut().insert(path, s);
        }
        Ok(stage)
    }

    /// Checks entry number `n`: the cleaned path of a regular file to
    /// keep, or None for what is skipped (directories) or recorded here
    /// (links).
    fn accept<R: Read>(
        &mut self,
        n: usize,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Option<String>> {
        if n >= MAX_ENTRIES {
            return Err(EngineError::archive(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let path = clean(
            &entry
                .path()
                .map_err(|e| EngineError::archive(format!("bad entry name: {e}")))?,
        )?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            return Ok(None);
        }
        if kind.is_symlink() || kind.is_hard_link() {
            self.add_link(entry, path, kind.is_symlink())?;
            return Ok(None);
        }
        if !kind.is_file() {
            return Err(EngineError::archive(format!(
                "entry {path} is not a regular file"
            )));
        }
        Ok(Some(path))
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

    /// The key of the file at `path`, following in-archive links (a few hops).
    fn resolve(&self, path: &str) -> Option<String> {
        let mut p = clean(Path::new(path)).ok()?;
        let files = self.files.borrow();
        for _ in 0..8 {
            if files.contains_key(&p) {
                return Some(p);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    /// The file at `path`, following in-archive links.
    pub fn get(&self, path: &str) -> Option<Staged> {
        let key = self.resolve(path)?;
        self.files.borrow().get(&key).cloned()
    }

    /// The file at `path`, copied out and hashed if it was only in the
    /// archive (once: the copy is remembered).
    ///
    /// # Errors
    /// Read, write and hashing errors.
    pub fn settled(&self, path: &str) -> Result<Option<Staged>> {
        let Some(key) = self.resolve(path) else {
            return Ok(None);
        };
        let Some(s) = self.files.borrow().get(&key).cloned() else {
            return Ok(None);
        };
        if s.digest.is_some() {
            return Ok(Some(s));
        }
        let mut pipe = HashPipe::new().map_err(EngineError::io("start hashing", &s.file))?;
        copy_hashed(&mut self.reader(&s)?, &s.file, &mut pipe, &key)?;
        let sums = pipe.finish().map_err(EngineError::io("hash", &s.file))?;
        let digest = sums.into_iter().next().map(|(d, _)| d);
        let settled = Staged {
            digest,
            at: None,
            ..s
        };
        self.files.borrow_mut().insert(key, settled.clone());
        Ok(Some(settled))
    }

    /// Reads a file's bytes, from its copy or from the archive.
    ///
    /// # Errors
    /// [`EngineError::Io`] when the copy cannot be opened.
    pub fn reader(&self, s: &Staged) -> Result<Box<dyn Read + Send>> {
        match (&self.archive, s.at) {
            (Some(archive), Some(at)) => Ok(Box::new(Region {
                archive: archive.clone(),
                at,
                left: s.size,
            })),
            _ => Ok(Box::new(
                File::open(&s.file).map_err(EngineError::io("open", &s.file))?,
            )),
        }
    }

    /// Whether `path` is present.
    pub fn has(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }

    /// A small file's bytes (JSON documents), capped.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`] when missing; [`EngineError::TooLarge`].
    pub fn read_json_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let s = self
            .get(path)
            .ok_or_else(|| EngineError::archive(format!("{path} is missing")))?;
        read_limited(self.reader(&s)?, MAX_JSON, path)
    }

    /// The blob `blobs/sha256/<hex>`, its size checked against `size` and,
    /// if it is known yet, its digest against `digest`.
    ///
    /// # Errors
    /// [`EngineError::InvalidArchive`] when missing or of another size,
    /// [`EngineError::DigestMismatch`].
    pub fn blob(&self, digest: &Digest, size: Option<u64>) -> Result<Staged> {
        self.blob_checked(digest, size, false)
    }

    /// [`Stage::blob`] of a document (at most [`MAX_JSON`] bytes), copied
    /// out and hashed: its digest checked.
    ///
    /// # Errors
    /// As [`Stage::blob`].
    pub fn blob_settled(&self, digest: &Digest, size: Option<u64>) -> Result<Staged> {
        self.blob_checked(digest, size, true)
    }

    fn blob_checked(&self, digest: &Digest, size: Option<u64>, settle: bool) -> Result<Staged> {
        let path = format!("blobs/sha256/{}", digest.hex());
        let missing = || EngineError::archive(format!("blob {digest} is missing"));
        let s = self.get(&path).ok_or_else(missing)?;
        if settle && s.size > MAX_JSON {
            // Only documents are copied out this way.
            return Err(EngineError::TooLarge {
                what: path,
                limit: MAX_JSON,
            });
        }
        let s = if settle {
            self.settled(&path)?.ok_or_else(missing)?
        } else {
            s
        };
        if let Some(want) = size {
            if want != s.size {
                return Err(EngineError::archive(format!(
                    "blob {digest} is {} bytes, its descriptor says {want}",
                    s.size
                )));
            }
        }
        match &s.digest {
            Some(d) if d != digest => Err(EngineError::DigestMismatch {
                what: path,
                expected: digest.clone(),
                actual: d.clone(),
            }),
            _ => Ok(s),
        }
    }
}

/// A file's bytes inside the archive, read by position (so that any
/// number of readers can share the archive's descriptor).
struct Region {
    archive: Arc<File>,
    at: u64,
    left: u64,
}

impl Read for Region {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.archive.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive file shrank while it was read",
            ));
        }
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
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
