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
//! loop, never in the middle of a system call: the kernel stays a single
//! thread of control, as before, without locks.

use crate::percpu::percpu;
use crate::process::{self, State};
use crate::{lapic, sched, time};
use vmm_abi::irq::{SERIAL_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR};

pub use vmm_abi::frame::TrapFrame;

/// SIGXCPU: CPU time limit exceeded (RLIMIT_CPU).
const SIGXCPU: i32 = 24;

/// Timer ticks a second (kernel command line `hz=`).
pub static mut HZ: u64 = 100;
/// Ticks a process runs before another runnable one gets the CPU (`timeslice=` ms).
pub static mut SLICE_TICKS: u64 = 1;
/// init's RLIMIT_CPU in seconds (`cpulimit=`; 0 = none, Linux's default).
static mut CPU_LIMIT_S: u64 = 0;
/// Serial interrupts taken (the VMM reads it by symbol).
#[no_mangle]
pub static mut SERIAL_IRQS: u64 = 0;
/// Timer ticks taken (the VMM reads it by symbol).
#[no_mangle]
pub static mut TIMER_TICKS: u64 = 0;

/// Parse `hz=`, `timeslice=` and `cpulimit=`, then start the LAPIC timer.
/// Returns false when the VMM presents no LAPIC (no interrupts at all).
pub fn init(info: &vmm_abi::boot_info::BootInfo, cmdline: &str) -> bool {
    let word = |key: &str| {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    let hz = word("hz").unwrap_or(100).clamp(10, 5000);
    let slice_ms = word("timeslice").unwrap_or(10).max(1);
    let limit_s = word("cpulimit").unwrap_or(0);
    // SAFETY: boot, one CPU, before interrupts.
    unsafe {
        HZ = hz;
        SLICE_TICKS = (slice_ms * hz).div_ceil(1000).max(1);
        CPU_LIMIT_S = limit_s;
    }
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
            // SAFETY: one CPU, IF clear.
            unsafe { SERIAL_IRQS += 1 };
            sched::wake(|s| s == State::ConsoleWait);
        }
        // A spurious interrupt is not acknowledged (SDM 11.9).
        SPURIOUS_VECTOR => {}
        _ => {}
    }
}

fn tick(frame: &TrapFrame) {
    // SAFETY: one CPU, IF clear.
    unsafe { TIMER_TICKS += 1 };
    percpu().ticks += 1;
    let now = time::monotonic_ns();
    sched::wake_sleepers(now);
    if !frame.from_user() {
        return; // the idle loop: nobody to charge or preempt
    }
    let p = process::current();
    p.cpu_ticks += 1;
    // SAFETY: read-only after boot.
    let (hz, slice) = unsafe { (HZ, SLICE_TICKS) };
    if p.cpu_limit_s != 0 && p.cpu_ticks >= p.cpu_limit_s.saturating_mul(hz) {
        process::kill_current(
            SIGXCPU,
            format_args!("SIGXCPU — used its {} s of CPU time (RLIMIT_CPU)", p.cpu_limit_s),
        )
    }
    p.slice_used += 1;
    if p.slice_used >= slice {
        p.slice_used = 0;
        if sched::others_runnable() {
            // SAFETY: one CPU, IF clear.
            unsafe { sched::PREEMPTIONS += 1 };
            sched::schedule();
        }
    }
}

/// init's CPU-time limit, from the kernel command line.
pub fn default_cpu_limit_s() -> u64 {
    // SAFETY: read-only after boot.
    unsafe { CPU_LIMIT_S }
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
