//! cachectl: cache the results of arbitrary commands.
//!
//! The binary (`src/main.rs`) is a thin shell around this library: it parses the command line
//! ([`cli`]), hands it to a command in [`commands`], and turns the result into an exit code.
//! Everything a command needs lives in a module named for what it owns:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | every settings source (flags, `CACHECTL_*`, `cachectl.toml`, user config) → one `Config` |
//! | [`key`] | the canonical key components and their blake3 key; computing them: walking, globbing and hashing inputs through the stat cache; describing them for `explain` |
//! | [`store`] | the local store: records, blobs, locks, the usage journal |
//! | [`run`] | one `cachectl run`: lookup, replay, lock, run, store, remote calls, policies |
//! | [`exec`] | spawning the command, capturing its streams live, forwarding signals |
//! | [`replay`] / [`outputs`] | writing stored streams back; collecting and restoring output files |

pub mod cli;
pub mod clock;
pub mod cmdline;
pub mod commands;
pub mod config;
pub mod error;
pub mod exec;
pub mod fsutil;
pub mod key;
pub mod located;
pub mod log;
pub mod manage;
pub mod outputs;
pub mod paths;
pub mod remote;
pub mod replay;
pub mod run;
pub mod signals;
pub mod stdio;
pub mod store;
pub mod trace;
pub mod ui;
pub mod warm;
pub mod warn;
