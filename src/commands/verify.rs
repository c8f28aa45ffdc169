//! `cachectl verify`: exit 0 when clean (or fully fixed), 1 when problems remain.

use crate::cli::VerifyArgs;
use crate::config::Source;
use crate::ui;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &VerifyArgs) -> Result<i32> {
    let (_, cfg) = super::load(dir)?;
    let (store, mut idx) = crate::manage::open(cfg.dir.value)?;
    let report = crate::manage::verify::run(&store, &mut idx, args.fix, args.sample)?;
    let unresolved = if args.fix {
        report.remaining.len()
    } else {
        report.problems.len()
    };
    if args.json {
        ui::print_json(&report)?;
    } else {
        for p in &report.problems {
            println!("{}: {}", p.path, p.problem);
        }
        let manifests = match report.manifests_checked {
            0 => String::new(),
            n => format!(" and {n} manifests"),
        };
        println!(
            "Checked {} records{} and {} blobs{manifests}: {} problems{}.",
            report.records_checked,
            if manifests.is_empty() { "" } else { "," },
            report.blobs_checked,
            report.problems.len(),
            if args.fix {
                format!(", {} fixed", report.fixed)
            } else {
                String::new()
            }
        );
        for p in &report.remaining {
            println!("still broken: {}: {}", p.path, p.problem);
        }
        if !args.fix && unresolved > 0 {
            println!("Run `cachectl verify --fix` to remove what is broken and rebuild the index.");
        }
    }
    Ok(if unresolved > 0 { 1 } else { 0 })
}
