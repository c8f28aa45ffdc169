//! Parsers for the units that flags, `CACHECTL_*` variables and config files share: sizes and
//! durations. One definition, so that `--max-size 5G`, `CACHECTL_MAX_SIZE=5G` and
//! `max_size = "5G"` can never disagree.

use std::time::Duration;

/// Parse a size: a bare number of bytes, or `500MiB`, `5G`, `1.5 GB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("invalid size `{s}` (examples: 500MiB, 5G, 1048576)"))
}

/// Parse a duration (`90s`, `2h`, `7d`, `1h 30m`; a bare number is an error), with a message
/// that names the value (config files and variables).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}`: {e} (examples: 90s, 2h, 7d)"))
}

/// [`parse_duration`] for a flag: clap's message already names the flag and the value.
pub fn parse_duration_flag(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (examples: 90s, 2h, 7d)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size(" 2KiB ").unwrap(), 2048);
        assert_eq!(parse_size("5G").unwrap(), 5_000_000_000);
        assert!(
            parse_size("lots")
                .unwrap_err()
                .contains("invalid size `lots`")
        );
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(
            parse_duration("2")
                .unwrap_err()
                .starts_with("invalid duration `2`")
        );
        assert!(
            parse_duration_flag("2")
                .unwrap_err()
                .starts_with("time unit needed")
        );
    }
}
