//! The seccomp-BPF filter the traced command runs under: the file-system system calls of
//! [`super::syscalls::TRACED`] stop for the tracer (`SECCOMP_RET_TRACE`), every other call runs
//! without a stop. A call made through another ABI (32-bit `int 0x80`, x32) stops too, with
//! [`FOREIGN_ABI`] as its data, so that the tracer can say it cannot decode it.
//!
//! Installed by the command's own process just before it executes the command, after setting
//! `no_new_privs` (what lets an unprivileged process install a filter; setuid programs then run
//! without their privileges). The filter is inherited by every descendant and cannot be removed.

use std::io;

/// `SECCOMP_RET_TRACE` data for a call of the native ABI.
pub const NATIVE: u16 = 0;
/// `SECCOMP_RET_TRACE` data for a call through another ABI (not decoded: the run is untraceable).
pub const FOREIGN_ABI: u16 = 1;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// `seccomp_data` offsets.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

// Classic BPF opcodes (linux/filter.h): BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K,
// BPF_JMP|BPF_JSET|BPF_K, BPF_RET|BPF_K.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program: foreign ABI → trace (data 1); a traced call → trace (data 0); else allow.
pub fn program(traced: &[i64]) -> Vec<libc::sock_filter> {
    let foreign = SECCOMP_RET_TRACE | u32::from(FOREIGN_ABI);
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFFSET_ARCH),
        // Native: skip the next instruction.
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, foreign),
        stmt(BPF_LD_W_ABS, OFFSET_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        // x32 calls are the native arch with bit 30 of the number set.
        p.push(jump(BPF_JMP_JSET_K, 0x4000_0000, 0, 1));
        p.push(stmt(BPF_RET_K, foreign));
    }
    // Each check jumps over the ones after it and the ALLOW to the TRACE at the end.
    let n = traced.len();
    assert!(n < 255, "a BPF jump offset is one byte");
    for (i, nr) in traced.iter().enumerate() {
        p.push(jump(BPF_JMP_JEQ_K, *nr as u32, (n - i) as u8, 0));
    }
    p.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    p.push(stmt(BPF_RET_K, SECCOMP_RET_TRACE | u32::from(NATIVE)));
    p
}

/// Set `no_new_privs` and install `filter` (from [`program`]) on the calling thread, and so on
/// what it executes. Allocates nothing: it runs between fork and exec.
pub fn install(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments; seccomp reads `prog`, which outlives the call and
    // points to `filter.len()` instructions.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the program the way the kernel does, for one (arch, nr).
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            match i.code {
                BPF_LD_W_ABS => acc = if i.k == OFFSET_ARCH { arch } else { nr },
                BPF_JMP_JEQ_K => {
                    pc += usize::from(if acc == i.k { i.jt } else { i.jf });
                }
                BPF_JMP_JSET_K => {
                    pc += usize::from(if acc & i.k != 0 { i.jt } else { i.jf });
                }
                BPF_RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn traces_exactly_the_listed_calls() {
        let traced = [2i64, 257, 59];
        let p = program(&traced);
        for nr in 0..600u32 {
            let want = if traced.contains(&(nr as i64)) {
                SECCOMP_RET_TRACE
            } else {
                SECCOMP_RET_ALLOW
            };
            assert_eq!(run(&p, AUDIT_ARCH, nr), want, "nr {nr}");
        }
        let foreign = SECCOMP_RET_TRACE | u32::from(FOREIGN_ABI);
        assert_eq!(run(&p, 0x4000_0003, 5), foreign, "i386");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(run(&p, AUDIT_ARCH, 0x4000_0000 | 257), foreign, "x32");
        }
    }
}
