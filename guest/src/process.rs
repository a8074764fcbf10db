//! Processes (Linux: kernel/fork.c, kernel/exit.c; xv6: proc.c).
//!
//! A process is an address space, a kernel stack, and saved state. It runs
//! until it makes a blocking system call, yields, exits, is killed by a
//! fault, or — when the VMM presents a LAPIC — its time slice ends at a
//! timer tick taken in ring 3 (irq.rs). With several CPUs, a process runs
//! on one CPU at a time, any of them: its shared state ([`Proc`]) is under
//! the table's lock, its private state ([`Task`]) belongs to the CPU running it.

use crate::exec::{self, ExecError};
use crate::sync::{Owned, SpinLock};
use crate::{mm, paging, percpu, println, sched, tlb};
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
    /// Reserved by a spawn in progress: its spawner fills it in.
    Embryo,
    /// Ready to run, on whichever CPU picks it.
    Runnable,
    /// Running on a CPU (`on_cpu`), which alone touches its [`Task`].
    Running,
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

/// What every CPU may read or change about a process: in [`TABLE`], under its lock.
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub state: State,
    /// Kernel RSP saved by `swtch` while the process is not running.
    pub saved_rsp: u64,
    /// When a `Sleeping` process is due (monotonic ns).
    pub wake_at: u64,
    /// The CPU it runs on, while `Running`.
    pub on_cpu: usize,
    pub name: [u8; 16],
}

impl Proc {
    const EMPTY: Proc = Proc {
        pid: 0,
        ppid: 0,
        state: State::Unused,
        saved_rsp: 0,
        wake_at: 0,
        on_cpu: 0,
        name: [0; 16],
    };
}

/// What only the process's own CPU touches: the CPU running it (between
/// the scheduler's switch to it and its return to the scheduler), or its
/// spawner while it is an `Embryo`. Ownership passes through the table's
/// lock, so no lock is needed to use it.
pub struct Task {
    /// Physical address of the PML4 (the CR3 value).
    pub pml4: u64,
    /// Top of the kernel stack (direct-map address): the slot's, reused.
    pub kstack_top: u64,
    pub fs_base: u64,
    pub brk_start: u64,
    pub brk: u64,
    pub mmap_next: u64,
    /// `vmm bench`'s null syscall entry is on for this process (see bench.rs).
    pub null_entry: bool,
    /// Timer ticks taken while it ran in ring 3: its CPU time (RLIMIT_CPU).
    pub cpu_ticks: u64,
    /// Ticks of the current time slice used.
    pub slice_used: u64,
    /// RLIMIT_CPU's soft limit in seconds (0 = none): inherited from the
    /// parent, init's from the kernel command line (`cpulimit=`).
    pub cpu_limit_s: u64,
    pub fx: FxArea,
}

impl Task {
    const EMPTY: Task = Task {
        pml4: 0,
        kstack_top: 0,
        fs_base: 0,
        brk_start: 0,
        brk: 0,
        mmap_next: 0,
        null_entry: false,
        cpu_ticks: 0,
        slice_used: 0,
        cpu_limit_s: 0,
        fx: FxArea::initial(),
    };
}

pub struct Table {
    pub procs: [Proc; MAX_PROCS],
    pub next_pid: u32,
}

/// The process table: every state change of every process, on any CPU,
/// happens under this lock (and the scheduler holds it across `swtch`).
pub static TABLE: SpinLock<Table> = SpinLock::new(Table {
    procs: [Proc::EMPTY; MAX_PROCS],
    next_pid: 1,
});

/// Each slot's private state (see [`Task`]).
static TASKS: [Owned<Task>; MAX_PROCS] = [const { Owned::new(Task::EMPTY) }; MAX_PROCS];

/// Give every process slot its kernel stack, once, at boot: stacks are
/// physically contiguous, and the page allocator's free list cannot hand out
/// contiguous runs, so a stack taken later could fail for good once a
/// process had used (and freed) most of memory. Costs nothing to set up:
/// fresh pages are already zero. One allocation for all of them: each takes
/// the allocator's lock, a few dozen emulated instructions on PVM.
pub fn init() -> Result<(), ExecError> {
    let stacks = mm::alloc_fresh(KSTACK_PAGES * MAX_PROCS as u64).ok_or(ExecError::NoMemory)?;
    for (i, t) in TASKS.iter().enumerate() {
        let top = stacks + (i as u64 + 1) * KSTACK_PAGES * PAGE_SIZE;
        // SAFETY: boot, CPU 0 alone, no process exists.
        unsafe { t.get() }.kstack_top = phys_to_virt(top);
    }
    Ok(())
}

/// The slot of the process this CPU runs.
pub fn current_slot() -> usize {
    match percpu::cpu().current.get() {
        Some(s) => s,
        None => panic!("no process runs on this CPU"),
    }
}

/// The private state of the process this CPU runs. Do not keep it across
/// `sched`: the CPU that runs the process next takes it over meanwhile.
pub fn current() -> &'static mut Task {
    // SAFETY: this CPU runs the process in this slot, so it owns its Task
    // (see Task); callers hold one reference at a time.
    unsafe { TASKS[current_slot()].get() }
}

/// The Task of `slot`, for the CPU about to run it.
///
/// # Safety
/// The caller owns the slot: it is switching to it under the table's lock
/// (it is `Running` on this CPU), or it spawns it (`Embryo`).
pub unsafe fn task(slot: usize) -> &'static mut Task {
    TASKS[slot].get()
}

/// Is there a process (not yet reaped) with this pid?
pub fn exists(pid: u32) -> bool {
    TABLE
        .lock()
        .procs
        .iter()
        .any(|p| p.pid == pid && !matches!(p.state, State::Unused | State::Embryo))
}

/// The parent of the running process.
pub fn ppid() -> u32 {
    TABLE.lock().procs[current_slot()].ppid
}

/// Create a runnable process running `name` from the boot archive, child
/// of `ppid` (0 for init). The program is loaded outside the table's lock:
/// the slot is reserved as an `Embryo` meanwhile.
pub fn spawn(name: &[u8], argv: exec::Argv, ppid: u32) -> Result<u32, ExecError> {
    let slot = {
        let mut t = TABLE.lock();
        let slot = t
            .procs
            .iter()
            .position(|p| p.state == State::Unused)
            .ok_or(ExecError::NoMemory)?;
        t.procs[slot] = Proc {
            state: State::Embryo,
            ..Proc::EMPTY
        };
        slot
    };
    let img = match exec::build(name, argv) {
        Ok(img) => img,
        Err(e) => {
            TABLE.lock().procs[slot].state = State::Unused;
            return Err(e);
        }
    };
    let cpu_limit_s = if ppid == 0 {
        crate::irq::default_cpu_limit_s()
    } else {
        current().cpu_limit_s
    };
    // SAFETY: an Embryo is its spawner's (see Task).
    let task = unsafe { self::task(slot) };
    // The slot's kernel stack outlives the process: reused, never freed.
    let kstack_top = task.kstack_top;
    *task = Task::EMPTY;
    task.pml4 = img.pml4;
    task.kstack_top = kstack_top;
    task.brk_start = img.brk;
    task.brk = img.brk;
    task.mmap_next = MMAP_BASE;
    task.cpu_limit_s = cpu_limit_s;
    let saved_rsp = sched::initial_kernel_stack(kstack_top, img.entry, img.rsp);
    let base = argv.first().unwrap_or(name);
    let base = base.rsplit(|&c| c == b'/').next().unwrap_or(base);
    let n = base.len().min(15);
    let mut t = TABLE.lock();
    let pid = t.next_pid;
    t.next_pid += 1;
    let p = &mut t.procs[slot];
    p.pid = pid;
    p.ppid = ppid;
    p.saved_rsp = saved_rsp;
    p.name[..n].copy_from_slice(&base[..n]);
    p.state = State::Runnable;
    sched::kick_idle_cpu();
    Ok(pid)
}

/// End the current process with wait status `status`; never returns. Its
/// memory goes back at once: this CPU leaves its address space, every other
/// CPU that may still cache it is told to (tlb.rs), then it is freed.
pub fn exit_current(status: i32) -> ! {
    let slot = current_slot();
    let pml4 = current().pml4;
    tlb::leave_mm();
    tlb::shootdown(slot);
    paging::free_address_space(pml4);
    let mut t = TABLE.lock();
    let me = &mut t.procs[slot];
    me.state = State::Zombie(status);
    let (pid, ppid) = (me.pid, me.ppid);
    // Wake the parent if it waits; orphans go to init (whose exit ends the VM).
    for p in t.procs.iter_mut() {
        if p.pid == ppid && p.state == State::Waiting {
            p.state = State::Runnable;
            sched::kick_idle_cpu();
        }
        if p.ppid == pid && !matches!(p.state, State::Unused | State::Embryo) {
            p.ppid = 1;
        }
    }
    sched::sched(t);
    unreachable!("a zombie was scheduled")
}

/// Kill the current process because of a fault in ring 3.
pub fn kill_current(signal: i32, report: core::fmt::Arguments) -> ! {
    println!("pid {} killed: {}", crate::percpu::pid(), report);
    exit_current(killed(signal))
}

pub const WNOHANG: u64 = 1;

/// wait4(pid, ...) for the current process: Ok((pid, status)), Ok((0, 0)) for
/// WNOHANG with nothing ready, or Err(errno). Reaping frees the slot (the
/// memory went back at exit).
pub fn wait(pid: i64, options: u64) -> Result<(u32, i32), i64> {
    loop {
        let me = current_slot();
        let mut t = TABLE.lock();
        let me_pid = t.procs[me].pid;
        let mut have_child = false;
        for slot in 0..MAX_PROCS {
            let p = &mut t.procs[slot];
            if matches!(p.state, State::Unused | State::Embryo) || p.ppid != me_pid || (pid > 0 && p.pid as i64 != pid)
            {
                continue;
            }
            have_child = true;
            if let State::Zombie(status) = p.state {
                p.state = State::Unused;
                return Ok((p.pid, status));
            }
        }
        if !have_child {
            return Err(ECHILD);
        }
        if options & WNOHANG != 0 {
            return Ok((0, 0));
        }
        t.procs[me].state = State::Waiting;
        sched::sched(t);
    }
}
