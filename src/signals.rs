//! Forwarding terminating signals to the one child a process waits for: `cachectl run`'s
//! command, or the command under the tracer (`trace`), which forwards them once more.
//!
//! SIGINT, SIGTERM, SIGHUP and SIGQUIT sent by another process (`kill`) are passed on to the
//! child; the same signals from the terminal already reached the child (same process group) and
//! are not sent twice. Either way the signal is recorded: a run that received one is never
//! stored, and `warm` stops scheduling.

use std::sync::atomic::{AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived while no child was running yet: delivered as soon as one starts.
static PENDING: AtomicI32 = AtomicI32::new(0);
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    RECEIVED.store(sig, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    // si_code <= 0: sent by a process (kill, sigqueue, tgkill). > 0: from the kernel, e.g. the
    // terminal's ^C, which the child (in our process group) has received already.
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; kill is
    // async-signal-safe.
    unsafe {
        if pid <= 0 {
            PENDING.store(sig, Ordering::SeqCst);
        } else if info.is_null() || (*info).si_code <= 0 {
            libc::kill(pid, sig);
        }
    }
}

/// Record the child's pid for forwarding, and deliver a signal that arrived before it existed
/// (it cannot have reached the child through the terminal either).
pub fn register_child(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    if pending != 0 {
        // SAFETY: kill on the pid of a child we just spawned and have not reaped.
        unsafe {
            libc::kill(pid as i32, pending);
        }
    }
}

/// Install the handlers (idempotent). With no child registered, a signal is only recorded, which
/// is how `warm` learns of a Ctrl-C.
pub fn install_forwarding() {
    // SAFETY: installing a handler that only touches atomics and calls kill.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in FORWARDED {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// A terminating signal that arrived while no child ran (so nobody acted on it yet).
pub fn unhandled_signal() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether cachectl has received a terminating signal (the run is then never stored).
pub fn interrupted() -> bool {
    RECEIVED.load(Ordering::SeqCst) != 0
}

/// The child has been reaped: nothing to forward to any more.
pub fn forget_child() {
    CHILD.store(0, Ordering::SeqCst);
}
