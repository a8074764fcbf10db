//! `sysfuzz [--seed N] [--calls N] [--trace-from K] [--profile] [--read-stdin]`: a system-call fuzzer.
//!
//! `--seed` defaults to the TSC, `--calls` to 10,000; `--trace-from K` prints
//! every call from the K-th on (to find the one that broke something, rerun
//! the printed seed with it); `--profile` prints the costliest numbers.
//!
//! Run as a supervisor (the default), it prints the seed, spawns itself as
//! `sysfuzz --child ...` (syscall 500) to make N random system calls, waits
//! for it, then checks that the kernel still serves everyone else: getpid,
//! write, a fresh `hello` that exits 0, a child's exit status. It exits 0
//! only if the fuzzer exited 0 (never killed) and every check passed.
//!
//! The fuzzer draws numbers from 0..600, the implemented ones, the kernel's
//! own 500..=503, and huge or negative ones; each argument from a class:
//! small ints, pointers into its own scratch buffer, its read-only text and
//! rodata, kernel addresses (image and direct map), non-canonical pointers,
//! edge pointers (top of the user half, page 0, the vvar/vDSO pages), huge
//! lengths. RFLAGS is randomised too (DF, AC, NT and arithmetic flags: the
//! entry must not trust them), and one call in eight goes through `int 0x80`
//! instead of `syscall`. After each call it checks that every register
//! the syscall ABI preserves (all but rax, rcx, r11) came back unchanged.
//!
//! What it never does (the filter; each skipped draw is counted and redrawn):
//! - exit (60), exit_group (231): they would end the fuzzer. Its `--exit`
//!   children make `exit` with a random 64-bit code instead.
//! - read (0) from fd 0 unless `--read-stdin` (the tests pass it, with
//!   stdin at end of file): at a terminal it would wait for a key.
//! - munmap of its own image or stack, and mmap MAP_FIXED over its own
//!   image (MAP_FIXED replaces pages with zeroed ones): it would kill itself.
//! - spawn (500) beyond a budget of 28 children per run, spread over it
//!   (the kernel has 32 process slots);
//!   the children are its own `--exit` mode, `hello`, `attack`, the vDSO,
//!   or names that do not exist, and are reaped with wait4.
//!
//! Adjusted (the call is made with a tamer argument, and counted):
//! - write (1) to fd 1/2 goes to fd 3 (/dev/null: the same copy-in path)
//!   and writev (20) to fd 1/2 gets an iovec array whose buffers are never
//!   readable memory, so the fuzzer prints no garbage.
//! - mmap (9) lengths in (64 KiB, 4 GiB] and brk (12) growth over 64 KiB are
//!   cut to under 64 KiB, and its mappings are dropped every 8 MiB: the
//!   kernel maps (and zeroes) eagerly and has no per-process limit, so one
//!   call could take all of guest memory and seconds of emulated ring 0;
//!   non-MAP_FIXED mmaps stop after 256 GiB of address space (the kernel
//!   puts no upper bound on them, a known bug).
//! - nanosleep (35) and clock_nanosleep (230) get a bad pointer or 1 µs,
//!   setrlimit(RLIMIT_CPU) (160) a bad pointer or no limit: a random
//!   timespec could sleep for years, a random limit end it with SIGXCPU.
//!
//! Nothing else is acceptable: the fuzzer must exit 0. Killed by a signal
//! means the kernel broke its memory or registers (it never faults on
//! purpose); a clobbered register is reported as a FINDING and fails the run.
//! The kernel must survive everything: a kernel panic ends the VM (status 240).
#![no_std]
#![no_main]

use core::arch::asm;
use guest_user::*;

// ---------------------------------------------------------------- layout

// The process layout of the boot contract (abi/src/layout.rs).
use vmm_abi::layout::user::{BRK_MAX, MMAP_BASE, STACK_PAGES, STACK_TOP};
use vmm_abi::layout::{PAGE_SIZE as PAGE, VDSO_USER, VVAR_USER};
/// Where the program image starts (guest-user/user.ld).
const IMAGE_START: u64 = 0x40_0000;
/// The kernel image and the direct map (abi/src/layout.rs).
const KERNEL_TEXT: u64 = vmm_abi::layout::KERNEL_BASE + vmm_abi::layout::KERNEL_PHYS_LOAD;
const DIRECT_MAP: u64 = vmm_abi::layout::DIRECT_MAP_BASE;
/// The highest address system calls accept + 1 (guest/src/usercopy.rs).
const TASK_SIZE_MAX: u64 = STACK_TOP;

extern "C" {
    /// End of the program image, page aligned (user.ld).
    static __user_end: u8;
}

fn image_end() -> u64 {
    core::ptr::addr_of!(__user_end) as u64
}

/// The fuzzer's own memory, which it hands to the kernel as "valid" pointers.
/// Offsets are drawn below `SCRATCH_USE`; the slack after it absorbs the
/// largest fixed-size write a call makes past a pointer (uname: 390 bytes).
const SCRATCH_USE: usize = 64 * 1024;
#[repr(C, align(4096))]
struct Scratch([u8; SCRATCH_USE + 4096]);
static SCRATCH: Global<Scratch> = Global::new(Scratch([0; SCRATCH_USE + 4096]));

fn scratch() -> u64 {
    // Only the address is taken: the kernel writes there, we never read it as data.
    SCRATCH.as_ptr() as u64
}

/// Where planted structures (strings, argv, iovecs) go inside the scratch
/// buffer: the last 4 KiB of the used part.
const PLANT: u64 = (SCRATCH_USE as u64) - 4096;

/// Read-only bytes, printable, that a pointer may name (writes there must fail).
static RODATA: [u8; 64] = *b"sysfuzz: read-only bytes the kernel may read but never write...\n";

// ---------------------------------------------------------------- PRNG

/// splitmix64: one u64 of state, every seed is a good one. (A `Cell`, so
/// that a draw can be an argument of another: `r.pick(&[r.below(8), 1])`.)
struct Rng(core::cell::Cell<u64>);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(core::cell::Cell::new(seed))
    }
    fn next(&self) -> u64 {
        self.0.set(self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15));
        let mut z = self.0.get();
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

// ---------------------------------------------------------------- numbers and arguments

/// The numbers the kernel implements (the boot contract's list; exit and
/// exit_group are filtered later). 502 and 503 answer -EPERM: the kernel is
/// not booted with `bench`.
use vmm_abi::syscalls::SYSCALLS as IMPLEMENTED;

fn draw_nr(r: &Rng) -> u64 {
    match r.below(10) {
        0..=3 => IMPLEMENTED[r.below(IMPLEMENTED.len() as u64) as usize].nr as u64,
        4..=7 => r.below(600),
        8 => 500 + r.below(4),
        _ => r.pick(&[
            u64::MAX,
            (-(r.below(600) as i64)) as u64,
            1 << 32,
            (1 << 32) | 39,
            0x8000_0000,
            0xffff_ffff,
            i64::MIN as u64,
            511,
            512,
            r.next(),
        ]),
    }
}

const EDGE: [u64; 12] = [
    0x7fff_ffff_eff8,
    0x7fff_ffff_f000 - 1,
    0x7fff_ffff_f000,
    0x7fff_ffff_fff8,
    0x7fff_ffff_ffff,
    0,
    8,
    0x1000,
    0x10000,
    VVAR_USER,
    VDSO_USER,
    VDSO_USER + 0x800,
];

const HUGE: [u64; 9] = [
    u64::MAX,
    1 << 63,
    1 << 32,
    (1 << 32) - 1,
    1 << 31,
    (1 << 31) - 1,
    i64::MAX as u64,
    TASK_SIZE_MAX,
    u64::MAX - 4095,
];

/// One argument, from one of the classes.
fn draw_arg(r: &Rng) -> u64 {
    match r.below(11) {
        // small ints (fds, flags, counts, small lengths)
        0 | 1 => r.pick(&[0, 1, 2, 3, 4, 16, 4096, u64::MAX, r.below(64), r.below(8192)]),
        // valid pointers: into the scratch buffer
        2 | 3 => scratch() + r.below(SCRATCH_USE as u64),
        // our own read-only memory: text, rodata
        4 => r.pick(&[IMAGE_START, IMAGE_START + r.below(4096), RODATA.as_ptr() as u64]),
        // kernel addresses: image, direct map (GDT, page tables, anywhere in RAM)
        5 => r.pick(&[
            KERNEL_TEXT,
            KERNEL_TEXT + r.below(1 << 24),
            DIRECT_MAP,
            DIRECT_MAP + 0x1000,
            DIRECT_MAP + 0x8000,
            DIRECT_MAP + r.below(64 << 20),
            0xffff_ffff_ffff_f000,
        ]),
        // non-canonical
        6 => r.pick(&[
            0x0000_8000_0000_0000,
            0x8000_0000_0000_0000,
            0x0000_8000_0000_0000 + r.below(1 << 40),
            0xdead_beef_0000_0000 | r.below(1 << 32),
        ]),
        7 => r.pick(&EDGE),
        // huge lengths
        8 => r.pick(&HUGE),
        // the mmap area, where earlier calls may have mapped pages
        9 => MMAP_BASE + PAGE * r.below(4096) + r.pick(&[0, 0, r.below(PAGE)]),
        _ => r.next(),
    }
}

/// Plausible mmap flags: combinations of the bits Linux defines, sometimes random.
fn draw_mmap_flags(r: &Rng) -> u64 {
    if r.chance(8) {
        return draw_arg(r);
    }
    let bits = [0x1, 0x2, 0x10, 0x20, 0x100, 0x4000, 0x8000, 0x10_0000];
    let mut f = 0x20 | r.pick(&[1, 2]); // MAP_ANONYMOUS | SHARED/PRIVATE, mostly
    for b in bits {
        if r.chance(6) {
            f ^= b;
        }
    }
    f
}

// ---------------------------------------------------------------- the call itself

/// Canaries for the registers the syscall ABI preserves but passes no argument in.
const CANARY: [u64; 5] = [
    0x1111_2222_3333_4444,
    0x5555_6666_7777_8888,
    0x9999_aaaa_bbbb_cccc,
    0xdddd_eeee_ffff_0001,
    0x0123_4567_89ab_cdef,
];

/// RFLAGS bits ring 3 may set and we randomise: CF PF AF ZF SF, DF, OF, NT, AC.
/// Never TF (a single-step trap would kill us).
const FUZZ_FLAGS: [u64; 9] = [0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800, 0x4000, 0x4_0000];

/// Make the call with `flags` or'ed into RFLAGS, through `syscall` or (if
/// `int80`) `int 0x80`; the result and whether every preserved register (rdi
/// rsi rdx r10 r8 r9, rbx r12-r15) came back intact.
fn fuzz_syscall(nr: u64, a: [u64; 6], flags: u64, int80: bool) -> (i64, bool) {
    let (mut rdi, mut rsi, mut rdx, mut r10, mut r8, mut r9) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    let (mut r12, mut r13, mut r14, mut r15) = (CANARY[0], CANARY[1], CANARY[2], CANARY[3]);
    let rbx: u64;
    let ret: i64;
    // SAFETY: the arguments were filtered so the kernel cannot touch the
    // memory this program runs on; every register is declared; the flags
    // set for the call (DF among them) are cleared before Rust code runs.
    // rbx is LLVM's, so it is saved by hand; rcx (clobbered by `syscall`
    // anyway) takes its canary in and brings back what the kernel left.
    // Bit 63 of r11 picks the instruction; `jrcxz` branches on it without
    // touching the flags just loaded.
    unsafe {
        asm!(
            "push rbx",
            "mov rbx, rcx",
            "mov rcx, r11",
            "shr rcx, 63",
            "btr r11, 63",
            "pushfq",
            "or qword ptr [rsp], r11",
            "popfq",
            "jrcxz 2f",
            "int 0x80",
            "jmp 3f",
            "2:",
            "syscall",
            "3:",
            "pushfq",
            "and qword ptr [rsp], -0x44401", // clear DF, NT, AC again
            "popfq",
            "mov rcx, rbx",
            "pop rbx",
            inlateout("rax") nr as i64 => ret,
            inout("rdi") rdi, inout("rsi") rsi, inout("rdx") rdx,
            inout("r10") r10, inout("r8") r8, inout("r9") r9,
            inout("r12") r12, inout("r13") r13, inout("r14") r14, inout("r15") r15,
            // In fixed registers: a `reg` operand may be given rbx itself.
            inlateout("rcx") CANARY[4] => rbx,
            inlateout("r11") flags | (u64::from(int80) << 63) => _,
        );
    }
    let ok = [rdi, rsi, rdx, r10, r8, r9] == a && [r12, r13, r14, r15, rbx] == CANARY;
    (ret, ok)
}

// ---------------------------------------------------------------- the fuzzer

/// What the fuzzer's nanosleep calls ask for: 1 µs.
static TAME_SLEEP: [u64; 2] = [0, 1000];
/// What its setrlimit(RLIMIT_CPU) calls set: RLIM_INFINITY.
static NO_CPU_LIMIT: [u64; 2] = [u64::MAX, u64::MAX];
const SYS_MMAP: u64 = guest_user::nr::MMAP as u64;
const SYS_MUNMAP: u64 = guest_user::nr::MUNMAP as u64;
const SYS_BRK: u64 = guest_user::nr::BRK as u64;
const SYS_WRITEV: u64 = guest_user::nr::WRITEV as u64;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MIB: u64 = 1 << 20;
/// The most one mmap or brk may map (see the filter above).
const GROW_MAX: u64 = 64 * 1024;
/// Children a run may spawn (4 more at its start), and how many may be alive at once.
const SPAWN_BUDGET: u64 = 24;
const LIVE_MAX: u64 = 4;
/// Mapped bytes (by our count) at which the fuzzer drops all its mappings.
const MAPPED_MAX: u64 = 8 * MIB;
/// Address space non-MAP_FIXED mmaps may consume in all.
const MMAP_AREA_BUDGET: u64 = 256 << 30;

#[derive(Default)]
struct Stats {
    made: u64,
    filtered: u64,
    adjusted: u64,
    ok: u64,
    enosys: u64,
    efault: u64,
    einval: u64,
    other_err: u64,
    spawned: u64,
    reaped: u64,
    cleanups: u64,
    clobbered: u64,
    int80: u64,
}

struct Fuzzer {
    rng: Rng,
    st: Stats,
    brk0: u64,
    mapped: u64,
    mmap_area_used: u64,
    live: u64,
    calls: u64,
    trace_from: u64,
    profile: bool,
    /// `--read-stdin`: read (0) may use fd 0 (stdin is at end of file).
    read_stdin: bool,
    me: &'static str,
}

/// TSC cycles spent per system-call number (`--profile`); the last slot
/// collects everything from 600 up.
const PROFILE_SLOTS: usize = 601;
static PROFILE: Global<[u64; PROFILE_SLOTS]> = Global::new([0; PROFILE_SLOTS]);

/// Does [a, a + len) overlap [lo, hi)? (len 0 counts as one byte, wrapping as everything.)
fn overlaps(a: u64, len: u64, lo: u64, hi: u64) -> bool {
    let end = a.saturating_add(len.max(1));
    a < hi && end > lo
}

impl Fuzzer {
    /// Give back everything mapped beside the image and stack: below the
    /// image, and from its end up to the stack (brk area, mmap area, vDSO).
    fn cleanup(&mut self) {
        let stack_lo = STACK_TOP - STACK_PAGES * PAGE;
        // SAFETY: neither range holds memory this program uses.
        unsafe {
            syscall2(SYS_MUNMAP as usize, 0, IMAGE_START as usize);
            syscall2(
                SYS_MUNMAP as usize,
                image_end() as usize,
                (stack_lo - image_end()) as usize,
            );
        }
        self.mapped = 0;
        self.st.cleanups += 1;
    }

    /// Wait for every child (they all end by themselves).
    fn reap_all(&mut self) {
        let mut status = 0;
        while wait4(-1, &mut status, 0) > 0 {
            self.st.reaped += 1;
        }
        self.live = 0;
    }

    /// Copy `bytes` and a NUL into the planting area at `off`; its address.
    fn plant_str(&mut self, off: u64, bytes: &[u8]) -> u64 {
        let p = scratch() + PLANT + off;
        // SAFETY: inside SCRATCH, which only the kernel and this function write.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), p as *mut u8, bytes.len());
            *((p + bytes.len() as u64) as *mut u8) = 0;
        }
        p
    }

    fn plant_u64s(&mut self, off: u64, words: &[u64]) -> u64 {
        let p = scratch() + PLANT + off;
        for (i, w) in words.iter().enumerate() {
            // SAFETY: as above; 8-byte aligned offsets.
            unsafe { *((p + 8 * i as u64) as *mut u64) = *w };
        }
        p
    }

    /// Fill the scratch buffer with arguments, so that a pointer into it
    /// leads the kernel to more pointers and lengths.
    fn refill(&mut self) {
        for i in 0..(SCRATCH_USE / 8) as u64 {
            let v = if self.rng.chance(2) {
                draw_arg(&self.rng)
            } else {
                self.rng.next()
            };
            // SAFETY: inside SCRATCH.
            unsafe { *((scratch() + 8 * i) as *mut u64) = v };
        }
    }

    /// spawn(path, argv): a planted name with a matching argv, or raw pointers.
    fn spawn_args(&mut self, a: &mut [u64; 6]) {
        let r = &self.rng;
        let which = r.below(10);
        let code = r.next();
        let mut num = StrBuf::<24>::new();
        core::fmt::Write::write_fmt(&mut num, format_args!("{code}")).ok();
        let me = self.me.as_bytes();
        let long = [b'x'; 100];
        let (path, argv): (&[u8], [&[u8]; 3]) = match which {
            0..=3 => (me, [me, b"--exit", num.as_str().as_bytes()]),
            4 => (b"hello", [b"hello", b"--no-int80", b""]),
            5 => (
                b"attack",
                [b"attack", r.pick(&[&b"cli"[..], b"efault-write", b"nope"]), b""],
            ),
            6 => (b"no-such-program", [b"x", b"", b""]),
            7 => (b"linux-vdso.so.1", [b"vdso", b"", b""]),
            8 => (&long[..], [b"x", b"", b""]),
            _ => (b"", [b"", b"", b""]),
        };
        a[0] = self.plant_str(0, path);
        let mut ptrs = [0u64; 4];
        let mut off = 128;
        for (i, s) in argv.iter().enumerate().take_while(|(i, s)| *i == 0 || !s.is_empty()) {
            ptrs[i] = self.plant_str(off, s);
            off += s.len() as u64 + 1;
        }
        a[1] = self.plant_u64s(512, &ptrs);
        // Now and then (never for ourselves: random argv could be "--child"),
        // a raw pointer for argv, or a bad one for the path.
        if which >= 4 && self.rng.chance(3) {
            a[1] = draw_arg(&self.rng);
        }
        if which >= 4 && self.rng.chance(4) {
            a[0] = draw_arg(&self.rng);
        }
    }

    /// A pointer the kernel can never read: kernel, non-canonical, unmapped.
    fn bad_ptr(&mut self) -> u64 {
        let r = &self.rng;
        r.pick(&[
            KERNEL_TEXT,
            DIRECT_MAP + r.below(64 << 20),
            0x0000_8000_0000_0000,
            0x8000_0000_0000_0000,
            0,
            0x1000,
            0x7fff_ffff_f000,
            u64::MAX - 7,
        ])
    }

    /// Draw one call, apply the filter; None if it must not be made.
    fn draw(&mut self) -> Option<(u64, [u64; 6])> {
        let nr = draw_nr(&self.rng);
        let mut a = [0u64; 6];
        for x in a.iter_mut() {
            *x = draw_arg(&self.rng);
        }
        match nr {
            // exit, exit_group: would end the fuzzer (its --exit children make exit).
            60 | 231 => return None,
            // read from fd 0 waits for input unless stdin has ended.
            0 if a[0] == 0 && !self.read_stdin => return None,
            // nanosleep, clock_nanosleep: a random timespec could sleep for
            // years. A bad pointer, or a microsecond (absolute: long past).
            35 | 230 => {
                let i = if nr == 35 { 0 } else { 2 };
                a[i] = if self.rng.chance(2) {
                    self.bad_ptr()
                } else {
                    core::ptr::addr_of!(TAME_SLEEP) as u64
                };
                self.st.adjusted += 1;
            }
            // setrlimit(RLIMIT_CPU): a random limit would kill the fuzzer
            // with SIGXCPU. A bad pointer, or no limit.
            160 if a[0] == 0 => {
                a[1] = if self.rng.chance(2) {
                    self.bad_ptr()
                } else {
                    core::ptr::addr_of!(NO_CPU_LIMIT) as u64
                };
                self.st.adjusted += 1;
            }
            // write to the console: to /dev/null instead, same copy-in path.
            1 if a[0] == 1 || a[0] == 2 => {
                a[0] = 3;
                self.st.adjusted += 1;
            }
            SYS_WRITEV if a[0] == 1 || a[0] == 2 => {
                // iovecs whose buffers are never readable (or empty): the
                // kernel walks them, copies nothing, prints nothing.
                let n = self.rng.below(6);
                let mut iov = [0u64; 12];
                for i in 0..n as usize {
                    let valid = self.rng.chance(4);
                    iov[2 * i] = if valid { scratch() } else { self.bad_ptr() };
                    iov[2 * i + 1] = if valid { 0 } else { draw_arg(&self.rng) };
                }
                a[1] = if self.rng.chance(5) {
                    self.bad_ptr()
                } else {
                    self.plant_u64s(1024, &iov)
                };
                if a[2] <= 1024 && a[2] > n {
                    a[2] = n;
                }
                self.st.adjusted += 1;
            }
            SYS_MMAP => {
                if self.rng.chance(2) {
                    a[3] = draw_mmap_flags(&self.rng);
                }
                if self.rng.chance(2) {
                    a[1] = self.rng.pick(&[PAGE, 2 * PAGE, 16 * PAGE, a[1]]);
                }
                let fixed = a[3] & MAP_FIXED != 0;
                if fixed && self.rng.chance(2) {
                    a[0] = MMAP_BASE + PAGE * self.rng.below(1024);
                }
                if a[1] > GROW_MAX && a[1] <= 1 << 32 {
                    a[1] = 1 + a[1] % GROW_MAX;
                    self.st.adjusted += 1;
                }
                let len = a[1].next_multiple_of(PAGE);
                if fixed && overlaps(a[0], len, IMAGE_START, image_end()) {
                    // Our code and data would become zeroed pages.
                    return None;
                }
                let accepted = a[3] & MAP_ANONYMOUS != 0 && a[1] != 0 && a[1] <= 1 << 32;
                if accepted && !fixed {
                    if self.mmap_area_used + len > MMAP_AREA_BUDGET {
                        return None;
                    }
                    self.mmap_area_used += len;
                }
                if accepted {
                    if self.mapped + len > MAPPED_MAX {
                        self.cleanup();
                    }
                    self.mapped += len;
                }
            }
            SYS_MUNMAP => {
                let stack_lo = STACK_TOP - STACK_PAGES * PAGE;
                let len = a[1].next_multiple_of(PAGE).max(a[1]);
                if overlaps(a[0], len, IMAGE_START, image_end()) || overlaps(a[0], len, stack_lo, STACK_TOP) {
                    return None; // it would unmap the fuzzer itself
                }
            }
            SYS_BRK => {
                if a[0] > self.brk0 + GROW_MAX && a[0] <= BRK_MAX {
                    a[0] = self.brk0 + a[0] % GROW_MAX;
                    self.st.adjusted += 1;
                }
                if self.mapped + GROW_MAX > MAPPED_MAX {
                    self.cleanup();
                }
                self.mapped += GROW_MAX;
            }
            SYS_SPAWN_NR => {
                // Spread over the run: a few at once, the rest as calls are made.
                if self.st.spawned >= 4 + SPAWN_BUDGET * self.st.made / self.calls.max(1) {
                    return None;
                }
                if self.live >= LIVE_MAX {
                    self.reap_all();
                }
                self.spawn_args(&mut a);
            }
            _ => {}
        }
        Some((nr, a))
    }

    /// The numbers that took the most time (TSC cycles, kernel and all).
    fn print_profile(&self) {
        // SAFETY: the only reference.
        let prof = unsafe { PROFILE.get() };
        let total: u64 = prof.iter().sum();
        println!("sysfuzz: profile: {total} TSC cycles in system calls; the costliest numbers:");
        for _ in 0..8 {
            let (i, &c) = prof.iter().enumerate().max_by_key(|(_, &c)| c).unwrap();
            if c == 0 {
                break;
            }
            let pct = c * 100 / total.max(1);
            if i == PROFILE_SLOTS - 1 {
                println!("sysfuzz: profile:   nr 600 and up: {c} cycles ({pct}%)");
            } else {
                println!("sysfuzz: profile:   nr {i}: {c} cycles ({pct}%)");
            }
            prof[i] = 0;
        }
    }

    fn count(&mut self, nr: u64, ret: i64) {
        self.st.made += 1;
        match ret {
            -38 => self.st.enosys += 1,
            -14 => self.st.efault += 1,
            -22 => self.st.einval += 1,
            r if r < 0 && r > -4096 => self.st.other_err += 1,
            _ => {
                self.st.ok += 1;
                if nr == SYS_SPAWN_NR {
                    self.st.spawned += 1;
                    self.live += 1;
                }
            }
        }
    }

    fn run(&mut self) -> bool {
        let calls = self.calls;
        // SAFETY: a system call: every pointer argument points into a live buffer of ours (the kernel checks it anyway).
        self.brk0 = unsafe { syscall1(SYS_BRK as usize, 0) } as u64;
        while self.st.made < calls {
            if self.st.made.is_multiple_of(4096) {
                self.refill();
            }
            let Some((nr, a)) = self.draw() else {
                self.st.filtered += 1;
                continue;
            };
            let mut flags = 0;
            for f in FUZZ_FLAGS {
                if self.rng.chance(4) {
                    flags |= f;
                }
            }
            let int80 = self.rng.chance(8);
            if int80 {
                self.st.int80 += 1;
            }
            let n = self.st.made;
            if n >= self.trace_from {
                println!(
                    "sysfuzz: call {n}: nr {nr:#x} ({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}) rflags |= {flags:#x}{}",
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    a[4],
                    a[5],
                    if int80 { " via int 0x80" } else { "" }
                );
            }
            let t0 = rdtsc();
            let (ret, regs_ok) = fuzz_syscall(nr, a, flags, int80);
            // Booted with `bench`, 502 can turn this process's null entry on:
            // every later `syscall` would return at once (wait4 included).
            // Switch it back through int 0x80, which has its own entry.
            if nr == guest_user::nr::BENCH_NULL_ENTRY as u64 && ret == 0 {
                fuzz_syscall(nr, [0; 6], 0, true);
            }
            if self.profile {
                let slot = (nr as usize).min(PROFILE_SLOTS - 1);
                // SAFETY: the only reference.
                unsafe { PROFILE.get()[slot] += rdtsc() - t0 };
            }
            if n >= self.trace_from {
                println!("sysfuzz: call {n}: = {ret}");
            }
            if !regs_ok {
                self.st.clobbered += 1;
                println!("sysfuzz: FINDING: call {n} (nr {nr:#x}) changed a register the syscall ABI preserves");
            }
            self.count(nr, ret);
            if self.st.made.is_multiple_of(10_000) {
                println!("sysfuzz: {} calls made", self.st.made);
            }
        }
        self.reap_all();
        if self.profile {
            self.print_profile();
        }
        self.st.clobbered == 0
    }
}

const SYS_SPAWN_NR: u64 = SYS_SPAWN as u64;

// ---------------------------------------------------------------- supervisor

/// A decimal or 0x-hex number.
fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn usage() -> i32 {
    println!(
        "usage: sysfuzz [--seed N] [--calls N] [--trace-from K] [--profile] [--read-stdin]   (numbers decimal or 0x-hex)"
    );
    2
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc is allowed in ring 3 (CR4.TSD is clear).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Spawn `argv` (argv[0] names the program) and wait: its wait status.
fn run_child(argv: &[&str]) -> Result<i32, isize> {
    let pid = spawn(argv[0], argv);
    if pid < 0 {
        return Err(pid);
    }
    let mut status = 0;
    let r = wait4(pid, &mut status, 0);
    if r != pid {
        return Err(r);
    }
    Ok(status)
}

fn describe(status: Result<i32, isize>) -> StrBuf<48> {
    let mut w = StrBuf::new();
    let _ = match status {
        Ok(s) if wifexited(s) => core::fmt::Write::write_fmt(&mut w, format_args!("exited {}", wexitstatus(s))),
        Ok(s) if wifsignaled(s) => core::fmt::Write::write_fmt(
            &mut w,
            format_args!("killed by signal {} {}", wtermsig(s), signal_name(wtermsig(s))),
        ),
        Ok(s) => core::fmt::Write::write_fmt(&mut w, format_args!("status {s:#x}")),
        Err(e) => core::fmt::Write::write_fmt(&mut w, format_args!("spawn/wait4 error {e}")),
    };
    w
}

/// After the fuzzing: does the kernel still serve another process?
fn check_others(me: &str) -> bool {
    let mut ok = true;
    let mut check = |what: &str, good: bool| {
        println!("sysfuzz: check {what}: {}", if good { "ok" } else { "FAILED" });
        ok &= good;
    };
    let pid = getpid();
    check("getpid", pid > 0 && getpid() == pid);
    let line = b"sysfuzz: check write: this line\n";
    check("write", write(1, line) == line.len() as isize);
    let before = syscount(SYS_GETPID);
    getpid();
    check("syscount", syscount(SYS_GETPID) == before + 1);
    let hello = run_child(&["hello"]);
    check("hello exits 0", matches!(hello, Ok(0)));
    let exit = run_child(&[me, "--exit", "0x1234567800000007"]);
    check(
        "exit status 7 reaches the parent",
        matches!(exit, Ok(s) if wifexited(s) && wexitstatus(s) == 7),
    );
    let mut st = 0;
    check("wait4 with no child: ECHILD", wait4(-1, &mut st, 0) == -ECHILD);
    ok
}

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let args = args();
    let me = args.first().copied().unwrap_or("sysfuzz");
    let (mut seed, mut calls, mut trace_from, mut child) = (None, 10_000, u64::MAX, false);
    let (mut profile, mut read_stdin) = (false, false);
    let mut i = 1;
    while i < args.len() {
        let val = args.get(i + 1).and_then(|s| parse_num(s));
        match (args[i], val) {
            ("--exit", Some(code)) => {
                // SAFETY: exit (60) with a full 64-bit code; only the low byte counts.
                unsafe { syscall1(SYS_EXIT, code as usize) };
                return 99;
            }
            ("--child", _) => {
                child = true;
                i += 1;
                continue;
            }
            ("--profile", _) => {
                profile = true;
                i += 1;
                continue;
            }
            ("--read-stdin", _) => {
                read_stdin = true;
                i += 1;
                continue;
            }
            ("--seed", Some(v)) => seed = Some(v),
            ("--calls", Some(v)) => calls = v,
            ("--trace-from", Some(v)) => trace_from = v,
            _ => return usage(),
        }
        i += 2;
    }
    let seed = seed.unwrap_or_else(rdtsc);

    if child {
        let mut f = Fuzzer {
            rng: Rng::new(seed),
            st: Stats::default(),
            brk0: 0,
            mapped: 0,
            mmap_area_used: 0,
            live: 0,
            calls,
            trace_from,
            profile,
            read_stdin,
            me,
        };
        let clean = f.run();
        let s = &f.st;
        println!(
            "sysfuzz: {} calls, seed {:#x}: {} ok, {} -ENOSYS, {} -EFAULT, {} -EINVAL, {} other errors; \
             {} via int 0x80, {} filtered, {} adjusted, {} spawned, {} reaped, {} cleanups, {} clobbered registers",
            s.made,
            seed,
            s.ok,
            s.enosys,
            s.efault,
            s.einval,
            s.other_err,
            s.int80,
            s.filtered,
            s.adjusted,
            s.spawned,
            s.reaped,
            s.cleanups,
            s.clobbered
        );
        return if clean { 0 } else { 1 };
    }

    println!("sysfuzz: seed {seed:#x}, {calls} calls (reproduce: sysfuzz --seed {seed:#x} --calls {calls})");
    let mut seed_s = StrBuf::<24>::new();
    let mut calls_s = StrBuf::<24>::new();
    let mut trace_s = StrBuf::<24>::new();
    core::fmt::Write::write_fmt(&mut seed_s, format_args!("{seed:#x}")).ok();
    core::fmt::Write::write_fmt(&mut calls_s, format_args!("{calls}")).ok();
    core::fmt::Write::write_fmt(&mut trace_s, format_args!("{trace_from}")).ok();
    let status = run_child(&[
        me,
        "--child",
        "--seed",
        seed_s.as_str(),
        "--calls",
        calls_s.as_str(),
        "--trace-from",
        trace_s.as_str(),
        if profile { "--profile" } else { "--child" },
        if read_stdin { "--read-stdin" } else { "--child" },
    ]);
    if status == Err(-ENOSYS) {
        println!("sysfuzz: spawn (syscall 500) returned -ENOSYS: not on the guest kernel");
        return 1;
    }
    let fuzzer_ok = matches!(status, Ok(0));
    println!(
        "sysfuzz: the fuzzer {}: {}",
        describe(status).as_str(),
        if fuzzer_ok { "ok" } else { "FAILED" }
    );
    let others_ok = check_others(me);
    let pass = fuzzer_ok && others_ok;
    println!(
        "sysfuzz: {} seed {seed:#x}, {calls} calls; kernel alive, other processes {}",
        if pass { "PASS" } else { "FAIL" },
        if others_ok { "work" } else { "FAILED" }
    );
    if pass {
        0
    } else {
        1
    }
}
