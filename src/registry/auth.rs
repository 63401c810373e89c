//! Registry authentication: parsing `WWW-Authenticate` challenges, and the
//! bearer-token flow (a GET to the challenge's realm with service and
//! scopes, basic credentials attached only where they may safely go).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower case).
    pub scheme: String,
    /// Parameters: realm, service, scope, error.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses one challenge (`Bearer realm="...",service="...",scope="..."`).
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let key: String = chars
                .by_ref()
                .take_while(|c| *c != '=')
                .collect::<String>()
                .trim()
                .to_ascii_lowercase();
            if key.is_empty() {
                break;
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                value = chars
                    .by_ref()
                    .take_while(|c| *c != ',')
                    .collect::<String>()
                    .trim()
                    .to_string();
            }
            params.insert(key, value);
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    /// The realm, service and scope parameters.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// A token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The token (Docker's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth's name).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (default 60).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A token and when to stop using it.
#[derive(Clone, Debug)]
pub struct Token {
    /// The bearer token.
    pub value: String,
    /// When it is considered expired (a little before the server says).
    pub expires: Instant,
}

impl TokenResponse {
    /// The usable token, or `None` when the answer has none.
    pub fn into_token(self, fetched: Instant) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let life = self.expires_in.unwrap_or(60).max(1);
        // Renew a quarter early (at most 10 s): a token must not expire in flight.
        let margin = (life * 250).min(10_000);
        Some(Token {
            value,
            expires: fetched + Duration::from_millis(life * 1000 - margin),
        })
    }
}

/// Whether basic credentials may be sent to a token realm: only over TLS,
/// or to the registry's own host, any port (a challenge naming some other
/// plain-HTTP host must not be able to collect passwords).
pub fn may_send_credentials(realm: &str, registry_base: &str) -> bool {
    fn host(url: &str) -> &str {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        super::host_of(rest.split(['/', '?']).next().unwrap_or(rest))
    }
    realm.starts_with("https://") || host(realm) == host(registry_base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_commas_in_quotes() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(
            c.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.param("realm"), Some("Registry Realm"));
        let e = Challenge::parse(r#"Bearer realm=x, error="invalid_token""#).unwrap();
        assert_eq!(e.param("realm"), Some("x"));
        assert_eq!(e.param("error"), Some("invalid_token"));
    }

    #[test]
    fn tokens_expire_early_and_default_to_a_minute() {
        let t0 = Instant::now();
        let r: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        let t = r.into_token(t0).unwrap();
        assert_eq!(t.value, "a");
        assert_eq!(t.expires - t0, Duration::from_secs(50));
        let r: TokenResponse = serde_json::from_str(r#"{"token":"b","expires_in":1}"#).unwrap();
        assert_eq!(
            r.into_token(t0).unwrap().expires - t0,
            Duration::from_millis(750)
        );
        let r: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(r.into_token(t0).is_none());
    }

    #[test]
    fn credentials_go_only_to_tls_or_the_registry_itself() {
        assert!(may_send_credentials(
            "https://auth.example.com/token",
            "http://127.0.0.1:5000"
        ));
        assert!(may_send_credentials(
            "http://127.0.0.1:5000/token",
            "http://127.0.0.1:5000"
        ));
        assert!(!may_send_credentials(
            "http://evil.example.com/token",
            "http://127.0.0.1:5000"
        ));
        assert!(may_send_credentials(
            "http://127.0.0.1:6000/t",
            "http://127.0.0.1:5000"
        ));
        assert!(!may_send_credentials(
            "http://127.0.0.3:5000/t",
            "http://127.0.0.1:5000"
        ));
    }
}
