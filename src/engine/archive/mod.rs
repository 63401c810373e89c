//! Image archives: `load` reads docker-archive (old and Docker 25+) and OCI
//! layout archives, gzip/zstd compressed or not; `save` writes one tar that
//! is both a docker-archive and an OCI layout, byte-for-byte reproducible.

pub mod load;
pub mod save;
mod stage;

/// What `load` made of one image in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// Image id.
    pub id: super::digest::Digest,
    /// Familiar references it was tagged with.
    pub refs: Vec<String>,
}
