//! The `thinsnap` binary: parse, run, print the error chain, and exit with
//! a code that says what kind of failure it was.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    thinpool::default_sigpipe();
    let cli = thinsnap::cli::Cli::parse();
    if let Err(err) = thinsnap::cli::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(thinsnap::exit::code(&err));
    }
}
