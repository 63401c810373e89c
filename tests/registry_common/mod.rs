//! Shared helpers for the registry tests (`registry_*.rs`), one submodule
//! a responsibility, all re-exported here so that a test says
//! `use registry_common::*;`:
//!
//! - `http`: [`MiniServer`], a small HTTP/1.1 server on std sockets (the
//!   FaultServer and the Recorder run on it: tiny_http cannot cut a
//!   response short and close the connection, which the truncation faults
//!   need), and [`http()`], a plain HTTP client;
//! - `dist`: [`DistRegistry`], Debian's `docker-registry` (distribution
//!   2.8) on a free port, with no auth, htpasswd (basic) auth or token
//!   auth, plain HTTP on 127.0.0.1 or TLS on 127.0.0.2;
//! - `tls`: [`make_ca`], a CA made by rcgen and a server certificate;
//! - `recorder`: [`Recorder`], a logging pass-through proxy in front of it
//!   (requests, statuses; optional delay on blob GETs);
//! - `token`: [`TokenServer`] (tiny_http), the Docker token flow, JWTs
//!   signed with ES256 and an `x5c` header that distribution checks against
//!   its `rootcertbundle`;
//! - `fault`: [`FaultServer`], an in-memory registry with scripted faults
//!   (wrong digests, truncated/slow bodies, 5xx/429, redirects to a
//!   [`BlobHost`] on another address, schema 1, oversized manifests, Range
//!   on/off) and a request log;
//! - `image`: [`RegImage`], images with real gzip layers, OCI or Docker
//!   schema 2;
//! - `client`: [`Client`], one test's thinsnap root, with its own auth
//!   file and config file, and skopeo helpers.
//!
//! This file holds the media types and small utilities they share.
#![allow(dead_code, clippy::unwrap_used)]

mod client;
mod dist;
mod fault;
mod http;
mod image;
mod recorder;
mod tls;
mod token;

// Not every test crate uses every part.
#[allow(unused_imports)]
pub use self::{client::*, dist::*, fault::*, http::*, image::*, recorder::*, tls::*, token::*};

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

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
