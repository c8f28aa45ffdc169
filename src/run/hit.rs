//! The lookup: a hit is replayed; a miss comes back holding the key's lock.
//!
//! Identical concurrent misses run the command once: the first to miss takes the key's lock,
//! the others wait for it and look again (usually a hit). Only a [`Lookup::Miss`] carries the
//! [`KeyLock`], and storing a result consumes it (see [`super::store`]), so no code path can
//! store without holding the lock.

use super::auto::{self, Selected};
use super::fault::{self, Fault};
use super::policy::policy_miss;
use super::report::{self, format_ms};
use super::{Job, background, remote};
use crate::clock::now_ms;
use crate::exec;
use crate::outputs::{self, RestoreError};
use crate::replay::{self, ReplayError};
use crate::store::cas::{BlobError, Cas};
use crate::store::journal::Event;
use crate::store::lock::{self, KeyLock, LockOutcome};
use crate::store::record::Decoded;
use crate::store::{Lookup as Found, Store};
use crate::warn;
use anyhow::Result;
use serde::de::IgnoredAny;
use std::path::Path;

/// What the lookup decided.
pub(super) enum Lookup {
    /// Served from the cache (local or remote); the exit code to report.
    Hit(i32),
    /// Not in the cache: run the command, holding the key's lock, and store the result.
    Miss(Miss),
    /// Run the command without the cache (`--no-store`, or the cache cannot be used).
    Uncached,
}

/// A miss whose result this process will store.
pub(super) struct Miss {
    pub lock: KeyLock,
    /// Upload the stored result to the remote tier (rw mode, and not refused as someone
    /// else's signed entry).
    pub upload: bool,
}

/// The miss of an intact entry whose outputs the working tree keeps from being restored.
const RESTORE_CONFLICT: &str = "outputs could not be restored";

enum HitResult {
    Served(i32),
    /// Served, but older than `--stale`: refresh in the background.
    Stale(i32, Box<Decoded<IgnoredAny>>),
    Miss(&'static str),
}

/// The key of the entry to serve: the job's own, or for `--trace auto` the entry of the first
/// manifest candidate whose observed inputs all match (`Err`: why there is none, and the entry
/// of a matching candidate that is gone).
fn entry_key(job: &Job) -> Result<String, (String, Option<String>)> {
    if !job.components.traced {
        return Ok(job.key.clone());
    }
    match auto::select(job) {
        Selected::Entry(entry) => Ok(entry),
        Selected::Miss(why, gone) => Err((why, gone)),
    }
}

/// Look the job's key up locally, then (after taking its lock) again and in the remote tier.
pub(super) fn lookup(job: &Job) -> Lookup {
    let (opts, store, key) = (job.opts, &job.store, job.key.as_str());
    // The key a miss is counted under: the job's, or the entry of a matching candidate that is
    // gone (so that `stats` sees the hit gc took away).
    let mut miss_key = None;
    let why_miss: String = if job.force {
        "forced".to_owned()
    } else {
        match entry_key(job).map(|entry| try_hit(job, &entry)) {
            Err((why, gone)) => {
                miss_key = gone;
                why
            }
            Ok(found) => match found {
                HitResult::Served(code) => {
                    report::explain(opts, &job.components, key, "hit");
                    return Lookup::Hit(code);
                }
                HitResult::Stale(code, d) => {
                    report::explain(
                        opts,
                        &job.components,
                        key,
                        "hit (stale: refreshing in the background)",
                    );
                    background::refresh(store, &d, job.stdin.as_ref());
                    return Lookup::Hit(code);
                }
                HitResult::Miss(why) => why.to_owned(),
            },
        }
    };
    let why_miss = why_miss.as_str();
    if opts.no_store {
        note_miss(job, why_miss, miss_key.as_deref());
        return Lookup::Uncached;
    }
    if let Err(e) = store.init() {
        warn::once_err(warn::CACHE, "cannot write to the cache", &e);
        return Lookup::Uncached;
    }
    // Look again once the lock is held, even when it was free: the previous holder may have
    // stored the entry between our lookup and our lock (one open, on a miss only).
    let lock = match lock::acquire(&store.lock_path(key), opts.lock_timeout) {
        Ok(LockOutcome::Acquired(l) | LockOutcome::AcquiredAfterWait(l)) => {
            // (Not after a restore conflict: the tree that is in the way is still in the way,
            // and the entry would only be counted twice.)
            if !job.force
                && why_miss != RESTORE_CONFLICT
                && let Ok(entry) = entry_key(job)
                && let HitResult::Served(code) = try_hit(job, &entry)
            {
                report::explain(
                    opts,
                    &job.components,
                    key,
                    "hit (after waiting for a concurrent run)",
                );
                return Lookup::Hit(code);
            }
            l
        }
        Ok(LockOutcome::TimedOut) => {
            fault::report(
                Some(store),
                Fault::LockTimeout,
                warn::CACHE,
                format_args!(
                    "another cachectl has been running this command for over {}; running without the cache",
                    humantime::format_duration(opts.lock_timeout)
                ),
            );
            note_miss(job, why_miss, miss_key.as_deref());
            return Lookup::Uncached;
        }
        Err(e) => {
            fault::report(
                Some(store),
                Fault::Write,
                warn::CACHE,
                format_args!("cannot lock the cache entry: {e}; running without the cache"),
            );
            note_miss(job, why_miss, miss_key.as_deref());
            return Lookup::Uncached;
        }
    };
    // Not in the local tier: the remote tier may have it (fetched, verified, stored locally).
    let mut upload = opts
        .remote
        .as_ref()
        .is_some_and(|r| r.mode == crate::remote::Mode::Rw);
    if !job.force
        && let Some(remote) = &opts.remote
    {
        let manifest_cwd = job.components.traced.then_some(job.cwd);
        match remote::fetch(opts, store, key, manifest_cwd, remote) {
            remote::Fetched::Stored => {
                let served = entry_key(job).ok().map(|entry| try_hit(job, &entry));
                if let Some(HitResult::Served(code) | HitResult::Stale(code, _)) = served {
                    report::explain(
                        opts,
                        &job.components,
                        key,
                        "hit (fetched from the remote tier)",
                    );
                    return Lookup::Hit(code);
                }
            }
            remote::Fetched::Miss => {}
            // Signed with another secret: someone else's valid entry, not ours to replace.
            remote::Fetched::NotOurs => upload = false,
        }
    }
    note_miss(job, why_miss, miss_key.as_deref());
    Lookup::Miss(Miss { lock, upload })
}

/// Count a miss (and report it with -v / --explain), once we know this process runs the
/// command: a process that waits for a concurrent identical miss and then hits is a hit.
fn note_miss(job: &Job, why: &str, counted_as: Option<&str>) {
    let (opts, key) = (job.opts, &job.key);
    report::explain(opts, &job.components, key, &format!("miss ({why})"));
    if opts.verbose {
        // (`auto`: which observed input changed, the first of the newest stored run's.)
        if job.components.traced && why.starts_with("input ") {
            crate::note!("cachectl: miss {} ({why})", &key[..12]);
        } else {
            crate::note!("cachectl: miss {}", &key[..12]);
        }
    }
    fault::journal(
        &job.store,
        &Event::Miss {
            ts: now_ms(),
            key: counted_as.unwrap_or(key).to_owned(),
            cmd: opts.command_line.clone(),
            ns: opts.namespace.clone(),
        },
    );
}

/// Look the entry `key` up and, if a fresh entry verifies, replay it.
fn try_hit(job: &Job, key: &str) -> HitResult {
    let (opts, store) = (job.opts, &job.store);
    let looked = store.lookup_for_hit(key);
    tracing::debug!(key, found = matches!(looked, Ok(Found::Found(_))), "lookup");
    let d = match looked {
        Ok(Found::Found(d)) => d,
        Ok(Found::Missing) => return HitResult::Miss("no entry"),
        Ok(Found::Corrupt(e)) => {
            fault::report(
                Some(store),
                Fault::Corrupt,
                warn::CACHE,
                format_args!("dropped a corrupt cache entry ({e}); running the command"),
            );
            return HitResult::Miss("corrupt entry");
        }
        Err(e) => {
            fault::report(
                Some(store),
                Fault::Read,
                warn::CACHE,
                format_args!("cannot read the cache: {e}; running the command"),
            );
            return HitResult::Miss("unreadable entry");
        }
    };
    if let Some(why) = policy_miss(opts, &d.record) {
        return HitResult::Miss(why.short());
    }
    let age = now_ms().saturating_sub(d.record.created_ms);
    let code = match serve(store, job.cwd, &d) {
        Ok(code) => code,
        Err(e) if matches!(e.downcast_ref(), Some(ReplayError::Output(_))) => {
            // The entry is fine and part of it is already out: running the command now would
            // write its output after that part. Fail as a command that cannot write would.
            warn::once("output", format_args!("cannot replay the entry: {e:#}"));
            exec::output_failed_code(d.record.exit_code)
        }
        Err(e) => {
            let restore_error = e.chain().find_map(|x| x.downcast_ref::<RestoreError>());
            if let Some(RestoreError::Conflict(_)) = restore_error {
                // The entry is fine; the working tree is in the way of restoring it.
                fault::report(
                    Some(store),
                    Fault::Restore,
                    "restore",
                    format_args!("cannot restore the outputs ({e:#}); running the command"),
                );
                return HitResult::Miss(RESTORE_CONFLICT);
            }
            fault::report(
                Some(store),
                Fault::Corrupt,
                warn::CACHE,
                format_args!(
                    "dropped a cache entry that cannot be replayed ({e:#}); running the command"
                ),
            );
            store.remove_record(key);
            let corrupt_blob = match restore_error {
                Some(RestoreError::Blob(BlobError::Corrupt(d))) => Some(d.clone()),
                _ => Cas::corrupt_digest(&e),
            };
            if let Some(digest) = corrupt_blob {
                store.cas.discard(&digest);
            }
            return HitResult::Miss("entry could not be replayed");
        }
    };
    let bytes = d.record.stdout.size
        + d.record.stderr.size
        + d.record.outputs.iter().map(|o| o.size).sum::<u64>();
    let fold_due = fault::journal(
        store,
        &Event::Hit {
            ts: now_ms(),
            key: key.to_owned(),
            cmd: d.record.command.clone(),
            ns: d.record.namespace.clone(),
            saved_ms: d.record.duration_ms,
            bytes,
        },
    );
    if fold_due {
        background::auto_gc(store);
    }
    let stale = opts.stale.is_some_and(|s| age > s.as_millis() as u64);
    if opts.verbose {
        crate::note!(
            "cachectl: hit {} (saved {}){}",
            &key[..12],
            format_ms(d.record.duration_ms),
            if stale {
                ", stale: refreshing in the background"
            } else {
                ""
            }
        );
    }
    if stale {
        HitResult::Stale(code, d)
    } else {
        HitResult::Served(code)
    }
}

/// Replay an entry: verify stream blobs, restore outputs (all or nothing), write the streams.
fn serve(store: &Store, cwd: &Path, d: &Decoded<IgnoredAny>) -> Result<i32> {
    let streams = replay::prepare(store, d)?;
    outputs::restore(store, cwd, &d.record.outputs)?;
    streams.write()?;
    Ok(d.record.exit_code)
}
