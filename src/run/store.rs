//! After a miss: decide whether the result may be stored, and store it.
//!
//! Storing needs the key's lock: [`store_result`] takes the [`KeyLock`] that only a
//! [`super::hit::Lookup::Miss`] carries, and releases it when the record is written.

use super::auto::{self, Traced};
use super::fault::{self, Fault};
use super::hit::Miss;
use super::policy::{self, NotStored};
use super::{Job, background, remote};
use crate::clock::now_ms;
use crate::exec::{self, Captured, Outcome, Spool};
use crate::key::KeyComponents;
use crate::key::compute::changed_input;
use crate::outputs::{self, Collected};
use crate::paths::encode_os;
use crate::store::StoreStatCaches;
use crate::store::journal::Event;
use crate::store::lock::KeyLock;
use crate::store::manifest::Candidate;
use crate::store::record::{Record, StreamRef};
use crate::warn;
use anyhow::{Context, Result};

/// The end of a miss: report what the command's output lost, store the result unless it must
/// not be, upload it. Returns the exit code to report.
pub(super) fn finish(mut job: Job, miss: Miss, captured: Captured, started: (i64, i64)) -> i32 {
    let opts = job.opts;
    let mut code = captured.outcome.exit_code();
    if let Some(exec::Gap::WriteFailed(e)) = &captured.gap {
        // Our stdout or stderr lost part of the command's output (while the command itself
        // wrote into a pipe without error): fail as `tee` would, never exit 0 over lost output.
        warn::once(
            "output",
            format_args!("cannot write the command's output: {e}"),
        );
        code = exec::output_failed_code(code);
    }
    tracing::debug!(
        outcome = ?captured.outcome,
        duration_ms = captured.duration_ms,
        stdout = captured.stdout.size,
        stderr = captured.stderr.size,
        "command finished"
    );
    let reason = policy::not_stored(opts, &captured).or_else(|| {
        let caches = StoreStatCaches(Some(&job.store));
        // Outputs are stored (and restored) only for exit 0.
        let restored: &[_] = if captured.outcome == Outcome::Exited(0) {
            &opts.outputs
        } else {
            &[]
        };
        let changed = changed_input(opts, job.cwd, &caches, &job.components, restored)?;
        if opts.verbose {
            crate::note!("cachectl: {changed} changed while the command ran");
        }
        Some(NotStored::InputChanged)
    });
    if let Some(reason) = reason {
        if opts.verbose {
            crate::note!("cachectl: not stored ({})", reason.why());
        }
        log_not_stored(&job, reason, captured.duration_ms);
        return code;
    }
    let traced = if job.components.traced {
        match auto::judge(&job, captured.trace.as_ref(), started) {
            Ok(t) => Some(t),
            Err(r) => {
                if r.reason == NotStored::Untraced {
                    warn::once(
                        "trace",
                        format_args!(
                            "cannot trace the command ({}), so its result is not stored; fix: --trace off with -i/-o keys it by what is declared",
                            r.why
                        ),
                    );
                }
                if opts.verbose {
                    crate::note!("cachectl: not stored ({}: {})", r.reason.why(), r.why);
                }
                log_not_stored(&job, r.reason, captured.duration_ms);
                return code;
            }
        }
    } else {
        None
    };
    let components = std::mem::take(&mut job.components);
    match store_result(&job, components, miss.lock, captured, traced) {
        Ok(Some(entry)) => {
            if miss.upload
                && let Some(remote) = &opts.remote
            {
                // (`auto`: the entry, then the manifest that names it.)
                let manifest = (entry != job.key).then_some(job.key.as_str());
                remote::upload(&job.store, &entry, manifest, remote);
            }
        }
        Ok(None) => {}
        Err(e) => fault::report(
            Some(&job.store),
            Fault::Write,
            warn::CACHE,
            format_args!("cannot store the result: {e:#}"),
        ),
    }
    code
}

fn log_not_stored(job: &Job, reason: NotStored, duration_ms: u64) {
    fault::journal(
        &job.store,
        &Event::Uncacheable {
            ts: now_ms(),
            key: job.key.clone(),
            cmd: job.opts.command_line.clone(),
            ns: job.opts.namespace.clone(),
            reason: reason.as_str().into(),
            duration_ms,
        },
    );
}

/// Store a finished run: output blobs and stream blobs first, the record last; returns the
/// entry's key. `Ok(None)`: not stored (an output that cannot be stored, or over
/// `max_entry_size`; warned about and counted).
fn store_result(
    job: &Job,
    mut components: KeyComponents,
    _lock: KeyLock,
    mut c: Captured,
    traced: Option<Traced>,
) -> Result<Option<String>> {
    let (opts, store) = (job.opts, &job.store);
    // An `auto` entry's key adds what the run was observed to depend on.
    let key = match &traced {
        Some(t) => {
            components.observed = Some(t.inputs.clone());
            components.key()
        }
        None => job.key.clone(),
    };
    let key = key.as_str();
    let level = opts.compression_level;
    let mut bytes = 0;
    // Held until the record is written (see Store::blob_lock).
    let _blobs = store.blob_lock(false)?;
    let mut outputs = Vec::new();
    if c.outcome == Outcome::Exited(0) {
        let observed = match &traced {
            Some(t) => {
                // What the declared outputs already hold is not stored twice.
                let declared: Vec<&std::path::Path> =
                    opts.outputs.iter().map(|p| p.as_path()).collect();
                t.outputs
                    .iter()
                    .filter(|o| !declared.iter().any(|d| o.starts_with(d)))
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        for found in [
            outputs::collect(store, job.cwd, &opts.outputs, level)?,
            outputs::collect_observed(store, job.cwd, &observed, level)?,
        ] {
            match found {
                Collected::Stored { entries, bytes: b } => {
                    bytes += b;
                    outputs.extend(entries);
                }
                Collected::Uncacheable(why) => {
                    warn::once("output", format_args!("{why}; not stored"));
                    log_not_stored(job, NotStored::MissingOutput, c.duration_ms);
                    return Ok(None);
                }
            }
        }
        outputs.sort_by(|a, b| a.path.cmp(&b.path));
    }
    let mut stream_ref = |s: &mut Spool| -> Result<StreamRef> {
        if s.inline().is_some() {
            return Ok(StreamRef {
                size: s.size,
                blob: None,
            });
        }
        let put = store
            .cas
            .put_reader(&store.tmp, &mut s.reader()?, level)
            .context("storing captured output")?;
        // The record's chunk list adds up to what was captured: a spool that reads back
        // shorter or longer would replay a different result.
        anyhow::ensure!(
            put.size == s.size,
            "the captured output reads back as {} bytes, not {}",
            put.size,
            s.size
        );
        bytes += put.stored_bytes;
        Ok(StreamRef {
            size: put.size,
            blob: Some(put.digest),
        })
    };
    let stdout = stream_ref(&mut c.stdout)?;
    let stderr = stream_ref(&mut c.stderr)?;
    // The blobs are in (a later gc collects them if nothing refers to them); the record, which
    // makes them an entry, is not written for a result over the limit.
    let inline =
        c.stdout.inline().map_or(0, <[u8]>::len) + c.stderr.inline().map_or(0, <[u8]>::len);
    let size = bytes + inline as u64;
    if let Some(limit) = opts.max_entry_size
        && size > limit
    {
        if opts.verbose {
            crate::note!(
                "cachectl: not stored ({}: {} > {})",
                NotStored::TooLarge.why(),
                crate::ui::size(size),
                crate::ui::size(limit)
            );
        }
        log_not_stored(job, NotStored::TooLarge, c.duration_ms);
        return Ok(None);
    }
    let record = Record {
        key: key.to_owned(),
        command: opts.command_line.clone(),
        cwd: encode_os(job.cwd.as_os_str()),
        namespace: opts.namespace.clone(),
        tags: opts.tags.clone(),
        created_ms: now_ms(),
        duration_ms: c.duration_ms,
        exit_code: c.outcome.exit_code(),
        stdout,
        stderr,
        chunks: std::mem::take(&mut c.chunks),
        outputs,
        components,
        side_effects: traced
            .as_ref()
            .map(|t| t.side_effects.clone())
            .unwrap_or_default(),
        peers: traced.as_ref().map(|t| t.peers.clone()).unwrap_or_default(),
    };
    bytes += store.write_record(
        &record,
        c.stdout.inline().unwrap_or_default(),
        c.stderr.inline().unwrap_or_default(),
    )?;
    if let Some(t) = traced {
        // The manifest last: the entry it points at is complete.
        bytes += store.add_candidate(
            &job.key,
            Candidate {
                entry: key.to_owned(),
                created_ms: record.created_ms,
                inputs: t.inputs,
            },
        )?;
    }
    let fold_due = fault::journal(
        store,
        &Event::Store {
            ts: now_ms(),
            key: key.to_owned(),
            cmd: opts.command_line.clone(),
            ns: opts.namespace.clone(),
            bytes,
            duration_ms: c.duration_ms,
        },
    );
    // Over max_size, or a journal grown past its bound (a cache that only ever misses, as in
    // CI, must get its journal folded too): a background gc --auto handles both.
    let over = store
        .add_to_ledger(bytes as i64)
        .is_ok_and(|total| total > opts.max_size);
    if over || fold_due {
        background::auto_gc(store);
    }
    Ok(Some(key.to_owned()))
}
