//! Device interrupts (Linux: arch/x86/kernel/irq.c, kernel/time/tick-*.c).
//!
//! ```text
//!   LAPIC timer / IRQ 4 ─> IDT[0x20 / 0x24] ─> asm_irq_* (traps.rs) ─> exc_common
//!     ─> do_trap ─> handle() ─> EOI ─> (tick: wake sleepers, charge CPU time,
//!        preempt at the end of the slice) ─> exc_return ─> iretq
//! ```
//!
//! Interrupt gates clear IF and the kernel never sets it except in the idle
//! loop's `sti; hlt`, so an interrupt arrives either in ring 3 or in the idle
//! loop, never in the middle of a system call or while this CPU holds a
//! lock. Every CPU takes its own timer's ticks; IRQ 4 goes to CPU 0; the
//! inter-processor interrupts (smp.rs, tlb.rs) come from other CPUs.

use crate::process::{self, State};
use crate::{lapic, percpu, sched, time, tlb};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmm_abi::irq::{RESCHEDULE_VECTOR, SERIAL_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR, TLB_VECTOR};

pub use vmm_abi::frame::TrapFrame;

/// SIGXCPU: CPU time limit exceeded (RLIMIT_CPU).
const SIGXCPU: i32 = 24;

/// Timer ticks a second (kernel command line `hz=`).
pub static HZ: AtomicU64 = AtomicU64::new(100);
/// Ticks a process runs before another runnable one gets the CPU (`timeslice=` ms).
pub static SLICE_TICKS: AtomicU64 = AtomicU64::new(1);
/// init's RLIMIT_CPU in seconds (`cpulimit=`; 0 = none, Linux's default).
static CPU_LIMIT_S: AtomicU64 = AtomicU64::new(0);
/// Serial interrupts taken (the VMM reads it by symbol).
#[no_mangle]
pub static SERIAL_IRQS: AtomicU64 = AtomicU64::new(0);
/// Timer ticks taken, all CPUs (the VMM reads it by symbol).
#[no_mangle]
pub static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

/// Parse `hz=`, `timeslice=` and `cpulimit=`, then start CPU 0's LAPIC
/// timer. Returns false when the VMM presents no LAPIC (no interrupts at all).
pub fn init(info: &vmm_abi::boot_info::BootInfo, cmdline: &str) -> bool {
    let word = |key: &str| {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    let hz = word("hz").unwrap_or(100).clamp(10, 5000);
    let slice_ms = word("timeslice").unwrap_or(10).max(1);
    HZ.store(hz, Relaxed);
    SLICE_TICKS.store((slice_ms * hz).div_ceil(1000).max(1), Relaxed);
    CPU_LIMIT_S.store(word("cpulimit").unwrap_or(0), Relaxed);
    lapic::init(info, hz)
}

/// Every interrupt vector lands here from `do_trap`.
pub fn handle(frame: &mut TrapFrame) {
    match frame.vector as u8 {
        TIMER_VECTOR => {
            lapic::eoi();
            tick(frame);
        }
        SERIAL_VECTOR => {
            lapic::eoi();
            SERIAL_IRQS.fetch_add(1, Relaxed);
            sched::wake(|s| s == State::ConsoleWait);
        }
        // Its point is the wake-up: an idle CPU leaves `hlt` and rescans.
        RESCHEDULE_VECTOR => lapic::eoi(),
        TLB_VECTOR => {
            lapic::eoi();
            tlb::serve();
        }
        // A spurious interrupt is not acknowledged (SDM 11.9).
        SPURIOUS_VECTOR => {}
        _ => {}
    }
}

fn tick(frame: &TrapFrame) {
    TIMER_TICKS.fetch_add(1, Relaxed);
    percpu::count_tick();
    let mut t = process::TABLE.lock();
    sched::wake_sleepers(&mut t, time::monotonic_ns());
    if !frame.from_user() {
        return; // the idle loop: nobody to charge or preempt
    }
    let p = process::current();
    p.cpu_ticks += 1;
    let hz = HZ.load(Relaxed);
    if p.cpu_limit_s != 0 && p.cpu_ticks >= p.cpu_limit_s.saturating_mul(hz) {
        let limit = p.cpu_limit_s;
        drop(t);
        process::kill_current(
            SIGXCPU,
            format_args!("SIGXCPU — used its {} s of CPU time (RLIMIT_CPU)", limit),
        )
    }
    p.slice_used += 1;
    if p.slice_used >= SLICE_TICKS.load(Relaxed) {
        p.slice_used = 0;
        if sched::others_runnable(&t) {
            sched::PREEMPTIONS.fetch_add(1, Relaxed);
            t.procs[process::current_slot()].state = State::Runnable;
            sched::sched(t);
        }
    }
}

/// init's CPU-time limit, from the kernel command line.
pub fn default_cpu_limit_s() -> u64 {
    CPU_LIMIT_S.load(Relaxed)
}

const RLIMIT_CPU: u64 = 0;
const RLIM_INFINITY: u64 = u64::MAX;

/// setrlimit(resource, &{cur, max}): only RLIMIT_CPU, whose soft limit (in
/// seconds of CPU time) ends the process with SIGXCPU; children inherit it.
/// The CPU time is sampled: a tick that finds the process in ring 3 (or
/// returning to it) charges it one tick. Without a LAPIC nothing is counted.
pub extern "C" fn sys_setrlimit(resource: u64, rlim: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    if resource != RLIMIT_CPU {
        return -vmm_abi::errno::EINVAL;
    }
    let mut b = [0u8; 16];
    if let Err(e) = crate::usercopy::copy_from_user(&mut b, rlim) {
        return e;
    }
    let cur = u64::from_le_bytes(b[..8].try_into().unwrap());
    let max = u64::from_le_bytes(b[8..].try_into().unwrap());
    if cur > max {
        return -vmm_abi::errno::EINVAL;
    }
    process::current().cpu_limit_s = if cur == RLIM_INFINITY { 0 } else { cur.max(1) };
    0
}
