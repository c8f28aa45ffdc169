//! `cachectl warm`: exit 0 if nothing failed, 1 if something did, 130 after Ctrl-C.

use crate::cli::WarmArgs;
use crate::config::Source;
use crate::store::Store;
use crate::ui;
use crate::warm::manifest::{self, Configs};
use crate::warm::{self, WarmOptions};
use anyhow::{Result, bail};
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &WarmArgs) -> Result<i32> {
    if !args.from_history && (args.top.is_some() || args.since.is_some()) {
        return Err(crate::error::usage(
            "--top and --since choose commands from the usage history; fix: add --from-history (and drop the manifest)",
        ));
    }
    let (_, cfg) = super::load(dir.clone())?;
    let mut configs = Configs::new(dir);
    let Some(root) = cfg.dir.value.clone() else {
        bail!("no cache directory: set CACHECTL_DIR or HOME, or pass --dir");
    };
    // Validate everything before anything runs.
    let commands = if args.from_history {
        let (store, idx) = crate::manage::open(Some(root.clone()))?;
        crate::warm::history::commands(
            &store,
            &idx,
            args.top.unwrap_or(20),
            args.since,
            &mut configs,
        )?
    } else {
        let path = args
            .manifest
            .as_ref()
            .expect("clap requires a manifest without --from-history");
        let m = manifest::load(path, &mut configs)?;
        for note in &m.notes {
            eprintln!("cachectl: warning: {note}");
        }
        m.commands
    };
    let mut commands = commands;
    for c in &mut commands {
        c.args.remote = args.remote;
        c.args.session = args.session.clone();
        if args.trace.is_some() {
            c.args.trace = args.trace;
        }
    }
    let store = Store::at(root);
    store.check_safe()?;
    let opts = WarmOptions {
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        dry_run: args.dry_run,
        force: args.force,
        keep_going: args.keep_going,
    };
    let quiet = args.json;
    let report = warm::run(commands, &opts, &|r| {
        if !quiet {
            eprintln!("cachectl: FAILED {} ({})", r.command, r.origin);
            for line in r.error.as_deref().unwrap_or("").lines() {
                eprintln!("  | {line}");
            }
        }
    })?;
    if args.json {
        ui::print_json(&report)?;
        return Ok(report.exit_code());
    }
    // `--trace check`: what each run named, on stderr, as `cachectl run` prints it.
    for c in report.commands.iter().filter(|c| !c.check.is_empty()) {
        for line in &c.check {
            eprintln!("cachectl: check: {} ({}): {line}", c.command, c.origin);
        }
    }
    if args.dry_run {
        // A manifest that sets priorities shows them (misses start highest first; from
        // history, longest run first).
        let show_priority = !args.from_history && report.commands.iter().any(|c| c.priority != 0);
        let mut header = vec!["Status", "Command", "Directory"];
        if show_priority {
            header.insert(1, "Priority");
        }
        let mut t = ui::table(&header);
        for c in &report.commands {
            let status = if c.status == crate::warm::Status::Cached {
                "cached"
            } else {
                "would run"
            };
            let mut row = vec![status.to_owned(), c.command.clone(), c.cwd.clone()];
            if show_priority {
                row.insert(1, c.priority.to_string());
            }
            t.add_row(row);
        }
        if !report.commands.is_empty() {
            println!("{t}");
        }
        println!(
            "{}: {} already cached, {} would run.",
            ui::count(report.commands.len() as u64, "command", "commands"),
            report.already_cached,
            report.would_run
        );
        return Ok(0);
    }
    let mut t = ui::table(&["", "Commands"]);
    t.add_row(vec![
        "Already cached".to_owned(),
        report.already_cached.to_string(),
    ]);
    t.add_row(vec!["Ran and stored".to_owned(), report.stored.to_string()]);
    if report.fetched > 0 {
        t.add_row(vec![
            "Fetched from the remote".to_owned(),
            report.fetched.to_string(),
        ]);
    }
    t.add_row(vec!["Failed".to_owned(), report.failed.to_string()]);
    if report.not_run > 0 {
        t.add_row(vec![
            "Not run (stopped)".to_owned(),
            report.not_run.to_string(),
        ]);
    }
    t.add_row(vec![
        "Time spent".to_owned(),
        ui::duration_ms(report.time_spent_ms),
    ]);
    t.add_row(vec![
        "Later hits will save".to_owned(),
        format!("{} each time", ui::duration_ms(report.time_saved_later_ms)),
    ]);
    println!("{t}");
    if report.interrupted {
        eprintln!("cachectl: interrupted; commands not started were skipped");
    } else if report.failed > 0 && !args.keep_going && report.not_run > 0 {
        eprintln!("cachectl: stopped scheduling after a failure (--keep-going runs the rest)");
    }
    Ok(report.exit_code())
}
