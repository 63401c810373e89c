//! The `thinsnap` binary: parse, run, print the error chain, and exit with
//! a code that says what kind of failure it was.
#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches};

fn main() {
    thinpool::default_sigpipe();
    let mut cmd = thinsnap::cli::Cli::command();
    let cli = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|m| thinsnap::cli::Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| e.format(&mut cmd).exit());
    // The parser's tree is not used again: freeing it node by node costs
    // about as much as the parse itself; exit frees it all at once.
    std::mem::forget(cmd);
    if let Err(err) = thinsnap::cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(thinsnap::exit::code(&err));
    }
}
