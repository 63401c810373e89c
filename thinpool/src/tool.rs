//! Running the external tools the crate needs (mkfs, resize, thin_check,
//! thin_dump): one place that spawns them and turns a missing tool into
//! [`Error::Tool`].

use std::process::Command;

use crate::error::{Error, Result};

/// Runs `tool args...`; returns whether it succeeded, its stdout and stderr.
///
/// # Errors
/// [`Error::Tool`] when the tool cannot be started.
pub(crate) fn output(tool: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| Error::Tool {
            tool: tool.to_string(),
            source,
        })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `tool args...` and requires success; its stderr names the failure.
///
/// # Errors
/// [`Error::Tool`] when it cannot be started or fails.
pub(crate) fn run(tool: &str, args: &[&str]) -> Result<()> {
    let (ok, _, stderr) = output(tool, args)?;
    if ok {
        return Ok(());
    }
    Err(Error::Tool {
        tool: format!("{tool} {}", args.join(" ")),
        source: std::io::Error::other(stderr.trim().to_string()),
    })
}
