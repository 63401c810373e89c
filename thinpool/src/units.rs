//! Unit types for sizes and thin ids, and human-readable size parsing and
//! formatting. Sizes never cross an API as a bare `u64`.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::Error;

/// Bytes in a sector, as the kernel's block layer counts them.
pub const SECTOR_SIZE: u64 = 512;

/// A size or offset in bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Bytes(pub u64);

/// A size in 512-byte sectors.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Sectors(pub u64);

/// A count of pool data blocks (each `block_size` long).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct DataBlocks(pub u64);

impl Bytes {
    /// Whole sectors in this many bytes (rounded down).
    pub fn sectors(self) -> Sectors {
        Sectors(self.0 / SECTOR_SIZE)
    }
}

impl Sectors {
    /// The same length in bytes.
    pub fn bytes(self) -> Bytes {
        Bytes(self.0 * SECTOR_SIZE)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(*self))
    }
}

/// The largest thin device id the kernel accepts (24 bits).
pub const MAX_THIN_ID: u32 = 0x00ff_ffff;

/// A thin device id: checked to fit the kernel's 24 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ThinId(u32);

impl ThinId {
    /// A thin id from any integer.
    ///
    /// # Errors
    /// [`Error::ThinIdOutOfRange`] when the value needs more than 24 bits.
    pub fn new(value: u64) -> Result<ThinId, Error> {
        match u32::try_from(value) {
            Ok(v) if v <= MAX_THIN_ID => Ok(ThinId(v)),
            _ => Err(Error::ThinIdOutOfRange { value }),
        }
    }

    /// The id as the kernel's messages spell it.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for ThinId {
    type Error = Error;
    fn try_from(v: u32) -> Result<Self, Error> {
        ThinId::new(u64::from(v))
    }
}

impl From<ThinId> for u32 {
    fn from(id: ThinId) -> u32 {
        id.0
    }
}

impl fmt::Display for ThinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

const UNITS: [(char, u32); 6] = [
    ('K', 10),
    ('M', 20),
    ('G', 30),
    ('T', 40),
    ('P', 50),
    ('E', 60),
];

/// Parses a human size: `4096`, `64K`, `512M`, `100G`, `1.5T`, with an
/// optional `i`/`B`/`iB` after the unit (`10GiB`). Units are binary.
///
/// # Errors
/// [`Error::InvalidSize`] for anything else, or a size past `u64`.
pub fn parse_size(input: &str) -> Result<Bytes, Error> {
    let bad = |reason: &str| Error::InvalidSize {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad("expected a number, such as 512M or 100G"));
    }
    let unit = unit.trim();
    let unit_upper = unit.to_ascii_uppercase();
    let stripped = unit_upper
        .strip_suffix("IB")
        .or_else(|| unit_upper.strip_suffix('B'))
        .unwrap_or(&unit_upper);
    let shift = match stripped.chars().next() {
        None => 0,
        Some(c) if stripped.len() == 1 => UNITS
            .iter()
            .find(|(u, _)| *u == c)
            .map(|(_, s)| *s)
            .ok_or_else(|| bad("unknown unit: use K, M, G, T, P or E"))?,
        Some(_) => return Err(bad("unknown unit: use K, M, G, T, P or E")),
    };
    if let Some((whole, frac)) = num.split_once('.') {
        let whole: u64 = whole.parse().map_err(|_| bad("not a number"))?;
        if frac.is_empty() || frac.contains('.') || frac.len() > 6 {
            return Err(bad("not a number"));
        }
        let frac_val: u64 = frac.parse().map_err(|_| bad("not a number"))?;
        let scale = 10u64.pow(u32::try_from(frac.len()).map_err(|_| bad("not a number"))?);
        let unit_bytes = 1u128 << shift;
        let total =
            u128::from(whole) * unit_bytes + u128::from(frac_val) * unit_bytes / u128::from(scale);
        return u64::try_from(total)
            .map(Bytes)
            .map_err(|_| bad("too large"));
    }
    let n: u64 = num.parse().map_err(|_| bad("not a number"))?;
    n.checked_mul(1u64 << shift)
        .map(Bytes)
        .ok_or_else(|| bad("too large"))
}

/// Formats a size the way `parse_size` reads it back: `100G`, `1.5G`,
/// `512M`, `4K`, `300B`; one decimal at most.
pub fn format_size(b: Bytes) -> String {
    let v = b.0;
    for (unit, shift) in UNITS.iter().rev() {
        let base = 1u64 << shift;
        if v >= base {
            let tenths = (u128::from(v) * 10 + u128::from(base) / 2) / u128::from(base);
            return if tenths % 10 == 0 {
                format!("{}{unit}", tenths / 10)
            } else {
                format!("{}.{}{unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{v}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4096").unwrap(), Bytes(4096));
        assert_eq!(parse_size("64K").unwrap(), Bytes(65536));
        assert_eq!(parse_size("512M").unwrap(), Bytes(512 << 20));
        assert_eq!(parse_size("100G").unwrap(), Bytes(100 << 30));
        assert_eq!(parse_size("10GiB").unwrap(), Bytes(10 << 30));
        assert_eq!(parse_size("2gb").unwrap(), Bytes(2 << 30));
        assert_eq!(parse_size("1.5G").unwrap(), Bytes(3 << 29));
        for bad in [
            "",
            "G",
            "12X",
            "1.2.3G",
            "-1G",
            "99999999999999999999",
            "16E",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn formats_sizes_round_trip() {
        assert_eq!(format_size(Bytes(100 << 30)), "100G");
        assert_eq!(format_size(Bytes(3 << 29)), "1.5G");
        assert_eq!(format_size(Bytes(512 << 20)), "512M");
        assert_eq!(format_size(Bytes(300)), "300B");
        for s in ["100G", "1.5G", "512M", "64K"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
    }

    #[test]
    fn thin_ids_are_24_bit() {
        assert_eq!(ThinId::new(0xff_ffff).unwrap().get(), 0xff_ffff);
        assert!(
            matches!(ThinId::new(1 << 24), Err(Error::ThinIdOutOfRange { value }) if value == 1 << 24)
        );
        assert!(ThinId::try_from(u32::MAX).is_err());
    }

    #[test]
    fn thin_id_deserialisation_is_checked() {
        let bytes = bincode::serialize(&(1u32 << 24)).unwrap();
        assert!(bincode::deserialize::<ThinId>(&bytes).is_err());
    }
}
