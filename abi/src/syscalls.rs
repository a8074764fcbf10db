//! The system-call table's one source (Linux: `syscall_64.tbl`, from which
//! it generates the kernel's table, the headers and strace's names). The
//! kernel's dispatch table, `vmm --strace`, the ring-3 runtime and the
//! benchmark all read the numbers, names and argument kinds from here.
//!
//! Adding a system call: one line in [`SYSCALLS`] (number, name, arguments)
//! and one handler in the kernel's table (`guest/src/syscall_table.rs`),
//! which refuses to build if the two disagree.

/// Size of the kernel's table; numbers at or above it get -ENOSYS.
pub const NR_SYSCALLS: usize = 512;

/// How an argument is shown by strace — what kind of value it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A signed number.
    Int,
    /// A number best read in hex (flags, addresses).
    Hex,
    /// A NUL-terminated string the program passes in.
    Str,
    /// A buffer the program passes in; its length is argument N.
    BufIn(usize),
    /// A buffer the kernel fills; its length is the result.
    BufOut,
    /// An iovec array; its count is argument N.
    Iovec(usize),
    /// A NULL-terminated array of string pointers.
    Argv,
}

/// One system call.
#[derive(Clone, Copy, Debug)]
pub struct Syscall {
    pub nr: usize,
    pub name: &'static str,
    pub args: &'static [Arg],
}

/// The numbers, as Linux x86-64 has them, then the kernel's own from 500.
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const BRK: usize = 12;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const WRITEV: usize = 20;
    pub const SCHED_YIELD: usize = 24;
    pub const NANOSLEEP: usize = 35;
    pub const GETPID: usize = 39;
    pub const EXIT: usize = 60;
    pub const WAIT4: usize = 61;
    pub const UNAME: usize = 63;
    pub const GETTIMEOFDAY: usize = 96;
    pub const GETUID: usize = 102;
    pub const SETRLIMIT: usize = 160;
    pub const GETGID: usize = 104;
    pub const GETEUID: usize = 107;
    pub const GETEGID: usize = 108;
    pub const GETPPID: usize = 110;
    pub const ARCH_PRCTL: usize = 158;
    pub const GETTID: usize = 186;
    pub const SCHED_GETAFFINITY: usize = 204;
    pub const SET_TID_ADDRESS: usize = 218;
    pub const CLOCK_GETTIME: usize = 228;
    pub const CLOCK_NANOSLEEP: usize = 230;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const GETCPU: usize = 309;
    /// `spawn(path, argv)`: run a program of the boot archive as a child.
    pub const SPAWN: usize = 500;
    /// `syscount(nr)`: calls so far to `nr` (the README's tutorial).
    pub const SYSCOUNT: usize = 501;
    /// `bench_null_entry(on)`: only when booted with `bench`.
    pub const BENCH_NULL_ENTRY: usize = 502;
    /// `hypercall_null()`: only when booted with `bench`.
    pub const HYPERCALL_NULL: usize = 503;
}

use Arg::*;

/// Every system call the kernel implements.
pub const SYSCALLS: &[Syscall] = &[
    sc(nr::READ, "read", &[Int, BufOut, Int]),
    sc(nr::WRITE, "write", &[Int, BufIn(2), Int]),
    sc(nr::OPEN, "open", &[Str, Hex, Hex]),
    sc(nr::CLOSE, "close", &[Int]),
    sc(nr::MMAP, "mmap", &[Hex, Int, Hex, Hex, Int, Int]),
    sc(nr::MPROTECT, "mprotect", &[Hex, Int, Hex]),
    sc(nr::MUNMAP, "munmap", &[Hex, Int]),
    sc(nr::BRK, "brk", &[Hex]),
    sc(nr::RT_SIGACTION, "rt_sigaction", &[Int, Hex, Hex, Int]),
    sc(nr::RT_SIGPROCMASK, "rt_sigprocmask", &[Int, Hex, Hex, Int]),
    sc(nr::IOCTL, "ioctl", &[Int, Hex, Hex]),
    sc(nr::WRITEV, "writev", &[Int, Iovec(2), Int]),
    sc(nr::SCHED_YIELD, "sched_yield", &[]),
    sc(nr::NANOSLEEP, "nanosleep", &[Hex, Hex]),
    sc(nr::GETPID, "getpid", &[]),
    sc(nr::EXIT, "exit", &[Int]),
    sc(nr::WAIT4, "wait4", &[Int, Hex, Int, Hex]),
    sc(nr::UNAME, "uname", &[Hex]),
    sc(nr::GETTIMEOFDAY, "gettimeofday", &[Hex, Hex]),
    sc(nr::GETUID, "getuid", &[]),
    sc(nr::GETGID, "getgid", &[]),
    sc(nr::GETEUID, "geteuid", &[]),
    sc(nr::GETEGID, "getegid", &[]),
    sc(nr::GETPPID, "getppid", &[]),
    sc(nr::ARCH_PRCTL, "arch_prctl", &[Hex, Hex]),
    sc(nr::SETRLIMIT, "setrlimit", &[Int, Hex]),
    sc(nr::GETTID, "gettid", &[]),
    sc(nr::SCHED_GETAFFINITY, "sched_getaffinity", &[Int, Int, Hex]),
    sc(nr::SET_TID_ADDRESS, "set_tid_address", &[Hex]),
    sc(nr::CLOCK_GETTIME, "clock_gettime", &[Int, Hex]),
    sc(nr::CLOCK_NANOSLEEP, "clock_nanosleep", &[Int, Hex, Hex, Hex]),
    sc(nr::EXIT_GROUP, "exit_group", &[Int]),
    sc(nr::OPENAT, "openat", &[Int, Str, Hex, Hex]),
    sc(nr::GETCPU, "getcpu", &[Hex, Hex, Hex]),
    sc(nr::SPAWN, "spawn", &[Str, Argv]),
    sc(nr::SYSCOUNT, "syscount", &[Int]),
    sc(nr::BENCH_NULL_ENTRY, "bench_null_entry", &[Int]),
    sc(nr::HYPERCALL_NULL, "hypercall_null", &[]),
];

const fn sc(nr: usize, name: &'static str, args: &'static [Arg]) -> Syscall {
    Syscall { nr, name, args }
}

/// The system call numbered `nr`, if the kernel implements it.
pub fn lookup(nr: u64) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|s| s.nr as u64 == nr)
}

/// Is `nr` in [`SYSCALLS`]? (usable in constants: the kernel checks its table with it)
pub const fn is_listed(nr: usize) -> bool {
    let mut i = 0;
    while i < SYSCALLS.len() {
        if SYSCALLS[i].nr == nr {
            return true;
        }
        i += 1;
    }
    false
}

const _: () = {
    // Numbers unique, in range, and at most six arguments each.
    let mut i = 0;
    while i < SYSCALLS.len() {
        assert!(SYSCALLS[i].nr < NR_SYSCALLS && SYSCALLS[i].args.len() <= 6);
        let mut j = i + 1;
        while j < SYSCALLS.len() {
            assert!(SYSCALLS[i].nr != SYSCALLS[j].nr);
            j += 1;
        }
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_linuxs() {
        assert_eq!(lookup(1).unwrap().name, "write");
        assert_eq!(lookup(231).unwrap().name, "exit_group");
        assert_eq!(lookup(500).unwrap().args, &[Str, Argv]);
        assert!(lookup(4).is_none());
        assert!(is_listed(nr::GETPID) && !is_listed(5));
    }

    #[test]
    fn every_linux_number_is_linuxs() {
        // arch/x86/entry/syscalls/syscall_64.tbl.
        for (n, name) in [
            (0, "read"),
            (1, "write"),
            (2, "open"),
            (3, "close"),
            (9, "mmap"),
            (10, "mprotect"),
            (11, "munmap"),
            (12, "brk"),
            (13, "rt_sigaction"),
            (14, "rt_sigprocmask"),
            (16, "ioctl"),
            (20, "writev"),
            (24, "sched_yield"),
            (35, "nanosleep"),
            (39, "getpid"),
            (60, "exit"),
            (61, "wait4"),
            (63, "uname"),
            (96, "gettimeofday"),
            (102, "getuid"),
            (104, "getgid"),
            (107, "geteuid"),
            (108, "getegid"),
            (110, "getppid"),
            (158, "arch_prctl"),
            (160, "setrlimit"),
            (186, "gettid"),
            (218, "set_tid_address"),
            (228, "clock_gettime"),
            (230, "clock_nanosleep"),
            (231, "exit_group"),
            (257, "openat"),
        ] {
            assert_eq!(lookup(n).map(|s| s.name), Some(name), "number {n}");
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, s) in SYSCALLS.iter().enumerate() {
            // Names unique, as C identifiers.
            assert!(s
                .name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
            assert!(SYSCALLS[i + 1..].iter().all(|t| t.name != s.name), "{} twice", s.name);
            // A buffer's length and an iovec's count are another argument, a number.
            for a in s.args {
                if let BufIn(n) | Iovec(n) = *a {
                    assert!(n < s.args.len() && s.args[n] == Int, "{}: argument {n}", s.name);
                }
            }
        }
        // lookup and is_listed agree over the whole table and past it.
        for n in 0..NR_SYSCALLS + 8 {
            assert_eq!(lookup(n as u64).is_some(), is_listed(n), "number {n}");
        }
        assert!(lookup(u64::MAX).is_none());
    }
}
