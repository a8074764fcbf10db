//! The kernel's side of the boot contract: a table in the ELF section
//! [`HEADER_SECTION`] that tells the VMM where the kernel's entry points are.

/// ELF section holding the [`KernelHeader`].
pub const HEADER_SECTION: &str = ".vmm_header";
/// `KernelHeader::magic`: "VMMKHDR\0".
pub const HEADER_MAGIC: u64 = u64::from_le_bytes(*b"VMMKHDR\0");
/// Bumped whenever the layout of [`KernelHeader`] changes.
pub const HEADER_VERSION: u32 = 3;

/// Kernel entry points, published by the kernel and read by the VMM.
///
/// `A` is an address: `u64` on the host, a linker-resolved pointer in the guest.
/// Both are 8 bytes, so the two views have the same layout.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelHeader<A> {
    /// [`HEADER_MAGIC`].
    pub magic: u64,
    /// [`HEADER_VERSION`].
    pub version: u32,
    /// `size_of::<KernelHeader>()`, a second check on the layout.
    pub size: u32,
    /// Handlers for exception vectors 0..32, installed as IDT interrupt gates.
    pub exceptions: [A; 32],
    /// Handler for `int 0x80` (a DPL-3 gate).
    pub int80: A,
    /// `syscall` entry, written to MSR_LSTAR.
    pub syscall: A,
    /// CPU 0's per-CPU block, written to MSR_GS_BASE (and swapped by
    /// `swapgs`); CPU `n`'s is `n * PERCPU_STRIDE` further (`crate::frame`).
    pub percpu: A,
    /// Interrupt handlers, installed as interrupt gates at
    /// [`crate::irq::TIMER_VECTOR`], [`crate::irq::SERIAL_VECTOR`] and
    /// [`crate::irq::SPURIOUS_VECTOR`].
    pub timer: A,
    pub serial: A,
    pub spurious: A,
    /// Where the application processors (CPUs 1..) start, in 64-bit ring 0
    /// like CPU 0, with RDI = the boot info and RSI = the CPU's number.
    pub ap_entry: A,
    /// Inter-processor interrupt handlers, interrupt gates at
    /// [`crate::irq::RESCHEDULE_VECTOR`] and [`crate::irq::TLB_VECTOR`].
    pub reschedule: A,
    pub tlb: A,
}

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = size_of::<KernelHeader<u64>>();
