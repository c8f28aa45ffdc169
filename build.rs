//! Link the `cachectl` binary as a position-dependent executable on Linux.
//!
//! A cache hit is over in well under a millisecond, so the dynamic loader's work is a large
//! share of it. A PIE makes the loader apply about 10,700 relative relocations to the binary
//! at every start, each writing into a page that then has to be copied: 150 k instructions and
//! 50 page faults per hit (callgrind and `perf stat`, docs/benchmarks.md). A non-PIE executable
//! has its addresses fixed at link time, so none of that happens. The cost is that the
//! executable's own code is not placed at a random address (shared libraries, the heap and the
//! stack still are). `cachectl-remote`, which talks to the network, stays a PIE.
//!
//! Set `CACHECTL_PIE=1` when building to keep `cachectl` a PIE. A static build
//! (`-C target-feature=+crt-static`, see docs/run.md) chooses its own link mode and is left alone.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CACHECTL_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let keep_pie = std::env::var_os("CACHECTL_PIE").is_some_and(|v| v == "1");
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
    if linux && !keep_pie && !crt_static {
        println!("cargo:rustc-link-arg-bin=cachectl=-no-pie");
    }
}
