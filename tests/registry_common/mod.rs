//! Shared helpers for the registry tests (`registry_*.rs`):
//!
//! - [`DistRegistry`]: Debian's `docker-registry` (distribution 2.8) on a
//!   free port, with no auth, htpasswd (basic) auth or token auth, plain
//!   HTTP on 127.0.0.1 or TLS on 127.0.0.2 with a CA made by rcgen;
//! - [`Recorder`]: a logging pass-through proxy in front of it (requests,
//!   statuses; optional delay on blob GETs);
//! - [`TokenServer`] (tiny_http): the Docker token flow, JWTs signed with
//!   ES256 and an `x5c` header that distribution checks against its
//!   `rootcertbundle`;
//! - [`FaultServer`]: an in-memory registry with scripted faults (wrong
//!   digests, truncated/slow bodies, 5xx/429, redirects to a [`BlobHost`]
//!   on another address, schema 1, oversized manifests, Range on/off) and a
//!   request log;
//! - [`RegImage`]: images with real gzip layers, OCI or Docker schema 2;
//! - [`Client`]: one test's thinsnap root, with its own auth file and
//!   config file.
//!
//! The FaultServer and the Recorder run on [`MiniServer`], a small
//! HTTP/1.1 server on std sockets: tiny_http cannot cut a response short
//! and close the connection, which the truncation faults need.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::engine_common::*;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Deterministic incompressible bytes.
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in seed.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Percent-decodes a query value.
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

// ---------------------------------------------------------------- mini HTTP server

/// A request as the [`MiniServer`] read it (body decoded).
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        query_of(&self.target, key)
    }
}

/// A query parameter of `target`, decoded.
pub fn query_of(target: &str, key: &str) -> Option<String> {
    let q = target.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| pct_decode(v))
    })
}

pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How a reply's body is sent.
#[derive(Clone, Debug)]
pub enum Mode {
    Full,
    /// Content-Length of the whole body, only the first `n` bytes, then close.
    Truncate(usize),
    /// `chunk` bytes, then a pause, and so on.
    Slow {
        chunk: usize,
        pause: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub mode: Mode,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            mode: Mode::Full,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn body(mut self, b: &[u8]) -> Reply {
        self.body = b.to_vec();
        self
    }

    /// A registry error body.
    pub fn error(status: u16, code: &str) -> Reply {
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(
                json!({"errors": [{"code": code, "message": code.to_lowercase(), "detail": null}]})
                    .to_string()
                    .as_bytes(),
            )
    }
}

pub type Handler = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server, one thread per connection, keep-alive.
pub struct MiniServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl MiniServer {
    pub fn start(ip: &str, handler: Handler) -> MiniServer {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = s else { continue };
                let h = handler.clone();
                std::thread::spawn(move || serve_conn(s, h));
            }
        });
        MiniServer { addr, stop }
    }

    /// `ip:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

fn read_headers(r: &mut impl BufRead) -> Option<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Some(headers);
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Reads a body framed by `headers` (chunked or Content-Length); `to_eof`
/// reads to the end when neither is given.
fn read_body(r: &mut impl BufRead, headers: &[(String, String)], to_eof: bool) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    if header_in(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let line = read_line(r)?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, then an empty line.
                while !read_line(r)?.is_empty() {}
                return Some(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).ok()?;
            read_line(r)?;
        }
    } else if let Some(n) = header_in(headers, "content-length") {
        // A short body (the peer closed early) is returned as it is.
        let n: u64 = n.parse().ok()?;
        r.take(n).read_to_end(&mut body).ok()?;
    } else if to_eof {
        r.read_to_end(&mut body).ok()?;
    }
    Some(body)
}

fn serve_conn(s: TcpStream, h: Handler) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let Some(line) = read_line(&mut r) else {
            return;
        };
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let Some(headers) = read_headers(&mut r) else {
            return;
        };
        if header_in(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let Some(body) = read_body(&mut r, &headers, false) else {
            return;
        };
        let close =
            header_in(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let req = Req {
            method,
            target,
            headers,
            body,
        };
        let reply = h(&req);
        if !write_reply(&mut w, &req, reply) || close {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Writes `reply`; false when the connection must close.
fn write_reply(w: &mut TcpStream, req: &Req, reply: Reply) -> bool {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if header_in(&reply.headers, "content-length").is_none() {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    let truncate = matches!(reply.mode, Mode::Truncate(_));
    if truncate {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    if w.write_all(head.as_bytes()).is_err() {
        return false;
    }
    if req.method == "HEAD" {
        return w.flush().is_ok();
    }
    match reply.mode {
        Mode::Full => w.write_all(&reply.body).is_ok() && w.flush().is_ok(),
        Mode::Truncate(n) => {
            let _ = w.write_all(&reply.body[..n.min(reply.body.len())]);
            let _ = w.flush();
            std::thread::sleep(Duration::from_millis(20));
            false
        }
        Mode::Slow { chunk, pause } => {
            for c in reply.body.chunks(chunk.max(1)) {
                if w.write_all(c).is_err() || w.flush().is_err() {
                    return false;
                }
                std::thread::sleep(pause);
            }
            true
        }
    }
}

/// A plain HTTP/1.1 request on a fresh connection (`Connection: close`).
/// Returns status, headers and the body (de-chunked).
pub fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut r = BufReader::new(s);
    let status_line = read_line(&mut r).unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let hs = read_headers(&mut r).unwrap_or_default();
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(&mut r, &hs, true).unwrap_or_default()
    };
    (status, hs, body)
}

// ---------------------------------------------------------------- recording proxy

/// One request seen by a [`Recorder`] or a [`FaultServer`].
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
    pub body_len: usize,
    /// When the answer was ready.
    pub at: Instant,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self, key: &str) -> Option<String> {
        query_of(&self.target, key)
    }
}

/// A logging pass-through proxy in front of `upstream` (plain HTTP).
pub struct Recorder {
    pub server: MiniServer,
    pub log: Arc<Mutex<Vec<Logged>>>,
    /// Added before answering each blob GET.
    pub blob_delay: Arc<Mutex<Duration>>,
}

impl Recorder {
    pub fn start(upstream: &str) -> Recorder {
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let blob_delay: Arc<Mutex<Duration>> = Arc::default();
        let (log2, delay2, up) = (log.clone(), blob_delay.clone(), upstream.to_string());
        let handler: Handler = Arc::new(move |req: &Req| {
            let hs: Vec<(&str, &str)> = req
                .headers
                .iter()
                .filter(|(k, _)| {
                    ![
                        "connection",
                        "content-length",
                        "transfer-encoding",
                        "expect",
                    ]
                    .contains(&k.to_ascii_lowercase().as_str())
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let is_blob_get = req.method == "GET" && req.path().contains("/blobs/sha256:");
            if is_blob_get {
                std::thread::sleep(*delay2.lock().unwrap());
            }
            let (status, rhs, body) = http(&up, &req.method, &req.target, &hs, &req.body);
            log2.lock().unwrap().push(Logged {
                method: req.method.clone(),
                target: req.target.clone(),
                headers: req.headers.clone(),
                status,
                body_len: req.body.len(),
                at: Instant::now(),
            });
            let mut reply = Reply::new(status).body(&body);
            for (k, v) in rhs {
                let lk = k.to_ascii_lowercase();
                if lk == "transfer-encoding" || lk == "connection" {
                    continue;
                }
                if lk == "content-length" && req.method != "HEAD" {
                    continue;
                }
                reply.headers.push((k, v));
            }
            reply
        });
        Recorder {
            server: MiniServer::start("127.0.0.1", handler),
            log,
            blob_delay,
        }
    }

    pub fn host(&self) -> String {
        self.server.host()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

// ---------------------------------------------------------------- TLS material

/// A CA and a server certificate it signed for one IP address.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn make_ca(ip: &str) -> TestCa {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "thinsnap test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut lp = CertificateParams::new(vec![ip.to_string()]).unwrap();
    lp.distinguished_name.push(DnType::CommonName, ip);
    lp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    lp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = lp.signed_by(&key, &ca, &ca_key).unwrap();
    TestCa {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

// ---------------------------------------------------------------- token server

/// One token request.
#[derive(Clone, Debug)]
pub struct TokenReq {
    pub service: Option<String>,
    pub scopes: Vec<String>,
    /// The user of a valid basic auth header.
    pub user: Option<String>,
    pub had_authorization: bool,
    pub granted: bool,
}

/// The Docker token flow on tiny_http.
pub struct TokenServer {
    pub addr: String,
    pub service: String,
    pub issuer: String,
    /// The signing certificate (PEM), for `rootcertbundle`.
    pub cert_pem: String,
    pub log: Arc<Mutex<Vec<TokenReq>>>,
    pub expires_in: Arc<Mutex<u64>>,
    server: Arc<tiny_http::Server>,
}

impl TokenServer {
    /// A token server that requires `user`/`pass` (basic auth) for every token.
    pub fn start(user: &str, pass: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "thinsnap token signer");
        let cert = p.self_signed(&key).unwrap();
        let x5c = b64(cert.der());
        let enc = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap().to_string();
        let log: Arc<Mutex<Vec<TokenReq>>> = Arc::default();
        let expires_in = Arc::new(Mutex::new(300u64));
        let service = "thinsnap-test-registry".to_string();
        let issuer = "thinsnap-test-issuer".to_string();
        let (srv, log2, exp2) = (server.clone(), log.clone(), expires_in.clone());
        let (svc, iss) = (service.clone(), issuer.clone());
        let want_auth = format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()));
        let user = user.to_string();
        std::thread::spawn(move || {
            for rq in srv.incoming_requests() {
                let url = rq.url().to_string();
                let r = Req {
                    method: rq.method().to_string(),
                    target: url.clone(),
                    headers: rq
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body: Vec::new(),
                };
                let authz = r.header("authorization").map(str::to_string);
                let ok = authz.as_deref() == Some(want_auth.as_str());
                let scopes: Vec<String> = url
                    .split_once('?')
                    .map(|(_, q)| {
                        q.split('&')
                            .filter_map(|kv| kv.strip_prefix("scope="))
                            .flat_map(|v| {
                                pct_decode(v)
                                    .split(' ')
                                    .map(str::to_string)
                                    .collect::<Vec<_>>()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                log2.lock().unwrap().push(TokenReq {
                    service: r.query("service"),
                    scopes: scopes.clone(),
                    user: ok.then(|| user.clone()),
                    had_authorization: authz.is_some(),
                    granted: ok,
                });
                if !ok {
                    let resp = tiny_http::Response::from_string(
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                    )
                    .with_status_code(401)
                    .with_header(
                        tiny_http::Header::from_bytes("WWW-Authenticate", "Basic realm=\"token\"")
                            .unwrap(),
                    );
                    let _ = rq.respond(resp);
                    continue;
                }
                let access: Vec<Value> = scopes
                    .iter()
                    .filter_map(|s| {
                        let (ty, rest) = s.split_once(':')?;
                        let (name, actions) = rest.rsplit_once(':')?;
                        Some(json!({"type": ty, "name": name,
                            "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = now_secs();
                let exp = *exp2.lock().unwrap();
                let claims = json!({
                    "iss": iss, "sub": user, "aud": svc,
                    "exp": now + exp, "nbf": now.saturating_sub(1), "iat": now,
                    "jti": format!("jti-{now}-{}", log2.lock().unwrap().len()),
                    "access": access,
                });
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
                header.x5c = Some(vec![x5c.clone()]);
                let token = jsonwebtoken::encode(&header, &claims, &enc).unwrap();
                let issued = chrono::DateTime::from_timestamp(now as i64, 0)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let body = json!({"token": token, "access_token": token,
                    "expires_in": exp, "issued_at": issued});
                let resp = tiny_http::Response::from_string(body.to_string()).with_header(
                    tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
                );
                let _ = rq.respond(resp);
            }
        });
        TokenServer {
            addr,
            service,
            issuer,
            cert_pem: cert.pem(),
            log,
            expires_in,
            server,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn set_expires_in(&self, secs: u64) {
        *self.expires_in.lock().unwrap() = secs;
    }

    pub fn log(&self) -> Vec<TokenReq> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

// ---------------------------------------------------------------- docker-registry

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
        let mut auth_yaml = String::new();
        match auth {
            Auth::None => {}
            Auth::Basic { user, pass } => {
                let line = format!("{user}:{}\n", bcrypt::hash(pass, 5).unwrap());
                std::fs::write(d.join("htpasswd"), line).unwrap();
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: thinsnap-test\n    path: {}\n",
                    d.join("htpasswd").display()
                );
            }
            Auth::Token(ts) => {
                std::fs::write(d.join("token-root.crt"), &ts.cert_pem).unwrap();
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    ts.realm(),
                    ts.service,
                    ts.issuer,
                    d.join("token-root.crt").display()
                );
            }
        }
        let mut tls_yaml = String::new();
        let mut ca = None;
        if tls {
            let c = make_ca(ip);
            std::fs::write(d.join("server.crt"), &c.cert_pem).unwrap();
            std::fs::write(d.join("server.key"), &c.key_pem).unwrap();
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.crt").display(),
                d.join("server.key").display()
            );
            ca = Some(c);
        }
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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited ({st}):\n{}\nconfig:\n{config}",
                    std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
                );
            }
            if TcpStream::connect(&host).is_ok() {
                if tls {
                    break;
                }
                let (st, _, _) = http(&host, "GET", "/v2/", &[], b"");
                if st == 200 || st == 401 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
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

// ---------------------------------------------------------------- images for registries

/// An image as a registry holds it: gzip layers, config, manifest.
#[derive(Clone, Debug)]
pub struct RegImage {
    pub config: Vec<u8>,
    /// Uncompressed layer tars.
    pub tars: Vec<Vec<u8>>,
    /// The gzip blobs.
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// Every file of the rootfs.
    pub files: BTreeMap<String, Vec<u8>>,
    pub arch: String,
}

impl RegImage {
    /// An OCI image for `arch` with `sizes.len()` layers; layer `i` holds
    /// `seed/l<i>` with `sizes[i]` bytes of noise.
    pub fn oci(seed: &str, arch: &str, sizes: &[usize]) -> RegImage {
        RegImage::build(seed, arch, sizes, false)
    }

    /// The same as a Docker schema 2 image.
    pub fn docker(seed: &str, arch: &str, sizes: &[usize]) -> RegImage {
        RegImage::build(seed, arch, sizes, true)
    }

    fn build(seed: &str, arch: &str, sizes: &[usize], docker: bool) -> RegImage {
        let mut files = BTreeMap::new();
        let mut tars = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let data = noise(&format!("{seed}/{i}"), *n);
            files.insert(format!("{seed}/l{i}"), data.clone());
            tars.push(layer(seed, &format!("l{i}"), &data));
        }
        let layers: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
        let config = config(&tars, T0, json!({"architecture": arch, "os": "linux"}));
        let (mt, ct, lt) = if docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
        };
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": ct, "digest": digest(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": lt, "digest": digest(l), "size": l.len()
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        RegImage {
            config,
            tars,
            layers,
            manifest,
            media_type: mt.to_string(),
            files,
            arch: arch.to_string(),
        }
    }

    /// The manifest digest.
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }

    /// The image id (config digest).
    pub fn id(&self) -> String {
        digest(&self.config)
    }

    /// Config and layers.
    pub fn blobs(&self) -> Vec<Vec<u8>> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| digest(l)).collect()
    }
}

/// An index (OCI) or manifest list (Docker) of `imgs`, by their arch.
pub fn index_of(imgs: &[&RegImage], docker: bool) -> (String, Vec<u8>) {
    let mt = if docker { DOCKER_LIST } else { OCI_INDEX };
    let b = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": imgs.iter().map(|i| json!({
            "mediaType": i.media_type, "digest": i.digest(), "size": i.manifest.len(),
            "platform": {"architecture": i.arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    (mt.to_string(), b)
}

// ---------------------------------------------------------------- redirect target

/// (path, Authorization header if any) of each request a [`BlobHost`] saw.
pub type HostLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A blob server on another address (tiny_http), the target of redirects.
/// It records whether requests carried an Authorization header.
pub struct BlobHost {
    pub addr: String,
    pub blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub log: HostLog,
    server: Arc<tiny_http::Server>,
}

impl BlobHost {
    pub fn start(ip: &str) -> BlobHost {
        let server = Arc::new(tiny_http::Server::http(format!("{ip}:0")).unwrap());
        let addr = server.server_addr().to_ip().unwrap().to_string();
        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let log: HostLog = Arc::default();
        let (srv, blobs2, log2) = (server.clone(), blobs.clone(), log.clone());
        std::thread::spawn(move || {
            for rq in srv.incoming_requests() {
                let path = rq.url().split('?').next().unwrap_or("").to_string();
                let authz = rq
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.to_string());
                log2.lock().unwrap().push((path.clone(), authz));
                let d = path.rsplit('/').next().unwrap_or("").to_string();
                let body = blobs2.lock().unwrap().get(&d).cloned();
                let _ = match body {
                    Some(b) => rq.respond(tiny_http::Response::from_data(b)),
                    None => rq.respond(tiny_http::Response::empty(404)),
                };
            }
        });
        BlobHost {
            addr,
            blobs,
            log,
            server,
        }
    }

    pub fn put(&self, bytes: &[u8]) {
        self.blobs
            .lock()
            .unwrap()
            .insert(digest(bytes), bytes.to_vec());
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BlobHost {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

// ---------------------------------------------------------------- fault server

/// A scripted fault of a [`FaultServer`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// Blob GETs of `digest` get `bytes` instead.
    BlobBytes { digest: String, bytes: Vec<u8> },
    /// Manifest answers carry this Docker-Content-Digest.
    ManifestHeader { digest: String },
    /// Manifest requests for `reference` get `bytes` (the header names
    /// `reference` when it is a digest).
    ManifestBytes { reference: String, bytes: Vec<u8> },
    /// Blob GET of `digest`: full Content-Length, `keep` bytes, close.
    Truncate { digest: String, keep: usize },
    /// Blob GET of `digest` dribbled.
    Slow {
        digest: String,
        chunk: usize,
        pause: Duration,
    },
    /// Requests (of `method`, if given) whose path contains `path` get
    /// `status`, with Retry-After if given.
    Status {
        path: String,
        method: Option<String>,
        status: u16,
        retry_after: Option<u32>,
    },
    /// Blob GET of `digest` answered 307 to `base` + `/blobs/<digest>`.
    Redirect { digest: String, base: String },
}

#[derive(Default)]
pub struct FaultState {
    pub host: String,
    pub blobs: HashMap<String, Vec<u8>>,
    pub repo_blobs: HashMap<String, HashSet<String>>,
    /// (repo, tag or digest) → (media type, bytes).
    pub manifests: HashMap<(String, String), (String, Vec<u8>)>,
    /// Faults with how many more times each applies.
    pub faults: Vec<(Fault, usize)>,
    pub log: Vec<Logged>,
    /// Whether blob GETs honour Range.
    pub range: bool,
    /// Basic credentials required, if any.
    pub basic: Option<(String, String)>,
    /// How long each blob GET waits before it is answered.
    pub blob_delay: Duration,
    /// Blob GETs being answered now, and the most there ever were at once.
    pub inflight: usize,
    pub max_inflight: usize,
    uploads: HashMap<String, (String, Vec<u8>)>,
    next_upload: usize,
}

/// An in-memory registry with scripted faults, on 127.0.0.1 by default.
pub struct FaultServer {
    pub server: MiniServer,
    pub state: Arc<Mutex<FaultState>>,
}

impl FaultServer {
    pub fn start() -> FaultServer {
        FaultServer::start_on("127.0.0.1")
    }

    pub fn start_on(ip: &str) -> FaultServer {
        let state = Arc::new(Mutex::new(FaultState {
            range: true,
            ..FaultState::default()
        }));
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: &Req| {
            let is_blob_get = req.method == "GET" && req.path().contains("/blobs/sha256:");
            let delay = st.lock().unwrap().blob_delay;
            if is_blob_get && !delay.is_zero() {
                {
                    let mut s = st.lock().unwrap();
                    s.inflight += 1;
                    s.max_inflight = s.max_inflight.max(s.inflight);
                }
                std::thread::sleep(delay);
                st.lock().unwrap().inflight -= 1;
            }
            let reply = handle(&st, req);
            st.lock().unwrap().log.push(Logged {
                method: req.method.clone(),
                target: req.target.clone(),
                headers: req.headers.clone(),
                status: reply.status,
                body_len: req.body.len(),
                at: Instant::now(),
            });
            reply
        });
        let server = MiniServer::start(ip, handler);
        state.lock().unwrap().host = server.host();
        FaultServer { server, state }
    }

    pub fn host(&self) -> String {
        self.server.host()
    }

    pub fn put_blob(&self, repo: &str, bytes: &[u8]) {
        let mut s = self.state.lock().unwrap();
        let d = digest(bytes);
        s.blobs.insert(d.clone(), bytes.to_vec());
        s.repo_blobs.entry(repo.to_string()).or_default().insert(d);
    }

    /// A manifest under `reference` and under its digest.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let mut s = self.state.lock().unwrap();
        for r in [reference.to_string(), digest(bytes)] {
            s.manifests.insert(
                (repo.to_string(), r),
                (media_type.to_string(), bytes.to_vec()),
            );
        }
        s.repo_blobs.entry(repo.to_string()).or_default();
    }

    /// An image's blobs and its manifest under `tag`.
    pub fn put_image(&self, repo: &str, tag: &str, img: &RegImage) {
        for b in img.blobs() {
            self.put_blob(repo, &b);
        }
        self.put_manifest(repo, tag, &img.media_type, &img.manifest);
    }

    pub fn fault(&self, f: Fault, times: usize) {
        self.state.lock().unwrap().faults.push((f, times));
    }

    /// Delays every blob GET by `d` and counts how many overlap.
    pub fn set_blob_delay(&self, d: Duration) {
        self.state.lock().unwrap().blob_delay = d;
    }

    /// The most blob GETs that were in flight at once (with a blob delay).
    pub fn max_inflight(&self) -> usize {
        self.state.lock().unwrap().max_inflight
    }

    pub fn set_range(&self, on: bool) {
        self.state.lock().unwrap().range = on;
    }

    pub fn require_basic(&self, user: &str, pass: &str) {
        self.state.lock().unwrap().basic = Some((user.to_string(), pass.to_string()));
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Requests of `method` whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.log()
            .iter()
            .filter(|l| l.method == method && l.path().contains(part))
            .count()
    }

    /// Logged requests of `method` whose path contains `part`.
    pub fn requests(&self, method: &str, part: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.method == method && l.path().contains(part))
            .collect()
    }

    /// The repository holds blob `d`.
    pub fn has_blob(&self, repo: &str, d: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .repo_blobs
            .get(repo)
            .is_some_and(|s| s.contains(d))
    }

    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        self.state
            .lock()
            .unwrap()
            .manifests
            .get(&(repo.to_string(), reference.to_string()))
            .cloned()
    }
}

/// Takes the first fault that matches `pred`, counting it down.
fn take_fault(s: &mut FaultState, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
    let i = s.faults.iter().position(|(f, n)| *n > 0 && pred(f))?;
    s.faults[i].1 -= 1;
    Some(s.faults[i].0.clone())
}

fn handle(st: &Arc<Mutex<FaultState>>, req: &Req) -> Reply {
    let mut s = st.lock().unwrap();
    let path = req.path().to_string();
    if let Some((user, pass)) = &s.basic {
        let want = format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()));
        if req.header("authorization") != Some(want.as_str()) {
            return Reply::error(401, "UNAUTHORIZED")
                .header("WWW-Authenticate", "Basic realm=\"fault\"");
        }
    }
    if let Some(Fault::Status {
        status,
        retry_after,
        ..
    }) = take_fault(&mut s, |f| match f {
        Fault::Status {
            path: p, method, ..
        } => path.contains(p.as_str()) && method.as_ref().is_none_or(|m| *m == req.method),
        _ => false,
    }) {
        let mut r = Reply::error(status, "UNAVAILABLE");
        if let Some(secs) = retry_after {
            r = r.header("Retry-After", &secs.to_string());
        }
        return r;
    }
    if path == "/v2/" || path == "/v2" {
        return Reply::new(200)
            .header("Content-Type", "application/json")
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .body(b"{}");
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Reply::error(404, "NOT_FOUND");
    };
    let host = s.host.clone();
    if let Some(i) = rest.rfind("/manifests/") {
        let (repo, reference) = (rest[..i].to_string(), rest[i + 11..].to_string());
        return match req.method.as_str() {
            "GET" | "HEAD" => {
                let Some((mt, mut bytes)) =
                    s.manifests.get(&(repo.clone(), reference.clone())).cloned()
                else {
                    let code = if s.repo_blobs.contains_key(&repo) {
                        "MANIFEST_UNKNOWN"
                    } else {
                        "NAME_UNKNOWN"
                    };
                    return Reply::error(404, code);
                };
                let mut dcd = digest(&bytes);
                if let Some(Fault::ManifestBytes { bytes: b, .. }) = take_fault(
                    &mut s,
                    |f| matches!(f, Fault::ManifestBytes { reference: r, .. } if *r == reference),
                ) {
                    bytes = b;
                    if reference.starts_with("sha256:") {
                        dcd = reference.clone();
                    } else {
                        dcd = digest(&bytes);
                    }
                }
                if let Some(Fault::ManifestHeader { digest: d }) =
                    take_fault(&mut s, |f| matches!(f, Fault::ManifestHeader { .. }))
                {
                    dcd = d;
                }
                Reply::new(200)
                    .header("Content-Type", &mt)
                    .header("Docker-Content-Digest", &dcd)
                    .body(&bytes)
            }
            "PUT" => {
                let mt = req
                    .header("content-type")
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let d = digest(&req.body);
                for r in [reference.clone(), d.clone()] {
                    s.manifests
                        .insert((repo.clone(), r), (mt.clone(), req.body.clone()));
                }
                s.repo_blobs.entry(repo.clone()).or_default();
                Reply::new(201)
                    .header(
                        "Location",
                        &format!("http://{host}/v2/{repo}/manifests/{d}"),
                    )
                    .header("Docker-Content-Digest", &d)
            }
            _ => Reply::error(405, "UNSUPPORTED"),
        };
    }
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let repo = rest[..i].to_string();
        let uuid = rest[i + 14..].trim_start_matches('/').to_string();
        let loc = |u: &str| format!("http://{host}/v2/{repo}/blobs/uploads/{u}");
        match req.method.as_str() {
            "POST" => {
                if let (Some(m), Some(from)) = (req.query("mount"), req.query("from")) {
                    let has = s.repo_blobs.get(&from).is_some_and(|b| b.contains(&m));
                    if has {
                        s.repo_blobs
                            .entry(repo.clone())
                            .or_default()
                            .insert(m.clone());
                        return Reply::new(201)
                            .header("Location", &format!("http://{host}/v2/{repo}/blobs/{m}"))
                            .header("Docker-Content-Digest", &m);
                    }
                }
                if let Some(d) = req.query("digest") {
                    if digest(&req.body) != d {
                        return Reply::error(400, "DIGEST_INVALID");
                    }
                    s.blobs.insert(d.clone(), req.body.clone());
                    s.repo_blobs
                        .entry(repo.clone())
                        .or_default()
                        .insert(d.clone());
                    return Reply::new(201)
                        .header("Location", &format!("http://{host}/v2/{repo}/blobs/{d}"))
                        .header("Docker-Content-Digest", &d);
                }
                s.next_upload += 1;
                let u = format!("upload-{}", s.next_upload);
                s.uploads
                    .insert(u.clone(), (repo.clone(), req.body.clone()));
                Reply::new(202)
                    .header("Location", &loc(&u))
                    .header("Docker-Upload-UUID", &u)
                    .header("Range", "0-0")
            }
            "PATCH" => {
                let Some(up) = s.uploads.get_mut(&uuid) else {
                    return Reply::error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                up.1.extend_from_slice(&req.body);
                let n = up.1.len();
                Reply::new(202)
                    .header("Location", &loc(&uuid))
                    .header("Docker-Upload-UUID", &uuid)
                    .header("Range", &format!("0-{}", n.saturating_sub(1)))
            }
            "PUT" => {
                let Some((_, mut data)) = s.uploads.remove(&uuid) else {
                    return Reply::error(404, "BLOB_UPLOAD_UNKNOWN");
                };
                data.extend_from_slice(&req.body);
                let Some(d) = req.query("digest") else {
                    return Reply::error(400, "DIGEST_INVALID");
                };
                if digest(&data) != d {
                    return Reply::error(400, "DIGEST_INVALID");
                }
                s.blobs.insert(d.clone(), data);
                s.repo_blobs
                    .entry(repo.clone())
                    .or_default()
                    .insert(d.clone());
                Reply::new(201)
                    .header("Location", &format!("http://{host}/v2/{repo}/blobs/{d}"))
                    .header("Docker-Content-Digest", &d)
            }
            _ => Reply::error(405, "UNSUPPORTED"),
        }
    } else if let Some(i) = rest.rfind("/blobs/") {
        let (repo, d) = (rest[..i].to_string(), rest[i + 7..].to_string());
        if !matches!(req.method.as_str(), "GET" | "HEAD") {
            return Reply::error(405, "UNSUPPORTED");
        }
        let present = s.repo_blobs.get(&repo).is_some_and(|b| b.contains(&d));
        let Some(mut bytes) = s.blobs.get(&d).cloned().filter(|_| present) else {
            return Reply::error(404, "BLOB_UNKNOWN");
        };
        if req.method == "HEAD" {
            return Reply::new(200)
                .header("Content-Type", "application/octet-stream")
                .header("Docker-Content-Digest", &d)
                .header("Content-Length", &bytes.len().to_string());
        }
        if let Some(Fault::Redirect { base, .. }) = take_fault(
            &mut s,
            |f| matches!(f, Fault::Redirect { digest, .. } if *digest == d),
        ) {
            return Reply::new(307).header("Location", &format!("{base}/blobs/{d}?sig=abc"));
        }
        if let Some(Fault::BlobBytes { bytes: b, .. }) = take_fault(
            &mut s,
            |f| matches!(f, Fault::BlobBytes { digest, .. } if *digest == d),
        ) {
            bytes = b;
        }
        let mut status = 200;
        let mut headers = vec![
            (
                "Content-Type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("Docker-Content-Digest".to_string(), d.clone()),
        ];
        if s.range {
            headers.push(("Accept-Ranges".into(), "bytes".into()));
            if let Some(start) = req
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse::<usize>().ok())
            {
                if start >= bytes.len() {
                    return Reply::error(416, "RANGE_INVALID");
                }
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
                ));
                bytes = bytes[start..].to_vec();
                status = 206;
            }
        }
        let mut reply = Reply {
            status,
            headers,
            body: bytes,
            mode: Mode::Full,
        };
        match take_fault(
            &mut s,
            |f| matches!(f, Fault::Truncate { digest, .. } | Fault::Slow { digest, .. } if *digest == d),
        ) {
            Some(Fault::Truncate { keep, .. }) => reply.mode = Mode::Truncate(keep),
            Some(Fault::Slow { chunk, pause, .. }) => reply.mode = Mode::Slow { chunk, pause },
            _ => {}
        }
        drop(s);
        reply
    } else {
        Reply::error(404, "NOT_FOUND")
    }
}

// ---------------------------------------------------------------- the client under test

/// A thinsnap root with its own auth file and config file.
pub struct Client {
    pub env: Env,
    pub auth_file: PathBuf,
    pub config: PathBuf,
}

/// Registry settings for fast tests.
pub const FAST: &str = "retries = 4\nretry_base_ms = 10\ntimeout_secs = 10\n";

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client::with_registry(FAST)
    }

    /// `registry` is the body of the `[registry]` section.
    pub fn with_registry(registry: &str) -> Client {
        let env = Env::new();
        let auth_file = env.dir.path().join("auth.json");
        let config = env.dir.path().join("config.toml");
        std::fs::write(&config, format!("[registry]\n{registry}")).unwrap();
        Client {
            env,
            auth_file,
            config,
        }
    }

    pub fn set_registry(&self, registry: &str) {
        std::fs::write(&self.config, format!("[registry]\n{registry}")).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd(&["--config", self.config.to_str().unwrap()]);
        c.args(args).env("THINSNAP_AUTH_FILE", &self.auth_file);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Env::exec(&mut self.cmd(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        Env::exec(&mut self.cmd(args), Some(input))
    }

    /// A root that already holds one image, so a failed pull has a store
    /// to leave alone.
    pub fn seeded() -> Client {
        let c = Client::new();
        c.env.import(&[("seed/file", b"seed")], Some("seed:1"));
        c
    }

    /// The regular files of image `name`'s rootfs (through a container and
    /// `export`), and the container is removed again.
    pub fn rootfs(&self, name: &str) -> BTreeMap<String, Vec<u8>> {
        let cname = format!("probe{}", now_secs() % 100_000);
        self.run(&["create", "--name", &cname, name]).ok();
        let out = self.env.out_path(&format!("{cname}.tar"));
        self.run(&["export", "-o", &out, &cname]).ok();
        self.run(&["rm", "-f", &cname]).ok();
        let b = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        tar_files(&b)
    }

    /// Asserts that `name` is `img`: same image id and the same files.
    #[track_caller]
    pub fn assert_image(&self, name: &str, img: &RegImage) {
        let i = self.env.inspect(name);
        assert_eq!(i["Id"], img.id(), "image id of {name}");
        let files = self.rootfs(name);
        for (p, data) in &img.files {
            assert!(
                files.get(p) == Some(data),
                "{name}: {p} differs or is missing (have {:?})",
                files.keys().collect::<Vec<_>>()
            );
        }
    }

    /// Asserts that a failed command left the store as `before` and no
    /// scratch files in `engine/tmp`.
    #[track_caller]
    pub fn assert_untouched(&self, before: &State) {
        assert_eq!(&self.env.state(), before, "the store changed");
        let tmp = self.env.root.join("engine/tmp");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            let left: Vec<_> = rd.map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "left in engine/tmp: {left:?}");
        }
    }

    /// The parsed credentials file.
    pub fn auths(&self) -> Value {
        match std::fs::read(&self.auth_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap(),
            Err(_) => json!({}),
        }
    }
}

/// The `Digest: sha256:…` line of a pull's stdout.
pub fn digest_line(r: &Run) -> Option<String> {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Digest: ").map(|d| d.trim().to_string()))
}

/// The `<tag>: digest: sha256:… size: N` line of a push: (digest, size).
pub fn push_line(r: &Run) -> (String, u64) {
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains(": digest: sha256:"))
        .unwrap_or_else(|| panic!("no digest line in push output: {}", r.stdout));
    let d = line
        .split("digest: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let size = line.split("size: ").nth(1).unwrap().trim().parse().unwrap();
    (d.to_string(), size)
}

/// `skopeo` with no signature policy; returns stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo` that must fail; returns stderr.
pub fn skopeo_fails(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!out.status.success(), "skopeo {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The raw manifest skopeo sees at `docker://host/repo:tag` (plain HTTP).
pub fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    let r = format!("docker://{reference}");
    args.push(&r);
    skopeo(&args)
}

/// Layer digests of a manifest.
pub fn manifest_layers(m: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(m).unwrap();
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}
