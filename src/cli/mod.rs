//! Command-line parsing and dispatch.
