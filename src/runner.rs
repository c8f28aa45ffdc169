//! One `cachectl run`: key → lookup → replay on a hit; lock → run → store on a miss.
//!
//! The rule that shapes everything here (DESIGN.md invariant 1): a cache problem never changes
//! the wrapped command's result. Every store, lock, key or replay failure becomes one warning on
//! stderr and a plain run of the command, whose exit code is returned. Only usage errors, which
//! are found before this module is reached, stop cachectl from running the command.

use crate::clock::now_ms;
use crate::config::RunOptions;
use crate::exec::{self, Captured, Outcome, Spool};
use crate::key::{ExeCheck, ExeIdentity, KEY_VERSION, KeyComponents};
use crate::outputs::{self, Collected};
use crate::paths::encode_os;
use crate::replay;
use crate::store::journal::Event;
use crate::store::lock::{self, LockOutcome};
use crate::store::record::{Decoded, Record, StreamRef};
use crate::store::{Lookup, Store, StoreStatCaches};
use crate::warn;
use anyhow::{Context, Result};
use serde::de::IgnoredAny;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Set in the environment of a detached stale-refresh run.
pub const REFRESH_ENV: &str = "CACHECTL_INTERNAL_REFRESH";

/// Run `opts` through the cache rooted at `root`; returns the exit code to report.
pub fn run(opts: &RunOptions, root: Option<PathBuf>, cwd: &Path) -> i32 {
    let refresh = std::env::var_os(REFRESH_ENV).is_some();
    let store = open_store(root);

    // Hold a stale refresh to one process per key: a second refresher just leaves.
    let mut force = opts.force;
    let stdin_spool = if opts.stdin { Some(read_stdin()) } else { None };
    let stdin_digest = match &stdin_spool {
        None => None,
        Some((_, Ok(digest))) => Some(digest.clone()),
        Some((file, Err(e))) => {
            warn::once(
                warn::CACHE,
                format_args!("cannot read all of stdin: {e}; running without the cache"),
            );
            if let Some(s) = &store {
                s.log(&Event::Error {
                    ts: now_ms(),
                    kind: "read".into(),
                });
            }
            return run_plain(opts, cwd, file.try_clone().ok());
        }
    };

    let components = match compute_components(opts, cwd, store.as_ref(), stdin_digest) {
        Ok(c) => Some(c),
        Err(e) => {
            warn::once_err(warn::CACHE, "cannot compute the cache key", &e);
            if let Some(s) = &store {
                s.log(&Event::Error {
                    ts: now_ms(),
                    kind: "read".into(),
                });
            }
            None
        }
    };
    let key = components.as_ref().map(KeyComponents::key);
    if let (Some(c), Some(k)) = (&components, &key) {
        tracing::debug!(key = %k, inputs = c.inputs.len(), env = c.env.len(), "key computed");
        // Hashing every component again costs as much as the key itself (100 000 inputs):
        // only when someone is listening.
        if tracing::enabled!(tracing::Level::TRACE) {
            for (name, digest) in c.component_digests() {
                tracing::trace!(component = name, %digest);
            }
        }
    }
    let stdin_file = || stdin_spool.as_ref().and_then(|(f, _)| f.try_clone().ok());

    let _refresh_lock = if refresh {
        force = true;
        match (&store, &key) {
            (Some(s), Some(k)) => match lock::try_acquire(&s.refresh_lock_path(k)) {
                Ok(Some(l)) => Some(l),
                _ => return 0,
            },
            _ => return 0,
        }
    } else {
        None
    };

    let (Some(store), Some(components), Some(key)) = (store, components, key) else {
        return run_plain(opts, cwd, stdin_file());
    };

    let why_miss;
    if force {
        why_miss = "forced";
    } else {
        match try_hit(opts, &store, &key, cwd) {
            HitResult::Served(code) => {
                explain(opts, &components, &key, "hit");
                leak_before_exit(components);
                return code;
            }
            HitResult::Stale(code, d) => {
                explain(
                    opts,
                    &components,
                    &key,
                    "hit (stale: refreshing in the background)",
                );
                spawn_refresh(&store, &d, stdin_spool.as_ref().map(|(f, _)| f));
                leak_before_exit(components);
                return code;
            }
            HitResult::Miss(why) => why_miss = why,
        }
    }
    // Counted (and reported by -v / --explain) only once we know this process runs the
    // command: a process that waits for a concurrent identical miss and then hits is a hit.
    let note_miss = || {
        explain(opts, &components, &key, &format!("miss ({why_miss})"));
        if opts.verbose {
            eprintln!("cachectl: miss {}", &key[..12]);
        }
        store.log(&Event::Miss {
            ts: now_ms(),
            key: key.clone(),
            cmd: opts.command_line.clone(),
            ns: opts.namespace.clone(),
        });
    };
    if opts.no_store {
        note_miss();
        return run_plain(opts, cwd, stdin_file());
    }
    if let Err(e) = store.init() {
        warn::once_err(warn::CACHE, "cannot write to the cache", &e);
        return run_plain(opts, cwd, stdin_file());
    }

    // Identical concurrent misses: one runs, the others wait here and then hit.
    // Look again once the lock is held, even when it was free: the previous holder may have
    // stored the entry between our lookup and our lock (one open, on a miss only).
    let _lock = match lock::acquire(&store.lock_path(&key), opts.lock_timeout) {
        Ok(LockOutcome::Acquired(l) | LockOutcome::AcquiredAfterWait(l)) => {
            // (Not after a restore conflict: the tree that is in the way is still in the way,
            // and the entry would only be counted twice.)
            if !force
                && why_miss != RESTORE_CONFLICT
                && let HitResult::Served(code) = try_hit(opts, &store, &key, cwd)
            {
                explain(
                    opts,
                    &components,
                    &key,
                    "hit (after waiting for a concurrent run)",
                );
                return code;
            }
            l
        }
        Ok(LockOutcome::TimedOut) => {
            warn::once(
                warn::CACHE,
                format_args!(
                    "another cachectl has been running this command for over {}; running without the cache",
                    humantime::format_duration(opts.lock_timeout)
                ),
            );
            store.log(&Event::Error {
                ts: now_ms(),
                kind: "lock_timeout".into(),
            });
            note_miss();
            return run_plain(opts, cwd, stdin_file());
        }
        Err(e) => {
            warn::once(
                warn::CACHE,
                format_args!("cannot lock the cache entry: {e}; running without the cache"),
            );
            store.log(&Event::Error {
                ts: now_ms(),
                kind: "write".into(),
            });
            note_miss();
            return run_plain(opts, cwd, stdin_file());
        }
    };
    // Not in the local tier: the remote tier may have it (fetched, verified, stored locally).
    let mut upload = true;
    if !force && let Some(remote) = &opts.remote {
        match remote_fetch(opts, &store, &key, cwd, remote) {
            Fetched::Served(code) => {
                explain(
                    opts,
                    &components,
                    &key,
                    "hit (fetched from the remote tier)",
                );
                return code;
            }
            Fetched::Miss => {}
            // Signed with another secret: someone else's valid entry, not ours to replace.
            Fetched::NotOurs => upload = false,
        }
    }
    note_miss();

    let captured = match exec::run_captured(&opts.argv, cwd, stdin_file(), Some(store.tmp.clone()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.message());
            return e.exit_code();
        }
    };
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
    let reason = uncacheable_reason(opts, &captured).or_else(|| {
        let changed = changed_input(opts, cwd, &store, &components)?;
        if opts.verbose {
            eprintln!("cachectl: {changed} changed while the command ran");
        }
        Some("input_changed")
    });
    match reason {
        Some(reason) => {
            if opts.verbose {
                eprintln!("cachectl: not stored ({})", uncacheable_why(reason));
            }
            store.log(&Event::Uncacheable {
                ts: now_ms(),
                key: key.clone(),
                cmd: opts.command_line.clone(),
                ns: opts.namespace.clone(),
                reason: reason.to_owned(),
            });
        }
        None => match store_result(opts, &store, &key, components, captured, cwd) {
            Ok(true) => {
                if let Some(remote) = &opts.remote
                    && remote.mode == crate::remote::Mode::Rw
                    && upload
                {
                    remote_upload(&store, &key, remote);
                }
            }
            Ok(false) => {}
            Err(e) => {
                warn::once(warn::CACHE, format_args!("cannot store the result: {e:#}"));
                store.log(&Event::Error {
                    ts: now_ms(),
                    kind: "write".into(),
                });
            }
        },
    }
    code
}

/// Hand the key components back to the OS instead of freeing them: after a hit, `cachectl run`
/// exits at once (this module's only caller is the `run` command), and freeing one string per
/// input costs 3% of re-keying 100 000 files.
fn leak_before_exit(components: KeyComponents) {
    std::mem::forget(components);
}

/// Open the store if there is a usable cache directory (warning once if not).
fn open_store(root: Option<PathBuf>) -> Option<Store> {
    let Some(root) = root else {
        warn::once(
            warn::CACHE,
            "no cache directory (set CACHECTL_DIR or HOME); running without the cache",
        );
        return None;
    };
    let store = Store::at(root);
    match store.check_safe() {
        Ok(()) => Some(store),
        Err(e) => {
            warn::once(
                warn::CACHE,
                format_args!("{e:#}; running without the cache"),
            );
            None
        }
    }
}

fn run_plain(opts: &RunOptions, cwd: &Path, stdin: Option<File>) -> i32 {
    match exec::run_plain(&opts.argv, cwd, stdin) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("{}", e.message());
            e.exit_code()
        }
    }
}

/// Read all of stdin into a spool (in the system temp dir; the cache may be full or read only),
/// hashing it. The command gets every byte that could be read in all cases; the digest is
/// `Err` when stdin failed before its end, since the key would then name an input the command
/// did not see in full.
fn read_stdin() -> (File, std::io::Result<String>) {
    let mut spool = Spool::for_stdin();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut input = std::io::stdin().lock();
    let mut failed = None;
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                spool.write(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A stdin left non-blocking by whoever started us (the flag is theirs too): wait
            // for more, as a blocking read would, instead of taking EAGAIN for the end.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = exec::wait_for(0, libc::POLLIN) {
                    failed = Some(e);
                    break;
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let digest = match failed {
        None => Ok(hasher.finalize().to_hex().to_string()),
        Some(e) => Err(e),
    };
    match spool.into_file() {
        Ok(file) => (file, digest),
        // The command cannot get its input: it must not be stored under the input's digest.
        Err(e) => (
            File::open("/dev/null").expect("/dev/null can be opened"),
            Err(e),
        ),
    }
}

/// Resolve the program as `execvp` would: a path with `/` relative to `cwd`, else through PATH.
pub fn resolve_exe(program: &OsString, cwd: &Path) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.as_bytes().contains(&b'/') {
        let p = cwd.join(crate::paths::normalize(Path::new(program)));
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                cwd.join(program)
            } else {
                cwd.join(dir).join(program)
            }
        })
        .find(|p| is_exec(p))
}

/// Sorted and deduplicated.
fn canonical(items: impl Iterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = items.collect();
    set.into_iter().collect()
}

/// Every component of the key for this run.
pub fn compute_components(
    opts: &RunOptions,
    cwd: &Path,
    store: Option<&Store>,
    stdin: Option<String>,
) -> Result<KeyComponents> {
    let caches = StoreStatCaches(store);
    let exe = match resolve_exe(&opts.argv[0], cwd) {
        None => None,
        Some(path) => {
            let shown = encode_os(path.as_os_str());
            let digest = match opts.exe_check {
                ExeCheck::Content => {
                    let id = blake3::hash(path.as_os_str().as_bytes())
                        .to_hex()
                        .to_string();
                    crate::inputs::digest_with_cache(&path, &id, &caches)?
                }
                ExeCheck::Mtime => {
                    let m = std::fs::metadata(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let stamp = format!("{shown}\0{}\0{}.{}", m.size(), m.mtime(), m.mtime_nsec());
                    blake3::hash(stamp.as_bytes()).to_hex().to_string()
                }
                ExeCheck::None => String::new(),
            };
            Some(ExeIdentity {
                path: shown,
                check: opts.exe_check,
                digest,
            })
        }
    };
    let mut env = BTreeMap::new();
    for pattern in &opts.env {
        if pattern.contains(['*', '?', '[']) {
            let glob = globset::Glob::new(pattern)
                .with_context(|| format!("invalid env glob `{pattern}`"))?
                .compile_matcher();
            for (name, value) in std::env::vars_os() {
                if glob.is_match(name.to_string_lossy().as_ref()) {
                    env.insert(
                        encode_os(&name),
                        Some(blake3::hash(value.as_bytes()).to_hex().to_string()),
                    );
                }
            }
        } else {
            let value =
                std::env::var_os(pattern).map(|v| blake3::hash(v.as_bytes()).to_hex().to_string());
            env.insert(pattern.clone(), value);
        }
    }
    // Declared lists are keyed as sets: `-i b -i a`, `-i a -i b` and `-i ./a -i b` are alike.
    let input_patterns = canonical(opts.inputs.iter().map(|p| {
        let n = crate::paths::normalize(Path::new(&crate::paths::decode_os(p)));
        encode_os(n.as_os_str())
    }));
    let inputs = crate::inputs::collect(cwd, &input_patterns, &caches)?;
    Ok(KeyComponents {
        version: KEY_VERSION,
        namespace: opts.namespace.clone(),
        salt: opts.salt.clone(),
        argv: opts.argv.iter().map(|a| encode_os(a)).collect(),
        cwd: opts.key_cwd.then(|| encode_os(cwd.as_os_str())),
        exe,
        env_patterns: canonical(opts.env.iter().cloned()),
        env,
        input_patterns,
        inputs,
        outputs: canonical(opts.outputs.iter().map(|o| encode_os(o.as_os_str()))),
        stdin,
    })
}

/// Why a stored, intact entry may not be served to this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMiss {
    /// It stored a non-zero exit and this run did not ask for `--cache-failures`.
    StoredFailure(i32),
    /// Older than `--ttl`.
    Expired {
        age_ms: u64,
        ttl: std::time::Duration,
    },
}

impl PolicyMiss {
    pub fn short(self) -> &'static str {
        match self {
            PolicyMiss::StoredFailure(_) => "stored failure, and --cache-failures is not set",
            PolicyMiss::Expired { .. } => "expired",
        }
    }
}

impl std::fmt::Display for PolicyMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyMiss::StoredFailure(code) => {
                write!(
                    f,
                    "the entry stored exit code {code} and --cache-failures is not set"
                )
            }
            PolicyMiss::Expired { age_ms, ttl } => write!(
                f,
                "the entry is {} old, older than --ttl {}",
                crate::ui::duration_ms(*age_ms),
                humantime::format_duration(*ttl)
            ),
        }
    }
}

/// The policy check every reader of an entry applies (run, explain, warm): a stored failure
/// is served only to runs with `--cache-failures`; an entry older than `--ttl` is a miss.
pub fn policy_miss<C>(opts: &RunOptions, rec: &Record<C>) -> Option<PolicyMiss> {
    if rec.exit_code != 0 && !opts.cache_failures {
        return Some(PolicyMiss::StoredFailure(rec.exit_code));
    }
    let age_ms = now_ms().saturating_sub(rec.created_ms);
    match opts.ttl {
        Some(ttl) if age_ms > ttl.as_millis() as u64 => Some(PolicyMiss::Expired { age_ms, ttl }),
        _ => None,
    }
}

/// The miss of an intact entry whose outputs the working tree keeps from being restored.
const RESTORE_CONFLICT: &str = "outputs could not be restored";

enum HitResult {
    Served(i32),
    /// Served, but older than `--stale`: refresh in the background.
    Stale(i32, Box<Decoded<IgnoredAny>>),
    Miss(&'static str),
}

/// Look `key` up and, if a fresh entry verifies, replay it.
fn try_hit(opts: &RunOptions, store: &Store, key: &str, cwd: &Path) -> HitResult {
    let looked = store.lookup_for_hit(key);
    tracing::debug!(
        key,
        found = matches!(looked, Ok(Lookup::Found(_))),
        "lookup"
    );
    let d = match looked {
        Ok(Lookup::Found(d)) => d,
        Ok(Lookup::Missing) => return HitResult::Miss("no entry"),
        Ok(Lookup::Corrupt(e)) => {
            warn::once(
                warn::CACHE,
                format_args!("dropped a corrupt cache entry ({e}); running the command"),
            );
            store.log(&Event::Error {
                ts: now_ms(),
                kind: "corrupt".into(),
            });
            return HitResult::Miss("corrupt entry");
        }
        Err(e) => {
            warn::once(
                warn::CACHE,
                format_args!("cannot read the cache: {e}; running the command"),
            );
            store.log(&Event::Error {
                ts: now_ms(),
                kind: "read".into(),
            });
            return HitResult::Miss("unreadable entry");
        }
    };
    if let Some(why) = policy_miss(opts, &d.record) {
        return HitResult::Miss(why.short());
    }
    let age = now_ms().saturating_sub(d.record.created_ms);
    let code = match serve(store, cwd, &d) {
        Ok(code) => code,
        Err(e) if matches!(e.downcast_ref(), Some(replay::ReplayError::Output(_))) => {
            // The entry is fine and part of it is already out: running the command now would
            // write its output after that part. Fail as a command that cannot write would.
            warn::once("output", format_args!("cannot replay the entry: {e:#}"));
            exec::output_failed_code(d.record.exit_code)
        }
        Err(e) => {
            let conflict = e.chain().any(|x| {
                matches!(
                    x.downcast_ref::<outputs::RestoreError>(),
                    Some(outputs::RestoreError::Conflict(_))
                )
            });
            if conflict {
                // The entry is fine; the working tree is in the way of restoring it.
                warn::once(
                    "restore",
                    format_args!("cannot restore the outputs ({e:#}); running the command"),
                );
                store.log(&Event::Error {
                    ts: now_ms(),
                    kind: "restore".into(),
                });
                return HitResult::Miss(RESTORE_CONFLICT);
            }
            warn::once(
                warn::CACHE,
                format_args!(
                    "dropped a cache entry that cannot be replayed ({e:#}); running the command"
                ),
            );
            store.log(&Event::Error {
                ts: now_ms(),
                kind: "corrupt".into(),
            });
            store.remove_record(key);
            let restored_blob =
                e.chain()
                    .find_map(|x| match x.downcast_ref::<outputs::RestoreError>() {
                        Some(outputs::RestoreError::Blob(
                            crate::store::cas::BlobError::Corrupt(d),
                        )) => Some(d.clone()),
                        _ => None,
                    });
            if let Some(digest) =
                restored_blob.or_else(|| crate::store::cas::Cas::corrupt_digest(&e))
            {
                store.cas.discard(&digest);
            }
            return HitResult::Miss("entry could not be replayed");
        }
    };
    let bytes = d.record.stdout.size
        + d.record.stderr.size
        + d.record.outputs.iter().map(|o| o.size).sum::<u64>();
    let fold_due = store.log(&Event::Hit {
        ts: now_ms(),
        key: key.to_owned(),
        cmd: d.record.command.clone(),
        ns: d.record.namespace.clone(),
        saved_ms: d.record.duration_ms,
        bytes,
    });
    if fold_due {
        spawn_detached(store, &["gc", "--auto"], None);
    }
    let stale = opts.stale.is_some_and(|s| age > s.as_millis() as u64);
    if opts.verbose {
        eprintln!(
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

fn uncacheable_reason(opts: &RunOptions, c: &Captured) -> Option<&'static str> {
    if c.interrupted {
        return Some("interrupted");
    }
    match c.outcome {
        Outcome::Signaled(_) => return Some("signal"),
        Outcome::Exited(0) => {}
        Outcome::Exited(_) if opts.cache_failures => {}
        Outcome::Exited(_) => return Some("non_zero_exit"),
    }
    match &c.gap {
        Some(exec::Gap::ReaderGone) => return Some("reader_gone"),
        Some(gap @ exec::Gap::ReadFailed(_)) => {
            warn::once(warn::CACHE, format_args!("{gap}; not stored"));
            return Some("capture_failed");
        }
        // Warned about (with the changed exit code) where the run ends.
        Some(exec::Gap::WriteFailed(_)) => return Some("capture_failed"),
        None => {}
    }
    for s in [&c.stdout, &c.stderr] {
        if let Some(e) = &s.broken {
            warn::once(
                warn::CACHE,
                format_args!("cannot capture the command's output: {e}; not stored"),
            );
            return Some("capture_failed");
        }
    }
    None
}

/// What of the key's inputs changed while the command ran (`input a.c`, `the executable`), if
/// anything did. The result may then come from the new content, and storing it under the key of
/// the old content would serve it to a later run that sees the old content: a wrong hit. The
/// inputs are keyed again, through the stat cache: files with unchanged stat fields are not read
/// again, files modified within its racy window are.
fn changed_input(
    opts: &RunOptions,
    cwd: &Path,
    store: &Store,
    before: &KeyComponents,
) -> Option<String> {
    let after = match compute_components(opts, cwd, Some(store), before.stdin.clone()) {
        Ok(after) => after,
        Err(e) => return Some(format!("an input ({e:#})")),
    };
    if after.exe != before.exe {
        return Some("the executable".to_owned());
    }
    if after.inputs == before.inputs {
        return None;
    }
    // A declared output is written by design, also where it lies among the inputs (`-i .
    // -o build`, or `-i f -o f` for a command that rewrites f): a hit restores it, so the state
    // it leaves is the one the entry reproduces.
    let outputs: Vec<PathBuf> = opts
        .outputs
        .iter()
        .map(|o| crate::paths::normalize(o))
        .collect();
    let watched = |path: &String| {
        let p = crate::paths::normalize(Path::new(&crate::paths::decode_os(path)));
        !outputs.iter().any(|o| p.starts_with(o))
    };
    let changed = after
        .inputs
        .iter()
        .filter(|(p, _)| watched(p))
        .find(|(p, state)| before.inputs.get(*p) != Some(*state))
        .or_else(|| {
            before
                .inputs
                .iter()
                .filter(|(p, _)| watched(p))
                .find(|(p, _)| !after.inputs.contains_key(*p))
        })?;
    Some(format!(
        "input {}",
        crate::paths::display_encoded(changed.0)
    ))
}

/// The `-v` wording of an `uncacheable_reason`.
fn uncacheable_why(reason: &str) -> &'static str {
    match reason {
        "interrupted" => "interrupted",
        "signal" => "the command died of a signal",
        "non_zero_exit" => "non-zero exit; --cache-failures stores it",
        "reader_gone" => "the reader of the output went away, so the capture is incomplete",
        "capture_failed" => "the output could not be captured in full",
        "input_changed" => "an input changed while the command ran",
        _ => "incomplete",
    }
}

/// Store a finished run: output blobs and stream blobs first, the record last.
fn store_result(
    opts: &RunOptions,
    store: &Store,
    key: &str,
    components: KeyComponents,
    mut c: Captured,
    cwd: &Path,
) -> Result<bool> {
    let level = opts.compression_level;
    let mut bytes = 0;
    // Held until the record is written (see Store::blob_lock).
    let _blobs = store.blob_lock(false)?;
    let outputs = if c.outcome == Outcome::Exited(0) {
        match outputs::collect(store, cwd, &opts.outputs, level)? {
            Collected::Stored { entries, bytes: b } => {
                bytes += b;
                entries
            }
            Collected::Uncacheable(why) => {
                warn::once("output", format_args!("{why}; not stored"));
                store.log(&Event::Uncacheable {
                    ts: now_ms(),
                    key: key.to_owned(),
                    cmd: opts.command_line.clone(),
                    ns: opts.namespace.clone(),
                    reason: "missing_output".into(),
                });
                return Ok(false);
            }
        }
    } else {
        Vec::new()
    };
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
    let record = Record {
        key: key.to_owned(),
        command: opts.command_line.clone(),
        cwd: encode_os(cwd.as_os_str()),
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
    };
    bytes += store.write_record(
        &record,
        c.stdout.inline().unwrap_or_default(),
        c.stderr.inline().unwrap_or_default(),
    )?;
    let fold_due = store.log(&Event::Store {
        ts: now_ms(),
        key: key.to_owned(),
        cmd: opts.command_line.clone(),
        ns: opts.namespace.clone(),
        bytes,
        duration_ms: c.duration_ms,
    });
    // Over max_size, or a journal grown past its bound (a cache that only ever misses, as in
    // CI, must get its journal folded too): a background gc --auto handles both.
    let over = store
        .add_to_ledger(bytes as i64)
        .is_ok_and(|total| total > opts.max_size);
    if over || fold_due {
        spawn_detached(store, &["gc", "--auto"], None);
    }
    Ok(true)
}

/// What the remote tier had for a key.
enum Fetched {
    Served(i32),
    Miss,
    /// An entry signed with another secret: refused, and not to be overwritten.
    NotOurs,
}

/// Look `key` up in the remote tier; on a hit the entry is now in the local tier: serve it.
fn remote_fetch(
    opts: &RunOptions,
    store: &Store,
    key: &str,
    cwd: &Path,
    remote: &crate::remote::Remote,
) -> Fetched {
    if crate::remote::breaker_open(store) {
        return Fetched::Miss;
    }
    let out = crate::remote::call(remote, &store.root, "get", Some(key));
    tracing::debug!(status = %out.status, kind = %out.kind, bytes = out.bytes_down, message = %out.message, "remote get");
    match out.status.as_str() {
        "hit" => {
            crate::remote::set_breaker(store, false);
            store.log(&Event::Remote {
                ts: now_ms(),
                op: "hit".into(),
                kind: String::new(),
                bytes: out.bytes_down,
            });
            if opts.verbose {
                eprintln!(
                    "cachectl: remote hit {} ({} from {})",
                    &key[..12],
                    crate::ui::size(out.bytes_down),
                    remote.redacted_url()
                );
            }
            // Fetched bytes count toward max_size like stored ones.
            if store
                .add_to_ledger(out.bytes_down as i64)
                .is_ok_and(|total| total > opts.max_size)
            {
                spawn_detached(store, &["gc", "--auto"], None);
            }
            match try_hit(opts, store, key, cwd) {
                HitResult::Served(code) | HitResult::Stale(code, _) => Fetched::Served(code),
                HitResult::Miss(_) => Fetched::Miss,
            }
        }
        "miss" => {
            crate::remote::set_breaker(store, false);
            store.log(&Event::Remote {
                ts: now_ms(),
                op: "miss".into(),
                kind: String::new(),
                bytes: out.bytes_down,
            });
            Fetched::Miss
        }
        _ => {
            remote_failed(store, remote, &out);
            if out.kind == "signature" {
                Fetched::NotOurs
            } else {
                Fetched::Miss
            }
        }
    }
}

/// Upload a freshly stored entry (blobs first, record last).
fn remote_upload(store: &Store, key: &str, remote: &crate::remote::Remote) {
    if crate::remote::breaker_open(store) {
        return;
    }
    let out = crate::remote::call(remote, &store.root, "put", Some(key));
    tracing::debug!(status = %out.status, kind = %out.kind, bytes = out.bytes_up, message = %out.message, "remote put");
    if out.status == "stored" {
        crate::remote::set_breaker(store, false);
        store.log(&Event::Remote {
            ts: now_ms(),
            op: "store".into(),
            kind: String::new(),
            bytes: out.bytes_up,
        });
    } else {
        remote_failed(store, remote, &out);
    }
}

/// A remote failure: one warning (loud for credentials), counted, and for an unreachable
/// remote the circuit breaker opens so that the next runs skip it for a while.
fn remote_failed(store: &Store, remote: &crate::remote::Remote, out: &crate::remote::Outcome) {
    store.log(&Event::Remote {
        ts: now_ms(),
        op: "error".into(),
        kind: out.kind.clone(),
        bytes: 0,
    });
    let url = remote.redacted_url();
    let msg = match out.kind.as_str() {
        "auth" => format!(
            "remote {url} REFUSED THE CREDENTIALS ({}); fix AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the URL's user:password. Carrying on locally (skipping the remote for {}s)",
            out.message,
            crate::remote::BREAKER_OPEN.as_secs()
        ),
        "refused" => format!(
            "refused an entry from remote {url}: {}; running the command",
            out.message
        ),
        "signature" => format!(
            "refused an entry from remote {url}: {}; running the command (and leaving the remote entry alone)",
            out.message
        ),
        "timeout" => format!(
            "remote {url} did not answer within {}; carrying on locally (skipping it for {}s)",
            humantime::format_duration(remote.timeout),
            crate::remote::BREAKER_OPEN.as_secs()
        ),
        "config" => format!(
            "remote {url} is not usable: {}; carrying on locally",
            out.message
        ),
        _ => format!(
            "remote {url} failed: {}; carrying on locally (skipping it for {}s)",
            out.message,
            crate::remote::BREAKER_OPEN.as_secs()
        ),
    };
    warn::once("remote", msg);
    if !matches!(out.kind.as_str(), "refused" | "signature" | "config") {
        crate::remote::set_breaker(store, true);
    }
}

/// Start a detached `cachectl` that re-runs this command (same arguments, `--force` semantics)
/// and stores the fresh result. Its stdio is detached; stdin is a copy of ours with `--stdin`.
fn spawn_refresh(store: &Store, d: &Decoded<IgnoredAny>, stdin: Option<&File>) {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    spawn_detached_with(store, &args, &[(REFRESH_ENV, d.record.key.as_str())], stdin);
}

/// Start `cachectl ARGS` detached (auto-gc), in the background, pointed at the same store.
fn spawn_detached(store: &Store, args: &[&str], stdin: Option<&File>) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    spawn_detached_with(store, &args, &[], stdin);
}

fn spawn_detached_with(
    store: &Store,
    args: &[OsString],
    env: &[(&str, &str)],
    stdin: Option<&File>,
) {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args)
        .env("CACHECTL_DIR", &store.root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match stdin.and_then(|f| f.try_clone().ok()) {
        Some(f) => cmd.stdin(f),
        None => cmd.stdin(std::process::Stdio::null()),
    };
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal and
    // process group so that a ^C meant for the foreground job does not kill it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    if let Err(e) = cmd.spawn() {
        warn::once(
            warn::CACHE,
            format_args!("cannot start a background cachectl: {e}"),
        );
        store.log(&Event::Error {
            ts: now_ms(),
            kind: "spawn".into(),
        });
    }
}

fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// `--explain`: each component with its digest, and the verdict.
fn explain(opts: &RunOptions, c: &KeyComponents, key: &str, verdict: &str) {
    if !opts.explain {
        return;
    }
    let mut out = format!("cachectl: key {key} ({verdict})\n");
    for rule in &opts.matched_rules {
        out.push_str(&format!("  rule      {rule}\n"));
    }
    for line in crate::manage::explain::describe_components(c, &opts.command_line) {
        out.push_str(&line);
        out.push('\n');
    }
    eprint!("{out}");
}
