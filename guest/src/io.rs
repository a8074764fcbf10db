//! Port I/O. Every `out`/`in` to a port the VMM emulates is a VM exit.

use core::arch::asm;

/// # Safety
/// Port writes have device side effects.
pub unsafe fn outb(port: u16, value: u8) {
    asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
}

/// # Safety
/// Port reads can have device side effects.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags));
    value
}

/// # Safety
/// Port writes have device side effects. Not `nomem`: a write to the
/// console port makes the VMM read and write guest memory.
pub unsafe fn outl(port: u16, value: u32) {
    asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags));
}
