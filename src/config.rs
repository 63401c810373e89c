//! The TOML configuration file: defaults for every pool setting, so that
//! a host's choices live in one place instead of on every command line.
//!
//! Looked up as `--config PATH`, else `$THINSNAP_CONFIG`, else
//! `<root>/config.toml` when it exists. Unknown keys are refused, so a
//! typo is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Storage driver: `devmapper` or `vfs`.
    pub driver: Option<String>,
    /// `[pool]` defaults for `pool create`.
    #[serde(default)]
    pub pool: PoolConfig,
    /// `[devmapper]` settings of the devmapper storage driver.
    #[serde(default)]
    pub devmapper: DevmapperConfig,
    /// `[registry]` settings of pull and push.
    #[serde(default)]
    pub registry: RegistryConfig,
}

/// `[registry]` section: how pull and push reach registries.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) allowed over plain HTTP.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Per-registry CA certificates: `<certs_dir>/<host:port>/*.crt`.
    pub certs_dir: Option<PathBuf>,
    /// Layers downloaded at once (default 3).
    pub max_concurrent_downloads: Option<usize>,
    /// Retries of a transient failure (default 4).
    pub retries: Option<u32>,
    /// First backoff in milliseconds, doubled each retry (default 200).
    pub retry_base_ms: Option<u64>,
    /// Connect and read timeout in seconds (default 30).
    pub timeout_secs: Option<u64>,
    /// Upload blobs in chunks of this size (`1MiB`); unset = one request.
    pub push_chunk_size: Option<String>,
}

/// `[devmapper]` section: the base device that every image's first layer
/// is a snapshot of. Read when the base is made; an existing base wins.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevmapperConfig {
    /// Base device size, the largest a container's filesystem starts (default 10G).
    pub base_size: Option<String>,
    /// `ext4` (default) or `xfs`.
    pub fs: Option<String>,
    /// Extra mkfs arguments.
    #[serde(default)]
    pub mkfs_options: Vec<String>,
    /// Extra mount options.
    #[serde(default)]
    pub mount_options: Vec<String>,
}

/// `[pool]` section. Sizes are human sizes (`100G`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Loop data file size.
    pub data_size: Option<String>,
    /// Loop metadata file size.
    pub metadata_size: Option<String>,
    /// Data block size.
    pub block_size: Option<String>,
    /// Low-water mark in data blocks.
    pub low_water_mark: Option<u64>,
    /// Zero new blocks before first use.
    pub zero_blocks: Option<bool>,
    /// Free-space guard, percent.
    pub min_free_space: Option<u8>,
    /// Direct mode data device.
    pub data_dev: Option<PathBuf>,
    /// Direct mode metadata device.
    pub metadata_dev: Option<PathBuf>,
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An unknown storage driver.
    #[error("unknown storage driver {driver:?}: use devmapper or vfs")]
    Driver {
        /// The name given.
        driver: String,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid config file {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
}

impl Config {
    /// Loads the configuration for `root`, explicit path first.
    ///
    /// # Errors
    /// [`ConfigError`] when a named or present file cannot be used.
    pub fn load(explicit: Option<&Path>, root: &Path) -> Result<Config, ConfigError> {
        let env = std::env::var_os("THINSNAP_CONFIG").map(PathBuf::from);
        let path = match explicit.map(Path::to_path_buf).or(env) {
            Some(p) => p,
            None => {
                let p = root.join("config.toml");
                if !p.exists() {
                    return Ok(Config::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pool_defaults_and_refuses_unknown_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(
            &p,
            "[pool]\ndata_size = \"20G\"\nzero_blocks = true\nmin_free_space = 5\n",
        )
        .unwrap();
        let c = Config::load(Some(&p), d.path()).unwrap();
        assert_eq!(c.pool.data_size.as_deref(), Some("20G"));
        assert_eq!(c.pool.zero_blocks, Some(true));
        assert_eq!(c.pool.min_free_space, Some(5));
        std::fs::write(&p, "[pool]\ndata_sise = \"20G\"\n").unwrap();
        assert!(matches!(
            Config::load(Some(&p), d.path()),
            Err(ConfigError::Parse { .. })
        ));
        assert!(Config::load(None, d.path())
            .unwrap()
            .pool
            .data_size
            .is_none());
    }
}
