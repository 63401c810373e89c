//! Content digests (`sha256:<64 lowercase hex>`). A digest is parsed
//! strictly before it is ever used, so one taken from an archive or a
//! registry can safely name a file (`blobs/sha256/<hex>`).

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 content digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestError {
    /// The text given (cut to 100 characters).
    pub input: String,
    /// Why.
    pub reason: &'static str,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// From a finished hasher.
    pub fn from_hasher(h: Sha256) -> Digest {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as image ids are shown.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Parses a bare 64-character hex string (no `sha256:`).
    ///
    /// # Errors
    /// [`DigestError`] unless it is exactly 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        let bad = |reason| DigestError {
            input: hex.chars().take(100).collect(),
            reason,
        };
        if hex.len() != 64 {
            return Err(bad("a sha256 digest has 64 hex characters"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("only lowercase hex characters are allowed"));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex).map_err(|e| DigestError {
                input: s.chars().take(100).collect(),
                ..e
            }),
            Some((_, _)) => Err(DigestError {
                input: s.chars().take(100).collect(),
                reason: "only sha256 digests are supported",
            }),
            None => Err(DigestError {
                input: s.chars().take(100).collect(),
                reason: "expected sha256:<64 hex characters>",
            }),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Wraps a reader, hashing and counting what passes through.
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> DigestReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of everything read, and the byte count.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Wraps a writer, hashing and counting what passes through.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of everything written, and the writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.count, self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size of a [`HashPipe`] buffer: large, so that the channel and the
/// write calls cost little per byte.
pub const PIPE_BUFFER: usize = 1 << 20;

/// Buffers a [`HashPipe`] cycles through: one being filled, one being
/// hashed, the rest queued.
const PIPE_BUFFERS: usize = 4;

enum Job {
    /// A buffer and how many of its bytes to hash.
    Data(Vec<u8>, usize),
    /// The current file is complete.
    End,
}

/// Hashes a sequence of files on a second thread, so that hashing (slow
/// on CPUs without SHA instructions) overlaps the caller's reading and
/// writing instead of adding to it. The caller fills buffers taken from
/// [`HashPipe::buffer`], hands them over with [`HashPipe::hash`], marks
/// the end of each file with [`HashPipe::end_file`], and gets every
/// file's digest and size, in order, from [`HashPipe::finish`].
pub struct HashPipe {
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    worker: Option<JoinHandle<Vec<(Digest, u64)>>>,
}

fn pipe_broken() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

impl HashPipe {
    /// Starts the hashing thread.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn new() -> io::Result<HashPipe> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(PIPE_BUFFERS);
        let (give_back, free) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut out = Vec::new();
                let (mut h, mut n) = (Sha256::new(), 0u64);
                for job in rx {
                    match job {
                        Job::Data(buf, len) => {
                            h.update(&buf[..len]);
                            n += len as u64;
                            // The caller may have stopped taking buffers.
                            let _ = give_back.send(buf);
                        }
                        Job::End => {
                            out.push((Digest::from_hasher(std::mem::take(&mut h)), n));
                            n = 0;
                        }
                    }
                }
                out
            })?;
        Ok(HashPipe {
            jobs: Some(jobs),
            free,
            spare: (0..PIPE_BUFFERS).map(|_| vec![0; PIPE_BUFFER]).collect(),
            worker: Some(worker),
        })
    }

    /// A buffer of [`PIPE_BUFFER`] bytes to fill; waits for the hashing
    /// thread to hand one back when all are in use.
    ///
    /// # Errors
    /// When the hashing thread is gone.
    pub fn buffer(&mut self) -> io::Result<Vec<u8>> {
        match self.spare.pop() {
            Some(b) => Ok(b),
            None => self.free.recv().map_err(|_| pipe_broken()),
        }
    }

    /// Returns a buffer that holds nothing to hash.
    pub fn give_back(&mut self, buf: Vec<u8>) {
        self.spare.push(buf);
    }

    /// Queues the first `len` bytes of `buf` (taken from
    /// [`HashPipe::buffer`]) as the next bytes of the current file.
    ///
    /// # Errors
    /// When the hashing thread is gone.
    pub fn hash(&mut self, buf: Vec<u8>, len: usize) -> io::Result<()> {
        self.send(Job::Data(buf, len))
    }

    /// Ends the current file; the next bytes start another.
    ///
    /// # Errors
    /// When the hashing thread is gone.
    pub fn end_file(&mut self) -> io::Result<()> {
        self.send(Job::End)
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(pipe_broken)?;
        jobs.send(job).map_err(|_| pipe_broken())
    }

    /// Waits for the hashing to end; the digest and size of every file
    /// ended with [`HashPipe::end_file`], in order.
    ///
    /// # Errors
    /// When the hashing thread panicked.
    pub fn finish(mut self) -> io::Result<Vec<(Digest, u64)>> {
        self.jobs = None;
        let worker = self.worker.take().ok_or_else(pipe_broken)?;
        worker.join().map_err(|_| pipe_broken())
    }
}

impl Drop for HashPipe {
    /// Stops the thread (closing its queue) and waits for it, so that no
    /// thread outlives an unpack that failed half-way.
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

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_strictly() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        for bad in [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn serde_round_trip_is_checked() {
        let d = Digest::of(b"x");
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn reader_and_writer_hash_what_passes() {
        let mut r = DigestReader::new(&b"hello"[..]);
        let mut out = Vec::new();
        std::io::copy(&mut r, &mut out).unwrap();
        assert_eq!(r.finish(), (Digest::of(b"hello"), 5));
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        let (d, n, inner) = w.finish();
        assert_eq!((d, n, inner), (Digest::of(b"hello"), 5, b"hello".to_vec()));
    }

    #[test]
    fn pipe_hashes_files_in_order() {
        let files: [&[u8]; 3] = [b"hello", b"", b"world, twice: world"];
        let mut p = HashPipe::new().unwrap();
        for f in files {
            // Small pieces, so that buffers are reused across files.
            for piece in f.chunks(3) {
                let mut buf = p.buffer().unwrap();
                buf[..piece.len()].copy_from_slice(piece);
                p.hash(buf, piece.len()).unwrap();
            }
            p.end_file().unwrap();
        }
        let want: Vec<_> = files
            .iter()
            .map(|f| (Digest::of(f), f.len() as u64))
            .collect();
        assert_eq!(p.finish().unwrap(), want);
    }
}
