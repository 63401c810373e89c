//! A tar reader with caps. The `tar` crate reads PAX and GNU long-name
//! headers into memory without a bound, so this reader walks the 512-byte
//! blocks itself and refuses an extension header larger than `max_pax` before reading it.
//! Header-only entry types carry no data whatever their size field says,
//! as Go's `archive/tar` reads them, so both parse an archive alike.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::compress::{read_error, read_full};
use super::error::{LayerError, Limit};
use super::meta::{Kind, Mtime};

const BLOCK: usize = 512;

/// One tar member, with PAX and GNU extensions folded in.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: Mtime,
    pub dev: (u32, u32),
    /// `SCHILY.xattr.*` records, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Mtime>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    sparse: bool,
}

#[derive(Default)]
struct Ext {
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Ext {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
}

/// Reads entries; between calls to [`TarReader::next_entry`] the reader
/// itself yields the current entry's data.
pub(crate) struct TarReader<R> {
    inner: R,
    offset: u64,
    data_left: u64,
    pad_left: u64,
    max_pax: u64,
}

fn malformed(offset: u64, reason: impl Into<String>) -> LayerError {
    LayerError::Malformed {
        offset,
        reason: reason.into(),
    }
}

/// A NUL-terminated header field.
fn cstr(field: &[u8]) -> &[u8] {
    field.split(|b| *b == 0).next().unwrap_or(field)
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R, max_pax: u64) -> Self {
        TarReader {
            inner,
            offset: 0,
            data_left: 0,
            pad_left: 0,
            max_pax,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` at the end-of-archive marker (or at a
    /// clean end of stream).
    ///
    /// # Errors
    /// [`LayerError::Malformed`] for bad headers, [`LayerError::LimitExceeded`]
    /// for oversized extension headers, [`LayerError::Unsupported`] for
    /// sparse files and unknown entry types, read errors.
    pub(crate) fn next_entry(&mut self) -> Result<Option<TarEntry>, LayerError> {
        self.skip_rest()?;
        let mut ext = Ext::default();
        loop {
            let at = self.offset;
            let Some(block) = self.read_block()? else {
                return match ext.is_empty() {
                    true => Ok(None),
                    false => Err(malformed(at, "extension header without an entry")),
                };
            };
            if block.iter().all(|b| *b == 0) {
                self.end_marker(at)?;
                return match ext.is_empty() {
                    true => Ok(None),
                    false => Err(malformed(at, "extension header without an entry")),
                };
            }
            check_sum(&block, at)?;
            let flag = block[156];
            if matches!(flag, b'x' | b'g' | b'L' | b'K') {
                let body = self.read_ext(&block, at)?;
                store_ext(&mut ext, flag, body, at)?;
                continue;
            }
            return self.entry(&block, ext, at).map(Some);
        }
    }

    /// After one zero block, a second one (or the end of the stream)
    /// must follow.
    fn end_marker(&mut self, at: u64) -> Result<(), LayerError> {
        match self.read_block()? {
            Some(b) if b.iter().any(|x| *x != 0) => {
                Err(malformed(at, "a single zero block inside the archive"))
            }
            _ => Ok(()),
        }
    }

    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, LayerError> {
        let mut block = [0u8; BLOCK];
        match read_full(&mut self.inner, &mut block).map_err(read_error)? {
            0 => return Ok(None),
            BLOCK => {}
            _ => return Err(malformed(self.offset, "truncated header")),
        }
        self.offset += BLOCK as u64;
        Ok(Some(block))
    }

    fn read_ext(&mut self, block: &[u8; BLOCK], at: u64) -> Result<Vec<u8>, LayerError> {
        let size =
            numeric(&block[124..136]).ok_or_else(|| malformed(at, "extension header size"))?;
        if size > self.max_pax {
            return Err(LayerError::LimitExceeded {
                what: Limit::PaxHeader,
                limit: self.max_pax,
            });
        }
        self.data_left = size;
        self.pad_left = padding(size);
        let mut body = Vec::with_capacity(size as usize);
        self.read_to_end(&mut body).map_err(read_error)?;
        self.skip_rest()?;
        Ok(body)
    }

    /// Skips what is left of the current entry's data and padding.
    fn skip_rest(&mut self) -> Result<(), LayerError> {
        io::copy(self, &mut io::sink()).map_err(read_error)?;
        let mut pad = [0u8; BLOCK];
        let n = self.pad_left as usize;
        self.inner.read_exact(&mut pad[..n]).map_err(read_error)?;
        self.offset += n as u64;
        self.pad_left = 0;
        Ok(())
    }

    fn entry(&mut self, block: &[u8; BLOCK], ext: Ext, at: u64) -> Result<TarEntry, LayerError> {
        let field = |what: &str, range: std::ops::Range<usize>| {
            numeric(&block[range]).ok_or_else(|| malformed(at, format!("unreadable {what} field")))
        };
        let pax = ext.pax.unwrap_or_default();
        let path = pax
            .path
            .or(ext.long_name)
            .unwrap_or_else(|| header_name(block));
        let kind = kind_of(block[156], &path, at)?;
        if pax.sparse {
            return Err(unsupported(&path, "PAX sparse file"));
        }
        let size = match (kind, pax.size) {
            (Kind::File, Some(s)) => s,
            (Kind::File, None) => field("size", 124..136)?,
            _ => 0,
        };
        let dev = match kind {
            Kind::Char | Kind::Block => (
                u32::try_from(field("devmajor", 329..337)?)
                    .map_err(|_| malformed(at, "devmajor"))?,
                u32::try_from(field("devminor", 337..345)?)
                    .map_err(|_| malformed(at, "devminor"))?,
            ),
            _ => (0, 0),
        };
        let mtime = match pax.mtime {
            Some(t) => t,
            None => Mtime {
                secs: i64::try_from(field("mtime", 136..148)?).unwrap_or(i64::MAX),
                nanos: 0,
            },
        };
        let entry = TarEntry {
            link: pax
                .linkpath
                .or(ext.long_link)
                .unwrap_or_else(|| cstr(&block[157..257]).to_vec()),
            kind,
            mode: (field("mode", 100..108)? & 0o7777) as u32,
            uid: pax.uid.map_or_else(|| field("uid", 108..116), Ok)?,
            gid: pax.gid.map_or_else(|| field("gid", 116..124), Ok)?,
            size,
            mtime,
            dev,
            xattrs: pax.xattrs.into_iter().collect(),
            path,
        };
        self.data_left = size;
        self.pad_left = padding(size);
        Ok(entry)
    }
}

/// A numeric header field: octal text (NUL/space padded, empty is 0, as
/// Go reads it) or GNU base-256 (high bit set; negative refused).
fn numeric(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data_left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside an entry",
            ));
        }
        self.data_left -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn unsupported(path: &[u8], what: &str) -> LayerError {
    LayerError::Unsupported {
        path: super::error::lossy(path),
        what: what.to_string(),
    }
}

fn kind_of(flag: u8, path: &[u8], at: u64) -> Result<Kind, LayerError> {
    Ok(match flag {
        // Old tars mark directories only with a trailing slash.
        0 if path.ends_with(b"/") => Kind::Dir,
        0 | b'0' | b'7' => Kind::File,
        b'1' => Kind::Hardlink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        b'S' => return Err(unsupported(path, "GNU sparse file")),
        other if other.is_ascii_graphic() => {
            return Err(unsupported(
                path,
                &format!("entry type {:?}", other as char),
            ))
        }
        other => return Err(malformed(at, format!("entry type byte {other}"))),
    })
}

/// The ustar name, joined to its prefix field when the header is ustar
/// (GNU headers use that space for other fields).
fn header_name(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = cstr(&block[..100]);
    let prefix = cstr(&block[345..500]);
    if &block[257..263] != b"ustar\0" || prefix.is_empty() {
        return name.to_vec();
    }
    let mut out = prefix.to_vec();
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

/// Accepts the unsigned sum (POSIX) or the signed one (some old tars).
fn check_sum(block: &[u8; BLOCK], at: u64) -> Result<(), LayerError> {
    let field = numeric(&block[148..156])
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| malformed(at, "unreadable header checksum"))?;
    let (mut unsigned, mut signed) = (0u32, 0i32);
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    if field == unsigned || i64::from(field) == i64::from(signed) {
        Ok(())
    } else {
        Err(malformed(at, "header checksum mismatch"))
    }
}

fn store_ext(ext: &mut Ext, flag: u8, body: Vec<u8>, at: u64) -> Result<(), LayerError> {
    let strip = |mut b: Vec<u8>| {
        // GNU terminates long names with NUL; interior NULs stay and are
        // refused later, rather than silently cutting the name.
        while b.last() == Some(&0) {
            b.pop();
        }
        b
    };
    let twice = || malformed(at, "two extension headers of one kind for one entry");
    match flag {
        b'x' if ext.pax.is_some() => return Err(twice()),
        b'x' => ext.pax = Some(parse_pax(&body, at)?),
        b'L' if ext.long_name.is_some() => return Err(twice()),
        b'L' => ext.long_name = Some(strip(body)),
        b'K' if ext.long_link.is_some() => return Err(twice()),
        b'K' => ext.long_link = Some(strip(body)),
        // Global headers set defaults for the whole archive; Docker ignores them too.
        _ => {}
    }
    Ok(())
}

/// Parses `"<len> <key>=<value>\n"` records, honouring the length so
/// values may contain newlines (binary xattrs).
fn parse_pax(mut body: &[u8], at: u64) -> Result<Pax, LayerError> {
    let mut pax = Pax::default();
    while !body.is_empty() {
        let bad = || malformed(at, "malformed PAX record");
        let sp = body.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len_txt = &body[..sp];
        if len_txt.is_empty() || !len_txt.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let len: usize = std::str::from_utf8(len_txt)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len < sp + 3 || len > body.len() || body[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &body[sp + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        pax_record(&mut pax, &record[..eq], &record[eq + 1..], at)?;
        body = &body[len..];
    }
    Ok(pax)
}

fn pax_record(pax: &mut Pax, key: &[u8], value: &[u8], at: u64) -> Result<(), LayerError> {
    let num = || {
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| malformed(at, format!("PAX {} value", super::error::lossy(key))))
    };
    // An empty value unsets the record (POSIX pax "keyword=").
    let text = || (!value.is_empty()).then(|| value.to_vec());
    match key {
        b"path" => pax.path = text(),
        b"linkpath" => pax.linkpath = text(),
        b"size" => pax.size = Some(num()?),
        b"uid" => pax.uid = Some(num()?),
        b"gid" => pax.gid = Some(num()?),
        b"mtime" => {
            pax.mtime =
                Some(Mtime::from_pax(value).ok_or_else(|| malformed(at, "PAX mtime value"))?)
        }
        _ if key.starts_with(b"GNU.sparse.") => pax.sparse = true,
        _ => {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                if name.is_empty() || name.contains(&0) {
                    return Err(malformed(at, "PAX xattr name"));
                }
                pax.xattrs.insert(name.to_vec(), value.to_vec());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(tar: &[u8]) -> Result<Vec<(TarEntry, Vec<u8>)>, LayerError> {
        let mut r = TarReader::new(tar, 1 << 20);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = Vec::new();
            r.read_to_end(&mut data).unwrap();
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn reads_what_the_tar_crate_writes() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o4755);
        h.set_mtime(1234);
        h.set_entry_type(tar::EntryType::Regular);
        let long = format!("{}/file", "d".repeat(150));
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.a", &b"x\ny"[..]), ("mtime", b"5.25")])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "l", "target").unwrap();
        let tar = b.into_inner().unwrap();
        let got = read_all(&tar).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.path, long.as_bytes());
        assert_eq!(got[0].0.mode, 0o4755);
        assert_eq!(got[0].1, b"hello");
        assert_eq!(got[1].0.kind, Kind::Symlink);
        assert_eq!(got[1].0.link, b"target");
        assert_eq!(
            got[1].0.mtime,
            Mtime {
                secs: 5,
                nanos: 250_000_000
            }
        );
        assert_eq!(
            got[1].0.xattrs,
            vec![(b"user.a".to_vec(), b"x\ny".to_vec())]
        );
    }

    #[test]
    fn caps_extension_headers_before_reading_them() {
        let mut b = tar::Builder::new(Vec::new());
        let big = vec![b'a'; 4096];
        b.append_pax_extensions([("comment", &big[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        b.append_data(&mut h, "f", &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut r = TarReader::new(&tar[..], 1024);
        assert!(matches!(
            r.next_entry(),
            Err(LayerError::LimitExceeded {
                what: Limit::PaxHeader,
                ..
            })
        ));
    }

    #[test]
    fn refuses_bad_checksums_and_pax_records() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        b.append_data(&mut h, "f", &b""[..]).unwrap();
        let mut tar = b.into_inner().unwrap();
        tar[0] = b'g';
        assert!(matches!(read_all(&tar), Err(LayerError::Malformed { .. })));
        for rec in [&b"5 a=b\n"[..], b"x a=b\n", b"30 a=b\n", b"7 ab\n\n\n"] {
            assert!(parse_pax(rec, 0).is_err(), "{rec:?}");
        }
        assert!(parse_pax(b"6 a=b\n", 0).is_ok());
    }
}
