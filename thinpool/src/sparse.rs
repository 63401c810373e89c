//! Sparse copying for raw volume import and export: chunks that are all
//! zero are skipped, so they take no pool space on import and become holes
//! on export.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::units::Bytes;

/// What a sparse copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CopyStats {
    /// Bytes read from the source.
    pub total: Bytes,
    /// Bytes written (non-zero chunks).
    pub written: Bytes,
}

/// Copies `src` into `dst` from offset 0 in `chunk`-byte pieces, writing
/// only the pieces that hold a non-zero byte. `dst` must already read as
/// zeros where nothing is written (a new thin device, a truncated file).
/// Whole chunks are written, so with a chunk equal to the pool's block
/// size no partly written block can expose stale data.
///
/// # Errors
/// [`Error::Io`] naming `src_name` or `dst_name`.
pub fn copy_sparse(
    src: &mut dyn Read,
    src_name: &Path,
    dst: &File,
    dst_name: &Path,
    chunk: usize,
) -> Result<CopyStats> {
    let mut buf = vec![0u8; chunk.max(512)];
    let mut stats = CopyStats::default();
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = src
                .read(&mut buf[filled..])
                .map_err(Error::io("read", src_name))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let piece = &buf[..filled];
        if piece.iter().any(|b| *b != 0) {
            dst.write_all_at(piece, stats.total.0)
                .map_err(Error::io("write", dst_name))?;
            stats.written.0 += filled as u64;
        }
        stats.total.0 += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    dst.sync_all().map_err(Error::io("fsync", dst_name))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_chunks_are_not_written() {
        let d = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 1 << 20];
        data[10] = 1;
        data[(1 << 20) - 1] = 2;
        let out_path = d.path().join("out");
        let out = File::create(&out_path).unwrap();
        out.set_len(1 << 20).unwrap();
        let stats = copy_sparse(
            &mut data.as_slice(),
            Path::new("in"),
            &out,
            &out_path,
            64 << 10,
        )
        .unwrap();
        assert_eq!(stats.total, Bytes(1 << 20));
        assert_eq!(stats.written, Bytes(128 << 10));
        assert_eq!(std::fs::read(&out_path).unwrap(), data);
        // Only the two written chunks take space on disk.
        let md = std::fs::metadata(&out_path).unwrap();
        assert!(
            md.blocks() * 512 <= 256 << 10,
            "file uses {} bytes",
            md.blocks() * 512
        );
    }
}
