//! Per-CPU data (Linux: arch/x86/include/asm/percpu.h).
//!
//! Two kinds:
//! - the boot contract's block ([`PerCpu`]), one per CPU in [`PERCPU`]:
//!   MSR_GS_BASE of CPU `n` points at block `n` (the VMM set it, `swapgs` on
//!   every entry from ring 3 brings it back), so `gs:[offset]` is this CPU's
//!   field in one instruction, as Linux's `this_cpu_read`. The syscall
//!   entry uses it before it has a stack; strace reads CPU 0's pid.
//! - the kernel's own per-CPU state ([`Cpu`]), a [`CpuLocal`] indexed by
//!   the number in the block.
//!
//! ```text
//!   CPU 0: GS_BASE ─> PERCPU[0] {self, user_rsp, kernel_rsp, pid, lstar, ticks, cpu = 0}
//!   CPU 1: GS_BASE ─> PERCPU[1] {…, cpu = 1}        (64 bytes apart)
//! ```

use crate::sync::CpuLocal;
use core::cell::{Cell, UnsafeCell};
use vmm_abi::frame::{PERCPU_CPU, PERCPU_KERNEL_RSP, PERCPU_LSTAR, PERCPU_PID, PERCPU_SELF, PERCPU_TICKS};
use vmm_abi::layout::MAX_CPUS;

/// The per-CPU block: its layout is the boot contract's.
pub use vmm_abi::frame::PerCpu;

/// One CPU's block. Written only by its own CPU, through GS.
#[repr(transparent)]
pub struct PerCpuBlock(UnsafeCell<PerCpu>);

// SAFETY: block n is read and written only by CPU n (through GS_BASE, which
// the VMM points at it), and by the VMM while the vCPUs are stopped.
unsafe impl Sync for PerCpuBlock {}

const fn blocks() -> [PerCpuBlock; MAX_CPUS] {
    let mut b = [const {
        PerCpuBlock(UnsafeCell::new(PerCpu {
            self_ptr: 0,
            user_rsp: 0,
            kernel_rsp: 0,
            pid: 0,
            lstar: 0,
            ticks: 0,
            cpu: 0,
        }))
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        b[i] = PerCpuBlock(UnsafeCell::new(PerCpu {
            self_ptr: 0,
            user_rsp: 0,
            kernel_rsp: 0,
            pid: 0,
            lstar: 0,
            ticks: 0,
            cpu: i as u64,
        }));
        i += 1;
    }
    b
}

/// The blocks (the header's `percpu` is the first; the VMM adds
/// `n * PERCPU_STRIDE` for CPU `n`). Each knows its CPU's number from the start.
#[no_mangle]
pub static PERCPU: [PerCpuBlock; MAX_CPUS] = blocks();

macro_rules! gs_read {
    ($off:expr) => {{
        let v: u64;
        // SAFETY: GS_BASE is this CPU's block in ring 0; the offset is a field's.
        unsafe {
            core::arch::asm!("mov {}, gs:[{off}]", out(reg) v, off = const $off,
                options(nostack, readonly, preserves_flags))
        };
        v
    }};
}

macro_rules! gs_write {
    ($off:expr, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: as in gs_read; only this CPU writes its block.
        unsafe {
            core::arch::asm!("mov gs:[{off}], {}", in(reg) v, off = const $off,
                options(nostack, preserves_flags))
        };
    }};
}

/// This CPU's number (its vCPU index and LAPIC ID).
#[inline]
pub fn this_cpu() -> usize {
    gs_read!(PERCPU_CPU) as usize
}

/// pid of the process this CPU runs (getpid's fast answer).
pub fn pid() -> u64 {
    gs_read!(PERCPU_PID)
}

pub fn set_pid(pid: u64) {
    gs_write!(PERCPU_PID, pid)
}

/// The kernel stack the syscall entry switches to.
pub fn set_kernel_rsp(rsp: u64) {
    gs_write!(PERCPU_KERNEL_RSP, rsp)
}

/// The LSTAR this CPU runs with (a cache of the MSR).
pub fn lstar() -> u64 {
    gs_read!(PERCPU_LSTAR)
}

pub fn set_lstar(v: u64) {
    gs_write!(PERCPU_LSTAR, v)
}

/// Count a timer tick on this CPU.
pub fn count_tick() {
    // SAFETY: as in gs_write.
    unsafe { core::arch::asm!("inc qword ptr gs:[{off}]", off = const PERCPU_TICKS, options(nostack)) };
}

/// Fill in this CPU's block where the VMM left it blank: its own address
/// (Linux's `this_cpu_off`, for a debugger reading GS_BASE's target).
pub fn init_this_cpu() {
    let me = &PERCPU[this_cpu()];
    gs_write!(PERCPU_SELF, me as *const PerCpuBlock as u64);
}

/// The kernel's own per-CPU state.
pub struct Cpu {
    /// Depth of `push_off` (sync.rs) and whether interrupts were on before it.
    pub noff: Cell<u32>,
    pub intena: Cell<bool>,
    /// The scheduler loop's RSP while a process runs on this CPU.
    pub sched_rsp: Cell<u64>,
    /// The process slot this CPU runs (None: the scheduler loop or idle).
    pub current: Cell<Option<usize>>,
    /// The slot last picked: round-robin goes on from there.
    pub last: Cell<usize>,
    /// The slot whose address space is in CR3 (None: the kernel's page
    /// tables). It may outlive the process's turn on this CPU (tlb.rs).
    pub loaded: Cell<Option<usize>>,
}

static CPUS: CpuLocal<Cpu> = CpuLocal::new(
    [const {
        Cpu {
            noff: Cell::new(0),
            intena: Cell::new(false),
            sched_rsp: Cell::new(0),
            current: Cell::new(None),
            last: Cell::new(0),
            loaded: Cell::new(None),
        }
    }; MAX_CPUS],
);

/// This CPU's kernel state (do not keep it across a context switch).
pub fn cpu() -> &'static Cpu {
    CPUS.get()
}
