//! Output helpers: borderless tables in the style of `docker ps`, JSON,
//! and human sizes and times.

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// A table with a header row and no borders.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// Prints a table, trimming the padding comfy-table puts at line ends.
pub fn print_table(t: &Table) {
    for line in t.to_string().lines() {
        println!(
            "{}",
            line.trim_end().strip_prefix(' ').unwrap_or(line.trim_end())
        );
    }
}

/// Prints a value as pretty JSON.
///
/// # Errors
/// Serialisation errors (none for the types used here).
pub fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A human size, or `-` when unknown.
pub fn size(b: Option<thinpool::Bytes>) -> String {
    b.map(thinpool::format_size).unwrap_or_else(|| "-".into())
}
