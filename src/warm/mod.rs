//! `warm`: compute every command's key, skip what is cached, run the rest in parallel.
//!
//! Keys are computed in this process with the same code `run` uses. Each miss then runs as a
//! `cachectl run` child with the same options, so it is stored exactly as `cachectl run` would
//! store it: same key, same per-key lock, same policies. Children's stdout is discarded; their
//! stderr is kept (the tail) to report failures.
//!
//! Stopping: after the first failure (unless `--keep-going`) or a SIGINT/SIGTERM, nothing new is
//! scheduled. Running children are left to finish; after a signal they get [`GRACE`] before
//! SIGTERM (which `cachectl run` forwards to the command and which keeps the result from being
//! stored), then SIGKILL. The cache stays consistent either way: a child that dies never leaves a
//! visible partial entry.

pub mod history;
pub mod manifest;

use crate::exec;
use crate::key::compute::compute_components;
use crate::run::policy::policy_miss;
use crate::store::{Lookup, Store, StoreStatCaches};
use manifest::WarmCommand;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long running children may go on after Ctrl-C before they are terminated.
pub const GRACE: Duration = Duration::from_secs(10);
const STDERR_TAIL: usize = 2048;

pub struct WarmOptions {
    pub jobs: usize,
    pub dry_run: bool,
    pub force: bool,
    pub keep_going: bool,
}

/// What happened to one command (its `--json` name in snake case).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Already cached: skipped.
    Cached,
    /// `--dry-run`: it would run.
    WouldRun,
    /// Ran and was stored.
    Stored,
    /// Fetched from the remote tier (by the child `cachectl run`).
    Fetched,
    Failed,
    /// Stopped before it was scheduled, or interrupted.
    NotRun,
}

impl Status {
    /// The name `--json` uses (and the golden test pins).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Cached => "cached",
            Status::WouldRun => "would_run",
            Status::Stored => "stored",
            Status::Fetched => "fetched",
            Status::Failed => "failed",
            Status::NotRun => "not_run",
        }
    }
}

/// What happened to one command.
#[derive(Serialize, Debug, Clone)]
pub struct CommandResult {
    pub command: String,
    pub cwd: String,
    pub origin: String,
    /// Misses start highest first (see [`WarmCommand::priority`]).
    pub priority: i64,
    pub key: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// Why it failed, and the end of its stderr.
    pub error: Option<String>,
    /// With `trace = "check"`: what the run named as undeclared (the `cachectl: check:` lines
    /// of its stderr, without that prefix).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub check: Vec<String>,
}

#[derive(Serialize, Debug, Default)]
pub struct WarmReport {
    pub dry_run: bool,
    pub already_cached: u64,
    pub stored: u64,
    /// Fetched from the remote tier by the `cachectl run` child instead of run.
    pub fetched: u64,
    pub failed: u64,
    pub not_run: u64,
    pub would_run: u64,
    pub interrupted: bool,
    pub time_spent_ms: u64,
    /// The original run time of the entries now cached (stored or fetched): what their later
    /// hits save, each time.
    pub time_saved_later_ms: u64,
    pub commands: Vec<CommandResult>,
}

impl WarmReport {
    /// 0: nothing failed; 1: something failed; 130: interrupted.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            130
        } else if self.failed > 0 {
            1
        } else {
            0
        }
    }
}

fn key_of(store: &Store, c: &WarmCommand) -> anyhow::Result<(String, bool)> {
    let components = compute_components(&c.opts, &c.cwd, &StoreStatCaches(Some(store)), None)?;
    let Some(key) = store.entry_for(&components, &c.cwd)? else {
        return Ok((components.key(), false));
    };
    let cached = match store.lookup_for_hit(&key)? {
        Lookup::Found(d) => policy_miss(&c.opts, &d.record).is_none(),
        _ => false,
    };
    Ok((key, cached))
}

/// The `cachectl run` argument list that reproduces `c`.
fn run_args(c: &WarmCommand, force: bool) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["--dir".into(), c.root.clone().into(), "run".into()];
    if force && !c.args.force {
        a.push("--force".into());
    }
    a.extend(c.args.to_argv());
    a
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]);
    text.trim_end().to_owned()
}

/// How a `cachectl run` child went.
struct ChildRun {
    code: i32,
    /// The end of its stderr.
    err_tail: String,
    ms: u64,
    /// Its `cachectl: check:` lines (without the prefix), at most [`CHECK_LINES`].
    check: Vec<String>,
}

/// The prefix of `--trace check`'s lines, and how many of them a report keeps per command.
const CHECK_PREFIX: &[u8] = b"cachectl: check: ";
const CHECK_LINES: usize = 1000;

/// Collect the `cachectl: check:` lines of `chunk`, `pending` holding a line not yet complete.
fn check_lines(pending: &mut Vec<u8>, chunk: &[u8], out: &mut Vec<String>) {
    pending.extend_from_slice(chunk);
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        if let Some(rest) = line.strip_prefix(CHECK_PREFIX)
            && out.len() < CHECK_LINES
        {
            out.push(String::from_utf8_lossy(rest).trim_end().to_owned());
        }
    }
    // A line longer than any check line is not one: do not hold it.
    if pending.len() > 64 * 1024 {
        pending.clear();
    }
}

/// Run one command as a `cachectl run` child.
fn run_child(c: &WarmCommand, force: bool, pids: &Mutex<HashMap<u32, ()>>) -> ChildRun {
    let start = Instant::now();
    let exe = std::env::current_exe().unwrap_or_else(|_| "cachectl".into());
    use std::os::unix::process::CommandExt;
    // Its own process group, so that ending it after the grace period ends everything it
    // started (a shell's children too), not only the `cachectl run` process.
    let child = Command::new(exe)
        .args(run_args(c, force))
        .current_dir(&c.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(ch) => ch,
        Err(e) => {
            return ChildRun {
                code: 126,
                err_tail: format!("cannot start cachectl: {e}"),
                ms: 0,
                check: Vec::new(),
            };
        }
    };
    let pid = child.id();
    pids.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid, ());
    let mut err = Vec::new();
    let (mut pending, mut check) = (Vec::new(), Vec::new());
    if let Some(mut s) = child.stderr.take() {
        let mut buf = [0u8; 8192];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            check_lines(&mut pending, &buf[..n], &mut check);
            err.extend_from_slice(&buf[..n]);
            if err.len() > 4 * STDERR_TAIL {
                err.drain(..err.len() - STDERR_TAIL);
            }
        }
    }
    let status = child.wait();
    pids.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    use std::os::unix::process::ExitStatusExt;
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(_) => 1,
    };
    ChildRun {
        code,
        err_tail: tail(&err),
        ms: start.elapsed().as_millis() as u64,
        check,
    }
}

/// Warm `commands`, each into its own cache (see [`WarmCommand::root`]). `on_failure` is told of each failure as it happens (the
/// command prints it above the progress bar).
pub fn run(
    commands: Vec<WarmCommand>,
    opts: &WarmOptions,
    on_failure: &(dyn Fn(&CommandResult) + Sync),
) -> anyhow::Result<WarmReport> {
    exec::install_forwarding();
    let started = Instant::now();
    let mut report = WarmReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // Classify: cached (skip) or to run. A command whose key cannot be computed (an unreadable
    // input) fails alone; the others go on.
    let mut results: Vec<CommandResult> = Vec::with_capacity(commands.len());
    let mut queue = VecDeque::new();
    for (i, c) in commands.iter().enumerate() {
        let store = Store::at(c.root.clone());
        let (key, cached, error) = match key_of(&store, c) {
            Ok((k, cached)) => (k, cached && !opts.force, None),
            Err(e) => (
                String::new(),
                false,
                Some(format!("cannot compute the key: {e:#}")),
            ),
        };
        let status = if error.is_some() {
            Status::Failed
        } else if cached {
            Status::Cached
        } else if opts.dry_run {
            Status::WouldRun
        } else {
            Status::NotRun
        };
        let r = CommandResult {
            command: c.opts.command_line.clone(),
            cwd: c.cwd.display().to_string(),
            origin: c.origin.clone(),
            priority: c.priority,
            key,
            status,
            exit_code: None,
            duration_ms: 0,
            error,
            check: Vec::new(),
        };
        if r.status == Status::Failed {
            on_failure(&r);
        } else if !cached && !opts.dry_run {
            queue.push_back(i);
        }
        results.push(r);
    }
    let key_failed = results.iter().any(|r| r.status == Status::Failed);
    if key_failed && !opts.keep_going {
        queue.clear();
    }
    // Highest priority first; a stable sort keeps the given order among equals.
    queue
        .make_contiguous()
        .sort_by_key(|&i| std::cmp::Reverse(commands[i].priority));
    if !opts.dry_run && !queue.is_empty() {
        execute(&commands, &mut results, queue, opts, on_failure);
    }
    for r in &results {
        match r.status {
            Status::Cached => report.already_cached += 1,
            Status::Stored => report.stored += 1,
            Status::Fetched => report.fetched += 1,
            Status::Failed => report.failed += 1,
            Status::WouldRun => report.would_run += 1,
            Status::NotRun => report.not_run += 1,
        }
        if matches!(r.status, Status::Stored | Status::Fetched) {
            report.time_saved_later_ms += r.duration_ms;
        }
    }
    report.interrupted = exec::interrupted();
    report.time_spent_ms = started.elapsed().as_millis() as u64;
    report.commands = results;
    Ok(report)
}

fn execute(
    commands: &[WarmCommand],
    results: &mut [CommandResult],
    queue: VecDeque<usize>,
    opts: &WarmOptions,
    on_failure: &(dyn Fn(&CommandResult) + Sync),
) {
    let total = queue.len() as u64;
    let bar = crate::ui::progress(total, "warming");
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} {elapsed} (ETA {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let queue = Mutex::new(queue);
    let stop = AtomicBool::new(false);
    let pids: Mutex<HashMap<u32, ()>> = Mutex::new(HashMap::new());
    let shared: Arc<Mutex<Vec<(usize, CommandResult)>>> = Arc::new(Mutex::new(Vec::new()));
    let workers_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..opts.jobs.max(1) {
            handles.push(s.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) || exec::interrupted() {
                        return;
                    }
                    let Some(i) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        return;
                    };
                    let c = &commands[i];
                    bar.set_message(c.opts.command_line.chars().take(40).collect::<String>());
                    let ChildRun {
                        code,
                        err_tail,
                        ms,
                        check,
                    } = run_child(c, opts.force, &pids);
                    let mut r = results_template(c, ms, code);
                    r.check = check;
                    r.key = String::new();
                    let stored_ok = code == 0 || c.opts.cache_failures;
                    let started_ms = crate::clock::now_ms().saturating_sub(ms);
                    let (key, entry) = key_after(&Store::at(c.root.clone()), c).unwrap_or_default();
                    r.key = key;
                    if let Some((created_ms, duration_ms)) = entry.filter(|_| stored_ok) {
                        // An entry older than this run was fetched from the remote tier by the
                        // child, not produced by it.
                        r.status = if created_ms < started_ms {
                            Status::Fetched
                        } else {
                            Status::Stored
                        };
                        r.duration_ms = duration_ms;
                    } else if exec::interrupted() {
                        // Stopped by the Ctrl-C (or finished without storing during it): not a
                        // failure of the command's own.
                        r.status = Status::NotRun;
                        r.error = Some(format!("interrupted (exit code {code})"));
                    } else {
                        r.status = Status::Failed;
                        let why = if code != 0 {
                            format!("exit code {code}")
                        } else {
                            "ran, but nothing was stored under its key".to_owned()
                        };
                        r.error = Some(if err_tail.is_empty() {
                            why
                        } else {
                            format!("{why}\n{err_tail}")
                        });
                        bar.suspend(|| on_failure(&r));
                        if !opts.keep_going {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, r));
                    bar.inc(1);
                }
            }));
        }
        // Watch for Ctrl-C: stop scheduling, give running children GRACE, then end them.
        s.spawn(|| {
            let mut since: Option<Instant> = None;
            while !workers_done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                if !exec::interrupted() {
                    continue;
                }
                let t = *since.get_or_insert_with(Instant::now);
                let sig = if t.elapsed() > GRACE + Duration::from_secs(3) {
                    libc::SIGKILL
                } else if t.elapsed() > GRACE {
                    libc::SIGTERM
                } else {
                    continue;
                };
                for pid in pids.lock().unwrap_or_else(|e| e.into_inner()).keys() {
                    // SAFETY: kill on the process group of a child we spawned and have not reaped.
                    unsafe {
                        libc::kill(-(*pid as i32), sig);
                    }
                }
            }
        });
        for h in handles {
            let _ = h.join();
        }
        workers_done.store(true, Ordering::SeqCst);
    });
    bar.finish_and_clear();
    for (i, r) in std::mem::take(&mut *shared.lock().unwrap_or_else(|e| e.into_inner())) {
        results[i] = r;
    }
}

fn results_template(c: &WarmCommand, ms: u64, code: i32) -> CommandResult {
    CommandResult {
        command: c.opts.command_line.clone(),
        cwd: c.cwd.display().to_string(),
        origin: c.origin.clone(),
        priority: c.priority,
        key: String::new(),
        status: Status::Failed,
        exit_code: Some(code),
        duration_ms: ms,
        error: None,
        check: Vec::new(),
    }
}

/// The command's key after it ran, and the (created, duration) of the entry stored under it.
fn key_after(store: &Store, c: &WarmCommand) -> Option<(String, Option<(u64, u64)>)> {
    let components =
        compute_components(&c.opts, &c.cwd, &StoreStatCaches(Some(store)), None).ok()?;
    let key = match store.entry_for(&components, &c.cwd).ok()? {
        Some(key) => key,
        None => return Some((components.key(), None)),
    };
    let entry = match store.lookup_for_hit(&key) {
        Ok(Lookup::Found(d)) => Some((d.record.created_ms, d.record.duration_ms)),
        _ => None,
    };
    Some((key, entry))
}

#[cfg(test)]
mod tests {
    use super::Status;

    /// `warm --json` prints these names.
    #[test]
    fn status_names_are_pinned() {
        for s in [
            Status::Cached,
            Status::WouldRun,
            Status::Stored,
            Status::Fetched,
            Status::Failed,
            Status::NotRun,
        ] {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(Status::WouldRun.as_str(), "would_run");
        assert_eq!(Status::NotRun.as_str(), "not_run");
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    #[test]
    fn check_lines_survive_any_chunking() {
        let text = b"noise\ncachectl: check: undeclared input: -i a\nmore\ncachectl: check: x\n";
        for size in 1..text.len() {
            let (mut pending, mut out) = (Vec::new(), Vec::new());
            for chunk in text.chunks(size) {
                check_lines(&mut pending, chunk, &mut out);
            }
            assert_eq!(out, ["undeclared input: -i a", "x"], "chunks of {size}");
        }
    }
}
