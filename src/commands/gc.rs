//! `cachectl gc`.

use crate::cli::GcArgs;
use crate::config::Source;
use crate::manage::gc::{self, GcOptions};
use crate::ui;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &GcArgs) -> Result<i32> {
    let (_, cfg) = super::load(dir)?;
    let (store, mut idx) = crate::manage::open(cfg.dir.value)?;
    if !store.root.exists() {
        if args.json {
            ui::print_json(&gc::GcReport {
                dry_run: args.dry_run,
                ..Default::default()
            })?;
        } else if !args.auto {
            println!(
                "No cache at {} yet: nothing to collect.",
                store.root.display()
            );
        }
        return Ok(0);
    }
    let opts = GcOptions {
        max_size: Some(args.max_size.unwrap_or(cfg.max_size.value)),
        max_age: args.max_age,
        policy: args.policy.unwrap_or(cfg.gc_policy.value),
        dry_run: args.dry_run,
        target_fraction: if args.auto { 0.9 } else { 1.0 },
    };
    if args.auto {
        // Only worth it when over the limit; never wait for a gc already running.
        let size = gc::disk_usage(&store.root);
        if size <= cfg.max_size.value {
            store.set_ledger(size);
            return Ok(0);
        }
    }
    if args.auto {
        // Stores that finish while this gc runs are measured by none: their own gc --auto
        // found the lock taken and skipped, and this one measured the disk before them. Go
        // again while the cache is over the limit (a few rounds at most).
        for _ in 0..3 {
            if gc::locked(&store, false, || gc::run(&store, &mut idx, &opts))?.is_none() {
                return Ok(0);
            }
            if gc::disk_usage(&store.root) <= cfg.max_size.value {
                break;
            }
        }
        return Ok(0);
    }
    let Some(report) = gc::locked(&store, true, || gc::run(&store, &mut idx, &opts))? else {
        return Ok(0);
    };
    if args.json {
        ui::print_json(&report)?;
        return Ok(0);
    }
    if args.dry_run && !report.evicted.is_empty() {
        let mut t = ui::table(&["Key", "Command", "Last used", "Size", "Reason"]);
        for e in &report.evicted {
            t.add_row(vec![
                ui::short(&e.key).to_owned(),
                e.command.clone(),
                e.last_used.clone(),
                ui::size(e.size_bytes),
                e.reason.to_owned(),
            ]);
        }
        println!("{t}");
    }
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    println!(
        "{verb} {}, {} and {}: {} freed; cache {} → {} (max {}).",
        ui::count(report.entries_removed, "entry", "entries"),
        ui::count(report.blobs_removed, "blob", "blobs"),
        ui::count(report.temp_files_removed, "temp file", "temp files"),
        ui::size(report.bytes_freed),
        ui::size(report.size_before_bytes),
        ui::size(report.size_after_bytes),
        ui::size(opts.max_size.unwrap_or_default()),
    );
    if report.reconciled_added + report.reconciled_removed + report.corrupt_records_removed > 0 {
        println!(
            "Index reconciled with the disk: {} entries added, {} forgotten, {} corrupt records removed.",
            report.reconciled_added, report.reconciled_removed, report.corrupt_records_removed
        );
    }
    Ok(0)
}
