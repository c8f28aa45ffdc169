//! The remote tier as the run path uses it: a lookup after a local miss, an upload after a store,
//! and what a failure means for the user (one warning, the breaker).

use super::{background, fault};
use crate::clock::now_ms;
use crate::config::RunOptions;
use crate::remote::{
    BREAKER_OPEN, FailureKind, Outcome, Remote, Status, breaker_open, call, set_breaker,
};
use crate::store::Store;
use crate::store::journal::Event;
use crate::warn;
use std::path::Path;

/// What the remote tier had for a key.
pub(super) enum Fetched {
    /// The entry is now in the local tier (verified), to be served from there.
    Stored,
    Miss,
    /// An entry signed with another secret: refused, and not to be overwritten.
    NotOurs,
}

/// Look `key` up in the remote tier; on a hit, bring the entry into the local tier. With
/// `manifest_cwd` (`--trace auto`), `key` names a manifest: the entry is the one its candidate
/// for the files in that directory names, and the candidate joins the local manifest.
pub(super) fn fetch(
    opts: &RunOptions,
    store: &Store,
    key: &str,
    manifest_cwd: Option<&Path>,
    remote: &Remote,
) -> Fetched {
    if breaker_open(store) {
        return Fetched::Miss;
    }
    let out = match manifest_cwd {
        None => call(remote, &store.root, "get", &[key.as_ref()]),
        Some(cwd) => call(
            remote,
            &store.root,
            "get-manifest",
            &[key.as_ref(), "--cwd".as_ref(), cwd.as_os_str()],
        ),
    };
    tracing::debug!(status = ?out.status, kind = %out.kind, bytes = out.bytes_down, message = %out.message, "remote get");
    match out.status {
        Status::Hit => {
            set_breaker(store, false);
            count(store, Op::Hit, FailureKind::None, out.bytes_down);
            if opts.verbose {
                crate::note!(
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
                background::auto_gc(store);
            }
            Fetched::Stored
        }
        Status::Miss => {
            set_breaker(store, false);
            count(store, Op::Miss, FailureKind::None, out.bytes_down);
            Fetched::Miss
        }
        _ => {
            failed(store, remote, &out);
            if out.kind == FailureKind::Signature {
                Fetched::NotOurs
            } else {
                Fetched::Miss
            }
        }
    }
}

/// Upload a freshly stored entry (blobs first, record last), and with `manifest` (`--trace
/// auto`) then the manifest that names it.
pub(super) fn upload(store: &Store, key: &str, manifest: Option<&str>, remote: &Remote) {
    if breaker_open(store) {
        return;
    }
    let mut args: Vec<&std::ffi::OsStr> = vec![key.as_ref()];
    if let Some(m) = manifest {
        args.extend([std::ffi::OsStr::new("--manifest"), m.as_ref()]);
    }
    let out = call(remote, &store.root, "put", &args);
    tracing::debug!(status = ?out.status, kind = %out.kind, bytes = out.bytes_up, message = %out.message, "remote put");
    if out.status == Status::Stored {
        set_breaker(store, false);
        count(store, Op::Store, FailureKind::None, out.bytes_up);
    } else {
        failed(store, remote, &out);
    }
}

/// A remote failure: one warning (loud for credentials), counted, and for an unreachable
/// remote the circuit breaker opens so that the next runs skip it for a while.
fn failed(store: &Store, remote: &Remote, out: &Outcome) {
    count(store, Op::Error, out.kind, 0);
    let url = remote.redacted_url();
    let msg = match out.kind {
        FailureKind::Auth => format!(
            "remote {url} REFUSED THE CREDENTIALS ({}); fix AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the URL's user:password. Carrying on locally (skipping the remote for {}s)",
            out.message,
            BREAKER_OPEN.as_secs()
        ),
        FailureKind::Refused => format!(
            "refused an entry from remote {url}: {}; running the command",
            out.message
        ),
        FailureKind::Signature => format!(
            "refused an entry from remote {url}: {}; running the command (and leaving the remote entry alone)",
            out.message
        ),
        FailureKind::Timeout => format!(
            "remote {url} did not answer within {}; carrying on locally (skipping it for {}s)",
            humantime::format_duration(remote.timeout),
            BREAKER_OPEN.as_secs()
        ),
        FailureKind::Config => format!(
            "remote {url} is not usable: {}; carrying on locally",
            out.message
        ),
        _ => format!(
            "remote {url} failed: {}; carrying on locally (skipping it for {}s)",
            out.message,
            BREAKER_OPEN.as_secs()
        ),
    };
    warn::once("remote", msg);
    if !matches!(
        out.kind,
        FailureKind::Refused | FailureKind::Signature | FailureKind::Config
    ) {
        set_breaker(store, true);
    }
}

/// What a remote event in the journal records (`op`; `stats` counts them by these names).
#[derive(Clone, Copy)]
enum Op {
    Hit,
    Miss,
    Store,
    Error,
}

/// Count a remote operation in the journal.
fn count(store: &Store, op: Op, kind: FailureKind, bytes: u64) {
    let op = match op {
        Op::Hit => "hit",
        Op::Miss => "miss",
        Op::Store => "store",
        Op::Error => "error",
    };
    fault::journal(
        store,
        &Event::Remote {
            ts: now_ms(),
            op: op.into(),
            kind: kind.as_str().into(),
            bytes,
        },
    );
}
