//! I/O ports the VMM emulates. Each `out` to one of them is a VM exit.

/// COM1, a 16550 UART (vm-superio on the host side).
pub const COM1: u16 = 0x3f8;
/// Writing a byte here ends the VM; the byte becomes `vmm`'s exit status
/// (the address QEMU's `isa-debug-exit` uses).
pub const EXIT: u16 = 0xf4;
/// Writing here reports a guest kernel panic: the VMM prints its crash report
/// (registers and the last serial output) and exits with its panic status.
pub const PANIC: u16 = 0xf5;
/// A port the VMM answers and ignores: one `out` here is the cheapest round
/// trip out of the VM and back (the benchmark's "hypercall").
pub const NULL_HYPERCALL: u16 = 0xf6;
/// Reading a byte here tells the guest whether its console input has ended:
/// 1 once host stdin reached end of file (or is not forwarded) and every
/// byte before it was delivered to the UART, else 0. The 16550 itself has no
/// notion of end of file; `read(0)` returns 0 on it, as on a terminal's ^D.
pub const CONSOLE_EOF: u16 = 0xf7;
