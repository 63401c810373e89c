//! One registry connection: sends requests with whatever authentication
//! the registry asks for (learned from its 401 challenges), retries
//! transient failures with backoff (honouring `Retry-After`), and turns
//! error answers into [`RegistryError`]s that name what was asked for.
//! Redirects are followed without the `Authorization` header, so a blob
//! store on another host never sees the registry's credentials.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::Response;

use super::auth::{may_send_credentials, Challenge, Token, TokenResponse};
use super::credentials::Credentials;
use super::http::{encode, error_detail, header, read_limited, read_small, FileSlice};
use super::http::{Payload, Req};
use super::{tls, Options, RegistryError, Result};

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
        let challenge = header(&resp, "www-authenticate").and_then(|v| Challenge::parse(&v));
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
        self.retrying(|| self.checked(req, what))
    }

    /// [`Client::exchange`], an error status made an error naming `what`.
    fn checked(&self, req: &Req<'_>, what: &str) -> Result<Response<ureq::Body>> {
        let resp = self.exchange(req)?;
        if resp.status().as_u16() >= 400 {
            return Err(self.status_error(req, resp, what));
        }
        Ok(resp)
    }

    /// A whole small document (manifest, config): the request and the
    /// reading of its body are retried together, since a body cut short is
    /// as transient as a failed request. Returns the response's
    /// `Content-Type` (without parameters), `Docker-Content-Digest`, and body.
    ///
    /// # Errors
    /// As [`Client::request`], and [`RegistryError::TooLarge`] past `limit`.
    pub fn fetch_small(
        &self,
        req: &Req<'_>,
        what: &str,
        limit: u64,
    ) -> Result<(String, Option<String>, Vec<u8>)> {
        self.retrying(|| {
            let resp = self.checked(req, what)?;
            let ct = header(&resp, "content-type").unwrap_or_default();
            let ct = ct.split(';').next().unwrap_or("").trim().to_string();
            let dcd = header(&resp, "docker-content-digest");
            Ok((ct, dcd, read_limited(resp, limit, what)?))
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
        let retry_after = header(&resp, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
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

#[cfg(test)]
mod tests {
    use super::*;

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
