//! `cachectl invalidate`.

use crate::cli::InvalidateArgs;
use crate::config::Source;
use crate::manage::invalidate::{self, Selector};
use crate::ui;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &InvalidateArgs) -> Result<i32> {
    let (cwd, cfg) = super::load(dir)?;
    let sel = Selector {
        pattern: args.pattern.clone(),
        regex: args.regex,
        namespace: args.namespace.clone(),
        tag: args.tag.clone(),
        input: args
            .input
            .as_ref()
            .map(|p| invalidate::absolute_input(&cwd, p)),
        key: args.key.clone(),
        older_than: args.older_than,
        all: args.all,
    };
    let (store, mut idx) = crate::manage::open(cfg.dir.value)?;
    let report = invalidate::run(&store, &mut idx, &sel, args.dry_run)?;
    if args.json {
        ui::print_json(&report)?;
        return Ok(0);
    }
    if args.dry_run {
        for e in &report.entries {
            println!("{}  {}", ui::short(&e.key), e.command);
        }
        println!(
            "Would remove {} ({}).",
            ui::count(report.entries_removed, "entry", "entries"),
            ui::size(report.bytes_removed)
        );
    } else {
        println!(
            "Removed {} ({}).",
            ui::count(report.entries_removed, "entry", "entries"),
            ui::size(report.bytes_removed)
        );
    }
    Ok(0)
}
