//! The registry client's error type: every variant names the registry,
//! repository, URL or blob it concerns, and says what to do where there is
//! something to do.

use crate::engine::digest::Digest;
use crate::engine::EngineError;

/// Errors of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request could not be sent or its answer not read.
    #[error("{method} {url} failed")]
    Transport {
        /// HTTP method.
        method: String,
        /// The URL (no credentials are ever part of it).
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: the registry answered {status}{}", detail_suffix(.detail))]
    Status {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The registry's own error text, if it sent one.
        detail: String,
        /// Seconds the registry asked us to wait (429, 503).
        retry_after: Option<u64>,
    },
    /// A body that ended before its length (a dropped connection).
    #[error("{what}: the connection ended after {got} of {expected} bytes")]
    Truncated {
        /// What was being read.
        what: String,
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// A repository, tag, manifest or blob the registry does not have.
    #[error("{what} not found in {registry}{}", detail_suffix(.detail))]
    NotFound {
        /// What was asked for.
        what: String,
        /// The registry.
        registry: String,
        /// The registry's own error text.
        detail: String,
    },
    /// Credentials missing, wrong, or without the needed rights.
    #[error("{registry}: unauthorized{}; log in with `thinsnap login {registry}` (or check the account's rights)", detail_suffix(.detail))]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The registry's own error text.
        detail: String,
    },
    /// A schema 1 manifest: long deprecated, with unverifiable layers.
    #[error("{reference} is a Docker schema 1 manifest, which is not supported: push it again with a current client (schema 2 or OCI)")]
    Schema1 {
        /// What was pulled.
        reference: String,
    },
    /// A manifest of a kind that is not a container image.
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    MediaType {
        /// What was pulled.
        reference: String,
        /// The media type found.
        media_type: String,
    },
    /// An index without the wanted platform.
    #[error("{reference}: no image for platform {want} (the index has {have}); choose one with --platform")]
    NoPlatform {
        /// What was pulled.
        reference: String,
        /// The platform wanted.
        want: String,
        /// Platforms present.
        have: String,
    },
    /// Content that does not match its digest.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// Digest it should have.
        expected: Digest,
        /// Digest it has.
        actual: Digest,
    },
    /// Content of the wrong size.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// Size from the descriptor.
        expected: u64,
        /// Size received.
        actual: u64,
    },
    /// A document past its size limit.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// An answer that breaks the distribution protocol.
    #[error("{registry}: protocol error: {reason}")]
    Protocol {
        /// The registry.
        registry: String,
        /// What was wrong.
        reason: String,
    },
    /// A bad argument: platform, registry name, reference.
    #[error("{0}")]
    InvalidArgument(String),
    /// The credentials file could not be read or written.
    #[error("failed to {op} credentials file {path}")]
    Credentials {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A CA certificate file that cannot be used.
    #[error("bad CA certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    /// Whether trying again may succeed: network trouble, 5xx, 429, 408.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { source, .. } => matches!(
                **source,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::BodyStalled
                    | ureq::Error::Protocol(_)
            ),
            RegistryError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            RegistryError::Truncated { .. } => true,
            _ => false,
        }
    }
}

/// Results of the registry client.
pub type Result<T> = std::result::Result<T, RegistryError>;
