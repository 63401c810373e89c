//! One registry connection: sends requests with whatever authentication
//! the registry asks for (learned from its 401 challenges), retries
//! transient failures with backoff (honouring `Retry-After`), and turns
//! error answers into [`RegistryError`]s that name what was asked for.
//! Redirects are followed without the `Authorization` header, so a blob
//! store on another host never sees the registry's credentials.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::Response;

use super::auth::{may_send_credentials, Challenge, Token, TokenResponse};
use super::credentials::Credentials;
use super::{tls, Options, RegistryError, Result};

/// Largest error or token document read from a registry.
const MAX_SMALL_BODY: u64 = 1 << 20;
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }
}

struct FileSlice<'a> {
    file: &'a std::fs::File,
    pos: u64,
    end: u64,
    sent: &'a (dyn Fn(u64) + Sync),
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

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    token: Option<Token>,
}

/// A connection to one registry, for a set of token scopes.
pub struct Client {
    registry: String,
    base: String,
    agent: ureq::Agent,
    opts: Options,
    creds: Option<Credentials>,
    scopes: Vec<String>,
    auth: Mutex<AuthState>,
}

impl Client {
    /// A client for `registry` asking tokens for `scopes`
    /// (`repository:NAME:pull,push`).
    ///
    /// # Errors
    /// [`RegistryError::Certificate`] for a broken CA file of the registry.
    pub fn new(
        registry: &str,
        opts: &Options,
        creds: Option<Credentials>,
        scopes: Vec<String>,
    ) -> Result<Client> {
        let tls = tls::config(&opts.certs_dir, registry)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(5)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .timeout_connect(Some(opts.timeout))
            .timeout_per_read(Some(opts.timeout))
            .timeout_per_write(Some(opts.timeout))
            .user_agent(concat!("thinsnap/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build();
        Ok(Client {
            registry: registry.to_string(),
            base: opts.base_url(registry),
            agent: config.into(),
            opts: opts.clone(),
            creds,
            scopes,
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// The registry's name.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// An API URL from a path (`/v2/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `Location` header made absolute.
    pub fn resolve_location(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            self.url(loc)
        } else {
            format!("{}/{loc}", self.base)
        }
    }

    fn transport(req: &Req<'_>) -> impl FnOnce(ureq::Error) -> RegistryError {
        let (method, url) = (req.method.to_string(), req.url.clone());
        move |e| RegistryError::Transport {
            method,
            url,
            source: Box::new(e),
        }
    }

    fn send_once(&self, req: &Req<'_>, auth: Option<&str>) -> Result<Response<ureq::Body>> {
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(&req.url);
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let len = req.body.len();
        if req.method != "GET" && req.method != "HEAD" {
            b = b.header("Content-Length", len.to_string());
        }
        let http_err = |e: ureq::http::Error| RegistryError::Transport {
            method: req.method.to_string(),
            url: req.url.clone(),
            source: Box::new(ureq::Error::Http(e)),
        };
        let result = match req.body {
            Payload::Empty => self.agent.run(b.body(()).map_err(http_err)?),
            Payload::Bytes(bytes) => self.agent.run(b.body(bytes).map_err(http_err)?),
            Payload::File {
                file,
                offset,
                len,
                sent,
            } => {
                let mut slice = FileSlice {
                    file,
                    pos: offset,
                    end: offset + len,
                    sent,
                };
                let body = ureq::SendBody::from_reader(&mut slice);
                self.agent.run(b.body(body).map_err(http_err)?)
            }
        };
        result.map_err(Self::transport(req))
    }

    /// The `Authorization` value to send now, renewing an expired token.
    fn auth_header(&self) -> Result<Option<String>> {
        let mut st = self
            .auth
            .lock()
            .map_err(|_| self.protocol("auth state poisoned"))?;
        let Some(ch) = st.challenge.clone() else {
            return Ok(None);
        };
        match ch.scheme.as_str() {
            "basic" => Ok(self.creds.as_ref().map(Credentials::basic_header)),
            "bearer" => {
                let fresh = st.token.as_ref().filter(|t| t.expires > Instant::now());
                if let Some(t) = fresh {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let t = self.fetch_token(&ch)?;
                let value = format!("Bearer {}", t.value);
                st.token = Some(t);
                Ok(Some(value))
            }
            _ => Ok(None),
        }
    }

    /// Learns a challenge (fetching a token for a bearer one).
    fn authenticate(&self, ch: Challenge) -> Result<()> {
        let mut st = self
            .auth
            .lock()
            .map_err(|_| self.protocol("auth state poisoned"))?;
        if ch.scheme == "bearer" {
            st.token = Some(self.fetch_token(&ch)?);
        }
        st.challenge = Some(ch);
        Ok(())
    }

    fn fetch_token(&self, ch: &Challenge) -> Result<Token> {
        let realm = ch
            .param("realm")
            .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
            .ok_or_else(|| self.protocol("bearer challenge without a usable realm"))?;
        let mut query = Vec::new();
        if let Some(s) = ch.param("service") {
            query.push(format!("service={}", encode(s)));
        }
        let mut scopes = self.scopes.clone();
        if let Some(s) = ch.param("scope") {
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        query.extend(scopes.iter().map(|s| format!("scope={}", encode(s))));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let auth = self
            .creds
            .as_ref()
            .filter(|_| may_send_credentials(realm, &self.base))
            .map(Credentials::basic_header);
        let req = Req::new("GET", url);
        let fetched = Instant::now();
        let resp = self.retrying(|| {
            let r = self.send_once(&req, auth.as_deref())?;
            if r.status().as_u16() >= 400 {
                return Err(self.status_error(&req, r, "token"));
            }
            Ok(r)
        })?;
        let body = read_small(resp, "token response")?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| self.protocol(&format!("bad token response from {realm}: {e}")))?;
        parsed
            .into_token(fetched)
            .ok_or_else(|| self.protocol(&format!("the token response from {realm} has no token")))
    }

    fn protocol(&self, reason: &str) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends `req` with authentication: on a 401 it learns the challenge
    /// and tries once more. Any status is returned.
    ///
    /// # Errors
    /// Transport errors, token errors.
    pub fn exchange(&self, req: &Req<'_>) -> Result<Response<ureq::Body>> {
        let auth = self.auth_header()?;
        let resp = self.send_once(req, auth.as_deref())?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        match challenge {
            Some(ch) if ch.scheme == "basic" && self.creds.is_none() => Ok(resp),
            Some(ch) => {
                self.authenticate(ch)?;
                let auth = self.auth_header()?;
                self.send_once(req, auth.as_deref())
            }
            None => Ok(resp),
        }
    }

    /// [`Client::exchange`] with retries; an error status becomes an error
    /// naming `what`.
    ///
    /// # Errors
    /// [`RegistryError::Unauthorized`], [`RegistryError::NotFound`],
    /// [`RegistryError::Status`], transport errors after the retries.
    pub fn request(&self, req: &Req<'_>, what: &str) -> Result<Response<ureq::Body>> {
        self.retrying(|| {
            let resp = self.exchange(req)?;
            if resp.status().as_u16() >= 400 {
                return Err(self.status_error(req, resp, what));
            }
            Ok(resp)
        })
    }

    /// Runs `f` until it succeeds, fails for good, or the retries are spent.
    ///
    /// # Errors
    /// The last error.
    pub fn retrying<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if e.is_transient() && attempt < self.opts.retries => {
                    std::thread::sleep(self.backoff(attempt, &e));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// How long to wait before attempt `attempt + 1`.
    pub fn backoff(&self, attempt: u32, err: &RegistryError) -> Duration {
        if let RegistryError::Status {
            retry_after: Some(s),
            ..
        } = err
        {
            return Duration::from_secs(*s).min(MAX_BACKOFF);
        }
        self.opts
            .retry_base
            .saturating_mul(1 << attempt.min(16))
            .min(MAX_BACKOFF)
    }

    /// Turns an error answer into an error, with the registry's own text.
    pub fn status_error(
        &self,
        req: &Req<'_>,
        resp: Response<ureq::Body>,
        what: &str,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let detail = if req.method == "HEAD" {
            String::new()
        } else {
            read_small(resp, "error")
                .map(|b| error_detail(&b))
                .unwrap_or_default()
        };
        match status {
            401 | 403 => RegistryError::Unauthorized {
                registry: self.registry.clone(),
                detail,
            },
            404 => RegistryError::NotFound {
                what: what.to_string(),
                registry: self.registry.clone(),
                detail,
            },
            _ => RegistryError::Status {
                method: req.method.to_string(),
                url: req.url.clone(),
                status,
                detail,
                retry_after,
            },
        }
    }

    /// `GET /v2/`: checks that the registry speaks the API and that the
    /// credentials are accepted.
    ///
    /// # Errors
    /// [`RegistryError::Unauthorized`] when they are not.
    pub fn ping(&self) -> Result<()> {
        let req = Req::new("GET", self.url("/v2/"));
        self.request(&req, "the registry API").map(|_| ())
    }
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
    let declared = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
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
fn error_detail(body: &[u8]) -> String {
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

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let o = Options {
            retry_base: Duration::from_millis(100),
            ..Options::default()
        };
        let c = Client::new("127.0.0.1:1", &o, None, vec![]).unwrap();
        let other = RegistryError::InvalidArgument(String::new());
        assert_eq!(c.backoff(0, &other), Duration::from_millis(100));
        assert_eq!(c.backoff(3, &other), Duration::from_millis(800));
        let busy = RegistryError::Status {
            method: "GET".into(),
            url: String::new(),
            status: 429,
            detail: String::new(),
            retry_after: Some(2),
        };
        assert!(busy.is_transient());
        assert_eq!(c.backoff(0, &busy), Duration::from_secs(2));
    }
}
