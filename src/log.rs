//! Diagnostics: `CACHECTL_LOG=debug` (or any tracing filter, e.g. `cachectl=trace`) prints what
//! cachectl decides and why to stderr. Off by default; with no subscriber installed a disabled
//! event costs one check of a global level, so the hit path pays nothing measurable.

/// Install the stderr logger if `CACHECTL_LOG` asks for one.
pub fn init() {
    let Some(filter) = std::env::var_os("CACHECTL_LOG").filter(|v| !v.is_empty()) else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::new(filter.to_string_lossy());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
