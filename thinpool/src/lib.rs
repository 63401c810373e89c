//! thinpool: device-mapper thin pools on loop files or block devices, thin
//! devices, and the crash-safe store that records them.
//!
//! Everything that touches the kernel goes through [`kernel::Kernel`]; the
//! real implementation uses the `devicemapper` and `loopdev-3` crates and
//! needs no udev, and a fake one lets the pool logic run in host tests.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod ext4;
pub mod fault;
pub mod fs;
pub mod kernel;
pub mod meta;
pub mod pool;
pub mod sparse;
pub mod status;
pub mod store;
mod sys;
mod tool;
pub mod units;

pub use error::{Error, Result};
pub use kernel::{fake::FakeKernel, real::RealKernel, Kernel};
pub use pool::{CheckReport, CreateOptions, DeviceReport, Pool, PoolReport, RecoveryReport};
pub use sys::default_sigpipe;
pub use units::{format_size, parse_size, Bytes, DataBlocks, Sectors, ThinId};
