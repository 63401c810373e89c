//! The distribution reference grammar's pieces: tags, path components and
//! registry hosts, each checked against its regular expression by hand
//! (no regex engine for three short patterns).

use super::{ReferenceErrorKind, TAG_LENGTH_MAX};

/// `[\w][\w.-]{0,127}`; the caller has checked that the tag is non-empty
/// when it came after a ':'.
pub(super) fn validate_tag(tag: &str) -> Result<(), ReferenceErrorKind> {
    use ReferenceErrorKind as K;
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.bytes().next() {
        None => return Err(K::MissingTag),
        Some(b'.' | b'-') => return Err(K::TagBadStart(tag.to_string())),
        Some(_) => {}
    }
    if !tag.bytes().all(|b| word(b) || b == b'.' || b == b'-') {
        return Err(K::InvalidTag(tag.to_string()));
    }
    if tag.len() > TAG_LENGTH_MAX {
        return Err(K::TagTooLong(tag.len()));
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
pub(super) fn validate_component(c: &str) -> Result<(), ReferenceErrorKind> {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return Err(ReferenceErrorKind::EmptyComponent);
    }
    let invalid = || ReferenceErrorKind::InvalidComponent(c.to_string());
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return Err(invalid());
    }
    // Between runs of [a-z0-9], each separator must be '.', '_', '__' or
    // one or more '-'.
    for sep in c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit()) {
        let ok = matches!(sep, "" | "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `(?:domain-name|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`, where domain-name is
/// labels `[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by `.`.
pub(super) fn validate_domain(d: &str) -> Result<(), ReferenceErrorKind> {
    let invalid = || ReferenceErrorKind::InvalidDomain(d.to_string());
    let port = if let Some(rest) = d.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(invalid)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(invalid());
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        }
    } else {
        let (host, port) = match d.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (d, None),
        };
        for label in host.split('.') {
            let ok = !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(invalid());
            }
        }
        port
    };
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => Err(invalid()),
        _ => Ok(()),
    }
}
