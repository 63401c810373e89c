//! The one module allowed `unsafe`: block-device ioctls that no chosen
//! crate offers. Each call is wrapped in a safe function.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

use nix::errno::Errno;

// BLKDISCARD is _IO(0x12, 119) taking a `u64[2]` {offset, length}.
nix::ioctl_write_ptr_bad!(blkdiscard_raw, nix::request_code_none!(0x12, 119), [u64; 2]);

/// Discards `len` bytes from `offset` on an open block device.
///
/// # Errors
/// The ioctl's errno.
pub fn blkdiscard(dev: &impl AsRawFd, offset: u64, len: u64) -> Result<(), Errno> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: the fd is open for the lifetime of `dev`, and `range` is a
    // live, properly aligned [u64; 2] that the kernel only reads.
    unsafe { blkdiscard_raw(dev.as_raw_fd(), &range) }.map(|_| ())
}

/// Restores the default action for SIGPIPE, so that a command whose output
/// pipe closes (`thinsnap inspect x | head`) ends quietly like other Unix
/// tools instead of failing on every later write. Rust starts programs
/// with SIGPIPE ignored.
pub fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no Rust handler, so no handler code can run
    // in signal context; this is called first thing in main, before any
    // thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
