//! `stats`: counters folded from the journal, store sizes from the index.

use crate::clock::now_ms;
use crate::store::Store;
use crate::store::index::Index;
use anyhow::Result;
use rusqlite::OptionalExtension;
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
    /// How many rows the full breakdown has: more than `breakdown.len()` when `compute` was
    /// given a limit. The table says how many it leaves out; `--json` lists them all.
    #[serde(skip)]
    pub breakdown_rows: u64,
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
    let c = &idx.conn;
    let from_hour = since_hour.unwrap_or(0);
    let days = usage_by_day(c, from_hour)?;
    let sum = |f: fn(&DayUsage) -> i64| days.iter().map(f).sum::<i64>();
    let (hits, misses, stores) = (sum(|d| d.hits), sum(|d| d.misses), sum(|d| d.stores));
    let (saved, replayed) = (sum(|d| d.time_saved_ms), sum(|d| d.bytes_replayed));
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
    let group = match by {
        By::Command => "command",
        By::Namespace => "namespace",
    };
    let (entries, record_bytes, blobs, blob_stored, blob_plain, names): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = c.query_row(
        &format!(
            "SELECT entries, record_bytes, blobs, blob_stored_bytes, blob_bytes, {group}_names
             FROM totals"
        ),
        [],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    // Two subqueries, so that each is a single step down the `created_ms` index.
    let (oldest, newest): (Option<i64>, Option<i64>) = c.query_row(
        "SELECT (SELECT MIN(created_ms) FROM entries), (SELECT MAX(created_ms) FROM entries)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let stored = (record_bytes + blob_stored) as u64;
    let uncompressed = (record_bytes + blob_plain) as u64;

    // A period that starts at or before the oldest usage row counts every row, so its breakdown
    // is the all-time one, which the index serves in a few steps.
    let oldest_hour: Option<i64> = c.query_row("SELECT MIN(hour) FROM usage", [], |r| r.get(0))?;
    let (breakdown, breakdown_rows) = if oldest_hour.is_none_or(|h| h >= from_hour) {
        (top_rows(c, group, limit)?, names as u64)
    } else {
        rows_since(c, group, from_hour, limit)?
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
        breakdown_rows,
        history,
    })
}

/// The `usage` counters of one UTC day.
struct DayUsage {
    day: i64,
    hits: i64,
    misses: i64,
    stores: i64,
    time_saved_ms: i64,
    bytes_replayed: i64,
}

/// The usage counters from `from_hour` on, per day with activity, oldest first. Whole days come
/// from `usage_days`; a first day that `--since` cuts in the middle is summed from its hourly
/// rows (at most 23 per command), so the figures equal summing every hourly row counted.
fn usage_by_day(c: &rusqlite::Connection, from_hour: i64) -> Result<Vec<DayUsage>> {
    let day_of = |r: &rusqlite::Row| {
        Ok(DayUsage {
            day: r.get(0)?,
            hits: r.get(1)?,
            misses: r.get(2)?,
            stores: r.get(3)?,
            time_saved_ms: r.get(4)?,
            bytes_replayed: r.get(5)?,
        })
    };
    let mut days = Vec::new();
    let first_whole_day = (from_hour + 23) / 24;
    if from_hour % 24 != 0 {
        let partial = c
            .query_row(
                "SELECT ?1 / 24, SUM(hits), SUM(misses), SUM(stores), SUM(time_saved_ms),
                    SUM(bytes_replayed) FROM usage WHERE hour >= ?1 AND hour < ?2
                 HAVING COUNT(*) > 0",
                [from_hour, first_whole_day * 24],
                day_of,
            )
            .optional()?;
        days.extend(partial);
    }
    let mut stmt = c.prepare(
        "SELECT day, hits, misses, stores, time_saved_ms, bytes_replayed FROM usage_days
         WHERE day >= ?1 ORDER BY day",
    )?;
    for d in stmt.query_map([first_whole_day], day_of)? {
        days.push(d?);
    }
    Ok(days)
}

const ROW_COLUMNS: &str = "name, hits, misses, time_saved_ms, entries, size_bytes";

fn row_of(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    Ok(Row {
        name: r.get(0)?,
        hits: r.get::<_, i64>(1)? as u64,
        misses: r.get::<_, i64>(2)? as u64,
        time_saved_ms: r.get::<_, i64>(3)? as u64,
        entries: r.get::<_, i64>(4)? as u64,
        size_bytes: r.get::<_, i64>(5)? as u64,
    })
}

/// The breakdown for all time, straight from the `breakdown_top` index: reading the top rows
/// costs the same whatever the number of commands.
fn top_rows(c: &rusqlite::Connection, group: &str, limit: Option<usize>) -> Result<Vec<Row>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM breakdown WHERE grp = ?1
         ORDER BY hits DESC, misses DESC, size_bytes DESC, name LIMIT ?2"
    ))?;
    let limit = limit.map_or(-1, |n| n as i64);
    let rows = stmt.query_map(rusqlite::params![group, limit], row_of)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The breakdown for `--since`: hits, misses and time saved summed from the hourly rows of the
/// period, entries and size (which always describe the whole store) from `breakdown`. Returns
/// the top `limit` rows and the number of rows in all.
///
/// Names without activity in the period have no hits or misses, so they rank by size and name
/// alone: the `breakdown_stored` index lists them in that order, and only the first `limit` of
/// them can make the top.
fn rows_since(
    c: &rusqlite::Connection,
    group: &str,
    from_hour: i64,
    limit: Option<usize>,
) -> Result<(Vec<Row>, u64)> {
    let mut rows: HashMap<String, Row> = HashMap::new();
    let mut stmt = c.prepare(&format!(
        "SELECT u.{group}, SUM(u.hits), SUM(u.misses), SUM(u.time_saved_ms), b.entries,
            b.size_bytes
         FROM usage AS u JOIN breakdown AS b ON b.grp = ?2 AND b.name = u.{group}
         WHERE u.hour >= ?1 GROUP BY u.{group}"
    ))?;
    for r in stmt.query_map(rusqlite::params![from_hour, group], row_of)? {
        let r = r?;
        rows.insert(r.name.clone(), r);
    }
    let active_with_entries = rows.values().filter(|r| r.entries > 0).count() as u64;
    let with_entries: i64 = c.query_row(
        "SELECT COUNT(*) FROM breakdown WHERE grp = ?1 AND entries > 0",
        [group],
        |r| r.get(0),
    )?;
    let total = rows.len() as u64 + with_entries as u64 - active_with_entries;
    let mut stmt = c.prepare(
        "SELECT name, 0, 0, 0, entries, size_bytes FROM breakdown
         WHERE grp = ?1 AND entries > 0 ORDER BY size_bytes DESC, name",
    )?;
    let mut idle = Vec::new();
    for r in stmt.query_map([group], row_of)? {
        let r = r?;
        if !rows.contains_key(&r.name) {
            idle.push(r);
            if limit.is_some_and(|n| idle.len() >= n) {
                break;
            }
        }
    }
    let mut out: Vec<Row> = rows.into_values().chain(idle).collect();
    out.sort_by(|a, b| {
        (b.hits, b.misses, b.size_bytes, &a.name).cmp(&(a.hits, a.misses, a.size_bytes, &b.name))
    });
    if let Some(n) = limit {
        out.truncate(n);
    }
    Ok((out, total))
}

/// `--reset`: zero the counters, keep the entries.
pub fn reset(idx: &Index) -> Result<()> {
    idx.conn
        .execute_batch("DELETE FROM usage; DELETE FROM faults; DELETE FROM remote_usage;")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report reduced to what the old queries computed: totals, every breakdown row in order,
    /// and the history.
    type Report = ([i64; 5], Vec<(String, [i64; 5])>, Vec<(String, i64, i64)>);

    /// The report the way `compute` made it before the aggregate tables: grouping the base tables
    /// and sorting every row.
    fn grouped(c: &rusqlite::Connection, from_hour: i64, group: &str) -> Report {
        let totals = c
            .query_row(
                "SELECT COALESCE(SUM(hits),0), COALESCE(SUM(misses),0), COALESCE(SUM(stores),0),
                    COALESCE(SUM(time_saved_ms),0), COALESCE(SUM(bytes_replayed),0)
                 FROM usage WHERE hour >= ?1",
                [from_hour],
                |r| Ok(std::array::from_fn(|i| r.get(i).unwrap())),
            )
            .unwrap();
        let mut rows: BTreeMap<String, [i64; 5]> = BTreeMap::new();
        let sql = format!(
            "SELECT {group}, SUM(hits), SUM(misses), SUM(time_saved_ms) FROM usage
             WHERE hour >= ?1 GROUP BY {group}"
        );
        let mut stmt = c.prepare(&sql).unwrap();
        let mut q = stmt.query([from_hour]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let row = rows.entry(r.get(0).unwrap()).or_default();
            (row[0], row[1], row[2]) = (r.get(1).unwrap(), r.get(2).unwrap(), r.get(3).unwrap());
        }
        let sql =
            format!("SELECT {group}, COUNT(*), SUM(size_bytes) FROM entries GROUP BY {group}");
        let mut stmt = c.prepare(&sql).unwrap();
        let mut q = stmt.query([]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let row = rows.entry(r.get(0).unwrap()).or_default();
            (row[3], row[4]) = (r.get(1).unwrap(), r.get(2).unwrap());
        }
        let mut rows: Vec<(String, [i64; 5])> = rows.into_iter().collect();
        rows.sort_by(|(a, x), (b, y)| (y[0], y[1], y[4], a).cmp(&(x[0], x[1], x[4], b)));
        let mut history = Vec::new();
        let mut stmt = c
            .prepare(
                "SELECT hour / 24, SUM(hits), SUM(misses) FROM usage WHERE hour >= ?1
                 GROUP BY hour / 24 ORDER BY 1",
            )
            .unwrap();
        let mut q = stmt.query([from_hour]).unwrap();
        while let Some(r) = q.next().unwrap() {
            let day: i64 = r.get(0).unwrap();
            let date = crate::ui::rfc3339(day as u64 * 24 * HOUR_MS)[..10].to_owned();
            history.push((date, r.get(1).unwrap(), r.get(2).unwrap()));
        }
        (totals, rows, history)
    }

    fn reduced(s: &Stats) -> Report {
        let totals = [
            s.hits,
            s.misses,
            s.stores,
            s.time_saved_ms,
            s.bytes_replayed,
        ];
        let rows = s.breakdown.iter().map(|r| {
            let v = [r.hits, r.misses, r.time_saved_ms, r.entries, r.size_bytes];
            (r.name.clone(), v.map(|x| x as i64))
        });
        let history = s
            .history
            .iter()
            .map(|d| (d.date.clone(), d.hits as i64, d.misses as i64));
        (totals.map(|x| x as i64), rows.collect(), history.collect())
    }

    #[test]
    fn same_report_as_grouping_the_base_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("absent"));
        let idx = Index::empty().unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut below = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let now_hour = 500_000i64;
        for i in 0..60 {
            idx.conn
                .execute(
                    "INSERT INTO entries(key, command, namespace, tags, cwd, created_ms,
                        last_used_ms, duration_ms, exit_code, record_bytes, size_bytes,
                        logical_bytes) VALUES(?1, ?2, ?3, '[]', '/', ?4, ?4, 1, 0, 100, ?5, 1)",
                    rusqlite::params![
                        format!("k{i}"),
                        format!("cmd {}", below(25)),
                        format!("ns{}", below(4)),
                        i * 1000,
                        100 + below(3) as i64 * 50
                    ],
                )
                .unwrap();
        }
        for _ in 0..300 {
            idx.conn
                .execute(
                    "INSERT INTO usage(hour, command, namespace, hits, misses, stores,
                        time_saved_ms, bytes_replayed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT DO NOTHING",
                    rusqlite::params![
                        now_hour - below(24 * 6) as i64,
                        format!("cmd {}", below(35)),
                        format!("ns{}", below(5)),
                        below(3) as i64,
                        below(3) as i64,
                        below(2) as i64,
                        below(1000) as i64,
                        below(1000) as i64
                    ],
                )
                .unwrap();
        }
        for (by, group) in [(By::Command, "command"), (By::Namespace, "namespace")] {
            for since in [
                None,
                Some(0),
                Some(1),
                Some(5),
                Some(24),
                Some(30),
                Some(200),
            ] {
                let from_hour = since.map(|h| now_hour - h);
                let want = grouped(&idx.conn, from_hour.unwrap_or(0), group);
                let all = compute_from(&store, &idx, from_hour, by, 0, None).unwrap();
                assert_eq!(reduced(&all), want, "{group} since {since:?}");
                assert_eq!(all.breakdown_rows as usize, want.1.len());
                for limit in [0, 1, 3, 15] {
                    let top = compute_from(&store, &idx, from_hour, by, 0, Some(limit)).unwrap();
                    let rows = want.1.iter().take(limit).cloned().collect::<Vec<_>>();
                    assert_eq!(reduced(&top).1, rows, "{group} since {since:?} top {limit}");
                    assert_eq!(top.breakdown_rows as usize, want.1.len());
                }
            }
        }
    }
}
