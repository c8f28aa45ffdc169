//! `cachectl run`.

use crate::cli::RunArgs;
use crate::config::{RunOptions, Source};
use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &RunArgs) -> Result<i32> {
    // Before anything else, so that a signal sent while the key is computed is not lost.
    crate::exec::install_forwarding();
    let (cwd, cfg) = super::load(dir)?;
    let opts = RunOptions::resolve(args, &cfg)?;
    let code = crate::run::run(&opts, cfg.dir.value, &cwd);
    // A SIGINT/SIGTERM during a hit (no child to pass it to) still ends us as it would have
    // ended the command.
    Ok(crate::exec::unhandled_signal().map_or(code, |sig| 128 + sig))
}
