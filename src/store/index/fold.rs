//! Folding the usage journal into the index (crash-safe: see the module doc of `index`).

use super::Index;
use super::reconcile::{record_size, upsert_entry};
use super::value::{VALUE_AFTER_HIT, VALUE_NOW};
use crate::clock::HOUR_MS;
use crate::store::Store;
use crate::store::journal::{self, Event};
use crate::store::layout::{Item, folding_journal, is_folding_journal};
use crate::store::record;
use anyhow::{Context, Result};
use rusqlite::{Transaction, TransactionBehavior, params};
use std::path::PathBuf;

impl Index {
    /// Fold every pending journal event into the index.
    pub fn fold_journal(&mut self, store: &Store) -> Result<u64> {
        if !store.root.exists() {
            return Ok(0);
        }
        // One folder at a time: two could otherwise both apply the same `*.folding` file.
        let fold_lock = store.lock_file(Item::FoldLock)?;
        fold_lock
            .lock()
            .context("locking the journal for folding")?;
        // Move the live journal aside (under its exclusive lock, so no writer is mid-append).
        if let Ok(f) = std::fs::File::open(&store.journal) {
            f.lock().context("locking the journal")?;
            let aside = folding_journal(&store.root, crate::clock::now_ms(), std::process::id());
            match std::fs::rename(&store.journal, &aside) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("moving the journal aside"),
            }
        }
        let mut pending: Vec<PathBuf> = std::fs::read_dir(&store.root)
            .with_context(|| format!("listing {}", store.root.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_folding_journal)
            })
            .collect();
        pending.sort();
        let mut folded = 0;
        for file in pending {
            let name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let marker = format!("folded:{name}");
            if self.meta(&marker)?.is_none() {
                let text =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let text = String::from_utf8_lossy(&text);
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                for line in journal::parse(&text) {
                    let lost = apply_event(&tx, store, &line.event)?;
                    if let Some(session) = &line.session {
                        apply_session_event(&tx, session, &line.event, lost.as_deref())?;
                    }
                    folded += 1;
                }
                tx.execute(
                    "INSERT OR REPLACE INTO meta(name, value) VALUES(?1, '1')",
                    [&marker],
                )?;
                tx.commit()?;
            }
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
            self.conn
                .execute("DELETE FROM meta WHERE name = ?1", [&marker])?;
        }
        self.prune(crate::clock::now_ms())?;
        tracing::debug!(events = folded, "journal folded into the index");
        Ok(folded)
    }
}

/// How long a session's figures are kept after its last event.
pub const SESSION_RETENTION_MS: u64 = 30 * 24 * HOUR_MS;

/// How long an evicted key is remembered: a miss of it later than this is not counted as a hit
/// lost to eviction.
pub const EVICTED_RETENTION_MS: u64 = 90 * 24 * HOUR_MS;

impl Index {
    /// Forget sessions whose last event is older than [`SESSION_RETENTION_MS`] and evicted keys
    /// older than [`EVICTED_RETENTION_MS`]. Both lookups are one step down an index when there is
    /// nothing to forget.
    fn prune(&mut self, now: u64) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = now.saturating_sub(SESSION_RETENTION_MS) as i64;
        let old: Vec<String> = {
            let mut stmt = tx.prepare("SELECT name FROM sessions WHERE last_ms < ?1")?;
            stmt.query_map([before], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for name in &old {
            for table in [
                "session_usage",
                "session_faults",
                "session_remote",
                "session_runs",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE session = ?1"), [name])?;
            }
            tx.execute("DELETE FROM sessions WHERE name = ?1", [name])?;
        }
        tx.execute(
            "DELETE FROM evicted WHERE evicted_ms < ?1",
            [now.saturating_sub(EVICTED_RETENTION_MS) as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Counters added to one `usage` row by one event.
#[derive(Default)]
pub(super) struct UsageDelta {
    pub(super) hits: u64,
    pub(super) misses: u64,
    pub(super) stores: u64,
    pub(super) time_saved_ms: u64,
    pub(super) bytes_replayed: u64,
}

/// Add `d` to the hourly usage row of (`ts`, `cmd`, `ns`) in one statement: each statement
/// fires the aggregate triggers once, so a hit is one upsert rather than one per counter.
pub(super) fn bump_usage(
    tx: &Transaction,
    ts: u64,
    cmd: &str,
    ns: &str,
    d: UsageDelta,
) -> Result<()> {
    bump_usage_row(tx, None, ts, cmd, ns, d)
}

/// [`bump_usage`] for the row of `session`.
fn bump_session_usage(
    tx: &Transaction,
    session: &str,
    ts: u64,
    cmd: &str,
    ns: &str,
    d: UsageDelta,
) -> Result<()> {
    bump_usage_row(tx, Some(session), ts, cmd, ns, d)
}

/// The upsert of a `usage` row, or of a `session_usage` row (whose key starts with the session).
fn bump_usage_row(
    tx: &Transaction,
    session: Option<&str>,
    ts: u64,
    cmd: &str,
    ns: &str,
    d: UsageDelta,
) -> Result<()> {
    const USAGE: &str = "INSERT INTO usage(hour, command, namespace, hits, misses, stores,
            time_saved_ms, bytes_replayed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(hour, command, namespace) DO UPDATE SET hits = hits + excluded.hits,
            misses = misses + excluded.misses, stores = stores + excluded.stores,
            time_saved_ms = time_saved_ms + excluded.time_saved_ms,
            bytes_replayed = bytes_replayed + excluded.bytes_replayed";
    const SESSION_USAGE: &str = "INSERT INTO session_usage(session, hour, command, namespace,
            hits, misses, stores, time_saved_ms, bytes_replayed)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(session, hour, command, namespace) DO UPDATE SET hits = hits + excluded.hits,
            misses = misses + excluded.misses, stores = stores + excluded.stores,
            time_saved_ms = time_saved_ms + excluded.time_saved_ms,
            bytes_replayed = bytes_replayed + excluded.bytes_replayed";
    use rusqlite::types::Value;
    let mut values: Vec<Value> = session
        .map(|s| Value::Text(s.to_owned()))
        .into_iter()
        .collect();
    values.extend([
        Value::Integer((ts / HOUR_MS) as i64),
        Value::Text(cmd.to_owned()),
        Value::Text(ns.to_owned()),
    ]);
    values.extend(
        [
            d.hits,
            d.misses,
            d.stores,
            d.time_saved_ms,
            d.bytes_replayed,
        ]
        .map(|v| Value::Integer(v as i64)),
    );
    let sql = if session.is_some() {
        SESSION_USAGE
    } else {
        USAGE
    };
    tx.prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(values))?;
    Ok(())
}

fn bump_session_fault(
    tx: &Transaction,
    session: &str,
    ts: u64,
    kind: &str,
    reason: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO session_faults(session, hour, kind, reason, count) VALUES(?1, ?2, ?3, ?4, 1)
         ON CONFLICT(session, hour, kind, reason) DO UPDATE SET count = count + 1",
    )?
    .execute(params![session, (ts / HOUR_MS) as i64, kind, reason])?;
    Ok(())
}

/// A miss that ran, for the session's slowest-misses list: `outcome` is `stored` or the
/// not-stored reason.
fn add_session_run(
    tx: &Transaction,
    session: &str,
    ts: u64,
    cmd: &str,
    ns: &str,
    duration_ms: u64,
    outcome: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO session_runs(session, ts, command, namespace, duration_ms, outcome)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        session,
        ts as i64,
        cmd,
        ns,
        duration_ms as i64,
        outcome
    ])?;
    Ok(())
}

/// The `faults` kind of misses whose key gc had evicted (reason: why it was evicted).
pub const LOST_TO_EVICTION: &str = "evicted";

/// Whether a miss of `key` is a hit lost to eviction: the key was evicted by gc and has not
/// been stored or served since. Marks it, so that it is counted once (the row stays until the
/// key is stored again, which takes its uses).
fn lost_to_eviction(tx: &Transaction, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(tx
        .prepare_cached(
            "UPDATE evicted SET missed = 1 WHERE key = ?1 AND missed = 0 RETURNING reason",
        )?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// `key` is in the cache again: forget its eviction, returning the uses it had then.
fn forget_evicted(tx: &Transaction, key: &str) -> Result<i64> {
    use rusqlite::OptionalExtension;
    Ok(tx
        .prepare_cached("DELETE FROM evicted WHERE key = ?1 RETURNING uses")?
        .query_row([key], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn bump_fault(tx: &Transaction, ts: u64, kind: &str, reason: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO faults(hour, kind, reason, count) VALUES(?1, ?2, ?3, 1)
         ON CONFLICT(hour, kind, reason) DO UPDATE SET count = count + 1",
    )?
    .execute(params![(ts / HOUR_MS) as i64, kind, reason])?;
    Ok(())
}

/// Add `ev` to the whole cache's figures. Returns why gc evicted the key of a miss that is a
/// hit lost to eviction.
fn apply_event(tx: &Transaction, store: &Store, ev: &Event) -> Result<Option<String>> {
    let mut lost = None;
    match ev {
        Event::Hit {
            ts,
            key,
            cmd,
            ns,
            saved_ms,
            bytes,
        } => {
            tx.prepare_cached(&format!(
                "UPDATE entries SET hits = hits + 1, last_used_ms = MAX(last_used_ms, ?2),
                    value = {VALUE_AFTER_HIT} WHERE key = ?1"
            ))?
            .execute(params![key, *ts as i64])?;
            let d = UsageDelta {
                hits: 1,
                time_saved_ms: *saved_ms,
                bytes_replayed: *bytes,
                ..UsageDelta::default()
            };
            bump_usage(tx, *ts, cmd, ns, d)?;
            forget_evicted(tx, key)?;
        }
        Event::Miss { ts, key, cmd, ns } => {
            let d = UsageDelta {
                misses: 1,
                ..UsageDelta::default()
            };
            bump_usage(tx, *ts, cmd, ns, d)?;
            lost = lost_to_eviction(tx, key)?;
            if let Some(reason) = &lost {
                bump_fault(tx, *ts, LOST_TO_EVICTION, reason)?;
            }
        }
        Event::Store {
            ts, key, cmd, ns, ..
        } => {
            let past_uses = forget_evicted(tx, key)?;
            let d = UsageDelta {
                stores: 1,
                ..UsageDelta::default()
            };
            bump_usage(tx, *ts, cmd, ns, d)?;
            let path = store.record_path(key);
            if let Some(d) = std::fs::read(&path)
                .ok()
                .and_then(|b| record::decode(&b).ok())
            {
                upsert_entry(tx, store, &d.record, record_size(&path), Some(*ts))?;
                if past_uses > 0 {
                    // (An UPDATE's expressions see the row as it was: two statements.)
                    tx.prepare_cached("UPDATE entries SET past_uses = ?2 WHERE key = ?1")?
                        .execute(params![key, past_uses])?;
                    tx.prepare_cached(&format!(
                        "UPDATE entries SET value = {VALUE_NOW} WHERE key = ?1"
                    ))?
                    .execute([key])?;
                }
            }
        }
        Event::Uncacheable { ts, reason, .. } => bump_fault(tx, *ts, "uncacheable", reason)?,
        Event::Error { ts, kind } => bump_fault(tx, *ts, "error", kind)?,
        Event::Remote {
            ts,
            op,
            kind,
            bytes,
        } => {
            tx.prepare_cached(
                "INSERT INTO remote_usage(hour, op, kind, count, bytes) VALUES(?1, ?2, ?3, 1, ?4)
                 ON CONFLICT(hour, op, kind) DO UPDATE SET count = count + 1,
                    bytes = bytes + excluded.bytes",
            )?
            .execute(params![(*ts / HOUR_MS) as i64, op, kind, *bytes as i64])?;
        }
    }
    Ok(lost)
}

/// Add `ev` to the figures of `session` (its own tables; the whole-cache ones are done by
/// [`apply_event`], which says whether a miss was a hit `lost` to eviction).
fn apply_session_event(
    tx: &Transaction,
    session: &str,
    ev: &Event,
    lost: Option<&str>,
) -> Result<()> {
    let ts = match ev {
        Event::Hit { ts, .. }
        | Event::Miss { ts, .. }
        | Event::Store { ts, .. }
        | Event::Uncacheable { ts, .. }
        | Event::Remote { ts, .. }
        | Event::Error { ts, .. } => *ts,
    };
    tx.prepare_cached(
        "INSERT INTO sessions(name, first_ms, last_ms) VALUES(?1, ?2, ?2)
         ON CONFLICT(name) DO UPDATE SET first_ms = MIN(first_ms, excluded.first_ms),
            last_ms = MAX(last_ms, excluded.last_ms)",
    )?
    .execute(params![session, ts as i64])?;
    match ev {
        Event::Hit {
            cmd,
            ns,
            saved_ms,
            bytes,
            ..
        } => {
            let d = UsageDelta {
                hits: 1,
                time_saved_ms: *saved_ms,
                bytes_replayed: *bytes,
                ..UsageDelta::default()
            };
            bump_session_usage(tx, session, ts, cmd, ns, d)?;
        }
        Event::Miss { cmd, ns, .. } => {
            let d = UsageDelta {
                misses: 1,
                ..UsageDelta::default()
            };
            bump_session_usage(tx, session, ts, cmd, ns, d)?;
            if let Some(reason) = lost {
                bump_session_fault(tx, session, ts, LOST_TO_EVICTION, reason)?;
            }
        }
        Event::Store {
            cmd,
            ns,
            duration_ms,
            ..
        } => {
            let d = UsageDelta {
                stores: 1,
                ..UsageDelta::default()
            };
            bump_session_usage(tx, session, ts, cmd, ns, d)?;
            add_session_run(tx, session, ts, cmd, ns, *duration_ms, "stored")?;
        }
        Event::Uncacheable {
            cmd,
            ns,
            reason,
            duration_ms,
            ..
        } => {
            bump_session_fault(tx, session, ts, "uncacheable", reason)?;
            add_session_run(tx, session, ts, cmd, ns, *duration_ms, reason)?;
        }
        Event::Error { kind, .. } => bump_session_fault(tx, session, ts, "error", kind)?,
        Event::Remote {
            op, kind, bytes, ..
        } => {
            tx.prepare_cached(
                "INSERT INTO session_remote(session, hour, op, kind, count, bytes)
                 VALUES(?1, ?2, ?3, ?4, 1, ?5)
                 ON CONFLICT(session, hour, op, kind) DO UPDATE SET count = count + 1,
                    bytes = bytes + excluded.bytes",
            )?
            .execute(params![
                session,
                (ts / HOUR_MS) as i64,
                op,
                kind,
                *bytes as i64
            ])?;
        }
    }
    Ok(())
}
