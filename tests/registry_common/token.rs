//! The Docker token flow: [`TokenServer`] (tiny_http) checks basic
//! credentials and hands out JWTs signed with ES256 whose `x5c` header
//! distribution checks against its `rootcertbundle`; it logs every token
//! request ([`TokenReq`]).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::http::{Req, ReqParts};
use super::{b64, now_secs, pct_decode};

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

/// What the server thread needs to answer token requests.
struct Signer {
    user: String,
    /// The Authorization header that grants tokens.
    want_auth: String,
    service: String,
    issuer: String,
    /// The signing certificate (DER, base64) for the `x5c` header.
    x5c: String,
    enc: jsonwebtoken::EncodingKey,
    log: Arc<Mutex<Vec<TokenReq>>>,
    expires_in: Arc<Mutex<u64>>,
}

impl TokenServer {
    /// A token server that requires `user`/`pass` (basic auth) for every token.
    pub fn start(user: &str, pass: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "thinsnap token signer");
        let cert = p.self_signed(&key).unwrap();
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let signer = Signer {
            user: user.to_string(),
            want_auth: format!("Basic {}", b64(format!("{user}:{pass}").as_bytes())),
            service: "thinsnap-test-registry".to_string(),
            issuer: "thinsnap-test-issuer".to_string(),
            x5c: b64(cert.der()),
            enc: jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
            log: Arc::default(),
            expires_in: Arc::new(Mutex::new(300u64)),
        };
        let ts = TokenServer {
            addr: server.server_addr().to_ip().unwrap().to_string(),
            service: signer.service.clone(),
            issuer: signer.issuer.clone(),
            cert_pem: cert.pem(),
            log: signer.log.clone(),
            expires_in: signer.expires_in.clone(),
            server: server.clone(),
        };
        std::thread::spawn(move || {
            for rq in server.incoming_requests() {
                signer.answer(rq);
            }
        });
        ts
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

impl Signer {
    /// Logs `rq`, then answers it with a token or a 401.
    fn answer(&self, rq: tiny_http::Request) {
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
        let ok = authz.as_deref() == Some(self.want_auth.as_str());
        let scopes = scopes_of(&url);
        self.log.lock().unwrap().push(TokenReq {
            service: r.query("service"),
            scopes: scopes.clone(),
            user: ok.then(|| self.user.clone()),
            had_authorization: authz.is_some(),
            granted: ok,
        });
        if !ok {
            let resp = tiny_http::Response::from_string(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            )
            .with_status_code(401)
            .with_header(
                tiny_http::Header::from_bytes("WWW-Authenticate", "Basic realm=\"token\"").unwrap(),
            );
            let _ = rq.respond(resp);
            return;
        }
        let resp = tiny_http::Response::from_string(self.grant(&scopes)).with_header(
            tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
        );
        let _ = rq.respond(resp);
    }

    /// The JSON body of a token response granting `scopes`.
    fn grant(&self, scopes: &[String]) -> String {
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
        let exp = *self.expires_in.lock().unwrap();
        let claims = json!({
            "iss": self.issuer, "sub": self.user, "aud": self.service,
            "exp": now + exp, "nbf": now.saturating_sub(1), "iat": now,
            "jti": format!("jti-{now}-{}", self.log.lock().unwrap().len()),
            "access": access,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.x5c.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.enc).unwrap();
        let issued = chrono::DateTime::from_timestamp(now as i64, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({"token": token, "access_token": token,
            "expires_in": exp, "issued_at": issued})
        .to_string()
    }
}

/// The scopes of a token request URL: every `scope=` value, decoded and
/// split at spaces.
fn scopes_of(url: &str) -> Vec<String> {
    url.split_once('?')
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
        .unwrap_or_default()
}
