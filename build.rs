//! `cachectl` is a position-independent executable, the platform's default: a tool that parses
//! records and blobs from a shared remote keeps its code at a random address (ASLR).
//!
//! Opt-in, for a machine where hit latency matters more than that: `CACHECTL_NO_PIE=1` at build
//! time links `cachectl` (not `cachectl-remote`) as a position-dependent executable on Linux.
//! The dynamic loader then has no relative relocations to apply at every start (about 10,700,
//! 150 k instructions and 50 page faults per hit; the measured gain is in docs/benchmarks.md,
//! "Start-up"). A static build (`-C target-feature=+crt-static`) chooses its own link mode and
//! is left alone.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CACHECTL_NO_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let no_pie = std::env::var_os("CACHECTL_NO_PIE").is_some_and(|v| v == "1");
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    if linux && no_pie && !crt_static {
        println!("cargo:rustc-link-arg-bin=cachectl=-no-pie");
    }
}
