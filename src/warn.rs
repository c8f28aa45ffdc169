//! Warnings on stderr, at most one line per cause per process.
//!
//! A cache problem must never drown the wrapped command's own output: a full disk during a store
//! of 10 000 output files is one line, not 10 000.

use std::collections::HashSet;
use std::sync::Mutex;

/// The cause shared by every cache fault (unusable directory, unwritable store, lock timeout,
/// corrupt entry, ...): one root problem, such as a read-only cache, often trips several of
/// them in one run, and the user needs to hear about it once.
pub const CACHE: &str = "cache";

static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);

/// Print `cachectl: warning: {msg}` unless a warning with the same `cause` was already printed.
pub fn once(cause: &'static str, msg: impl std::fmt::Display) {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.get_or_insert_with(HashSet::new).insert(cause) {
        crate::note!("cachectl: warning: {msg}");
    }
}

/// Like [`once`], for an `anyhow::Error`, printing its whole context chain.
pub fn once_err(cause: &'static str, what: &str, err: &anyhow::Error) {
    once(
        cause,
        format_args!("{what}: {err:#}; running without the cache"),
    );
}
