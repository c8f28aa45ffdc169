//! `cachectl run`.

use crate::cli::RunArgs;
use crate::config::{RunOptions, Source};
use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &RunArgs) -> Result<i32> {
    let (cwd, cfg) = super::load(dir)?;
    let opts = RunOptions::resolve(args, &cfg)?;
    Ok(crate::runner::run(&opts, cfg.dir.value, &cwd))
}
