//! The one place cachectl asks for the time.
//!
//! Tests of ttl, stale refresh and (later) gc by age set `CACHECTL_TEST_NOW` to a Unix time in
//! milliseconds instead of sleeping, as cargo does for its global cache tracker.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, or the fake time from `CACHECTL_TEST_NOW`.
pub fn now_ms() -> u64 {
    if let Some(fake) = std::env::var_os("CACHECTL_TEST_NOW")
        && let Some(ms) = fake.to_str().and_then(|s| s.trim().parse::<u64>().ok())
    {
        return ms;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One hour in milliseconds: usage counters are kept per hour.
pub const HOUR_MS: u64 = 3_600_000;
