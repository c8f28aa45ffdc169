//! `gc`: evict entries by age, then by value or least-recent use (`gc_policy`) down to the size
//! limit, then delete what nothing references.
//!
//! The size that counts is everything under the cache directory (records, blobs, index, journal,
//! stat caches, locks, temp files), measured by walking it, so the reported size is the real one.
//! gc first reconciles the index with the files (entries or blobs present on one side only).
//!
//! Never deleting a blob a concurrent store is about to reference: a store writes its blobs (or,
//! for a blob that already exists, touches its mtime) *before* it writes the record that
//! references them. So:
//! - a blob that no entry references is deleted only when older than [`BLOB_GRACE`] (it may
//!   belong to a store in flight);
//! - a blob orphaned by removing entries is deleted only if it was not touched after the newest
//!   of those entries' record files was written (a later touch means a concurrent store has
//!   just deduplicated onto it).
//!
//! Temp files and lock files are left alone for an hour for the same reason.
//!
//! At most one gc runs at a time (`gc.lock`). An automatic gc (after a store finds the cache over
//! `max_size`) skips when another holds the lock, and brings the cache to 90% of the limit.

use crate::cli::GcPolicy;
use crate::clock::now_ms;
use crate::store::Store;
use crate::store::index::{EntryOrder, Index, Reconciled};
use crate::store::manifest::Read;
use anyhow::Result;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

pub const BLOB_GRACE: Duration = Duration::from_secs(3600);
const TEMP_GRACE: Duration = Duration::from_secs(3600);
const STAT_CACHE_MAX_AGE: Duration = Duration::from_secs(30 * 86_400);

pub struct GcOptions {
    pub max_size: Option<u64>,
    /// What goes first to get under `max_size`.
    pub policy: GcPolicy,
    pub max_age: Option<Duration>,
    pub dry_run: bool,
    /// Fraction of `max_size` to bring the cache down to (1.0 for a manual gc, 0.9 for auto).
    pub target_fraction: f64,
}

#[derive(Serialize, Debug)]
pub struct Evicted {
    pub key: String,
    pub command: String,
    pub last_used: String,
    pub size_bytes: u64,
    /// `max_age` or `max_size`.
    pub reason: &'static str,
}

#[derive(Serialize, Debug, Default)]
pub struct GcReport {
    pub dry_run: bool,
    pub size_before_bytes: u64,
    pub size_after_bytes: u64,
    pub max_size_bytes: Option<u64>,
    pub entries_removed: u64,
    pub blobs_removed: u64,
    pub temp_files_removed: u64,
    pub bytes_freed: u64,
    pub reconciled_added: u64,
    pub reconciled_removed: u64,
    pub corrupt_records_removed: u64,
    pub evicted: Vec<Evicted>,
}

/// Total bytes of every file under `root`, except SQLite's shared-memory file (it exists only
/// while the index is open, as gc itself has it open now).
pub fn disk_usage(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.file_name().to_string_lossy().ends_with("-shm"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn age_of(m: &std::fs::Metadata, now: SystemTime) -> Duration {
    m.modified()
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

pub fn run(store: &Store, idx: &mut Index, opts: &GcOptions) -> Result<GcReport> {
    // A little before now: records written in the same (coarse) clock tick count as newer.
    let gc_started = SystemTime::now() - Duration::from_secs(2);
    let Reconciled {
        added,
        removed,
        corrupt,
    } = idx.reconcile_records(store, opts.dry_run)?;
    let blob_files = idx.reconcile_blobs(store)?;
    // Fold the write-ahead log into the index so that what is measured is what stays.
    idx.checkpoint();
    let now_sys = SystemTime::now();
    let now = now_ms();
    let size_before = disk_usage(&store.root);

    // Entries in eviction order, and which blobs each references.
    let entries = idx.entries(match opts.policy {
        GcPolicy::Value => EntryOrder::LeastValuable,
        GcPolicy::Lru => EntryOrder::LeastRecentlyUsed,
    })?;
    let mut blobs_of: HashMap<String, Vec<String>> = HashMap::new();
    let mut refs: HashMap<String, u64> = HashMap::new();
    for (k, d) in idx.blob_references()? {
        *refs.entry(d.clone()).or_default() += 1;
        blobs_of.entry(k).or_default().push(d);
    }
    let blob_mtime = |d: &str| blob_files.get(d).map(|(_, m)| *m);
    let blob_len = |d: &str| blob_files.get(d).map(|(l, _)| *l).unwrap_or(0);
    // Newest record mtime among removed entries, per blob they reference.
    let mut removed_record_time: HashMap<String, SystemTime> = HashMap::new();

    let mut report = GcReport {
        dry_run: opts.dry_run,
        size_before_bytes: size_before,
        max_size_bytes: opts.max_size,
        reconciled_added: added,
        reconciled_removed: removed,
        corrupt_records_removed: corrupt,
        ..Default::default()
    };
    let mut freed = 0u64;
    let mut evict_keys = Vec::new();
    let mut orphaned: HashSet<String> = HashSet::new();
    let mut evict = |e: &crate::store::index::EntryRow, reason: &'static str, freed: &mut u64| {
        *freed += e.record_bytes;
        let record_time = record_mtime(store, &e.key);
        for d in blobs_of.get(&e.key).into_iter().flatten() {
            let t = removed_record_time.entry(d.clone()).or_insert(record_time);
            *t = (*t).max(record_time);
            let n = refs.get_mut(d).expect("counted above");
            *n -= 1;
            if *n == 0 && blob_mtime(d).is_some_and(|m| m <= *t) {
                orphaned.insert(d.clone());
                *freed += blob_len(d);
            }
        }
        evict_keys.push(e.key.clone());
        report.evicted.push(Evicted {
            key: e.key.clone(),
            command: e.command.clone(),
            last_used: crate::ui::rfc3339(e.last_used_ms),
            size_bytes: e.size_bytes,
            reason,
        });
    };
    let mut remaining = Vec::new();
    for e in &entries {
        let too_old = opts
            .max_age
            .is_some_and(|age| now.saturating_sub(e.last_used_ms) > age.as_millis() as u64);
        if too_old {
            evict(e, "max_age", &mut freed);
        } else {
            remaining.push(e);
        }
    }
    // The clock of the value policy moves up to the highest value evicted for room.
    let mut highest_evicted: Option<f64> = None;
    if let Some(max) = opts.max_size {
        let target = (max as f64 * opts.target_fraction) as u64;
        for e in remaining {
            if size_before.saturating_sub(freed) <= target {
                break;
            }
            evict(e, "max_size", &mut freed);
            highest_evicted = Some(highest_evicted.map_or(e.value, |h: f64| h.max(e.value)));
        }
    }
    // Blobs that nothing referenced to begin with (left by an interrupted store, or spared
    // last time because a store touched them): only once past the grace period.
    for d in blob_files.keys() {
        let old = blob_mtime(d)
            .is_some_and(|m| now_sys.duration_since(m).unwrap_or_default() >= BLOB_GRACE);
        if !refs.contains_key(d) && old && orphaned.insert(d.clone()) {
            freed += blob_len(d);
        }
    }

    report.entries_removed = evict_keys.len() as u64;
    let orphaned: Vec<String> = orphaned.into_iter().collect();
    report.blobs_removed = orphaned.len() as u64;
    if !opts.dry_run {
        let evicted: Vec<(&str, &str)> = report
            .evicted
            .iter()
            .map(|e| (e.key.as_str(), e.reason))
            .collect();
        idx.remember_evicted(&evicted, now)?;
        idx.remove_entries(store, &evict_keys)?;
        if let (GcPolicy::Value, Some(clock)) = (opts.policy, highest_evicted) {
            idx.advance_value_clock(clock)?;
        }
        // Last check, with stores held off (Store::blob_lock): blobs referenced by any record
        // written since gc started are kept, and so is any blob touched since gc listed it.
        let _blobs = store.blob_lock(true)?;
        let protected = blobs_of_records_since(store, gc_started);
        let still_safe: Vec<String> = orphaned
            .into_iter()
            .filter(|d| !protected.contains(d.as_str()))
            .filter(|d| {
                let Ok(mtime) = std::fs::metadata(store.cas.path(d)).and_then(|m| m.modified())
                else {
                    return true;
                };
                match removed_record_time.get(d) {
                    Some(record_time) => mtime <= *record_time,
                    None => now_sys.duration_since(mtime).unwrap_or_default() >= BLOB_GRACE,
                }
            })
            .collect();
        let (n, _) = idx.remove_blobs(store, &still_safe)?;
        report.blobs_removed = n;
    }

    // Leftovers: temp files of dead processes, locks of keys that are gone, unused stat caches.
    let live: HashSet<String> = idx.entry_keys()?;
    let sweep = |dir: &Path, keep: &dyn Fn(&Path, &std::fs::Metadata) -> bool| -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for e in walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .filter_map(|e| e.ok())
        {
            if !e.file_type().is_file() {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            if keep(e.path(), &m) {
                continue;
            }
            if opts.dry_run || std::fs::remove_file(e.path()).is_ok() {
                n += 1;
                bytes += m.len();
            }
        }
        (n, bytes)
    };
    let (tmp_n, tmp_b) = sweep(&store.tmp, &|_, m| age_of(m, now_sys) < TEMP_GRACE);
    let (_, lock_b) = sweep(&store.locks, &|p, m| {
        let key = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        live.contains(key) || age_of(m, now_sys) < TEMP_GRACE
    });
    let (_, stat_b) = sweep(&store.stat, &|_, m| age_of(m, now_sys) < STAT_CACHE_MAX_AGE);
    let manifest_b = prune_manifests(store, opts.dry_run, now);
    report.temp_files_removed = tmp_n;
    freed += tmp_b + lock_b + stat_b + manifest_b;

    if opts.dry_run {
        report.bytes_freed = freed.min(size_before);
        report.size_after_bytes = size_before.saturating_sub(freed);
    } else {
        idx.checkpoint();
        let after = disk_usage(&store.root);
        report.size_after_bytes = after;
        report.bytes_freed = size_before.saturating_sub(after);
        store.set_ledger(after);
    }
    Ok(report)
}

/// Blobs referenced by records written since `since` (stores that ran while gc did).
/// How long a `--trace auto` manifest whose entries are all gone is kept: as long as gc
/// remembers what it evicted, so that a later run that matches one of its candidates is
/// counted as a hit lost to eviction.
const EMPTY_MANIFEST_KEPT_MS: u64 = 90 * 24 * crate::clock::HOUR_MS;

/// Delete the `--trace auto` manifests none of whose entries is left and whose newest
/// candidate is older than [`EMPTY_MANIFEST_KEPT_MS`]. Candidates are not pruned one by one: a
/// manifest holds at most 16, and one whose entry was evicted is how a later miss is known to
/// be a hit lost to eviction. Each is deleted under its key's lock, which a store holds while it
/// adds a candidate. Returns the bytes freed.
fn prune_manifests(store: &Store, dry_run: bool, now: u64) -> u64 {
    let dir = crate::store::layout::Item::Manifests.path(&store.root);
    let mut freed = 0;
    for e in walkdir::WalkDir::new(&dir)
        .min_depth(2)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
    {
        let Some(key) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(Some(_lock)) = crate::store::lock::try_acquire(&store.lock_path(&key)) else {
            continue;
        };
        // (A corrupt one is removed by the read.)
        let Ok(Read::Found(m)) = store.read_manifest(&key) else {
            continue;
        };
        let newest = m.candidates.iter().map(|c| c.created_ms).max().unwrap_or(0);
        let empty = !m
            .candidates
            .iter()
            .any(|c| store.record_path(&c.entry).exists());
        if empty && now.saturating_sub(newest) > EMPTY_MANIFEST_KEPT_MS {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            if dry_run || std::fs::remove_file(e.path()).is_ok() {
                freed += len;
            }
        }
    }
    freed
}

pub fn blobs_of_records_since(store: &Store, since: SystemTime) -> HashSet<String> {
    let mut out = HashSet::new();
    for e in walkdir::WalkDir::new(&store.ac)
        .min_depth(2)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let fresh = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .is_some_and(|t| t >= since);
        if !fresh {
            continue;
        }
        if let Some(d) = std::fs::read(e.path())
            .ok()
            .and_then(|b| crate::store::record::decode(&b).ok())
        {
            out.extend(d.record.blobs().map(str::to_owned));
        }
    }
    out
}

/// When the record file of `key` was last written (the epoch if it is gone).
pub fn record_mtime(store: &Store, key: &str) -> SystemTime {
    std::fs::metadata(store.record_path(key))
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Of `orphans` (blobs no longer referenced once `removed` entries are gone), those that no
/// store touched after the newest of the removed records that referenced them was written.
pub fn safe_to_delete(
    store: &Store,
    removed: &HashMap<String, Vec<String>>,
    record_times: &HashMap<String, SystemTime>,
    orphans: &[String],
) -> Vec<String> {
    let mut newest: HashMap<&str, SystemTime> = HashMap::new();
    for (key, blobs) in removed {
        let t = record_times
            .get(key)
            .copied()
            .unwrap_or(std::time::UNIX_EPOCH);
        for b in blobs {
            let e = newest.entry(b.as_str()).or_insert(t);
            *e = (*e).max(t);
        }
    }
    orphans
        .iter()
        .filter(|d| {
            let touched = std::fs::metadata(store.cas.path(d)).and_then(|m| m.modified());
            match (touched, newest.get(d.as_str())) {
                (Ok(m), Some(t)) => m <= *t,
                _ => false,
            }
        })
        .cloned()
        .collect()
}

/// Run gc while holding `gc.lock`: waiting for it (manual), or skipping when busy (auto).
pub fn locked<T>(store: &Store, wait: bool, f: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
    store.init()?;
    let file = store.lock_file(crate::store::layout::Item::GcLock)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) if !wait => return Ok(None),
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("cachectl: waiting for another gc to finish...");
            file.lock()?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    f().map(Some)
}
