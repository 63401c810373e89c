//! A deterministic tar writer: ustar headers with fixed field choices
//! (numeric ids, empty user and group names, no atime/ctime) plus a PAX
//! header only when needed (long names, large numbers, sub-second or
//! negative mtimes, xattrs as sorted `SCHILY.xattr.*` records). The same
//! entries always produce the same bytes.

use std::io::{self, Read, Write};

use super::error::LayerError;
use super::meta::{Kind, Mtime};
use crate::engine::digest::{Digest, DigestWriter};

const BLOCK: usize = 512;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// One entry to write.
pub(crate) struct Spec<'a> {
    /// Relative path without a leading `/`; `""` is the root (`./`).
    pub name: &'a [u8],
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Data size (regular files only).
    pub size: u64,
    pub mtime: Mtime,
    pub rdev: (u32, u32),
    /// Symlink target or hardlink target path.
    pub link: &'a [u8],
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Writes tar entries, hashing the stream.
pub(crate) struct TarWriter<W: Write> {
    out: DigestWriter<W>,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter {
            out: DigestWriter::new(out),
        }
    }

    /// Writes one entry; `data` must hold at least `spec.size` bytes.
    ///
    /// # Errors
    /// [`LayerError::Write`] on output errors; [`LayerError::Fs`] if the
    /// data cannot be read or is shorter than `spec.size`.
    pub(crate) fn append(
        &mut self,
        spec: &Spec<'_>,
        data: Option<&mut dyn Read>,
    ) -> Result<(), LayerError> {
        let name = tar_name(spec);
        let pax = pax_records(spec, &name);
        if !pax.is_empty() {
            let mut h = base_header(b"././@PaxHeader", b'x');
            h.set_size(pax.len() as u64);
            h.set_mode(0o644);
            self.block(h)?;
            self.data(&mut &pax[..], pax.len() as u64, b"PAX header")?;
        }
        let mut h = base_header(&name, type_flag(spec.kind));
        fill_header(&mut h, spec);
        self.block(h)?;
        if spec.kind == Kind::File && spec.size > 0 {
            let mut empty = io::empty();
            self.data(data.unwrap_or(&mut empty), spec.size, spec.name)?;
        }
        Ok(())
    }

    fn block(&mut self, mut h: tar::Header) -> Result<(), LayerError> {
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(LayerError::Write)
    }

    fn data(&mut self, src: &mut dyn Read, size: u64, name: &[u8]) -> Result<(), LayerError> {
        let mut buf = vec![0u8; 1 << 16];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match src.read(&mut buf[..want]) {
                Ok(0) => {
                    let e = io::Error::other("the file shrank while it was archived");
                    return Err(LayerError::fs("read", name, e));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::fs("read", name, e)),
            };
            self.out.write_all(&buf[..n]).map_err(LayerError::Write)?;
            left -= n as u64;
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.out
            .write_all(&[0u8; BLOCK][..pad])
            .map_err(LayerError::Write)
    }

    /// Writes the end-of-archive marker (two zero blocks, as Go writes).
    ///
    /// # Errors
    /// [`LayerError::Write`].
    pub(crate) fn finish(mut self) -> Result<(Digest, u64), LayerError> {
        self.out
            .write_all(&[0u8; 2 * BLOCK])
            .map_err(LayerError::Write)?;
        self.out.flush().map_err(LayerError::Write)?;
        let (digest, size, _) = self.out.finish();
        Ok((digest, size))
    }
}

/// The name in the tar: directories end in `/`, the root is `./`.
fn tar_name(spec: &Spec<'_>) -> Vec<u8> {
    if spec.name.is_empty() {
        return b"./".to_vec();
    }
    let mut name = spec.name.to_vec();
    if spec.kind == Kind::Dir {
        name.push(b'/');
    }
    name
}

fn type_flag(kind: Kind) -> u8 {
    match kind {
        Kind::File | Kind::Socket => b'0',
        Kind::Hardlink => b'1',
        Kind::Symlink => b'2',
        Kind::Char => b'3',
        Kind::Block => b'4',
        Kind::Dir => b'5',
        Kind::Fifo => b'6',
    }
}

fn base_header(name: &[u8], flag: u8) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_entry_type(tar::EntryType::new(flag));
    h.set_mode(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_mtime(0);
    // Always present in ustar headers, so set them for fixed bytes.
    let _ = h.set_device_major(0);
    let _ = h.set_device_minor(0);
    h
}

/// Numeric fields; a value too large for its field is 0 here and exact
/// in the PAX header.
fn fill_header(h: &mut tar::Header, spec: &Spec<'_>) {
    let fit = |v: u64, max: u64| if v > max { 0 } else { v };
    h.set_mode(spec.mode & 0o7777);
    h.set_uid(fit(spec.uid.into(), MAX_OCTAL_8));
    h.set_gid(fit(spec.gid.into(), MAX_OCTAL_8));
    if spec.kind == Kind::File {
        h.set_size(fit(spec.size, MAX_OCTAL_12));
    }
    h.set_mtime(u64::try_from(spec.mtime.secs).map_or(0, |s| fit(s, MAX_OCTAL_12)));
    let link = spec.link;
    let n = link.len().min(100);
    h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    if matches!(spec.kind, Kind::Char | Kind::Block) {
        let _ = h.set_device_major(spec.rdev.0.min(MAX_OCTAL_8 as u32));
        let _ = h.set_device_minor(spec.rdev.1.min(MAX_OCTAL_8 as u32));
    }
}

/// The PAX body for what the ustar header cannot hold, records sorted by
/// key; empty when none is needed.
fn pax_records(spec: &Spec<'_>, name: &[u8]) -> Vec<u8> {
    let mut recs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if name.len() > 100 {
        recs.push((b"path".to_vec(), name.to_vec()));
    }
    if spec.link.len() > 100 {
        recs.push((b"linkpath".to_vec(), spec.link.to_vec()));
    }
    if u64::from(spec.uid) > MAX_OCTAL_8 {
        recs.push((b"uid".to_vec(), spec.uid.to_string().into_bytes()));
    }
    if u64::from(spec.gid) > MAX_OCTAL_8 {
        recs.push((b"gid".to_vec(), spec.gid.to_string().into_bytes()));
    }
    if spec.kind == Kind::File && spec.size > MAX_OCTAL_12 {
        recs.push((b"size".to_vec(), spec.size.to_string().into_bytes()));
    }
    let t = spec.mtime;
    if t.nanos != 0 || t.secs < 0 || t.secs as u64 > MAX_OCTAL_12 {
        recs.push((b"mtime".to_vec(), t.to_pax().into_bytes()));
    }
    for (k, v) in spec.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        recs.push((key, v.clone()));
    }
    recs.sort();
    let mut out = Vec::new();
    for (k, v) in recs {
        record(&mut out, &k, &v);
    }
    out
}

/// `"<len> <key>=<value>\n"`, where `len` counts its own digits.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for vlen in [0, 1, 4, 5, 6, 90, 91, 92, 93, 994, 995, 996, 997] {
            let mut out = Vec::new();
            let v = vec![b'v'; vlen];
            record(&mut out, b"k", &v);
            let sp = out.iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {vlen}");
        }
    }

    #[test]
    fn same_entries_same_bytes() {
        let x = vec![(b"user.k".to_vec(), b"v".to_vec())];
        let write = || {
            let mut w = TarWriter::new(Vec::new());
            let spec = Spec {
                name: b"dir/file",
                kind: Kind::File,
                mode: 0o4755,
                uid: 3_000_000,
                gid: 1,
                size: 3,
                mtime: Mtime { secs: 10, nanos: 5 },
                rdev: (0, 0),
                link: b"",
                xattrs: &x,
            };
            w.append(&spec, Some(&mut &b"abc"[..])).unwrap();
            w.finish().unwrap()
        };
        assert_eq!(write(), write());
    }
}
