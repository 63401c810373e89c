//! thinsnap: the image engine and command-line front end on top of the
//! `thinpool` crate. Everything that touches the kernel lives in `thinpool`.
#![forbid(unsafe_code)]

pub mod cli;
