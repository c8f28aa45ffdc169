//! One file per subcommand, each thin: resolve options, call the library, print.

pub mod config;
pub mod run;
