//! One file per subcommand, each thin: resolve options, call the library, print. The logic is in
//! the library, in the module that owns it: `run` for `run`; `manage` for the commands that
//! work over the index (`stats`, `gc`, `invalidate`, `verify`, `explain`); `warm`; the store
//! and its index for the plain look-ups of `ls` and `show` (typed queries, `Store::lookup`,
//! `Store::keys_with_prefix`). A command file holds argument checks, usage errors and output
//! formats, nothing a second caller would need.

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
