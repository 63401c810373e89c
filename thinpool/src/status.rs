//! Parsing of the kernel's thin-pool and thin status lines
//! (Documentation/admin-guide/device-mapper/thin-provisioning.rst).

use serde::Serialize;

use crate::units::{DataBlocks, Sectors};

/// The pool's I/O mode as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// Normal.
    ReadWrite,
    /// Metadata problem: no changes possible until checked.
    ReadOnly,
    /// Data space is exhausted.
    OutOfDataSpace,
}

/// A working pool's status line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolStatusLine {
    /// Transaction id.
    pub transaction_id: u64,
    /// Used metadata blocks (4 KiB each).
    pub meta_used: u64,
    /// Total metadata blocks.
    pub meta_total: u64,
    /// Used data blocks.
    pub data_used: DataBlocks,
    /// Total data blocks.
    pub data_total: DataBlocks,
    /// Whether a metadata snapshot is held.
    pub held_root: bool,
    /// I/O mode.
    pub mode: PoolMode,
    /// Discards pass down to the data device.
    pub discard_passdown: bool,
    /// Writes fail at once when full (rather than queue).
    pub error_if_no_space: bool,
    /// The kernel asks for `thin_check` before further use.
    pub needs_check: bool,
}

/// What the kernel reports for a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolStatus {
    /// Running.
    Working(PoolStatusLine),
    /// Failed: the metadata is unusable.
    Fail,
    /// The status could not be read.
    Error,
}

fn ratio(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Parses a `thin-pool` status line.
pub fn parse_pool_status(line: &str) -> Option<PoolStatus> {
    let w: Vec<&str> = line.split_whitespace().collect();
    match w.first().copied() {
        Some("Fail") => return Some(PoolStatus::Fail),
        Some("Error") => return Some(PoolStatus::Error),
        _ => {}
    }
    if w.len() < 5 {
        return None;
    }
    let (meta_used, meta_total) = ratio(w[1])?;
    let (data_used, data_total) = ratio(w[2])?;
    let mode = match w[4] {
        "rw" => PoolMode::ReadWrite,
        "ro" => PoolMode::ReadOnly,
        "out_of_data_space" => PoolMode::OutOfDataSpace,
        _ => return None,
    };
    let rest = &w[5..];
    Some(PoolStatus::Working(PoolStatusLine {
        transaction_id: w[0].parse().ok()?,
        meta_used,
        meta_total,
        data_used: DataBlocks(data_used),
        data_total: DataBlocks(data_total),
        held_root: w[3] != "-",
        mode,
        discard_passdown: rest.contains(&"discard_passdown"),
        error_if_no_space: rest.contains(&"error_if_no_space"),
        needs_check: rest.contains(&"needs_check"),
    }))
}

/// Parses a `thin` status line into mapped sectors (`None` for `Fail`).
pub fn parse_thin_status(line: &str) -> Option<Sectors> {
    let first = line.split_whitespace().next()?;
    first.parse().ok().map(Sectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_working_pool() {
        let s = parse_pool_status(
            "5 151/524288 22/1638400 - rw discard_passdown error_if_no_space - 262144",
        )
        .unwrap();
        let PoolStatus::Working(w) = s else {
            panic!("not working")
        };
        assert_eq!(w.transaction_id, 5);
        assert_eq!((w.meta_used, w.meta_total), (151, 524288));
        assert_eq!(
            (w.data_used, w.data_total),
            (DataBlocks(22), DataBlocks(1638400))
        );
        assert_eq!(w.mode, PoolMode::ReadWrite);
        assert!(w.discard_passdown && w.error_if_no_space && !w.needs_check && !w.held_root);
    }

    #[test]
    fn parses_flags_and_failures() {
        let PoolStatus::Working(w) = parse_pool_status("9 10/100 100/100 1234 out_of_data_space no_discard_passdown queue_if_no_space needs_check 0").unwrap() else {
            panic!()
        };
        assert_eq!(w.mode, PoolMode::OutOfDataSpace);
        assert!(w.needs_check && w.held_root && !w.discard_passdown && !w.error_if_no_space);
        let PoolStatus::Working(ro) =
            parse_pool_status("1 1/2 1/2 - ro discard_passdown error_if_no_space - 0").unwrap()
        else {
            panic!()
        };
        assert_eq!(ro.mode, PoolMode::ReadOnly);
        assert_eq!(parse_pool_status("Fail"), Some(PoolStatus::Fail));
        assert_eq!(parse_pool_status("garbage"), None);
        assert_eq!(parse_thin_status("2048 4095"), Some(Sectors(2048)));
        assert_eq!(parse_thin_status("Fail"), None);
    }
}
