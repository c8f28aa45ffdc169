//! The text report: summary lines, the top names, a session's slowest misses, and the daily
//! history as a bar chart.

use super::*;

/// Width of the hit-rate and time-saved bars.
const RATE_BAR: usize = 20;
const SAVED_BAR: usize = 12;

pub(super) fn print(s: &Stats) {
    println!("Cache {}", s.dir);
    if let Some(session) = &s.session {
        println!("Session {}", session_line(session));
    }
    if let Some(since) = &s.since {
        println!("Counting since {since}");
    }
    let lookups = s.hits + s.misses;
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
    ];
    if let Some(lost) = lost_line(s) {
        rows.push(("Lost to eviction", lost));
    }
    rows.push(("Trend", trend_line(s)));
    rows.push(("Entries", format!("{} ({} blobs)", s.entries, s.blobs)));
    rows.push((
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
    ));
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
        let label = match s.by {
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
    if let Some(session) = s.session.as_ref().filter(|s| !s.slowest_misses.is_empty()) {
        let mut t = ui::table(&["Command", "Ran for", "Outcome"]);
        for run in &session.slowest_misses {
            t.add_row(vec![
                run.command.clone(),
                ui::duration_ms(run.duration_ms),
                outcome(&run.outcome),
            ]);
        }
        println!("\nSlowest misses\n{t}");
    }
    chart(s, ui::Paint::stdout());
}

/// The daily history: a hit-rate bar (full width = 100%) and a time-saved bar (full width =
/// the best day shown) per calendar day.
fn chart(s: &Stats, paint: ui::Paint) {
    let days = stats::chart_days(&s.history, CHART_DAYS);
    if days.is_empty() {
        return;
    }
    let most_saved = days.iter().map(|d| d.time_saved_ms).max().unwrap_or(0) as f64;
    println!("\nHistory (per day: hit rate, lookups, time saved)");
    for d in &days {
        let rate = day_rate(d);
        let rate_text = rate.map_or("-".to_owned(), |r| format!("{r:.0}%"));
        let rate_bar = ui::bar(rate.unwrap_or(0.0), 100.0, RATE_BAR);
        let saved_bar = ui::bar(d.time_saved_ms as f64, most_saved, SAVED_BAR);
        println!(
            "  {}  {} {rate_text:>4} {:>8}  {} {}",
            d.date,
            paint.color(32, &rate_bar),
            d.hits + d.misses,
            paint.color(36, &saved_bar),
            ui::duration_ms(d.time_saved_ms)
        );
    }
}
