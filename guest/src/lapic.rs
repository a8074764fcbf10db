//! The local APIC driver (Intel SDM Vol. 3A chapter 11; Linux:
//! arch/x86/kernel/apic/apic.c). The VMM says in the boot info whether there
//! is one, where its registers are and how fast its timer counts. Every CPU
//! has its own LAPIC at the same address (each sees its own): each enables
//! it, starts its timer in periodic mode at `hz` ticks a second, and
//! acknowledges every interrupt with an EOI. CPUs interrupt each other
//! through the interrupt command register (ICR).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use vmm_abi::boot_info::{BootInfo, FLAG_LAPIC};
use vmm_abi::irq::{self, reg};
use vmm_abi::layout::phys_to_virt;

/// Virtual address of the register page (0: no LAPIC, no interrupts).
/// Set on CPU 0 at boot, before the other CPUs are let go.
static BASE: AtomicU64 = AtomicU64::new(0);
/// The timer's initial count for `hz` (set with BASE).
static TIMER_COUNT: AtomicU64 = AtomicU64::new(0);

pub fn present() -> bool {
    BASE.load(Relaxed) != 0
}

fn write_at(base: u64, r: u64, v: u32) {
    // SAFETY: a LAPIC register, mapped uncached by the VMM.
    unsafe { core::ptr::write_volatile((base + r) as *mut u32, v) }
}

fn write(r: u64, v: u32) {
    write_at(BASE.load(Relaxed), r, v)
}

fn read(r: u64) -> u32 {
    // SAFETY: as in `write_at`.
    unsafe { core::ptr::read_volatile((BASE.load(Relaxed) + r) as *const u32) }
}

/// The register page the boot info announces, if any.
fn base_of(info: &BootInfo) -> Option<u64> {
    (info.flags & FLAG_LAPIC != 0 && info.lapic_phys != 0 && info.lapic_timer_hz != 0)
        .then(|| phys_to_virt(info.lapic_phys))
}

/// Software-enable this CPU's LAPIC (no timer yet): from here it takes
/// IPIs. `info` gives the address, so an AP can do this before CPU 0 has
/// finished its own set-up.
pub fn enable_this_cpu(info: &BootInfo) -> bool {
    let Some(base) = base_of(info) else {
        return false;
    };
    write_at(base, reg::TPR, 0);
    write_at(base, reg::SVR, irq::SVR_ENABLE | u32::from(irq::SPURIOUS_VECTOR));
    // No 8259 behind LINT0, no NMI source on LINT1.
    write_at(base, reg::LVT_LINT0, irq::LVT_MASKED);
    write_at(base, reg::LVT_LINT1, irq::LVT_MASKED);
    true
}

/// CPU 0: enable the LAPIC and start its timer at `hz`; false if the VMM
/// presents none.
pub fn init(info: &BootInfo, hz: u64) -> bool {
    if !enable_this_cpu(info) {
        return false;
    }
    let count = (info.lapic_timer_hz / hz.max(1)).clamp(1, u64::from(u32::MAX));
    TIMER_COUNT.store(count, Relaxed);
    BASE.store(base_of(info).unwrap_or(0), Relaxed);
    start_timer();
    true
}

/// Start this CPU's timer, periodic, at the rate `init` computed.
pub fn start_timer() {
    write(reg::TIMER_DIVIDE, irq::TIMER_DIVIDE_BY_1);
    write(reg::LVT_TIMER, irq::LVT_TIMER_PERIODIC | u32::from(irq::TIMER_VECTOR));
    write(reg::TIMER_INITIAL, TIMER_COUNT.load(Relaxed) as u32);
}

/// Stop (or restart) this CPU's timer interrupts; the count runs on.
pub fn mask_timer(masked: bool) {
    let m = if masked { irq::LVT_MASKED } else { 0 };
    write(
        reg::LVT_TIMER,
        m | irq::LVT_TIMER_PERIODIC | u32::from(irq::TIMER_VECTOR),
    );
}

/// The LAPIC's version register (for the banner).
pub fn version() -> u32 {
    read(reg::VERSION)
}

/// End of interrupt: the LAPIC may deliver the next one of this priority.
pub fn eoi() {
    write(reg::EOI, 0);
}

/// Send `vector` to CPU `cpu` (its LAPIC ID is its number): fixed delivery,
/// physical destination. The kernel runs with interrupts off, so nothing on
/// this CPU can come between the two halves of the ICR.
pub fn send_ipi(cpu: usize, vector: u8) {
    write(reg::ICR_HIGH, (cpu as u32) << 24);
    write(reg::ICR_LOW, irq::ICR_ASSERT | u32::from(vector));
}
