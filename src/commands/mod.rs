//! One file per subcommand, each thin: resolve options, call the library, print.

pub mod config;
pub mod docs;
pub mod explain;
pub mod gc;
pub mod invalidate;
pub mod ls;
pub mod remote;
pub mod run;
pub mod show;
pub mod stats;
pub mod verify;
pub mod warm;

/// The working directory and the configuration every command starts from.
pub use crate::config::load_from_cwd as load;
