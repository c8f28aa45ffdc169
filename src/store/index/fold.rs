//! Folding the usage journal into the index (crash-safe: see the module doc of `index`).

use super::Index;
use super::reconcile::{record_size, upsert_entry};
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
                for ev in journal::parse(&text) {
                    apply_event(&tx, store, &ev)?;
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
        tracing::debug!(events = folded, "journal folded into the index");
        Ok(folded)
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
    tx.prepare_cached(
        "INSERT INTO usage(hour, command, namespace, hits, misses, stores, time_saved_ms,
            bytes_replayed) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(hour, command, namespace) DO UPDATE SET hits = hits + excluded.hits,
            misses = misses + excluded.misses, stores = stores + excluded.stores,
            time_saved_ms = time_saved_ms + excluded.time_saved_ms,
            bytes_replayed = bytes_replayed + excluded.bytes_replayed",
    )?
    .execute(params![
        (ts / HOUR_MS) as i64,
        cmd,
        ns,
        d.hits as i64,
        d.misses as i64,
        d.stores as i64,
        d.time_saved_ms as i64,
        d.bytes_replayed as i64
    ])?;
    Ok(())
}

fn bump_fault(tx: &Transaction, ts: u64, kind: &str, reason: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO faults(hour, kind, reason, count) VALUES(?1, ?2, ?3, 1)
         ON CONFLICT(hour, kind, reason) DO UPDATE SET count = count + 1",
    )?
    .execute(params![(ts / HOUR_MS) as i64, kind, reason])?;
    Ok(())
}

fn apply_event(tx: &Transaction, store: &Store, ev: &Event) -> Result<()> {
    match ev {
        Event::Hit {
            ts,
            key,
            cmd,
            ns,
            saved_ms,
            bytes,
        } => {
            tx.prepare_cached(
                "UPDATE entries SET hits = hits + 1, last_used_ms = MAX(last_used_ms, ?2)
                 WHERE key = ?1",
            )?
            .execute(params![key, *ts as i64])?;
            let d = UsageDelta {
                hits: 1,
                time_saved_ms: *saved_ms,
                bytes_replayed: *bytes,
                ..UsageDelta::default()
            };
            bump_usage(tx, *ts, cmd, ns, d)?;
        }
        Event::Miss { ts, cmd, ns, .. } => {
            let d = UsageDelta {
                misses: 1,
                ..UsageDelta::default()
            };
            bump_usage(tx, *ts, cmd, ns, d)?;
        }
        Event::Store {
            ts, key, cmd, ns, ..
        } => {
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
    Ok(())
}
