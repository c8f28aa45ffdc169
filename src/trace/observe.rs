//! What the traced processes did to each path, and the report the tracer sends back.

use super::syscalls::Op;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the run did to one path. Looks that come after the run changed the path are its own
/// business (a temporary it wrote and read back), so `read`, `probed` and `listed` count only
/// the accesses before the first change: they are what the run depended on.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Access {
    /// Its content was read (opened for reading) before the run changed it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read: bool,
    /// It was executed (before the run changed it): its interpreter is read too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub executed: bool,
    /// It was looked at (stat, access, readlink, opened as a directory) before the run changed it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub probed: bool,
    /// Its entries were listed before the run changed it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub listed: bool,
    /// The run wrote, created, truncated or renamed something onto it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub written: bool,
    /// The run removed it (or renamed it away).
    #[serde(default, skip_serializing_if = "is_false")]
    pub removed: bool,
    /// For a file read and then changed by the run (`sed -i`), or opened to be written in
    /// place (`>>`): the blake3 digest of its content just before the change, what the run read
    /// or kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_before_change: Option<String>,
    /// When the run first depended on it (read, executed, probed or listed it), by the coarse
    /// clock files are stamped with ([`crate::clock::coarse_now`]): a file modified at or
    /// after this moment may have changed under the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_use: Option<(i64, i64)>,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Access {
    /// Whether the run changed the path.
    pub fn changed(&self) -> bool {
        self.written || self.removed
    }

    /// Whether the run depended on the path as it was before it ran.
    pub fn is_input(&self) -> bool {
        self.read || self.executed || self.probed || self.listed
    }
}

/// Everything the tracer saw.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Absolute paths, as the processes named them (resolved against their working directory
    /// or directory descriptor, not through symlinks).
    /// (Encoded in the report with [`crate::paths::encode_os`]: a file name need not be UTF-8.)
    #[serde(with = "encoded_paths")]
    pub paths: BTreeMap<PathBuf, Access>,
    /// Ways the run read files that the tracer cannot see (io_uring, a 32-bit system call, a
    /// descriptor whose path cannot be read): a run with any is not completely traced.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub untraceable: BTreeSet<String>,
    /// The command ran without being traced at all (ptrace or the seccomp filter was refused:
    /// cachectl is itself traced, or a container forbids it), and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_traced: Option<String>,
    /// What the run connected to (`unix:PATH`, `network`): something outside the traced tree,
    /// whose answers are not keyed. The run is stored; `show` and `check` name them.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub peers: BTreeSet<String>,
    /// A process of the run was still running when the command's own process ended: what it
    /// does after that is not traced.
    #[serde(default, skip_serializing_if = "is_false")]
    pub outlived: bool,
}

/// The report's paths as [`crate::paths::encode_os`] strings: JSON holds only UTF-8, and a
/// report that failed to serialise would leave the run untraced.
mod encoded_paths {
    use super::Access;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    pub fn serialize<S: Serializer>(
        paths: &BTreeMap<PathBuf, Access>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded: BTreeMap<String, &Access> = paths
            .iter()
            .map(|(p, a)| (crate::paths::encode_os(p.as_os_str()), a))
            .collect();
        encoded.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<PathBuf, Access>, D::Error> {
        let encoded = BTreeMap::<String, Access>::deserialize(d)?;
        Ok(encoded
            .into_iter()
            .map(|(p, a)| (PathBuf::from(crate::paths::decode_os(&p)), a))
            .collect())
    }
}

/// Paths that are never inputs or outputs: the kernel's views and devices (but /dev/shm holds
/// files).
fn ignored(path: &Path) -> bool {
    ["/proc", "/sys", "/dev"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
        && !path.starts_with("/dev/shm")
}

impl Observed {
    /// Note that the run did `op` to `path` (absolute). `digest` is asked, for a file the run
    /// read and is about to change, for the content it read.
    pub fn record(&mut self, path: PathBuf, op: Op, digest: impl FnOnce(&Path) -> Option<String>) {
        if ignored(&path) {
            return;
        }
        let a = self.paths.entry(path.clone()).or_default();
        let before_change = !a.changed();
        if before_change
            && a.first_use.is_none()
            && matches!(op, Op::Read | Op::Exec | Op::Probe | Op::List)
        {
            a.first_use = Some(crate::clock::coarse_now());
        }
        match op {
            Op::Read if before_change => a.read = true,
            Op::Exec if before_change => a.executed = true,
            Op::Probe if before_change => a.probed = true,
            Op::List if before_change => a.listed = true,
            Op::Read | Op::Exec | Op::Probe | Op::List => {}
            Op::Write | Op::Modify | Op::Remove | Op::Create => {
                if before_change && (a.read || op == Op::Modify) {
                    a.digest_before_change = digest(&path);
                }
                if op != Op::Remove {
                    a.written = true;
                } else {
                    a.removed = true;
                }
            }
        }
    }
}

/// What the tracer sends back when the command's process has ended.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// The command's wait status (as `waitpid` gives it).
    pub status: i32,
    /// The command could not be executed: its errno (as a spawn error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_errno: Option<i32>,
    pub observed: Observed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_after_a_change_are_not_inputs() {
        let mut o = Observed::default();
        let p = PathBuf::from;
        o.record(p("/w/tmp.o"), Op::Write, |_| None);
        o.record(p("/w/tmp.o"), Op::Read, |_| None);
        o.record(p("/w/in.c"), Op::Read, |_| None);
        o.record(p("/w/conf"), Op::Read, |_| None);
        o.record(p("/w/conf"), Op::Write, |_| Some("d1".into()));
        o.record(p("/w/conf"), Op::Write, |_| Some("d2".into()));
        o.record(p("/proc/self/maps"), Op::Read, |_| None);
        let tmp = &o.paths[Path::new("/w/tmp.o")];
        assert!(tmp.written && !tmp.is_input());
        assert!(o.paths[Path::new("/w/in.c")].read);
        // Any file name survives the report (JSON is UTF-8 only).
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/w/\xff\xfe.txt"));
        o.record(odd.clone(), Op::Read, |_| None);
        let back: Observed = serde_json::from_slice(&serde_json::to_vec(&o).unwrap()).unwrap();
        assert_eq!(back, o);
        assert!(back.paths.contains_key(&odd));
        let conf = &o.paths[Path::new("/w/conf")];
        assert!(conf.read && conf.written);
        assert_eq!(conf.digest_before_change.as_deref(), Some("d1"));
        o.record(p("/w/log"), Op::Modify, |_| Some("old".into()));
        let log = &o.paths[Path::new("/w/log")];
        assert!(log.written && !log.read);
        assert_eq!(log.digest_before_change.as_deref(), Some("old"));
        assert!(!o.paths.contains_key(Path::new("/proc/self/maps")));
    }
}
