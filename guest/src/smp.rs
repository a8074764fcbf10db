//! The other CPUs (Linux: arch/x86/kernel/smpboot.c, in miniature).
//!
//! The VMM creates every vCPU at once and starts the application
//! processors (CPUs 1..) itself, in 64-bit ring 0 at [`_start_ap`], each on
//! its own stack, with its own GDT and TSS loaded and GS at its own per-CPU
//! block: no real-mode trampoline and no INIT/SIPI (README, "Several
//! CPUs"). An AP enables its LAPIC and halts until CPU 0 has set up what
//! every CPU shares (memory, page tables, the clock, the boot archive, init)
//! and sends it a reschedule IPI; then it starts its timer and enters the
//! scheduler loop like CPU 0.

use crate::{lapic, percpu, sched};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use vmm_abi::boot_info::BootInfo;
use vmm_abi::irq::RESCHEDULE_VECTOR;

core::arch::global_asm!(
    ".global _start_ap",
    "_start_ap:",
    "    xor ebp, ebp", // end of the frame-pointer chain
    "    call ap_main", // rdi = boot info, rsi = this CPU's number
    "    ud2",
);

/// CPU 0 has finished the shared set-up: the APs may run processes.
static READY: AtomicBool = AtomicBool::new(false);
/// CPUs the VMM created (boot info), set on CPU 0 before the APs are let go.
static CPUS: AtomicU64 = AtomicU64::new(1);
/// CPUs that reached their scheduler loop.
#[no_mangle]
pub static CPUS_ONLINE: AtomicU64 = AtomicU64::new(1);

/// How many CPUs the machine has.
pub fn cpus() -> usize {
    CPUS.load(Ordering::Relaxed) as usize
}

pub fn set_cpus(n: usize) {
    CPUS.store(n as u64, Ordering::Relaxed);
}

/// Have the APs been let go?
pub fn started() -> bool {
    READY.load(Ordering::Acquire)
}

/// An application processor's first Rust code.
#[no_mangle]
extern "C" fn ap_main(info: &'static BootInfo, _cpu: u64) -> ! {
    percpu::init_this_cpu();
    // Enabled first, so the IPI below cannot find it off (a disabled LAPIC drops it).
    lapic::enable_this_cpu(info);
    while !started() {
        // SAFETY: nothing held; the reschedule IPI (irq.rs) only acknowledges.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
    }
    lapic::start_timer();
    CPUS_ONLINE.fetch_add(1, Ordering::Relaxed);
    sched::run()
}

/// CPU 0, once init exists: let the APs go.
pub fn start_aps() {
    READY.store(true, Ordering::Release);
    for cpu in 1..cpus() {
        lapic::send_ipi(cpu, RESCHEDULE_VECTOR);
    }
}
