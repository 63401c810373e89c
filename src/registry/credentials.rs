//! The credentials file, in Docker's `config.json` shape
//! (`{"auths": {"host:port": {"auth": base64("user:password")}}}`), so
//! existing tooling can read it. It is written atomically and only ever
//! with mode 0600; other keys in the file are kept as they are.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{normalize_registry, RegistryError, Result};

/// A user name and password (or identity token). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", self.encoded())
    }

    fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password))
    }

    fn decode(auth: &str) -> Option<Credentials> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

#[derive(Default, Serialize, Deserialize)]
struct FileShape {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Default, Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// Where credentials live: `$THINSNAP_AUTH_FILE`, else
/// `$XDG_CONFIG_HOME/thinsnap/auth.json`, else `~/.config/thinsnap/auth.json`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("THINSNAP_AUTH_FILE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    base.join("thinsnap").join("auth.json")
}

/// The credentials file.
#[derive(Clone, Debug)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    /// The file at `path` (it need not exist).
    pub fn new(path: &Path) -> AuthFile {
        AuthFile {
            path: path.to_path_buf(),
        }
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
        move |source| RegistryError::Credentials {
            op,
            path: self.path.display().to_string(),
            source,
        }
    }

    fn read(&self) -> Result<FileShape> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                self.err("parse")(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileShape::default()),
            Err(e) => Err(self.err("read")(e)),
        }
    }

    fn write(&self, shape: &FileShape) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(self.err("create the directory of"))?;
        let bytes = serde_json::to_vec_pretty(shape)
            .map_err(|e| self.err("encode")(std::io::Error::other(e)))?;
        // tempfile creates files 0600; set it anyway, the umask may differ.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(self.err("write"))?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(self.err("write"))?;
        tmp.write_all(&bytes).map_err(self.err("write"))?;
        tmp.as_file().sync_all().map_err(self.err("write"))?;
        tmp.persist(&self.path)
            .map_err(|e| self.err("replace")(e.error))?;
        thinpool::store::atomic::sync_dir(dir)
            .map_err(|e| self.err("sync")(std::io::Error::other(e)))
    }

    /// The credentials stored for `registry`, if any.
    ///
    /// # Errors
    /// [`RegistryError::Credentials`] for an unreadable file.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let shape = self.read()?;
        Ok(shape
            .auths
            .iter()
            .find(|(k, _)| normalize_registry(k).is_ok_and(|n| n == registry))
            .and_then(|(_, e)| e.auth.as_deref())
            .and_then(Credentials::decode))
    }

    /// Stores credentials for `registry`, replacing older ones.
    ///
    /// # Errors
    /// [`RegistryError::Credentials`].
    pub fn store(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut shape = self.read()?;
        shape
            .auths
            .retain(|k, _| normalize_registry(k).map_or(true, |n| n != registry));
        shape.auths.insert(
            registry.to_string(),
            Entry {
                auth: Some(creds.encoded()),
                other: BTreeMap::new(),
            },
        );
        self.write(&shape)
    }

    /// Removes the credentials for `registry`; false when there were none.
    ///
    /// # Errors
    /// [`RegistryError::Credentials`].
    pub fn remove(&self, registry: &str) -> Result<bool> {
        let mut shape = self.read()?;
        let before = shape.auths.len();
        shape
            .auths
            .retain(|k, _| normalize_registry(k).map_or(true, |n| n != registry));
        if shape.auths.len() == before {
            return Ok(false);
        }
        self.write(&shape)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_reads_and_removes_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/auth.json");
        let f = AuthFile::new(&p);
        assert_eq!(f.get("r:5000").unwrap(), None);
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        f.store("r:5000", &c).unwrap();
        assert_eq!(f.get("r:5000").unwrap(), Some(c.clone()));
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("p:w"), "{text}");
        assert!(format!("{c:?}").contains("<hidden>"));
        assert!(f.remove("r:5000").unwrap());
        assert!(!f.remove("r:5000").unwrap());
        assert_eq!(f.get("r:5000").unwrap(), None);
    }

    #[test]
    fn keeps_other_keys_and_reads_docker_style_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}},"credsStore":"x"}"#,
        )
        .unwrap();
        let f = AuthFile::new(&p);
        assert_eq!(f.get("docker.io").unwrap().unwrap().username, "u");
        f.store(
            "other:1",
            &Credentials {
                username: "a".into(),
                password: "b".into(),
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("credsStore"));
        assert!(text.contains("index.docker.io"));
    }
}
