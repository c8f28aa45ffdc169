//! `cachectl stats`.

use crate::cli::{ByArg, StatsArgs};
use crate::config::Source;
use crate::manage::stats::{self, By};
use crate::ui;
use anyhow::Result;
use std::path::PathBuf;

/// Rows of the breakdown table.
const TOP_ROWS: usize = 15;

pub fn run(dir: Option<(PathBuf, Source)>, args: &StatsArgs) -> Result<i32> {
    let (_, cfg) = super::load(dir)?;
    let (store, idx) = crate::manage::open(cfg.dir.value)?;
    if args.reset {
        stats::reset(&idx)?;
        println!("Counters reset (entries kept).");
        return Ok(0);
    }
    let by = match args.by {
        ByArg::Command => By::Command,
        ByArg::Namespace => By::Namespace,
    };
    let since = args.since.map(|d| d.as_millis() as u64);
    // The table shows the top rows only, so only those are read; `--json` lists every row.
    let limit = (!args.json).then_some(TOP_ROWS);
    let mut s = stats::compute(&store, &idx, since, by, cfg.max_size.value, limit)?;
    let gate = args.fail_under.map(|pct| s.gate(pct));
    // The report first, then the verdict: one line on stderr, exit 1 below the threshold.
    let code = match gate {
        Some(g) if !g.passed => 1,
        _ => 0,
    };
    let verdict = || {
        if let Some(g) = gate.filter(|g| !g.passed) {
            let window = match &s.since {
                Some(since) => format!("since {since}"),
                None => "over all recorded activity".to_owned(),
            };
            eprintln!(
                "cachectl: hit rate {:.1}% ({} of {} lookups) {window} is below --fail-under {}%",
                g.hit_rate,
                s.hits,
                s.hits + s.misses,
                g.threshold
            );
        }
    };
    if args.json {
        ui::print_json(&s)?;
        verdict();
        return Ok(code);
    }
    println!("Cache {}", s.dir);
    if let Some(since) = &s.since {
        println!("Counting since {since}");
    }
    let lookups = s.hits + s.misses;
    let reasons = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut rows: Vec<(&str, String)> = vec![
        (
            "Hits",
            format!(
                "{} of {} lookups ({:.1}%)",
                s.hits,
                lookups,
                s.hit_rate * 100.0
            ),
        ),
        ("Misses", s.misses.to_string()),
        ("Stores", s.stores.to_string()),
        ("Time saved", ui::duration_ms(s.time_saved_ms)),
        ("Replayed", ui::size(s.bytes_replayed)),
        ("Not stored", reasons(&s.uncacheable)),
        ("Errors", reasons(&s.errors)),
        ("Entries", format!("{} ({} blobs)", s.entries, s.blobs)),
        (
            "Size",
            format!(
                "{} of {} max: entries {} ({} before compression, {:.1}x), index and journal {}",
                ui::size(s.size_bytes),
                ui::size(s.max_size_bytes),
                ui::size(s.entries_bytes),
                ui::size(s.uncompressed_bytes),
                s.compression_ratio,
                ui::size(s.size_bytes.saturating_sub(s.entries_bytes))
            ),
        ),
    ];
    if let (Some(o), Some(n)) = (&s.oldest, &s.newest) {
        rows.push(("Oldest / newest", format!("{o} / {n}")));
    }
    let r = &s.remote;
    if r.hits + r.misses + r.stores > 0 || !r.errors.is_empty() {
        rows.push((
            "Remote",
            format!(
                "{} hits, {} misses, {} uploads; {} down, {} up; errors: {}",
                r.hits,
                r.misses,
                r.stores,
                ui::size(r.bytes_down),
                ui::size(r.bytes_up),
                reasons(&r.errors)
            ),
        ));
    }
    for (name, value) in rows {
        println!("  {name:<16} {value}");
    }
    if !s.breakdown.is_empty() {
        let label = match by {
            By::Command => "Command",
            By::Namespace => "Namespace",
        };
        let mut b = ui::table(&[label, "Hits", "Misses", "Time saved", "Entries", "Size"]);
        for r in s.breakdown.iter().take(TOP_ROWS) {
            b.add_row(vec![
                r.name.clone(),
                r.hits.to_string(),
                r.misses.to_string(),
                ui::duration_ms(r.time_saved_ms),
                r.entries.to_string(),
                ui::size(r.size_bytes),
            ]);
        }
        println!("\nTop {}s\n{b}", label.to_lowercase());
        let shown = s.breakdown.len().min(TOP_ROWS) as u64;
        if s.breakdown_rows > shown {
            println!("({} more; --json lists all)", s.breakdown_rows - shown);
        }
    }
    if !s.history.is_empty() {
        let mut h = ui::table(&["Day", "Hits", "Misses", "Hit rate"]);
        for d in s.history.iter().rev().take(14).rev() {
            let n = d.hits + d.misses;
            let rate = if n == 0 {
                0.0
            } else {
                d.hits as f64 * 100.0 / n as f64
            };
            h.add_row(vec![
                d.date.clone(),
                d.hits.to_string(),
                d.misses.to_string(),
                format!("{rate:.0}%"),
            ]);
        }
        println!("\nHistory (last 14 days with activity)\n{h}");
    }
    verdict();
    Ok(code)
}
