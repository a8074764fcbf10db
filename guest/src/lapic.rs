//! The local APIC driver (Intel SDM Vol. 3A chapter 11; Linux:
//! arch/x86/kernel/apic/apic.c). The VMM says in the boot info whether there
//! is one, where its registers are and how fast its timer counts; the kernel
//! enables it, starts the timer in periodic mode at `hz` ticks a second, and
//! acknowledges every interrupt with an EOI.

use vmm_abi::boot_info::{BootInfo, FLAG_LAPIC};
use vmm_abi::irq::{self, reg};
use vmm_abi::layout::phys_to_virt;

/// Virtual address of the register page (0: no LAPIC, no interrupts).
static mut BASE: u64 = 0;

pub fn present() -> bool {
    // SAFETY: written once at boot.
    unsafe { BASE != 0 }
}

fn write(r: u64, v: u32) {
    // SAFETY: a LAPIC register, mapped uncached by the VMM.
    unsafe { core::ptr::write_volatile((BASE + r) as *mut u32, v) }
}

fn read(r: u64) -> u32 {
    // SAFETY: as in `write`.
    unsafe { core::ptr::read_volatile((BASE + r) as *const u32) }
}

/// Enable the LAPIC and start its timer at `hz`; false if the VMM presents none.
pub fn init(info: &BootInfo, hz: u64) -> bool {
    if info.flags & FLAG_LAPIC == 0 || info.lapic_phys == 0 || info.lapic_timer_hz == 0 {
        return false;
    }
    // SAFETY: boot, before any interrupt can arrive (IF is clear in ring 0).
    unsafe { BASE = phys_to_virt(info.lapic_phys) };
    write(reg::TPR, 0);
    write(reg::SVR, irq::SVR_ENABLE | u32::from(irq::SPURIOUS_VECTOR));
    // No 8259 behind LINT0, no NMI source on LINT1.
    write(reg::LVT_LINT0, irq::LVT_MASKED);
    write(reg::LVT_LINT1, irq::LVT_MASKED);
    write(reg::TIMER_DIVIDE, irq::TIMER_DIVIDE_BY_1);
    write(reg::LVT_TIMER, irq::LVT_TIMER_PERIODIC | u32::from(irq::TIMER_VECTOR));
    let count = (info.lapic_timer_hz / hz.max(1)).clamp(1, u64::from(u32::MAX));
    write(reg::TIMER_INITIAL, count as u32);
    true
}

/// The LAPIC's version register (for the banner).
pub fn version() -> u32 {
    read(reg::VERSION)
}

/// End of interrupt: the LAPIC may deliver the next one of this priority.
pub fn eoi() {
    write(reg::EOI, 0);
}
