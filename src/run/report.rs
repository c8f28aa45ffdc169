//! What `-v` and `--explain` print about a run, on stderr.

use crate::config::RunOptions;
use crate::key::KeyComponents;

/// `--explain`: each component with its digest, and the verdict.
pub(super) fn explain(opts: &RunOptions, c: &KeyComponents, key: &str, verdict: &str) {
    if !opts.explain {
        return;
    }
    let mut out = format!("cachectl: key {key} ({verdict})");
    for rule in &opts.matched_rules {
        out.push_str(&format!("\n  rule      {rule}"));
    }
    for line in crate::key::describe::describe_components(c, &opts.command_line) {
        out.push('\n');
        out.push_str(&line);
    }
    crate::note!("{out}");
}

/// A stored run's duration as `-v` shows it: `68ms`, `2.0s`.
pub(super) fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
