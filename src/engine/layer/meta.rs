//! Small value types shared by the tar reader, the tree walker and the tar
//! writer: the kind of a filesystem entry and a nanosecond modification
//! time with its PAX text form.

/// The kind of a filesystem object or tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// Only in tars: a second name for an already extracted object.
    Hardlink,
    Char,
    Block,
    Fifo,
    /// Only on disk: never written to a tar.
    Socket,
}

impl Kind {
    /// The kind of an `st_mode`, or `None` for unknown types.
    pub(crate) fn of_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink,
            0o020000 => Kind::Char,
            0o060000 => Kind::Block,
            0o010000 => Kind::Fifo,
            0o140000 => Kind::Socket,
            _ => return None,
        })
    }
}

/// A modification time with nanoseconds (`nanos < 1e9`, also for times
/// before 1970: -0.5 s is `secs: -1, nanos: 500_000_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

impl Mtime {
    /// The PAX `mtime` value, formatted as Go's `archive/tar` does so
    /// layers written here hash like theirs would.
    pub(crate) fn to_pax(self) -> String {
        if self.nanos == 0 {
            return self.secs.to_string();
        }
        let (sign, secs, nanos) = if self.secs < 0 {
            ("-", -(self.secs + 1), 1_000_000_000 - self.nanos)
        } else {
            ("", self.secs, self.nanos)
        };
        let s = format!("{sign}{secs}.{nanos:09}");
        s.trim_end_matches('0').to_string()
    }

    /// Parses a PAX time (`[-]secs[.fraction]`); digits past nanoseconds
    /// are dropped.
    pub(crate) fn from_pax(s: &[u8]) -> Option<Mtime> {
        let s = std::str::from_utf8(s).ok()?;
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let negative = whole.starts_with('-');
        let digits = whole.strip_prefix('-').unwrap_or(whole);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: i64 = digits.parse().ok()?;
        let mut nanos: u32 = 0;
        for (i, b) in frac.bytes().take(9).enumerate() {
            nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        if !negative {
            return Some(Mtime { secs, nanos });
        }
        // "-1.5" is 1.5 s before the epoch: secs -2, nanos 0.5e9.
        if nanos == 0 {
            Some(Mtime { secs: -secs, nanos })
        } else {
            Some(Mtime {
                secs: -secs - 1,
                nanos: 1_000_000_000 - nanos,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_time_round_trips() {
        for (secs, nanos, text) in [
            (0, 0, "0"),
            (1_700_000_000, 0, "1700000000"),
            (1, 500_000_000, "1.5"),
            (1, 1, "1.000000001"),
            (-1, 500_000_000, "-0.5"),
            (-2, 0, "-2"),
            (-3, 250_000_000, "-2.75"),
        ] {
            let t = Mtime { secs, nanos };
            assert_eq!(t.to_pax(), text);
            assert_eq!(Mtime::from_pax(text.as_bytes()), Some(t), "{text}");
        }
        assert_eq!(
            Mtime::from_pax(b"1.1234567899"),
            Some(Mtime {
                secs: 1,
                nanos: 123_456_789
            })
        );
        for bad in ["", "-", "1.x", "a", "1e5", "--1"] {
            assert_eq!(Mtime::from_pax(bad.as_bytes()), None, "{bad}");
        }
    }
}
