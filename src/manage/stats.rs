//! `stats`: counters folded from the journal, store sizes from the index.

use crate::clock::{HOUR_MS, now_ms};
use crate::store::Store;
use crate::store::index::Index;
use crate::store::index::LOST_TO_EVICTION;
use crate::store::index::stats::{DayUsage, Group, Scope};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::store::index::stats::{Row, SessionRun};

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Command,
    Namespace,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// Days since the Unix epoch.
    #[serde(skip)]
    pub day: i64,
    pub date: String,
    pub hits: u64,
    pub misses: u64,
    pub time_saved_ms: u64,
}

/// Remote tier counters.
#[derive(Serialize, Debug, Default)]
pub struct RemoteStats {
    pub hits: u64,
    pub misses: u64,
    pub stores: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// By kind: `timeout`, `auth`, `refused` (a tampered or corrupt entry), `signature` (a
    /// missing or wrong signature), `config`, `io`.
    pub errors: BTreeMap<String, u64>,
    pub timeouts: u64,
    /// Entries refused: tampered, corrupt, or with a missing or wrong signature.
    pub refused: u64,
}

/// `--session NAME`: the build the figures are limited to.
#[derive(Serialize, Debug)]
pub struct Session {
    pub name: String,
    /// RFC 3339 times of its first and last recorded events (null: none recorded, or
    /// forgotten after [`SESSION_RETENTION_DAYS`] days).
    pub first: Option<String>,
    pub last: Option<String>,
    /// Its longest misses (the commands that ran), longest first.
    pub slowest_misses: Vec<SlowMiss>,
}

/// A miss that ran in a session.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SlowMiss {
    /// RFC 3339: when it finished.
    pub finished: String,
    pub command: String,
    pub namespace: String,
    pub duration_ms: u64,
    /// `stored`, or why the result was not stored (a `stats` "Not stored" reason).
    pub outcome: String,
}

impl From<SessionRun> for SlowMiss {
    fn from(r: SessionRun) -> SlowMiss {
        SlowMiss {
            finished: crate::ui::rfc3339(r.ts),
            command: r.command,
            namespace: r.namespace,
            duration_ms: r.duration_ms,
            outcome: r.outcome,
        }
    }
}

/// How many days a session's figures are kept after its last event.
pub const SESSION_RETENTION_DAYS: u64 = crate::store::index::SESSION_RETENTION_MS / (24 * HOUR_MS);

/// Rows of the slowest-misses list.
pub const SLOWEST: usize = 10;

/// Which way the hit rate is going: the recent window against the one before it.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Improving,
    Degrading,
    Stable,
    /// One of the windows has no lookups: nothing to compare.
    Unknown,
}

/// A change of less than this many points either way is `stable`.
pub const STABLE_POINTS: f64 = 5.0;

/// Hours in the window the recent hit rate is compared with.
pub const PREVIOUS_WINDOW_HOURS: i64 = 7 * 24;

/// A stretch of time and its lookups.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Window {
    /// RFC 3339 start (inclusive) and end (exclusive), whole hours.
    pub from: String,
    pub to: String,
    pub hits: u64,
    pub misses: u64,
    /// In percent; null without lookups.
    pub hit_rate: Option<f64>,
}

impl Window {
    fn new(from_hour: i64, to_hour: i64, (hits, misses): (u64, u64)) -> Window {
        let lookups = hits + misses;
        Window {
            from: crate::ui::rfc3339(from_hour.max(0) as u64 * HOUR_MS),
            to: crate::ui::rfc3339(to_hour.max(0) as u64 * HOUR_MS),
            hits,
            misses,
            hit_rate: (lookups > 0).then(|| hits as f64 * 100.0 / lookups as f64),
        }
    }
}

/// The hit-rate trend: the recent window (the session with `--session`, else the last 24
/// hours) against the 7 days before it, over the whole cache.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Trend {
    pub recent: Window,
    pub previous: Window,
    /// Recent minus previous hit rate, in percentage points; null when either has no lookups.
    pub change_points: Option<f64>,
    pub direction: Direction,
}

/// `--fail-on-drop POINTS`: the recent hit rate against the previous window's.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct DropGate {
    /// The largest drop allowed, in percentage points.
    pub threshold_points: f64,
    /// How far the hit rate fell (negative: it rose); null when there is nothing to compare.
    pub drop_points: Option<f64>,
    pub passed: bool,
}

/// Everything `stats` reports. Field names are the documented `--json` schema.
#[derive(Serialize, Debug)]
pub struct Stats {
    pub dir: String,
    /// RFC 3339 start of the counted period (`--since`), or null for all time.
    pub since: Option<String>,
    /// `--session`: the figures below (but entries and sizes, which describe the store) are
    /// that build's alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub stores: u64,
    pub time_saved_ms: u64,
    pub bytes_replayed: u64,
    pub uncacheable: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Misses of entries gc had evicted (hits a larger cache would have given), by why gc
    /// evicted them: `max_size` or `max_age`.
    pub lost_to_eviction: BTreeMap<String, u64>,
    pub entries: u64,
    pub blobs: u64,
    /// Everything counted: records, blobs, index and journal.
    pub size_bytes: u64,
    /// Records and blobs alone (what the entries take, compressed).
    pub entries_bytes: u64,
    /// Records and blobs before compression.
    pub uncompressed_bytes: u64,
    pub compression_ratio: f64,
    pub max_size_bytes: u64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    pub remote: RemoteStats,
    pub by: By,
    pub breakdown: Vec<Row>,
    /// How many rows the full breakdown has: more than `breakdown.len()` when `compute` was
    /// given a limit. The table says how many it leaves out; `--json` lists them all.
    #[serde(skip)]
    pub breakdown_rows: u64,
    pub history: Vec<Day>,
    pub trend: Trend,
    /// The `--fail-under` verdict, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_under: Option<Gate>,
    /// The `--fail-on-drop` verdict, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_on_drop: Option<DropGate>,
}

/// `stats --fail-under`: the hit rate of the counted window against a threshold.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// The threshold, in percent.
    pub threshold: f64,
    /// The window's hit rate, in percent (0 with no lookups).
    pub hit_rate: f64,
    pub passed: bool,
}

impl Stats {
    /// Judge the hit rate against `threshold` percent, and remember the verdict.
    pub fn gate(&mut self, threshold: f64) -> Gate {
        let hit_rate = self.hit_rate * 100.0;
        let gate = Gate {
            threshold,
            hit_rate,
            passed: hit_rate >= threshold,
        };
        self.fail_under = Some(gate);
        gate
    }

    /// Judge the trend's drop against `points`, and remember the verdict: it fails when the
    /// rate fell by `points` or more (and fell at all, so `0` fails on any drop). With nothing
    /// to compare (a window without lookups) it passes.
    pub fn drop_gate(&mut self, points: f64) -> DropGate {
        let drop_points = self.trend.change_points.map(|c| -c);
        let gate = DropGate {
            threshold_points: points,
            drop_points,
            passed: drop_points.is_none_or(|d| d <= 0.0 || d < points),
        };
        self.fail_on_drop = Some(gate);
        gate
    }
}

fn file_len(p: impl AsRef<std::path::Path>) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The on-disk size of the index and journal files (they count toward the cache's size).
pub fn bookkeeping_bytes(store: &Store) -> u64 {
    let idx = Index::path(store);
    let mut total = file_len(&store.journal);
    for suffix in ["", "-wal", "-shm"] {
        total += file_len(format!("{}{suffix}", idx.display()));
    }
    total
}

/// What to report.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// `--since`: count only this long ago and later.
    pub since_ms: Option<u64>,
    /// `--session`: one build's figures.
    pub session: Option<&'a str>,
    pub by: By,
    pub max_size: u64,
    /// Cap the breakdown at its top rows (the table prints 15; `--json` passes `None` and gets
    /// every row); [`Stats::breakdown_rows`] always counts them all.
    pub limit: Option<usize>,
}

/// Compute the report.
///
/// Everything but a `--since` or `--session` breakdown reads the aggregate tables the index
/// keeps (see `store::index`), so the cost does not grow with the number of entries or
/// commands.
pub fn compute(store: &Store, idx: &Index, q: &Query) -> Result<Stats> {
    let now_hour = (now_ms() / HOUR_MS) as i64;
    let since_hour = q
        .since_ms
        .map(|s| (now_ms().saturating_sub(s) / HOUR_MS) as i64);
    compute_at(store, idx, q, since_hour, now_hour)
}

/// [`compute`] as if the current hour were `now_hour`, counting from the start of hour
/// `since_hour` (since the epoch), or all time.
fn compute_at(
    store: &Store,
    idx: &Index,
    q: &Query,
    since_hour: Option<i64>,
    now_hour: i64,
) -> Result<Stats> {
    let from_hour = since_hour.unwrap_or(0);
    let scope = match q.session {
        Some(name) => Scope::Session(name),
        None => Scope::All,
    };
    let days = idx.usage_by_day(scope, from_hour)?;
    let sum = |f: fn(&DayUsage) -> i64| days.iter().map(f).sum::<i64>();
    let (hits, misses, stores) = (sum(|d| d.hits), sum(|d| d.misses), sum(|d| d.stores));
    let (saved, replayed) = (sum(|d| d.time_saved_ms), sum(|d| d.bytes_replayed));
    let mut uncacheable = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut lost_to_eviction = BTreeMap::new();
    for f in idx.fault_counts(scope, from_hour)? {
        let map = match f.kind.as_str() {
            "error" => &mut errors,
            LOST_TO_EVICTION => &mut lost_to_eviction,
            _ => &mut uncacheable,
        };
        map.insert(f.reason, f.count);
    }
    let group = match q.by {
        By::Command => Group::Command,
        By::Namespace => Group::Namespace,
    };
    let totals = idx.totals(group)?;
    let (oldest, newest) = idx.created_range()?;
    let stored = totals.record_bytes + totals.blob_stored_bytes;
    let uncompressed = totals.record_bytes + totals.blob_bytes;

    let (breakdown, breakdown_rows) = match q.session {
        Some(name) => idx.session_breakdown(name, group, from_hour, q.limit)?,
        // A period that starts at or before the oldest usage row counts every row, so its
        // breakdown is the all-time one, which the index serves in a few steps.
        None if idx.oldest_usage_hour()?.is_none_or(|h| h >= from_hour) => {
            (idx.breakdown_top(group, q.limit)?, totals.names)
        }
        None => idx.breakdown_since(group, from_hour, q.limit)?,
    };

    let history = days
        .iter()
        .map(|d| Day {
            day: d.day,
            date: date_of(d.day),
            hits: d.hits as u64,
            misses: d.misses as u64,
            time_saved_ms: d.time_saved_ms as u64,
        })
        .collect();

    let mut remote = RemoteStats::default();
    for r in idx.remote_counts(scope, from_hour)? {
        let (n, bytes) = (r.count, r.bytes);
        match r.op.as_str() {
            "hit" => {
                remote.hits += n;
                remote.bytes_down += bytes;
            }
            "miss" => {
                remote.misses += n;
                remote.bytes_down += bytes;
            }
            "store" => {
                remote.stores += n;
                remote.bytes_up += bytes;
            }
            _ => {
                *remote.errors.entry(r.kind.clone()).or_default() += n;
                match r.kind.as_str() {
                    "timeout" => remote.timeouts += n,
                    "refused" | "signature" => remote.refused += n,
                    _ => {}
                }
            }
        }
    }

    let span = match q.session {
        Some(name) => idx.session_span(name)?,
        None => None,
    };
    let session = match q.session {
        Some(name) => Some(Session {
            name: name.to_owned(),
            first: span.map(|(f, _)| crate::ui::rfc3339(f)),
            last: span.map(|(_, l)| crate::ui::rfc3339(l)),
            slowest_misses: idx
                .slowest_runs(name, from_hour.max(0) as u64 * HOUR_MS, SLOWEST)?
                .into_iter()
                .map(SlowMiss::from)
                .collect(),
        }),
        None => None,
    };
    let (hits, misses) = (hits as u64, misses as u64);
    // The trend compares the whole session, whatever `--since` counts.
    let session_lookups = match (q.session, since_hour) {
        (Some(name), Some(_)) => {
            let days = idx.usage_by_day(Scope::Session(name), 0)?;
            let sum = |f: fn(&DayUsage) -> i64| days.iter().map(f).sum::<i64>() as u64;
            Some((sum(|d| d.hits), sum(|d| d.misses)))
        }
        (Some(_), None) => Some((hits, misses)),
        (None, _) => None,
    };
    let trend = trend(idx, session_lookups.map(|l| (l, span)), now_hour)?;
    let lookups = hits + misses;
    Ok(Stats {
        dir: store.root.display().to_string(),
        // Counters are kept per hour: the period starts at the top of the hour.
        since: since_hour.map(|h| crate::ui::rfc3339(h as u64 * HOUR_MS)),
        session,
        hits,
        misses,
        hit_rate: if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        },
        stores: stores as u64,
        time_saved_ms: saved as u64,
        bytes_replayed: replayed as u64,
        uncacheable,
        errors,
        lost_to_eviction,
        entries: totals.entries,
        blobs: totals.blobs,
        size_bytes: stored + bookkeeping_bytes(store),
        entries_bytes: stored,
        uncompressed_bytes: uncompressed,
        compression_ratio: if stored == 0 {
            1.0
        } else {
            uncompressed as f64 / stored as f64
        },
        max_size_bytes: q.max_size,
        oldest: oldest.map(crate::ui::rfc3339),
        newest: newest.map(crate::ui::rfc3339),
        remote,
        by: q.by,
        breakdown,
        breakdown_rows,
        history,
        trend,
        fail_under: None,
        fail_on_drop: None,
    })
}

/// A session's hits and misses, and the Unix ms of its first and last events.
type SessionLookups = ((u64, u64), Option<(u64, u64)>);

/// The trend at `now_hour`. With a session, its lookups make the recent window (from the hour
/// of its first event to that of its last); without one the recent window is the last 24 hours.
fn trend(idx: &Index, session: Option<SessionLookups>, now_hour: i64) -> Result<Trend> {
    let (recent_from, recent_to, recent) = match session {
        Some((lookups, Some((first, last)))) => (
            (first / HOUR_MS) as i64,
            (last / HOUR_MS) as i64 + 1,
            lookups,
        ),
        Some((lookups, None)) => (now_hour - 23, now_hour + 1, lookups),
        None => {
            let from = now_hour - 23;
            (from, now_hour + 1, idx.lookups_between(from, now_hour + 1)?)
        }
    };
    let previous_from = recent_from - PREVIOUS_WINDOW_HOURS;
    let previous = idx.lookups_between(previous_from, recent_from)?;
    let recent = Window::new(recent_from, recent_to, recent);
    let previous = Window::new(previous_from, recent_from, previous);
    let change_points = recent.hit_rate.zip(previous.hit_rate).map(|(r, p)| r - p);
    let direction = match change_points {
        None => Direction::Unknown,
        Some(c) if c >= STABLE_POINTS => Direction::Improving,
        Some(c) if c <= -STABLE_POINTS => Direction::Degrading,
        Some(_) => Direction::Stable,
    };
    Ok(Trend {
        recent,
        previous,
        change_points,
        direction,
    })
}

fn date_of(day: i64) -> String {
    crate::ui::rfc3339(day.max(0) as u64 * 24 * HOUR_MS)[..10].to_owned()
}

/// The chart's days: every calendar day of the last `n` up to the last day with activity,
/// those without activity as zeros (a gap in the chart is a day nobody used the cache).
pub fn chart_days(history: &[Day], n: usize) -> Vec<Day> {
    let Some(last) = history.last().map(|d| d.day) else {
        return Vec::new();
    };
    let first = history[0].day.max(last - n as i64 + 1);
    let mut active = history.iter().filter(|d| d.day >= first).peekable();
    (first..=last)
        .map(|day| match active.next_if(|d| d.day == day) {
            Some(d) => d.clone(),
            None => Day {
                day,
                date: date_of(day),
                hits: 0,
                misses: 0,
                time_saved_ms: 0,
            },
        })
        .collect()
}

/// `--reset`: zero the counters, keep the entries.
pub fn reset(idx: &Index) -> Result<()> {
    idx.reset_usage()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: i64, hits: u64) -> Day {
        Day {
            day,
            date: date_of(day),
            hits,
            misses: 1,
            time_saved_ms: 0,
        }
    }

    #[test]
    fn the_chart_fills_days_without_activity() {
        let history = [day(10, 1), day(13, 2), day(14, 3)];
        let chart = chart_days(&history, 14);
        let days: Vec<(i64, u64)> = chart.iter().map(|d| (d.day, d.hits)).collect();
        assert_eq!(days, [(10, 1), (11, 0), (12, 0), (13, 2), (14, 3)]);
        assert_eq!(chart[1].date, "1970-01-12");
        let days: Vec<i64> = chart_days(&history, 2).iter().map(|d| d.day).collect();
        assert_eq!(days, [13, 14]);
        assert!(chart_days(&[], 14).is_empty());
    }
}
