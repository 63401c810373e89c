//! The vfs driver's `metadata.json`: every snapshot's record with its
//! life state, and the counter that numbers snapshot directories.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::io_err;
use crate::snapshot::{Kind, Result};

/// Version of `metadata.json`; bumped on any incompatible change.
pub const METADATA_VERSION: u32 = 1;

/// Where a snapshot's record is in its life. Every state but `Ready` is an
/// intent recorded before touching the filesystem; opening resolves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum State {
    /// Its directory is being made; removed if found at open.
    Preparing,
    /// Complete.
    Ready,
    /// Its directory is being removed; finished if found at open.
    Removing,
}

/// One snapshot, by key or name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    /// Directory number under `snapshots/`.
    pub(super) id: u64,
    /// Position in creation order (a commit takes a new one), for `walk`.
    pub(super) seq: u64,
    /// Active, view or committed.
    pub(super) kind: Kind,
    /// The committed parent, by name.
    pub(super) parent: Option<String>,
    /// RFC 3339.
    pub(super) created: String,
    /// Ready, or the intent an interrupted operation left.
    pub(super) state: State,
}

/// The whole of `metadata.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Metadata {
    /// [`METADATA_VERSION`] of the writer.
    pub(super) version: u32,
    /// Next directory id and sequence number; never reused.
    pub(super) next: u64,
    /// Every snapshot, by key or name.
    pub(super) snapshots: BTreeMap<String, Record>,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            version: METADATA_VERSION,
            next: 1,
            snapshots: BTreeMap::new(),
        }
    }
}

/// Reads `metadata.json`; none yet is an empty store.
///
/// # Errors
/// [`crate::snapshot::SnapshotError::Io`]: unreadable, not JSON, or
/// another format version ([`io::ErrorKind::InvalidData`]).
pub(super) fn load(path: &Path) -> Result<Metadata> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Metadata::default()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let meta: Metadata =
        serde_json::from_slice(&bytes).map_err(|e| io_err("parse", path)(io::Error::from(e)))?;
    if meta.version != METADATA_VERSION {
        return Err(io_err("read", path)(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "metadata version {}, this thinsnap reads {METADATA_VERSION}",
                meta.version
            ),
        )));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SnapshotError;

    #[test]
    fn a_missing_metadata_file_is_an_empty_store() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            load(&d.path().join("metadata.json")).unwrap(),
            Metadata::default()
        );
        std::fs::write(d.path().join("metadata.json"), b"{not json").unwrap();
        let err = load(&d.path().join("metadata.json")).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Io { op: "parse", .. }),
            "{err:?}"
        );
    }
}
