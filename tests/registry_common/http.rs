//! The mini HTTP/1.1 server the [`FaultServer`] and the [`Recorder`] run
//! on ([`MiniServer`], [`Req`], [`Reply`], [`Mode`]), a plain HTTP client
//! ([`http`]) and [`Logged`], one request as either server logs it.
//!
//! Std sockets, one thread per connection, keep-alive: tiny_http cannot cut
//! a response short and close the connection, which the truncation faults
//! need.
//!
//! [`FaultServer`]: super::FaultServer
//! [`Recorder`]: super::Recorder

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::pct_decode;

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

/// A request as the [`MiniServer`] read it (body decoded).
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The header and target lookups of a request, for a [`Req`] being
/// answered and a [`Logged`] one alike.
pub trait ReqParts {
    fn headers(&self) -> &[(String, String)];

    /// Path and query, as sent.
    fn target(&self) -> &str;

    fn header(&self, name: &str) -> Option<&str> {
        header_in(self.headers(), name)
    }

    fn path(&self) -> &str {
        self.target().split('?').next().unwrap_or("")
    }

    /// A query parameter, decoded.
    fn query(&self, key: &str) -> Option<String> {
        query_of(self.target(), key)
    }
}

impl ReqParts for Req {
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    fn target(&self) -> &str {
        &self.target
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

impl ReqParts for Logged {
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    fn target(&self) -> &str {
        &self.target
    }
}
