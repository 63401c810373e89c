//! The in-memory registry with scripted faults: [`FaultServer`] and its
//! [`FaultState`], the [`Fault`]s it can be told to commit (wrong digests,
//! truncated or slow bodies, 5xx/429, redirects, odd manifests) and
//! [`BlobHost`], the other address its redirects point at. The request
//! handler, one function a route, is in [`routes`].

mod routes;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{Handler, Logged, MiniServer, Req, ReqParts};
use super::image::RegImage;
use crate::engine_common::digest;

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

impl FaultState {
    /// Blob `bytes` under digest `d`, linked into `repo`.
    fn store_blob(&mut self, repo: &str, d: String, bytes: Vec<u8>) {
        self.blobs.insert(d.clone(), bytes);
        self.link_blob(repo, d);
    }

    /// Blob `d` (already stored) linked into `repo`.
    fn link_blob(&mut self, repo: &str, d: String) {
        self.repo_blobs
            .entry(repo.to_string())
            .or_default()
            .insert(d);
    }

    /// A manifest under `reference` and under its digest, which it returns.
    fn store_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let d = digest(bytes);
        for r in [reference.to_string(), d.clone()] {
            self.manifests.insert(
                (repo.to_string(), r),
                (media_type.to_string(), bytes.to_vec()),
            );
        }
        self.repo_blobs.entry(repo.to_string()).or_default();
        d
    }
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
            let reply = routes::handle(&st, req);
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
        s.store_blob(repo, digest(bytes), bytes.to_vec());
    }

    /// A manifest under `reference` and under its digest.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.store_manifest(repo, reference, media_type, bytes);
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
