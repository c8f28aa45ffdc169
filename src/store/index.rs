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
//! never removed from the list.

use super::Store;
use super::journal::{self, Event};
use super::record::{self, Record};
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE entries(
        key TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        namespace TEXT NOT NULL,
        tags TEXT NOT NULL,
        cwd TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER NOT NULL,
        exit_code INTEGER NOT NULL,
        record_bytes INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        logical_bytes INTEGER NOT NULL
    );
    CREATE INDEX entries_last_used ON entries(last_used_ms);
    CREATE INDEX entries_command ON entries(command);
    CREATE TABLE entry_blobs(key TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(key, digest)) WITHOUT ROWID;
    CREATE INDEX entry_blobs_digest ON entry_blobs(digest);
    CREATE TABLE entry_inputs(key TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY(key, path)) WITHOUT ROWID;
    CREATE INDEX entry_inputs_path ON entry_inputs(path);
    CREATE TABLE blobs(digest TEXT PRIMARY KEY, stored_bytes INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE usage(
        hour INTEGER NOT NULL, command TEXT NOT NULL, namespace TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        stores INTEGER NOT NULL DEFAULT 0, time_saved_ms INTEGER NOT NULL DEFAULT 0,
        bytes_replayed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(hour, command, namespace)) WITHOUT ROWID;
    CREATE TABLE faults(
        hour INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY(hour, kind, reason)) WITHOUT ROWID;
    CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: remote tier counters.
    "CREATE TABLE remote_usage(
        hour INTEGER NOT NULL, op TEXT NOT NULL, kind TEXT NOT NULL,
        count INTEGER NOT NULL, bytes INTEGER NOT NULL,
        PRIMARY KEY(hour, op, kind)) WITHOUT ROWID;",
    // 3: aggregates for `stats`, kept exact by triggers (see "Aggregates" above). Built here
    // from the base tables, so an index of an older version gets them on its first open.
    "CREATE TABLE breakdown(
        grp TEXT NOT NULL, name TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        time_saved_ms INTEGER NOT NULL DEFAULT 0, usage_rows INTEGER NOT NULL DEFAULT 0,
        entries INTEGER NOT NULL DEFAULT 0, size_bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(grp, name)) WITHOUT ROWID;
    CREATE INDEX breakdown_top ON breakdown(grp, hits DESC, misses DESC, size_bytes DESC, name);
    CREATE INDEX breakdown_stored ON breakdown(grp, size_bytes DESC, name) WHERE entries > 0;
    CREATE TABLE usage_days(
        day INTEGER PRIMARY KEY,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        stores INTEGER NOT NULL DEFAULT 0, time_saved_ms INTEGER NOT NULL DEFAULT 0,
        bytes_replayed INTEGER NOT NULL DEFAULT 0, usage_rows INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE totals(
        id INTEGER PRIMARY KEY CHECK(id = 0),
        entries INTEGER NOT NULL, record_bytes INTEGER NOT NULL,
        blobs INTEGER NOT NULL, blob_stored_bytes INTEGER NOT NULL, blob_bytes INTEGER NOT NULL,
        command_names INTEGER NOT NULL, namespace_names INTEGER NOT NULL);
    CREATE INDEX entries_created ON entries(created_ms);

    INSERT INTO breakdown(grp, name, hits, misses, time_saved_ms, usage_rows, entries, size_bytes)
        SELECT 'command', name, SUM(h), SUM(m), SUM(s), SUM(r), SUM(e), SUM(b) FROM (
            SELECT command AS name, hits AS h, misses AS m, time_saved_ms AS s, 1 AS r, 0 AS e,
                0 AS b FROM usage
            UNION ALL SELECT command, 0, 0, 0, 0, 1, size_bytes FROM entries)
        GROUP BY name;
    INSERT INTO breakdown(grp, name, hits, misses, time_saved_ms, usage_rows, entries, size_bytes)
        SELECT 'namespace', name, SUM(h), SUM(m), SUM(s), SUM(r), SUM(e), SUM(b) FROM (
            SELECT namespace AS name, hits AS h, misses AS m, time_saved_ms AS s, 1 AS r, 0 AS e,
                0 AS b FROM usage
            UNION ALL SELECT namespace, 0, 0, 0, 0, 1, size_bytes FROM entries)
        GROUP BY name;
    INSERT INTO usage_days(day, hits, misses, stores, time_saved_ms, bytes_replayed, usage_rows)
        SELECT hour / 24, SUM(hits), SUM(misses), SUM(stores), SUM(time_saved_ms),
            SUM(bytes_replayed), COUNT(*)
        FROM usage GROUP BY hour / 24;
    INSERT INTO totals(id, entries, record_bytes, blobs, blob_stored_bytes, blob_bytes,
            command_names, namespace_names)
        SELECT 0, (SELECT COUNT(*) FROM entries), (SELECT COALESCE(SUM(record_bytes), 0) FROM entries),
            (SELECT COUNT(*) FROM blobs), (SELECT COALESCE(SUM(stored_bytes), 0) FROM blobs),
            (SELECT COALESCE(SUM(size), 0) FROM blobs),
            (SELECT COUNT(*) FROM breakdown WHERE grp = 'command'),
            (SELECT COUNT(*) FROM breakdown WHERE grp = 'namespace');

    CREATE TRIGGER breakdown_added AFTER INSERT ON breakdown BEGIN
        UPDATE totals SET command_names = command_names + (new.grp = 'command'),
            namespace_names = namespace_names + (new.grp = 'namespace');
    END;
    CREATE TRIGGER breakdown_removed AFTER DELETE ON breakdown BEGIN
        UPDATE totals SET command_names = command_names - (old.grp = 'command'),
            namespace_names = namespace_names - (old.grp = 'namespace');
    END;

    CREATE TRIGGER usage_added AFTER INSERT ON usage BEGIN
        INSERT INTO breakdown(grp, name, hits, misses, time_saved_ms, usage_rows)
            VALUES('command', new.command, new.hits, new.misses, new.time_saved_ms, 1),
                ('namespace', new.namespace, new.hits, new.misses, new.time_saved_ms, 1)
            ON CONFLICT(grp, name) DO UPDATE SET hits = hits + excluded.hits,
                misses = misses + excluded.misses,
                time_saved_ms = time_saved_ms + excluded.time_saved_ms,
                usage_rows = usage_rows + 1;
        INSERT INTO usage_days(day, hits, misses, stores, time_saved_ms, bytes_replayed, usage_rows)
            VALUES(new.hour / 24, new.hits, new.misses, new.stores, new.time_saved_ms,
                new.bytes_replayed, 1)
            ON CONFLICT(day) DO UPDATE SET hits = hits + excluded.hits,
                misses = misses + excluded.misses, stores = stores + excluded.stores,
                time_saved_ms = time_saved_ms + excluded.time_saved_ms,
                bytes_replayed = bytes_replayed + excluded.bytes_replayed,
                usage_rows = usage_rows + 1;
    END;
    CREATE TRIGGER usage_rekeyed BEFORE UPDATE OF hour, command, namespace ON usage
        WHEN old.hour != new.hour OR old.command != new.command OR old.namespace != new.namespace
    BEGIN
        SELECT RAISE(ABORT, 'usage rows are never re-keyed (the stats aggregates assume it)');
    END;
    CREATE TRIGGER usage_changed AFTER UPDATE OF hits, misses, stores, time_saved_ms,
        bytes_replayed ON usage
    BEGIN
        UPDATE breakdown SET hits = hits + new.hits - old.hits,
                misses = misses + new.misses - old.misses,
                time_saved_ms = time_saved_ms + new.time_saved_ms - old.time_saved_ms
            WHERE grp = 'command' AND name = new.command;
        UPDATE breakdown SET hits = hits + new.hits - old.hits,
                misses = misses + new.misses - old.misses,
                time_saved_ms = time_saved_ms + new.time_saved_ms - old.time_saved_ms
            WHERE grp = 'namespace' AND name = new.namespace;
        UPDATE usage_days SET hits = hits + new.hits - old.hits,
                misses = misses + new.misses - old.misses, stores = stores + new.stores - old.stores,
                time_saved_ms = time_saved_ms + new.time_saved_ms - old.time_saved_ms,
                bytes_replayed = bytes_replayed + new.bytes_replayed - old.bytes_replayed
            WHERE day = new.hour / 24;
    END;
    CREATE TRIGGER usage_removed AFTER DELETE ON usage BEGIN
        UPDATE breakdown SET hits = hits - old.hits, misses = misses - old.misses,
                time_saved_ms = time_saved_ms - old.time_saved_ms, usage_rows = usage_rows - 1
            WHERE grp = 'command' AND name = old.command;
        UPDATE breakdown SET hits = hits - old.hits, misses = misses - old.misses,
                time_saved_ms = time_saved_ms - old.time_saved_ms, usage_rows = usage_rows - 1
            WHERE grp = 'namespace' AND name = old.namespace;
        DELETE FROM breakdown WHERE grp = 'command' AND name = old.command
            AND usage_rows = 0 AND entries = 0;
        DELETE FROM breakdown WHERE grp = 'namespace' AND name = old.namespace
            AND usage_rows = 0 AND entries = 0;
        UPDATE usage_days SET hits = hits - old.hits, misses = misses - old.misses,
                stores = stores - old.stores, time_saved_ms = time_saved_ms - old.time_saved_ms,
                bytes_replayed = bytes_replayed - old.bytes_replayed, usage_rows = usage_rows - 1
            WHERE day = old.hour / 24;
        DELETE FROM usage_days WHERE day = old.hour / 24 AND usage_rows = 0;
    END;

    CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN
        INSERT INTO breakdown(grp, name, entries, size_bytes)
            VALUES('command', new.command, 1, new.size_bytes),
                ('namespace', new.namespace, 1, new.size_bytes)
            ON CONFLICT(grp, name) DO UPDATE SET entries = entries + 1,
                size_bytes = size_bytes + excluded.size_bytes;
        UPDATE totals SET entries = entries + 1, record_bytes = record_bytes + new.record_bytes;
    END;
    CREATE TRIGGER entries_removed AFTER DELETE ON entries BEGIN
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'command' AND name = old.command;
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'namespace' AND name = old.namespace;
        DELETE FROM breakdown WHERE grp = 'command' AND name = old.command
            AND usage_rows = 0 AND entries = 0;
        DELETE FROM breakdown WHERE grp = 'namespace' AND name = old.namespace
            AND usage_rows = 0 AND entries = 0;
        UPDATE totals SET entries = entries - 1, record_bytes = record_bytes - old.record_bytes;
    END;
    CREATE TRIGGER entries_changed AFTER UPDATE OF command, namespace, size_bytes, record_bytes
        ON entries
    BEGIN
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'command' AND name = old.command;
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'namespace' AND name = old.namespace;
        INSERT INTO breakdown(grp, name, entries, size_bytes)
            VALUES('command', new.command, 1, new.size_bytes),
                ('namespace', new.namespace, 1, new.size_bytes)
            ON CONFLICT(grp, name) DO UPDATE SET entries = entries + 1,
                size_bytes = size_bytes + excluded.size_bytes;
        DELETE FROM breakdown WHERE grp = 'command' AND name = old.command
            AND usage_rows = 0 AND entries = 0;
        DELETE FROM breakdown WHERE grp = 'namespace' AND name = old.namespace
            AND usage_rows = 0 AND entries = 0;
        UPDATE totals SET record_bytes = record_bytes - old.record_bytes + new.record_bytes;
    END;

    CREATE TRIGGER blobs_added AFTER INSERT ON blobs BEGIN
        UPDATE totals SET blobs = blobs + 1, blob_stored_bytes = blob_stored_bytes + new.stored_bytes,
            blob_bytes = blob_bytes + new.size;
    END;
    CREATE TRIGGER blobs_removed AFTER DELETE ON blobs BEGIN
        UPDATE totals SET blobs = blobs - 1, blob_stored_bytes = blob_stored_bytes - old.stored_bytes,
            blob_bytes = blob_bytes - old.size;
    END;
    CREATE TRIGGER blobs_changed AFTER UPDATE OF stored_bytes, size ON blobs BEGIN
        UPDATE totals SET blob_stored_bytes = blob_stored_bytes - old.stored_bytes + new.stored_bytes,
            blob_bytes = blob_bytes - old.size + new.size;
    END;",
];

pub const INDEX_FILE: &str = "index-v1.sqlite";
const HOUR_MS: u64 = 3_600_000;

/// An open index.
pub struct Index {
    pub conn: Connection,
}

/// What reconciling the index with `ac-v1/` found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reconciled {
    pub added: u64,
    pub removed: u64,
    pub corrupt: u64,
}

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
}

pub const ENTRY_COLUMNS: &str = "key, command, namespace, tags, cwd, created_ms, last_used_ms, hits, \
     duration_ms, exit_code, record_bytes, size_bytes, logical_bytes";

impl EntryRow {
    pub fn from_row(r: &rusqlite::Row) -> rusqlite::Result<EntryRow> {
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
            logical_bytes: r.get::<_, i64>(12)? as u64,
        })
    }
}

impl Index {
    pub fn path(store: &Store) -> PathBuf {
        store.root.join(INDEX_FILE)
    }

    /// Open (creating and migrating if needed) the index of `store`. A freshly created index is
    /// filled from the record files.
    pub fn open(store: &Store) -> Result<Index> {
        store.init()?;
        // One process at a time creates, migrates or rebuilds the index: concurrent first uses
        // would otherwise race on the schema, or delete a file another has open.
        let lock = store.lock_file("index.lock")?;
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
        let lock = store.lock_file("index.lock")?;
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

    /// Fold every pending journal event into the index.
    pub fn fold_journal(&mut self, store: &Store) -> Result<u64> {
        if !store.root.exists() {
            return Ok(0);
        }
        // One folder at a time: two could otherwise both apply the same `*.folding` file.
        let fold_lock = store.lock_file("fold.lock")?;
        fold_lock
            .lock()
            .context("locking the journal for folding")?;
        // Move the live journal aside (under its exclusive lock, so no writer is mid-append).
        if let Ok(f) = std::fs::File::open(&store.journal) {
            f.lock().context("locking the journal")?;
            let aside = store.root.join(format!(
                "journal-v1.{}.{}.folding",
                crate::clock::now_ms(),
                std::process::id()
            ));
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
                    .is_some_and(|n| n.starts_with("journal-v1.") && n.ends_with(".folding"))
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

    /// Make the entries table match the record files: index records it does not know, forget
    /// entries whose record is gone, and (unless `dry_run`) delete records that do not decode.
    pub fn reconcile_records(&mut self, store: &Store, dry_run: bool) -> Result<Reconciled> {
        let on_disk = list_fanout(&store.ac)?;
        let mut stmt = self.conn.prepare("SELECT key FROM entries")?;
        let known: HashSet<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        let mut out = Reconciled::default();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (key, path) in &on_disk {
            if known.contains(key) {
                continue;
            }
            match std::fs::read(path)
                .ok()
                .and_then(|b| record::decode(&b).ok())
            {
                Some(d) if &d.record.key == key => {
                    upsert_entry(&tx, store, &d.record, record_size(path), None)?;
                    out.added += 1;
                }
                _ => {
                    if !dry_run {
                        let _ = std::fs::remove_file(path);
                    }
                    out.corrupt += 1;
                }
            }
        }
        for key in known.difference(&on_disk.keys().cloned().collect()) {
            remove_entry_rows(&tx, key)?;
            out.removed += 1;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Make the blobs table match `cas-v1/`. Returns digest → (stored bytes, mtime) of every blob
    /// file found.
    pub fn reconcile_blobs(
        &mut self,
        store: &Store,
    ) -> Result<HashMap<String, (u64, std::time::SystemTime)>> {
        let mut found = HashMap::new();
        for (digest, path) in list_fanout(&store.cas.dir)? {
            if let Ok(m) = std::fs::metadata(&path) {
                found.insert(
                    digest,
                    (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)),
                );
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut known = HashSet::new();
            let mut stmt = tx.prepare("SELECT digest FROM blobs")?;
            for d in stmt.query_map([], |r| r.get::<_, String>(0))? {
                known.insert(d?);
            }
            for gone in known.iter().filter(|d| !found.contains_key(*d)) {
                tx.execute("DELETE FROM blobs WHERE digest = ?1", [gone])?;
            }
            for (digest, (len, _)) in found.iter().filter(|(d, _)| !known.contains(*d)) {
                tx.execute(
                    "INSERT OR IGNORE INTO blobs(digest, stored_bytes, size) VALUES(?1, ?2, ?3)",
                    params![
                        digest,
                        *len as i64,
                        blob_size(&store.cas.path(digest)).unwrap_or(0) as i64
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(found)
    }

    /// Entries matching a SQL condition (with parameters), in no particular order.
    pub fn entries_where(
        &self,
        condition: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<EntryRow>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE {condition}");
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params, EntryRow::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

fn record_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Uncompressed size from a blob's header (without reading the payload).
fn blob_size(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 48];
    f.read_exact(&mut header).ok()?;
    Some(u64::from_le_bytes(header[40..48].try_into().ok()?))
}

fn remove_entry_rows(tx: &Transaction, key: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM entry_blobs WHERE key = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM entry_inputs WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// Insert or replace the index rows for `rec`. Usage (hits, last use) survives a replacement.
fn upsert_entry(
    tx: &Transaction,
    store: &Store,
    rec: &Record,
    record_bytes: u64,
    used_ms: Option<u64>,
) -> Result<()> {
    let old: Option<(i64, i64)> = tx
        .prepare_cached("SELECT hits, last_used_ms FROM entries WHERE key = ?1")?
        .query_row([&rec.key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    remove_entry_rows(tx, &rec.key)?;
    let mut size = record_bytes;
    let mut logical = rec.stdout.size + rec.stderr.size;
    let mut seen = HashSet::new();
    for digest in rec.blobs() {
        if !seen.insert(digest.to_owned()) {
            continue;
        }
        let known: Option<i64> = tx
            .prepare_cached("SELECT stored_bytes FROM blobs WHERE digest = ?1")?
            .query_row([digest], |r| r.get(0))
            .optional()?;
        let stored = match known {
            Some(s) => s as u64,
            None => {
                let path = store.cas.path(digest);
                let stored = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let plain = blob_size(&path).unwrap_or(0);
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO blobs(digest, stored_bytes, size) VALUES(?1, ?2, ?3)",
                )?
                .execute(params![digest, stored as i64, plain as i64])?;
                stored
            }
        };
        size += stored;
        tx.prepare_cached("INSERT OR IGNORE INTO entry_blobs(key, digest) VALUES(?1, ?2)")?
            .execute(params![rec.key, digest])?;
    }
    logical += rec.outputs.iter().map(|o| o.size).sum::<u64>();
    let cwd = crate::paths::decode_os(&rec.cwd);
    for path in rec.components.inputs.keys() {
        let p = crate::paths::decode_os(path);
        let abs = crate::paths::resolve_lexically(&Path::new(&cwd).join(p));
        tx.prepare_cached("INSERT OR IGNORE INTO entry_inputs(key, path) VALUES(?1, ?2)")?
            .execute(params![rec.key, crate::paths::encode_os(abs.as_os_str())])?;
    }
    let (hits, last_used) = match old {
        Some((h, l)) => (h, (l as u64).max(used_ms.unwrap_or(rec.created_ms))),
        None => (0, used_ms.unwrap_or(rec.created_ms).max(rec.created_ms)),
    };
    tx.prepare_cached(
        "INSERT INTO entries(key, command, namespace, tags, cwd, created_ms, last_used_ms, hits,
            duration_ms, exit_code, record_bytes, size_bytes, logical_bytes)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        rec.key,
        rec.command,
        rec.namespace,
        serde_json::to_string(&rec.tags)?,
        crate::paths::display_encoded(&rec.cwd),
        rec.created_ms as i64,
        last_used as i64,
        hits,
        rec.duration_ms as i64,
        rec.exit_code,
        record_bytes as i64,
        size as i64,
        logical as i64
    ])?;
    Ok(())
}

/// Counters added to one `usage` row by one event.
#[derive(Default)]
struct UsageDelta {
    hits: u64,
    misses: u64,
    stores: u64,
    time_saved_ms: u64,
    bytes_replayed: u64,
}

/// Add `d` to the hourly usage row of (`ts`, `cmd`, `ns`) in one statement: each statement
/// fires the aggregate triggers once, so a hit is one upsert rather than one per counter.
fn bump_usage(tx: &Transaction, ts: u64, cmd: &str, ns: &str, d: UsageDelta) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::sample;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::at(d.path().join("c"));
        s.init().unwrap();
        (d, s)
    }

    #[test]
    fn folds_journal_once_and_rebuilds_from_records() {
        let (_d, s) = store();
        let rec = sample();
        s.write_record(&rec, b"hi\n", b"e\n").unwrap();
        let ev = |e| journal::append(&s.journal, &e).unwrap();
        ev(Event::Store {
            ts: 10,
            key: rec.key.clone(),
            cmd: "echo hi".into(),
            ns: "default".into(),
            bytes: 1,
            duration_ms: 1500,
        });
        for ts in [20, 30] {
            ev(Event::Hit {
                ts,
                key: rec.key.clone(),
                cmd: "echo hi".into(),
                ns: "default".into(),
                saved_ms: 1500,
                bytes: 5,
            });
        }
        let mut idx = Index::open(&s).unwrap();
        assert_eq!(idx.fold_journal(&s).unwrap(), 3);
        assert_eq!(idx.fold_journal(&s).unwrap(), 0);
        let rows = idx.entries_where("1", &[]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].hits, 2);
        let saved: i64 = idx
            .conn
            .query_row("SELECT SUM(time_saved_ms) FROM usage", [], |r| r.get(0))
            .unwrap();
        assert_eq!(saved, 3000);

        // Lose the index: entries come back from the files.
        drop(idx);
        std::fs::remove_file(Index::path(&s)).unwrap();
        let idx = Index::open(&s).unwrap();
        assert_eq!(idx.entries_where("1", &[]).unwrap().len(), 1);
    }

    /// Breakdown rows by (grp, name): [hits, misses, time saved, usage rows, entries, bytes].
    type Breakdown = std::collections::BTreeMap<(String, String), [i64; 6]>;
    /// Usage per day: [hits, misses, stores, time saved, bytes replayed, usage rows].
    type Days = std::collections::BTreeMap<i64, [i64; 6]>;

    /// What the aggregate tables hold.
    fn aggregates_kept(c: &Connection) -> (Breakdown, Days, [i64; 7]) {
        let mut breakdown = Breakdown::new();
        let mut stmt = c
            .prepare(
                "SELECT grp, name, hits, misses, time_saved_ms, usage_rows, entries, size_bytes
                 FROM breakdown",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let v: [i64; 6] = std::array::from_fn(|i| r.get(i + 2).unwrap());
            breakdown.insert((r.get(0).unwrap(), r.get(1).unwrap()), v);
        }
        let mut days = Days::new();
        let mut stmt = c
            .prepare(
                "SELECT day, hits, misses, stores, time_saved_ms, bytes_replayed, usage_rows
                 FROM usage_days",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            days.insert(
                r.get(0).unwrap(),
                std::array::from_fn(|i| r.get(i + 1).unwrap()),
            );
        }
        let totals = c
            .query_row(
                "SELECT entries, record_bytes, blobs, blob_stored_bytes, blob_bytes,
                    command_names, namespace_names FROM totals",
                [],
                |r| Ok(std::array::from_fn(|i| r.get(i).unwrap())),
            )
            .unwrap();
        (breakdown, days, totals)
    }

    /// The same figures computed from scratch, the way `stats` grouped the base tables before
    /// the aggregates existed.
    fn aggregates_from_scratch(c: &Connection) -> (Breakdown, Days, [i64; 7]) {
        let mut breakdown = Breakdown::new();
        for grp in ["command", "namespace"] {
            let sql = format!(
                "SELECT {grp}, SUM(hits), SUM(misses), SUM(time_saved_ms), COUNT(*) FROM usage
                 GROUP BY {grp}"
            );
            let mut stmt = c.prepare(&sql).unwrap();
            let mut rows = stmt.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                let v = breakdown
                    .entry((grp.into(), r.get(0).unwrap()))
                    .or_default();
                for (i, x) in v.iter_mut().take(4).enumerate() {
                    *x = r.get(i + 1).unwrap();
                }
            }
            let sql =
                format!("SELECT {grp}, COUNT(*), SUM(size_bytes) FROM entries GROUP BY {grp}");
            let mut stmt = c.prepare(&sql).unwrap();
            let mut rows = stmt.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                let v = breakdown
                    .entry((grp.into(), r.get(0).unwrap()))
                    .or_default();
                v[4] = r.get(1).unwrap();
                v[5] = r.get(2).unwrap();
            }
        }
        let mut days = Days::new();
        let mut stmt = c
            .prepare(
                "SELECT hour / 24, SUM(hits), SUM(misses), SUM(stores), SUM(time_saved_ms),
                    SUM(bytes_replayed), COUNT(*) FROM usage GROUP BY hour / 24",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            days.insert(
                r.get(0).unwrap(),
                std::array::from_fn(|i| r.get(i + 1).unwrap()),
            );
        }
        let count = |grp: &str| breakdown.keys().filter(|(g, _)| g == grp).count() as i64;
        let (command_names, namespace_names) = (count("command"), count("namespace"));
        let totals = c
            .query_row(
                "SELECT (SELECT COUNT(*) FROM entries), (SELECT COALESCE(SUM(record_bytes), 0)
                    FROM entries), (SELECT COUNT(*) FROM blobs),
                    (SELECT COALESCE(SUM(stored_bytes), 0) FROM blobs),
                    (SELECT COALESCE(SUM(size), 0) FROM blobs)",
                [],
                |r| {
                    let t: [i64; 5] = std::array::from_fn(|i| r.get(i).unwrap());
                    Ok([t[0], t[1], t[2], t[3], t[4], command_names, namespace_names])
                },
            )
            .unwrap();
        (breakdown, days, totals)
    }

    fn assert_aggregates_exact(idx: &Index, step: &str) {
        let kept = aggregates_kept(&idx.conn);
        let scratch = aggregates_from_scratch(&idx.conn);
        assert_eq!(kept, scratch, "aggregates differ after {step}");
    }

    /// A small deterministic generator (xorshift64*), so a failure replays from its seed.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// Write a blob file whose header gives `size` as its uncompressed size.
    fn write_blob(s: &Store, digest: &str, size: u64, stored: usize) {
        let path = s.cas.path(digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = vec![0u8; 48 + stored];
        bytes[40..48].copy_from_slice(&size.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn aggregates_stay_exact_under_every_writer() {
        const COMMANDS: [&str; 5] = ["cc a.c", "cc b.c", "ld app", "test", "echo hi"];
        const NAMESPACES: [&str; 3] = ["default", "build", "ci"];
        for seed in 1..=6u64 {
            let (_d, s) = store();
            let mut idx = Index::open(&s).unwrap();
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let digests: Vec<String> = (0..4).map(|i| format!("{i:x}").repeat(64)).collect();
            let base = 1_700_000_000_000u64;
            for step in 0..160 {
                let key = format!("{:02x}", rng.below(24)).repeat(32);
                let cmd = COMMANDS[rng.below(5) as usize].to_owned();
                let ns = NAMESPACES[rng.below(3) as usize].to_owned();
                let ts = base + rng.below(5 * 24 * HOUR_MS);
                let op = rng.below(20);
                let what = match op {
                    // Store (a new key or a replacement), with or without a blob.
                    0..=5 => {
                        let mut rec = sample();
                        rec.key = key.clone();
                        rec.command = cmd.clone();
                        rec.namespace = ns.clone();
                        rec.created_ms = ts;
                        if rng.below(2) == 0 {
                            let d = &digests[rng.below(4) as usize];
                            write_blob(&s, d, 1000 + rng.below(1000), rng.below(300) as usize);
                            rec.stdout.blob = Some(d.clone());
                        }
                        s.write_record(&rec, b"hi\n", b"e\n").unwrap();
                        journal::append(
                            &s.journal,
                            &Event::Store {
                                ts,
                                key,
                                cmd,
                                ns,
                                bytes: 1,
                                duration_ms: 10,
                            },
                        )
                        .unwrap();
                        "store"
                    }
                    6..=9 => {
                        let saved_ms = rng.below(5000);
                        let ev = Event::Hit {
                            ts,
                            key,
                            cmd,
                            ns,
                            saved_ms,
                            bytes: rng.below(100),
                        };
                        journal::append(&s.journal, &ev).unwrap();
                        "hit"
                    }
                    10..=11 => {
                        let ev = Event::Miss { ts, key, cmd, ns };
                        journal::append(&s.journal, &ev).unwrap();
                        "miss"
                    }
                    12..=14 => {
                        idx.fold_journal(&s).unwrap();
                        "fold"
                    }
                    // gc: evict the least recently used entries, then their orphaned blobs.
                    15 => {
                        let rows = idx
                            .entries_where("1 ORDER BY last_used_ms, key", &[])
                            .unwrap();
                        let n = rng.below(rows.len() as u64 + 1) as usize;
                        let keys: Vec<String> = rows.into_iter().take(n).map(|r| r.key).collect();
                        let orphans = idx.remove_entries(&s, &keys).unwrap();
                        idx.remove_blobs(&s, &orphans).unwrap();
                        "gc"
                    }
                    // invalidate: every entry of one command.
                    16 => {
                        let rows = idx.entries_where("command = ?1", &[&cmd]).unwrap();
                        let keys: Vec<String> = rows.into_iter().map(|r| r.key).collect();
                        let orphans = idx.remove_entries(&s, &keys).unwrap();
                        idx.remove_blobs(&s, &orphans).unwrap();
                        "invalidate"
                    }
                    17 => {
                        crate::manage::stats::reset(&idx).unwrap();
                        "reset"
                    }
                    // verify --fix: a record and a blob vanished behind the index's back.
                    18 => {
                        s.remove_record(&key);
                        let _ = std::fs::remove_file(s.cas.path(&digests[rng.below(4) as usize]));
                        idx.reconcile_records(&s, false).unwrap();
                        idx.reconcile_blobs(&s).unwrap();
                        "reconcile"
                    }
                    _ => {
                        drop(idx);
                        idx = Index::rebuild(&s, &anyhow::anyhow!("test")).unwrap();
                        "rebuild"
                    }
                };
                assert_aggregates_exact(&idx, &format!("{what} (seed {seed}, step {step})"));
            }
            idx.fold_journal(&s).unwrap();
            assert_aggregates_exact(&idx, &format!("the last fold (seed {seed})"));
            let (breakdown, days, _) = aggregates_kept(&idx.conn);
            assert!(
                !breakdown.is_empty() && !days.is_empty(),
                "seed {seed} tested nothing"
            );
        }
    }

    #[test]
    fn migration_3_builds_the_aggregates_of_an_older_index() {
        let (_d, s) = store();
        let path = Index::path(&s);
        {
            // A version-2 index with entries, blobs and usage in it.
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            for sql in &MIGRATIONS[..2] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 2).unwrap();
            tx.execute("INSERT INTO meta(name, value) VALUES('built', '1')", [])
                .unwrap();
            let digest = "c".repeat(64);
            write_blob(&s, &digest, 5000, 700);
            for (i, (cmd, ns)) in [
                ("cc a.c", "build"),
                ("cc b.c", "build"),
                ("test", "default"),
            ]
            .into_iter()
            .enumerate()
            {
                let mut rec = sample();
                rec.key = format!("{i}").repeat(64);
                rec.command = cmd.into();
                rec.namespace = ns.into();
                rec.stdout.blob = (i == 0).then(|| digest.clone());
                s.write_record(&rec, b"hi\n", b"e\n").unwrap();
                let path = s.record_path(&rec.key);
                upsert_entry(&tx, &s, &rec, record_size(&path), None).unwrap();
                for hour in [10, 11, 40] {
                    let d = UsageDelta {
                        hits: i as u64 + hour,
                        misses: 1,
                        time_saved_ms: 100 * hour,
                        ..UsageDelta::default()
                    };
                    bump_usage(&tx, hour * HOUR_MS, cmd, ns, d).unwrap();
                }
            }
            bump_usage(
                &tx,
                70 * HOUR_MS,
                "never stored",
                "ci",
                UsageDelta::default(),
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let idx = Index::open(&s).unwrap();
        let version: i64 = idx
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        let (breakdown, days, totals) = aggregates_kept(&idx.conn);
        assert_eq!(
            (breakdown.len(), days.len(), totals[0], totals[2]),
            (7, 3, 3, 1)
        );
        assert_aggregates_exact(&idx, "migration 3");
    }

    #[test]
    fn usage_rows_cannot_be_re_keyed() {
        let (_d, s) = store();
        let idx = Index::open(&s).unwrap();
        idx.conn
            .execute(
                "INSERT INTO usage(hour, command, namespace, hits) VALUES(1, 'a', 'default', 1)",
                [],
            )
            .unwrap();
        let err = idx
            .conn
            .execute("UPDATE usage SET command = 'b'", [])
            .unwrap_err();
        assert!(err.to_string().contains("never re-keyed"), "{err}");
        assert_aggregates_exact(&idx, "a refused re-key");
    }

    #[test]
    fn a_crash_after_commit_does_not_double_count() {
        let (_d, s) = store();
        let mut idx = Index::open(&s).unwrap();
        let aside = s.root.join("journal-v1.1.1.folding");
        std::fs::write(&aside, "{\"ev\":\"error\",\"ts\":1,\"kind\":\"read\"}\n").unwrap();
        idx.set_meta("folded:journal-v1.1.1.folding", "1").unwrap();
        assert_eq!(idx.fold_journal(&s).unwrap(), 0);
        assert!(!aside.exists());
    }
}
