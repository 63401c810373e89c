//! The `thinsnap` binary: parse, run, map errors to exit codes.
#![forbid(unsafe_code)]

fn main() {}
