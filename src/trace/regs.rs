//! Reading a stopped tracee: the system call's number and arguments, and the strings they
//! point to.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// A system call at its seccomp stop.
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
}

/// The call `tid` is stopped at.
#[cfg(target_arch = "x86_64")]
pub fn read(tid: i32) -> io::Result<Call> {
    // SAFETY: PTRACE_GETREGS fills a user_regs_struct; zeroed is a valid value of it.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a writable user_regs_struct; the tracee is in a ptrace-stop.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            0,
            &mut r as *mut libc::user_regs_struct,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Call {
        nr: r.orig_rax as i64,
        args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9],
    })
}

/// The call `tid` is stopped at.
#[cfg(target_arch = "aarch64")]
pub fn read(tid: i32) -> io::Result<Call> {
    // SAFETY: PTRACE_GETREGSET with NT_PRSTATUS fills a user_regs_struct through the iovec;
    // zeroed is a valid value of it.
    let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: (&mut r as *mut libc::user_regs_struct).cast(),
        iov_len: std::mem::size_of::<libc::user_regs_struct>(),
    };
    // SAFETY: `iov` describes `r`, writable; the tracee is in a ptrace-stop.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            libc::NT_PRSTATUS as usize,
            &mut iov as *mut libc::iovec,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Call {
        nr: r.regs[8] as i64,
        args: [
            r.regs[0], r.regs[1], r.regs[2], r.regs[3], r.regs[4], r.regs[5],
        ],
    })
}

/// Read `buf.len()` bytes at `addr` in `tid`.
pub fn read_memory(tid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, writable; the remote range is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    if n == buf.len() as isize {
        Ok(())
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}

/// The NUL-terminated string at `addr` in `tid` (at most PATH_MAX bytes), as a path. `None`
/// for a bad pointer (the call fails with EFAULT) or a string that does not end in time.
pub fn read_path(tid: i32, addr: u64) -> Option<PathBuf> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        // Up to the end of the page: the next page may not be mapped.
        let len = (PAGE - at % PAGE) as usize;
        let mut buf = vec![0u8; len];
        read_memory(tid, at, &mut buf).ok()?;
        if let Some(end) = buf.iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(PathBuf::from(OsString::from_vec(out)));
        }
        out.extend_from_slice(&buf);
        at += len as u64;
    }
    None
}
