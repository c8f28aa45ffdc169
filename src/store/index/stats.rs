//! The figures `stats` prints, read from the aggregate tables (see the module doc of `index`),
//! so that their cost does not grow with the number of entries or commands.

use super::Index;
use anyhow::Result;
use rusqlite::OptionalExtension;
use serde::Serialize;
use std::collections::HashMap;

/// Whose figures: the whole cache, or one session's (`run --session NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    All,
    Session(&'a str),
}

/// A miss that ran in a session (for its slowest-misses list).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionRun {
    /// Unix ms at which the run finished.
    pub ts: u64,
    pub command: String,
    pub namespace: String,
    pub duration_ms: u64,
    /// `stored`, or why the result was not stored.
    pub outcome: String,
}

/// What the breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Command,
    Namespace,
}

impl Group {
    /// The column (and `grp` value) of the group: a fixed name, never user input.
    fn column(self) -> &'static str {
        match self {
            Group::Command => "command",
            Group::Namespace => "namespace",
        }
    }
}

/// One breakdown row (its fields are part of the `stats --json` schema).
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub hits: u64,
    pub misses: u64,
    pub time_saved_ms: u64,
    pub entries: u64,
    pub size_bytes: u64,
}

/// The `usage` counters of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    /// Days since the Unix epoch.
    pub day: i64,
    pub hits: i64,
    pub misses: i64,
    pub stores: i64,
    pub time_saved_ms: i64,
    pub bytes_replayed: i64,
}

/// Whole-store figures from the `totals` row.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    pub entries: u64,
    pub record_bytes: u64,
    pub blobs: u64,
    pub blob_stored_bytes: u64,
    pub blob_bytes: u64,
    /// Rows of the breakdown by the group asked for.
    pub names: u64,
}

/// A counted fault: `kind` is `error` (by fault kind) or `uncacheable` (by reason).
#[derive(Debug, Clone)]
pub struct FaultCount {
    pub kind: String,
    pub reason: String,
    pub count: u64,
}

/// Remote tier counters for one (`op`, `kind`).
#[derive(Debug, Clone)]
pub struct RemoteCount {
    pub op: String,
    pub kind: String,
    pub count: u64,
    pub bytes: u64,
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

impl Index {
    /// The usage counters from `from_hour` on, per day with activity, oldest first. Whole days
    /// come from `usage_days`; a first day that `--since` cuts in the middle is summed from its
    /// hourly rows (at most 23 per command), so the figures equal summing every hourly row
    /// counted.
    pub fn usage_by_day(&self, scope: Scope, from_hour: i64) -> Result<Vec<DayUsage>> {
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
        if let Scope::Session(name) = scope {
            let mut stmt = self.conn.prepare(
                "SELECT hour / 24, SUM(hits), SUM(misses), SUM(stores), SUM(time_saved_ms),
                    SUM(bytes_replayed) FROM session_usage WHERE session = ?1 AND hour >= ?2
                 GROUP BY hour / 24 ORDER BY 1",
            )?;
            let days = stmt.query_map(rusqlite::params![name, from_hour], day_of)?;
            return Ok(days.collect::<rusqlite::Result<_>>()?);
        }
        let mut days = Vec::new();
        let first_whole_day = (from_hour + 23) / 24;
        if from_hour % 24 != 0 {
            let partial = self
                .conn
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
        let mut stmt = self.conn.prepare(
            "SELECT day, hits, misses, stores, time_saved_ms, bytes_replayed FROM usage_days
             WHERE day >= ?1 ORDER BY day",
        )?;
        for d in stmt.query_map([first_whole_day], day_of)? {
            days.push(d?);
        }
        Ok(days)
    }

    /// Faults, not-stored runs and hits lost to eviction from `from_hour` on.
    pub fn fault_counts(&self, scope: Scope, from_hour: i64) -> Result<Vec<FaultCount>> {
        let (mut stmt, session) = match scope {
            Scope::All => (
                self.conn.prepare(
                    "SELECT kind, reason, SUM(count) FROM faults WHERE hour >= ?1
                     GROUP BY kind, reason",
                )?,
                None,
            ),
            Scope::Session(name) => (
                self.conn.prepare(
                    "SELECT kind, reason, SUM(count) FROM session_faults
                     WHERE hour >= ?1 AND session = ?2 GROUP BY kind, reason",
                )?,
                Some(name),
            ),
        };
        let params = scope_params(from_hour, session);
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok(FaultCount {
                kind: r.get(0)?,
                reason: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remote tier counters from `from_hour` on.
    pub fn remote_counts(&self, scope: Scope, from_hour: i64) -> Result<Vec<RemoteCount>> {
        let (mut stmt, session) = match scope {
            Scope::All => (
                self.conn.prepare(
                    "SELECT op, kind, SUM(count), SUM(bytes) FROM remote_usage WHERE hour >= ?1
                     GROUP BY op, kind",
                )?,
                None,
            ),
            Scope::Session(name) => (
                self.conn.prepare(
                    "SELECT op, kind, SUM(count), SUM(bytes) FROM session_remote
                     WHERE hour >= ?1 AND session = ?2 GROUP BY op, kind",
                )?,
                Some(name),
            ),
        };
        let params = scope_params(from_hour, session);
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok(RemoteCount {
                op: r.get(0)?,
                kind: r.get(1)?,
                count: r.get::<_, i64>(2)? as u64,
                bytes: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The whole store's figures, with the number of breakdown rows of `group`.
    pub fn totals(&self, group: Group) -> Result<Totals> {
        let sql = format!(
            "SELECT entries, record_bytes, blobs, blob_stored_bytes, blob_bytes, {}_names
             FROM totals",
            group.column()
        );
        Ok(self.conn.query_row(&sql, [], |r| {
            Ok(Totals {
                entries: r.get::<_, i64>(0)? as u64,
                record_bytes: r.get::<_, i64>(1)? as u64,
                blobs: r.get::<_, i64>(2)? as u64,
                blob_stored_bytes: r.get::<_, i64>(3)? as u64,
                blob_bytes: r.get::<_, i64>(4)? as u64,
                names: r.get::<_, i64>(5)? as u64,
            })
        })?)
    }

    /// When the oldest and the newest entry were stored (Unix ms).
    pub fn created_range(&self) -> Result<(Option<u64>, Option<u64>)> {
        // Two subqueries, so that each is a single step down the `created_ms` index.
        let (oldest, newest): (Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT (SELECT MIN(created_ms) FROM entries), (SELECT MAX(created_ms) FROM entries)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((oldest.map(|t| t as u64), newest.map(|t| t as u64)))
    }

    /// The hour of the oldest usage row.
    pub fn oldest_usage_hour(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT MIN(hour) FROM usage", [], |r| r.get(0))?)
    }

    /// The breakdown for all time, straight from the `breakdown_top` index: reading the top
    /// rows costs the same whatever the number of commands.
    pub fn breakdown_top(&self, group: Group, limit: Option<usize>) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM breakdown WHERE grp = ?1
             ORDER BY hits DESC, misses DESC, size_bytes DESC, name LIMIT ?2"
        ))?;
        let limit = limit.map_or(-1, |n| n as i64);
        let rows = stmt.query_map(rusqlite::params![group.column(), limit], row_of)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The breakdown for `--since`: hits, misses and time saved summed from the hourly rows of
    /// the period, entries and size (which always describe the whole store) from `breakdown`.
    /// Returns the top `limit` rows and the number of rows in all.
    ///
    /// Names without activity in the period have no hits or misses, so they rank by size and
    /// name alone: the `breakdown_stored` index lists them in that order, and only the first
    /// `limit` of them can make the top.
    pub fn breakdown_since(
        &self,
        group: Group,
        from_hour: i64,
        limit: Option<usize>,
    ) -> Result<(Vec<Row>, u64)> {
        let col = group.column();
        let mut rows: HashMap<String, Row> = HashMap::new();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT u.{col}, SUM(u.hits), SUM(u.misses), SUM(u.time_saved_ms), b.entries,
                b.size_bytes
             FROM usage AS u JOIN breakdown AS b ON b.grp = ?2 AND b.name = u.{col}
             WHERE u.hour >= ?1 GROUP BY u.{col}"
        ))?;
        for r in stmt.query_map(rusqlite::params![from_hour, col], row_of)? {
            let r = r?;
            rows.insert(r.name.clone(), r);
        }
        let active_with_entries = rows.values().filter(|r| r.entries > 0).count() as u64;
        let with_entries: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM breakdown WHERE grp = ?1 AND entries > 0",
            [col],
            |r| r.get(0),
        )?;
        let total = rows.len() as u64 + with_entries as u64 - active_with_entries;
        let mut stmt = self.conn.prepare(
            "SELECT name, 0, 0, 0, entries, size_bytes FROM breakdown
             WHERE grp = ?1 AND entries > 0 ORDER BY size_bytes DESC, name",
        )?;
        let mut idle = Vec::new();
        for r in stmt.query_map([col], row_of)? {
            let r = r?;
            if !rows.contains_key(&r.name) {
                idle.push(r);
                if limit.is_some_and(|n| idle.len() >= n) {
                    break;
                }
            }
        }
        let mut out: Vec<Row> = rows.into_values().chain(idle).collect();
        sort_rows(&mut out);
        if let Some(n) = limit {
            out.truncate(n);
        }
        Ok((out, total))
    }

    /// The breakdown of a session: the names it used, with their hits, misses and time saved
    /// in the session from `from_hour` on, and the entries and bytes they have in the store.
    /// Returns the top `limit` rows and the number of rows in all.
    pub fn session_breakdown(
        &self,
        session: &str,
        group: Group,
        from_hour: i64,
        limit: Option<usize>,
    ) -> Result<(Vec<Row>, u64)> {
        let col = group.column();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT u.{col}, SUM(u.hits), SUM(u.misses), SUM(u.time_saved_ms),
                COALESCE(b.entries, 0), COALESCE(b.size_bytes, 0)
             FROM session_usage AS u LEFT JOIN breakdown AS b ON b.grp = ?3 AND b.name = u.{col}
             WHERE u.session = ?1 AND u.hour >= ?2 GROUP BY u.{col}"
        ))?;
        let rows = stmt.query_map(rusqlite::params![session, from_hour, col], row_of)?;
        let mut out: Vec<Row> = rows.collect::<rusqlite::Result<_>>()?;
        sort_rows(&mut out);
        let total = out.len() as u64;
        if let Some(n) = limit {
            out.truncate(n);
        }
        Ok((out, total))
    }

    /// The `limit` longest misses that ran in `session` since `from_ms`, longest first.
    pub fn slowest_runs(
        &self,
        session: &str,
        from_ms: u64,
        limit: usize,
    ) -> Result<Vec<SessionRun>> {
        let mut stmt = self.conn.prepare(
            "SELECT ts, command, namespace, duration_ms, outcome FROM session_runs
             WHERE session = ?1 AND ts >= ?2 ORDER BY duration_ms DESC, ts LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![session, from_ms as i64, limit as i64],
            |r| {
                Ok(SessionRun {
                    ts: r.get::<_, i64>(0)? as u64,
                    command: r.get(1)?,
                    namespace: r.get(2)?,
                    duration_ms: r.get::<_, i64>(3)? as u64,
                    outcome: r.get(4)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When `session`'s first and last events happened (Unix ms), if it has any.
    pub fn session_span(&self, session: &str) -> Result<Option<(u64, u64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT first_ms, last_ms FROM sessions WHERE name = ?1",
                [session],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?)
    }

    /// Hits and misses of the whole cache in the hours `[from_hour, to_hour)`.
    pub fn lookups_between(&self, from_hour: i64, to_hour: i64) -> Result<(u64, u64)> {
        let (hits, misses): (i64, i64) = self.conn.query_row(
            "SELECT COALESCE(SUM(hits), 0), COALESCE(SUM(misses), 0) FROM usage
             WHERE hour >= ?1 AND hour < ?2",
            [from_hour, to_hour],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((hits as u64, misses as u64))
    }

    /// `stats --reset`: zero the counters (sessions' too), keep the entries.
    pub fn reset_usage(&self) -> Result<()> {
        self.conn.execute_batch(
            "DELETE FROM usage; DELETE FROM faults; DELETE FROM remote_usage;
             DELETE FROM session_usage; DELETE FROM session_faults; DELETE FROM session_remote;
             DELETE FROM session_runs; DELETE FROM sessions;",
        )?;
        Ok(())
    }
}

/// The breakdown's order: most hits, then most misses, then largest, then by name.
fn sort_rows(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        (b.hits, b.misses, b.size_bytes, &a.name).cmp(&(a.hits, a.misses, a.size_bytes, &b.name))
    });
}

/// The parameters of a scoped statement: `?1` the first hour, `?2` the session (if any).
fn scope_params(from_hour: i64, session: Option<&str>) -> Vec<rusqlite::types::Value> {
    let mut params = vec![rusqlite::types::Value::Integer(from_hour)];
    if let Some(name) = session {
        params.push(rusqlite::types::Value::Text(name.to_owned()));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::HOUR_MS;
    use std::collections::BTreeMap;

    /// A report reduced to what grouping the base tables gives: totals, every breakdown row in
    /// order, and the history.
    type Report = ([i64; 5], Vec<(String, [i64; 5])>, Vec<(String, i64, i64)>);

    /// The report the way `stats` made it before the aggregate tables: grouping the base tables
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

    fn row_values(rows: &[Row]) -> Vec<(String, [i64; 5])> {
        rows.iter()
            .map(|r| {
                let v = [r.hits, r.misses, r.time_saved_ms, r.entries, r.size_bytes];
                (r.name.clone(), v.map(|x| x as i64))
            })
            .collect()
    }

    /// Totals and history from `usage_by_day`, as `stats` sums them.
    fn from_days(idx: &Index, from_hour: i64) -> ([i64; 5], Vec<(String, i64, i64)>) {
        let days = idx.usage_by_day(Scope::All, from_hour).unwrap();
        let mut totals = [0i64; 5];
        for d in &days {
            for (t, v) in totals.iter_mut().zip([
                d.hits,
                d.misses,
                d.stores,
                d.time_saved_ms,
                d.bytes_replayed,
            ]) {
                *t += v;
            }
        }
        let history = days
            .iter()
            .map(|d| {
                let date = crate::ui::rfc3339(d.day as u64 * 24 * HOUR_MS)[..10].to_owned();
                (date, d.hits, d.misses)
            })
            .collect();
        (totals, history)
    }

    #[test]
    fn same_figures_as_grouping_the_base_tables() {
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
        for (group, name) in [(Group::Command, "command"), (Group::Namespace, "namespace")] {
            let all_time = grouped(&idx.conn, 0, name);
            assert_eq!(
                row_values(&idx.breakdown_top(group, None).unwrap()),
                all_time.1
            );
            assert_eq!(idx.totals(group).unwrap().names as usize, all_time.1.len());
            for limit in [0, 1, 3, 15] {
                let top = idx.breakdown_top(group, Some(limit)).unwrap();
                let want: Vec<_> = all_time.1.iter().take(limit).cloned().collect();
                assert_eq!(row_values(&top), want, "{name} top {limit}");
            }
            for since in [
                None,
                Some(0),
                Some(1),
                Some(5),
                Some(24),
                Some(30),
                Some(200),
            ] {
                let from_hour = since.map_or(0, |h| now_hour - h);
                let want = grouped(&idx.conn, from_hour, name);
                assert_eq!(
                    from_days(&idx, from_hour),
                    (want.0, want.2),
                    "{name} {since:?}"
                );
                let (rows, n) = idx.breakdown_since(group, from_hour, None).unwrap();
                assert_eq!(row_values(&rows), want.1, "{name} since {since:?}");
                assert_eq!(n as usize, want.1.len());
                for limit in [0, 1, 3, 15] {
                    let (top, n) = idx.breakdown_since(group, from_hour, Some(limit)).unwrap();
                    let rows: Vec<_> = want.1.iter().take(limit).cloned().collect();
                    assert_eq!(row_values(&top), rows, "{name} since {since:?} top {limit}");
                    assert_eq!(n as usize, want.1.len());
                }
            }
        }
    }
}
