//! The remote tier, as seen from `cachectl`: configuration, the companion process, the circuit
//! breaker, and the wire format both sides share.
//!
//! ## Why a companion process
//! Merely linking OpenDAL adds 0.4–0.7 ms to every process start, and a runtime plus an operator
//! ~5 ms (shared/notes). So `cachectl` never links it: when a remote is configured and needed (a
//! local miss, or a fresh store to upload) it spawns `cachectl-remote`, which is installed next to
//! it, and reads one JSON line of result. A hit in the local tier pays nothing for the remote.
//!
//! ## Layout on the remote (the Bazel HTTP cache layout)
//! `ac/<key>` holds a record, `cas/<digest>` a blob, both byte-for-byte as in the local store
//! (both are self-verifying). With `namespace = "x"`, writes go under `x/` and reads try `x/`
//! first, then the root: an untrusted build confined to its namespace cannot poison what trusted
//! builds read.
//!
//! ## Trust
//! Everything fetched is verified before it enters the local tier: a record's checksum, its key
//! (recomputed from its stored components), and every blob's content digest. With
//! `CACHECTL_REMOTE_SECRET` set, records are also signed ([`sign`]) and a record whose signature
//! is missing or wrong is refused.
//!
//! ## Faults
//! Every operation has a timeout; the companion retries a little; a failure opens a circuit
//! breaker shared by all processes on this cache (`remote-v1.down`) for [`BREAKER_OPEN`], during
//! which the remote is skipped. A dead remote therefore costs a `make -j` build one timeout, not
//! one per command.

use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::cli::RemoteMode as Mode;
pub use crate::config::remote::{DEFAULT_TIMEOUT, Remote, redact};

/// How long the remote is skipped after a failure.
pub const BREAKER_OPEN: Duration = Duration::from_secs(30);
const SIGNED_MAGIC: &[u8; 8] = b"CCSIG001";

/// The signing key derived from a shared secret.
fn signing_key(secret: &str) -> [u8; 32] {
    blake3::derive_key("cachectl remote record signature v1", secret.as_bytes())
}

/// Wrap record bytes with a keyed-blake3 signature: `CCSIG001` · mac · record.
pub fn sign(secret: &str, record: &[u8]) -> Vec<u8> {
    let mac = blake3::keyed_hash(&signing_key(secret), record);
    let mut out = Vec::with_capacity(8 + 32 + record.len());
    out.extend_from_slice(SIGNED_MAGIC);
    out.extend_from_slice(mac.as_bytes());
    out.extend_from_slice(record);
    out
}

/// Why a fetched record object is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the remote record is not signed, and CACHECTL_REMOTE_SECRET requires signed records")]
    Unsigned,
    #[error("the remote record's signature does not match CACHECTL_REMOTE_SECRET")]
    Wrong,
}

/// The record bytes inside a fetched object: checked against `secret` when one is set; without
/// a secret a signed object is accepted as it is (the signature is stripped).
pub fn open_signed<'a>(secret: Option<&str>, object: &'a [u8]) -> Result<&'a [u8], SignatureError> {
    let signed = object.len() >= 40 && &object[..8] == SIGNED_MAGIC;
    match (secret, signed) {
        (None, false) => Ok(object),
        (None, true) => Ok(&object[40..]),
        (Some(_), false) => Err(SignatureError::Unsigned),
        (Some(s), true) => {
            let expected = blake3::keyed_hash(&signing_key(s), &object[40..]);
            // blake3::Hash compares in constant time.
            if expected == blake3::Hash::from_bytes(object[8..40].try_into().expect("32 bytes")) {
                Ok(&object[40..])
            } else {
                Err(SignatureError::Wrong)
            }
        }
    }
}

/// What an operation of the companion came to. The names are the wire format between the two
/// binaries and part of `cachectl remote check --json`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Hit,
    Miss,
    Stored,
    /// `check` passed.
    Ok,
    /// Anything the companion does not say it did (also an answer this version cannot read).
    #[default]
    #[serde(other)]
    Error,
}

/// Why an operation failed, as counted in `stats` (remote `errors` by kind).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No failure (the empty string on the wire).
    #[default]
    #[serde(rename = "")]
    None,
    /// The remote did not answer within the timeout.
    Timeout,
    /// The remote refused the credentials.
    Auth,
    /// A tampered or corrupt entry was refused.
    Refused,
    /// An entry with a missing or wrong signature was refused.
    Signature,
    /// The remote is not usable as configured (or the companion is missing).
    Config,
    /// Anything else (network, local cache); also a kind this version does not know.
    #[serde(other)]
    Io,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::None => "",
            FailureKind::Timeout => "timeout",
            FailureKind::Auth => "auth",
            FailureKind::Refused => "refused",
            FailureKind::Signature => "signature",
            FailureKind::Config => "config",
            FailureKind::Io => "io",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the companion reports, one JSON line on its stdout.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub status: Status,
    #[serde(default)]
    pub bytes_down: u64,
    #[serde(default)]
    pub bytes_up: u64,
    /// For errors: why.
    #[serde(default)]
    pub kind: FailureKind,
    #[serde(default)]
    pub message: String,
    /// `check`: what was tried and how long it took.
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Step {
    pub op: String,
    pub ok: bool,
    pub ms: u64,
    #[serde(default)]
    pub message: String,
}

/// The companion binary: next to `cachectl`, else on PATH.
pub fn companion() -> Option<PathBuf> {
    const NAME: &str = "cachectl-remote";
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let p = dir.join(NAME);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(NAME))
        .find(|p| p.is_file())
}

fn breaker_path(store: &Store) -> PathBuf {
    crate::store::layout::Item::RemoteBreaker.path(&store.root)
}

/// Whether the breaker is open (a recent failure): then the remote is skipped.
pub fn breaker_open(store: &Store) -> bool {
    let Ok(text) = std::fs::read_to_string(breaker_path(store)) else {
        return false;
    };
    let until: u64 = text.trim().parse().unwrap_or(0);
    crate::clock::now_ms() < until
}

/// Open the breaker for [`BREAKER_OPEN`] (a failure) or close it (a success).
pub fn set_breaker(store: &Store, failed: bool) {
    let path = breaker_path(store);
    if failed {
        let until = crate::clock::now_ms() + BREAKER_OPEN.as_millis() as u64;
        let _ = crate::fsutil::write_atomic(&path, &store.tmp, until.to_string().as_bytes());
    } else if path.exists() {
        let _ = std::fs::remove_file(path);
    }
}

/// Run the companion: `cachectl-remote <op> <args>...` against `remote`, for the store at
/// `root`. Never hangs: the companion is killed after a generous multiple of the remote's
/// timeout.
pub fn call(remote: &Remote, root: &Path, op: &str, args: &[&std::ffi::OsStr]) -> Outcome {
    let error = |kind: FailureKind, message: String| Outcome {
        status: Status::Error,
        kind,
        message,
        ..Default::default()
    };
    let Some(exe) = companion() else {
        return error(
            FailureKind::Config,
            "cachectl-remote is not installed next to cachectl or on PATH (`cargo install --locked --path .` installs both)".into(),
        );
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(op)
        .arg("--dir")
        .arg(root)
        // The URL may hold a password: pass it in the environment (readable only by this user),
        // not on the command line (readable by everyone through ps).
        .env("CACHECTL_REMOTE_URL", &remote.url)
        .arg("--mode")
        .arg(remote.mode.as_str())
        .arg("--timeout-ms")
        .arg(remote.timeout.as_millis().to_string());
    if let Some(ns) = &remote.namespace {
        cmd.arg("--namespace").arg(ns);
    }
    cmd.args(args);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return error(
                FailureKind::Config,
                format!("cannot start cachectl-remote: {e}"),
            );
        }
    };
    let deadline = std::time::Instant::now() + (remote.timeout * 12).max(Duration::from_secs(30));
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return error(
                    FailureKind::Timeout,
                    "the remote did not answer in time".into(),
                );
            }
        }
    }
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut out);
    }
    serde_json::from_str(out.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| error(FailureKind::Io, "cachectl-remote gave no answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The companion's answer is the wire format between the two binaries and what
    /// `cachectl remote check --json` prints: the enums must keep the names they replaced.
    #[test]
    fn outcome_wire_format_is_pinned() {
        let hit = Outcome {
            status: Status::Hit,
            bytes_down: 7,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            r#"{"status":"hit","bytes_down":7,"bytes_up":0,"kind":"","message":"","steps":[]}"#
        );
        for (status, name) in [
            (Status::Hit, "hit"),
            (Status::Miss, "miss"),
            (Status::Stored, "stored"),
            (Status::Ok, "ok"),
            (Status::Error, "error"),
        ] {
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{name}\"")
            );
        }
        for kind in [
            FailureKind::None,
            FailureKind::Timeout,
            FailureKind::Auth,
            FailureKind::Refused,
            FailureKind::Signature,
            FailureKind::Config,
            FailureKind::Io,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<FailureKind>(&json).unwrap(), kind);
        }
        // An answer from another version with names this one does not know is an error.
        let odd: Outcome =
            serde_json::from_str(r#"{"status":"maybe","kind":"quota","message":"m"}"#).unwrap();
        assert_eq!((odd.status, odd.kind), (Status::Error, FailureKind::Io));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("redis://:pw@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("https://user:secret@dav.example/c"),
            "https://user:***@dav.example/c"
        );
        assert_eq!(
            redact("https://token@dav.example/c"),
            "https://***@dav.example/c"
        );
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
    }

    #[test]
    fn signatures() {
        let rec = b"record bytes";
        let signed = sign("s3cret", rec);
        assert_eq!(open_signed(Some("s3cret"), &signed), Ok(&rec[..]));
        assert_eq!(
            open_signed(Some("other"), &signed),
            Err(SignatureError::Wrong)
        );
        assert_eq!(
            open_signed(Some("s3cret"), rec),
            Err(SignatureError::Unsigned)
        );
        assert_eq!(open_signed(None, &signed), Ok(&rec[..]));
        assert_eq!(open_signed(None, rec), Ok(&rec[..]));
        let mut tampered = signed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            open_signed(Some("s3cret"), &tampered),
            Err(SignatureError::Wrong)
        );
    }
}
