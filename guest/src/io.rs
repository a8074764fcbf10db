//! Port I/O. Every `out` to a port the VMM emulates is a VM exit.

use core::arch::asm;

/// # Safety
/// Port writes have device side effects.
pub unsafe fn outb(port: u16, value: u8) {
    asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
}
