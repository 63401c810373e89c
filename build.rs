//! Links the `thinsnap` binary as a position-dependent executable, and
//! lets it link statically.
//!
//! Why non-PIE: a PIE is loaded at a random address on every run, so the
//! dynamic loader must apply ~10k relocations first, and under an emulator
//! (qemu's TCG, where the VM tests and benchmarks run) every code page is
//! translated again because the addresses are new. At a fixed address the
//! loader has almost nothing to do and the translations are reused from
//! one run to the next: every command starts several times faster there.
//! Only the final link changes (the objects stay position-independent), so
//! proc macros, build scripts and the library are unaffected.
//!
//! Why an empty `libdevmapper.a` in static builds (`tools/build-release`,
//! `-C target-feature=+crt-static`): the `devicemapper-sys` crate asks the
//! linker for libdevmapper, but thinsnap calls none of its functions (it
//! speaks the dm ioctls itself; a dynamic build drops the library as
//! unneeded), and Debian ships no static libdevmapper to satisfy the
//! request. A static binary starts in a third of the time in the VM: no
//! dynamic loader, no shared libraries to map.

use std::path::PathBuf;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") {
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
        // An ar archive with no members is its 8-byte magic alone.
        if let Err(e) = std::fs::write(out.join("libdevmapper.a"), b"!<arch>\n") {
            panic!(
                "cannot write an empty libdevmapper.a in {}: {e}",
                out.display()
            );
        }
        println!("cargo:rustc-link-search=native={}", out.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
