//! The system-call table (Linux: arch/x86/entry/syscalls/syscall_64.tbl).
//!
//! Numbers and argument registers are Linux x86-64's: RAX = number,
//! arguments in RDI, RSI, RDX, R10, R8, R9, result in RAX, errors as -errno.
//! entry.rs indexes this table with RAX; every handler has the same
//! six-argument signature so one indirect call serves them all.
//!
//! The numbers, names and argument kinds live in the boot contract
//! (`vmm_abi::syscalls`), which strace and the ring-3 runtime read too; this
//! file pairs each number with its handler, and does not build if a number
//! has no handler or a handler no number.
//!
//! Adding a system call: write `extern "C" fn sys_NAME(...) -> i64` (six u64
//! arguments, unused ones named `_`), list it in `vmm_abi::syscalls`, then
//! add one line `(nr::NAME, module::sys_NAME),` to [`HANDLERS`].

use crate::{bench, console, irq, mman, sys, time};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmm_abi::errno::ENOSYS;
pub use vmm_abi::syscalls::NR_SYSCALLS;
use vmm_abi::syscalls::{is_listed, nr, SYSCALLS};

pub type SysFn = extern "C" fn(u64, u64, u64, u64, u64, u64) -> i64;

/// Each system call's handler.
const HANDLERS: &[(usize, SysFn)] = &[
    (nr::READ, console::sys_read),
    (nr::WRITE, console::sys_write),
    (nr::OPEN, console::sys_open),
    (nr::CLOSE, console::sys_close),
    (nr::MMAP, mman::sys_mmap),
    (nr::MPROTECT, mman::sys_mprotect),
    (nr::MUNMAP, mman::sys_munmap),
    (nr::BRK, mman::sys_brk),
    (nr::RT_SIGACTION, sys::sys_rt_sigaction),
    (nr::RT_SIGPROCMASK, sys::sys_rt_sigprocmask),
    (nr::IOCTL, console::sys_ioctl),
    (nr::WRITEV, console::sys_writev),
    (nr::SCHED_YIELD, sys::sys_sched_yield),
    (nr::NANOSLEEP, time::sys_nanosleep),
    (nr::GETPID, sys::sys_getpid),
    (nr::EXIT, sys::sys_exit),
    (nr::WAIT4, sys::sys_wait4),
    (nr::UNAME, sys::sys_uname),
    (nr::GETTIMEOFDAY, time::sys_gettimeofday),
    (nr::GETUID, sys::sys_getuid),
    (nr::GETGID, sys::sys_getuid),
    (nr::GETEUID, sys::sys_getuid),
    (nr::GETEGID, sys::sys_getuid),
    (nr::GETPPID, sys::sys_getppid),
    (nr::ARCH_PRCTL, sys::sys_arch_prctl),
    (nr::SETRLIMIT, irq::sys_setrlimit),
    (nr::GETTID, sys::sys_gettid),
    (nr::SCHED_GETAFFINITY, sys::sys_sched_getaffinity),
    (nr::SET_TID_ADDRESS, sys::sys_set_tid_address),
    (nr::CLOCK_GETTIME, time::sys_clock_gettime),
    (nr::CLOCK_NANOSLEEP, time::sys_clock_nanosleep),
    (nr::EXIT_GROUP, sys::sys_exit), // one thread per process
    (nr::OPENAT, console::sys_openat),
    (nr::GETCPU, sys::sys_getcpu),
    (nr::SPAWN, sys::sys_spawn),
    (nr::SYSCOUNT, sys::sys_syscount),
    (nr::BENCH_NULL_ENTRY, bench::sys_bench_null_entry),
    (nr::HYPERCALL_NULL, bench::sys_hypercall_null),
];

// Each listed number has exactly one handler: handlers' numbers are listed
// and unique, and there are as many as the list has numbers.
const _: () = {
    assert!(
        HANDLERS.len() == SYSCALLS.len(),
        "vmm_abi::syscalls and HANDLERS list different calls"
    );
    let mut i = 0;
    while i < HANDLERS.len() {
        assert!(
            is_listed(HANDLERS[i].0),
            "a handler's number is not in vmm_abi::syscalls"
        );
        let mut j = i + 1;
        while j < HANDLERS.len() {
            assert!(HANDLERS[i].0 != HANDLERS[j].0, "two handlers for one number");
            j += 1;
        }
        i += 1;
    }
};

#[no_mangle]
pub static SYS_CALL_TABLE: [SysFn; NR_SYSCALLS] = {
    let mut t: [SysFn; NR_SYSCALLS] = [sys_ni_syscall; NR_SYSCALLS];
    let mut i = 0;
    while i < HANDLERS.len() {
        t[HANDLERS[i].0] = HANDLERS[i].1;
        i += 1;
    }
    t
};

/// How many times each number was called, all CPUs (entry.rs increments it
/// with `lock inc`); unknown numbers are counted too. The VMM reads it by symbol.
#[no_mangle]
pub static SYSCALL_COUNTS: [AtomicU64; NR_SYSCALLS] = [const { AtomicU64::new(0) }; NR_SYSCALLS];
/// Calls with a number beyond the table.
#[no_mangle]
pub static OUT_OF_RANGE_CALLS: AtomicU64 = AtomicU64::new(0);

extern "C" fn sys_ni_syscall(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    -ENOSYS
}

#[no_mangle]
extern "C" fn sys_ni_out_of_range(_nr: u64) -> i64 {
    OUT_OF_RANGE_CALLS.fetch_add(1, Relaxed);
    -ENOSYS
}

/// Calls so far to number `nr`.
pub fn count(nr: u64) -> u64 {
    match SYSCALL_COUNTS.get(nr as usize) {
        Some(c) => c.load(Relaxed),
        None => OUT_OF_RANGE_CALLS.load(Relaxed),
    }
}

/// Dispatch from a trap frame (int 0x80, and the PVM paths in traps.rs).
pub fn dispatch(nr: u64, a: [u64; 6]) -> i64 {
    if nr as usize >= NR_SYSCALLS {
        return sys_ni_out_of_range(nr);
    }
    SYSCALL_COUNTS[nr as usize].fetch_add(1, Relaxed);
    SYS_CALL_TABLE[nr as usize](a[0], a[1], a[2], a[3], a[4], a[5])
}
