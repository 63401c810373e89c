//! Content-addressed blobs under `<engine>/blobs/sha256/<hex>`. Every blob
//! is written to a temp file, hashed while written, verified against the
//! digest it must have, fsynced and renamed into place: a blob file's name
//! is always the digest of its content.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::{Digest, DigestWriter};
use super::EngineError;

/// Largest JSON document (index, manifest, config) read from anywhere:
/// containerd's limit, against memory exhaustion by hostile input.
pub const MAX_JSON: u64 = 20 << 20;

/// The blob directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (creating) the store under `dir`, removing temp files a crash left.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn open(dir: &Path) -> Result<BlobStore, EngineError> {
        for d in [dir.join("sha256"), dir.join("tmp")] {
            fs::create_dir_all(&d).map_err(EngineError::io("create", &d))?;
        }
        let tmp = dir.join("tmp");
        for e in fs::read_dir(&tmp)
            .map_err(EngineError::io("read", &tmp))?
            .flatten()
        {
            let _ = fs::remove_file(e.path());
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Where a blob lives (it may not exist).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join("sha256").join(d.hex())
    }

    /// Whether the blob is present.
    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Opens a blob.
    ///
    /// # Errors
    /// [`EngineError::BlobMissing`] when absent.
    pub fn open_blob(&self, d: &Digest) -> Result<File, EngineError> {
        File::open(self.path(d)).map_err(|_| EngineError::BlobMissing { digest: d.clone() })
    }

    /// Size of a blob.
    ///
    /// # Errors
    /// [`EngineError::BlobMissing`] when absent.
    pub fn size(&self, d: &Digest) -> Result<u64, EngineError> {
        fs::metadata(self.path(d))
            .map(|m| m.len())
            .map_err(|_| EngineError::BlobMissing { digest: d.clone() })
    }

    /// Reads a whole blob, refusing one over `limit` bytes.
    ///
    /// # Errors
    /// [`EngineError::BlobMissing`], [`EngineError::TooLarge`].
    pub fn read(&self, d: &Digest, limit: u64) -> Result<Vec<u8>, EngineError> {
        let f = self.open_blob(d)?;
        read_limited(f, limit, &d.to_string())
    }

    /// Writes `reader` as a blob. With `expected`, a mismatch deletes the
    /// temp file and fails; `limit` caps the size.
    ///
    /// # Errors
    /// [`EngineError::DigestMismatch`], [`EngineError::TooLarge`], [`EngineError::Io`].
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        limit: u64,
    ) -> Result<(Digest, u64), EngineError> {
        let tmp = tempfile::NamedTempFile::new_in(self.dir.join("tmp"))
            .map_err(EngineError::io("create temp file in", &self.dir))?;
        let mut w = DigestWriter::new(io::BufWriter::new(tmp.as_file()));
        let n = io::copy(&mut reader.take(limit.saturating_add(1)), &mut w)
            .map_err(EngineError::io("write blob", tmp.path()))?;
        if n > limit {
            return Err(EngineError::TooLarge {
                what: "blob".into(),
                limit,
            });
        }
        let (digest, size, mut inner) = w.finish();
        inner
            .flush()
            .map_err(EngineError::io("write blob", tmp.path()))?;
        drop(inner);
        if let Some(want) = expected {
            if *want != digest {
                return Err(EngineError::DigestMismatch {
                    what: "blob".into(),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        self.commit_temp(tmp, &digest)?;
        Ok((digest, size))
    }

    /// Stores bytes as a blob.
    ///
    /// # Errors
    /// As [`BlobStore::ingest`].
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, EngineError> {
        self.ingest(&mut &bytes[..], None, u64::MAX).map(|(d, _)| d)
    }

    /// A temp file in the store's directory, for writers that hash as they go.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn temp(&self) -> Result<tempfile::NamedTempFile, EngineError> {
        tempfile::NamedTempFile::new_in(self.dir.join("tmp"))
            .map_err(EngineError::io("create temp file in", &self.dir))
    }

    /// Moves a finished temp file into place as blob `digest`.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn commit_temp(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<(), EngineError> {
        tmp.as_file()
            .sync_all()
            .map_err(EngineError::io("fsync", tmp.path()))?;
        let dest = self.path(digest);
        tmp.persist(&dest)
            .map_err(|e| EngineError::io("store blob", &dest)(e.error))?;
        let dir = self.dir.join("sha256");
        thinpool::store::atomic::sync_dir(&dir).map_err(|e| EngineError::Pool(Box::new(e)))
    }

    /// Moves a file whose digest is known (hashed as it was written) into
    /// the store; a blob already present is kept and the file left alone.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn adopt(&self, file: &Path, digest: &Digest) -> Result<(), EngineError> {
        let dest = self.path(digest);
        if dest.exists() {
            return Ok(());
        }
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(EngineError::io("fsync", file))?;
        match fs::rename(file, &dest) {
            Ok(()) => {}
            // Already moved in by an earlier image of the same archive.
            Err(_) if dest.exists() => return Ok(()),
            Err(e) => return Err(EngineError::io("store blob", &dest)(e)),
        }
        thinpool::store::atomic::sync_dir(&self.dir.join("sha256"))
            .map_err(|e| EngineError::Pool(Box::new(e)))
    }

    /// Deletes a blob (absent is fine).
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn remove(&self, d: &Digest) -> Result<(), EngineError> {
        match fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(EngineError::io("remove blob", self.path(d))(e))
            }
            _ => Ok(()),
        }
    }

    /// Every blob present.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn list(&self) -> Result<Vec<Digest>, EngineError> {
        let dir = self.dir.join("sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir)
            .map_err(EngineError::io("read", &dir))?
            .flatten()
        {
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|h| Digest::from_hex(h).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// Reads at most `limit` bytes, failing if there are more.
///
/// # Errors
/// [`EngineError::TooLarge`], [`EngineError::Io`].
pub fn read_limited(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, EngineError> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(EngineError::io("read", what))?;
    if buf.len() as u64 > limit {
        return Err(EngineError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_names_by_digest() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path()).unwrap();
        let dg = s.put(b"hello").unwrap();
        assert_eq!(dg, Digest::of(b"hello"));
        assert_eq!(std::fs::read(s.path(&dg)).unwrap(), b"hello");
        let wrong = Digest::of(b"other");
        let e = s
            .ingest(&mut &b"hello!"[..], Some(&wrong), 100)
            .unwrap_err();
        assert!(matches!(e, EngineError::DigestMismatch { .. }), "{e}");
        assert!(
            !s.exists(&Digest::of(b"hello!")),
            "a mismatching blob is not kept"
        );
        assert_eq!(
            std::fs::read_dir(d.path().join("tmp")).unwrap().count(),
            0,
            "no temp left"
        );
        assert!(matches!(
            s.ingest(&mut &[0u8; 10][..], None, 9),
            Err(EngineError::TooLarge { .. })
        ));
        assert_eq!(s.list().unwrap(), vec![dg]);
    }
}
