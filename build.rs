//! Links the `thinsnap` binary as a position-dependent executable.
//!
//! Why: a PIE is loaded at a random address on every run, so the dynamic
//! loader must apply ~10k relocations first, and under an emulator (qemu's
//! TCG, where the VM tests and benchmarks run) every code page is
//! translated again because the addresses are new. At a fixed address the
//! loader has almost nothing to do and the translations are reused from
//! one run to the next: every command starts several times faster there.
//! Only the final link changes (the objects stay position-independent), so
//! proc macros, build scripts and the library are unaffected.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
