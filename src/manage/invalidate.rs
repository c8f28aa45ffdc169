//! `invalidate`: remove the entries a selection names. Selectors combine with AND; with none,
//! nothing is removed unless `--all` says so.

use crate::clock::now_ms;
use crate::cmdline::CommandPattern;
use crate::error::usage;
use crate::store::Store;
use crate::store::index::{EntryRow, Index, Selection};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Selector {
    /// Glob over the stored command line (as `[[rule]] match`), or a regex with `regex`.
    pub pattern: Option<String>,
    pub regex: bool,
    pub namespace: Option<String>,
    pub tag: Option<String>,
    /// Absolute, normalised path: entries with this input (or an input below it).
    pub input: Option<PathBuf>,
    pub key: Option<String>,
    pub older_than: Option<Duration>,
    pub all: bool,
}

impl Selector {
    fn is_empty(&self) -> bool {
        self.pattern.is_none()
            && self.namespace.is_none()
            && self.tag.is_none()
            && self.input.is_none()
            && self.key.is_none()
            && self.older_than.is_none()
    }
}

#[derive(Serialize, Debug)]
pub struct Removed {
    pub key: String,
    pub command: String,
    pub size_bytes: u64,
}

#[derive(Serialize, Debug)]
pub struct InvalidateReport {
    pub dry_run: bool,
    pub entries_removed: u64,
    pub bytes_removed: u64,
    pub entries: Vec<Removed>,
}

/// The entries `sel` selects. A selector-less call without `--all` is a usage error.
pub fn select(idx: &Index, sel: &Selector) -> Result<Vec<EntryRow>> {
    if sel.is_empty() && !sel.all {
        return Err(usage(
            "nothing selected: give a PATTERN or --namespace/--tag/--input/--key/--older-than; to remove every entry, pass --all",
        ));
    }
    if sel
        .key
        .as_deref()
        .is_some_and(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(usage(
            "--key takes a key or a key prefix (hex digits, as `cachectl ls` shows)",
        ));
    }
    let key = sel.key.as_ref().map(|k| k.to_ascii_lowercase());
    let input = sel
        .input
        .as_ref()
        .map(|p| crate::paths::encode_os(p.as_os_str()));
    let selection = Selection {
        namespace: sel.namespace.as_deref(),
        tag: sel.tag.as_deref(),
        key_prefix: key.as_deref(),
        created_before_ms: sel
            .older_than
            .map(|age| now_ms().saturating_sub(age.as_millis() as u64)),
        input: input.as_deref(),
    };
    let mut rows = idx.select(&selection)?;
    if let Some(p) = &sel.pattern {
        if sel.regex {
            let re =
                regex::Regex::new(p).map_err(|e| usage(format!("invalid --regex `{p}`: {e}")))?;
            rows.retain(|r| re.is_match(&r.command));
        } else {
            let glob = CommandPattern::new(p).map_err(|e| usage(format!("{e:#}")))?;
            rows.retain(|r| glob.matches(&r.command));
        }
    }
    rows.sort_by(|a, b| a.command.cmp(&b.command).then(a.key.cmp(&b.key)));
    Ok(rows)
}

/// Resolve `--input PATH` against the working directory, lexically (the file may be gone).
pub fn absolute_input(cwd: &Path, p: &Path) -> PathBuf {
    crate::paths::resolve_lexically(&cwd.join(p))
}

pub fn run(
    store: &Store,
    idx: &mut Index,
    sel: &Selector,
    dry_run: bool,
) -> Result<InvalidateReport> {
    let rows = select(idx, sel)?;
    let keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    let mut bytes = rows.iter().map(|r| r.record_bytes).sum::<u64>();
    if dry_run {
        bytes = rows.iter().map(|r| r.size_bytes).sum();
    } else {
        let blobs = idx.blobs_of(&keys)?;
        let times = keys
            .iter()
            .map(|k| (k.clone(), crate::manage::gc::record_mtime(store, k)))
            .collect();
        let orphans = idx
            .remove_entries(store, &keys)
            .context("removing entries")?;
        // Their blobs go now, except any a concurrent store has just deduplicated onto.
        // As gc does: with stores held off, keep blobs a record written meanwhile references.
        let _blobs = if orphans.is_empty() {
            None
        } else {
            Some(store.blob_lock(true)?)
        };
        let since = std::time::SystemTime::now() - Duration::from_secs(2);
        let protected = if orphans.is_empty() {
            Default::default()
        } else {
            crate::manage::gc::blobs_of_records_since(store, since)
        };
        let orphans: Vec<String> = orphans
            .into_iter()
            .filter(|d| !protected.contains(d))
            .collect();
        let safe = crate::manage::gc::safe_to_delete(store, &blobs, &times, &orphans);
        let (_, blob_bytes) = idx.remove_blobs(store, &safe)?;
        bytes += blob_bytes;
        let _ = store.add_to_ledger(-(bytes as i64));
    }
    Ok(InvalidateReport {
        dry_run,
        entries_removed: rows.len() as u64,
        bytes_removed: bytes,
        entries: rows
            .into_iter()
            .map(|r| Removed {
                key: r.key,
                command: r.command,
                size_bytes: r.size_bytes,
            })
            .collect(),
    })
}
