//! One `cachectl run`: key → lookup → replay on a hit; lock → run → store on a miss.
//!
//! The rule that shapes everything here (DESIGN.md invariant 1): a cache problem never changes
//! the wrapped command's result. Every store, lock, key or replay failure becomes one warning on
//! stderr and a journal event ([`fault`]) and a plain run of the command, whose exit code is
//! returned. Only usage errors, which are found before this module is reached, stop cachectl
//! from running the command.
//!
//! | step | module |
//! |---|---|
//! | open the store, read `--stdin`, compute the key | here ([`prepare`]) |
//! | look up, replay a hit, take the key's lock on a miss, ask the remote tier | [`hit`] |
//! | run the command | [`crate::exec`] |
//! | decide whether the result may be stored; store it; upload it | [`store`], [`policy`] |
//! | detached refreshes and auto-gc | [`background`] |
//! | `-v` and `--explain` | [`report`] |

mod auto;
mod background;
mod check;
pub mod fault;
mod hit;
pub mod policy;
mod remote;
mod report;
mod store;

pub use background::REFRESH_ENV;

use crate::config::RunOptions;
use crate::exec::{self, Spool};
use crate::key::KeyComponents;
use crate::key::compute::compute_components;
use crate::store::lock::{self, KeyLock};
use crate::store::{Store, StoreStatCaches};
use crate::warn;
use fault::Fault;
use hit::Lookup;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Run `opts` through the cache rooted at `root`; returns the exit code to report.
pub fn run(opts: &RunOptions, root: Option<PathBuf>, cwd: &Path) -> i32 {
    let job = match prepare(opts, root, cwd) {
        Ok(job) => job,
        Err(Unkeyed::Plain(stdin)) => return run_plain(opts, cwd, stdin),
        Err(Unkeyed::Done(code)) => return code,
    };
    let miss = match hit::lookup(&job) {
        Lookup::Hit(code) => return code,
        Lookup::Miss(miss) => miss,
        Lookup::Uncached => return run_plain(opts, cwd, job.stdin()),
    };
    let trace = opts.trace != crate::cli::TraceMode::Off;
    let started = crate::clock::coarse_now();
    match exec::run_captured(
        &opts.argv,
        cwd,
        job.stdin(),
        Some(job.store.tmp.clone()),
        trace,
    ) {
        Ok(captured) => {
            if opts.trace == crate::cli::TraceMode::Check {
                report_check(&job, &captured);
            }
            store::finish(job, miss, captured, started)
        }
        Err(e) => {
            crate::note!("{}", e.message());
            e.exit_code()
        }
    }
}

/// `--trace check`: after the command's own output, what it read or wrote undeclared.
fn report_check(job: &Job, captured: &exec::Captured) {
    let observed = match &captured.trace {
        Some(Ok(observed)) => observed,
        Some(Err(why)) => {
            crate::note!("cachectl: check: could not trace the command: {why}");
            return;
        }
        None => return,
    };
    let declared: Vec<String> = job.components.inputs.keys().cloned().collect();
    let mut skip = vec![job.store.root.clone()];
    if let Some(exe) = &job.components.exe {
        skip.push(PathBuf::from(&exe.path));
    }
    let advice = check::advise(
        observed,
        job.cwd,
        &declared,
        &job.opts.outputs,
        &skip,
        job.opts.verbose,
    );
    for line in advice.lines() {
        crate::note!("cachectl: {line}");
    }
}

/// A keyed run: what every step after the key needs.
struct Job<'a> {
    opts: &'a RunOptions,
    cwd: &'a Path,
    store: Store,
    components: KeyComponents,
    key: String,
    /// The spooled stdin with `--stdin` (each run of the command gets a copy).
    stdin: Option<File>,
    /// Skip the lookups (`--force`, or a stale refresh).
    force: bool,
    /// A stale refresh holds this for its whole run: one refresher per key.
    _refresh_lock: Option<KeyLock>,
}

impl Job<'_> {
    fn stdin(&self) -> Option<File> {
        self.stdin.as_ref().and_then(|f| f.try_clone().ok())
    }
}

/// Why a run has no key.
enum Unkeyed {
    /// The cache cannot be used, or the key cannot be known: run the command plainly (with
    /// this stdin).
    Plain(Option<File>),
    /// Nothing to do: another process already refreshes this stale entry.
    Done(i32),
}

/// Open the store, spool `--stdin`, compute the key.
fn prepare<'a>(
    opts: &'a RunOptions,
    root: Option<PathBuf>,
    cwd: &'a Path,
) -> Result<Job<'a>, Unkeyed> {
    let store = open_store(root).map(|mut s| {
        s.session = opts.session.clone();
        s
    });
    let (stdin, stdin_digest) = match opts.stdin.then(read_stdin) {
        None => (None, None),
        Some((file, Ok(digest))) => (Some(file), Some(digest)),
        Some((file, Err(e))) => {
            fault::report(
                store.as_ref(),
                Fault::Read,
                warn::CACHE,
                format_args!("cannot read all of stdin: {e}; running without the cache"),
            );
            return Err(Unkeyed::Plain(Some(file)));
        }
    };
    let refresh = std::env::var_os(REFRESH_ENV).is_some();
    let caches = StoreStatCaches(store.as_ref());
    let components = match compute_components(opts, cwd, &caches, stdin_digest) {
        Ok(c) => c,
        Err(e) => {
            fault::report(
                store.as_ref(),
                Fault::Read,
                warn::CACHE,
                format_args!("cannot compute the cache key: {e:#}; running without the cache"),
            );
            return Err(if refresh {
                Unkeyed::Done(0)
            } else {
                Unkeyed::Plain(stdin)
            });
        }
    };
    let key = components.key();
    tracing::debug!(key = %key, inputs = components.inputs.len(), env = components.env.len(), "key computed");
    // Hashing every component again costs as much as the key itself (100 000 inputs): only
    // when someone is listening.
    if tracing::enabled!(tracing::Level::TRACE) {
        for (name, digest) in components.component_digests() {
            tracing::trace!(component = name, %digest);
        }
    }
    let Some(store) = store else {
        return Err(if refresh {
            Unkeyed::Done(0)
        } else {
            Unkeyed::Plain(stdin)
        });
    };
    // A stale refresh: one process per key; a second refresher just leaves.
    let refresh_lock = if refresh {
        match lock::try_acquire(&store.refresh_lock_path(&key)) {
            Ok(Some(l)) => Some(l),
            _ => return Err(Unkeyed::Done(0)),
        }
    } else {
        None
    };
    Ok(Job {
        opts,
        cwd,
        store,
        components,
        key,
        stdin,
        force: opts.force || refresh,
        _refresh_lock: refresh_lock,
    })
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
            crate::note!("{}", e.message());
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
                if let Err(e) = crate::stdio::wait_for(0, libc::POLLIN) {
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
