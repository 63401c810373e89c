//! [`BlobTee`]: reads a blob once for three uses. The caller reads it (to
//! apply a layer) while a second thread hashes every byte and writes it to
//! the blob's file, so a layer loaded from an archive is applied, verified
//! and stored in one pass instead of being copied out first and read back.
//!
//! The file is written with `O_DIRECT` where the filesystem allows it: the
//! copy goes to the disk without passing through the page cache, which
//! saves a memory copy of every byte (the largest cost of storing a blob
//! on a slow CPU) and keeps the cache for the layer's own files. Nothing
//! reads the blob again soon; `save` and `push` read it from the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use rustix::fs::OFlags;
use sha2::{Digest as _, Sha256};

use crate::engine::digest::Digest;
use crate::engine::layer::read_full;

/// Bytes per chunk handed to the second thread.
const CHUNK: usize = 1 << 20;
/// Chunks in flight: one being read, the rest queued or being written.
const CHUNKS: usize = 4;
/// Alignment `O_DIRECT` asks of buffers, offsets and lengths (the largest
/// logical block size in use).
const ALIGN: usize = 4096;

/// A buffer of [`CHUNK`] bytes starting at an [`ALIGN`]ed address inside
/// a slightly larger allocation (no unsafe allocation needed).
struct Chunk {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Chunk {
    fn new() -> Chunk {
        let buf = vec![0u8; CHUNK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Chunk { buf, start, len: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

/// Where the second thread puts the bytes besides the hash.
struct Sink {
    file: File,
    /// Writes go around the page cache: padded to [`ALIGN`], the file is
    /// cut to its true length at the end.
    direct: bool,
}

impl Sink {
    fn write(&mut self, c: &mut Chunk) -> io::Result<()> {
        if !self.direct {
            return self.file.write_all(c.data());
        }
        let padded = c.len.div_ceil(ALIGN) * ALIGN;
        c.buf[c.start + c.len..c.start + padded].fill(0);
        match self.file.write_all(&c.buf[c.start..c.start + padded]) {
            // Not every filesystem takes direct writes of every shape:
            // fall back to the page cache for the rest of the file.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                let flags = rustix::fs::fcntl_getfl(&self.file)?;
                rustix::fs::fcntl_setfl(&self.file, flags - OFlags::DIRECT)?;
                self.direct = false;
                self.file.write_all(c.data())
            }
            r => r,
        }
    }
}

/// A reader over `inner` that hashes, and optionally stores, all it reads.
pub struct BlobTee {
    inner: Box<dyn Read + Send>,
    /// The chunk being read from, and how far.
    cur: Option<Chunk>,
    pos: usize,
    total: u64,
    done: bool,
    jobs: Option<SyncSender<Chunk>>,
    free: Receiver<Chunk>,
    spare: Vec<Chunk>,
    worker: Option<JoinHandle<io::Result<(Digest, u64)>>>,
}

fn stopped() -> io::Error {
    io::Error::other("the thread storing the blob stopped")
}

impl BlobTee {
    /// Reads `inner`, hashing it and, with `store`, writing it to that new
    /// file (created; it must not exist).
    ///
    /// # Errors
    /// When the file cannot be created or the thread cannot start.
    pub fn new(inner: Box<dyn Read + Send>, store: Option<&Path>) -> io::Result<BlobTee> {
        let sink = match store {
            Some(p) => Some(open_sink(p)?),
            None => None,
        };
        Self::with_sink(inner, sink)
    }

    fn with_sink(inner: Box<dyn Read + Send>, sink: Option<Sink>) -> io::Result<BlobTee> {
        let (jobs, rx) = mpsc::sync_channel::<Chunk>(CHUNKS);
        let (give_back, free) = mpsc::channel();
        let worker = std::thread::Builder::new().name("blob".into()).spawn(
            move || -> io::Result<(Digest, u64)> {
                let mut sink = sink;
                let (mut h, mut n) = (Sha256::new(), 0u64);
                for mut c in rx {
                    h.update(c.data());
                    n += c.len as u64;
                    if let Some(s) = &mut sink {
                        s.write(&mut c)?;
                    }
                    // The reader may be gone already.
                    let _ = give_back.send(c);
                }
                if let Some(s) = sink.filter(|s| s.direct) {
                    s.file.set_len(n)?;
                }
                Ok((Digest::from_hasher(h), n))
            },
        )?;
        Ok(BlobTee {
            inner,
            cur: None,
            pos: 0,
            total: 0,
            done: false,
            jobs: Some(jobs),
            free,
            spare: (0..CHUNKS).map(|_| Chunk::new()).collect(),
            worker: Some(worker),
        })
    }

    /// Hands the current chunk over and reads the next one.
    fn next_chunk(&mut self) -> io::Result<()> {
        if let Some(c) = self.cur.take() {
            self.send(c)?;
        }
        let mut c = match self.spare.pop() {
            Some(c) => c,
            None => self.free.recv().map_err(|_| self.failure())?,
        };
        let n = read_full(&mut self.inner, &mut c.buf[c.start..c.start + CHUNK])?;
        c.len = n;
        self.total += n as u64;
        self.pos = 0;
        self.done = n < CHUNK;
        self.cur = Some(c);
        Ok(())
    }

    fn send(&mut self, c: Chunk) -> io::Result<()> {
        if c.len == 0 {
            self.spare.push(c);
            return Ok(());
        }
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(c).map_err(|_| self.failure())
    }

    /// The second thread's error, once it has stopped.
    fn failure(&mut self) -> io::Error {
        self.jobs = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => stopped(),
        }
    }

    /// Reads what the caller left unread, and waits for the second thread:
    /// the digest and size of everything `inner` gave.
    ///
    /// # Errors
    /// A read error, or the second thread's write error.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        if let Some(c) = self.cur.take() {
            self.send(c)?;
        }
        self.jobs = None;
        let worker = self.worker.take().ok_or_else(stopped)?;
        worker.join().map_err(|_| stopped())?
    }
}

/// Creates the blob file, going around the page cache if the filesystem
/// allows (tmpfs does not).
fn open_sink(p: &Path) -> io::Result<Sink> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true).mode(0o644);
    match o.clone().custom_flags(OFlags::DIRECT.bits() as i32).open(p) {
        Ok(file) => Ok(Sink { file, direct: true }),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(Sink {
            file: o.open(p)?,
            direct: false,
        }),
        Err(e) => Err(e),
    }
}

impl Read for BlobTee {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let have = self.fill_buf()?;
        let n = have.len().min(out.len());
        out[..n].copy_from_slice(&have[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for BlobTee {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let exhausted = self.cur.as_ref().is_none_or(|c| self.pos == c.len);
        if exhausted && !(self.done && self.cur.is_some()) {
            self.next_chunk()?;
        }
        Ok(self.cur.as_ref().map_or(&[][..], |c| &c.data()[self.pos..]))
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

impl Drop for BlobTee {
    /// Stops the thread and waits for it, so that none outlives a failed
    /// load.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn reads_hashes_and_stores_every_byte() {
        let t = tempfile::tempdir().unwrap();
        for (i, n) in [
            0,
            1,
            4095,
            4096,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 17,
        ]
        .into_iter()
        .enumerate()
        {
            let data = pattern(n);
            let file = t.path().join(format!("b{i}"));
            let mut tee =
                BlobTee::new(Box::new(io::Cursor::new(data.clone())), Some(&file)).unwrap();
            // Read part of it in odd pieces; finish reads the rest.
            let mut got = vec![0u8; n / 2];
            let mut k = 0;
            while k < got.len() {
                let step = (got.len() - k).min(1000);
                k += tee.read(&mut got[k..k + step]).unwrap();
            }
            assert_eq!(got, data[..n / 2]);
            let (d, size) = tee.finish().unwrap();
            assert_eq!(size, n as u64);
            assert_eq!(d, Digest::of(&data), "size {n}");
            assert_eq!(std::fs::read(&file).unwrap(), data, "size {n}");
        }
    }

    #[test]
    fn without_a_file_it_only_hashes() {
        let data = pattern(2 * CHUNK + 5);
        let mut tee = BlobTee::new(Box::new(io::Cursor::new(data.clone())), None).unwrap();
        let mut all = Vec::new();
        tee.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert_eq!(
            tee.finish().unwrap(),
            (Digest::of(&data), data.len() as u64)
        );
    }

    #[test]
    fn a_write_error_is_reported() {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let sink = Sink {
            file: full,
            direct: false,
        };
        let data = pattern(3 * CHUNK);
        let tee = BlobTee::with_sink(Box::new(io::Cursor::new(data)), Some(sink)).unwrap();
        let e = tee.finish().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
    }

    #[test]
    fn an_existing_file_is_not_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b");
        std::fs::write(&p, b"keep").unwrap();
        assert!(BlobTee::new(Box::new(io::empty()), Some(&p)).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
    }
}
