//! `verify`: re-hash every blob, decode every record, check every reference, and compare the
//! index with the disk. `--fix` removes what is broken and rebuilds the index from the files.

use crate::store::Store;
use crate::store::index::{Index, is_digest};
use crate::store::layout::Item;
use crate::store::manifest::Manifest;
use crate::store::record;
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Serialize, Debug, Clone)]
pub struct Problem {
    pub path: String,
    pub problem: String,
}

#[derive(Serialize, Debug, Default)]
pub struct VerifyReport {
    pub records_checked: u64,
    pub blobs_checked: u64,
    /// Files examined under `mf-v1/` (manifests of `--trace auto` commands).
    pub manifests_checked: u64,
    pub problems: Vec<Problem>,
    /// Problems removed by `--fix` (the report's `problems` then lists what was found).
    pub fixed: u64,
    /// Problems still present after `--fix` (should be none).
    pub remaining: Vec<Problem>,
}

/// Things to delete to repair the store.
#[derive(Default)]
struct Repairs {
    files: HashSet<PathBuf>,
    index_drift: bool,
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Pick about `n` of `items` deterministically but spread out (by a keyed hash).
fn sample<T: AsRef<Path>>(items: Vec<T>, n: usize) -> Vec<T> {
    let seed = crate::clock::now_ms().to_le_bytes();
    let mut keyed: Vec<([u8; 32], T)> = items
        .into_iter()
        .map(|p| {
            let mut h = blake3::Hasher::new();
            h.update(&seed)
                .update(p.as_ref().as_os_str().as_encoded_bytes());
            (*h.finalize().as_bytes(), p)
        })
        .collect();
    keyed.sort_by_key(|k| k.0);
    keyed.into_iter().take(n).map(|(_, p)| p).collect()
}

fn check(store: &Store, idx: &Index, sample_n: Option<usize>) -> Result<(VerifyReport, Repairs)> {
    let mut report = VerifyReport::default();
    let mut repairs = Repairs::default();
    let problem = |report: &mut VerifyReport, path: &Path, what: String| {
        report.problems.push(Problem {
            path: path.display().to_string(),
            problem: what,
        });
    };

    let mut record_files = files_under(&store.ac);
    if let Some(n) = sample_n {
        record_files = sample(record_files, n);
    }
    let mut referenced: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut good_records = HashSet::new();
    let bar = crate::ui::progress(record_files.len() as u64, "records");
    for path in &record_files {
        bar.inc(1);
        report.records_checked += 1;
        let name = name_of(path);
        if !is_digest(&name) {
            problem(
                &mut report,
                path,
                "unexpected file in the records folder".into(),
            );
            repairs.files.insert(path.clone());
            continue;
        }
        let decoded = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| record::decode(&b).map_err(|e| e.to_string()));
        match decoded {
            Err(e) => {
                problem(&mut report, path, format!("record does not decode: {e}"));
                repairs.files.insert(path.clone());
            }
            Ok(d) if d.record.key != name => {
                problem(
                    &mut report,
                    path,
                    format!("record is for key {}, not its file name", d.record.key),
                );
                repairs.files.insert(path.clone());
            }
            Ok(d) => {
                good_records.insert(name);
                for b in d.record.blobs() {
                    referenced
                        .entry(b.to_owned())
                        .or_default()
                        .push(path.clone());
                }
            }
        }
    }
    bar.finish_and_clear();

    let blob_files: Vec<PathBuf> = if sample_n.is_some() {
        referenced
            .keys()
            .map(|d| store.cas.path(d))
            .filter(|p| p.exists())
            .collect()
    } else {
        files_under(&store.cas.dir)
    };
    let bar = crate::ui::progress(blob_files.len() as u64, "blobs");
    let mut good_blobs = HashSet::new();
    for path in &blob_files {
        bar.inc(1);
        report.blobs_checked += 1;
        let name = name_of(path);
        if !is_digest(&name) {
            problem(
                &mut report,
                path,
                "unexpected file in the blobs folder".into(),
            );
            repairs.files.insert(path.clone());
            continue;
        }
        let ok = store
            .cas
            .open_verified(&name)
            .map_err(|e| e.to_string())
            .and_then(|mut r| {
                std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| e.to_string())
            });
        match ok {
            Ok(_) => {
                good_blobs.insert(name);
            }
            Err(e) => {
                problem(&mut report, path, format!("blob does not verify: {e}"));
                repairs.files.insert(path.clone());
            }
        }
    }
    bar.finish_and_clear();
    for (digest, records) in &referenced {
        if good_blobs.contains(digest) {
            continue;
        }
        let why = if store.cas.path(digest).exists() {
            "a corrupt"
        } else {
            "a missing"
        };
        for r in records {
            problem(
                &mut report,
                r,
                format!("references {why} blob {}", &digest[..12]),
            );
            repairs.files.insert(r.clone());
        }
    }

    // Manifests: each must verify and be stored under its own key. (A candidate whose entry is
    // gone is no problem: the lookup misses; see gc's prune_manifests.)
    for path in files_under(&store.root.join(Item::Manifests.name())) {
        report.manifests_checked += 1;
        let name = name_of(path.as_path());
        let decoded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| Manifest::decode(&b).map_err(|e| e.to_string()));
        let what = match decoded {
            _ if !is_digest(&name) => "unexpected file in the manifests folder".to_owned(),
            Err(e) => format!("manifest does not decode: {e}"),
            Ok(m) if m.key != name => format!("manifest is for key {}, not its file name", m.key),
            Ok(_) => continue,
        };
        problem(&mut report, &path, what);
        repairs.files.insert(path);
    }

    // The index against the disk (only in a full check: a sample says nothing about the rest).
    if sample_n.is_none() {
        let indexed: HashSet<String> = idx.entry_keys()?;
        for key in indexed.difference(&good_records) {
            if !record_files.iter().any(|p| name_of(p) == *key) {
                problem(
                    &mut report,
                    &store.record_path(key),
                    "listed in the index but missing on disk".into(),
                );
                repairs.index_drift = true;
            }
        }
        for key in good_records.difference(&indexed) {
            problem(
                &mut report,
                &store.record_path(key),
                "on disk but missing from the index".into(),
            );
            repairs.index_drift = true;
        }
    }
    Ok((report, repairs))
}

pub fn run(
    store: &Store,
    idx: &mut Index,
    fix: bool,
    sample_n: Option<usize>,
) -> Result<VerifyReport> {
    // The index is derived data that may lag behind the files (a run killed before it logged
    // its store, a corrupt entry dropped by a run): bring it in line first, without deleting
    // anything, so that only real damage is reported.
    idx.reconcile_records(store, true)?;
    let (mut report, repairs) = check(store, idx, sample_n)?;
    if fix && !report.problems.is_empty() {
        for f in &repairs.files {
            let _ = std::fs::remove_file(f);
        }
        // Bring the derived tables back in line with the files (entries whose record is gone
        // are dropped, records missing from the index are added); usage is kept.
        idx.reconcile_records(store, false)?;
        idx.reconcile_blobs(store)?;
        let (after, _) = check(store, idx, sample_n)?;
        report.fixed =
            (report.problems.len() - after.problems.len().min(report.problems.len())) as u64;
        report.remaining = after.problems;
    }
    Ok(report)
}
