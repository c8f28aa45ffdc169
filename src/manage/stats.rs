//! `stats`: counters folded from the journal, store sizes from the index.

use crate::clock::now_ms;
use crate::store::Store;
use crate::store::index::Index;
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

const HOUR_MS: u64 = 3_600_000;

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Command,
    Namespace,
}

#[derive(Serialize, Debug, Default)]
pub struct Row {
    pub name: String,
    pub hits: u64,
    pub misses: u64,
    pub time_saved_ms: u64,
    pub entries: u64,
    pub size_bytes: u64,
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
    pub history: Vec<Day>,
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

pub fn compute(
    store: &Store,
    idx: &Index,
    since_ms: Option<u64>,
    by: By,
    max_size: u64,
) -> Result<Stats> {
    let c = &idx.conn;
    let from_hour = since_ms
        .map(|s| (now_ms().saturating_sub(s)) / HOUR_MS)
        .unwrap_or(0) as i64;
    let (hits, misses, stores, saved, replayed): (i64, i64, i64, i64, i64) = c.query_row(
        "SELECT COALESCE(SUM(hits),0), COALESCE(SUM(misses),0), COALESCE(SUM(stores),0),
                COALESCE(SUM(time_saved_ms),0), COALESCE(SUM(bytes_replayed),0)
         FROM usage WHERE hour >= ?1",
        [from_hour],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let mut uncacheable = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let mut stmt = c.prepare(
        "SELECT kind, reason, SUM(count) FROM faults WHERE hour >= ?1 GROUP BY kind, reason",
    )?;
    for row in stmt.query_map([from_hour], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (kind, reason, n) = row?;
        let map = if kind == "error" {
            &mut errors
        } else {
            &mut uncacheable
        };
        map.insert(reason, n as u64);
    }
    let (entries, record_bytes, oldest, newest): (i64, i64, Option<i64>, Option<i64>) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(record_bytes),0), MIN(created_ms), MAX(created_ms) FROM entries",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let (blobs, blob_stored, blob_plain): (i64, i64, i64) = c.query_row(
        "SELECT COUNT(*), COALESCE(SUM(stored_bytes),0), COALESCE(SUM(size),0) FROM blobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let stored = (record_bytes + blob_stored) as u64;
    let uncompressed = (record_bytes + blob_plain) as u64;

    let group = match by {
        By::Command => "command",
        By::Namespace => "namespace",
    };
    let mut rows: HashMap<String, Row> = HashMap::new();
    let sql = format!(
        "SELECT {group}, SUM(hits), SUM(misses), SUM(time_saved_ms) FROM usage WHERE hour >= ?1 GROUP BY {group}"
    );
    let mut stmt = c.prepare(&sql)?;
    for r in stmt.query_map([from_hour], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (name, h, m, s) = r?;
        let row = rows.entry(name.clone()).or_default();
        row.name = name;
        row.hits = h as u64;
        row.misses = m as u64;
        row.time_saved_ms = s as u64;
    }
    let sql = format!("SELECT {group}, COUNT(*), SUM(size_bytes) FROM entries GROUP BY {group}");
    let mut stmt = c.prepare(&sql)?;
    for r in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (name, n, size) = r?;
        let row = rows.entry(name.clone()).or_default();
        row.name = name;
        row.entries = n as u64;
        row.size_bytes = size as u64;
    }
    let mut breakdown: Vec<Row> = rows.into_values().collect();
    breakdown.sort_by(|a, b| {
        (b.hits, b.misses, b.size_bytes, &a.name).cmp(&(a.hits, a.misses, a.size_bytes, &b.name))
    });

    let mut history = Vec::new();
    let mut stmt = c.prepare(
        "SELECT hour / 24, SUM(hits), SUM(misses) FROM usage WHERE hour >= ?1 GROUP BY hour / 24 ORDER BY 1",
    )?;
    for r in stmt.query_map([from_hour], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (day, h, m) = r?;
        history.push(Day {
            date: crate::ui::rfc3339(day as u64 * 24 * HOUR_MS)[..10].to_owned(),
            hits: h as u64,
            misses: m as u64,
        });
    }

    let mut remote = RemoteStats::default();
    let mut stmt = c.prepare(
        "SELECT op, kind, SUM(count), SUM(bytes) FROM remote_usage WHERE hour >= ?1 GROUP BY op, kind",
    )?;
    for r in stmt.query_map([from_hour], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (op, kind, n, bytes) = r?;
        let (n, bytes) = (n as u64, bytes as u64);
        match op.as_str() {
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
                *remote.errors.entry(kind.clone()).or_default() += n;
                match kind.as_str() {
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
        since: since_ms.map(|_| crate::ui::rfc3339(from_hour as u64 * HOUR_MS)),
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
        entries: entries as u64,
        blobs: blobs as u64,
        size_bytes: stored + bookkeeping_bytes(store),
        entries_bytes: stored,
        uncompressed_bytes: uncompressed,
        compression_ratio: if stored == 0 {
            1.0
        } else {
            uncompressed as f64 / stored as f64
        },
        max_size_bytes: max_size,
        oldest: oldest.map(|t| crate::ui::rfc3339(t as u64)),
        newest: newest.map(|t| crate::ui::rfc3339(t as u64)),
        remote,
        by,
        breakdown,
        history,
    })
}

/// `--reset`: zero the counters, keep the entries.
pub fn reset(idx: &Index) -> Result<()> {
    idx.conn
        .execute_batch("DELETE FROM usage; DELETE FROM faults; DELETE FROM remote_usage;")?;
    Ok(())
}
