//! Processes (Linux: kernel/fork.c, kernel/exit.c; xv6: proc.c).
//!
//! A process is an address space, a kernel stack, and saved state. It runs
//! until it makes a blocking system call, yields, exits, is killed by a
//! fault, or — when the VMM presents a LAPIC — its time slice ends at a
//! timer tick taken in ring 3 (irq.rs).

use crate::exec::{self, ExecError};
use crate::{mm, paging, println, sched};
pub use vmm_abi::errno::ECHILD;
use vmm_abi::layout::user::MMAP_BASE;
use vmm_abi::layout::{phys_to_virt, PAGE_SIZE};

pub const MAX_PROCS: usize = 32;
/// Kernel stack per process.
pub const KSTACK_PAGES: u64 = 4;

/// Wait statuses as Linux encodes them (see wait(2)): exit code in bits 8..16,
/// or the terminating signal in bits 0..7 (host-tested in the boot contract).
pub use vmm_abi::wait::{exited, killed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Unused,
    Runnable,
    /// Blocked in wait4 for a child.
    Waiting,
    /// In nanosleep until `wake_at` (monotonic ns); a timer tick wakes it.
    Sleeping,
    /// In read(0) with no input yet; the serial interrupt wakes it.
    ConsoleWait,
    /// Exited with this wait status; the parent has not reaped it yet.
    Zombie(i32),
}

/// The FXSAVE area: the user's x87/SSE registers while another process runs.
#[repr(C, align(16))]
pub struct FxArea(pub [u8; 512]);

impl FxArea {
    /// FCW = 0x37f and MXCSR = 0x1f80, the reset values (all exceptions masked).
    pub const fn initial() -> FxArea {
        let mut a = [0u8; 512];
        a[0] = 0x7f;
        a[1] = 0x03;
        a[24] = 0x80;
        a[25] = 0x1f;
        FxArea(a)
    }
}

pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub state: State,
    /// Physical address of the PML4 (the CR3 value).
    pub pml4: u64,
    /// Top of the kernel stack (direct-map address).
    pub kstack_top: u64,
    /// Kernel RSP saved by `swtch` while the process is not running.
    pub saved_rsp: u64,
    pub fs_base: u64,
    pub brk_start: u64,
    pub brk: u64,
    pub mmap_next: u64,
    /// `vmm bench`'s null syscall entry is on for this process (see bench.rs).
    pub null_entry: bool,
    /// When a `Sleeping` process is due (monotonic ns).
    pub wake_at: u64,
    /// Timer ticks taken while it ran in ring 3: its CPU time (RLIMIT_CPU).
    pub cpu_ticks: u64,
    /// Ticks of the current time slice used.
    pub slice_used: u64,
    /// RLIMIT_CPU's soft limit in seconds (0 = none): inherited from the
    /// parent, init's from the kernel command line (`cpulimit=`).
    pub cpu_limit_s: u64,
    pub name: [u8; 16],
    pub fx: FxArea,
}

impl Process {
    const EMPTY: Process = Process {
        pid: 0,
        ppid: 0,
        state: State::Unused,
        pml4: 0,
        kstack_top: 0,
        saved_rsp: 0,
        fs_base: 0,
        brk_start: 0,
        brk: 0,
        mmap_next: 0,
        null_entry: false,
        wake_at: 0,
        cpu_ticks: 0,
        slice_used: 0,
        cpu_limit_s: 0,
        name: [0; 16],
        fx: FxArea::initial(),
    };
}

pub struct Table {
    pub procs: [Process; MAX_PROCS],
    /// Index of the running process.
    pub current: usize,
    pub next_pid: u32,
}

static mut TABLE: Table = Table {
    procs: [Process::EMPTY; MAX_PROCS],
    current: 0,
    next_pid: 1,
};

#[allow(static_mut_refs)]
pub fn table() -> &'static mut Table {
    // SAFETY: one CPU, and the kernel runs with interrupts off (they arrive
    // only in ring 3 or the idle loop): one kernel path at a time.
    unsafe { &mut TABLE }
}

/// Give every process slot its kernel stack, once, at boot: stacks are
/// physically contiguous, and the page allocator's free list cannot hand out
/// contiguous runs, so a stack taken later could fail for good once a
/// process had used (and freed) most of memory. Costs nothing to set up:
/// fresh pages are already zero.
pub fn init() -> Result<(), ExecError> {
    for p in table().procs.iter_mut() {
        let kstack = mm::alloc_fresh(KSTACK_PAGES).ok_or(ExecError::NoMemory)?;
        p.kstack_top = phys_to_virt(kstack + KSTACK_PAGES * PAGE_SIZE);
    }
    Ok(())
}

pub fn current() -> &'static mut Process {
    let t = table();
    &mut t.procs[t.current]
}

/// Create a runnable process running `name` from the boot archive.
pub fn spawn(name: &[u8], argv: exec::Argv, ppid: u32) -> Result<u32, ExecError> {
    let t = table();
    let slot = t
        .procs
        .iter()
        .position(|p| p.state == State::Unused)
        .ok_or(ExecError::NoMemory)?;
    let img = exec::build(name, argv)?;
    let pid = t.next_pid;
    t.next_pid += 1;
    let cpu_limit_s = if ppid == 0 {
        crate::irq::default_cpu_limit_s()
    } else {
        t.procs[t.current].cpu_limit_s
    };
    let p = &mut t.procs[slot];
    // The slot's kernel stack outlives the process: reused, never freed.
    let kstack_top = p.kstack_top;
    *p = Process::EMPTY;
    p.pid = pid;
    p.ppid = ppid;
    p.pml4 = img.pml4;
    p.kstack_top = kstack_top;
    p.saved_rsp = sched::initial_kernel_stack(kstack_top, img.entry, img.rsp);
    p.brk_start = img.brk;
    p.brk = img.brk;
    p.mmap_next = MMAP_BASE;
    p.cpu_limit_s = cpu_limit_s;
    let base = argv.first().unwrap_or(name);
    let base = base.rsplit(|&c| c == b'/').next().unwrap_or(base);
    let n = base.len().min(15);
    p.name[..n].copy_from_slice(&base[..n]);
    p.state = State::Runnable;
    Ok(pid)
}

/// End the current process with wait status `status`; never returns.
pub fn exit_current(status: i32) -> ! {
    let me = current();
    me.state = State::Zombie(status);
    let (pid, ppid) = (me.pid, me.ppid);
    // Wake the parent if it waits; orphans go to init (whose exit ends the VM).
    for p in table().procs.iter_mut() {
        if p.pid == ppid && p.state == State::Waiting {
            p.state = State::Runnable;
        }
        if p.ppid == pid && p.state != State::Unused {
            p.ppid = 1;
        }
    }
    sched::schedule();
    unreachable!("a zombie was scheduled")
}

/// Kill the current process because of a fault in ring 3.
pub fn kill_current(signal: i32, report: core::fmt::Arguments) -> ! {
    let me = current();
    println!("pid {} killed: {}", me.pid, report);
    exit_current(killed(signal))
}

/// Reap a zombie child: free its memory and slot.
fn reap(slot: usize) -> (u32, i32) {
    let p = &mut table().procs[slot];
    let State::Zombie(status) = p.state else { unreachable!() };
    let pid = p.pid;
    paging::free_address_space(p.pml4);
    p.state = State::Unused;
    (pid, status)
}

pub const WNOHANG: u64 = 1;

/// wait4(pid, ...) for the current process: Ok((pid, status)), Ok((0, 0)) for
/// WNOHANG with nothing ready, or Err(errno).
pub fn wait(pid: i64, options: u64) -> Result<(u32, i32), i64> {
    loop {
        let me_pid = current().pid;
        let t = table();
        let mut have_child = false;
        for slot in 0..MAX_PROCS {
            let p = &t.procs[slot];
            if p.state == State::Unused || p.ppid != me_pid || (pid > 0 && p.pid as i64 != pid) {
                continue;
            }
            have_child = true;
            if let State::Zombie(_) = p.state {
                return Ok(reap(slot));
            }
        }
        if !have_child {
            return Err(ECHILD);
        }
        if options & WNOHANG != 0 {
            return Ok((0, 0));
        }
        current().state = State::Waiting;
        sched::schedule();
    }
}
