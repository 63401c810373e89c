//! Layer streams: compression detected from the magic bytes and undone in
//! process (never by running a decompressor binary, CVE-2014-9357), a cap
//! on the uncompressed size so a bomb fails at the limit (CVE-2017-14992),
//! and the diffID (sha256 of the uncompressed stream).

use std::fmt;
use std::io::{self, Read};

use super::error::{LayerError, Limit};
use crate::engine::digest::{Digest, DigestReader};

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X'];
const BZIP2: &[u8] = b"BZh";

/// Wraps `r` in the decompressor its first bytes call for (gzip, zstd or
/// none).
///
/// # Errors
/// [`LayerError::Read`] if the first bytes cannot be read;
/// [`LayerError::Unsupported`] for xz and bzip2, which would need a
/// decompressor this crate does not link.
pub(crate) fn decompress<'a, R: Read + 'a>(r: R) -> Result<Box<dyn Read + 'a>, LayerError> {
    decompress_detect(r).map(|(stream, _)| stream)
}

/// [`decompress`], also saying whether a decompressor was put in between
/// (false: the stream yields exactly the bytes of `r`).
///
/// # Errors
/// As [`decompress`].
pub(crate) fn decompress_detect<'a, R: Read + 'a>(
    mut r: R,
) -> Result<(Box<dyn Read + 'a>, bool), LayerError> {
    let mut head = [0u8; 4];
    let n = read_full(&mut r, &mut head).map_err(LayerError::Read)?;
    let head = &head[..n];
    let stream = io::Cursor::new(head.to_vec()).chain(r);
    if head.starts_with(GZIP) {
        // Multi-member, as Go's gzip reader (and so every registry) reads.
        return Ok((Box::new(flate2::read::MultiGzDecoder::new(stream)), true));
    }
    if head.starts_with(ZSTD) {
        let d = zstd::stream::read::Decoder::new(stream).map_err(LayerError::Read)?;
        return Ok((Box::new(d), true));
    }
    for (magic, name) in [(XZ, "xz compression"), (BZIP2, "bzip2 compression")] {
        if head.starts_with(magic) {
            return Err(LayerError::Unsupported {
                path: String::new(),
                what: name.to_string(),
            });
        }
    }
    Ok((Box::new(stream), false))
}

/// The marker inside the `io::Error` a [`Limited`] reader returns, so the
/// error can be told apart from a genuine read failure.
#[derive(Debug)]
pub(crate) struct LimitHit {
    pub limit: u64,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} uncompressed bytes", self.limit)
    }
}

impl std::error::Error for LimitHit {}

/// Fails reads once more than `limit` bytes would have passed.
pub(crate) struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Limited<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Limited {
            inner,
            left: limit,
            limit,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed: getting it proves the stream
        // is over the limit, rather than silently truncating it.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::other(LimitHit { limit: self.limit }));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Maps a read error of the layer stream, recognising the size cap.
pub(crate) fn read_error(e: io::Error) -> LayerError {
    if let Some(hit) = e.get_ref().and_then(|i| i.downcast_ref::<LimitHit>()) {
        return LayerError::LimitExceeded {
            what: Limit::Uncompressed,
            limit: hit.limit,
        };
    }
    LayerError::Read(e)
}

/// The diffID and uncompressed size of a (possibly compressed) layer,
/// without applying it.
///
/// # Errors
/// [`LayerError::Read`] if reading or decompressing fails;
/// [`LayerError::Unsupported`] for xz or bzip2 streams.
pub fn diff_id_of(reader: impl Read) -> Result<(Digest, u64), LayerError> {
    let mut hashed = DigestReader::new(decompress(reader)?);
    io::copy(&mut hashed, &mut io::sink()).map_err(read_error)?;
    Ok(hashed.finish())
}

/// Reads until `buf` is full or the stream ends; the byte count (short
/// only at the end of the stream).
///
/// # Errors
/// The reader's, but for `Interrupted`, which is retried.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn detects_and_hashes_uncompressed_bytes() {
        let data = b"hello layer".repeat(1000);
        let want = (Digest::of(&data), data.len() as u64);
        assert_eq!(diff_id_of(&data[..]).unwrap(), want);
        assert_eq!(diff_id_of(&gzip(&data)[..]).unwrap(), want);
        let z = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert_eq!(diff_id_of(&z[..]).unwrap(), want);
        let mut two = gzip(&data[..5000]);
        two.extend(gzip(&data[5000..]));
        assert_eq!(diff_id_of(&two[..]).unwrap(), want);
        assert_eq!(diff_id_of(&b""[..]).unwrap(), (Digest::of(b""), 0));
        assert_eq!(diff_id_of(&b"a"[..]).unwrap(), (Digest::of(b"a"), 1));
    }

    #[test]
    fn refuses_external_compressions() {
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0];
        assert!(matches!(
            diff_id_of(&xz[..]),
            Err(LayerError::Unsupported { .. })
        ));
    }

    #[test]
    fn limit_fails_exactly_past_the_cap() {
        let data = vec![0u8; 1000];
        let mut ok = Limited::new(&data[..], 1000);
        assert_eq!(io::copy(&mut ok, &mut io::sink()).unwrap(), 1000);
        let mut over = Limited::new(&data[..], 999);
        let err = io::copy(&mut over, &mut io::sink()).unwrap_err();
        assert!(matches!(
            read_error(err),
            LayerError::LimitExceeded {
                what: Limit::Uncompressed,
                limit: 999
            }
        ));
    }
}
