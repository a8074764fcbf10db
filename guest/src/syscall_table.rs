//! The system-call table (Linux: arch/x86/entry/syscalls/syscall_64.tbl).
//!
//! Numbers and argument registers are Linux x86-64's: RAX = number,
//! arguments in RDI, RSI, RDX, R10, R8, R9, result in RAX, errors as -errno.
//! entry.rs indexes this table with RAX; every handler has the same
//! six-argument signature so one indirect call serves them all.
//!
//! Adding a system call: write `extern "C" fn sys_NAME(...) -> i64` (six u64
//! arguments, unused ones named `_`), then add one line `t[NR] = sys_NAME;`.

use crate::{bench, console, mman, sys, time};

pub type SysFn = extern "C" fn(u64, u64, u64, u64, u64, u64) -> i64;

/// Size of the table; numbers at or above it get -ENOSYS.
pub const NR_SYSCALLS: usize = 512;
pub const ENOSYS: i64 = 38;

/// Our own system calls, above Linux's range.
pub const NR_SPAWN: usize = 500;
pub const NR_SYSCOUNT: usize = 501;
pub const NR_BENCH_NULL_ENTRY: usize = 502;
pub const NR_HYPERCALL_NULL: usize = 503;

#[no_mangle]
pub static SYS_CALL_TABLE: [SysFn; NR_SYSCALLS] = {
    let mut t: [SysFn; NR_SYSCALLS] = [sys_ni_syscall; NR_SYSCALLS];
    t[0] = console::sys_read;
    t[1] = console::sys_write;
    t[9] = mman::sys_mmap;
    t[10] = mman::sys_mprotect;
    t[11] = mman::sys_munmap;
    t[12] = mman::sys_brk;
    t[13] = sys::sys_rt_sigaction;
    t[14] = sys::sys_rt_sigprocmask;
    t[16] = console::sys_ioctl;
    t[20] = console::sys_writev;
    t[24] = sys::sys_sched_yield;
    t[39] = sys::sys_getpid;
    t[60] = sys::sys_exit;
    t[61] = sys::sys_wait4;
    t[63] = sys::sys_uname;
    t[96] = time::sys_gettimeofday;
    t[102] = sys::sys_getuid;
    t[104] = sys::sys_getuid; // getgid
    t[107] = sys::sys_getuid; // geteuid
    t[108] = sys::sys_getuid; // getegid
    t[110] = sys::sys_getppid;
    t[158] = sys::sys_arch_prctl;
    t[186] = sys::sys_gettid;
    t[218] = sys::sys_set_tid_address;
    t[228] = time::sys_clock_gettime;
    t[231] = sys::sys_exit; // exit_group: one thread per process
    t[NR_SPAWN] = sys::sys_spawn;
    t[NR_SYSCOUNT] = sys::sys_syscount;
    t[NR_BENCH_NULL_ENTRY] = bench::sys_bench_null_entry;
    t[NR_HYPERCALL_NULL] = bench::sys_hypercall_null;
    t[2] = console::sys_open;
    t[3] = console::sys_close;
    t[257] = console::sys_openat;
    t
};

/// How many times each number was called (entry.rs increments it);
/// unknown numbers are counted too.
#[no_mangle]
pub static mut SYSCALL_COUNTS: [u64; NR_SYSCALLS] = [0; NR_SYSCALLS];
/// Calls with a number beyond the table.
#[no_mangle]
pub static mut OUT_OF_RANGE_CALLS: u64 = 0;

extern "C" fn sys_ni_syscall(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    -ENOSYS
}

#[no_mangle]
extern "C" fn sys_ni_out_of_range(_nr: u64) -> i64 {
    // SAFETY: one CPU, no interrupts.
    unsafe { OUT_OF_RANGE_CALLS += 1 };
    -ENOSYS
}

/// Calls so far to number `nr`.
pub fn count(nr: u64) -> u64 {
    // SAFETY: read of a counter only this CPU writes.
    unsafe {
        if (nr as usize) < NR_SYSCALLS {
            SYSCALL_COUNTS[nr as usize]
        } else {
            OUT_OF_RANGE_CALLS
        }
    }
}

/// Dispatch from a trap frame (int 0x80, and the PVM paths in traps.rs).
pub fn dispatch(nr: u64, a: [u64; 6]) -> i64 {
    if nr as usize >= NR_SYSCALLS {
        return sys_ni_out_of_range(nr);
    }
    // SAFETY: as above.
    unsafe { SYSCALL_COUNTS[nr as usize] += 1 };
    SYS_CALL_TABLE[nr as usize](a[0], a[1], a[2], a[3], a[4], a[5])
}
