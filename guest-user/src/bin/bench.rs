//! `bench [--iters N] [--raw]`: system-call round trips timed with the TSC.
//!
//! Each row times `N` iterations one at a time (`lfence; rdtsc; lfence`
//! before, `rdtscp; lfence` after — or `lfence; rdtsc; lfence` where the CPU
//! lacks RDTSCP), keeps every iteration's cycles, and prints one line:
//!
//! ```text
//! row <id> <name> n=<N> median=<c> p10=<c> p90=<c> min=<c> max=<c>
//! samples <id> c1 c2 ...            (with --raw, in the order measured)
//! skip <id> <name> <reason>         (a row this kernel cannot run)
//! fill ....                         (row 5d's console writes: ignore)
//! ```
//!
//! Nothing is subtracted: row 0 is an empty timed region, the cost of the
//! timer itself. `vmm bench` boots this as init and parses the lines. The
//! program also runs on a Linux host (rows that need the guest kernel are
//! skipped there).
//!
//! `bench --yield-partner N` is row 6's partner: it calls sched_yield N times
//! and exits.
#![no_std]
#![no_main]

use core::arch::asm;
use core::fmt::Write;
use core::sync::atomic::Ordering::Relaxed;
use guest_user::{args, print, println, Global, StrBuf};
use guest_user::{sched_yield, spawn, syscall0, syscall1, syscall2, syscall3, wait4};

const SYS_OPEN: usize = guest_user::nr::OPEN;
const SYS_CLOCK_GETTIME: usize = guest_user::nr::CLOCK_GETTIME;
const SYS_BENCH_NULL_ENTRY: usize = guest_user::nr::BENCH_NULL_ENTRY;
const SYS_HYPERCALL_NULL: usize = guest_user::nr::HYPERCALL_NULL;
const O_WRONLY: usize = 1;
const CLOCK_MONOTONIC: usize = 1;

const DEFAULT_ITERS: usize = 200;
const MAX_SAMPLES: usize = 100_000;
/// Untimed calls before each row: page faults, caches, branch predictors.
const WARMUP: usize = 10;

static SAMPLES: Global<[u32; MAX_SAMPLES]> = Global::new([0; MAX_SAMPLES]);
static SORTED: Global<[u32; MAX_SAMPLES]> = Global::new([0; MAX_SAMPLES]);
static BUF: Global<[u8; 65536]> = Global::new([0; 65536]);
/// Row 5d's 4 KiB: 64 lines of `fill ....`.
static CONSOLE_BUF: Global<[u8; 4096]> = Global::new([0; 4096]);

/// Whether `rdtscp` may end a timed region (CPUID.80000001H:EDX[27]).
static HAVE_RDTSCP: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let a = args();
    let mut iters = DEFAULT_ITERS;
    let mut raw = false;
    let mut i = 1;
    while i < a.len() {
        match a[i] {
            "--yield-partner" => {
                let n = a.get(i + 1).and_then(|s| parse(s)).unwrap_or(0);
                for _ in 0..n {
                    sched_yield();
                }
                return 0;
            }
            "--iters" => match a.get(i + 1).and_then(|s| parse(s)) {
                Some(n) if n > 0 => {
                    iters = n.min(MAX_SAMPLES);
                    i += 1;
                }
                _ => return usage(),
            },
            "--raw" => raw = true,
            _ => return usage(),
        }
        i += 1;
    }
    HAVE_RDTSCP.store(has_rdtscp(), Relaxed);
    // syscount (501) exists only in the guest kernel: on Linux it is ENOSYS.
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    let in_guest = unsafe { syscall1(501, 39) } >= 0;
    println!(
        "bench: iters={} rdtscp={} kernel={}",
        iters,
        HAVE_RDTSCP.load(Relaxed) as u8,
        if in_guest { "vmm-guest" } else { "other" }
    );
    let big = (iters / 10).max(1);
    let b = Bench { raw };

    b.row("0", "rdtsc-overhead", iters, || {});

    // 1: the floor. While the null entry is on, every `syscall` returns at
    // once, so nothing may make a system call (print!) until it is off again.
    if in_guest {
        b.time("1", "null-syscall", || {
            // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
            unsafe { syscall1(SYS_BENCH_NULL_ENTRY, 1) };
            // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
            let null = || unsafe {
                asm!("syscall", inlateout("rax") 0usize => _, lateout("rcx") _, lateout("r11") _,
                     options(nostack));
            };
            for _ in 0..WARMUP {
                null();
            }
            let n = measure(iters, null);
            // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
            let off = unsafe { int80(SYS_BENCH_NULL_ENTRY, 0) };
            (n, off)
        });
    } else {
        b.skip("1", "null-syscall", "needs the guest kernel's syscall 502");
    }

    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    b.row("2", "getpid-syscall", iters, || unsafe {
        syscall0(39);
    });
    if in_guest {
        // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
        b.row("3", "getpid-int80", iters, || unsafe {
            int80(39, 0);
        });
    } else {
        b.skip("3", "getpid-int80", "Linux's int 0x80 is the i386 ABI");
    }

    let mut ts = [0u64; 2];
    let tsp = ts.as_mut_ptr() as usize;
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    b.row("4a", "clock_gettime-syscall", iters, || unsafe {
        syscall2(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, tsp);
    });
    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    b.row("4b", "gettimeofday-syscall", iters, || unsafe {
        syscall2(96, tsp, 0);
    });

    // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
    let fd = unsafe { syscall3(SYS_OPEN, c"/dev/null".as_ptr() as usize, O_WRONLY, 0) };
    if fd >= 0 {
        // SAFETY: the only reference; touch every page so no row pays for a fault.
        let buf = unsafe { BUF.get() };
        for (i, x) in buf.iter_mut().enumerate() {
            *x = i as u8;
        }
        let p = buf.as_ptr() as usize;
        let fd = fd as usize;
        // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
        b.row("5a", "write-1B-devnull", iters, || unsafe {
            syscall3(1, fd, p, 1);
        });
        // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
        b.row("5b", "write-4KiB-devnull", iters, || unsafe {
            syscall3(1, fd, p, 4096);
        });
        // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
        b.row("5c", "write-64KiB-devnull", big, || unsafe {
            syscall3(1, fd, p, 65536);
        });
    } else {
        for (id, name) in [
            ("5a", "write-1B-devnull"),
            ("5b", "write-4KiB-devnull"),
            ("5c", "write-64KiB-devnull"),
        ] {
            b.skip(id, name, "open(\"/dev/null\") failed");
        }
    }

    // 5d: to the console. The kernel hands the VMM the buffer where it lies
    // (one exit per write); the VMM's parser skips these `fill` lines.
    // SAFETY: the only reference.
    let con = unsafe { CONSOLE_BUF.get() };
    for (i, x) in con.iter_mut().enumerate() {
        *x = match i % 64 {
            0..4 => b"fill"[i % 64],
            63 => b'\n',
            _ => b'.',
        };
    }
    let cp = con.as_ptr() as usize;
    // SAFETY: a system call: the pointer argument points into a live buffer of ours (the kernel checks it anyway).
    b.row("5d", "write-4KiB-console", big, || unsafe {
        syscall3(1, 1, cp, 4096);
    });

    yield_row(&b, iters, in_guest);

    if in_guest {
        // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
        b.row("7", "hypercall-null", iters, || unsafe {
            syscall0(SYS_HYPERCALL_NULL);
        });
    } else {
        b.skip("7", "hypercall-null", "needs the guest kernel's syscall 503");
    }
    match guest_user::vdso_sym("__vdso_clock_gettime") {
        Some(f) => {
            // SAFETY: the vDSO's clock_gettime has the C signature.
            let f: extern "C" fn(usize, *mut u64) -> i32 = unsafe { core::mem::transmute(f) };
            let p = ts.as_mut_ptr();
            b.row("8", "vdso-clock_gettime", iters, || {
                f(CLOCK_MONOTONIC, p);
            });
        }
        None => b.skip(
            "8",
            "vdso-clock_gettime",
            "no vDSO (AT_SYSINFO_EHDR) in the auxiliary vector",
        ),
    }
    println!("bench: done");
    0
}

/// Row 6: a partner process yields back each time; one parent
/// `sched_yield` is a round trip through both processes (a switch pair).
fn yield_row(b: &Bench, iters: usize, in_guest: bool) {
    let (id, name) = ("6", "sched_yield-pingpong");
    if !in_guest {
        // On a multi-CPU Linux host the two would not alternate on one CPU.
        b.skip(id, name, "needs the guest kernel's spawn on one CPU");
        return;
    }
    // The partner yields once for each of the parent's calls (warm-up
    // included) and once more to let the parent's last call return.
    let mut n = StrBuf::<24>::new();
    let _ = write!(n, "{}", iters + WARMUP + 1);
    let pid = spawn("bench", &["bench", "--yield-partner", n.as_str()]);
    if pid < 0 {
        b.skip(id, name, "spawn failed");
        return;
    }
    b.row(id, name, iters, || {
        sched_yield();
    });
    let mut status = 0;
    wait4(pid, &mut status, 0);
}

struct Bench {
    raw: bool,
}

impl Bench {
    /// Time `f` `n` times (after a warm-up) and report.
    fn row(&self, id: &str, name: &str, n: usize, mut f: impl FnMut()) {
        for _ in 0..WARMUP {
            f();
        }
        let n = measure(n, f);
        self.report(id, name, n);
    }

    /// Like `row`, for a body that does its own warm-up and measuring and
    /// returns (samples taken, status of the clean-up call).
    fn time(&self, id: &str, name: &str, f: impl FnOnce() -> (usize, isize)) {
        let (n, st) = f();
        if st != 0 {
            println!("bench: row {} clean-up failed: {}", id, st);
        }
        self.report(id, name, n);
    }

    fn skip(&self, id: &str, name: &str, why: &str) {
        println!("skip {} {} {}", id, name, why);
    }

    fn report(&self, id: &str, name: &str, n: usize) {
        // SAFETY: two globals, one reference each; `measure` filled the first n.
        let (samples, sorted) = unsafe { (&SAMPLES.get()[..n], &mut SORTED.get()[..n]) };
        sorted.copy_from_slice(samples);
        sorted.sort_unstable();
        let pct = |q: usize| sorted[((q * n).div_ceil(100)).max(1) - 1];
        println!(
            "row {} {} n={} median={} p10={} p90={} min={} max={}",
            id,
            name,
            n,
            pct(50),
            pct(10),
            pct(90),
            sorted[0],
            sorted[n - 1]
        );
        if self.raw {
            // One write per chunk of numbers: every byte is a VM exit in the guest.
            let mut line = StrBuf::<240>::new();
            let _ = write!(line, "samples {}", id);
            for s in samples {
                if line.as_str().len() > 220 {
                    print!("{}", line.as_str());
                    line = StrBuf::new();
                }
                let _ = write!(line, " {}", s);
            }
            println!("{}", line.as_str());
        }
    }
}

/// Time `n` calls of `f` into SAMPLES (no warm-up); returns n.
#[inline(always)]
fn measure(n: usize, mut f: impl FnMut()) -> usize {
    // SAFETY: the only reference while it lives.
    let samples = unsafe { &mut SAMPLES.get()[..n] };
    for s in samples.iter_mut() {
        let t0 = start();
        f();
        let t1 = stop();
        *s = t1.wrapping_sub(t0).min(u32::MAX as u64) as u32;
    }
    n
}

#[inline(always)]
fn start() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc is unprivileged (CR4.TSD is clear); lfence orders it.
    unsafe {
        asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

#[inline(always)]
fn stop() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: as above; rdtscp only where CPUID says it exists.
    unsafe {
        if HAVE_RDTSCP.load(Relaxed) {
            asm!("rdtscp", "lfence", out("eax") lo, out("edx") hi, out("ecx") _, options(nomem, nostack, preserves_flags))
        } else {
            asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
        }
    };
    (hi as u64) << 32 | lo as u64
}

fn has_rdtscp() -> bool {
    // Leaf 0x8000_0000 says which extended leaves exist.
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0
}

/// A system call through `int 0x80` (the guest kernel's: the 64-bit table
/// and registers).
#[inline(always)]
unsafe fn int80(nr: usize, a: usize) -> isize {
    let ret;
    asm!("int 0x80", inlateout("rax") nr as isize => ret, in("rdi") a,
         lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

fn parse(s: &str) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((c - b'0') as usize)?;
    }
    Some(n)
}

fn usage() -> i32 {
    println!("usage: bench [--iters N] [--raw] | bench --yield-partner N");
    2
}
