//! The distribution client: pull and push over the OCI distribution API
//! (Docker Registry HTTP API v2), with anonymous, basic and bearer-token
//! auth, digest checks on everything received, retries with resume, and
//! parallel downloads. It owns no storage of its own: what it pulls goes
//! through the [`crate::engine::Engine`], in one store transaction, so a
//! failed pull leaves the store as it was. No CLI knowledge lives here.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod error;
pub mod fetch;
pub mod http;
pub mod progress;
pub mod pull;
pub mod push;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

pub use error::{RegistryError, Result};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Largest manifest or index accepted (containerd's and the spec's figure).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// How the client behaves; `[registry]` in the config file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Registries (`host` or `host:port`) that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Per-registry CA certificates: `<certs_dir>/<host[:port]>/*.crt`.
    pub certs_dir: PathBuf,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// Attempts after the first for transient failures.
    pub retries: u32,
    /// Backoff before the first retry; doubled each time.
    pub retry_base: Duration,
    /// Connect and per-read timeout.
    pub timeout: Duration,
    /// Upload blobs in chunks of this size (PATCH); `None` = one request.
    pub push_chunk_size: Option<u64>,
    /// The credentials file.
    pub auth_file: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            certs_dir: PathBuf::from("/etc/thinsnap/certs.d"),
            max_concurrent_downloads: 3,
            retries: 4,
            retry_base: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
            push_chunk_size: None,
            auth_file: credentials::default_path(),
        }
    }
}

impl Options {
    /// Whether `registry` may be spoken to over plain HTTP: loopback
    /// names always, others only when listed as insecure.
    pub fn plain_http(&self, registry: &str) -> bool {
        let host = host_of(registry);
        matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]")
            || self.insecure.iter().any(|i| i == registry || i == host)
    }

    /// The base URL of a registry's API.
    pub fn base_url(&self, registry: &str) -> String {
        let scheme = if self.plain_http(registry) {
            "http"
        } else {
            "https"
        };
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        format!("{scheme}://{host}")
    }
}

/// The host part of `host[:port]` (IPv6 literals keep their brackets).
pub fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |end| &registry[..=end]);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Normalises what a user typed as a registry (`https://host:5000/`,
/// `index.docker.io`) to the name references use.
///
/// # Errors
/// [`RegistryError::InvalidArgument`] for an empty name or one with a path.
pub fn normalize_registry(raw: &str) -> Result<String> {
    let s = raw
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let s = s.strip_suffix("/v1").or(s.strip_suffix("/v2")).unwrap_or(s);
    if s.is_empty() || s.contains('/') || s.contains(char::is_whitespace) {
        return Err(RegistryError::InvalidArgument(format!(
            "invalid registry {raw:?}: give a host name, optionally with a port (registry.example.com:5000)"
        )));
    }
    Ok(match s {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let mut o = Options::default();
        assert!(o.plain_http("localhost:5000"));
        assert!(o.plain_http("127.0.0.1:5000"));
        assert!(o.plain_http("[::1]:5000"));
        assert!(!o.plain_http("127.0.0.2:5000"));
        assert!(!o.plain_http("registry.example.com"));
        o.insecure.push("registry.example.com:5000".into());
        assert!(o.plain_http("registry.example.com:5000"));
        assert!(!o.plain_http("registry.example.com:6000"));
        assert_eq!(o.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(o.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
    }

    #[test]
    fn registry_names_are_normalised() {
        assert_eq!(
            normalize_registry("https://Reg.example.com:5000/").unwrap(),
            "reg.example.com:5000"
        );
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/").unwrap(),
            "docker.io"
        );
        assert!(normalize_registry("reg.example.com/foo").is_err());
        assert!(normalize_registry("").is_err());
    }
}
