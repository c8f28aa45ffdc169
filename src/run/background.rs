//! Detached background cachectl processes: a stale entry's refresh, and auto-gc.

use super::fault::{self, Fault};
use crate::store::Store;
use crate::store::record::Decoded;
use crate::warn;
use serde::de::IgnoredAny;
use std::ffi::OsString;
use std::fs::File;

/// Set in the environment of a detached stale-refresh run.
pub const REFRESH_ENV: &str = "CACHECTL_INTERNAL_REFRESH";

/// Start a detached `cachectl` that re-runs this command (same arguments, `--force` semantics)
/// and stores the fresh result. Its stdio is detached; stdin is a copy of ours with `--stdin`.
///
/// Not when stdin could only be kept in a pipe fed by this process (no temp file, no memory
/// file): it ends when we exit, and the refresh would run on part of it. The stale entry is
/// served meanwhile, and a later run refreshes it.
pub(super) fn refresh(store: &Store, d: &Decoded<IgnoredAny>, stdin: Option<&File>) {
    if stdin.is_some_and(|f| !f.metadata().is_ok_and(|m| m.is_file())) {
        return;
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    spawn(store, &args, &[(REFRESH_ENV, d.record.key.as_str())], stdin);
}

/// Start a detached `cachectl gc --auto` on the same store: over `max_size`, or a journal grown
/// past its bound (gc folds it).
pub(super) fn auto_gc(store: &Store) {
    spawn(store, &["gc".into(), "--auto".into()], &[], None);
}

fn spawn(store: &Store, args: &[OsString], env: &[(&str, &str)], stdin: Option<&File>) {
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
        fault::report(
            Some(store),
            Fault::Spawn,
            warn::CACHE,
            format_args!("cannot start a background cachectl: {e}"),
        );
    }
}
