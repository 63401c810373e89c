//! thinpool: device-mapper thin pools on loop files or block devices, thin
//! devices, and the crash-safe store that records them.
#![deny(unsafe_code)]
