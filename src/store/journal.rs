//! The usage journal: one small appended line per event, so the hit path never opens an index.
//!
//! Opening SQLite and updating a row costs ~0.9 ms per process here (shared/notes), three times
//! the whole hit budget. Instead every `run` appends one JSON line (`O_APPEND`, one `write`) to
//! `journal-v1.log`; the management commands fold the journal into the index when they run.
//!
//! Writers hold a shared `flock` on the file only around their single write and check, after
//! locking, that the path still names the file they opened; a folder takes the exclusive lock,
//! renames the journal away and releases it. So no event is written into a journal that is being
//! (or has been) folded, and none is lost.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One usage event.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// Served from the cache. `saved_ms` is the original run's duration.
    Hit {
        ts: u64,
        key: String,
        cmd: String,
        ns: String,
        saved_ms: u64,
        bytes: u64,
    },
    /// Looked up and not found (or expired); the command ran.
    Miss {
        ts: u64,
        key: String,
        cmd: String,
        ns: String,
    },
    /// A new entry was stored.
    Store {
        ts: u64,
        key: String,
        cmd: String,
        ns: String,
        bytes: u64,
        duration_ms: u64,
    },
    /// The command ran but its result was not stored, and why. `duration_ms`: how long it ran
    /// (0 in lines written before it was recorded).
    Uncacheable {
        ts: u64,
        key: String,
        cmd: String,
        ns: String,
        reason: String,
        #[serde(default)]
        duration_ms: u64,
    },
    /// Remote tier activity: `op` is `hit`, `miss`, `store` or `error`; `kind` classifies
    /// errors (`timeout`, `auth`, `refused`, `config`, `io`); `bytes` moved.
    Remote {
        ts: u64,
        op: String,
        kind: String,
        bytes: u64,
    },
    /// A cache fault (read, write, corrupt, lock_timeout): the command ran uncached.
    Error { ts: u64, kind: String },
}

/// A journal line: an event and the session (`--session`, `CACHECTL_SESSION`) it belongs to.
/// Without a session the line is the event alone, as cachectl wrote it before sessions existed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Line<E = Event, S = String> {
    #[serde(flatten)]
    pub event: E,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<S>,
}

/// Above this size a run asks for the journal to be folded (by a background `gc --auto`), so a
/// cache that only ever sees hits does not grow its journal without bound.
pub const FOLD_THRESHOLD: u64 = 4 << 20;

/// Append `event` (of `session`, if any) to the journal at `path` and return the journal's new
/// length. Errors are returned for the caller to ignore or warn.
pub fn append(path: &Path, event: &Event, session: Option<&str>) -> std::io::Result<u64> {
    let line = Line { event, session };
    let mut line = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
    line.push(b'\n');
    for _ in 0..8 {
        let mut f = File::options().append(true).create(true).open(path)?;
        f.lock_shared()?;
        let (Ok(mine), Ok(current)) = (f.metadata(), std::fs::metadata(path)) else {
            continue;
        };
        if mine.ino() == current.ino() && mine.dev() == current.dev() {
            f.write_all(&line)?;
            return Ok(mine.len() + line.len() as u64);
        }
        // The journal was renamed away by a fold between our open and our lock: reopen.
    }
    Err(std::io::Error::other("journal kept moving"))
}

/// Parse journal text leniently: a torn or foreign line is skipped, never fatal.
pub fn parse(text: &str) -> impl Iterator<Item = Line> + '_ {
    text.lines().filter_map(|l| serde_json::from_str(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journal lines are read back by every later cachectl (and by older ones sharing the
    /// cache): their shape is pinned here, byte for byte.
    #[test]
    fn event_lines_are_pinned() {
        let lines = [
            (
                Event::Hit {
                    ts: 1,
                    key: "k".into(),
                    cmd: "c".into(),
                    ns: "default".into(),
                    saved_ms: 5,
                    bytes: 6,
                },
                r#"{"ev":"hit","ts":1,"key":"k","cmd":"c","ns":"default","saved_ms":5,"bytes":6}"#,
            ),
            (
                Event::Miss {
                    ts: 1,
                    key: "k".into(),
                    cmd: "c".into(),
                    ns: "n".into(),
                },
                r#"{"ev":"miss","ts":1,"key":"k","cmd":"c","ns":"n"}"#,
            ),
            (
                Event::Store {
                    ts: 1,
                    key: "k".into(),
                    cmd: "c".into(),
                    ns: "n".into(),
                    bytes: 2,
                    duration_ms: 3,
                },
                r#"{"ev":"store","ts":1,"key":"k","cmd":"c","ns":"n","bytes":2,"duration_ms":3}"#,
            ),
            (
                Event::Uncacheable {
                    ts: 1,
                    key: "k".into(),
                    cmd: "c".into(),
                    ns: "n".into(),
                    reason: "reader_gone".into(),
                    duration_ms: 7,
                },
                r#"{"ev":"uncacheable","ts":1,"key":"k","cmd":"c","ns":"n","reason":"reader_gone","duration_ms":7}"#,
            ),
            (
                Event::Remote {
                    ts: 1,
                    op: "error".into(),
                    kind: "timeout".into(),
                    bytes: 0,
                },
                r#"{"ev":"remote","ts":1,"op":"error","kind":"timeout","bytes":0}"#,
            ),
            (
                Event::Error {
                    ts: 1,
                    kind: "lock_timeout".into(),
                },
                r#"{"ev":"error","ts":1,"kind":"lock_timeout"}"#,
            ),
        ];
        for (event, line) in lines {
            let written = Line {
                event: &event,
                session: None::<&str>,
            };
            assert_eq!(serde_json::to_string(&written).unwrap(), line);
            let read = Line {
                event,
                session: None,
            };
            assert_eq!(parse(line).collect::<Vec<_>>(), [read]);
        }
        // A session is one more field at the end of the line.
        let event = Event::Miss {
            ts: 1,
            key: "k".into(),
            cmd: "c".into(),
            ns: "n".into(),
        };
        let line = r#"{"ev":"miss","ts":1,"key":"k","cmd":"c","ns":"n","session":"ci-42"}"#;
        let written = Line {
            event: &event,
            session: Some("ci-42"),
        };
        assert_eq!(serde_json::to_string(&written).unwrap(), line);
        let read = Line {
            event,
            session: Some("ci-42".to_owned()),
        };
        assert_eq!(parse(line).collect::<Vec<_>>(), [read]);
    }
}
