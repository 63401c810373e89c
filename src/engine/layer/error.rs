//! Why a layer could not be applied or written. Variants carry the entry
//! path and the reason so callers (and tests) can match on them.

use std::fmt;
use std::io;

/// What about an entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The name starts with `/`.
    AbsolutePath,
    /// A `..` component would climb above the root.
    EscapesRoot,
    /// The name (or link target) contains a NUL byte.
    NulByte,
    /// The name is empty, or names the root for something that is not a
    /// directory.
    EmptyName,
    /// The name is longer than the kernel can resolve (`PATH_MAX`).
    NameTooLong,
    /// A whiteout that names nothing, `.` or `..`.
    BadWhiteout,
    /// A hardlink whose target does not exist in the root.
    HardlinkTargetMissing,
    /// A hardlink to a directory, a socket or the root.
    HardlinkTargetKind,
    /// A parent component exists but is not a directory.
    ParentNotDirectory,
    /// A parent component is a symlink whose in-root target does not exist.
    DanglingParent,
    /// Resolving the parent met a symlink loop (or too many symlinks).
    SymlinkLoop,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::AbsolutePath => "absolute path",
            Refusal::EscapesRoot => "path climbs above the root",
            Refusal::NulByte => "NUL byte in name",
            Refusal::EmptyName => "empty name",
            Refusal::NameTooLong => "name too long",
            Refusal::BadWhiteout => "malformed whiteout",
            Refusal::HardlinkTargetMissing => "hardlink target does not exist in the root",
            Refusal::HardlinkTargetKind => "hardlink target is a directory or socket",
            Refusal::ParentNotDirectory => "a parent is not a directory",
            Refusal::DanglingParent => "a parent is a dangling symlink",
            Refusal::SymlinkLoop => "symlink loop in the parent path",
        })
    }
}

/// Which cap of [`crate::engine::layer::ApplyOptions`] was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Total uncompressed bytes.
    Uncompressed,
    /// Number of tar entries.
    Entries,
    /// Size of one PAX or GNU long-name header.
    PaxHeader,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Uncompressed => "uncompressed size",
            Limit::Entries => "entry count",
            Limit::PaxHeader => "PAX header size",
        })
    }
}

/// An error applying or writing a layer tar.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry was refused as unsafe or meaningless.
    #[error("refused layer entry {path:?}{}: {why}", target.as_ref().map(|t| format!(" (link to {t:?})")).unwrap_or_default())]
    Refused {
        /// The entry name as found in the archive.
        path: String,
        /// The link target, for links.
        target: Option<String>,
        /// Why.
        why: Refusal,
    },
    /// A configured cap was exceeded.
    #[error("layer exceeds the {what} limit of {limit}")]
    LimitExceeded {
        /// Which cap.
        what: Limit,
        /// Its value.
        limit: u64,
    },
    /// The stream is not a well-formed tar.
    #[error("malformed tar stream at byte {offset}: {reason}")]
    Malformed {
        /// Offset of the header in the uncompressed stream.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A well-formed entry or stream this engine does not handle.
    #[error("unsupported {what} in layer entry {path:?}")]
    Unsupported {
        /// The entry name (empty for the stream itself).
        path: String,
        /// What is unsupported.
        what: String,
    },
    /// Reading or decompressing the layer stream failed.
    #[error("failed to read the layer stream")]
    Read(#[source] io::Error),
    /// A filesystem operation failed.
    #[error("failed to {op} {path:?}")]
    Fs {
        /// The operation.
        op: &'static str,
        /// The path (entry name, or tree path when writing).
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing the output tar failed.
    #[error("failed to write the layer tar")]
    Write(#[source] io::Error),
}

impl LayerError {
    pub(crate) fn refused(path: &[u8], why: Refusal) -> LayerError {
        LayerError::Refused {
            path: lossy(path),
            target: None,
            why,
        }
    }

    pub(crate) fn refused_link(path: &[u8], target: &[u8], why: Refusal) -> LayerError {
        LayerError::Refused {
            path: lossy(path),
            target: Some(lossy(target)),
            why,
        }
    }

    pub(crate) fn fs(op: &'static str, path: &[u8], source: impl Into<io::Error>) -> LayerError {
        LayerError::Fs {
            op,
            path: lossy(path),
            source: source.into(),
        }
    }
}

/// A printable form of a raw name, cut to 300 characters so a hostile
/// 1 MiB name does not flood logs.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(300).collect()
}
