//! `cachectl ls`.

use crate::cli::{LsArgs, SortArg};
use crate::cmdline::CommandPattern;
use crate::config::Source;
use crate::error::usage;
use crate::store::index::EntryOrder;
use crate::ui;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// One `ls --json` element (documented schema).
#[derive(Serialize)]
struct Item {
    key: String,
    command: String,
    namespace: String,
    tags: Vec<String>,
    cwd: String,
    created: String,
    last_used: String,
    hits: u64,
    size_bytes: u64,
    exit_code: i32,
    duration_ms: u64,
}

pub fn run(dir: Option<(PathBuf, Source)>, args: &LsArgs) -> Result<i32> {
    let (_, cfg) = super::load(dir)?;
    let (_store, idx) = crate::manage::open(cfg.dir.value)?;
    let order = match args.sort {
        SortArg::LastUsed => EntryOrder::LastUsedFirst,
        SortArg::Size => EntryOrder::LargestFirst,
        SortArg::Hits => EntryOrder::MostHitsFirst,
    };
    let mut rows = idx.entries(order)?;
    if let Some(p) = &args.pattern {
        let glob = CommandPattern::new(p).map_err(|e| usage(format!("{e:#}")))?;
        rows.retain(|r| glob.matches(&r.command));
    }
    if args.json {
        let items: Vec<Item> = rows
            .into_iter()
            .map(|r| Item {
                created: ui::rfc3339(r.created_ms),
                last_used: ui::rfc3339(r.last_used_ms),
                key: r.key,
                command: r.command,
                namespace: r.namespace,
                tags: r.tags,
                cwd: r.cwd,
                hits: r.hits,
                size_bytes: r.size_bytes,
                exit_code: r.exit_code,
                duration_ms: r.duration_ms,
            })
            .collect();
        ui::print_json(&items)?;
        return Ok(0);
    }
    let mut t = ui::table(&[
        "Key",
        "Command",
        "Namespace",
        "Age",
        "Last used",
        "Hits",
        "Size",
        "Exit",
    ]);
    for r in &rows {
        t.add_row(vec![
            ui::short(&r.key).to_owned(),
            r.command.clone(),
            r.namespace.clone(),
            ui::ago(r.created_ms),
            ui::ago(r.last_used_ms),
            r.hits.to_string(),
            ui::size(r.size_bytes),
            r.exit_code.to_string(),
        ]);
    }
    if rows.is_empty() {
        println!("No entries.");
    } else {
        println!("{t}");
    }
    Ok(0)
}
