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

/// The coarse wall clock, as the kernel stamps files with it: a file changed after this moment
/// has an mtime or ctime at or after it.
// (`time_t` and `c_long` are not i64 everywhere.)
#[allow(clippy::unnecessary_cast)]
pub fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    #[cfg(target_os = "linux")]
    let clock = libc::CLOCK_REALTIME_COARSE;
    #[cfg(not(target_os = "linux"))]
    let clock = libc::CLOCK_REALTIME;
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as i64, ts.tv_nsec as i64)
}
