//! The recording proxy: [`Recorder`] passes requests through to a plain
//! HTTP upstream (a docker-registry) and logs each one with its status,
//! optionally delaying blob GETs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{http, Handler, Logged, MiniServer, Reply, Req, ReqParts};

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
