//! The one place where the run path turns a cache fault into what the user sees.
//!
//! A cache fault never changes the wrapped command's result (DESIGN.md, invariant 1): it is one
//! warning on stderr (at most one per cause and process, see [`crate::warn`]) and one `error`
//! event in the journal, which `stats` counts by kind. The run then goes on without the cache.

use crate::clock::now_ms;
use crate::store::Store;
use crate::store::journal::Event;
use crate::warn;

/// What failed, as `stats` counts it (`errors` by kind). The names are part of the journal
/// format and of `stats --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reading the cache or an input failed: the key or the entry is unknown.
    Read,
    /// Writing to the cache failed (a lock, a blob, a record).
    Write,
    /// An entry did not verify, or could not be replayed; it was dropped.
    Corrupt,
    /// The working tree kept an intact entry's outputs from being restored.
    Restore,
    /// An identical run held the key's lock for longer than `lock_timeout`.
    LockTimeout,
    /// A background cachectl (auto-gc, stale refresh) could not be started.
    Spawn,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Read => "read",
            Fault::Write => "write",
            Fault::Corrupt => "corrupt",
            Fault::Restore => "restore",
            Fault::LockTimeout => "lock_timeout",
            Fault::Spawn => "spawn",
        }
    }
}

/// Warn (once per `cause`) and count the fault in the journal of `store`, if there is one.
pub(super) fn report(
    store: Option<&Store>,
    fault: Fault,
    cause: &'static str,
    msg: impl std::fmt::Display,
) {
    warn::once(cause, msg);
    if let Some(store) = store {
        journal(
            store,
            &Event::Error {
                ts: now_ms(),
                kind: fault.as_str().into(),
            },
        );
    }
}

/// Append a usage event to the journal; a failure is worth one warning, never more (usage
/// counts are not worth a run). Returns whether the journal is due to be folded.
pub(super) fn journal(store: &Store, event: &Event) -> bool {
    store.log(event).unwrap_or_else(|e| {
        warn::once(
            warn::CACHE,
            format_args!("cannot record usage in {}: {e}", store.journal.display()),
        );
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds are written to the journal and shown by `stats --json`: renaming one would
    /// split the counts of old and new events.
    #[test]
    fn fault_names_are_stable() {
        let all = [
            Fault::Read,
            Fault::Write,
            Fault::Corrupt,
            Fault::Restore,
            Fault::LockTimeout,
            Fault::Spawn,
        ];
        let names: Vec<&str> = all.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "read",
                "write",
                "corrupt",
                "restore",
                "lock_timeout",
                "spawn"
            ]
        );
    }
}
