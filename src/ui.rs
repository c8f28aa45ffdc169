//! Presentation shared by the management commands: tables, sizes, times, progress.
//!
//! Tables are plain; the only colour is in bar charts, and only on a terminal without
//! `NO_COLOR` ([`Paint`]). Progress bars go to stderr and only when it is a terminal; `--json`
//! output is produced with serde_json by each command from the same data.

use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A table in the house style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

/// `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// `1.4s`, `320ms`, `2h 3m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let secs = ms / 1000;
    let d = std::time::Duration::from_secs(if secs >= 3600 { secs / 60 * 60 } else { secs });
    humantime::format_duration(d).to_string()
}

/// How long ago `ms` was, relative to the (possibly fake) clock: `5m ago`.
pub fn ago(ms: u64) -> String {
    let now = crate::clock::now_ms();
    if ms > now {
        return "just now".into();
    }
    let secs = (now - ms) / 1000;
    let (n, unit) = match secs {
        0..=59 => (secs, "s"),
        60..=3599 => (secs / 60, "m"),
        3600..=86_399 => (secs / 3600, "h"),
        _ => (secs / 86_400, "d"),
    };
    format!("{n}{unit} ago")
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `1 entry`, `2 entries`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first 12 characters of a key.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Eighths of a block, for bars drawn to a fraction of a character.
const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/// A horizontal bar `width` characters wide, filled to `value / max` in eighths of a
/// character (plain Unicode block elements, which any UTF-8 terminal and Markdown renderer
/// shows). Always `width` characters, so columns after it line up.
pub fn bar(value: f64, max: f64, width: usize) -> String {
    let fraction = if max > 0.0 {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (fraction * width as f64 * 8.0).round() as usize;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut out = "█".repeat(full);
    if part > 0 {
        out.push(EIGHTHS[part]);
    }
    let drawn = full + usize::from(part > 0);
    out.extend(std::iter::repeat_n(' ', width - drawn));
    out
}

/// Whether to colour what goes to stdout: only a terminal, and only without `NO_COLOR`
/// (no-color.org: set and not empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint(pub bool);

impl Paint {
    pub fn stdout() -> Paint {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Paint(!no_color && std::io::stdout().is_terminal())
    }

    /// `text` in the ANSI colour `code` (32 green, 36 cyan, ...), or as it is.
    pub fn color(self, code: u8, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_always_as_wide_as_asked() {
        assert_eq!(bar(0.0, 10.0, 4), "    ");
        assert_eq!(bar(10.0, 10.0, 4), "████");
        assert_eq!(bar(5.0, 10.0, 4), "██  ");
        assert_eq!(bar(1.0, 16.0, 2), "▏ ");
        assert_eq!(bar(4.0, 16.0, 2), "▌ ");
        assert_eq!(bar(3.0, 0.0, 3), "   ");
        assert_eq!(bar(20.0, 10.0, 2), "██");
        for v in 0..=100 {
            assert_eq!(bar(v as f64, 100.0, 7).chars().count(), 7);
        }
    }

    #[test]
    fn colour_only_when_asked() {
        assert_eq!(Paint(false).color(32, "x"), "x");
        assert_eq!(Paint(true).color(32, "x"), "\x1b[32mx\x1b[0m");
    }
}
