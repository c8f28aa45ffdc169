//! The tracer process (`cachectl __trace`): starts the command under ptrace with the seccomp
//! filter, follows every process and thread it starts, records the paths their file-system
//! calls name, and reports when the command's own process has ended.
//!
//! A process of its own, not a thread of `cachectl run`: a process of the command may outlive
//! the command (a daemon it started). The filter cannot be taken off it, and without a tracer
//! its file-system calls would fail (`ENOSYS`), so the tracer stays and lets them through until
//! the last one has ended, while `cachectl run` has long returned. The command's own stdio goes
//! straight to it; the tracer closes its copies, so that `cachectl run` sees the end of the
//! output when the command's processes are done with it.
//!
//! The command is started seized (`PTRACE_SEIZE`), not with `PTRACE_TRACEME`: group-stops
//! (Ctrl-Z) then stay group-stops (`PTRACE_LISTEN`) and job control works as without tracing.
//! `PTRACE_O_EXITKILL`: if the tracer is killed, the traced processes are killed too, rather than
//! left running with calls that fail.

use super::filter;
use super::observe::{Observed, Report};
use super::regs;
use super::syscalls::{self, Arg, Decode, Op};
use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OPTIONS: libc::c_int = libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_EXITKILL;

/// Bytes the tracer sends the command's process once it is attached (or could not attach).
const GO_TRACED: u8 = b'T';
const GO_UNTRACED: u8 = b'U';
/// Tags on the error pipe: the filter could not be installed, or exec failed (then an errno).
const FILTER_FAILED: u8 = b'F';
const EXEC_FAILED: u8 = b'E';

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are open descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The command's side of the fork: wait for the tracer, install the filter, execute. Only
/// async-signal-safe calls (the tracer process is single-threaded, but be strict anyway), and
/// everything it needs prepared before the fork.
fn child(sync: RawFd, err: RawFd, argv: &[*const libc::c_char], traced: &[i64]) -> ! {
    let mut go = [0u8; 1];
    // SAFETY: plain reads and writes on descriptors this process holds; `argv` is a
    // NULL-terminated array of NUL-terminated strings that outlive the call.
    unsafe {
        while libc::read(sync, go.as_mut_ptr().cast(), 1) < 0 && errno() == libc::EINTR {}
        libc::close(sync);
        if go[0] == GO_TRACED && filter::install(traced).is_err() {
            let msg = [FILTER_FAILED, 0, 0, 0, 0];
            let mut msg = msg;
            msg[1..].copy_from_slice(&errno().to_ne_bytes());
            libc::write(err, msg.as_ptr().cast(), msg.len());
        }
        libc::execvp(argv[0], argv.as_ptr());
        let e = errno();
        let mut msg = [EXEC_FAILED, 0, 0, 0, 0];
        msg[1..].copy_from_slice(&e.to_ne_bytes());
        libc::write(err, msg.as_ptr().cast(), msg.len());
        libc::_exit(if e == libc::ENOENT { 127 } else { 126 });
    }
}

/// Run `argv` traced and write the [`Report`] (JSON) to `report` when its process has ended;
/// then serve the processes it left until they end. Returns the tracer's exit code.
pub fn run(argv: &[OsString], report: RawFd) -> i32 {
    crate::signals::install_forwarding();
    // The command must not inherit the report pipe: `cachectl run` reads it to its end.
    // SAFETY: fcntl on a descriptor this process was given.
    unsafe {
        libc::fcntl(report, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let traced = syscalls::traced();
    let args: Vec<CString> = match argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
    {
        Ok(a) => a,
        Err(_) => return fail(report, libc::EINVAL),
    };
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let (Ok((sync_r, sync_w)), Ok((err_r, err_w))) = (pipe(), pipe()) else {
        return fail(report, errno());
    };
    use std::os::fd::AsRawFd;
    // SAFETY: the tracer is single-threaded (a fresh process running only this); the child
    // runs `child`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(report, errno());
    }
    if pid == 0 {
        child(sync_r.as_raw_fd(), err_w.as_raw_fd(), &ptrs, &traced);
    }
    drop(sync_r);
    drop(err_w);
    let mut observed = Observed::default();
    // SAFETY: PTRACE_SEIZE on our own child, with an options word.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, OPTIONS as libc::c_long) } == 0;
    if !seized {
        observed
            .untraceable
            .insert(format!("ptrace: {}", io::Error::last_os_error()));
    }
    crate::signals::register_child(pid as u32);
    let go = if seized { GO_TRACED } else { GO_UNTRACED };
    let _ = std::fs::File::from(sync_w).write_all(&[go]);
    // The command holds its stdio now: let go of ours, so that `cachectl run` sees the end of
    // the output when the command's processes are done with it.
    detach_stdio();

    let mut tracees: HashSet<i32> = HashSet::from([pid]);
    let mut status_of_command = None;
    let mut report_fd = Some(report);
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if tid < 0 {
            match errno() {
                libc::EINTR => continue,
                _ => break,
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            tracees.remove(&tid);
            if tid == pid {
                status_of_command = Some(status);
                observed.outlived = !tracees.is_empty();
                if let Some(fd) = report_fd.take() {
                    send(fd, status, &err_r, std::mem::take(&mut observed));
                }
            }
            if tracees.is_empty() && status_of_command.is_some() {
                break;
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        tracees.insert(tid);
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xffff;
        let recording = report_fd.is_some();
        // SAFETY (all ptrace calls below): requests on a tracee that is in a ptrace-stop, as
        // waitpid just reported; a tracee that died since makes them fail with ESRCH, ignored.
        unsafe {
            match event {
                libc::PTRACE_EVENT_SECCOMP => {
                    if recording {
                        on_syscall(tid, &mut observed);
                    }
                    libc::ptrace(libc::PTRACE_CONT, tid, 0, 0);
                }
                libc::PTRACE_EVENT_STOP => {
                    if matches!(
                        sig,
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                    ) {
                        // A group-stop: stay stopped (job control) until SIGCONT.
                        libc::ptrace(libc::PTRACE_LISTEN, tid, 0, 0);
                    } else {
                        libc::ptrace(libc::PTRACE_CONT, tid, 0, 0);
                    }
                }
                0 => {
                    // A signal on its way to the tracee: deliver it.
                    libc::ptrace(libc::PTRACE_CONT, tid, 0, sig as libc::c_long);
                }
                _ => {
                    // fork, vfork, clone, exec: the new process or thread reports itself.
                    libc::ptrace(libc::PTRACE_CONT, tid, 0, 0);
                }
            }
        }
    }
    if let Some(fd) = report_fd.take() {
        // Every tracee gone without the command's own exit seen: cannot happen, but never
        // leave `cachectl run` without an answer.
        send(fd, status_of_command.unwrap_or(1 << 8), &err_r, observed);
    }
    0
}

/// Replace the tracer's stdin, stdout and stderr with /dev/null.
fn detach_stdio() {
    // SAFETY: open and dup2 on descriptors 0-2, which this process owns.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// Write the report for the command's exit `status` and close the pipe.
fn send(fd: RawFd, status: i32, err_r: &OwnedFd, mut observed: Observed) {
    let mut exec_errno = None;
    let mut bytes = Vec::new();
    use std::os::fd::AsRawFd;
    // SAFETY: dup of a descriptor we own, for a File that then owns the copy.
    let dup = unsafe { libc::dup(err_r.as_raw_fd()) };
    if dup >= 0 {
        // SAFETY: `dup` is a fresh descriptor nobody else owns.
        let mut f = unsafe { std::fs::File::from_raw_fd(dup) };
        let _ = f.read_to_end(&mut bytes);
    }
    for msg in bytes.chunks_exact(5) {
        let e = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
        match msg[0] {
            FILTER_FAILED => {
                observed
                    .untraceable
                    .insert(format!("seccomp: {}", io::Error::from_raw_os_error(e)));
            }
            EXEC_FAILED => exec_errno = Some(e),
            _ => {}
        }
    }
    let report = Report {
        status,
        exec_errno,
        observed,
    };
    // SAFETY: `fd` is the report pipe, ours to write and close.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Ok(json) = serde_json::to_vec(&report) {
        let _ = f.write_all(&json);
    }
}

/// Report a tracer that could not start the command at all.
fn fail(report: RawFd, errno: i32) -> i32 {
    // SAFETY: `report` is the report pipe, ours to write and close.
    let mut f = unsafe { std::fs::File::from_raw_fd(report) };
    let r = Report {
        status: 127 << 8,
        exec_errno: Some(errno),
        observed: Observed::default(),
    };
    if let Ok(json) = serde_json::to_vec(&r) {
        let _ = f.write_all(&json);
    }
    1
}

/// A seccomp stop of `tid`: decode the call and record what it names.
fn on_syscall(tid: i32, observed: &mut Observed) {
    let mut data: libc::c_ulong = 0;
    // SAFETY: PTRACE_GETEVENTMSG writes one c_ulong to `data`.
    unsafe {
        libc::ptrace(
            libc::PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut data as *mut libc::c_ulong,
        );
    }
    if data as u16 == filter::FOREIGN_ABI {
        observed
            .untraceable
            .insert("a system call of another ABI (32-bit or x32)".into());
        return;
    }
    let Ok(call) = regs::read(tid) else {
        observed
            .untraceable
            .insert("the registers of a system call".into());
        return;
    };
    let Some(decode) = syscalls::decode(call.nr) else {
        return;
    };
    match decode {
        Decode::Untraceable(what) => {
            observed.untraceable.insert(what.to_owned());
        }
        Decode::Fixed(effects) => {
            for e in effects {
                record(tid, &call.args, e.arg, e.op, observed);
            }
        }
        Decode::Open { arg, flags } => {
            let flags = match flags {
                Some(i) => call.args[i],
                None => (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64,
            };
            for op in syscalls::open_ops(flags) {
                record(tid, &call.args, arg, *op, observed);
            }
        }
        Decode::OpenHow { arg } => {
            let mut how = [0u8; 8];
            if regs::read_memory(tid, call.args[2], &mut how).is_ok() {
                for op in syscalls::open_ops(u64::from_ne_bytes(how)) {
                    record(tid, &call.args, arg, *op, observed);
                }
            }
        }
    }
}

/// Record `op` on the path argument `arg` of a call of `tid`.
fn record(tid: i32, args: &[u64; 6], arg: Arg, op: Op, observed: &mut Observed) {
    let path = match arg {
        Arg::Path(i) => match regs::read_path(tid, args[i]) {
            Some(p) => resolve(tid, libc::AT_FDCWD, p),
            None => None,
        },
        Arg::At { dirfd, path } => match regs::read_path(tid, args[path]) {
            // AT_EMPTY_PATH: the call is about the descriptor itself. fexecve executes it;
            // anything else (fstat) looks at a file recorded when it was opened (or at no file).
            Some(p) if p.as_os_str().is_empty() && op == Op::Exec => {
                fd_path(tid, args[dirfd] as i32)
            }
            Some(p) if p.as_os_str().is_empty() => return,
            Some(p) => resolve(tid, args[dirfd] as i32, p),
            None => None,
        },
        Arg::Fd(i) => fd_path(tid, args[i] as i32),
    };
    match path {
        Some(path) => observed.record(path, op, digest),
        None => {
            observed
                .untraceable
                .insert("a path relative to a descriptor that names no path".into());
        }
    }
}

/// `path` as `tid` named it, made absolute against its working directory or `dirfd`.
fn resolve(tid: i32, dirfd: i32, path: PathBuf) -> Option<PathBuf> {
    if path.is_absolute() {
        return Some(path);
    }
    let base = if dirfd == libc::AT_FDCWD {
        std::fs::read_link(format!("/proc/{tid}/cwd")).ok()?
    } else {
        fd_path(tid, dirfd)?
    };
    Some(base.join(path))
}

/// The path descriptor `fd` of `tid` names, if it names one (not a pipe or socket).
fn fd_path(tid: i32, fd: i32) -> Option<PathBuf> {
    let p = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
    p.is_absolute().then_some(p)
}

/// The blake3 digest of the regular file at `path` now, if it is one and can be read.
fn digest(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path).ok()?).ok()?;
    Some(hasher.finalize().to_hex().to_string())
}
