//! `cachectl stats`: the report as text, JSON or Markdown, and the CI gates (`--fail-under`,
//! `--fail-on-drop`), whose verdicts go to stderr after the report.

mod markdown;
mod text;

use crate::cli::{ByArg, StatsArgs, StatsFormat};
use crate::config::Source;
use crate::manage::stats::{self, By, Query, Stats};
use crate::ui;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Rows of the breakdown table.
const TOP_ROWS: usize = 15;

/// Days in the history chart.
const CHART_DAYS: usize = 14;

pub fn run(dir: Option<(PathBuf, Source)>, args: &StatsArgs) -> Result<i32> {
    let (_, cfg) = super::load(dir)?;
    let (store, idx) = crate::manage::open(cfg.dir.value)?;
    if args.reset {
        stats::reset(&idx)?;
        println!("Counters reset (entries kept).");
        return Ok(0);
    }
    let format = args.format();
    let query = Query {
        since_ms: args.since.map(|d| d.as_millis() as u64),
        session: args.session.as_deref(),
        by: match args.by {
            ByArg::Command => By::Command,
            ByArg::Namespace => By::Namespace,
        },
        max_size: cfg.max_size.value,
        // The text and Markdown reports show the top rows only, so only those are read;
        // `--json` lists every row.
        limit: (format != StatsFormat::Json).then_some(TOP_ROWS),
    };
    let mut s = stats::compute(&store, &idx, &query)?;
    let verdicts = judge(&mut s, args);
    match format {
        StatsFormat::Json => ui::print_json(&s)?,
        StatsFormat::Text => text::print(&s),
        StatsFormat::Markdown => print!("{}", markdown::report(&s)),
    }
    // The report first, then the verdicts: one line each on stderr, exit 1 if a gate failed.
    for v in &verdicts {
        eprintln!("cachectl: {}", v.line);
    }
    Ok(if verdicts.iter().any(|v| v.failed) {
        1
    } else {
        0
    })
}

/// A gate's line on stderr: a failure, or a note that it could not judge.
struct Verdict {
    failed: bool,
    line: String,
}

/// Apply the gates asked for; returns a line per gate that failed or could not judge.
fn judge(s: &mut Stats, args: &StatsArgs) -> Vec<Verdict> {
    let mut out = Vec::new();
    let mut failed = |line| out.push(Verdict { failed: true, line });
    let window = window(s);
    if let Some(pct) = args.fail_under {
        let g = s.gate(pct);
        if !g.passed {
            failed(format!(
                "hit rate {:.1}% ({} of {} lookups) {window} is below --fail-under {}%",
                g.hit_rate,
                s.hits,
                s.hits + s.misses,
                g.threshold
            ));
        }
    }
    if let Some(points) = args.fail_on_drop {
        let g = s.drop_gate(points);
        let t = &s.trend;
        match (g.drop_points, t.recent.hit_rate, t.previous.hit_rate) {
            (Some(drop), Some(recent), Some(previous)) if !g.passed => failed(format!(
                "hit rate dropped {drop:.1} points: {recent:.1}% {} against {previous:.1}% in the 7 days before (--fail-on-drop {points})",
                recent_label(s)
            )),
            (None, ..) => out.push(Verdict {
                failed: false,
                line: format!(
                    "--fail-on-drop: nothing to compare ({}); not failing",
                    no_lookups(s)
                ),
            }),
            _ => {}
        }
    }
    out
}

/// Which lookups the figures count, for the verdict lines.
fn window(s: &Stats) -> String {
    match (&s.session, &s.since) {
        (Some(session), Some(since)) => format!("in session {} since {since}", session.name),
        (Some(session), None) => format!("in session {}", session.name),
        (None, Some(since)) => format!("since {since}"),
        (None, None) => "over all recorded activity".to_owned(),
    }
}

/// The trend's recent window in words.
fn recent_label(s: &Stats) -> String {
    match &s.session {
        Some(session) => format!("in session {}", session.name),
        None => "in the last 24 hours".to_owned(),
    }
}

/// Why a trend is unknown.
fn no_lookups(s: &Stats) -> String {
    if s.trend.recent.hit_rate.is_none() {
        format!("no lookups {}", recent_label(s))
    } else {
        "no lookups in the 7 days before".to_owned()
    }
}

/// The trend in words: `degrading: 62.0% in the last 24 hours against 85.0% in the 7 days
/// before (-23.0 points)`.
fn trend_line(s: &Stats) -> String {
    use stats::Direction;
    let t = &s.trend;
    let word = match t.direction {
        Direction::Improving => "improving",
        Direction::Degrading => "degrading",
        Direction::Stable => "stable",
        Direction::Unknown => return format!("unknown ({})", no_lookups(s)),
    };
    let (recent, previous) = (
        t.recent.hit_rate.unwrap_or_default(),
        t.previous.hit_rate.unwrap_or_default(),
    );
    format!(
        "{word}: {recent:.1}% {} against {previous:.1}% in the 7 days before ({:+.1} points)",
        recent_label(s),
        t.change_points.unwrap_or_default()
    )
}

/// `reason: count, ...`, or `none`.
fn reasons(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        "none".to_owned()
    } else {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Hits lost to eviction in words, with what would have kept them, or `None` without any.
fn lost_line(s: &Stats) -> Option<String> {
    let lost: u64 = s.lost_to_eviction.values().sum();
    if lost == 0 {
        return None;
    }
    let mut larger = Vec::new();
    if s.lost_to_eviction.contains_key("max_size") {
        larger.push("a larger max_size");
    }
    if s.lost_to_eviction.contains_key("max_age") {
        larger.push("a longer gc --max-age");
    }
    let by: Vec<String> = s
        .lost_to_eviction
        .iter()
        .map(|(why, n)| format!("{why}: {n}"))
        .collect();
    Some(format!(
        "{} (evicted by {}); {} would have turned {} into {}",
        ui::count(lost, "miss", "misses"),
        by.join(", "),
        larger.join(" or "),
        if lost == 1 { "it" } else { "them" },
        if lost == 1 { "a hit" } else { "hits" },
    ))
}

/// A session's span in words.
fn session_line(session: &stats::Session) -> String {
    match (&session.first, &session.last) {
        (Some(first), Some(last)) => format!("{}: {first} to {last}", session.name),
        _ => format!(
            "{}: no events recorded (sessions are kept {} days after their last event)",
            session.name,
            stats::SESSION_RETENTION_DAYS
        ),
    }
}

/// A session run's outcome in words.
fn outcome(o: &str) -> String {
    if o == "stored" {
        "stored".to_owned()
    } else {
        format!("not stored: {o}")
    }
}

/// A day's hit rate in percent (None without lookups).
fn day_rate(d: &stats::Day) -> Option<f64> {
    let n = d.hits + d.misses;
    (n > 0).then(|| d.hits as f64 * 100.0 / n as f64)
}
