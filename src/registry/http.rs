//! The HTTP pieces under the registry client: request bodies that can be
//! sent again on a retry, reading bodies within a size limit (and noticing
//! when one is cut short), the registry's error documents, and query
//! encoding.

use std::io::Read;
use std::os::unix::fs::FileExt;

use ureq::http::Response;

use super::{RegistryError, Result};

/// Largest error or token document read from a registry.
const MAX_SMALL_BODY: u64 = 1 << 20;

/// A request body that can be sent again on a retry.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A slice of a file, read with `pread` so every attempt starts afresh.
    File {
        /// The file.
        file: &'a std::fs::File,
        /// Where the slice starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// Told how many bytes went out, for progress.
        sent: &'a (dyn Fn(u64) + Sync),
    },
}

impl Payload<'_> {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }
}

pub(crate) struct FileSlice<'a> {
    pub(crate) file: &'a std::fs::File,
    pub(crate) pos: u64,
    pub(crate) end: u64,
    pub(crate) sent: &'a (dyn Fn(u64) + Sync),
}

impl Read for FileSlice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = usize::try_from(self.end - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        (self.sent)(n as u64);
        Ok(n)
    }
}

/// One request.
pub struct Req<'a> {
    /// Method.
    pub method: &'static str,
    /// Absolute URL.
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Payload<'a>,
}

impl<'a> Req<'a> {
    /// A request without body or headers.
    pub fn new(method: &'static str, url: String) -> Req<'a> {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: Payload::Empty,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req<'a> {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Payload<'a>) -> Req<'a> {
        self.body = body;
        self
    }
}

/// A response header as text (absent or not valid text: `None`).
pub fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a small body (error text, token, manifest-sized documents).
///
/// # Errors
/// [`RegistryError::TooLarge`], read errors.
pub fn read_small(resp: Response<ureq::Body>, what: &str) -> Result<Vec<u8>> {
    read_limited(resp, MAX_SMALL_BODY, what)
}

/// Reads a body up to `limit` bytes.
///
/// # Errors
/// [`RegistryError::TooLarge`], [`RegistryError::Transport`] when the
/// connection fails while reading.
pub fn read_limited(resp: Response<ureq::Body>, limit: u64, what: &str) -> Result<Vec<u8>> {
    let declared = header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    let mut buf = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| RegistryError::Transport {
            method: "GET".into(),
            url: what.to_string(),
            source: Box::new(ureq::Error::Io(e)),
        })?;
    if buf.len() as u64 > limit {
        return Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    if let Some(n) = declared.filter(|n| *n > buf.len() as u64) {
        return Err(RegistryError::Truncated {
            what: what.to_string(),
            got: buf.len() as u64,
            expected: n,
        });
    }
    Ok(buf)
}

/// The registry's error document (`{"errors":[{"code","message"}]}`) as text.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Doc {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(d) = serde_json::from_slice::<Doc>(body) {
        return d
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    text.trim().chars().take(200).collect()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(encode("sha256:ab"), "sha256%3Aab");
    }

    #[test]
    fn error_documents_become_short_text() {
        assert_eq!(
            error_detail(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(error_detail(b"  plain  "), "plain");
    }
}
