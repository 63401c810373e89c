//! Which certificate authorities a registry connection trusts: the
//! system's bundle plus, like Docker's `certs.d`, any `*.crt` in the
//! registry's own directory under `certs_dir`.

use std::path::{Path, PathBuf};

use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts, TlsConfig};

use super::{RegistryError, Result};

/// System CA bundles, Debian's first, then RHEL's.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn certs_in(path: &Path, out: &mut Vec<Certificate<'static>>) -> Result<()> {
    let bad = |reason: String| RegistryError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let before = out.len();
    for item in parse_pem(&bytes) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            out.push(c);
        }
    }
    if out.len() == before {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(())
}

/// The extra CA files for `registry` (sorted, so the order is stable).
fn registry_cas(certs_dir: &Path, registry: &str) -> Vec<PathBuf> {
    let dir = certs_dir.join(registry);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The TLS settings for talking to `registry`.
///
/// # Errors
/// [`RegistryError::Certificate`] for an unreadable or empty CA file of
/// the registry's own directory (a broken system bundle is skipped).
pub fn config(certs_dir: &Path, registry: &str) -> Result<TlsConfig> {
    let extra = registry_cas(certs_dir, registry);
    if extra.is_empty() {
        return Ok(system_config());
    }
    let mut certs = Vec::new();
    for f in &extra {
        certs_in(f, &mut certs)?;
    }
    for b in SYSTEM_BUNDLES {
        if certs_in(Path::new(b), &mut certs).is_ok() {
            break;
        }
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}

/// The system's roots, or Mozilla's built-in set when none is installed.
fn system_config() -> TlsConfig {
    let mut certs = Vec::new();
    for b in SYSTEM_BUNDLES {
        if certs_in(Path::new(b), &mut certs).is_ok() {
            return TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&certs))
                .build();
        }
    }
    TlsConfig::builder().root_certs(RootCerts::WebPki).build()
}
