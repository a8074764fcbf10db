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

/// The console's write port: one `out` hands the VMM a whole buffer, where
/// COM1 takes a byte per `out` (one VM exit per byte, ~8 µs each on PVM).
/// The guest writes (`out dx, eax`) the guest-physical address, below
/// 4 GiB, of a [`ConsoleWrite`] descriptor. The VMM reads it, takes the
/// bytes it describes — at most [`CONSOLE_WRITE_MAX`] per `out` — appends
/// them to the same output as COM1's (stdout, the crash report's tail),
/// and writes back `done` and `status`. It checks everything: a descriptor
/// outside guest memory is ignored (`status` stays what the guest put there),
/// a user buffer is read only through present, user-accessible pages of the
/// lower half, and a physical one only inside guest memory.
pub const CONSOLE_WRITE: u16 = 0xf8;

/// Most bytes the VMM takes per `out` to [`CONSOLE_WRITE`]; a longer
/// request is taken in part (`done` = this, `status` OK) and the guest asks
/// again for the rest.
pub const CONSOLE_WRITE_MAX: u64 = 64 << 10;

/// `ConsoleWrite::status`: the VMM took `done` bytes, all it was asked for
/// (or `CONSOLE_WRITE_MAX` of them).
pub const CONSOLE_WRITE_OK: u64 = 0;
/// `ConsoleWrite::status`: the VMM stopped at a byte it may not read — a
/// page that is not present or not user-accessible, an address outside the
/// user half or outside guest memory; the `done` bytes before it were
/// taken. A system call then returns `done`, or -EFAULT if it is 0, as
/// Linux's write() to a regular file does when the copy faults part way.
pub const CONSOLE_WRITE_FAULT: u64 = 1;
/// `ConsoleWrite::status` as the guest leaves it before the `out`: still
/// there afterwards, the VMM did not take the request (a bad descriptor).
pub const CONSOLE_WRITE_PENDING: u64 = u64::MAX;

/// The descriptor an `out` to [`CONSOLE_WRITE`] points at (40 bytes,
/// little-endian, as laid out here).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleWrite {
    /// Start of the bytes: a user virtual address, translated through the
    /// page tables at `cr3`; or, when `cr3` is 0, a guest-physical address.
    pub addr: u64,
    /// Bytes to write.
    pub len: u64,
    /// Physical address of the PML4 of the address space `addr` lies in (the
    /// value of CR3; its low 12 bits are ignored), or 0 for a physical `addr`.
    pub cr3: u64,
    /// Set by the VMM: how many bytes, from `addr` on, it took.
    pub done: u64,
    /// Set by the VMM: `CONSOLE_WRITE_OK` or `CONSOLE_WRITE_FAULT`.
    pub status: u64,
}

impl ConsoleWrite {
    /// Size in guest memory.
    pub const SIZE: usize = size_of::<ConsoleWrite>();
    /// Offset of `done`; `status` follows it.
    pub const DONE_OFFSET: usize = core::mem::offset_of!(ConsoleWrite, done);
    /// Offset of `status`.
    pub const STATUS_OFFSET: usize = core::mem::offset_of!(ConsoleWrite, status);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_descriptor_is_five_little_endian_words() {
        // The VMM writes `done` and `status` at these offsets; the kernel
        // reads them back after the `out`.
        assert_eq!(ConsoleWrite::SIZE, 40);
        assert_eq!(ConsoleWrite::DONE_OFFSET, 24);
        assert_eq!(ConsoleWrite::STATUS_OFFSET, ConsoleWrite::DONE_OFFSET + 8);
        assert_ne!(CONSOLE_WRITE_PENDING, CONSOLE_WRITE_FAULT);
    }
}
