//! Integration tests for cachectl: every test runs the real binary (harness in
//! `integration/util.rs`). One test binary, with one module per area.

#[path = "integration/util.rs"]
mod util;

#[path = "integration/architecture.rs"]
mod architecture;
#[path = "integration/capture.rs"]
mod capture;
#[path = "integration/cli.rs"]
mod cli;
#[path = "integration/config.rs"]
mod config;
#[path = "integration/examples.rs"]
mod examples;
#[path = "integration/key.rs"]
mod key;
#[path = "integration/manage.rs"]
mod manage;
#[path = "integration/manage_gc.rs"]
mod manage_gc;
#[path = "integration/manage_inspect.rs"]
mod manage_inspect;
#[path = "integration/manage_invalidate.rs"]
mod manage_invalidate;
#[path = "integration/manage_stats.rs"]
mod manage_stats;
#[path = "integration/policy.rs"]
mod policy;
#[path = "integration/properties.rs"]
mod properties;
#[path = "integration/reliability.rs"]
mod reliability;
#[path = "integration/remote.rs"]
mod remote;
#[path = "integration/replay.rs"]
mod replay;
#[path = "integration/servers.rs"]
mod servers;
#[path = "integration/store.rs"]
mod store;
#[path = "integration/trace.rs"]
mod trace;
#[path = "integration/trace_auto.rs"]
mod trace_auto;
#[path = "integration/warm.rs"]
mod warm;
