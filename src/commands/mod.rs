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

use crate::config::{Config, Source};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The working directory and the configuration every command starts from.
pub fn load(dir: Option<(PathBuf, Source)>) -> Result<(PathBuf, Config)> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let cfg = Config::load(&cwd, dir)?;
    Ok((cwd, cfg))
}
