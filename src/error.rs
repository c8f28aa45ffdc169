//! Errors that callers branch on.
//!
//! Most failures are carried as `anyhow::Error` with context. The one distinction the binary must
//! make is between cachectl's own usage errors (exit 2, nothing was run) and everything else, so
//! that is a type.

use std::fmt;

/// A mistake in how cachectl was invoked or configured: a bad flag value, a malformed config file,
/// an output path outside the working directory. Always reported before the command runs, and
/// always exits 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a [`UsageError`] from a function that returns `anyhow::Result`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code `main` should use for an error that escaped a command.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<UsageError>()) {
        2
    } else {
        1
    }
}
