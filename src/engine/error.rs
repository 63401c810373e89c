//! The engine's error type: every variant names the image, blob, layer or
//! file it concerns, so messages say what to do and exit codes can follow
//! the kind.

use std::path::PathBuf;

use super::digest::{Digest, DigestError};
use crate::snapshot::SnapshotError;

/// Errors of the image engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file operation failed.
    #[error("failed to {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The thin pool failed.
    #[error(transparent)]
    Pool(Box<thinpool::Error>),
    /// The snapshotter failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A digest string was malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A reference was malformed.
    #[error("{0}")]
    Reference(String),
    /// A layer tar was refused or could not be applied or written.
    #[error("layer {layer}")]
    Layer {
        /// Which layer (digest or position).
        layer: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A blob the store needs is not there.
    #[error("blob {digest} is missing from the store")]
    BlobMissing {
        /// The blob.
        digest: Digest,
    },
    /// Content does not match the digest it was given.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// Digest it should have.
        expected: Digest,
        /// Digest it has.
        actual: Digest,
    },
    /// A layer's content does not match the config's diff id.
    #[error("layer {index} of image {image}: diff id mismatch: config says {expected}, content is {actual}")]
    DiffIdMismatch {
        /// Image id.
        image: Digest,
        /// Layer position (0 = base).
        index: usize,
        /// From the config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// Input past a size limit.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// A JSON document could not be parsed.
    #[error("invalid {what}")]
    Json {
        /// Which document.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An archive that is not a docker or OCI image archive, or is damaged.
    #[error("invalid archive: {reason}")]
    InvalidArchive {
        /// Why.
        reason: String,
    },
    /// No image matches.
    #[error("no such image: {name}")]
    ImageNotFound {
        /// What was asked for.
        name: String,
    },
    /// An id prefix that matches several images.
    #[error(
        "image id prefix {prefix} is ambiguous: it matches {count} images; give more characters"
    )]
    AmbiguousId {
        /// The prefix.
        prefix: String,
        /// Matches.
        count: usize,
    },
    /// A removal or change that conflicts with how the image is used.
    #[error("conflict: unable to {action} {image}: {reason}")]
    Conflict {
        /// What was attempted.
        action: &'static str,
        /// The image (short id or reference).
        image: String,
        /// Why, and what would force it.
        reason: String,
    },
    /// A `-c` instruction that cannot be applied.
    #[error("invalid change {instruction:?}: {reason}")]
    InvalidChange {
        /// The instruction.
        instruction: String,
        /// Why.
        reason: String,
    },
    /// The root holds another driver's data.
    #[error("{root} holds data of the {have} driver; it cannot be used with --driver {want} (use another --root)")]
    DriverMismatch {
        /// The root.
        root: PathBuf,
        /// Driver recorded.
        have: String,
        /// Driver asked for.
        want: String,
    },
    /// What this driver or this version cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A bad argument (a container name, a size).
    #[error("{0}")]
    InvalidArgument(String),
    /// No such container or snapshot.
    #[error("no such container: {name}")]
    ContainerNotFound {
        /// What was asked for.
        name: String,
    },
}

impl EngineError {
    /// Shorthand for [`EngineError::Io`].
    pub fn io(
        op: &'static str,
        path: impl AsRef<std::path::Path>,
    ) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.as_ref().display().to_string();
        move |source| EngineError::Io { op, path, source }
    }

    /// Shorthand for [`EngineError::Json`].
    pub fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> EngineError {
        let what = what.into();
        move |source| EngineError::Json { what, source }
    }

    /// Shorthand for [`EngineError::InvalidArchive`].
    pub fn archive(reason: impl Into<String>) -> EngineError {
        EngineError::InvalidArchive {
            reason: reason.into(),
        }
    }
}

impl From<thinpool::Error> for EngineError {
    fn from(e: thinpool::Error) -> Self {
        EngineError::Pool(Box::new(e))
    }
}
