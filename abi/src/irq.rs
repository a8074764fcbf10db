//! Interrupts: the local APIC the VMM presents (KVM's in-kernel LAPIC, the
//! one piece of x86's interrupt hardware a single CPU needs) and the vectors
//! the kernel's handlers sit at. Intel SDM Vol. 3A chapter 11.
//!
//! ```text
//!   LAPIC timer (periodic) ──┐
//!   COM1 "IRQ 4": the VMM's  ├─> LAPIC IRR ─> IDT[vector] ─> handler ─> EOI ─> iretq
//!   MSI when stdin has data ─┘
//! ```

/// Physical address of the LAPIC's 4 KiB register page (the reset value of
/// IA32_APIC_BASE). The VMM maps it in the kernel's direct map, uncached.
pub const LAPIC_PHYS: u64 = 0xfee0_0000;

/// The timer's vector: the first one above the 32 exceptions, as the 8259's
/// IRQ 0 is remapped to on a PC.
pub const TIMER_VECTOR: u8 = 0x20;
/// The serial port's receive interrupt: COM1 is ISA IRQ 4, and vector
/// 0x20 + 4 keeps that number visible.
pub const SERIAL_IRQ: u8 = 4;
pub const SERIAL_VECTOR: u8 = TIMER_VECTOR + SERIAL_IRQ;
/// The spurious-interrupt vector (SVR bits 0..7; the low 4 bits must be 1s).
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// Inter-processor interrupts, sent through the ICR (Linux has the same
/// two, at 0xfd and in its call-function vectors): "something became
/// runnable" to wake an idle CPU, and "stop using this address space"
/// after a CPU unmapped pages another CPU may still hold in its TLB.
pub const RESCHEDULE_VECTOR: u8 = 0xfd;
pub const TLB_VECTOR: u8 = 0xfc;

/// LAPIC register offsets in the MMIO page.
pub mod reg {
    pub const ID: u64 = 0x20;
    pub const VERSION: u64 = 0x30;
    /// Task priority: 0 accepts every vector.
    pub const TPR: u64 = 0x80;
    /// End of interrupt: write 0 when a handler is done.
    pub const EOI: u64 = 0xb0;
    /// Spurious-interrupt vector; bit 8 enables the APIC.
    pub const SVR: u64 = 0xf0;
    /// Local vector table: the timer's entry.
    pub const LVT_TIMER: u64 = 0x320;
    pub const LVT_LINT0: u64 = 0x350;
    pub const LVT_LINT1: u64 = 0x360;
    /// Timer counts down from here.
    pub const TIMER_INITIAL: u64 = 0x380;
    pub const TIMER_CURRENT: u64 = 0x390;
    /// Timer divide configuration (0b1011 = divide by 1).
    pub const TIMER_DIVIDE: u64 = 0x3e0;
    /// Interrupt command register: the destination's LAPIC ID in bits
    /// 24..32 of the high half; writing the low half sends the IPI.
    pub const ICR_LOW: u64 = 0x300;
    pub const ICR_HIGH: u64 = 0x310;
}

/// ICR low bit 14: level "assert" (required for a fixed IPI). Delivery
/// mode fixed (0) and physical destination mode (0) are the zero bits.
pub const ICR_ASSERT: u32 = 1 << 14;

/// SVR bit 8: the APIC is software-enabled.
pub const SVR_ENABLE: u32 = 1 << 8;
/// LVT bit 16: the entry is masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT timer bits 17..18 = 01: periodic mode.
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// Divide configuration value for "divide by 1".
pub const TIMER_DIVIDE_BY_1: u32 = 0b1011;

/// The MSI address that targets the LAPIC with ID 0, fixed delivery (Intel
/// SDM 11.11.1): what the VMM sends for IRQ 4, with the vector as data.
pub const MSI_ADDRESS_CPU0: u64 = 0xfee0_0000;
