//! Nested runs: a `cachectl run` inside a traced command (`cachectl run -- make` whose recipes
//! run `cachectl run -- gcc ...`) cannot trace its own command: a process has one tracer, and
//! the outer one follows every process of its command already. So the inner cachectl hands its
//! command to the outer tracer instead: just before its command executes, the command's
//! process names, in a call the tracer stops at, the descriptor of a pipe the inner cachectl
//! reads ([`HANDOFF_PREFIX`]`<fd>`: an `openat` that can only fail, `/dev/null` not being a
//! directory). The tracer then records what that process and everything it starts do for the
//! inner run too (a *subtree*; subtrees nest), and sends the inner cachectl the same
//! [`Report`] it sends its own caller when that process ends.
//!
//! The outer run records all of it as well: its own result depends on what its inner commands
//! read, and on a hit of the inner run, on what the inner cachectl's lookup looked at.

use super::observe::{Observed, Report};
use super::syscalls::Op;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The path whose opening hands the calling process's subtree to the tracer; the descriptor
/// number of the report pipe's write end follows.
pub const HANDOFF_PREFIX: &str = "/dev/null/cachectl-subtree/";

/// One handed-off subtree.
struct Subtree {
    observed: Observed,
    /// The subtree it is inside, if any (its records go there too).
    parent: Option<usize>,
    /// The process that handed it over: its end is the subtree's end.
    root: i32,
    /// Where the report goes; `None` once sent.
    report: Option<std::fs::File>,
}

/// Where the tracer's records go: the run's own [`Observed`], and each subtree a tracee is in.
#[derive(Default)]
pub struct Sinks {
    pub root: Observed,
    subtrees: Vec<Subtree>,
    /// Each tracee seen, and the innermost subtree it is in.
    member: HashMap<i32, Option<usize>>,
}

impl Sinks {
    /// The innermost subtree of `tid`, found (once) from its thread group or parent: a new
    /// process belongs where the process that started it belongs.
    fn subtree_of(&mut self, tid: i32) -> Option<usize> {
        if let Some(s) = self.member.get(&tid) {
            return *s;
        }
        let (tgid, ppid) = ids(tid).unwrap_or((tid, 0));
        let from = if tgid != tid { tgid } else { ppid };
        let s = match self.member.get(&from) {
            Some(s) => *s,
            None => None,
        };
        self.member.insert(tid, s);
        s
    }

    /// Note a tracee the first time it stops, while the process that started it is there to
    /// tell where it belongs.
    pub fn seen(&mut self, tid: i32) {
        self.subtree_of(tid);
    }

    /// The records of `tid` go to the run and to these subtrees (innermost first).
    fn chain(&mut self, tid: i32) -> Vec<usize> {
        let mut out = Vec::new();
        let mut s = self.subtree_of(tid);
        while let Some(i) = s {
            if self.subtrees[i].report.is_some() {
                out.push(i);
            }
            s = self.subtrees[i].parent;
        }
        out
    }

    /// Record `op` on `path` for `tid` (see [`Observed::record`]).
    pub fn record(&mut self, tid: i32, path: PathBuf, op: Op, digest: fn(&Path) -> Option<String>) {
        for i in self.chain(tid) {
            self.subtrees[i].observed.record(path.clone(), op, digest);
        }
        self.root.record(path, op, digest);
    }

    /// Something `tid` did that tracing cannot see.
    pub fn untraceable(&mut self, tid: i32, what: &str) {
        for i in self.chain(tid) {
            self.subtrees[i]
                .observed
                .untraceable
                .insert(what.to_owned());
        }
        self.root.untraceable.insert(what.to_owned());
    }

    /// `tid` connected to `peer`.
    pub fn peer(&mut self, tid: i32, peer: String) {
        for i in self.chain(tid) {
            self.subtrees[i].observed.peers.insert(peer.clone());
        }
        self.root.peers.insert(peer);
    }

    /// `tid` handed its subtree over, to report on its descriptor `fd`.
    pub fn hand_off(&mut self, tid: i32, fd: i32) {
        let report = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{tid}/fd/{fd}"));
        let Ok(report) = report else {
            // (No report: the inner cachectl reads the end of its pipe, and does not store.)
            return;
        };
        let parent = self.subtree_of(tid);
        self.subtrees.push(Subtree {
            observed: Observed::default(),
            parent,
            root: tid,
            report: Some(report),
        });
        self.member.insert(tid, Some(self.subtrees.len() - 1));
    }

    /// `tid` ended with wait `status`: if it handed a subtree over, report it.
    pub fn ended(&mut self, tid: i32, status: i32) {
        let own = self.member.remove(&tid).flatten();
        let Some(i) = own.filter(|i| self.subtrees[*i].root == tid) else {
            return;
        };
        // Anything of the subtree still running (its own members, or a subtree inside it)
        // does what is not traced for it any more.
        let outlived = self.member.values().flatten().any(|s| self.within(*s, i));
        let sub = &mut self.subtrees[i];
        let Some(mut f) = sub.report.take() else {
            return;
        };
        let mut observed = std::mem::take(&mut sub.observed);
        observed.outlived = outlived;
        let report = Report {
            status,
            exec_errno: None,
            observed,
        };
        if let Ok(json) = serde_json::to_vec(&report) {
            let _ = f.write_all(&json);
        }
    }

    /// Whether subtree `s` is `i` or inside it.
    fn within(&self, s: usize, i: usize) -> bool {
        let mut cur = Some(s);
        while let Some(c) = cur {
            if c == i {
                return true;
            }
            cur = self.subtrees[c].parent;
        }
        false
    }
}

/// The thread group and parent of `tid` (from `/proc/TID/status`).
fn ids(tid: i32) -> Option<(i32, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<i32>().ok())
    };
    Some((field("Tgid:")?, field("PPid:")?))
}

/// The report descriptor named by a hand-off path, if `path` is one.
pub fn handoff_fd(path: &Path) -> Option<i32> {
    use std::os::unix::ffi::OsStrExt;
    let rest = path
        .as_os_str()
        .as_bytes()
        .strip_prefix(HANDOFF_PREFIX.as_bytes())?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// The tracer of this process, if it is a cachectl tracer (`cachectl __trace`): then this
/// process's commands are traced by it, through a hand-off. (A tracer of a cachectl that knows
/// no hand-off sends no report: the inner run is then not stored.)
pub fn outer_tracer() -> Option<i32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let pid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()?;
    if pid == 0 {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_tracer = cmdline.split(|&b| b == 0).nth(1) == Some(super::TRACER_ARG.as_bytes());
    is_tracer.then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_paths() {
        assert_eq!(
            handoff_fd(Path::new("/dev/null/cachectl-subtree/7")),
            Some(7)
        );
        assert_eq!(handoff_fd(Path::new("/dev/null/cachectl-subtree/x")), None);
        assert_eq!(handoff_fd(Path::new("/dev/null")), None);
    }
}
