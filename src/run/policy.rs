//! Policies: which stored entries a run may be served, and which results are stored.

use crate::clock::now_ms;
use crate::config::RunOptions;
use crate::exec::{Captured, Gap, Outcome};
use crate::store::record::Record;
use crate::warn;

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

/// Why a run's result was not stored. The names ([`NotStored::as_str`]) are written to the
/// journal and shown by `stats` under "Not stored".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// cachectl received SIGINT, SIGTERM, SIGHUP or SIGQUIT.
    Interrupted,
    /// The command died of a signal.
    Signal,
    /// A non-zero exit without `--cache-failures`.
    NonZeroExit,
    /// The reader of cachectl's output went away: the capture is incomplete.
    ReaderGone,
    /// The output could not be captured in full.
    CaptureFailed,
    /// A declared input or the executable changed while the command ran.
    InputChanged,
    /// A declared output was not produced, or leads outside the working directory.
    MissingOutput,
    /// Larger, once stored, than `max_entry_size`.
    TooLarge,
    /// `--trace auto`, and the command could not be traced (ptrace refused, no tracer on this
    /// platform): an untraced result could be a wrong hit later.
    Untraced,
    /// `--trace auto`, and the command used what tracing cannot see (io_uring, a 32-bit call),
    /// or left a process running.
    Untraceable,
    /// `--trace auto`, and a file the command read changed while it ran.
    TracedInputChanged,
}

impl NotStored {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Interrupted => "interrupted",
            NotStored::Signal => "signal",
            NotStored::NonZeroExit => "non_zero_exit",
            NotStored::ReaderGone => "reader_gone",
            NotStored::CaptureFailed => "capture_failed",
            NotStored::InputChanged => "input_changed",
            NotStored::MissingOutput => "missing_output",
            NotStored::TooLarge => "too_large",
            NotStored::Untraced => "untraced",
            NotStored::Untraceable => "untraceable",
            NotStored::TracedInputChanged => "traced_input_changed",
        }
    }

    /// The `-v` wording.
    pub fn why(self) -> &'static str {
        match self {
            NotStored::Interrupted => "interrupted",
            NotStored::Signal => "the command died of a signal",
            NotStored::NonZeroExit => "non-zero exit; --cache-failures stores it",
            NotStored::ReaderGone => {
                "the reader of the output went away, so the capture is incomplete"
            }
            NotStored::CaptureFailed => "the output could not be captured in full",
            NotStored::InputChanged => "an input changed while the command ran",
            NotStored::MissingOutput => "an output is missing or cannot be stored",
            NotStored::TooLarge => "larger than max_entry_size",
            NotStored::Untraced => "the command could not be traced",
            NotStored::Untraceable => "the command did what tracing cannot see",
            NotStored::TracedInputChanged => "a file it read changed while it ran",
        }
    }
}

/// Whether a finished run must not be stored, judged from the run alone (inputs are checked
/// separately). A capture that is not the command's whole output is never stored.
pub fn not_stored(opts: &RunOptions, c: &Captured) -> Option<NotStored> {
    if c.interrupted {
        return Some(NotStored::Interrupted);
    }
    // Before the outcome: a closed pipe is why a command dies of SIGPIPE.
    match &c.gap {
        Some(Gap::ReaderGone) => return Some(NotStored::ReaderGone),
        Some(gap @ Gap::ReadFailed(_)) => {
            warn::once(warn::CACHE, format_args!("{gap}; not stored"));
            return Some(NotStored::CaptureFailed);
        }
        // Warned about (with the changed exit code) where the run ends.
        Some(Gap::WriteFailed(_)) => return Some(NotStored::CaptureFailed),
        None => {}
    }
    match c.outcome {
        Outcome::Signaled(_) => return Some(NotStored::Signal),
        Outcome::Exited(0) => {}
        Outcome::Exited(_) if opts.cache_failures => {}
        Outcome::Exited(_) => return Some(NotStored::NonZeroExit),
    }
    for s in [&c.stdout, &c.stderr] {
        if let Some(e) = &s.broken {
            warn::once(
                warn::CACHE,
                format_args!("cannot capture the command's output: {e}; not stored"),
            );
            return Some(NotStored::CaptureFailed);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons are written to the journal and shown by `stats --json`.
    #[test]
    fn not_stored_names_are_stable() {
        let all = [
            NotStored::Interrupted,
            NotStored::Signal,
            NotStored::NonZeroExit,
            NotStored::ReaderGone,
            NotStored::CaptureFailed,
            NotStored::InputChanged,
            NotStored::MissingOutput,
            NotStored::TooLarge,
            NotStored::Untraced,
            NotStored::Untraceable,
            NotStored::TracedInputChanged,
        ];
        let names: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "interrupted",
                "signal",
                "non_zero_exit",
                "reader_gone",
                "capture_failed",
                "input_changed",
                "missing_output",
                "too_large",
                "untraced",
                "untraceable",
                "traced_input_changed"
            ]
        );
    }
}
