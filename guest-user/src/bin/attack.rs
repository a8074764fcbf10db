//! `attack NAME [ARG]`: tries one privileged or cross-boundary operation from
//! ring 3. Fault attacks must kill us (#GP/#PF -> SIGSEGV); if we survive we
//! print "attack NAME: NOT contained" and exit 1. The efault-* attacks pass
//! kernel, unmapped or straddling pointers to syscalls and expect -EFAULT.
#![no_std]
#![no_main]

use core::arch::asm;
use guest_user::{
    args, gettimeofday_raw, println, spawn, syscall1, syscall2, syscall3, syscall6, vdso_sym, wait4, wexitstatus,
    wifexited, EFAULT, SYS_READ, SYS_WRITE,
};

/// An address in the kernel image (KERNEL_BASE + 1 MiB, mapped supervisor-only).
const KERNEL_ADDR: usize = 0xffff_ffff_8010_0000;
/// The GDT through the kernel's direct map (DIRECT_MAP_BASE + 0x1000).
const GDT_DIRECT_MAP: usize = 0xffff_8880_0000_1000;
/// Below any program image; never mapped.
const UNMAPPED: usize = 0x10000;
/// 8 bytes below the end of the user half: [p, p+16) crosses into non-canonical space.
const STRADDLE: usize = 0x7fff_ffff_fff8;
/// Kernel selectors, DPL 0.
use vmm_abi::layout::selector::{KERNEL_CS, KERNEL_DS};
/// The VMM's exit port; a breach would end the VM with 0x77.
use vmm_abi::ports::EXIT as EXIT_PORT;
/// The parent's secret as a number, masked: compared as `(v ^ mask) ==
/// SECRET_MASKED` with an opaque mask, so the bytes "SECRET!!" appear nowhere
/// in our own image (where a read at the same address would find them).
const MASK: u64 = 0x5a5a_5a5a_5a5a_5a5a;
const SECRET_MASKED: u64 = u64::from_le_bytes(*b"SECRET!!") ^ MASK;

const NAMES: &str = "cli hlt in out mov-cr3 wrmsr lgdt mov-ds mov-ss far-call int-gate \
read-kernel write-kernel efault-write efault-read efault-unmapped efault-gettimeofday \
efault-straddle sibling-read fake-syscall vdso-write vdso-check bench-hook mmap-zero \
mmap-exhaust tf-syscall nt-flag int3 tf-int80 spin spin-loop lstar-leak bench-null-on vdso-kwrite";

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let args = args();
    let Some(&name) = args.get(1) else { return usage() };
    // SAFETY: none of this is safe; that is the point. Each asm block either
    // faults or, on a broken kernel, returns with the machine state restored.
    unsafe {
        match name {
            "cli" => asm!("cli", options(nomem, nostack)),
            "hlt" => asm!("hlt", options(nomem, nostack)),
            "in" => asm!("in al, dx", in("dx") EXIT_PORT, out("al") _, options(nomem, nostack)),
            "out" => asm!("out dx, al", in("dx") EXIT_PORT, in("al") 0x77u8, options(nomem, nostack)),
            "mov-cr3" => asm!("mov cr3, {}", in(reg) 0usize, options(nostack)),
            "wrmsr" => asm!("wrmsr", in("ecx") 0xc000_0082u32, in("eax") 0u32, in("edx") 0u32,
                            options(nostack)),
            "lgdt" => {
                let pseudo = [0u8; 10]; // limit 0, base 0
                asm!("lgdt [{}]", in(reg) pseudo.as_ptr(), options(nostack));
            }
            "mov-ds" => asm!("mov {save:x}, ds", "mov ds, {sel:x}", "mov ds, {save:x}",
                             sel = in(reg) KERNEL_DS, save = out(reg) _, options(nostack)),
            "mov-ss" => asm!("mov {save:x}, ss", "mov ss, {sel:x}", "mov ss, {save:x}",
                             sel = in(reg) KERNEL_DS, save = out(reg) _, options(nostack)),
            "far-call" => {
                // m16:32 far pointer: offset (our label 2:, below 4 GiB), selector 0x08.
                // Only a successful far call reaches 2:, having pushed CS and RIP.
                let mut ptr = [0u16; 3];
                asm!("lea {t}, [rip + 2f]",
                     "mov dword ptr [{p}], {t:e}",
                     "mov word ptr [{p} + 4], {sel:x}",
                     "call fword ptr [{p}]",
                     "2:",
                     "add rsp, 16",
                     p = in(reg) ptr.as_mut_ptr(), t = out(reg) _, sel = in(reg) KERNEL_CS);
            }
            "int-gate" => asm!("int 0x0d", options(nomem, nostack)),
            "read-kernel" => {
                let v: u64;
                asm!("mov {v}, qword ptr [{p}]", p = in(reg) KERNEL_ADDR, v = out(reg) v,
                     options(nostack));
                println!("attack read-kernel: read {:#x}", v);
            }
            "write-kernel" => asm!("mov qword ptr [{p}], {v}", p = in(reg) GDT_DIRECT_MAP,
                                   v = in(reg) 0u64, options(nostack)),
            "efault-write" => return efault(name, syscall3(SYS_WRITE, 1, KERNEL_ADDR, 16)),
            "efault-read" => return efault(name, syscall3(SYS_READ, 0, KERNEL_ADDR, 16)),
            "efault-unmapped" => return efault(name, syscall3(SYS_WRITE, 1, UNMAPPED, 16)),
            "efault-gettimeofday" => {
                return efault(name, gettimeofday_raw(KERNEL_ADDR as *mut u8, core::ptr::null_mut()))
            }
            "efault-straddle" => return efault(name, syscall3(SYS_WRITE, 1, STRADDLE, 16)),
            "sibling-read" => {
                let Some(addr) = args.get(2).and_then(|a| parse_hex(a)) else {
                    return usage();
                };
                let v: u64;
                asm!("mov {v}, qword ptr [{p}]", p = in(reg) addr, v = out(reg) v,
                     options(nostack, readonly));
                if v ^ core::hint::black_box(MASK) == SECRET_MASKED {
                    println!("attack sibling-read: NOT contained (read the parent's secret)");
                    return 1;
                }
                println!("attack sibling-read: contained (own memory)");
                return 0;
            }
            "fake-syscall" => {
                // Jump straight to the kernel's syscall entry (ADDR) with a
                // forged, non-canonical return address in RCX and IOPL 3 in
                // R11. On hardware the fetch from a supervisor page is a #PF.
                // On PVM it looks exactly like a `syscall` arriving at LSTAR,
                // so the kernel must refuse to "return" there.
                let Some(addr) = args.get(2).and_then(|a| parse_hex(a)) else {
                    return usage();
                };
                asm!("mov rcx, {bad}", "mov r11, 0x3202", "jmp rdx",
                     bad = const 0x8000_0000_0000u64, in("rdx") addr, in("rax") 39u64,
                     options(noreturn));
            }
            "vdso-write" => return vdso_write(),
            "vdso-check" => return vdso_check(),
            "bench-hook" => return bench_hook(),
            "lstar-leak" => return lstar_leak(),
            "vdso-kwrite" => return vdso_kwrite(),
            "bench-null-on" => {
                // lstar-leak's child: the null entry on, then exit through
                // int 0x80 (a `syscall` would now return at once) without
                // switching it back.
                asm!("int 0x80", inlateout("rax") SYS_BENCH_NULL_ENTRY => _, in("rdi") 1usize);
                asm!("int 0x80", in("rax") 60usize, in("rdi") 0usize, options(noreturn));
            }
            "mmap-zero" => return mmap_zero(),
            "mmap-exhaust" => return mmap_exhaust(),
            "tf-syscall" => {
                // Single-step a `syscall`: RFLAGS.TF set, then the call. The
                // kernel must not be single-stepped (SFMASK clears TF on
                // entry) nor trip over a #DB on its first instruction;
                // back in ring 3 the trap is ours: SIGTRAP, as on Linux.
                asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq", "syscall", "nop",
                     "pushfq", "and qword ptr [rsp], ~0x100", "popfq",
                     inlateout("rax") 39usize => _, lateout("rcx") _, lateout("r11") _);
                println!("attack tf-syscall: NOT contained (no #DB after the syscall)");
                return 1;
            }
            "nt-flag" => return nt_flag(),
            // A breakpoint trap: SIGTRAP, reported at the int3 itself (the
            // CPU's RIP is already past it).
            "int3" => asm!("int3", options(nomem, nostack)),
            // Single-stepping `int 0x80`: the trap is a #DB after the call
            // returns — a debug trap, not a gate's DPL (SIGTRAP).
            "tf-int80" => {
                asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq", "int 0x80", "nop",
                     "pushfq", "and qword ptr [rsp], ~0x100", "popfq",
                     inlateout("rax") 39usize => _);
                println!("attack tf-int80: NOT contained (no #DB after int 0x80)");
                return 1;
            }
            "spin" => return spin(),
            // Ring 3 never gives the CPU back: only the timer takes it.
            "spin-loop" => loop {
                core::hint::spin_loop()
            },
            _ => return usage(),
        }
    }
    println!("attack {}: NOT contained", name);
    1
}

const SYS_MMAP: usize = guest_user::nr::MMAP;
const SYS_CLOCK_GETTIME: usize = guest_user::nr::CLOCK_GETTIME;
const PROT_RWX: usize = 7;
const PROT_RW: usize = 3;
const MAP_PRIVATE_ANON: usize = 0x02 | 0x20;
const MAP_FIXED: usize = 0x10;
use guest_user::EPERM;
const SYS_BENCH_NULL_ENTRY: usize = guest_user::nr::BENCH_NULL_ENTRY;

fn mmap(addr: usize, len: usize, prot: usize, flags: usize) -> isize {
    // SAFETY: anonymous mappings; the kernel checks every argument.
    unsafe { syscall6(SYS_MMAP, addr, len, prot, flags, usize::MAX, 0) }
}

/// Map private read-write-execute pages over the shared vvar page and vDSO
/// (MAP_FIXED), fill the vDSO's place with `exit(42)` behind a NOP sled and
/// the vvar's with garbage, then run a child that reads the clock through
/// *its* vDSO. Linux semantics: the mapping replaces them here only, so the
/// child's clock works and it exits 0; a shared page written through would
/// make it exit 42 or read a forged clock.
fn vdso_write() -> i32 {
    use vmm_abi::layout::{PAGE_SIZE, VDSO_MAX_PAGES, VVAR_USER};
    let len = ((1 + VDSO_MAX_PAGES) * PAGE_SIZE) as usize;
    let r = mmap(VVAR_USER as usize, len, PROT_RWX, MAP_FIXED | MAP_PRIVATE_ANON);
    if r < 0 {
        println!("attack vdso-write: contained (mmap refused, {})", r);
        return 0;
    }
    // mov eax, 60; mov edi, 42; syscall — exit(42)
    const EXIT42: [u8; 12] = [0xb8, 60, 0, 0, 0, 0xbf, 42, 0, 0, 0, 0x0f, 0x05];
    // SAFETY: the pages were just mapped read-write at r.
    unsafe {
        let p = r as *mut u8;
        core::ptr::write_bytes(p, 0xff, PAGE_SIZE as usize); // a forged vvar
        let code = p.add(PAGE_SIZE as usize);
        let sled = len - PAGE_SIZE as usize - EXIT42.len();
        core::ptr::write_bytes(code, 0x90, sled);
        core::ptr::copy_nonoverlapping(EXIT42.as_ptr(), code.add(sled), EXIT42.len());
    }
    let pid = spawn("attack", &["attack", "vdso-check"]);
    let mut status = 0;
    if pid < 0 || wait4(pid, &mut status, 0) != pid {
        println!("attack vdso-write: could not run the check ({})", pid);
        return 1;
    }
    match (wifexited(status), wexitstatus(status)) {
        (true, 0) => {
            println!("attack vdso-write: contained (private copy; others' vDSO and clock untouched)");
            0
        }
        (true, 42) => {
            println!("attack vdso-write: NOT contained (a sibling ran the injected code)");
            1
        }
        _ => {
            println!(
                "attack vdso-write: NOT contained (the sibling's clock is forged, status {:#x})",
                status
            );
            1
        }
    }
}

/// The clock through this process's vDSO, beside the system call's.
fn vdso_check() -> i32 {
    const CLOCK_MONOTONIC: usize = 1;
    let Some(f) = vdso_sym("__vdso_clock_gettime") else {
        return 2;
    };
    // SAFETY: the vDSO's clock_gettime has the C signature.
    let f: extern "C" fn(usize, *mut u64) -> i32 = unsafe { core::mem::transmute(f) };
    let (mut a, mut b) = ([0u64; 2], [0u64; 2]);
    // SAFETY: b is a valid timespec.
    let r = unsafe { syscall2(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, b.as_mut_ptr() as usize) };
    if f(CLOCK_MONOTONIC, a.as_mut_ptr()) != 0 || r != 0 {
        return 3;
    }
    // Within a second of each other and a sane nanosecond field.
    if a[1] >= 1_000_000_000 || a[0].abs_diff(b[0]) > 1 {
        return 4;
    }
    0
}

/// `bench_null_entry(1)` would point LSTAR at a bare `sysretq` for every
/// process. Only a kernel booted for `vmm bench` offers it: -EPERM here.
fn bench_hook() -> i32 {
    // SAFETY: a system call; if it succeeds, undone below.
    let r = unsafe { syscall1(SYS_BENCH_NULL_ENTRY, 1) };
    if r == -EPERM {
        println!("attack bench-hook: contained (-EPERM: not booted with `bench`)");
        return 0;
    }
    // It worked: switch back through int 0x80, which has its own entry.
    // SAFETY: int 0x80 is the kernel's DPL-3 gate.
    unsafe { asm!("int 0x80", inlateout("rax") SYS_BENCH_NULL_ENTRY => _, in("rdi") 0usize) };
    println!("attack bench-hook: NOT contained (returned {})", r);
    1
}

/// Have the kernel write into the shared, read-only vvar and vDSO pages:
/// system calls that store a result (uname, gettimeofday, clock_gettime,
/// rt_sigaction's old action, read) given pointers into them. Ring 3 may not
/// write there, and neither may ring 0 on its behalf (CR0.WP): each must be
/// -EFAULT, and the pages, ours and a sibling's, unchanged.
fn vdso_kwrite() -> i32 {
    use vmm_abi::layout::{VDSO_USER, VVAR_USER};
    let page = |va: u64| {
        let mut b = [0u8; 512];
        // SAFETY: the vvar and vDSO pages are mapped readable in every process.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, b.as_mut_ptr(), b.len()) };
        b
    };
    let (vvar, vdso) = (page(VVAR_USER), page(VDSO_USER));
    let (vv, vd) = (VVAR_USER as usize, VDSO_USER as usize);
    // SAFETY: system calls with pointers the kernel must check.
    let tries: [(&str, isize); 6] = unsafe {
        [
            ("uname(vDSO)", syscall1(guest_user::nr::UNAME, vd)),
            ("gettimeofday(vvar)", syscall2(guest_user::SYS_GETTIMEOFDAY, vv, 0)),
            ("clock_gettime(vvar)", syscall2(SYS_CLOCK_GETTIME, 0, vv + 8)),
            ("clock_gettime(vDSO)", syscall2(SYS_CLOCK_GETTIME, 1, vd + 64)),
            (
                "rt_sigaction(old=vDSO)",
                syscall3(guest_user::nr::RT_SIGACTION, 2, 0, vd + 128),
            ),
            (
                "arch_prctl(GET_FS, vvar)",
                syscall2(guest_user::nr::ARCH_PRCTL, 0x1003, vv),
            ),
        ]
    };
    let mut ok = true;
    for (what, r) in tries {
        if r != -EFAULT {
            println!("attack vdso-kwrite: {} returned {}, not -EFAULT", what, r);
            ok = false;
        }
    }
    if page(VVAR_USER) != vvar || page(VDSO_USER) != vdso {
        println!("attack vdso-kwrite: NOT contained (the kernel wrote into the shared pages)");
        return 1;
    }
    let pid = spawn("attack", &["attack", "vdso-check"]);
    let mut status = 0;
    if pid < 0 || wait4(pid, &mut status, 0) != pid || !wifexited(status) || wexitstatus(status) != 0 {
        println!(
            "attack vdso-kwrite: NOT contained (a sibling's vDSO clock fails: {:#x})",
            status
        );
        return 1;
    }
    if !ok {
        println!("attack vdso-kwrite: NOT contained (a write into a read-only page succeeded)");
        return 1;
    }
    println!("attack vdso-kwrite: contained (-EFAULT; the shared pages unchanged)");
    0
}

/// Booted with `bench`: a child points LSTAR at the null entry (its own,
/// per process) and exits without switching it back. The kernel restores
/// LSTAR per process on each switch, so our next `syscall` must still reach
/// the kernel: getpid returns 1 (we are init), not the 39 in RAX that the
/// null entry hands back untouched.
fn lstar_leak() -> i32 {
    let pid = spawn("attack", &["attack", "bench-null-on"]);
    let mut status = 0;
    if pid < 0 || wait4(pid, &mut status, 0) != pid || !wifexited(status) {
        println!("attack lstar-leak: the child failed ({}, status {:#x})", pid, status);
        return 1;
    }
    let r: isize;
    // SAFETY: getpid through `syscall`.
    unsafe {
        asm!("syscall", inlateout("rax") 39isize => r, lateout("rcx") _, lateout("r11") _);
    }
    if r == 39 {
        // The child's null entry is ours now: undo it through int 0x80.
        // SAFETY: int 0x80 is the kernel's DPL-3 gate.
        unsafe { asm!("int 0x80", inlateout("rax") SYS_BENCH_NULL_ENTRY => _, in("rdi") 0usize) };
        println!("attack lstar-leak: NOT contained (a child's null entry swallowed our getpid)");
        return 1;
    }
    println!(
        "attack lstar-leak: contained (our syscall reached the kernel: getpid {})",
        r
    );
    0
}

/// Map page 0 (and its neighbours below 64 KiB), where a NULL pointer lands.
fn mmap_zero() -> i32 {
    for addr in [0, 0x1000, 0xf000] {
        let r = mmap(addr, 4096, PROT_RW, MAP_FIXED | MAP_PRIVATE_ANON);
        if r != -EPERM {
            println!(
                "attack mmap-zero: NOT contained (mmap at {:#x} returned {:#x})",
                addr, r
            );
            return 1;
        }
    }
    println!("attack mmap-zero: contained (-EPERM below mmap_min_addr)");
    0
}

/// mmap without MAP_FIXED, 4 GiB at a time, far more than memory: each
/// call fails. If a failing call still moved the kernel's mmap cursor, 256
/// of them would walk it past the vDSO and the stack (the next mapping would
/// land on them). It must not move: the next small mapping lands low in the
/// mmap area, and the stack and the vDSO keep working.
fn mmap_exhaust() -> i32 {
    use vmm_abi::layout::user::{MMAP_BASE, MMAP_END};
    for _ in 0..300 {
        let r = mmap(0, 1 << 32, PROT_RW, MAP_PRIVATE_ANON);
        if r >= 0 {
            println!("attack mmap-exhaust: skipped (4 GiB fit in memory)");
            return 0;
        }
    }
    let r = mmap(0, 4096, PROT_RW, MAP_PRIVATE_ANON);
    let inside = (MMAP_BASE as isize..(MMAP_END / 2 + MMAP_BASE / 2) as isize).contains(&r);
    if inside && vdso_check() == 0 {
        println!(
            "attack mmap-exhaust: contained (failed maps left the cursor; next map at {:#x})",
            r
        );
        0
    } else {
        println!("attack mmap-exhaust: NOT contained (next map at {:#x})", r);
        1
    }
}

/// Enter the kernel through `syscall` with RFLAGS.NT set (`popfq` may set it
/// in ring 3), in a wait4 that makes it start a new process: that process's
/// first return to ring 3 is an `iretq`, which is a #GP in long mode while NT
/// is set. Contained if SFMASK clears NT: the child runs, we reap it, exit 0.
/// Uncontained, the kernel dies (vmm status 240). Hardware semantics only:
/// on PVM the call arrives as a #PF, whose delivery clears NT anyway.
fn nt_flag() -> i32 {
    let pid = spawn("hello", &["hello", "--no-int80"]);
    if pid < 0 {
        println!("attack nt-flag: spawn failed: {}", pid);
        return 1;
    }
    let mut status = 0i32;
    let ret: isize;
    // SAFETY: wait4(pid, &status, 0, NULL) with NT (bit 14) set for the call;
    // the flags are restored from the stack right after it.
    unsafe {
        asm!("pushfq", "pushfq", "or qword ptr [rsp], 0x4000", "popfq", "syscall", "popfq",
             inlateout("rax") 61isize => ret, in("rdi") pid, in("rsi") &mut status as *mut i32,
             in("rdx") 0usize, in("r10") 0usize, lateout("rcx") _, lateout("r11") _);
    }
    if ret == pid && guest_user::wifexited(status) && guest_user::wexitstatus(status) == 0 {
        println!("attack nt-flag: contained (the kernel cleared NT; the child ran and exited 0)");
        0
    } else {
        println!(
            "attack nt-flag: NOT contained (wait4 returned {}, status {:#x})",
            ret, status
        );
        1
    }
}

/// `spin`: a child spins in ring 3 forever, never making a system call.
/// Contained if we still get the CPU back after sched_yield (the timer
/// preempts the spinner at the end of its slice) and the kernel's CPU-time
/// limit (`cpulimit=`, like RLIMIT_CPU) kills the spinner with SIGXCPU.
/// Uncontained, this process never runs again and the VM hits --timeout.
fn spin() -> i32 {
    // setrlimit(RLIMIT_CPU, {1 s, 1 s}), inherited by the child (`ulimit -t 1`).
    let limit = [1u64, 1u64];
    // SAFETY: a valid pointer to two u64s.
    let r = unsafe { syscall2(guest_user::nr::SETRLIMIT, 0, limit.as_ptr() as usize) };
    if r != 0 {
        println!("attack spin: setrlimit(RLIMIT_CPU) failed: {}", r);
        return 1;
    }
    let pid = spawn("attack", &["attack", "spin-loop"]);
    if pid < 0 {
        println!("attack spin: spawn failed: {}", pid);
        return 1;
    }
    // The child is runnable: yielding hands it the CPU, which it never yields.
    guest_user::sched_yield();
    let mut status = 0i32;
    let ret = wait4(pid, &mut status, 0);
    if ret == pid && guest_user::wifsignaled(status) && guest_user::wtermsig(status) == guest_user::SIGXCPU {
        println!("attack spin: contained (the timer preempted the spinner; SIGXCPU at its CPU-time limit)");
        0
    } else {
        println!(
            "attack spin: NOT contained (wait4 returned {}, status {:#x})",
            ret, status
        );
        1
    }
}

fn efault(name: &str, ret: isize) -> i32 {
    if ret == -EFAULT {
        println!("attack {}: contained (-EFAULT)", name);
        0
    } else {
        println!("attack {}: NOT contained (returned {})", name, ret);
        1
    }
}

fn parse_hex(s: &str) -> Option<usize> {
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    usize::from_str_radix(s, 16).ok()
}

fn usage() -> i32 {
    println!("usage: attack NAME [ARG]\nattacks: {}", NAMES);
    2
}
