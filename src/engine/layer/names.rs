//! Entry names from a tar, checked and normalised before any filesystem
//! call: no absolute paths, no climbing above the root, no NUL bytes, and
//! the OCI whiteout conventions (`.wh.<name>`, `.wh..wh..opq`).

use super::error::Refusal;

/// The longest path (in bytes, without the NUL) `openat2` resolves.
const PATH_MAX: usize = 4095;

/// Whiteout prefix (OCI image-spec, "Whiteouts").
pub(crate) const WH_PREFIX: &[u8] = b".wh.";
/// Opaque-directory marker.
pub(crate) const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// Normalises a tar name into components, lexically: `.` and empty
/// components vanish, `a/..` cancels out. An empty result is the root.
///
/// # Errors
/// The [`Refusal`] for absolute names, NUL bytes, `..` above the root,
/// empty names and names over `PATH_MAX`.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::EmptyName);
    }
    if raw.contains(&0) {
        return Err(Refusal::NulByte);
    }
    if raw[0] == b'/' {
        return Err(Refusal::AbsolutePath);
    }
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if comps.pop().is_none() {
                    return Err(Refusal::EscapesRoot);
                }
            }
            _ => comps.push(c),
        }
    }
    if joined_len(&comps) > PATH_MAX {
        return Err(Refusal::NameTooLong);
    }
    Ok(comps)
}

fn joined_len(comps: &[&[u8]]) -> usize {
    comps.iter().map(|c| c.len() + 1).sum::<usize>()
}

/// Joins components with `/` (the key used for per-layer bookkeeping).
pub(crate) fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(joined_len(comps));
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// `parent/name`, or `name` at the root.
pub(crate) fn child(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + name.len() + 1);
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// What a leaf name means under the OCI whiteout conventions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary name.
    None,
    /// `.wh..wh..opq`: hide everything below from lower layers.
    Opaque,
    /// `.wh.<name>`: delete `<name>` from lower layers.
    Remove(&'a [u8]),
    /// Other `.wh..wh.*` names (aufs metadata): ignored, as Docker does.
    AufsMeta,
}

/// Classifies a leaf name (a single component).
///
/// # Errors
/// [`Refusal::BadWhiteout`] for `.wh.`, `.wh..` and `.wh...`.
pub(crate) fn whiteout(leaf: &[u8]) -> Result<Whiteout<'_>, Refusal> {
    if leaf == WH_OPAQUE {
        return Ok(Whiteout::Opaque);
    }
    let Some(target) = leaf.strip_prefix(WH_PREFIX) else {
        return Ok(Whiteout::None);
    };
    if target.starts_with(WH_PREFIX) {
        return Ok(Whiteout::AufsMeta);
    }
    match target {
        b"" | b"." | b".." => Err(Refusal::BadWhiteout),
        _ if target.contains(&b'/') || target.contains(&0) => Err(Refusal::BadWhiteout),
        _ => Ok(Whiteout::Remove(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, Refusal> {
        normalize(s.as_bytes()).map(|c| String::from_utf8(join(&c)).unwrap())
    }

    #[test]
    fn normalises_inside_the_root() {
        assert_eq!(norm("a/b").unwrap(), "a/b");
        assert_eq!(norm("./a//b/").unwrap(), "a/b");
        assert_eq!(norm("./a/../b").unwrap(), "b");
        assert_eq!(norm("./").unwrap(), "");
        assert_eq!(norm(".").unwrap(), "");
        assert_eq!(norm("a/..").unwrap(), "");
    }

    #[test]
    fn refuses_hostile_names() {
        assert_eq!(norm("/etc/passwd"), Err(Refusal::AbsolutePath));
        assert_eq!(norm(".."), Err(Refusal::EscapesRoot));
        assert_eq!(norm("../x"), Err(Refusal::EscapesRoot));
        assert_eq!(norm("a/../../x"), Err(Refusal::EscapesRoot));
        assert_eq!(norm("./../x"), Err(Refusal::EscapesRoot));
        assert_eq!(norm("a\0b"), Err(Refusal::NulByte));
        assert_eq!(norm(""), Err(Refusal::EmptyName));
        assert_eq!(norm(&"a/".repeat(3000)), Err(Refusal::NameTooLong));
    }

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(whiteout(b"x"), Ok(Whiteout::None));
        assert_eq!(whiteout(b".whx"), Ok(Whiteout::None));
        assert_eq!(whiteout(b".wh.x"), Ok(Whiteout::Remove(b"x")));
        assert_eq!(whiteout(b".wh..wh..opq"), Ok(Whiteout::Opaque));
        assert_eq!(whiteout(b".wh..wh.plnk"), Ok(Whiteout::AufsMeta));
        for bad in [&b".wh."[..], b".wh..", b".wh..."] {
            assert_eq!(whiteout(bad), Err(Refusal::BadWhiteout));
        }
    }
}
