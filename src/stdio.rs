//! cachectl's own standard streams, written so that no state of theirs ends a run early.
//!
//! Whoever started cachectl may have left its stdout or stderr non-blocking (the flag belongs to
//! the open file they share with us: Node.js and some CI runners do this to pipes). A write
//! then fails with EAGAIN when the pipe is full, and `println!`/`eprintln!` panic on any write
//! error. Everything cachectl writes during a run, the command's output as well as its own
//! messages, goes through [`FdSink`] instead, which waits EAGAIN out as a blocking write would.

use std::io::{self, Write};
use std::os::fd::RawFd;

/// Our own stdout (fd 1) or stderr (fd 2), unbuffered, never closed.
///
/// A descriptor opened non-blocking by whoever started cachectl (the flag belongs to the open
/// file, which we share with them) is waited on with `poll` when it is full, as a blocking
/// write would wait: EAGAIN is never a reason to cut output short.
#[derive(Debug, Clone, Copy)]
pub struct FdSink(pub RawFd);

impl Write for FdSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: data points to data.len() readable bytes; fds 1 and 2 stay open for the
            // life of the process (std and our entry point guarantee it).
            let n = unsafe { libc::write(self.0, data.as_ptr().cast(), data.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => wait_for(self.0, libc::POLLOUT)?,
                _ => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Block until `fd` is ready for `events` (or has an error or hang-up to report, which the
/// next read or write then returns).
pub fn wait_for(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one initialised pollfd.
        if unsafe { libc::poll(&mut pfd, 1, -1) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Print one line of cachectl's own on stderr (a warning, a `-v` note). A stderr that fails
/// loses the line, never the run.
pub fn line(args: std::fmt::Arguments) {
    let text = format!("{args}\n");
    let _ = FdSink(2).write_all(text.as_bytes());
}

/// `eprintln!` for the run path: [`line`] with `format!` syntax.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::stdio::line(format_args!($($arg)*))
    };
}
