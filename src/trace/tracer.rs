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
use super::nested::{self, Sinks};
use super::observe::{Observed, Report};
use super::regs;
use super::syscalls::{self, Arg, Decode, Op};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

/// Everything the command's side of the fork needs, made before the fork: after it only
/// async-signal-safe calls run, nothing allocates.
struct Launch {
    /// The candidates for the program, in order: the path itself if it has a `/`, else each
    /// `PATH` directory joined with it (as std's `Command` searches, without glibc's `sh`
    /// fallback for a file that is not executable code).
    candidates: Vec<CString>,
    /// The arguments, and pointers to them ending in NULL (the heap buffers of the strings
    /// do not move with the vector).
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    filter: Vec<libc::sock_filter>,
}

impl Launch {
    fn new(argv: &[OsString]) -> Option<Launch> {
        let args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .ok()?;
        let program = argv.first()?.as_bytes();
        let candidates = if program.contains(&b'/') {
            vec![args[0].clone()]
        } else {
            let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
            std::env::split_paths(&path)
                .filter_map(|dir| {
                    let dir = if dir.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        dir
                    };
                    CString::new(dir.join(OsStr::from_bytes(program)).as_os_str().as_bytes()).ok()
                })
                .collect()
        };
        let mut argv_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        Some(Launch {
            candidates,
            _argv: args,
            argv_ptrs,
            filter: filter::program(&syscalls::traced()),
        })
    }
}

/// The command's side of the fork: wait for the tracer, restore what a new program expects,
/// install the filter, execute.
fn child(sync: RawFd, err: RawFd, launch: &Launch, envp: *const *const libc::c_char) -> ! {
    // SAFETY: only async-signal-safe calls on descriptors and memory this process holds; every
    // pointer is to data made before the fork, which outlives the calls.
    unsafe {
        // The default dispositions and an empty mask, as std's `Command` gives a child (the
        // tracer ignores SIGPIPE like every Rust program, and job-control stops; it forwards
        // SIGINT and the like).
        for sig in [
            libc::SIGPIPE,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let mut go = [0u8; 1];
        while libc::read(sync, go.as_mut_ptr().cast(), 1) < 0 && errno() == libc::EINTR {}
        libc::close(sync);
        if go[0] == GO_TRACED && filter::install(&launch.filter).is_err() {
            let mut msg = [FILTER_FAILED, 0, 0, 0, 0];
            msg[1..].copy_from_slice(&errno().to_ne_bytes());
            libc::write(err, msg.as_ptr().cast(), msg.len());
        }
        // Try each candidate as std does: go on past ENOENT, ENOTDIR and EACCES; report EACCES
        // if one was seen, else the last error.
        let mut error = libc::ENOENT;
        let mut denied = false;
        for c in &launch.candidates {
            libc::execve(c.as_ptr(), launch.argv_ptrs.as_ptr(), envp);
            error = errno();
            match error {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR => {}
                _ => break,
            }
        }
        if denied && matches!(error, libc::ENOENT | libc::ENOTDIR) {
            error = libc::EACCES;
        }
        let mut msg = [EXEC_FAILED, 0, 0, 0, 0];
        msg[1..].copy_from_slice(&error.to_ne_bytes());
        libc::write(err, msg.as_ptr().cast(), msg.len());
        libc::_exit(if error == libc::ENOENT { 127 } else { 126 });
    }
}

/// A null `addr` or `data` argument of `ptrace`, pointer-sized as the variadic call reads it.
fn none() -> *mut libc::c_void {
    std::ptr::null_mut()
}

/// Run `argv` traced and write the [`Report`] (JSON) to `report` when its process has ended;
/// then serve the processes it left until they end. Returns the tracer's exit code.
pub fn run(argv: &[OsString], report: OwnedFd) -> i32 {
    crate::signals::install_forwarding();
    // Job control stops the command's processes, not the tracer: a tracer stopped with them
    // could not deliver the SIGCONT handling they need (a command with a SIGTSTP handler would
    // hang). The child restores the defaults.
    // SAFETY: signal() with SIG_IGN; fcntl on the report descriptor this process owns.
    unsafe {
        for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // The command must not inherit the report pipe: `cachectl run` reads it to its end.
        libc::fcntl(report.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let Some(launch) = Launch::new(argv) else {
        return fail(report, libc::EINVAL);
    };
    let (Ok((sync_r, sync_w)), Ok((err_r, err_w))) = (pipe(), pipe()) else {
        return fail(report, errno());
    };
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: reading the process's environment pointer, which nothing changes meanwhile (the
    // tracer is single-threaded).
    let envp = unsafe { environ };
    // SAFETY: the tracer is single-threaded (a fresh process running only this); the child
    // runs `child`, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(report, errno());
    }
    if pid == 0 {
        child(sync_r.as_raw_fd(), err_w.as_raw_fd(), &launch, envp);
    }
    drop(sync_r);
    drop(err_w);
    let mut sinks = Sinks::default();
    // SAFETY: PTRACE_SEIZE on our own child, with the options in `data`.
    let seized = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            none(),
            OPTIONS as usize as *mut libc::c_void,
        )
    } == 0;
    if !seized {
        sinks.root.not_traced = Some(format!("ptrace: {}", io::Error::last_os_error()));
    }
    crate::signals::register_child(pid as u32);
    let go = if seized { GO_TRACED } else { GO_UNTRACED };
    let _ = std::fs::File::from(sync_w).write_all(&[go]);
    // The command holds its stdio now: let go of ours, so that `cachectl run` sees the end of
    // the output when the command's processes are done with it.
    detach_stdio();

    let mut status_of_command = None;
    let mut report = Some(report);
    let mut resolver = Resolver::default();
    loop {
        let mut status = 0;
        let tid = wait_any(&mut status);
        if tid < 0 {
            match errno() {
                libc::EINTR => continue,
                // No tracee left (new processes are tracees from their fork on, so one that
                // has not reported yet still counts).
                _ => break,
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            resolver.cwd.remove(&tid);
            sinks.ended(tid, status);
            if tid == pid {
                status_of_command = Some(status);
                crate::signals::forget_child();
                if let Some(fd) = report.take() {
                    sinks.root.outlived = any_tracee_left();
                    send(fd, status, &err_r, std::mem::take(&mut sinks.root));
                }
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xffff;
        let recording = report.is_some();
        if recording {
            sinks.seen(tid);
        }
        // SAFETY (all ptrace calls below): requests on a tracee that is in a ptrace-stop, as
        // waitpid just reported; a tracee that died since makes them fail with ESRCH, ignored.
        unsafe {
            match event {
                libc::PTRACE_EVENT_SECCOMP => {
                    if recording {
                        on_syscall(tid, &mut sinks, &mut resolver);
                    }
                    libc::ptrace(libc::PTRACE_CONT, tid, none(), none());
                }
                libc::PTRACE_EVENT_STOP => {
                    if matches!(
                        sig,
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                    ) {
                        // A group-stop: stay stopped (job control) until SIGCONT.
                        libc::ptrace(libc::PTRACE_LISTEN, tid, none(), none());
                    } else {
                        libc::ptrace(libc::PTRACE_CONT, tid, none(), none());
                    }
                }
                0 => {
                    // A signal on its way to the tracee: deliver it.
                    libc::ptrace(
                        libc::PTRACE_CONT,
                        tid,
                        none(),
                        sig as usize as *mut libc::c_void,
                    );
                }
                _ => {
                    // fork, vfork, clone, exec: the new process or thread is a tracee already
                    // and reports itself.
                    libc::ptrace(libc::PTRACE_CONT, tid, none(), none());
                }
            }
        }
    }
    if let Some(fd) = report.take() {
        // Every tracee gone without the command's own exit seen: cannot happen, but never
        // leave `cachectl run` without an answer.
        send(fd, status_of_command.unwrap_or(1 << 8), &err_r, sinks.root);
    }
    0
}

/// How long the tracer polls for the next stop before it sleeps in `waitpid`. Stops come in
/// bursts (a compiler opening its headers), and a tracer that sleeps between them must be
/// woken for each one, which on a VM costs more than the stop itself.
const SPIN: std::time::Duration = std::time::Duration::from_micros(SPIN_MICROS);
const SPIN_MICROS: u64 = 50;

/// The next state change of any tracee: polled for [`SPIN`], then waited for.
fn wait_any(status: &mut i32) -> i32 {
    let start = std::time::Instant::now();
    loop {
        // SAFETY: waitpid with a valid status pointer.
        let tid = unsafe { libc::waitpid(-1, status, libc::__WALL | libc::WNOHANG) };
        if tid != 0 {
            return tid;
        }
        if start.elapsed() >= SPIN {
            // SAFETY: as above.
            return unsafe { libc::waitpid(-1, status, libc::__WALL) };
        }
        std::hint::spin_loop();
    }
}

/// Whether a tracee is left (a process the command started that has not ended).
fn any_tracee_left() -> bool {
    // SAFETY: waitid with WNOHANG | WNOWAIT only asks whether any child or tracee exists
    // (ECHILD if none) and leaves any state it sees for the loop to collect.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            std::ptr::null_mut(),
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
        )
    };
    r == 0
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
fn send(fd: OwnedFd, status: i32, err_r: &OwnedFd, mut observed: Observed) {
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
                observed.not_traced = Some(format!("seccomp: {}", io::Error::from_raw_os_error(e)));
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
    let mut f = std::fs::File::from(fd);
    if let Ok(json) = serde_json::to_vec(&report) {
        let _ = f.write_all(&json);
    }
}

/// Report a tracer that could not start the command at all.
fn fail(report: OwnedFd, errno: i32) -> i32 {
    let mut f = std::fs::File::from(report);
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

/// What the tracer remembers to resolve paths without asking the kernel at every stop: each
/// thread's working directory and each directory's physical path. Forgotten when the run
/// could have changed them (a chdir; a rename, removal or new symlink anywhere), so a stale
/// answer is never used.
#[derive(Default)]
struct Resolver {
    cwd: HashMap<i32, PathBuf>,
    dirs: HashMap<PathBuf, PathBuf>,
}

impl Resolver {
    fn cwd(&mut self, tid: i32) -> Option<PathBuf> {
        if let Some(c) = self.cwd.get(&tid) {
            return Some(c.clone());
        }
        let c = std::fs::read_link(format!("/proc/{tid}/cwd")).ok()?;
        self.cwd.insert(tid, c.clone());
        Some(c)
    }

    /// `dir`, resolved through symlinks, if it exists.
    fn physical_dir(&mut self, dir: &Path) -> Option<PathBuf> {
        if let Some(p) = self.dirs.get(dir) {
            return Some(p.clone());
        }
        let p = std::fs::canonicalize(dir).ok()?;
        self.dirs.insert(dir.to_path_buf(), p.clone());
        Some(p)
    }

    /// The run did something that can change what paths resolve to.
    fn forget_dirs(&mut self) {
        self.dirs.clear();
    }

    /// Some thread changed directory (threads may share it): ask again.
    fn forget_cwds(&mut self) {
        self.cwd.clear();
    }
}

/// A seccomp stop of `tid`: decode the call and record what it names.
fn on_syscall(tid: i32, sinks: &mut Sinks, resolver: &mut Resolver) {
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
        sinks.untraceable(tid, "a system call of another ABI (32-bit or x32)");
        return;
    }
    let Ok(call) = regs::read(tid) else {
        sinks.untraceable(tid, "the registers of a system call");
        return;
    };
    let Some(decode) = syscalls::decode(call.nr) else {
        return;
    };
    match decode {
        Decode::Untraceable(what) => sinks.untraceable(tid, what),
        Decode::Chdir => resolver.forget_cwds(),
        Decode::Connect => {
            if let Some(peer) = peer_of(tid, call.args[1], call.args[2]) {
                sinks.peer(tid, peer);
            }
        }
        Decode::Fixed(effects) => {
            for e in effects {
                record(tid, &call.args, e.arg, e.op, sinks, resolver);
            }
        }
        Decode::Open { arg, flags } => {
            let flags = match flags {
                Some(i) => call.args[i],
                None => (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64,
            };
            for op in syscalls::open_ops(flags) {
                record(tid, &call.args, arg, *op, sinks, resolver);
            }
        }
        Decode::OpenHow { arg } => {
            let mut how = [0u8; 8];
            if regs::read_memory(tid, call.args[2], &mut how).is_ok() {
                for op in syscalls::open_ops(u64::from_ne_bytes(how)) {
                    record(tid, &call.args, arg, *op, sinks, resolver);
                }
            }
        }
    }
}

/// What a `connect` of `tid` to the address at `addr` (`len` bytes) reaches: `unix:PATH` (or
/// `unix:@NAME`, abstract), `network` for IP; `None` for what is no peer (netlink, the
/// kernel's own) or cannot be read.
fn peer_of(tid: i32, addr: u64, len: u64) -> Option<String> {
    let mut buf = [0u8; 110];
    let len = (len as usize).min(buf.len());
    if len < 2 {
        return None;
    }
    regs::read_memory(tid, addr, &mut buf[..len]).ok()?;
    let family = i32::from(u16::from_ne_bytes([buf[0], buf[1]]));
    match family {
        libc::AF_UNIX => {
            let path = &buf[2..len];
            if path.first() == Some(&0) {
                let name = &path[1..];
                return Some(format!("unix:@{}", String::from_utf8_lossy(name)));
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            Some(format!("unix:{}", String::from_utf8_lossy(&path[..end])))
        }
        libc::AF_INET | libc::AF_INET6 => Some("network".to_owned()),
        _ => None,
    }
}

/// Record `op` on the path argument `arg` of a call of `tid`.
fn record(tid: i32, args: &[u64; 6], arg: Arg, op: Op, sinks: &mut Sinks, resolver: &mut Resolver) {
    if matches!(op, Op::Remove | Op::Create) {
        // A rename, a removal or a new symlink may change what a directory path resolves to.
        resolver.forget_dirs();
    }
    // A path that cannot be read (NULL, a bad pointer, longer than PATH_MAX) makes the call
    // fail (EFAULT, ENAMETOOLONG): it names nothing.
    let path = match arg {
        Arg::Path(i) => match regs::read_path(tid, args[i]) {
            Some(p) => resolve(tid, libc::AT_FDCWD, p, resolver),
            None => return,
        },
        Arg::At { dirfd, path } => match regs::read_path(tid, args[path]) {
            // A nested cachectl hands its command's subtree over (see `nested`).
            Some(p) if op == Op::Read && p.starts_with(nested::HANDOFF_PREFIX) => {
                if let Some(fd) = nested::handoff_fd(&p) {
                    sinks.hand_off(tid, fd);
                }
                return;
            }
            // AT_EMPTY_PATH: the call is about the descriptor itself. fexecve executes it;
            // anything else (fstat) looks at a file recorded when it was opened (or at no file).
            Some(p) if p.as_os_str().is_empty() && op == Op::Exec => {
                fd_path(tid, args[dirfd] as i32)
            }
            Some(p) if p.as_os_str().is_empty() => return,
            Some(p) => resolve(tid, args[dirfd] as i32, p, resolver),
            None => return,
        },
        Arg::Fd(i) => fd_path(tid, args[i] as i32),
    };
    let Some(path) = path else {
        sinks.untraceable(tid, "a path relative to a descriptor that names no file");
        return;
    };
    let op = match op {
        // Where something already is, creating only looks (the call fails, or `mkdir -p` goes on).
        Op::Create if std::fs::symlink_metadata(&path).is_ok() => Op::Probe,
        Op::Create => Op::Write,
        other => other,
    };
    if op == Op::Exec {
        // The kernel reads the interpreter a `#!` line or an ELF file names without a call
        // of the process's own.
        if let Some(interpreter) = interpreter_of(&path) {
            sinks.record(tid, interpreter, Op::Read, digest);
        }
    }
    sinks.record(tid, path, op, digest);
}

/// The interpreter of an executable: the program of its `#!` line, or the dynamic loader of
/// an ELF file (`PT_INTERP`).
fn interpreter_of(path: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let head = &head[..n];
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?.trim_start();
        let program = text.split([' ', '\t']).next()?;
        return (!program.is_empty()).then(|| PathBuf::from(program));
    }
    elf_interpreter(head, path)
}

/// `PT_INTERP` of a 64- or 32-bit little-endian ELF file whose first bytes are `head`.
fn elf_interpreter(head: &[u8], path: &Path) -> Option<PathBuf> {
    if head.len() < 52 || &head[..4] != b"\x7fELF" || head[5] != 1 {
        return None;
    }
    let wide = head[4] == 2;
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u64::from(u32_at(0x1c)?), u16_at(0x2a)?, u16_at(0x2c)?)
    };
    for i in 0..u64::from(phnum) {
        let at = (phoff + i * u64::from(phentsize)) as usize;
        if u32_at(at)? != 3 {
            continue; // not PT_INTERP
        }
        let (offset, size) = if wide {
            (u64_at(at + 8)?, u64_at(at + 32)?)
        } else {
            (u64::from(u32_at(at + 4)?), u64::from(u32_at(at + 16)?))
        };
        let mut buf = vec![0u8; size.min(4096) as usize];
        use std::os::unix::fs::FileExt;
        std::fs::File::open(path)
            .ok()?
            .read_exact_at(&mut buf, offset)
            .ok()?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return Some(PathBuf::from(OsStr::from_bytes(&buf[..end])));
    }
    None
}

/// `path` as `tid` named it, absolute and physical: made absolute against its working
/// directory or `dirfd`, `/proc/self` read as `tid`'s own, and its directory resolved through
/// symlinks (the last component is kept: a symlink itself may be what the call is about).
fn resolve(tid: i32, dirfd: i32, path: PathBuf, resolver: &mut Resolver) -> Option<PathBuf> {
    let absolute = if path.is_absolute() {
        path
    } else {
        let base = if dirfd == libc::AT_FDCWD {
            resolver.cwd(tid)?
        } else {
            fd_path(tid, dirfd)?
        };
        base.join(path)
    };
    let own = PathBuf::from(format!("/proc/{tid}"));
    let absolute = ["/proc/self", "/proc/thread-self"]
        .iter()
        .find_map(|p| absolute.strip_prefix(p).ok().map(|rest| own.join(rest)))
        .unwrap_or(absolute);
    Some(physical(&absolute, resolver))
}

/// `path` with its directory resolved (canonicalized) when that exists; a last component of
/// `..` or `.` resolves the whole path. Under /proc the links are the tracee's and change with
/// it: never remembered.
fn physical(path: &Path, resolver: &mut Resolver) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.starts_with("/proc") => {
            match resolver.physical_dir(parent) {
                Some(dir) => dir.join(name),
                None => path.to_path_buf(),
            }
        }
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(dir) => dir.join(name),
            Err(_) => path.to_path_buf(),
        },
        _ => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
    }
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
