//! The allow-lists: the vCPU threads' [`VcpuFilter`] and the VMM thread's
//! [`LoopFilter`], and the rules they are built from.

use super::{selftest, Profile, Result, SeccompError};
use kvm_bindings::{kvm_guest_debug, kvm_msi, kvm_msrs, kvm_regs, kvm_sregs, KVMIO};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

// The KVM ioctls the vCPU thread may still issue, numbered as kvm-ioctls
// numbers them (its constants are private). KVM_CREATE_VM, _VCPU,
// _SET_USER_MEMORY_REGION, _SET_CPUID2, _SET_SREGS and the rest of the setup
// are done by then and stay forbidden.
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
ioctl_iow_nr!(KVM_SET_MSRS, KVMIO, 0x89, kvm_msrs);
ioctl_iow_nr!(KVM_SET_GUEST_DEBUG, KVMIO, 0x9b, kvm_guest_debug);
// The VMM thread raises IRQ 4 as an MSI straight to the LAPIC (vm.rs).
ioctl_iow_nr!(KVM_SIGNAL_MSI, KVMIO, 0xa5, kvm_msi);

/// `(ioctl request, why)`: the requests the vCPU thread may make.
fn vcpu_ioctls(profile: Profile) -> Vec<(u64, &'static str)> {
    let mut v = vec![
        (KVM_RUN(), "run the guest"),
        (KVM_GET_REGS(), "reports, tracers"),
        (KVM_SET_REGS(), "tracers move RIP past a breakpoint"),
        (KVM_GET_SREGS(), "reports, tracers (CR3 for guest page walks)"),
        (KVM_SET_MSRS(), "tracers step through syscall (SFMASK without TF)"),
        (KVM_SET_GUEST_DEBUG(), "breakpoints and single steps"),
    ];
    if profile == Profile::Interactive {
        v.extend([
            (KVM_GET_MSRS(), "the debugger's msr command"),
            (libc::TCGETS, "isatty(), and the debugger's line editor (rustyline)"),
            (libc::TCSETS, "rustyline: raw mode on and off"),
            (libc::TCSETSW, "rustyline: raw mode on and off"),
            (libc::TCSETSF, "rustyline: raw mode on and off"),
            (libc::TIOCGWINSZ, "rustyline: terminal width"),
            (
                libc::FIONBIO,
                "set_nonblocking: the GDB stub's peek, rustyline's signal socketpair",
            ),
        ]);
    }
    v
}

/// `arg == value`, comparing the low 32 bits only: for `int` arguments
/// (fds, ioctl requests) the kernel ignores the upper half of the register,
/// which may hold garbage.
fn arg_eq32(arg: u8, value: u64, thread: &'static str) -> Result<SeccompRule> {
    args_eq32(&[(arg, value)], thread)
}

/// Any arguments.
fn any() -> Vec<SeccompRule> {
    Vec::new()
}

fn compile(
    thread: &'static str,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram> {
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|source| SeccompError::Compile { thread, source })?;
    filter
        .try_into()
        .map_err(|source| SeccompError::Compile { thread, source })
}

/// What the threads share: memory, locks, signals, and the way out.
fn common_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    [
        // malloc: brk for the main arena, mmap/munmap/mprotect/madvise/mremap
        // for thread arenas and large blocks (realloc of a big Vec is mremap).
        (libc::SYS_brk, any()),
        (libc::SYS_mmap, any()),
        (libc::SYS_munmap, any()),
        (libc::SYS_mprotect, any()),
        (libc::SYS_madvise, any()),
        (libc::SYS_mremap, any()),
        // Mutexes, Arc'd queues, thread parking.
        (libc::SYS_futex, any()),
        // glibc blocks signals around thread start and exit; Rust's
        // stack-overflow guard page handler has a sigaltstack per thread.
        (libc::SYS_rt_sigprocmask, any()),
        (libc::SYS_sigaltstack, any()),
        // Returning from any signal handler (the kick out of KVM_RUN, Ctrl-C in
        // the debugger), and a blocking call restarted after a stop/continue.
        (libc::SYS_rt_sigreturn, any()),
        (libc::SYS_restart_syscall, any()),
        // A thread ends with exit, the process with exit_group (also the
        // SIGSYS handler's _exit).
        (libc::SYS_exit, any()),
        (libc::SYS_exit_group, any()),
    ]
    .into_iter()
    .collect()
}

/// The vCPU threads' filter: vCPU 0's thread runs the guest and everything
/// that reacts to it (serial output, reports, tracers; the debugger or GDB
/// stub with [`Profile::Interactive`]); the other vCPUs' threads inherit it
/// and run the guest and its port I/O. With one vCPU it starts no thread:
/// the VMM thread exists before the filter is installed (a `clone` would
/// stop vmm with the seccomp message; `clone3` is answered ENOSYS first, see
/// below). With `ap_threads` (several vCPUs) it may start threads, and only
/// threads; the one-vCPU list stays as short as before (its length is boot
/// time: README, "Seccomp").
pub struct VcpuFilter(BpfProgram);

impl VcpuFilter {
    pub fn compile(profile: Profile, ap_threads: bool) -> Result<VcpuFilter> {
        const T: &str = "vCPU";
        let mut rules = common_rules();
        let mut ioctls = vcpu_ioctls(profile)
            .iter()
            .map(|&(request, _why)| arg_eq32(1, request, T))
            .collect::<Result<Vec<_>>>()?;
        // The panic hook gives the terminal its settings back (tty.rs).
        ioctls.extend(restore_terminal(T)?);
        rules.extend([
            // KVM (and, interactive, the terminal) by request number (see
            // vcpu_ioctls). The fd is not checked: the requests are the risk.
            (libc::SYS_ioctl, ioctls),
            // Guest serial output (stdout), reports and traces (stderr,
            // --strace-file); the debugger's output.
            (libc::SYS_write, any()),
            // Dropping the VM (KVM fds); rustyline's socketpair, a gdb
            // connection.
            (libc::SYS_close, any()),
            // The debugger its Ctrl-C handler; rustyline SIGINT/SIGWINCH;
            // restoring SIGINT's default before dying of it.
            (libc::SYS_rt_sigaction, any()),
            // Arming and disarming --timeout's timer for each run.
            (libc::SYS_timerfd_settime, any()),
            // The kick of other vCPUs out of KVM_RUN (pthread_kill: getpid
            // + tgkill), only the kick signal to threads of this process;
            // SIGABRT for abort(); SIGINT and SIGTERM to itself, to die of
            // the signal that stopped the guest after the report (main.rs:
            // raise() is gettid + tgkill).
            (libc::SYS_getpid, any()),
            (libc::SYS_gettid, any()),
            (
                libc::SYS_tgkill,
                vec![
                    own_thread_signal(crate::vstate::kick::kick_signal(), T)?,
                    own_thread_signal(libc::SIGABRT, T)?,
                    own_thread_signal(libc::SIGINT, T)?,
                    own_thread_signal(libc::SIGTERM, T)?,
                ],
            ),
            // Waiting for the VMM thread to end (join: a futex), reading
            // the clock where the vDSO cannot.
            (libc::SYS_clock_gettime, any()),
            (libc::SYS_gettimeofday, any()),
        ]);
        if cfg!(debug_assertions) {
            // Debug builds of Rust check that an fd is open before closing
            // it (OwnedFd::drop → fcntl(fd, F_GETFD)).
            rules.insert(libc::SYS_fcntl, vec![arg_eq32(1, libc::F_GETFD as u64, T)?]);
        }
        if ap_threads {
            rules.extend([
                // Starting the other vCPUs' threads for a run: only clone
                // with CLONE_THREAD (a thread, never a process; it implies
                // CLONE_VM). clone3 passes its flags in memory, where BPF
                // cannot look: the prefix below answers it ENOSYS, and glibc
                // falls back to clone.
                (libc::SYS_clone, vec![clone_thread_only(T)?]),
                // What a new thread does before its closure: glibc registers
                // rseq and its robust futex list, Rust reads its stack bounds
                // (pthread_getattr_np → sched_getaffinity).
                (libc::SYS_rseq, any()),
                (libc::SYS_set_robust_list, any()),
                (libc::SYS_sched_getaffinity, any()),
            ]);
        }
        if profile == Profile::Interactive {
            rules.extend([
                // Debugger commands from stdin; the GDB connection.
                (libc::SYS_read, any()),
                (libc::SYS_sendto, any()),
                (libc::SYS_recvfrom, any()),
                // gdbstub sets TCP_NODELAY on the accepted connection (the
                // socket was opened before the filter; socket, bind, listen
                // and accept are not allowed).
                (libc::SYS_setsockopt, vec![arg_tcp_nodelay(T)?]),
                // rustyline makes an AF_UNIX socketpair per prompt for its
                // SIGWINCH/SIGINT handler; no other family.
                (libc::SYS_socketpair, vec![arg_eq32(0, libc::AF_UNIX as u64, T)?]),
                // rustyline waits for the rest of an escape sequence.
                (libc::SYS_poll, any()),
                (libc::SYS_ppoll, any()),
                (libc::SYS_select, any()),
                (libc::SYS_pselect6, any()),
                // Seeds of Rust's HashMap (rustyline).
                (libc::SYS_getrandom, any()),
            ]);
        }
        let allow = compile(T, rules, SeccompAction::Trap, SeccompAction::Allow)?;
        Ok(VcpuFilter(clone3_enosys().into_iter().chain(allow).collect()))
    }

    /// Install on the calling thread, which must be the vCPU thread.
    pub fn apply(self) -> Result<()> {
        seccompiler::apply_filter(&self.0).map_err(|source| SeccompError::Install { thread: "vCPU", source })?;
        selftest("vcpu");
        Ok(())
    }
}

/// A prefix for a seccompiler program: clone3 → ENOSYS. seccompiler gives
/// every rule of a filter the same action, and a second filter for this
/// one call would cost a second install (and run on every call). A prefix
/// is safe: the program after it starts with its own architecture check,
/// and classic BPF jumps are relative, so its jumps are unchanged.
fn clone3_enosys() -> [sock_filter; 5] {
    // struct seccomp_data: int nr (offset 0); u32 arch (offset 4).
    // <linux/audit.h>: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, ARCH),
        // Another architecture: on to seccompiler's check, which kills.
        jeq(AUDIT_ARCH_X86_64, 0, 3),
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, NR),
        jeq(libc::SYS_clone3 as u32, 0, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
    ]
}

/// All of `(arg, value)` hold (32-bit compares, see `arg_eq32`).
fn args_eq32(pairs: &[(u8, u64)], thread: &'static str) -> Result<SeccompRule> {
    let conds = pairs
        .iter()
        .map(|&(arg, value)| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                .map_err(|source| SeccompError::Compile { thread, source })
        })
        .collect::<Result<Vec<_>>>()?;
    SeccompRule::new(conds).map_err(|source| SeccompError::Compile { thread, source })
}

/// setsockopt(fd, SOL_TCP, TCP_NODELAY, ...).
fn arg_tcp_nodelay(thread: &'static str) -> Result<SeccompRule> {
    args_eq32(&[(1, libc::SOL_TCP as u64), (2, libc::TCP_NODELAY as u64)], thread)
}

/// clone(flags, ...) with CLONE_THREAD among the flags.
fn clone_thread_only(thread: &'static str) -> Result<SeccompRule> {
    let flag = libc::CLONE_THREAD as u64;
    let c = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
        .map_err(|source| SeccompError::Compile { thread, source })?;
    SeccompRule::new(vec![c]).map_err(|source| SeccompError::Compile { thread, source })
}

/// tgkill(this process, any thread, `sig`).
fn own_thread_signal(sig: libc::c_int, thread: &'static str) -> Result<SeccompRule> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    args_eq32(&[(0, pid as u64), (2, sig as u64)], thread)
}

/// `ioctl(0, TCSETS)` then `ioctl(0, TCGETS)`: tcsetattr(0, TCSANOW, saved)
/// of tty::restore (glibc reads the settings back to check them).
fn restore_terminal(thread: &'static str) -> Result<Vec<SeccompRule>> {
    Ok(vec![
        args_eq32(&[(0, 0), (1, libc::TCSETS)], thread)?,
        args_eq32(&[(0, 0), (1, libc::TCGETS)], thread)?,
    ])
}

/// The VMM thread's filter (vstate/event_loop.rs): it waits in epoll, reads
/// its own fds, raises IRQ 4 and kicks vCPUs. Nothing else.
pub struct LoopFilter(BpfProgram);

impl LoopFilter {
    /// `reads`: the fds the thread reads (stdin, its eventfds and timerfd);
    /// `vm_fd`: the VM, for KVM_SIGNAL_MSI; `echo`: it echoes typed keys to
    /// the terminal on fd 0 (tty.rs).
    pub fn compile(reads: &[i32], vm_fd: i32, echo: bool) -> Result<LoopFilter> {
        const T: &str = "VMM (event loop)";
        let mut rules = common_rules();
        let fd_rules =
            |fds: &[i32]| -> Result<Vec<SeccompRule>> { fds.iter().map(|&fd| arg_eq32(0, fd as u64, T)).collect() };
        let mut writes = vec![2];
        if echo {
            writes.push(0);
        }
        rules.extend([
            // The loop itself. glibc's epoll_wait is epoll_wait or, in newer
            // versions, epoll_pwait; epoll_ctl adds and removes stdin and
            // the gdb socket (only in its own epoll set).
            (libc::SYS_epoll_wait, any()),
            (libc::SYS_epoll_pwait, any()),
            (libc::SYS_epoll_ctl, any()),
            // Stdin, its eventfds, the timerfd: and no other fd.
            (libc::SYS_read, fd_rules(reads)?),
            // Error messages and the SIGSYS report (fd 2); the echo of typed
            // keys to the terminal (fd 0).
            (libc::SYS_write, fd_rules(&writes)?),
            // IRQ 4 (KVM_SIGNAL_MSI on the VM fd), and the terminal's
            // settings given back when the thread ends (tty::restore).
            (
                libc::SYS_ioctl,
                [
                    vec![args_eq32(&[(0, vm_fd as u64), (1, KVM_SIGNAL_MSI())], T)?],
                    restore_terminal(T)?,
                ]
                .concat(),
            ),
            // The kick: pthread_kill is getpid + tgkill, only the kick
            // signal, only to threads of this process.
            (libc::SYS_getpid, any()),
            (
                libc::SYS_tgkill,
                vec![
                    own_thread_signal(crate::vstate::kick::kick_signal(), T)?,
                    own_thread_signal(libc::SIGABRT, T)?,
                ],
            ),
        ]);
        if cfg!(debug_assertions) {
            // Debug builds of Rust check that an fd is open before closing
            // it (OwnedFd::drop → fcntl(fd, F_GETFD)).
            rules.insert(libc::SYS_fcntl, vec![arg_eq32(1, libc::F_GETFD as u64, T)?]);
        }
        compile(T, rules, SeccompAction::Trap, SeccompAction::Allow).map(LoopFilter)
    }

    /// Install on the calling thread, which must be the VMM thread.
    pub fn apply(self) -> Result<()> {
        seccompiler::apply_filter(&self.0).map_err(|source| SeccompError::Install {
            thread: "VMM (event loop)",
            source,
        })?;
        selftest("loop");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        for ap_threads in [false, true] {
            assert!(VcpuFilter::compile(Profile::Run, ap_threads).is_ok());
            assert!(VcpuFilter::compile(Profile::Interactive, ap_threads).is_ok());
        }
        assert!(LoopFilter::compile(&[0, 5, 6], 4, true).is_ok());
    }

    #[test]
    fn kvm_ioctl_numbers_match_the_kernel_headers() {
        // From <linux/kvm.h> on x86-64.
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
        assert_eq!(KVM_SET_REGS(), 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
        assert_eq!(KVM_GET_MSRS(), 0xc008_ae88);
        assert_eq!(KVM_SET_MSRS(), 0x4008_ae89);
        assert_eq!(KVM_SET_GUEST_DEBUG(), 0x4048_ae9b);
        assert_eq!(KVM_SIGNAL_MSI(), 0x4020_aea5);
    }
}
