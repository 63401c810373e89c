//! Image references by the distribution reference grammar
//! (`[registry[:port]/]path[:tag][@sha256:<hex>]`), normalised the way
//! Docker does it.
//!
//! * `ubuntu` is `docker.io/library/ubuntu:latest`; `user/app` is
//!   `docker.io/user/app:latest`. The tag `latest` is added only when the
//!   user gave neither a tag nor a digest ([`Reference::is_name_only`]).
//! * The first `/`-separated component is a registry host when it contains
//!   `.` or `:` or is `localhost` (or is a bracketed IPv6 address);
//!   otherwise the whole name is a path on `docker.io`. `index.docker.io`
//!   is the same registry as `docker.io`, and a single-component path there
//!   lives under `library/`.
//! * Path components are lowercase: `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`.
//!   Registry hosts are DNS-like names or bracketed IPv6 addresses, with an
//!   optional numeric port. Tags are `[\w][\w.-]{0,127}`. Digests are strict
//!   sha256 ([`Digest`]). The normalised name is at most 255 characters.
//! * A bare 64-hex string is an image id, never a reference. Shorter hex
//!   strings are valid references, but the image store tries them first as
//!   image id prefixes ([`is_short_id_candidate`]).
//!
//! [`Reference::matches_pattern`] implements `images --filter reference=`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::digest::Digest;
use glob::glob_match;
use grammar::{validate_component, validate_domain, validate_tag};

/// The registry that names without a host refer to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The old name of [`DEFAULT_DOMAIN`], normalised to it.
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of single-component names on [`DEFAULT_DOMAIN`].
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag added to a reference given without tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest normalised name (`domain/path`).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest tag.
pub const TAG_LENGTH_MAX: usize = 128;

const FORM: &str = "[registry[:port]/]name[:tag][@sha256:<64 hex>], e.g. ubuntu:22.04";

/// An image reference: registry, repository path, and optionally tag and
/// digest. Equality, ordering and hashing follow the normalised string.
#[derive(Clone, Debug)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
    name_only: bool,
}

/// Why a string was refused as a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {kind}")]
pub struct ReferenceError {
    /// The text given (cut to 100 characters).
    pub input: String,
    /// What is wrong with it.
    pub kind: ReferenceErrorKind,
}

/// What is wrong with a reference; the message also says what a valid one
/// looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceErrorKind {
    /// Nothing was given.
    #[error("empty reference; expected {FORM}")]
    Empty,
    /// Spaces, tabs or newlines anywhere.
    #[error("references contain no whitespace; expected {FORM}")]
    Whitespace,
    /// A full 64-hex image id.
    #[error(
        "a 64-character hex string is an image id, not a reference; \
         use it where an image id is accepted, or give a name such as ubuntu:22.04"
    )]
    ImageId,
    /// Nothing before `:` or `@`.
    #[error("missing repository name before ':' or '@'; expected {FORM}")]
    MissingName,
    /// A registry address with no repository path after it.
    #[error("a registry address needs a repository path after it, e.g. [::1]:5000/app")]
    MissingPath,
    /// `name:` with nothing after the `:`.
    #[error("':' without a tag; write name:tag (e.g. ubuntu:22.04) or leave out the ':'")]
    MissingTag,
    /// `name@` with nothing after the `@`.
    #[error("'@' without a digest; write name@sha256:<64 lowercase hex characters>")]
    MissingDigest,
    /// The digest after `@` did not parse.
    #[error("invalid digest ({0}); write name@sha256:<64 lowercase hex characters>")]
    InvalidDigest(&'static str),
    /// Uppercase letters in the repository path.
    #[error(
        "repository name must be lowercase (e.g. myapp, not MyApp); \
         only the registry host and the tag may contain uppercase letters"
    )]
    Uppercase,
    /// `a//b`, a leading or a trailing `/`.
    #[error(
        "empty path component (leading, trailing or doubled '/'); \
         components are joined by single '/', e.g. user/app"
    )]
    EmptyComponent,
    /// A path component outside the grammar.
    #[error(
        "invalid path component {0:?}: lowercase letters and digits, separated by \
         '.', '_', '__' or dashes, e.g. my-app or my_app.v2"
    )]
    InvalidComponent(String),
    /// A registry host outside the grammar.
    #[error(
        "invalid registry host {0:?}: DNS labels (letters, digits, inner '-') joined \
         by '.', or a bracketed IPv6 address, with an optional numeric port, \
         e.g. registry.example.com:5000 or [::1]:5000"
    )]
    InvalidDomain(String),
    /// The normalised name is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name is {0} characters long once normalised; at most 255 are allowed")]
    NameTooLong(usize),
    /// The tag is longer than [`TAG_LENGTH_MAX`].
    #[error("tag is {0} characters long; at most 128 are allowed")]
    TagTooLong(usize),
    /// The tag starts with `.` or `-`.
    #[error(
        "tag {0:?} starts with '.' or '-'; a tag starts with a letter, digit or '_', e.g. v1.2"
    )]
    TagBadStart(String),
    /// Other characters in the tag.
    #[error(
        "invalid tag {0:?}: letters, digits, '_', '.' and '-' only, \
         e.g. 22.04 or v1.2-rc_1"
    )]
    InvalidTag(String),
}

impl ReferenceError {
    fn new(input: &str, kind: ReferenceErrorKind) -> ReferenceError {
        let mut cut: String = input.chars().take(100).collect();
        if cut.len() < input.len() {
            cut.push('…');
        }
        ReferenceError { input: cut, kind }
    }
}

impl Reference {
    /// Parses and normalises `s`.
    ///
    /// # Errors
    /// [`ReferenceError`] when `s` is not a reference by the grammar (see
    /// the module documentation), or is a bare 64-hex image id.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        use ReferenceErrorKind as K;
        let err = |kind| ReferenceError::new(s, kind);
        if s.is_empty() {
            return Err(err(K::Empty));
        }
        if s.chars().any(char::is_whitespace) {
            return Err(err(K::Whitespace));
        }
        if s.len() == 64 && s.bytes().all(is_lower_hex) {
            return Err(err(K::ImageId));
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                if d.is_empty() {
                    return Err(err(K::MissingDigest));
                }
                let d = Digest::from_str(d).map_err(|e| err(K::InvalidDigest(e.reason)))?;
                (rest, Some(d))
            }
            None => (s, None),
        };

        // The tag starts at the first ':' after the last '/'; a ':' before
        // it belongs to the registry's port (or an IPv6 address).
        let last = rest.rfind('/').map_or(0, |i| i + 1);
        if last == 0 && rest.starts_with('[') {
            return Err(err(K::MissingPath));
        }
        let (name, tag) = match rest[last..].find(':') {
            Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err(K::MissingName));
        }
        if let Some(t) = tag {
            validate_tag(t).map_err(err)?;
        }

        let (domain, path) = split_name(name).map_err(err)?;

        let name_only = tag.is_none() && digest.is_none();
        let tag = match tag {
            Some(t) => Some(t.to_string()),
            None if name_only => Some(DEFAULT_TAG.to_string()),
            None => None,
        };
        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag,
            digest,
            name_only,
        })
    }

    /// The registry host, with its port if one was given
    /// (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path on the registry (`library/ubuntu`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag: the one given, `latest` when neither tag nor digest was
    /// given, `None` for a digest-only reference.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The fully qualified name, `domain/path` (`docker.io/library/ubuntu`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The name as Docker shows it: `docker.io/` and a lone `library/`
    /// elided (`ubuntu`, `user/app`, `localhost:5000/ns/repo`).
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The familiar name with tag and digest (`ubuntu:latest`,
    /// `user/app@sha256:…`).
    pub fn familiar(&self) -> String {
        self.with_suffix(self.familiar_name())
    }

    /// The same repository (and digest) with tag `tag`.
    ///
    /// # Errors
    /// [`ReferenceError`] when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        let check = if tag.is_empty() {
            Err(ReferenceErrorKind::MissingTag)
        } else {
            validate_tag(tag)
        };
        check.map_err(|kind| ReferenceError::new(&format!("{}:{tag}", self.name()), kind))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            name_only: false,
            ..self.clone()
        })
    }

    /// True when the user gave neither tag nor digest (`ubuntu`); the tag
    /// is then the implied `latest`.
    pub fn is_name_only(&self) -> bool {
        self.name_only
    }

    /// The tag, or `latest` for a digest-only reference.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or(DEFAULT_TAG)
    }

    /// Whether this reference matches an `images --filter reference=`
    /// pattern. The pattern is matched like Go's `path.Match` (`*` within a
    /// path component, `?` one character, `[a-z]` classes, `\` escapes)
    /// against the familiar name, or, when the pattern has a `:` or `@`
    /// after its last `/`, against `familiar_name:tag` and the full familiar
    /// string. So `ubuntu` matches every ubuntu tag, `ubuntu:2*` the tags
    /// starting with 2, and `*/app` matches `user/app`. A malformed pattern
    /// matches nothing.
    pub fn matches_pattern(&self, pattern: &str) -> bool {
        let last = pattern.rfind('/').map_or(pattern, |i| &pattern[i + 1..]);
        let name = self.familiar_name();
        if !last.contains([':', '@']) {
            return glob_match(pattern, &name);
        }
        if let Some(tag) = &self.tag {
            if glob_match(pattern, &format!("{name}:{tag}")) {
                return true;
            }
        }
        glob_match(pattern, &self.familiar())
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }

    fn key(&self) -> (&str, &str, Option<&str>, Option<&Digest>) {
        (
            &self.domain,
            &self.path,
            self.tag.as_deref(),
            self.digest.as_ref(),
        )
    }
}

/// The registry host and the path of `name` (a reference without tag or
/// digest), checked and normalised: `index.docker.io` is `docker.io`, and a
/// one-component path there is under `library/`.
fn split_name(name: &str) -> Result<(&str, String), ReferenceErrorKind> {
    use ReferenceErrorKind as K;
    let (domain, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            validate_domain(first)?;
            (first, path)
        }
        _ => (DEFAULT_DOMAIN, name),
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(K::Uppercase);
    }
    for component in path.split('/') {
        validate_component(component)?;
    }

    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path.to_string()
    };
    let len = domain.len() + 1 + path.len();
    if len > NAME_TOTAL_LENGTH_MAX {
        return Err(K::NameTooLong(len));
    }
    Ok((domain, path))
}

/// True when `s` may be an image id or id prefix: 1 to 64 lowercase hex
/// characters, optionally after `sha256:`. The image store resolves such
/// strings as (unique) id prefixes before trying them as references.
pub fn is_short_id_candidate(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (1..=64).contains(&hex.len()) && hex.bytes().all(is_lower_hex)
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// The fully normalised form: `docker.io/library/ubuntu:latest`,
/// `name@sha256:…`, `name:tag@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl PartialEq for Reference {
    fn eq(&self, other: &Reference) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Reference {}

impl Hash for Reference {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}

impl PartialOrd for Reference {
    fn partial_cmp(&self, other: &Reference) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Reference {
    fn cmp(&self, other: &Reference) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Serialised as the normalised string.
impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

mod glob;
mod grammar;
#[cfg(test)]
mod tests;
