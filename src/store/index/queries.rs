//! Typed reads and removals for the management commands. Every query the commands need is a
//! method here, so that no SQL lives outside the index module.

use super::Index;
use super::reconcile::remove_entry_rows;
use crate::store::Store;
use anyhow::Result;
use rusqlite::TransactionBehavior;
use std::collections::{HashMap, HashSet};

/// One entry row.
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub key: String,
    pub command: String,
    pub namespace: String,
    pub tags: Vec<String>,
    pub cwd: String,
    pub created_ms: u64,
    pub last_used_ms: u64,
    pub hits: u64,
    pub duration_ms: u64,
    pub exit_code: i32,
    pub record_bytes: u64,
    pub size_bytes: u64,
    pub logical_bytes: u64,
    /// Its value to keep (see [`super::value`]).
    pub value: f64,
}

const ENTRY_COLUMNS: &str = "key, command, namespace, tags, cwd, created_ms, last_used_ms, hits, \
     duration_ms, exit_code, record_bytes, size_bytes, logical_bytes, value";

impl EntryRow {
    fn from_row(r: &rusqlite::Row) -> rusqlite::Result<EntryRow> {
        let tags: String = r.get(3)?;
        Ok(EntryRow {
            key: r.get(0)?,
            command: r.get(1)?,
            namespace: r.get(2)?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            cwd: r.get(4)?,
            created_ms: r.get::<_, i64>(5)? as u64,
            last_used_ms: r.get::<_, i64>(6)? as u64,
            hits: r.get::<_, i64>(7)? as u64,
            duration_ms: r.get::<_, i64>(8)? as u64,
            exit_code: r.get(9)?,
            record_bytes: r.get::<_, i64>(10)? as u64,
            size_bytes: r.get::<_, i64>(11)? as u64,
            value: r.get(13)?,
            logical_bytes: r.get::<_, i64>(12)? as u64,
        })
    }
}

impl Index {
    /// Entries matching a SQL condition (with parameters), in no particular order.
    pub(super) fn entries_where(
        &self,
        condition: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<EntryRow>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE {condition}");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params, EntryRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remember keys gc is evicting (with why: `max_age`, `max_size`, and how often each was
    /// used), so that a later miss of one counts as a hit lost to eviction (`stats`) and a
    /// later store of it keeps its uses (`value`). Call it before removing the entries. Keys
    /// removed by `invalidate` are not remembered: the user asked for those misses.
    pub fn remember_evicted(&self, evicted: &[(&str, &str)], now_ms: u64) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO evicted(key, evicted_ms, reason, uses, missed)
                    VALUES(?1, ?2, ?3,
                        COALESCE((SELECT hits + 1 + past_uses FROM entries WHERE key = ?1), 0), 0)
                 ON CONFLICT(key) DO UPDATE SET evicted_ms = excluded.evicted_ms,
                    reason = excluded.reason, uses = excluded.uses, missed = 0",
            )?;
            for (key, reason) in evicted {
                stmt.execute(rusqlite::params![key, now_ms as i64, reason])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove entries (record files and index rows). Returns the blobs they referenced that no
    /// remaining entry references.
    pub fn remove_entries(&mut self, store: &Store, keys: &[String]) -> Result<Vec<String>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut candidates = HashSet::new();
        {
            let mut blobs_of = tx.prepare("SELECT digest FROM entry_blobs WHERE key = ?1")?;
            for key in keys {
                for d in blobs_of.query_map([key], |r| r.get::<_, String>(0))? {
                    candidates.insert(d?);
                }
            }
        }
        for key in keys {
            store.remove_record(key);
            remove_entry_rows(&tx, key)?;
        }
        let mut orphans = Vec::new();
        {
            let mut refs = tx.prepare("SELECT COUNT(*) FROM entry_blobs WHERE digest = ?1")?;
            for d in candidates {
                let n: i64 = refs.query_row([&d], |r| r.get(0))?;
                if n == 0 {
                    orphans.push(d);
                }
            }
        }
        tx.commit()?;
        Ok(orphans)
    }

    /// Delete blob files (and their rows). Callers decide which are safe to delete (see
    /// `manage::gc`). Returns (count, bytes) removed.
    pub fn remove_blobs(&mut self, store: &Store, digests: &[String]) -> Result<(u64, u64)> {
        let (mut count, mut bytes) = (0, 0);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for d in digests {
            let path = store.cas.path(d);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if std::fs::remove_file(&path).is_ok() {
                count += 1;
                bytes += len;
            }
            tx.prepare_cached("DELETE FROM blobs WHERE digest = ?1")?
                .execute([d])?;
        }
        tx.commit()?;
        Ok((count, bytes))
    }

    /// The blobs each of `keys` references.
    pub fn blobs_of(&self, keys: &[String]) -> Result<HashMap<String, Vec<String>>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT digest FROM entry_blobs WHERE key = ?1")?;
        for k in keys {
            for d in stmt.query_map([k], |r| r.get::<_, String>(0))? {
                out.entry(k.clone()).or_default().push(d?);
            }
        }
        Ok(out)
    }

    /// Bytes of records and blobs as the index knows them.
    pub fn stored_bytes(&self) -> Result<u64> {
        let records: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(record_bytes), 0) FROM entries",
            [],
            |r| r.get(0),
        )?;
        let blobs: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(stored_bytes), 0) FROM blobs",
            [],
            |r| r.get(0),
        )?;
        Ok((records + blobs) as u64)
    }
}

/// The order of an entry listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOrder {
    /// No particular order.
    Any,
    /// Least recently used first, then oldest (gc's eviction order).
    LeastRecentlyUsed,
    /// Most recently used first (`ls`), then by key.
    LastUsedFirst,
    /// Largest first (`ls --sort size`), then by key.
    LargestFirst,
    /// Most hits first (`ls --sort hits`), then by key.
    MostHitsFirst,
    /// Lowest value first (gc's eviction order under `gc_policy = "value"`, see
    /// [`super::value`]), then least recently used.
    LeastValuable,
}

impl EntryOrder {
    fn sql(self) -> &'static str {
        match self {
            EntryOrder::Any => "",
            EntryOrder::LeastRecentlyUsed => " ORDER BY last_used_ms ASC, created_ms ASC",
            EntryOrder::LastUsedFirst => " ORDER BY last_used_ms DESC, key",
            EntryOrder::LargestFirst => " ORDER BY size_bytes DESC, key",
            EntryOrder::MostHitsFirst => " ORDER BY hits DESC, key",
            EntryOrder::LeastValuable => " ORDER BY value ASC, last_used_ms ASC, created_ms ASC",
        }
    }
}

/// Which entries `invalidate` selects: every condition given must hold.
#[derive(Debug, Default, Clone, Copy)]
pub struct Selection<'a> {
    pub namespace: Option<&'a str>,
    pub tag: Option<&'a str>,
    /// A key or a prefix of one (lowercase hex).
    pub key_prefix: Option<&'a str>,
    /// Created before this time (Unix ms).
    pub created_before_ms: Option<u64>,
    /// An input path (encoded as keys hold it): entries keyed on it or on anything under it.
    pub input: Option<&'a str>,
}

/// `s` with LIKE's wildcards escaped (escape character `\`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl Index {
    /// Every entry, in `order`.
    pub fn entries(&self, order: EntryOrder) -> Result<Vec<EntryRow>> {
        self.entries_where(&format!("1{}", order.sql()), &[])
    }

    /// The entry of `key`, if the index has it.
    pub fn entry(&self, key: &str) -> Result<Option<EntryRow>> {
        Ok(self.entries_where("key = ?1", &[&key])?.into_iter().next())
    }

    /// The keys of every entry.
    pub fn entry_keys(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT key FROM entries")?;
        let keys = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(keys.collect::<rusqlite::Result<_>>()?)
    }

    /// How many entries there are (also a cheap probe that the database reads).
    pub fn entry_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The entries `sel` selects, in no particular order.
    pub fn select(&self, sel: &Selection) -> Result<Vec<EntryRow>> {
        let mut conds = vec!["1".to_owned()];
        let mut params: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(ns) = sel.namespace {
            params.push(Box::new(ns.to_owned()));
            conds.push(format!("namespace = ?{}", params.len()));
        }
        if let Some(tag) = sel.tag {
            params.push(Box::new(tag.to_owned()));
            conds.push(format!(
                "EXISTS (SELECT 1 FROM json_each(entries.tags) WHERE value = ?{})",
                params.len()
            ));
        }
        if let Some(key) = sel.key_prefix {
            params.push(Box::new(format!("{}%", like_escape(key))));
            conds.push(format!("key LIKE ?{} ESCAPE '\\'", params.len()));
        }
        if let Some(before) = sel.created_before_ms {
            params.push(Box::new(before as i64));
            conds.push(format!("created_ms < ?{}", params.len()));
        }
        if let Some(p) = sel.input {
            params.push(Box::new(p.to_owned()));
            params.push(Box::new(format!("{}/%", like_escape(p))));
            conds.push(format!(
                "key IN (SELECT key FROM entry_inputs WHERE path = ?{} OR path LIKE ?{} ESCAPE '\\')",
                params.len() - 1,
                params.len()
            ));
        }
        let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|b| b.as_ref()).collect();
        self.entries_where(&conds.join(" AND "), &refs)
    }

    /// The newest entry stored for a command line in a namespace.
    pub fn newest_entry(&self, command: &str, namespace: &str) -> Result<Option<EntryRow>> {
        let rows = self.entries_where(
            "command = ?1 AND namespace = ?2 ORDER BY created_ms DESC LIMIT 1",
            &[&command, &namespace],
        )?;
        Ok(rows.into_iter().next())
    }

    /// Up to `limit` entries of exactly this command line, newest first, other than `except`.
    pub fn recent_with_command(
        &self,
        command: &str,
        except: &str,
        limit: usize,
    ) -> Result<Vec<EntryRow>> {
        self.entries_where(
            "command = ?1 AND key != ?2 ORDER BY created_ms DESC LIMIT ?3",
            &[&command, &except, &(limit as i64)],
        )
    }

    /// Up to `limit` entries whose command line runs `program` (alone or with arguments),
    /// newest first, other than `except`.
    pub fn recent_with_program(
        &self,
        program: &str,
        except: &str,
        limit: usize,
    ) -> Result<Vec<EntryRow>> {
        self.entries_where(
            "(command = ?1 OR substr(command, 1, length(?1) + 1) = ?1 || ' ') AND key != ?2
             ORDER BY created_ms DESC LIMIT ?3",
            &[&program, &except, &(limit as i64)],
        )
    }

    /// Every (entry key, blob digest) reference.
    pub fn blob_references(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare("SELECT key, digest FROM entry_blobs")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The `top` (command line, namespace) pairs with the most hits and misses since hour
    /// `from_hour`, most used first.
    pub fn most_used(&self, from_hour: i64, top: usize) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT command, namespace, SUM(hits) + SUM(misses) AS uses FROM usage
             WHERE hour >= ?1 GROUP BY command, namespace ORDER BY uses DESC, command LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![from_hour, top as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
