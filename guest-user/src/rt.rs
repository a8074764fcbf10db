//! The ring-3 runtime: `_start`, Linux x86-64 syscalls, `print!`, `args()`.
//!
//! A program is a `#![no_std] #![no_main]` bin that defines
//! `#[no_mangle] pub extern "C" fn main(argc: i32, argv: *const *const u8) -> i32`;
//! `_start` calls it and passes its result to `exit_group`.

use crate::linebuf::LineBuf;
use core::arch::{asm, global_asm};
use core::fmt::{self, Write};

// Syscall numbers: Linux x86-64, plus the guest kernel's own (500+), from
// the boot contract's one list (abi/src/syscalls.rs).
use vmm_abi::errno;
pub use vmm_abi::syscalls::nr;
pub const SYS_READ: usize = nr::READ;
pub const SYS_WRITE: usize = nr::WRITE;
pub const SYS_SCHED_YIELD: usize = nr::SCHED_YIELD;
pub const SYS_GETPID: usize = nr::GETPID;
pub const SYS_EXIT: usize = nr::EXIT;
pub const SYS_WAIT4: usize = nr::WAIT4;
pub const SYS_GETTIMEOFDAY: usize = nr::GETTIMEOFDAY;
pub const SYS_GETPPID: usize = nr::GETPPID;
pub const SYS_EXIT_GROUP: usize = nr::EXIT_GROUP;
/// `spawn(path, argv) -> pid`: start a program from the boot archive.
pub const SYS_SPAWN: usize = nr::SPAWN;
/// `syscount(nr) -> count`: how often syscall `nr` was made, kernel-wide.
pub const SYS_SYSCOUNT: usize = nr::SYSCOUNT;

// Error numbers as system calls return them (negated), from abi/src/errno.rs.
pub const EPERM: isize = errno::EPERM as isize;
pub const ENOENT: isize = errno::ENOENT as isize;
pub const ECHILD: isize = errno::ECHILD as isize;
pub const EAGAIN: isize = errno::EAGAIN as isize;
pub const ENOMEM: isize = errno::ENOMEM as isize;
pub const EFAULT: isize = errno::EFAULT as isize;
pub const EINVAL: isize = errno::EINVAL as isize;
pub const ENOSYS: isize = errno::ENOSYS as isize;

// ---------------------------------------------------------------- entry

// The kernel (or Linux) starts us with rsp -> argc, argv[0..argc], NULL,
// envp..., NULL, auxv. rbp = 0 ends frame-pointer walks here.
global_asm!(
    ".globl _start",
    ".type _start, @function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    ".size _start, . - _start",
    entry = sym start_rust,
);

extern "C" {
    /// Defined by each program.
    fn main(argc: i32, argv: *const *const u8) -> i32;
}

/// A program's global state. The kernel runs one thread per process, so
/// the process is the one owner of every global: no lock, and no
/// `static mut` (whose every use is an unchecked shared reference). What
/// the caller promises by `get` is only that it holds one reference at a
/// time (the kernel counterpart, for several CPUs, is guest/src/sync.rs).
pub struct Global<T>(core::cell::UnsafeCell<T>);

// SAFETY: a process has one thread (see above).
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(v: T) -> Global<T> {
        Global(core::cell::UnsafeCell::new(v))
    }

    /// # Safety
    /// No other reference to the value is live.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        &mut *self.0.get()
    }

    /// The value's address (e.g. for a buffer handed to the kernel).
    pub fn as_ptr(&self) -> *mut T {
        self.0.get()
    }
}

const MAX_ARGS: usize = 16;
/// argv (at most 16) as `&str`s, and the auxiliary vector (type, value pairs
/// ending with AT_NULL); written once by `start_rust` before `main`.
static ARGS: Global<([&str; MAX_ARGS], usize)> = Global::new(([""; MAX_ARGS], 0));
static AUXV: Global<*const usize> = Global::new(core::ptr::null());

unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    let argc = *sp;
    let argv = sp.add(1) as *const *const u8;
    let n = argc.min(MAX_ARGS);
    let (args, count) = ARGS.get();
    for (i, slot) in args.iter_mut().enumerate().take(n) {
        *slot = cstr_to_str(*argv.add(i));
    }
    *count = n;
    // argv[argc] is NULL; then envp, NULL-terminated; then the auxv.
    let mut p = argv.add(argc + 1) as *const usize;
    while *p != 0 {
        p = p.add(1);
    }
    *AUXV.get() = p.add(1);
    exit_group(main(argc as i32, argv))
}

/// A NUL-terminated string as `&str` ("?" if it is not UTF-8).
///
/// # Safety
/// `p` must point to a NUL-terminated string that lives for the program.
pub unsafe fn cstr_to_str(p: *const u8) -> &'static str {
    if p.is_null() {
        return "";
    }
    let mut len = 0;
    // Volatile, so the loop is not turned into a call to a `strlen` we lack.
    while core::ptr::read_volatile(p.add(len)) != 0 {
        len += 1;
    }
    core::str::from_utf8(core::slice::from_raw_parts(p, len)).unwrap_or("?")
}

/// An entry of the auxiliary vector (AT_* type), as getauxval(3).
pub fn getauxval(key: usize) -> Option<usize> {
    // SAFETY: written once by `start_rust`; the vector ends with AT_NULL.
    unsafe {
        let mut p = *AUXV.get();
        while !p.is_null() && *p != 0 {
            if *p == key {
                return Some(*p.add(1));
            }
            p = p.add(2);
        }
    }
    None
}

pub const AT_SYSINFO_EHDR: usize = 33;

/// The address of a function the vDSO exports (e.g. `__vdso_clock_gettime`),
/// found as a libc finds it: AT_SYSINFO_EHDR, the ELF's PT_DYNAMIC, then its
/// DT_HASH, DT_SYMTAB and DT_STRTAB.
pub fn vdso_sym(name: &str) -> Option<usize> {
    let base = getauxval(AT_SYSINFO_EHDR)?;
    // SAFETY: the kernel mapped a valid ELF image there, readable by ring 3.
    unsafe {
        let rd = |a: usize| core::ptr::read_unaligned(a as *const u64) as usize;
        let rd32 = |a: usize| core::ptr::read_unaligned(a as *const u32) as usize;
        let (phoff, phnum) = (rd(base + 32), rd32(base + 56) & 0xffff);
        let dynamic = (0..phnum).map(|i| base + phoff + 56 * i).find(|&ph| rd32(ph) == 2)?;
        let (mut hash, mut symtab, mut strtab) = (0, 0, 0);
        let mut d = base + rd(dynamic + 16);
        while rd(d) != 0 {
            match rd(d) {
                4 => hash = base + rd(d + 8),
                5 => strtab = base + rd(d + 8),
                6 => symtab = base + rd(d + 8),
                _ => {}
            }
            d += 16;
        }
        if hash == 0 || symtab == 0 || strtab == 0 {
            return None;
        }
        let nsyms = rd32(hash + 4);
        (0..nsyms).map(|i| symtab + 24 * i).find_map(|sym| {
            let n = cstr_to_str((strtab + rd32(sym)) as *const u8);
            (n == name && rd(sym + 8) != 0).then(|| base + rd(sym + 8))
        })
    }
}

/// The program's arguments, `args()[0]` being its name (at most 16).
pub fn args() -> &'static [&'static str] {
    // SAFETY: written once by `start_rust` before `main`; read-only after.
    let (args, n) = unsafe { ARGS.get() };
    &args[..*n]
}

// ---------------------------------------------------------------- syscalls
// `syscall` takes rax = nr, rdi, rsi, rdx, r10, r8, r9; returns rax
// (-errno on error) and clobbers rcx (user rip) and r11 (user rflags).

#[inline(always)]
pub unsafe fn syscall0(nr: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret,
         lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

#[inline(always)]
pub unsafe fn syscall1(nr: usize, a: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a,
         lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

#[inline(always)]
pub unsafe fn syscall2(nr: usize, a: usize, b: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b,
         lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

#[inline(always)]
pub unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
         lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

#[inline(always)]
pub unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
         in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

#[inline(always)]
pub unsafe fn syscall5(nr: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
         in("r10") d, in("r8") e, lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

#[inline(always)]
pub unsafe fn syscall6(nr: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
    let ret;
    asm!("syscall", inlateout("rax") nr as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
         in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _,
         options(nostack));
    ret
}

/// `write(fd, buf)`: bytes written or -errno.
pub fn write(fd: i32, buf: &[u8]) -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall3(SYS_WRITE, fd as usize, buf.as_ptr() as usize, buf.len()) }
}

/// `read(fd, buf)`: bytes read or -errno.
pub fn read(fd: i32, buf: &mut [u8]) -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall3(SYS_READ, fd as usize, buf.as_mut_ptr() as usize, buf.len()) }
}

/// Ends this thread (`exit`, 60).
pub fn exit(code: i32) -> ! {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe {
        syscall1(SYS_EXIT, code as usize);
        asm!("ud2", options(nomem, nostack, noreturn))
    }
}

/// Ends the process (`exit_group`, 231).
pub fn exit_group(code: i32) -> ! {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall1(SYS_EXIT_GROUP, code as usize) };
    exit(code)
}

pub fn getpid() -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall0(SYS_GETPID) }
}

pub fn getppid() -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall0(SYS_GETPPID) }
}

pub fn sched_yield() -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall0(SYS_SCHED_YIELD) }
}

/// `wait4(pid, &status, options, NULL)`: the reaped pid or -errno.
pub fn wait4(pid: isize, status: &mut i32, options: i32) -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe {
        syscall4(
            SYS_WAIT4,
            pid as usize,
            status as *mut i32 as usize,
            options as usize,
            0,
        )
    }
}

/// `gettimeofday(tv, tz)` with raw pointers (the attacks pass bad ones).
pub unsafe fn gettimeofday_raw(tv: *mut u8, tz: *mut u8) -> isize {
    syscall2(SYS_GETTIMEOFDAY, tv as usize, tz as usize)
}

/// Guest kernel `spawn` (500): `path` and the `argv` strings NUL-terminated,
/// `argv` NULL-terminated. The new pid or -errno (-ENOSYS on plain Linux).
pub unsafe fn spawn_raw(path: *const u8, argv: *const *const u8) -> isize {
    let ret = syscall2(SYS_SPAWN, path as usize, argv as usize);
    #[cfg(feature = "host-spawn")]
    if ret == -ENOSYS {
        return host_spawn(path, argv);
    }
    ret
}

/// Test aid (feature `host-spawn`, off by default): on a Linux host, emulate
/// `spawn` with fork + execve of `path` relative to the working directory.
#[cfg(feature = "host-spawn")]
unsafe fn host_spawn(path: *const u8, argv: *const *const u8) -> isize {
    const SYS_FORK: usize = 57;
    const SYS_EXECVE: usize = 59;
    let pid = syscall0(SYS_FORK);
    if pid == 0 {
        let envp = [core::ptr::null::<u8>()];
        let e = syscall3(SYS_EXECVE, path as usize, argv as usize, envp.as_ptr() as usize);
        exit_group((-e) as i32 | 0x80);
    }
    pid
}

/// `spawn(path, argv)` from Rust strings (copied NUL-terminated onto the stack).
pub fn spawn(path: &str, argv: &[&str]) -> isize {
    const MAX: usize = 12;
    let mut buf = [0u8; 512];
    let mut ptrs = [core::ptr::null::<u8>(); MAX + 1];
    if argv.len() > MAX {
        return -EINVAL;
    }
    let mut off = 0;
    let mut put = |s: &str| -> Option<*const u8> {
        let end = off + s.len() + 1;
        if end > buf.len() || s.as_bytes().contains(&0) {
            return None;
        }
        buf[off..end - 1].copy_from_slice(s.as_bytes());
        let p = buf[off..].as_ptr();
        off = end;
        Some(p)
    };
    let Some(path) = put(path) else { return -EINVAL };
    for (slot, a) in ptrs.iter_mut().zip(argv) {
        let Some(p) = put(a) else { return -EINVAL };
        *slot = p;
    }
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { spawn_raw(path, ptrs.as_ptr()) }
}

/// Guest kernel `syscount` (501): how many times syscall `nr` was made.
pub fn syscount(nr: usize) -> isize {
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    unsafe { syscall1(SYS_SYSCOUNT, nr) }
}

// ---------------------------------------------------------------- wait status
// Linux encoding: exited -> code << 8; killed -> signal in the low 7 bits.

pub fn wifexited(status: i32) -> bool {
    status & 0x7f == 0
}
pub fn wexitstatus(status: i32) -> i32 {
    (status >> 8) & 0xff
}
pub fn wifsignaled(status: i32) -> bool {
    let sig = status & 0x7f;
    sig != 0 && sig != 0x7f
}
pub fn wtermsig(status: i32) -> i32 {
    status & 0x7f
}

pub const SIGTRAP: i32 = 5;
pub const SIGILL: i32 = 4;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGKILL: i32 = 9;
pub const SIGSEGV: i32 = 11;
pub const SIGXCPU: i32 = 24;

/// "SIGSEGV" and friends, "" for a number we don't name.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGILL => "SIGILL",
        SIGTRAP => "SIGTRAP",
        6 => "SIGABRT",
        SIGBUS => "SIGBUS",
        SIGFPE => "SIGFPE",
        SIGKILL => "SIGKILL",
        SIGSEGV => "SIGSEGV",
        SIGXCPU => "SIGXCPU",
        _ => "",
    }
}

/// "ENOSYS" and friends for a positive errno, "" for one we don't name.
pub fn errno_name(e: isize) -> &'static str {
    errno::describe(e as i64).map_or("", |(name, _)| name)
}

// ---------------------------------------------------------------- printing

/// Writes all of `bytes` to stdout (short writes continue; an error stops).
fn write_stdout(bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        let n = write(1, &bytes[done..]);
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
}

/// A fixed-size string built with `write!` (output past `N` bytes is dropped).
pub struct StrBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StrBuf<N> {
    pub const fn new() -> Self {
        StrBuf { buf: [0; N], len: 0 }
    }
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are appended, so a cut can only split a char at the end.
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            // SAFETY: the bytes up to valid_up_to() are valid UTF-8.
            Err(e) => unsafe { core::str::from_utf8_unchecked(&self.buf[..e.valid_up_to()]) },
        }
    }
}

impl<const N: usize> Default for StrBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for StrBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[doc(hidden)]
pub fn print_fmt(args: fmt::Arguments) {
    // One `print!` is collected and written with a single `write` (each
    // write is a syscall, and in the guest a VM exit).
    let mut line = LineBuf::new(write_stdout);
    let _ = line.write_fmt(args);
    line.flush();
}

/// Prints to fd 1 with one `write` per call (for lines up to 256 bytes).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::rt::print_fmt(format_args!($($arg)*)) };
}

/// `print!` plus a newline, still one `write`.
#[macro_export]
macro_rules! println {
    () => { $crate::rt::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::rt::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

// ---------------------------------------------------------------- panics

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("panic: {}", info);
    exit_group(101)
}

/// The prebuilt `core` still references this symbol; with panic = "abort" it
/// is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}
