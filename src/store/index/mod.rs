//! The index: usage, sizes and counters for `stats`, `gc`, `invalidate`, `ls` and `explain`.
//!
//! ## What it is
//! A SQLite database (`index-v1.sqlite`, WAL) *derived* from the files: entries and blobs mirror
//! `ac-v1/` and `cas-v1/`, and can be rebuilt from them at any time (`verify --fix`,
//! [`Index::reconcile_records`]); usage counters come from the journal. Losing the index loses
//! only counters, never cached results.
//!
//! ## Why the run path never opens it
//! Opening SQLite and updating a row costs ~0.9 ms per process here, three times the whole hit
//! budget. So `run` appends events to the journal (see `journal.rs`) and the management commands
//! fold those events in when they start ([`Index::fold_journal`]).
//!
//! ## Concurrency
//! WAL mode lets many readers work beside one writer; writers wait (`busy_timeout`) rather than
//! fail. Folding is crash-safe: the journal is renamed to a `*.folding` file first, the events are
//! applied in one transaction that also records the file's name, and the file is deleted after
//! commit. A crash between commit and delete is recognised by that name, so no event is counted
//! twice or lost. One process folds at a time (`fold.lock`).
//!
//! ## Aggregates
//! `stats` has to answer in a few milliseconds on a cache of 100 000 entries, so it never groups
//! the base tables. Three small tables hold the sums it prints:
//! - `breakdown`: per command and per namespace (`grp`), the hits, misses and time saved from
//!   `usage` and the entries and bytes from `entries`, indexed for
//!   `ORDER BY hits DESC, misses DESC, size_bytes DESC, name LIMIT 15`. A row exists while its
//!   name has a usage row or an entry (`usage_rows` and `entries` count them), exactly the rows
//!   that grouping both tables used to produce;
//! - `usage_days`: the `usage` counters summed per UTC day, for the history and the totals;
//! - `totals`: one row with the entry and blob counts and bytes and the number of breakdown rows.
//!
//! Triggers on `usage`, `entries` and `blobs` keep them exact. Every writer of those tables (the
//! fold, gc, invalidate, `verify --fix`, `stats --reset`, a rebuild, or an older cachectl sharing
//! the index) updates them in the same transaction, so no code path can forget to. Usage rows are
//! only ever created and incremented in place; a trigger refuses to re-key one, which keeps the
//! update trigger a cheap in-place delta. Migration 3 builds the tables from the base tables, so
//! an existing index gets them on its first open.
//!
//! ## Compatibility
//! Migrations are a list applied in order and tracked with `pragma user_version`; entries are
//!
//! ## Where things are
//! `schema` (the migrations), `fold` (journal events into the tables), `reconcile` (the tables
//! against the files), `queries` (typed reads and removals for the commands), `stats` (the
//! figures `stats` prints). No SQL text lives outside this module.

mod fold;
mod queries;
mod reconcile;
mod schema;
pub mod stats;
#[cfg(test)]
mod tests;
mod value;

pub use fold::{EVICTED_RETENTION_MS, LOST_TO_EVICTION, SESSION_RETENTION_MS};
pub use queries::{EntryOrder, EntryRow, Selection};

use super::Store;
use super::layout::Item;
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use schema::MIGRATIONS;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An open index.
pub struct Index {
    /// Private: every statement lives in this module (`schema`, `fold`, `reconcile`,
    /// `queries`, `stats`), so the schema can change in one place.
    conn: Connection,
}

/// What reconciling the index with `ac-v1/` found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reconciled {
    pub added: u64,
    pub removed: u64,
    pub corrupt: u64,
}

impl Index {
    pub fn path(store: &Store) -> PathBuf {
        Item::Index.path(&store.root)
    }

    /// Open (creating and migrating if needed) the index of `store`. A freshly created index is
    /// filled from the record files.
    pub fn open(store: &Store) -> Result<Index> {
        store.init()?;
        // One process at a time creates, migrates or rebuilds the index: concurrent first uses
        // would otherwise race on the schema, or delete a file another has open.
        let lock = store.lock_file(Item::IndexLock)?;
        lock.lock().context("locking the index")?;
        let path = Self::path(store);
        let mut idx = match Self::open_at(&path) {
            Ok(idx) => idx,
            Err(e) if is_corrupt(&e) => {
                Self::set_aside(&path, &e);
                Self::open_at(&path)?
            }
            Err(e) => return Err(e),
        };
        if idx.meta("built")?.is_none() {
            // Index what verifies; a record that does not is left for verify to report and for
            // gc or verify --fix to remove (building an index must not delete anything).
            idx.reconcile_records(store, true)?;
            idx.set_meta("built", "1")?;
        }
        Ok(idx)
    }

    /// Move a corrupt index out of the way (it is derived data) so that the next open rebuilds
    /// it from the records.
    fn set_aside(path: &Path, why: &anyhow::Error) {
        crate::warn::once(
            "index",
            format_args!(
                "the index {} is unusable ({why:#}); rebuilding it from the files",
                path.display()
            ),
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// Rebuild the index from the files after `err` showed it corrupt (usage counters are lost).
    pub fn rebuild(store: &Store, err: &anyhow::Error) -> Result<Index> {
        let lock = store.lock_file(Item::IndexLock)?;
        lock.lock()?;
        Self::set_aside(&Self::path(store), err);
        drop(lock);
        Self::open(store)
    }

    /// An in-memory index with the schema and nothing in it (for a cache that does not exist).
    pub fn empty() -> Result<Index> {
        let mut idx = Index {
            conn: Connection::open_in_memory()?,
        };
        idx.migrate()?;
        Ok(idx)
    }

    fn open_at(path: &Path) -> Result<Index> {
        let conn =
            Connection::open(path).with_context(|| format!("opening index {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Statements that fire the aggregate triggers keep a statement journal (to undo just
        // that statement if it fails). On disk, in `/var/tmp`, that cost one `pwrite` per page
        // touched and made folding 100 000 stores four times slower; in memory it is a copy.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // A fold runs about 15 statements per event; keep them all prepared.
        conn.set_prepared_statement_cache_capacity(32);
        let mut idx = Index { conn };
        idx.migrate()?;
        // Touch the schema so that a garbage file fails here, not later.
        idx.conn
            .query_row("SELECT COUNT(*) FROM meta", [], |r| r.get::<_, i64>(0))
            .context("reading index")?;
        Ok(idx)
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("index migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Move the write-ahead log into the database and truncate it (best effort).
    pub fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta(name, value) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }
}

/// Whether an error says the database file itself is damaged (not busy, not missing).
pub fn is_corrupt(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    })
}

/// `ab/<name>` files under a fan-out directory: name → path. Names that are not 64 hex
/// characters are ignored here (verify reports them).
pub fn list_fanout(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    let top = match std::fs::read_dir(dir) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for sub in top.flatten() {
        if !sub.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        for f in std::fs::read_dir(sub.path())?.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if is_digest(&name) {
                out.insert(name, f.path());
            }
        }
    }
    Ok(out)
}

pub fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
