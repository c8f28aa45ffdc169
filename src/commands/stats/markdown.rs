//! `stats --format markdown`: a report that renders in a CI job summary (GitHub's
//! `$GITHUB_STEP_SUMMARY`, GitLab's Markdown artifacts): the figures, the verdicts, the top
//! names, a session's slowest misses and the daily history with bars.

use super::*;
use std::fmt::Write;

/// Width of the hit-rate bar in the history table.
const RATE_BAR: usize = 10;

/// Text for a table cell: `|` would end the cell and a newline the row; backticks and other
/// Markdown stay literal inside a code span, which holds any command line.
fn cell(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    let longest_run = one_line
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    let pad = if one_line.starts_with('`') || one_line.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", one_line.replace('|', "\\|"))
}

/// Plain text for a table cell: Markdown's special characters stay literal (a session name
/// such as `ci_*nightly*` is not emphasis), and `|` does not end the cell.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.replace(['\n', '\r'], " ").chars() {
        if "\\`*_[]<>|~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(super) fn report(s: &Stats) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "## cachectl");
    let _ = writeln!(w);
    let lookups = s.hits + s.misses;
    let scope = match (&s.session, &s.since) {
        (Some(session), _) => format!("session {}", cell(&session.name)),
        (None, Some(since)) => format!("since {since}"),
        (None, None) => "all recorded activity".to_owned(),
    };
    let _ = writeln!(
        w,
        "**Hit rate {:.1}%** ({} of {} lookups, {scope}), **{} saved**",
        s.hit_rate * 100.0,
        s.hits,
        lookups,
        ui::duration_ms(s.time_saved_ms)
    );
    let _ = writeln!(w);
    if let Some(g) = s.fail_under {
        let verdict = if g.passed { "passed" } else { "**failed**" };
        let _ = writeln!(w, "- `--fail-under {}`: {verdict}", g.threshold);
    }
    if let Some(g) = s.fail_on_drop {
        let verdict = match (g.passed, g.drop_points) {
            (_, None) => "nothing to compare",
            (true, Some(_)) => "passed",
            (false, Some(_)) => "**failed**",
        };
        let _ = writeln!(w, "- `--fail-on-drop {}`: {verdict}", g.threshold_points);
    }
    if s.fail_under.is_some() || s.fail_on_drop.is_some() {
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "| | |");
    let _ = writeln!(w, "|---|---|");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(w, "| {name} | {} |", escape(&value));
    };
    if let Some(session) = &s.session {
        row("Session", session_line(session));
    }
    row("Hits", s.hits.to_string());
    row("Misses", s.misses.to_string());
    row("Stores", s.stores.to_string());
    row("Time saved", ui::duration_ms(s.time_saved_ms));
    row("Not stored", reasons(&s.uncacheable));
    row("Errors", reasons(&s.errors));
    if let Some(lost) = lost_line(s) {
        row("Lost to eviction", lost);
    }
    row("Trend", trend_line(s));
    row(
        "Cache",
        format!(
            "{} in {} of {} max",
            ui::count(s.entries, "entry", "entries"),
            ui::size(s.size_bytes),
            ui::size(s.max_size_bytes)
        ),
    );
    let r = &s.remote;
    if r.hits + r.misses + r.stores > 0 || !r.errors.is_empty() {
        row(
            "Remote",
            format!(
                "{} hits, {} misses, {} uploads; errors: {}",
                r.hits,
                r.misses,
                r.stores,
                reasons(&r.errors)
            ),
        );
    }
    if !md.ends_with("\n\n") {
        md.push('\n');
    }
    let w = &mut md;
    if !s.breakdown.is_empty() {
        let label = match s.by {
            By::Command => "command",
            By::Namespace => "namespace",
        };
        let _ = writeln!(w, "### Top {label}s");
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "| {label} | hits | misses | time saved | entries | size |"
        );
        let _ = writeln!(w, "|---|--:|--:|--:|--:|--:|");
        for r in s.breakdown.iter().take(TOP_ROWS) {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&r.name),
                r.hits,
                r.misses,
                ui::duration_ms(r.time_saved_ms),
                r.entries,
                ui::size(r.size_bytes)
            );
        }
        let shown = s.breakdown.len().min(TOP_ROWS) as u64;
        if s.breakdown_rows > shown {
            let _ = writeln!(w);
            let _ = writeln!(w, "{} more (`--json` lists all).", s.breakdown_rows - shown);
        }
        let _ = writeln!(w);
    }
    if let Some(session) = s.session.as_ref().filter(|s| !s.slowest_misses.is_empty()) {
        let _ = writeln!(w, "### Slowest misses");
        let _ = writeln!(w);
        let _ = writeln!(w, "| command | ran for | outcome |");
        let _ = writeln!(w, "|---|--:|---|");
        for run in &session.slowest_misses {
            let _ = writeln!(
                w,
                "| {} | {} | {} |",
                cell(&run.command),
                ui::duration_ms(run.duration_ms),
                outcome(&run.outcome)
            );
        }
        let _ = writeln!(w);
    }
    let days = stats::chart_days(&s.history, CHART_DAYS);
    if !days.is_empty() {
        let _ = writeln!(w, "### History");
        let _ = writeln!(w);
        let _ = writeln!(w, "| day | hit rate | | lookups | time saved |");
        let _ = writeln!(w, "|---|---|--:|--:|--:|");
        for d in &days {
            let rate = day_rate(d);
            // Trailing spaces would be trimmed by the renderer: the bar keeps only its blocks.
            let bar = ui::bar(rate.unwrap_or(0.0), 100.0, RATE_BAR);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                d.date,
                bar.trim_end(),
                rate.map_or("-".to_owned(), |r| format!("{r:.0}%")),
                d.hits + d.misses,
                ui::duration_ms(d.time_saved_ms)
            );
        }
        let _ = writeln!(w);
    }
    md
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn plain_text_stays_plain() {
        assert_eq!(super::escape("ci_*1* | <b>"), "ci\\_\\*1\\* \\| \\<b\\>");
    }

    #[test]
    fn cells_hold_any_command_line() {
        assert_eq!(cell("make all"), "`make all`");
        assert_eq!(cell("a | b"), "`a \\| b`");
        assert_eq!(cell("echo `x`"), "`` echo `x` ``");
        assert_eq!(cell("a\nb"), "`a b`");
    }
}
