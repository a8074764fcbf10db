//! What the VMM tells the kernel at boot. The VMM writes a [`BootInfo`] at
//! [`crate::layout::phys::BOOT_INFO`] and passes its direct-map address in RDI.

/// `BootInfo::magic`: "VMMBOOT\0".
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"VMMBOOT\0");
/// Bumped whenever the layout of [`BootInfo`] changes.
pub const BOOT_VERSION: u32 = 4;

/// `BootInfo::flags`: `/dev/kvm` is PVM (`kvm_pvm`), not hardware KVM.
pub const FLAG_KVM_PVM: u32 = 1 << 0;
/// `BootInfo::flags`: the VMM set CR4.SMEP.
pub const FLAG_SMEP: u32 = 1 << 1;
/// `BootInfo::flags`: the VMM set CR4.SMAP.
pub const FLAG_SMAP: u32 = 1 << 2;
/// `BootInfo::flags`: a local APIC is at `lapic_phys`, its timer counts at
/// `lapic_timer_hz`, and the VMM raises [`crate::irq::SERIAL_VECTOR`] when
/// console input arrives. Without it the kernel has no interrupts: it runs
/// processes until they block or yield and polls the console.
pub const FLAG_LAPIC: u32 = 1 << 3;

/// Maximum entries in [`BootInfo::mem_map`].
pub const MEM_MAP_MAX: usize = 8;

/// What a physical memory region holds.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// Free for the kernel's page allocator.
    Usable = 1,
    /// CPU tables, page tables and stacks the VMM built.
    BootTables = 2,
    /// The kernel image.
    Kernel = 3,
    /// The boot archive (cpio) and init's arguments.
    Initrd = 4,
}

/// One physical memory region, like an e820 entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MemRegion {
    /// Physical start.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// [`RegionKind`] as a number (0 = unused slot).
    pub kind: u32,
    /// Reserved.
    pub _pad: u32,
}

impl MemRegion {
    /// An unused slot.
    pub const EMPTY: MemRegion = MemRegion {
        start: 0,
        len: 0,
        kind: 0,
        _pad: 0,
    };
}

/// The boot-info block.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// [`BOOT_VERSION`].
    pub version: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Guest physical memory size in bytes.
    pub mem_bytes: u64,
    /// TSC frequency in kHz, as KVM reports it (0 if unknown).
    pub tsc_khz: u64,
    /// Physical address of the PML4 the VMM built (the value in CR3).
    pub kernel_pml4: u64,
    /// Physical address and length of the kernel command line (not NUL-terminated).
    pub cmdline: u64,
    /// Length of the command line.
    pub cmdline_len: u64,
    /// Host wall-clock time at boot, in ns since the Unix epoch (CLOCK_REALTIME's base).
    pub wall_clock_ns: u64,
    /// Physical address of the boot archive: a cpio "newc" archive of programs (0 if none).
    pub initrd: u64,
    /// Length of the boot archive.
    pub initrd_len: u64,
    /// Physical address of init's argv: NUL-terminated strings back to back;
    /// argv[0] names the archive member to run as init.
    pub init_argv: u64,
    /// Length in bytes of init's argv area.
    pub init_argv_len: u64,
    /// Number of valid entries in `mem_map`.
    pub mem_map_len: u64,
    /// Physical memory map.
    pub mem_map: [MemRegion; MEM_MAP_MAX],
    /// Physical address of the local APIC's registers (with [`FLAG_LAPIC`]).
    pub lapic_phys: u64,
    /// The LAPIC timer's input clock in Hz, before its divider (KVM's
    /// in-kernel LAPIC: 1 GHz). Hardware would make the kernel calibrate it.
    pub lapic_timer_hz: u64,
    /// CPUs the VMM created, 1..=[`crate::layout::MAX_CPUS`] (`vmm run
    /// --cpus`): CPU 0 enters at the kernel's entry point, CPUs 1.. at the
    /// header's `ap_entry`, all at once, each with its own GDT, TSS, stacks
    /// and per-CPU block already in place. More than one needs [`FLAG_LAPIC`].
    pub cpus: u64,
}
