//! Ending the VM: the VMM's exit and panic ports.

use crate::io::outb;
use vmm_abi::ports;

/// End the VM; `status` becomes the exit status of `vmm`.
pub fn exit_vm(status: u8) -> ! {
    // SAFETY: the VMM's exit port; the VM ends here.
    unsafe { outb(ports::EXIT, status) };
    halt_forever()
}

/// Report a kernel panic: the VMM dumps the vCPU state and exits with its
/// panic status.
pub fn panic_vm() -> ! {
    // SAFETY: the VMM's panic port; the VM ends here.
    unsafe { outb(ports::PANIC, 1) };
    halt_forever()
}

fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU for good (the VMM ended the VM already).
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
