//! Tracing what a command reads and writes (Linux): the command runs under a tracer process
//! that stops each of its processes and threads at the file-system system calls only (ptrace
//! with a seccomp-BPF filter, as `strace --seccomp-bpf`), records the paths they name, and
//! reports them when the command's own process ends.
//!
//! - [`filter`]: the seccomp program (which calls stop);
//! - [`syscalls`]: what each traced call means for the paths it names;
//! - [`regs`]: reading a stopped tracee's call and its strings;
//! - [`observe`]: what was done to each path ([`Observed`]) and the [`Report`];
//! - [`tracer`]: the tracer process, `cachectl __trace --report-fd N -- COMMAND...`.
//!
//! Only the entry of a call is seen (one stop per call): what a path was when the command used
//! it is looked at once the command has ended, and a path the run changed is its output, not
//! its input. Reads and writes through descriptors are not traced: opening is what counts.

mod filter;
pub mod nested;
mod observe;
mod regs;
mod syscalls;
mod tracer;

pub use observe::{Access, Observed, Report};
use std::os::fd::FromRawFd;

/// The hidden first argument that makes `cachectl` the tracer process.
pub const TRACER_ARG: &str = "__trace";

/// Whether this platform has a tracer at all.
pub const SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// The tracer process's `main`: `args` are what follows [`TRACER_ARG`]:
/// `--report-fd N -- COMMAND...`. Returns its exit code.
pub fn tracer_main(args: &[std::ffi::OsString]) -> i32 {
    let parsed = match args {
        [flag, fd, sep, command @ ..]
            if flag == "--report-fd" && sep == "--" && !command.is_empty() =>
        {
            fd.to_str()
                .and_then(|f| f.parse::<i32>().ok())
                .map(|fd| (fd, command))
        }
        _ => None,
    };
    // The report descriptor must be open: taking ownership of a closed number would let the
    // next pipe reuse it under two owners.
    // SAFETY: F_GETFD only queries the descriptor table.
    let open = |fd: i32| fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    let Some((fd, command)) = parsed.filter(|(fd, _)| open(*fd)) else {
        eprintln!("cachectl: {TRACER_ARG} is internal: cachectl run starts it");
        return 2;
    };
    // SAFETY: an open descriptor, given to this process to own (and to no one else in it).
    let report = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    tracer::run(command, report)
}

/// The arguments (after the program) that start the tracer on `command`, reporting to `fd`.
pub fn tracer_args(fd: i32, command: &[std::ffi::OsString]) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec![
        TRACER_ARG.into(),
        "--report-fd".into(),
        fd.to_string().into(),
        "--".into(),
    ];
    a.extend(command.iter().cloned());
    a
}
