//! Which system calls stop for the tracer, and what each one tells about the paths it names.
//!
//! Only calls that take a path (or list a directory) stop. Reads and writes through a
//! descriptor do not: opening a file for reading counts as reading its content (a file opened
//! and never read is keyed anyway, which can only cost a miss), and opening it for writing, as
//! writing it. What a call found (a file, nothing) is not taken from its result: the tracer looks
//! at each path once the command has ended, so only the call's entry is needed, one stop per
//! call.

/// What a call does to the path it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opened for reading (or executed): its content.
    Read,
    /// Executed: its content, and the interpreter it names (`#!`, or an ELF's loader).
    Exec,
    /// Looked at without reading: stat, access, readlink, opening a directory or with `O_PATH`.
    Probe,
    /// Opened for writing, truncated, the target of a rename, or its metadata changed.
    Write,
    /// Opened for writing only, keeping what is there (`>>`, `O_WRONLY` without `O_TRUNC`):
    /// what it leaves holds the old content, which the process itself cannot read.
    Modify,
    /// Created where nothing may be (mkdir, mknod, symlink, link, `O_CREAT|O_EXCL`): a write if
    /// the path is free at the call, else only a look (the call fails, or `mkdir -p` goes on).
    Create,
    /// Removed (unlink, rmdir) or renamed away.
    Remove,
    /// A directory whose entries were read (getdents on a descriptor).
    List,
}

/// Where a call's path argument is, and how its relative form resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A path at argument `i`, relative to the working directory.
    Path(usize),
    /// A directory descriptor at argument `dirfd` and a path at `path` relative to it (an
    /// empty path, with `AT_EMPTY_PATH`, is the descriptor itself: already recorded when it was
    /// opened).
    At { dirfd: usize, path: usize },
    /// A descriptor at argument `i` (getdents: the directory it lists).
    Fd(usize),
}

/// One path a call names and what it does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    pub arg: Arg,
    pub op: Op,
}

/// How a traced call is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Fixed effects.
    Fixed(&'static [Effect]),
    /// open/openat/creat: the effect depends on the flags at this argument (`None`: creat).
    Open { arg: Arg, flags: Option<usize> },
    /// openat2: the flags are the first field of the `open_how` at argument 2.
    OpenHow { arg: Arg },
    /// A call through which files are read without a traced call (io_uring): the run cannot
    /// be traced completely. The text names it.
    Untraceable(&'static str),
    /// chdir/fchdir: the thread's working directory (and its siblings') may change.
    Chdir,
    /// connect: the process talks to something outside the traced tree (a daemon, the
    /// network), whose answers tracing cannot see.
    Connect,
}

const fn at(dirfd: usize, path: usize) -> Arg {
    Arg::At { dirfd, path }
}

const fn e(arg: Arg, op: Op) -> Effect {
    Effect { arg, op }
}

macro_rules! table {
    ($($nr:expr => $decode:expr,)*) => {
        /// The traced calls and how each decodes.
        pub const TABLE: &[(i64, Decode)] = &[$(($nr, $decode),)*];
    };
}

use Decode::*;
use Op::*;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
table! {
    libc::SYS_openat => Open { arg: at(0, 1), flags: Some(2) },
    libc::SYS_openat2 => OpenHow { arg: at(0, 1) },
    libc::SYS_execve => Fixed(&[e(Arg::Path(0), Exec)]),
    libc::SYS_execveat => Fixed(&[e(at(0, 1), Exec)]),
    libc::SYS_newfstatat => Fixed(&[e(at(0, 1), Probe)]),
    libc::SYS_statx => Fixed(&[e(at(0, 1), Probe)]),
    libc::SYS_faccessat => Fixed(&[e(at(0, 1), Probe)]),
    libc::SYS_faccessat2 => Fixed(&[e(at(0, 1), Probe)]),
    libc::SYS_readlinkat => Fixed(&[e(at(0, 1), Probe)]),
    libc::SYS_getdents64 => Fixed(&[e(Arg::Fd(0), List)]),
    // A rename moves content: the source's is read (and is gone after), the target written.
    libc::SYS_renameat => Fixed(&[e(at(0, 1), Read), e(at(0, 1), Remove), e(at(2, 3), Write)]),
    libc::SYS_renameat2 => Fixed(&[e(at(0, 1), Read), e(at(0, 1), Remove), e(at(2, 3), Write)]),
    libc::SYS_unlinkat => Fixed(&[e(at(0, 1), Remove)]),
    libc::SYS_mkdirat => Fixed(&[e(at(0, 1), Create)]),
    libc::SYS_linkat => Fixed(&[e(at(0, 1), Read), e(at(2, 3), Create)]),
    libc::SYS_symlinkat => Fixed(&[e(at(1, 2), Create)]),
    libc::SYS_truncate => Fixed(&[e(Arg::Path(0), Write)]),
    libc::SYS_mknodat => Fixed(&[e(at(0, 1), Create)]),
    libc::SYS_fchmodat => Fixed(&[e(at(0, 1), Write)]),
    libc::SYS_fchownat => Fixed(&[e(at(0, 1), Write)]),
    libc::SYS_utimensat => Fixed(&[e(at(0, 1), Write)]),
    libc::SYS_setxattr => Fixed(&[e(Arg::Path(0), Write)]),
    libc::SYS_lsetxattr => Fixed(&[e(Arg::Path(0), Write)]),
    libc::SYS_removexattr => Fixed(&[e(Arg::Path(0), Write)]),
    libc::SYS_lremovexattr => Fixed(&[e(Arg::Path(0), Write)]),
    libc::SYS_connect => Connect,
    libc::SYS_chdir => Chdir,
    libc::SYS_fchdir => Chdir,
    libc::SYS_io_uring_setup => Untraceable("io_uring"),
    libc::SYS_open_by_handle_at => Untraceable("open_by_handle_at"),
    // A process of the command tracing another (a debugger, a sanitizer's leak check) cannot
    // while the tracer holds it: the call fails, unlike without tracing.
    libc::SYS_ptrace => Untraceable("ptrace (a debugger or sanitizer in the command)"),
}

/// The legacy path calls x86_64 still has (aarch64 has only the `*at` forms above).
#[cfg(target_arch = "x86_64")]
pub const LEGACY: &[(i64, Decode)] = &[
    (
        libc::SYS_open,
        Open {
            arg: Arg::Path(0),
            flags: Some(1),
        },
    ),
    (
        libc::SYS_creat,
        Open {
            arg: Arg::Path(0),
            flags: None,
        },
    ),
    (libc::SYS_stat, Fixed(&[e(Arg::Path(0), Probe)])),
    (libc::SYS_lstat, Fixed(&[e(Arg::Path(0), Probe)])),
    (libc::SYS_access, Fixed(&[e(Arg::Path(0), Probe)])),
    (libc::SYS_readlink, Fixed(&[e(Arg::Path(0), Probe)])),
    (libc::SYS_getdents, Fixed(&[e(Arg::Fd(0), List)])),
    (
        libc::SYS_rename,
        Fixed(&[
            e(Arg::Path(0), Read),
            e(Arg::Path(0), Remove),
            e(Arg::Path(1), Write),
        ]),
    ),
    (libc::SYS_unlink, Fixed(&[e(Arg::Path(0), Remove)])),
    (libc::SYS_rmdir, Fixed(&[e(Arg::Path(0), Remove)])),
    (libc::SYS_mkdir, Fixed(&[e(Arg::Path(0), Create)])),
    (
        libc::SYS_link,
        Fixed(&[e(Arg::Path(0), Read), e(Arg::Path(1), Create)]),
    ),
    (libc::SYS_symlink, Fixed(&[e(Arg::Path(1), Create)])),
    (libc::SYS_mknod, Fixed(&[e(Arg::Path(0), Create)])),
    (libc::SYS_chmod, Fixed(&[e(Arg::Path(0), Write)])),
    (libc::SYS_chown, Fixed(&[e(Arg::Path(0), Write)])),
    (libc::SYS_lchown, Fixed(&[e(Arg::Path(0), Write)])),
    (libc::SYS_uselib, Fixed(&[e(Arg::Path(0), Read)])),
];
#[cfg(target_arch = "aarch64")]
pub const LEGACY: &[(i64, Decode)] = &[];

/// How call `nr` decodes, if it is traced.
pub fn decode(nr: i64) -> Option<Decode> {
    TABLE
        .iter()
        .chain(LEGACY)
        .find(|(n, _)| *n == nr)
        .map(|(_, d)| *d)
}

/// Every traced call number, for the filter.
pub fn traced() -> Vec<i64> {
    TABLE.iter().chain(LEGACY).map(|(n, _)| *n).collect()
}

/// What opening with `flags` does: `O_PATH` or a directory only probes; `O_CREAT|O_EXCL`
/// creates; `O_TRUNC` writes from nothing; any other write keeps what is there (appending,
/// overwriting in place), so the old content is read first; otherwise it reads.
pub fn open_ops(flags: u64) -> &'static [Op] {
    let flags = flags as i32;
    if flags & libc::O_PATH != 0 || flags & libc::O_DIRECTORY != 0 {
        return &[Probe];
    }
    if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
        return &[Create];
    }
    let writing = flags & libc::O_ACCMODE != libc::O_RDONLY;
    if flags & libc::O_TRUNC != 0 && (writing || flags & libc::O_CREAT != 0) {
        return &[Write];
    }
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        return &[Modify];
    }
    if writing || flags & libc::O_CREAT != 0 {
        return &[Read, Write];
    }
    &[Read]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_is_listed_once() {
        let mut all = traced();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn open_flags() {
        assert_eq!(open_ops(libc::O_RDONLY as u64), [Read]);
        assert_eq!(open_ops((libc::O_RDONLY | libc::O_CLOEXEC) as u64), [Read]);
        assert_eq!(open_ops((libc::O_WRONLY | libc::O_CREAT) as u64), [Modify]);
        assert_eq!(
            open_ops((libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND) as u64),
            [Modify]
        );
        assert_eq!(
            open_ops((libc::O_RDWR | libc::O_CREAT | libc::O_APPEND) as u64),
            [Read, Write]
        );
        assert_eq!(
            open_ops((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64),
            [Write]
        );
        assert_eq!(
            open_ops((libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) as u64),
            [Create]
        );
        assert_eq!(open_ops(libc::O_RDWR as u64), [Read, Write]);
        assert_eq!(open_ops((libc::O_RDWR | libc::O_TRUNC) as u64), [Write]);
        assert_eq!(
            open_ops((libc::O_RDONLY | libc::O_DIRECTORY) as u64),
            [Probe]
        );
        assert_eq!(open_ops(libc::O_PATH as u64), [Probe]);
    }
}
