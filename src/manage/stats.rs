//! `stats`: counters folded from the journal, store sizes from the index.

use crate::clock::{HOUR_MS, now_ms};
use crate::store::Store;
use crate::store::index::Index;
use crate::store::index::stats::{DayUsage, Group};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::store::index::stats::Row;

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Command,
    Namespace,
}

#[derive(Serialize, Debug)]
pub struct Day {
    pub date: String,
    pub hits: u64,
    pub misses: u64,
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

/// Everything `stats` reports. Field names are the documented `--json` schema.
#[derive(Serialize, Debug)]
pub struct Stats {
    pub dir: String,
    /// RFC 3339 start of the counted period (`--since`), or null for all time.
    pub since: Option<String>,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub stores: u64,
    pub time_saved_ms: u64,
    pub bytes_replayed: u64,
    pub uncacheable: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
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
    /// The `--fail-under` verdict, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_under: Option<Gate>,
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

/// Compute the report. `limit` caps the breakdown at its top rows (the table prints 15; `--json`
/// passes `None` and gets every row); [`Stats::breakdown_rows`] always counts them all.
///
/// Everything but the `--since` breakdown reads the aggregate tables the index keeps (see
/// `store::index`), so the cost does not grow with the number of entries or commands.
pub fn compute(
    store: &Store,
    idx: &Index,
    since_ms: Option<u64>,
    by: By,
    max_size: u64,
    limit: Option<usize>,
) -> Result<Stats> {
    let from_hour = since_ms.map(|s| (now_ms().saturating_sub(s) / HOUR_MS) as i64);
    compute_from(store, idx, from_hour, by, max_size, limit)
}

/// [`compute`] counting from the start of hour `from_hour` (since the epoch), or all time.
fn compute_from(
    store: &Store,
    idx: &Index,
    since_hour: Option<i64>,
    by: By,
    max_size: u64,
    limit: Option<usize>,
) -> Result<Stats> {
    let from_hour = since_hour.unwrap_or(0);
    let days = idx.usage_by_day(from_hour)?;
    let sum = |f: fn(&DayUsage) -> i64| days.iter().map(f).sum::<i64>();
    let (hits, misses, stores) = (sum(|d| d.hits), sum(|d| d.misses), sum(|d| d.stores));
    let (saved, replayed) = (sum(|d| d.time_saved_ms), sum(|d| d.bytes_replayed));
    let mut uncacheable = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for f in idx.fault_counts(from_hour)? {
        let map = if f.kind == "error" {
            &mut errors
        } else {
            &mut uncacheable
        };
        map.insert(f.reason, f.count);
    }
    let group = match by {
        By::Command => Group::Command,
        By::Namespace => Group::Namespace,
    };
    let totals = idx.totals(group)?;
    let (oldest, newest) = idx.created_range()?;
    let stored = totals.record_bytes + totals.blob_stored_bytes;
    let uncompressed = totals.record_bytes + totals.blob_bytes;

    // A period that starts at or before the oldest usage row counts every row, so its breakdown
    // is the all-time one, which the index serves in a few steps.
    let (breakdown, breakdown_rows) = if idx.oldest_usage_hour()?.is_none_or(|h| h >= from_hour) {
        (idx.breakdown_top(group, limit)?, totals.names)
    } else {
        idx.breakdown_since(group, from_hour, limit)?
    };

    let history = days
        .iter()
        .map(|d| Day {
            date: crate::ui::rfc3339(d.day as u64 * 24 * HOUR_MS)[..10].to_owned(),
            hits: d.hits as u64,
            misses: d.misses as u64,
        })
        .collect();

    let mut remote = RemoteStats::default();
    for r in idx.remote_counts(from_hour)? {
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

    let lookups = (hits + misses) as u64;
    Ok(Stats {
        dir: store.root.display().to_string(),
        // Counters are kept per hour: the period starts at the top of the hour.
        since: since_hour.map(|h| crate::ui::rfc3339(h as u64 * HOUR_MS)),
        hits: hits as u64,
        misses: misses as u64,
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
        max_size_bytes: max_size,
        oldest: oldest.map(crate::ui::rfc3339),
        newest: newest.map(crate::ui::rfc3339),
        remote,
        by,
        breakdown,
        breakdown_rows,
        history,
        fail_under: None,
    })
}

/// `--reset`: zero the counters, keep the entries.
pub fn reset(idx: &Index) -> Result<()> {
    idx.reset_usage()
}
