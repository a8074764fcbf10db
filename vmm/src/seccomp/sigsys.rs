//! The SIGSYS handler: a call off a filter's list ends vmm with a message
//! naming the call and how to debug it, using async-signal-safe calls only.

use super::{Result, SeccompError};
use crate::status;

/// Install the SIGSYS handler (process-wide), before any filter.
pub fn install_sigsys_handler() -> Result<()> {
    // SA_SIGINFO, every signal blocked while it runs; the handler only makes
    // async-signal-safe calls.
    vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys).map_err(|e| SeccompError::Handler(e.into()))
}

/// The SIGSYS part of `siginfo_t` on x86-64 (`_sigsys` in the kernel's
/// `union __sifields`, which starts at offset 16).
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

/// `si_code` of a SIGSYS raised by seccomp.
const SYS_SECCOMP: i32 = 1;

/// A message built on the stack: no allocation in a signal handler.
struct Msg {
    buf: [u8; 512],
    len: usize,
}

impl Msg {
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_num(&mut self, mut v: u64, radix: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v % radix) as usize];
            v /= radix;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let mut m = Msg { buf: [0; 512], len: 0 };
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers;
    // SigsysInfo is a prefix of its layout for SIGSYS.
    let (code, nr) = unsafe {
        let s = &*(info as *const SigsysInfo);
        (s.code, s.syscall)
    };
    m.push(b"vmm: seccomp: ");
    if code == SYS_SECCOMP {
        m.push(b"a vmm thread made system call ");
        m.push_num(nr as u64, 10);
        if let Some(name) = syscall_name(i64::from(nr)) {
            m.push(b" (");
            m.push(name.as_bytes());
            m.push(b")");
        }
        if i64::from(nr) == libc::SYS_ioctl && !ctx.is_null() {
            // SAFETY: for SA_SIGINFO handlers the third argument is the
            // interrupted thread's ucontext_t; RSI held ioctl's request.
            let request = unsafe { (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_RSI as usize] };
            m.push(b" with request 0x");
            m.push_num(request as u64 & 0xffff_ffff, 16);
        }
        m.push(b", which its seccomp filter does not allow.\n");
    } else {
        m.push(b"SIGSYS from outside the seccomp filter.\n");
    }
    m.push(b"  This is a vmm bug; please report it with the command line. To debug, rerun with\n");
    m.push(b"  --no-seccomp (e.g. under strace -f) and see README.md, \"Seccomp\".\n");
    m.push(b"  vmm exit status ");
    m.push_num(u64::from(status::SECCOMP_VIOLATION), 10);
    m.push(b"\n");
    // A terminal in raw mode gets its settings back (every filter allows
    // that one ioctl); the shell after vmm would not echo otherwise.
    crate::devices::tty::restore();
    // SAFETY: write(2) and _exit(2) are async-signal-safe, and every filter
    // allows write to fd 2 and exit_group.
    unsafe {
        libc::write(2, m.buf.as_ptr().cast(), m.len);
        libc::_exit(i32::from(status::SECCOMP_VIOLATION));
    }
}

/// Names for the report: the calls the filters allow (a trap on one of
/// those means its arguments were refused) and common forbidden ones.
fn syscall_name(nr: i64) -> Option<&'static str> {
    use libc::*;
    const NAMES: &[(i64, &str)] = &[
        (SYS_read, "read"),
        (SYS_write, "write"),
        (SYS_open, "open"),
        (SYS_close, "close"),
        (SYS_stat, "stat"),
        (SYS_fstat, "fstat"),
        (SYS_lstat, "lstat"),
        (SYS_poll, "poll"),
        (SYS_lseek, "lseek"),
        (SYS_mmap, "mmap"),
        (SYS_mprotect, "mprotect"),
        (SYS_munmap, "munmap"),
        (SYS_brk, "brk"),
        (SYS_rt_sigaction, "rt_sigaction"),
        (SYS_rt_sigprocmask, "rt_sigprocmask"),
        (SYS_rt_sigreturn, "rt_sigreturn"),
        (SYS_ioctl, "ioctl"),
        (SYS_pread64, "pread64"),
        (SYS_readv, "readv"),
        (SYS_writev, "writev"),
        (SYS_access, "access"),
        (SYS_pipe, "pipe"),
        (SYS_select, "select"),
        (SYS_sched_yield, "sched_yield"),
        (SYS_mremap, "mremap"),
        (SYS_madvise, "madvise"),
        (SYS_dup, "dup"),
        (SYS_dup2, "dup2"),
        (SYS_nanosleep, "nanosleep"),
        (SYS_getpid, "getpid"),
        (SYS_socket, "socket"),
        (SYS_connect, "connect"),
        (SYS_accept, "accept"),
        (SYS_sendto, "sendto"),
        (SYS_recvfrom, "recvfrom"),
        (SYS_sendmsg, "sendmsg"),
        (SYS_recvmsg, "recvmsg"),
        (SYS_bind, "bind"),
        (SYS_listen, "listen"),
        (SYS_socketpair, "socketpair"),
        (SYS_setsockopt, "setsockopt"),
        (SYS_clone, "clone"),
        (SYS_fork, "fork"),
        (SYS_vfork, "vfork"),
        (SYS_execve, "execve"),
        (SYS_exit, "exit"),
        (SYS_wait4, "wait4"),
        (SYS_kill, "kill"),
        (SYS_uname, "uname"),
        (SYS_fcntl, "fcntl"),
        (SYS_getcwd, "getcwd"),
        (SYS_chdir, "chdir"),
        (SYS_rename, "rename"),
        (SYS_mkdir, "mkdir"),
        (SYS_unlink, "unlink"),
        (SYS_readlink, "readlink"),
        (SYS_sysinfo, "sysinfo"),
        (SYS_ptrace, "ptrace"),
        (SYS_sigaltstack, "sigaltstack"),
        (SYS_prctl, "prctl"),
        (SYS_mount, "mount"),
        (SYS_gettid, "gettid"),
        (SYS_futex, "futex"),
        (SYS_sched_getaffinity, "sched_getaffinity"),
        (SYS_set_robust_list, "set_robust_list"),
        (SYS_clock_gettime, "clock_gettime"),
        (SYS_clock_nanosleep, "clock_nanosleep"),
        (SYS_exit_group, "exit_group"),
        (SYS_epoll_wait, "epoll_wait"),
        (SYS_epoll_ctl, "epoll_ctl"),
        (SYS_epoll_pwait, "epoll_pwait"),
        (SYS_timerfd_settime, "timerfd_settime"),
        (SYS_tgkill, "tgkill"),
        (SYS_openat, "openat"),
        (SYS_newfstatat, "newfstatat"),
        (SYS_pselect6, "pselect6"),
        (SYS_ppoll, "ppoll"),
        (SYS_accept4, "accept4"),
        (SYS_pipe2, "pipe2"),
        (SYS_process_vm_readv, "process_vm_readv"),
        (SYS_process_vm_writev, "process_vm_writev"),
        (SYS_getrandom, "getrandom"),
        (SYS_memfd_create, "memfd_create"),
        (SYS_execveat, "execveat"),
        (SYS_statx, "statx"),
        (SYS_rseq, "rseq"),
        (SYS_pidfd_open, "pidfd_open"),
        (SYS_clone3, "clone3"),
        (SYS_openat2, "openat2"),
    ];
    NAMES.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_formats_numbers_without_allocating() {
        let mut m = Msg { buf: [0; 512], len: 0 };
        m.push_num(41, 10);
        m.push(b" 0x");
        m.push_num(0xae80, 16);
        assert_eq!(&m.buf[..m.len], b"41 0xae80");
        assert_eq!(syscall_name(libc::SYS_socket), Some("socket"));
    }
}
