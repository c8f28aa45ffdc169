//! Running the wrapped command: spawn, tee + capture, signal forwarding, exit status.
//!
//! On a miss the command's stdout and stderr are pipes that cachectl reads with `poll`, in one
//! thread, writing each chunk straight through to its own stdout/stderr (so the user sees output
//! live) and into a [`Spool`]. The order in which chunks arrived is recorded so a hit reproduces
//! the interleaving of the two streams. Nothing is held in memory beyond the inline limit: larger
//! streams spill to a temp file in the store.
//!
//! Signals ([`crate::signals`]): SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to cachectl by another
//! process are forwarded to the child; the same signals from the terminal already reach the child
//! (same process group) and are not sent twice. Either way the run is marked interrupted and never
//! stored. A child that dies of signal N makes cachectl exit 128+N.

use crate::fsutil::TempFile;
use crate::stdio::FdSink;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Streams up to this size are kept in memory and inlined in the record.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// How the child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
}

/// The exit code of a run whose output could not be written (by cachectl, on the command's
/// behalf): the command's own failure, or 1 where it succeeded, as `tee` and most tools exit
/// when their stdout fails.
pub fn output_failed_code(code: i32) -> i32 {
    if code == 0 { 1 } else { code }
}

impl Outcome {
    /// The exit code cachectl reports: the child's, or 128+N for a death by signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited(c) => c,
            Outcome::Signaled(s) => 128 + s,
        }
    }
}

/// Captured bytes of one stream: in memory while small, spilled to a temp file beyond
/// [`INLINE_LIMIT`]. A spool that failed to write (full disk) keeps counting but is `broken`.
pub struct Spool {
    dir: Option<PathBuf>,
    /// Keep the bytes in memory when the disk refuses them, instead of giving up (stdin: the
    /// command must get all of it, whatever the disk says).
    never_drop: bool,
    /// Bytes known to be in the file (a failed write may leave a partial tail after them).
    on_disk: u64,
    mem: Vec<u8>,
    file: Option<TempFile>,
    pub size: u64,
    pub broken: Option<io::Error>,
}

impl Spool {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Spool {
            dir,
            never_drop: false,
            on_disk: 0,
            mem: Vec::new(),
            file: None,
            size: 0,
            broken: None,
        }
    }

    /// A spool for stdin: in the system temp dir (not the cache, which may be full or read
    /// only), and never losing bytes (see `never_drop`).
    pub fn for_stdin() -> Self {
        Spool {
            never_drop: true,
            ..Spool::new(None)
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if self.broken.is_some() {
            if self.never_drop {
                self.mem.extend_from_slice(data);
            }
            return;
        }
        if self.file.is_none() && self.mem.len() + data.len() <= INLINE_LIMIT {
            self.mem.extend_from_slice(data);
            return;
        }
        if let Err(e) = self.spill_and_write(data) {
            self.broken = Some(e);
            if self.never_drop {
                // Everything after `on_disk` is (or now goes) in memory.
                self.mem.extend_from_slice(data);
            } else {
                self.file = None;
                self.mem = Vec::new();
            }
        }
    }

    fn spill_and_write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
            let mut t = TempFile::new(&dir, "spool")?;
            self.file = None;
            t.file.write_all(&self.mem)?;
            self.on_disk = self.mem.len() as u64;
            self.mem = Vec::new();
            self.file = Some(t);
        }
        self.file.as_mut().expect("spilled").file.write_all(data)?;
        self.on_disk += data.len() as u64;
        Ok(())
    }

    /// The bytes, if they are small enough to inline.
    pub fn inline(&self) -> Option<&[u8]> {
        if self.file.is_none() && self.broken.is_none() {
            Some(&self.mem)
        } else {
            None
        }
    }

    /// A reader over everything captured (for storing as a blob).
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        match &mut self.file {
            Some(t) => {
                t.file.rewind()?;
                Ok(Box::new(&t.file))
            }
            None => Ok(Box::new(&self.mem[..])),
        }
    }

    /// Everything as a file positioned at 0, for feeding a child's stdin. Where the disk
    /// failed (only possible with `never_drop`) or no temp file can be made (TMPDIR missing,
    /// full, read only), the bytes go to an anonymous memory file, or as a last resort to a
    /// pipe fed from memory.
    pub fn into_file(mut self) -> io::Result<File> {
        if self.broken.is_some() {
            return self.into_memory();
        }
        if self.file.is_none() {
            let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
            let made = TempFile::new(&dir, "stdin").and_then(|mut t| {
                t.file.write_all(&self.mem)?;
                Ok(t)
            });
            match made {
                Ok(t) => self.file = Some(t),
                Err(_) => return self.into_memory(),
            }
        }
        let t = self.file.take().expect("file");
        let mut f = t.file.try_clone()?;
        f.rewind()?;
        Ok(f) // `t` drops here and unlinks the path; the open descriptor keeps the data.
    }

    /// All bytes (what reached the file, then what stayed in memory) in a `memfd`: a regular
    /// file in memory, seekable and complete before the command starts, so that a copy handed
    /// to a background refresh outlives this process. A pipe where that is not possible.
    fn into_memory(mut self) -> io::Result<File> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: a NUL-terminated name; the flags are valid.
            let fd = unsafe { libc::memfd_create(c"cachectl-stdin".as_ptr(), libc::MFD_CLOEXEC) };
            if fd >= 0 {
                // SAFETY: memfd_create returned a new descriptor that nothing else owns.
                let mut f = unsafe { File::from_raw_fd(fd) };
                let filled = (|| {
                    if let Some(t) = &mut self.file {
                        t.file.rewind()?;
                        io::copy(&mut (&t.file).take(self.on_disk), &mut f)?;
                    }
                    f.write_all(&self.mem)?;
                    f.rewind()
                })();
                if filled.is_ok() {
                    return Ok(f);
                }
            }
        }
        self.into_pipe()
    }
}

impl Spool {
    /// All bytes (what reached the file, then what stayed in memory) through a pipe that a
    /// thread fills while the child reads it.
    fn into_pipe(mut self) -> io::Result<File> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe(2) returns.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (read, mut write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let head = self.file.take();
        let on_disk = self.on_disk;
        let tail = std::mem::take(&mut self.mem);
        std::thread::spawn(move || {
            if let Some(mut t) = head {
                let _ = t.file.rewind();
                let _ = io::copy(&mut (&mut t.file).take(on_disk), &mut write);
            }
            let _ = write.write_all(&tail);
        });
        Ok(read)
    }
}

/// What a captured run produced.
pub struct Captured {
    pub outcome: Outcome,
    pub duration_ms: u64,
    pub stdout: Spool,
    pub stderr: Spool,
    /// `len << 1 | stream` (0 = stdout, 1 = stderr), consecutive same-stream chunks merged.
    pub chunks: Vec<u64>,
    /// cachectl itself received a terminating signal during the run.
    pub interrupted: bool,
    /// Why the capture is not everything the command would have written, if it is not. Such a
    /// run is never stored: a command that survives a closed pipe (it ignores SIGPIPE, or
    /// handles EPIPE) exits 0 with only part of its output captured.
    pub gap: Option<Gap>,
    /// With tracing asked for: what the tracer saw, or why there is nothing (it could not run,
    /// or ended without a report). `None` when tracing was not asked for.
    pub trace: Option<Result<crate::trace::Observed, String>>,
}

/// How a capture can end before the command's output does.
#[derive(Debug)]
pub enum Gap {
    /// The reader of cachectl's own stdout or stderr went away (`| head`). cachectl closed the
    /// command's pipe so that it sees EPIPE as it would have without cachectl, and from then on
    /// it ran with a closed stream, not as it runs when it is cached.
    ReaderGone,
    /// cachectl's stdout or stderr failed otherwise (a full disk behind `> file`): the rest of
    /// what the command wrote to it was read and dropped.
    WriteFailed(io::Error),
    /// Reading the command's pipe, or waiting for it, failed: the rest of its output is unknown.
    ReadFailed(io::Error),
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gap::ReaderGone => f.write_str("the reader of cachectl's output went away"),
            Gap::WriteFailed(e) => write!(f, "cannot write the command's output: {e}"),
            Gap::ReadFailed(e) => write!(f, "cannot read the command's output: {e}"),
        }
    }
}

/// Why the command could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub program: OsString,
    pub error: io::Error,
}

impl SpawnError {
    /// 127 for "not found" (as a shell), 126 for anything else (not executable, ...).
    pub fn exit_code(&self) -> i32 {
        if self.error.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    }

    pub fn message(&self) -> String {
        let prog = self.program.to_string_lossy();
        if self.error.kind() == io::ErrorKind::NotFound {
            format!("cachectl: command not found: {prog}")
        } else {
            format!("cachectl: cannot run {prog}: {}", self.error)
        }
    }
}

use crate::signals::{forget_child, register_child};
pub use crate::signals::{install_forwarding, interrupted, unhandled_signal};

fn build(argv: &[OsString], cwd: &Path, stdin: Option<File>) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(cwd);
    match stdin {
        Some(f) => cmd.stdin(Stdio::from(f)),
        None => cmd.stdin(Stdio::null()),
    };
    cmd
}

fn wait_status(child: &mut std::process::Child) -> io::Result<Outcome> {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait()?;
    forget_child();
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => Outcome::Exited(c),
        (None, Some(s)) => Outcome::Signaled(s),
        (None, None) => Outcome::Exited(1),
    })
}

/// Run without capturing: the child inherits cachectl's stdout and stderr (a terminal stays a
/// terminal). Used when nothing will be stored.
pub fn run_plain(
    argv: &[OsString],
    cwd: &Path,
    stdin: Option<File>,
) -> Result<Outcome, SpawnError> {
    install_forwarding();
    let mut cmd = build(argv, cwd, stdin);
    let mut child = cmd.spawn().map_err(|error| SpawnError {
        program: argv[0].clone(),
        error,
    })?;
    register_child(child.id());
    wait_status(&mut child).map_err(|error| SpawnError {
        program: argv[0].clone(),
        error,
    })
}

/// Run with stdout and stderr captured into spools (in `spool_dir`) and teed live; with
/// `trace`, under the tracer ([`crate::trace`]), whose observations come back in
/// [`Captured::trace`]. A tracer that cannot be started leaves the command running untraced,
/// with the reason in `trace`.
pub fn run_captured(
    argv: &[OsString],
    cwd: &Path,
    stdin: Option<File>,
    spool_dir: Option<PathBuf>,
    trace: bool,
) -> Result<Captured, SpawnError> {
    install_forwarding();
    let start = Instant::now();
    let err = |error| SpawnError {
        program: argv[0].clone(),
        error,
    };
    // Under a cachectl tracer already (a nested run): that tracer traces the command for us.
    let outer = (trace && crate::trace::SUPPORTED)
        .then(crate::trace::nested::outer_tracer)
        .flatten();
    let nested = outer.is_some();
    let (mut child, report, trace_failed) = if nested {
        let (child, report) = spawn_nested(argv, cwd, stdin).map_err(err)?;
        (child, Some(report), None)
    } else if trace && crate::trace::SUPPORTED {
        match spawn_traced(argv, cwd, stdin.as_ref()) {
            Ok((child, report)) => (child, Some(report), None),
            Err(e) => {
                let mut cmd = build(argv, cwd, stdin);
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                let why = format!("cannot start the tracer: {e}");
                (cmd.spawn().map_err(err)?, None, Some(why))
            }
        }
    } else {
        let mut cmd = build(argv, cwd, stdin);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let why = trace.then(|| "tracing is not available on this platform".to_owned());
        (cmd.spawn().map_err(err)?, None, why)
    };
    register_child(child.id());
    let out_pipe = child.stdout.take().expect("piped");
    let err_pipe = child.stderr.take().expect("piped");
    let mut spools = [Spool::new(spool_dir.clone()), Spool::new(spool_dir)];
    let mut chunks: Vec<u64> = Vec::new();
    let gap = pump(out_pipe, err_pipe, &mut spools, &mut chunks);
    let (outcome, trace) = match report {
        None => (wait_status(&mut child).map_err(err)?, trace_failed.map(Err)),
        // The command is our own child: its status is ours to collect.
        Some(report) if nested => {
            let observed = read_report(report)
                .map(|r| r.observed)
                .ok_or_else(|| "the outer cachectl's tracer sent no report".to_owned());
            (wait_status(&mut child).map_err(err)?, Some(observed))
        }
        Some(report) => match read_report(report) {
            Some(r) => {
                if let Some(e) = r.exec_errno {
                    let _ = child.wait();
                    forget_child();
                    return Err(err(io::Error::from_raw_os_error(e)));
                }
                // The tracer may stay behind, serving processes the command left running: it
                // is not waited for.
                let _ = child.try_wait();
                forget_child();
                (outcome_of(r.status), Some(Ok(r.observed)))
            }
            None => {
                // No report: the tracer died (its tracees with it). Its own end is the answer.
                let outcome = wait_status(&mut child).map_err(err)?;
                let why = "the tracer ended without a report".to_owned();
                (outcome, Some(Err(why)))
            }
        },
    };
    let [stdout, stderr] = spools;
    Ok(Captured {
        outcome,
        duration_ms: start.elapsed().as_millis() as u64,
        stdout,
        stderr,
        chunks,
        interrupted: interrupted(),
        gap,
        trace,
    })
}

/// Start `cachectl __trace` on `argv`: it runs the command with cachectl's stdio pipes and
/// reports on the returned pipe when the command's process ends.
fn spawn_traced(
    argv: &[OsString],
    cwd: &Path,
    stdin: Option<&File>,
) -> io::Result<(std::process::Child, File)> {
    use std::os::unix::process::CommandExt;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are open descriptors owned by nobody else.
    let (report_r, report_w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let write_fd = report_w.as_raw_fd();
    // This very binary, by its name where it still has one (so that `ps` says `cachectl`).
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    let mut cmd = Command::new(exe);
    cmd.arg0("cachectl")
        .args(crate::trace::tracer_args(write_fd, argv))
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match stdin {
        Some(f) => cmd.stdin(Stdio::from(f.try_clone()?)),
        None => cmd.stdin(Stdio::null()),
    };
    // SAFETY: fcntl is async-signal-safe; it only clears close-on-exec on the report pipe's
    // write end in the child, so that the tracer inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(write_fd, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(report_w);
    Ok((child, report_r))
}

/// Start the command for a nested run: as a plain child, whose process hands itself to the
/// tracer that already traces this cachectl (see [`crate::trace::nested`]) just before it
/// executes, naming the pipe its report comes back on.
fn spawn_nested(
    argv: &[OsString],
    cwd: &Path,
    stdin: Option<File>,
) -> io::Result<(std::process::Child, File)> {
    use std::os::unix::process::CommandExt;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are open descriptors owned by nobody else.
    let (report_r, report_w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let handoff = std::ffi::CString::new(format!(
        "{}{}",
        crate::trace::nested::HANDOFF_PREFIX,
        report_w.as_raw_fd()
    ))
    .expect("no NUL in a number");
    let mut cmd = build(argv, cwd, stdin);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: openat is async-signal-safe, on a string made before the fork. It fails (the
    // path is under a file): the tracer acts on the call, not on its result. The write end is
    // still open in the child here (it closes on exec), so the tracer can open it.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::openat(libc::AT_FDCWD, handoff.as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(report_w);
    Ok((child, report_r))
}

/// The tracer's report, once the command's process has ended (`None`: it sent none).
fn read_report(mut pipe: File) -> Option<crate::trace::Report> {
    let mut bytes = Vec::new();
    loop {
        match pipe.read_to_end(&mut bytes) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    serde_json::from_slice(&bytes).ok()
}

/// The outcome of a `waitpid` status.
fn outcome_of(status: i32) -> Outcome {
    if libc::WIFEXITED(status) {
        Outcome::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        Outcome::Exited(1)
    }
}

/// Read both pipes until both close, teeing and spooling each chunk in arrival order. Returns
/// why the capture ended before the command's output did, if it did.
fn pump(
    out_pipe: std::process::ChildStdout,
    err_pipe: std::process::ChildStderr,
    spools: &mut [Spool; 2],
    chunks: &mut Vec<u64>,
) -> Option<Gap> {
    let mut pipes: [Option<File>; 2] = [
        Some(File::from(std::os::fd::OwnedFd::from(out_pipe))),
        Some(File::from(std::os::fd::OwnedFd::from(err_pipe))),
    ];
    let mut gap = None;
    // Whether cachectl's stdout / stderr still take what the command writes.
    let mut sink_ok = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    while pipes.iter().any(Option::is_some) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2);
        let mut which = Vec::with_capacity(2);
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds.push(libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                which.push(i);
            }
        }
        // SAFETY: fds points to fds.len() initialised pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The pipes close when they drop: the command sees EPIPE.
            return Some(Gap::ReadFailed(e));
        }
        for (pfd, &i) in fds.iter().zip(&which) {
            if pfd.revents == 0 {
                continue;
            }
            let Some(pipe) = pipes[i].as_mut() else {
                continue;
            };
            match pipe.read(&mut buf) {
                Ok(0) => pipes[i] = None,
                Ok(n) => {
                    let data = &buf[..n];
                    spools[i].write(data);
                    match chunks.last_mut() {
                        Some(last) if (*last & 1) as usize == i => *last += (n as u64) << 1,
                        _ => chunks.push(((n as u64) << 1) | i as u64),
                    }
                    if sink_ok[i]
                        && let Err(e) = FdSink(1 + i as RawFd).write_all(data)
                    {
                        sink_ok[i] = false;
                        if e.kind() == io::ErrorKind::BrokenPipe {
                            // Our reader went away (e.g. `| head`). Close the child's pipe so
                            // it sees EPIPE/SIGPIPE exactly as it would have without cachectl.
                            pipes[i] = None;
                            gap.get_or_insert(Gap::ReaderGone);
                        } else {
                            // Our stdout failed otherwise (a full disk): the command cannot see
                            // that error through a pipe, and SIGPIPE would kill it for a cause
                            // it never had. Let it finish; what it writes is dropped.
                            gap.get_or_insert(Gap::WriteFailed(e));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    pipes[i] = None;
                    gap.get_or_insert(Gap::ReadFailed(e));
                }
            }
        }
    }
    gap
}
