//! `cachectl run`.

use crate::cli::RunArgs;
use crate::config::{Config, RunOptions, Source};
use anyhow::{Context, Result};
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &RunArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let cfg = Config::load(&cwd, dir)?;
    let opts = RunOptions::resolve(args, &cfg)?;
    Ok(crate::runner::run(&opts, cfg.dir.value, &cwd))
}
