//! cachectl: cache the results of arbitrary commands.
//!
//! The binary (`src/main.rs`) is a thin shell around this library: it parses the command line
//! ([`cli`]), hands it to a command in [`commands`], and turns the result into an exit code.
//! Everything a command needs lives in a module named for what it owns:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | every settings source (flags, `CACHECTL_*`, `cachectl.toml`, user config) → one `Config` |
//! | [`key`] / [`inputs`] | the canonical key components and their blake3 key; walking and hashing inputs |
//! | [`store`] | the local store: records, blobs, locks, the usage journal |
//! | [`exec`] | spawning the command, capturing its streams live, forwarding signals |
//! | [`replay`] / [`outputs`] | writing stored streams back; collecting and restoring output files |

pub mod cli;
pub mod clock;
pub mod cmdline;
pub mod commands;
pub mod config;
pub mod error;
pub mod exec;
pub mod glob;
pub mod inputs;
pub mod key;
pub mod located;
pub mod log;
pub mod manage;
pub mod outputs;
pub mod paths;
pub mod remote;
pub mod replay;
pub mod runner;
pub mod statcache;
pub mod store;
pub mod ui;
pub mod warm;
pub mod warn;
