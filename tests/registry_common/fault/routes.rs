//! The [`FaultServer`](super::FaultServer)'s request handler: basic auth
//! and scripted statuses first, then one function a route of the registry
//! API (`/v2/`, manifests GET/HEAD/PUT, blob uploads POST/PATCH/PUT, blobs
//! GET/HEAD), each applying the faults that concern it.

use std::sync::{Arc, Mutex};

use super::{take_fault, Fault, FaultState};
use crate::engine_common::digest;
use crate::registry_common::b64;
use crate::registry_common::http::{Mode, Reply, Req, ReqParts};

/// Answers `req`, holding the state's lock throughout.
pub(super) fn handle(st: &Arc<Mutex<FaultState>>, req: &Req) -> Reply {
    let mut s = st.lock().unwrap();
    if let Some(r) = check_basic(&s, req).or_else(|| status_fault(&mut s, req)) {
        return r;
    }
    let path = req.path();
    if path == "/v2/" || path == "/v2" {
        return Reply::new(200)
            .header("Content-Type", "application/json")
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .body(b"{}");
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Reply::error(404, "NOT_FOUND");
    };
    if let Some(i) = rest.rfind("/manifests/") {
        let (repo, reference) = (&rest[..i], &rest[i + 11..]);
        return match req.method.as_str() {
            "GET" | "HEAD" => get_manifest(&mut s, repo, reference),
            "PUT" => put_manifest(&mut s, req, repo, reference),
            _ => Reply::error(405, "UNSUPPORTED"),
        };
    }
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let repo = &rest[..i];
        let uuid = rest[i + 14..].trim_start_matches('/');
        return match req.method.as_str() {
            "POST" => post_upload(&mut s, req, repo),
            "PATCH" => patch_upload(&mut s, req, repo, uuid),
            "PUT" => put_upload(&mut s, req, repo, uuid),
            _ => Reply::error(405, "UNSUPPORTED"),
        };
    }
    if let Some(i) = rest.rfind("/blobs/") {
        let (repo, d) = (&rest[..i], &rest[i + 7..]);
        return match req.method.as_str() {
            "HEAD" => head_blob(&s, repo, d),
            "GET" => get_blob(&mut s, req, repo, d),
            _ => Reply::error(405, "UNSUPPORTED"),
        };
    }
    Reply::error(404, "NOT_FOUND")
}

/// A 401 when basic credentials are required and `req` lacks them.
fn check_basic(s: &FaultState, req: &Req) -> Option<Reply> {
    let (user, pass) = s.basic.as_ref()?;
    let want = format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()));
    (req.header("authorization") != Some(want.as_str())).then(|| {
        Reply::error(401, "UNAUTHORIZED").header("WWW-Authenticate", "Basic realm=\"fault\"")
    })
}

/// The status of a [`Fault::Status`] that matches `req`, if one is due.
fn status_fault(s: &mut FaultState, req: &Req) -> Option<Reply> {
    let path = req.path();
    let Some(Fault::Status {
        status,
        retry_after,
        ..
    }) = take_fault(s, |f| match f {
        Fault::Status {
            path: p, method, ..
        } => path.contains(p.as_str()) && method.as_ref().is_none_or(|m| *m == req.method),
        _ => false,
    })
    else {
        return None;
    };
    let mut r = Reply::error(status, "UNAVAILABLE");
    if let Some(secs) = retry_after {
        r = r.header("Retry-After", &secs.to_string());
    }
    Some(r)
}

/// `GET`/`HEAD /v2/<repo>/manifests/<reference>`, with the manifest faults.
fn get_manifest(s: &mut FaultState, repo: &str, reference: &str) -> Reply {
    let Some((mt, mut bytes)) = s
        .manifests
        .get(&(repo.to_string(), reference.to_string()))
        .cloned()
    else {
        let code = if s.repo_blobs.contains_key(repo) {
            "MANIFEST_UNKNOWN"
        } else {
            "NAME_UNKNOWN"
        };
        return Reply::error(404, code);
    };
    let mut dcd = digest(&bytes);
    if let Some(Fault::ManifestBytes { bytes: b, .. }) = take_fault(
        s,
        |f| matches!(f, Fault::ManifestBytes { reference: r, .. } if r == reference),
    ) {
        bytes = b;
        if reference.starts_with("sha256:") {
            dcd = reference.to_string();
        } else {
            dcd = digest(&bytes);
        }
    }
    if let Some(Fault::ManifestHeader { digest: d }) =
        take_fault(s, |f| matches!(f, Fault::ManifestHeader { .. }))
    {
        dcd = d;
    }
    Reply::new(200)
        .header("Content-Type", &mt)
        .header("Docker-Content-Digest", &dcd)
        .body(&bytes)
}

/// `PUT /v2/<repo>/manifests/<reference>`: stored under the reference and
/// its digest.
fn put_manifest(s: &mut FaultState, req: &Req, repo: &str, reference: &str) -> Reply {
    let mt = req
        .header("content-type")
        .unwrap_or("application/octet-stream");
    let d = s.store_manifest(repo, reference, mt, &req.body);
    Reply::new(201)
        .header(
            "Location",
            &format!("http://{}/v2/{repo}/manifests/{d}", s.host),
        )
        .header("Docker-Content-Digest", &d)
}

/// The 201 that names blob `d` of `repo`.
fn blob_created(host: &str, repo: &str, d: &str) -> Reply {
    Reply::new(201)
        .header("Location", &format!("http://{host}/v2/{repo}/blobs/{d}"))
        .header("Docker-Content-Digest", d)
}

/// The 202 of an upload session `uuid` holding `n` bytes.
fn upload_accepted(host: &str, repo: &str, uuid: &str, n: usize) -> Reply {
    Reply::new(202)
        .header(
            "Location",
            &format!("http://{host}/v2/{repo}/blobs/uploads/{uuid}"),
        )
        .header("Docker-Upload-UUID", uuid)
        .header("Range", &format!("0-{}", n.saturating_sub(1)))
}

/// `POST /v2/<repo>/blobs/uploads/`: a cross-repository mount (when the
/// source holds the blob), a monolithic upload (`?digest=`), or a new
/// upload session.
fn post_upload(s: &mut FaultState, req: &Req, repo: &str) -> Reply {
    if let (Some(m), Some(from)) = (req.query("mount"), req.query("from")) {
        if s.repo_blobs.get(&from).is_some_and(|b| b.contains(&m)) {
            s.link_blob(repo, m.clone());
            return blob_created(&s.host, repo, &m);
        }
    }
    if let Some(d) = req.query("digest") {
        if digest(&req.body) != d {
            return Reply::error(400, "DIGEST_INVALID");
        }
        s.store_blob(repo, d.clone(), req.body.clone());
        return blob_created(&s.host, repo, &d);
    }
    s.next_upload += 1;
    let u = format!("upload-{}", s.next_upload);
    s.uploads
        .insert(u.clone(), (repo.to_string(), req.body.clone()));
    upload_accepted(&s.host, repo, &u, 0)
}

/// `PATCH /v2/<repo>/blobs/uploads/<uuid>`: appends a chunk.
fn patch_upload(s: &mut FaultState, req: &Req, repo: &str, uuid: &str) -> Reply {
    let Some(up) = s.uploads.get_mut(uuid) else {
        return Reply::error(404, "BLOB_UPLOAD_UNKNOWN");
    };
    up.1.extend_from_slice(&req.body);
    let n = up.1.len();
    upload_accepted(&s.host, repo, uuid, n)
}

/// `PUT /v2/<repo>/blobs/uploads/<uuid>?digest=`: the last chunk; the
/// session ends whether or not the digest matches.
fn put_upload(s: &mut FaultState, req: &Req, repo: &str, uuid: &str) -> Reply {
    let Some((_, mut data)) = s.uploads.remove(uuid) else {
        return Reply::error(404, "BLOB_UPLOAD_UNKNOWN");
    };
    data.extend_from_slice(&req.body);
    let Some(d) = req.query("digest") else {
        return Reply::error(400, "DIGEST_INVALID");
    };
    if digest(&data) != d {
        return Reply::error(400, "DIGEST_INVALID");
    }
    s.store_blob(repo, d.clone(), data);
    blob_created(&s.host, repo, &d)
}

/// Blob `d` when `repo` holds it.
fn find_blob(s: &FaultState, repo: &str, d: &str) -> Option<Vec<u8>> {
    let present = s.repo_blobs.get(repo).is_some_and(|b| b.contains(d));
    s.blobs.get(d).cloned().filter(|_| present)
}

/// `HEAD /v2/<repo>/blobs/<d>`.
fn head_blob(s: &FaultState, repo: &str, d: &str) -> Reply {
    let Some(bytes) = find_blob(s, repo, d) else {
        return Reply::error(404, "BLOB_UNKNOWN");
    };
    Reply::new(200)
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", d)
        .header("Content-Length", &bytes.len().to_string())
}

/// `GET /v2/<repo>/blobs/<d>`, with the blob faults: redirect, other
/// bytes, truncated or slow body.
fn get_blob(s: &mut FaultState, req: &Req, repo: &str, d: &str) -> Reply {
    let Some(mut bytes) = find_blob(s, repo, d) else {
        return Reply::error(404, "BLOB_UNKNOWN");
    };
    if let Some(Fault::Redirect { base, .. }) = take_fault(
        s,
        |f| matches!(f, Fault::Redirect { digest, .. } if digest == d),
    ) {
        return Reply::new(307).header("Location", &format!("{base}/blobs/{d}?sig=abc"));
    }
    if let Some(Fault::BlobBytes { bytes: b, .. }) = take_fault(
        s,
        |f| matches!(f, Fault::BlobBytes { digest, .. } if digest == d),
    ) {
        bytes = b;
    }
    let mut reply = match blob_body(s.range, req, d, bytes) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match take_fault(
        s,
        |f| matches!(f, Fault::Truncate { digest, .. } | Fault::Slow { digest, .. } if digest == d),
    ) {
        Some(Fault::Truncate { keep, .. }) => reply.mode = Mode::Truncate(keep),
        Some(Fault::Slow { chunk, pause, .. }) => reply.mode = Mode::Slow { chunk, pause },
        _ => {}
    }
    reply
}

/// The answer carrying blob `d`: whole (200), or from the start a Range
/// header asks for (206) when the server honours Range; a start past the
/// end is an error (416).
fn blob_body(range: bool, req: &Req, d: &str, mut bytes: Vec<u8>) -> Result<Reply, Reply> {
    let mut reply = Reply::new(200)
        .header("Content-Type", "application/octet-stream")
        .header("Docker-Content-Digest", d);
    if range {
        reply = reply.header("Accept-Ranges", "bytes");
        if let Some(start) = req
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            if start >= bytes.len() {
                return Err(Reply::error(416, "RANGE_INVALID"));
            }
            reply = reply.header(
                "Content-Range",
                &format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
            );
            bytes = bytes[start..].to_vec();
            reply.status = 206;
        }
    }
    reply.body = bytes;
    Ok(reply)
}
