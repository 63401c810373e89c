//! thinsnap: the command-line front end (and, later, the image engine) on
//! top of the `thinpool` crate. Everything that touches the kernel lives in
//! `thinpool`; this crate forbids `unsafe`.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod exit;
pub mod registry;
pub mod snapshot;

/// A command finished its work but found problems to report (exit code 6).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Problems(pub String);
