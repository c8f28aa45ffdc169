//! Reconciling the index with the files: records and blobs on disk are the truth.

use super::value::VALUE_NOW;
use super::{Index, Reconciled, list_fanout};
use crate::store::Store;
use crate::store::record::{self, Record};
use anyhow::Result;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::{HashMap, HashSet};
use std::path::Path;

impl Index {
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
}

pub(super) fn record_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Uncompressed size from a blob's header (without reading the payload).
pub(super) fn blob_size(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 48];
    f.read_exact(&mut header).ok()?;
    Some(u64::from_le_bytes(header[40..48].try_into().ok()?))
}

pub(super) fn remove_entry_rows(tx: &Transaction, key: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM entry_blobs WHERE key = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM entry_inputs WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

/// Insert or replace the index rows for `rec`. Usage (hits, last use) survives a replacement.
pub(super) fn upsert_entry(
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
    // Declared inputs, and what an `auto` run read under its working directory (the project's
    // files: the system's own would make the table a hundred rows per compile).
    let observed = rec.components.observed.iter().flat_map(|o| o.keys());
    let declared = rec.components.inputs.keys().map(|p| (p, true));
    for (path, declared) in declared.chain(observed.map(|p| (p, false))) {
        let p = crate::paths::decode_os(path);
        if !declared && Path::new(&p).is_absolute() {
            continue;
        }
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
    tx.prepare_cached(&format!(
        "UPDATE entries SET value = {VALUE_NOW} WHERE key = ?1"
    ))?
    .execute([&rec.key])?;
    Ok(())
}
