//! Debian's docker-registry (distribution 2.8) as a test server:
//! [`DistRegistry`] on a free port with no auth, htpasswd (basic) auth or
//! token auth ([`Auth`]), plain HTTP or TLS; and [`have_registry`] and
//! [`have_skopeo`], which say when a test must be skipped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::http::http;
use super::tls::{make_ca, TestCa};
use super::token::TokenServer;

/// How a [`DistRegistry`] authenticates.
pub enum Auth<'a> {
    None,
    Basic { user: &'a str, pass: &'a str },
    Token(&'a TokenServer),
}

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Whether docker-registry is here; prints why not.
pub fn have_registry() -> bool {
    if Path::new(REGISTRY_BIN).is_file() {
        return true;
    }
    println!("skipped: {REGISTRY_BIN} is missing (apt-get install docker-registry)");
    false
}

pub fn have_skopeo() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("skopeo").is_file()));
    if !found {
        println!("skipped: `skopeo` is not in PATH (tools/setup installs it)");
    }
    found
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's docker-registry (distribution 2.8) on a free port.
pub struct DistRegistry {
    /// `ip:port`.
    pub host: String,
    pub dir: TempDir,
    /// With TLS: the CA to trust.
    pub ca: Option<TestCa>,
    child: Child,
}

impl DistRegistry {
    /// Plain HTTP on 127.0.0.1.
    pub fn start(auth: Auth) -> DistRegistry {
        DistRegistry::start_on("127.0.0.1", auth, false)
    }

    /// TLS on 127.0.0.2 with a fresh CA.
    pub fn start_tls(auth: Auth) -> DistRegistry {
        DistRegistry::start_on("127.0.0.2", auth, true)
    }

    pub fn start_on(ip: &str, auth: Auth, tls: bool) -> DistRegistry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port(ip);
        let host = format!("{ip}:{port}");
        let auth_yaml = auth_yaml(d, auth);
        let (tls_yaml, ca) = if tls {
            let (yaml, c) = tls_yaml(d, ip);
            (yaml, Some(c))
        } else {
            (String::new(), None)
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {host}\n  secret: thinsnap-test-secret\n{tls_yaml}\
             health:\n  storagedriver:\n    enabled: false\n{auth_yaml}",
            d.join("data").display()
        );
        std::fs::write(d.join("config.yml"), &config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_ready(&mut child, &host, tls, d, &config);
        DistRegistry {
            host,
            dir,
            ca,
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A certs_dir for clients: `<dir>/<host>/ca.crt`.
    pub fn certs_dir(&self, parent: &Path) -> PathBuf {
        let d = parent.join("certs.d");
        std::fs::create_dir_all(d.join(&self.host)).unwrap();
        std::fs::write(
            d.join(&self.host).join("ca.crt"),
            &self.ca.as_ref().unwrap().ca_pem,
        )
        .unwrap();
        d
    }
}

impl Drop for DistRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `auth:` section for `auth`, with its files written into `d`.
fn auth_yaml(d: &Path, auth: Auth) -> String {
    match auth {
        Auth::None => String::new(),
        Auth::Basic { user, pass } => {
            let line = format!("{user}:{}\n", bcrypt::hash(pass, 5).unwrap());
            std::fs::write(d.join("htpasswd"), line).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: thinsnap-test\n    path: {}\n",
                d.join("htpasswd").display()
            )
        }
        Auth::Token(ts) => {
            std::fs::write(d.join("token-root.crt"), &ts.cert_pem).unwrap();
            format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                ts.realm(),
                ts.service,
                ts.issuer,
                d.join("token-root.crt").display()
            )
        }
    }
}

/// The `http.tls` lines for a fresh CA's certificate for `ip`, with the
/// certificate and key written into `d`; and the CA.
fn tls_yaml(d: &Path, ip: &str) -> (String, TestCa) {
    let c = make_ca(ip);
    std::fs::write(d.join("server.crt"), &c.cert_pem).unwrap();
    std::fs::write(d.join("server.key"), &c.key_pem).unwrap();
    let yaml = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        d.join("server.crt").display(),
        d.join("server.key").display()
    );
    (yaml, c)
}

/// Waits until the registry in `child` answers on `host` (a TCP connect
/// for TLS, `GET /v2/` otherwise); panics with its log if it exits or does
/// not answer within 20 s.
fn wait_ready(child: &mut Child, host: &str, tls: bool, d: &Path, config: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "docker-registry exited ({st}):\n{}\nconfig:\n{config}",
                std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
            );
        }
        if TcpStream::connect(host).is_ok() {
            if tls {
                break;
            }
            let (st, _, _) = http(host, "GET", "/v2/", &[], b"");
            if st == 200 || st == 401 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}
