//! The guest's address-space layout, modelled on Linux x86-64
//! (Documentation/arch/x86/x86_64/mm.rst): a direct map of all physical memory
//! at `page_offset_base` and the kernel image in the top 2 GiB.

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;

/// Virtual base of the direct map: physical address `p` is visible to the
/// kernel at `DIRECT_MAP_BASE + p` (Linux's `__PAGE_OFFSET`).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;

/// Virtual base of the kernel image mapping: the image's physical address `p`
/// is mapped at `KERNEL_BASE + p` (Linux's `__START_KERNEL_map`).
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// Physical address the kernel image is linked to load at (1 MiB, as Linux).
pub const KERNEL_PHYS_LOAD: u64 = 0x10_0000;

/// Highest user address + 1: the lower canonical half belongs to ring 3.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Most CPUs the boot contract has tables and stacks for (`vmm run --cpus N`).
/// CPU `n` is vCPU `n` and has LAPIC ID `n`; CPU 0 is the bootstrap processor.
pub const MAX_CPUS: usize = 8;

/// Fixed physical pages the VMM fills before the first instruction.
/// They sit below the kernel image, in the first megabyte.
pub mod phys {
    /// Global Descriptor Table (one page).
    pub const GDT: u64 = 0x1000;
    /// Interrupt Descriptor Table (256 gates x 16 bytes = one page).
    pub const IDT: u64 = 0x2000;
    /// Task State Segment (104 bytes used).
    pub const TSS: u64 = 0x3000;
    /// [`crate::boot_info::BootInfo`].
    pub const BOOT_INFO: u64 = 0x4000;
    /// Kernel command line and init arguments.
    pub const CMDLINE: u64 = 0x5000;
    /// Size of the command-line page.
    pub const CMDLINE_MAX: u64 = 0x1000;
    /// First page of the VMM-built page tables.
    pub const PAGE_TABLES: u64 = 0x8000;
    /// End (exclusive) of the page-table area.
    pub const PAGE_TABLES_END: u64 = 0x7_0000;
    /// Kernel stack: boot stack, TSS.RSP0 and syscall stack (grows down from here).
    pub const KERNEL_STACK_TOP: u64 = 0x8_0000;
    /// Size of the kernel stack.
    pub const KERNEL_STACK_SIZE: u64 = 0x1_0000;
    /// IST1 stack for #DF, NMI and #MC (grows down from here).
    pub const IST1_TOP: u64 = 0x9_0000;

    /// Every CPU has its own GDT (its TSS descriptor is marked busy when
    /// loaded, so two CPUs cannot share one) and its own TSS (RSP0 is the
    /// stack of the process *that CPU* runs). CPU `n`'s GDT lies at
    /// `GDT + n * GDT_STRIDE`, in the GDT page; the IDT is shared.
    pub const GDT_STRIDE: u64 = 64;
    /// CPU `n`'s TSS lies at `TSS + n * TSS_STRIDE`, in the TSS page.
    pub const TSS_STRIDE: u64 = 128;
    /// The application processors' stacks (CPUs 1..MAX_CPUS), after CPU 0's
    /// IST1 stack: per CPU a boot/scheduler stack, then its IST1 stack.
    pub const AP_STACKS: u64 = IST1_TOP;
    /// An AP's boot stack: its scheduler loop and the interrupts it takes
    /// while idle run on it (processes have kernel stacks of their own).
    pub const AP_STACK_SIZE: u64 = 0x8000;
    /// An AP's IST1 stack.
    pub const AP_IST_SIZE: u64 = 0x4000;
    const AP_STRIDE: u64 = AP_STACK_SIZE + AP_IST_SIZE;

    /// CPU `cpu`'s GDT.
    pub const fn gdt(cpu: usize) -> u64 {
        GDT + cpu as u64 * GDT_STRIDE
    }

    /// CPU `cpu`'s TSS.
    pub const fn tss(cpu: usize) -> u64 {
        TSS + cpu as u64 * TSS_STRIDE
    }

    /// Top of CPU `cpu`'s boot stack (its RSP at the first instruction and
    /// its TSS.RSP0 until it runs a process).
    pub const fn kernel_stack_top(cpu: usize) -> u64 {
        match cpu {
            0 => KERNEL_STACK_TOP,
            n => AP_STACKS + (n as u64 - 1) * AP_STRIDE + AP_STACK_SIZE,
        }
    }

    /// Top of CPU `cpu`'s IST1 stack.
    pub const fn ist1_top(cpu: usize) -> u64 {
        match cpu {
            0 => IST1_TOP,
            n => AP_STACKS + n as u64 * AP_STRIDE,
        }
    }

    // Every CPU's tables fit their pages and its stacks the first megabyte.
    const _: () = {
        assert!(GDT_STRIDE >= 8 * super::selector::GDT_ENTRIES as u64);
        assert!(super::MAX_CPUS as u64 * GDT_STRIDE <= 0x1000);
        assert!(TSS_STRIDE >= crate::frame::TSS_SIZE as u64);
        assert!(super::MAX_CPUS as u64 * TSS_STRIDE <= 0x1000);
        assert!(ist1_top(super::MAX_CPUS - 1) <= super::KERNEL_PHYS_LOAD);
    };
}

/// The direct-map virtual address of physical address `phys`.
pub const fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP_BASE + phys
}

// The map's order, checked when the contract is compiled: 64 TiB of direct
// map, in the upper half, below the kernel image; the boot tables, page
// tables and stacks of the first megabyte apart and below the image.
const _: () = {
    assert!(DIRECT_MAP_BASE >= 0xffff_8000_0000_0000 && DIRECT_MAP_BASE + (64 << 40) <= KERNEL_BASE);
    assert!(phys::CMDLINE + phys::CMDLINE_MAX <= phys::PAGE_TABLES);
    assert!(phys::PAGE_TABLES_END <= phys::KERNEL_STACK_TOP - phys::KERNEL_STACK_SIZE);
    assert!(phys::KERNEL_STACK_TOP < phys::IST1_TOP && phys::IST1_TOP <= KERNEL_PHYS_LOAD);
};

/// GDT selectors. The order is the one `syscall`/`sysret` require:
/// `syscall` loads CS = STAR[47:32] and SS = STAR[47:32] + 8;
/// 64-bit `sysret` loads CS = STAR[63:48] + 16 and SS = STAR[63:48] + 8, both with RPL 3.
pub mod selector {
    /// Index 1: 64-bit kernel code, DPL 0.
    pub const KERNEL_CS: u16 = 0x08;
    /// Index 2: kernel data, DPL 0.
    pub const KERNEL_DS: u16 = 0x10;
    /// Index 3: user data, DPL 3 (selector with RPL 3).
    pub const USER_DS: u16 = 0x18 | 3;
    /// Index 4: 64-bit user code, DPL 3 (selector with RPL 3).
    pub const USER_CS: u16 = 0x20 | 3;
    /// Index 5 (and 6): the 16-byte 64-bit TSS descriptor.
    pub const TSS: u16 = 0x28;
    /// Number of 8-byte GDT slots in use.
    pub const GDT_ENTRIES: usize = 7;
}

/// The vvar page: the kernel's clock parameters, mapped read-only into every
/// process for the vDSO (Linux maps its own next to the vDSO too).
pub const VVAR_USER: u64 = 0x7fff_f7f0_0000;
/// The vDSO's load address in every process (AT_SYSINFO_EHDR).
pub const VDSO_USER: u64 = VVAR_USER + PAGE_SIZE;
/// Pages the vDSO image may take.
pub const VDSO_MAX_PAGES: u64 = 2;

/// A process's address space, bottom to top (Linux: the same order, with
/// randomisation left out so students can predict every address):
///
/// ```text
///   0 .. MMAP_MIN_ADDR          never mapped: a NULL dereference always faults
///   program image, then brk     (the ELF's own addresses; brk below BRK_MAX)
///   MMAP_BASE .. MMAP_END       anonymous mmap() without MAP_FIXED
///   VVAR_USER, VDSO_USER        shared, read-only (vvar) / read-execute (vDSO)
///   STACK_GUARD                 one page never mapped: a stack overflow faults
///   STACK_TOP - STACK_PAGES*4K .. STACK_TOP   the stack
///   STACK_TOP .. USER_END       the last page, left unmapped as Linux does
/// ```
pub mod user {
    use super::{PAGE_SIZE, VVAR_USER};

    /// Lowest address a process may map (Linux's `vm.mmap_min_addr` default).
    pub const MMAP_MIN_ADDR: u64 = 0x1_0000;
    /// Top of every process's stack (Linux's `TASK_SIZE_MAX`): system calls
    /// accept user addresses below it.
    pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
    /// Pages mapped for the stack at exec.
    pub const STACK_PAGES: u64 = 16;
    /// The guard page below the stack: mmap(MAP_FIXED) may not go at or above it.
    pub const STACK_GUARD: u64 = STACK_TOP - (STACK_PAGES + 1) * PAGE_SIZE;
    /// Where anonymous mmap() regions start.
    pub const MMAP_BASE: u64 = 0x7f00_0000_0000;
    /// End (exclusive) of the mmap() area: the shared vvar/vDSO pages follow.
    pub const MMAP_END: u64 = VVAR_USER;
    /// Highest brk: 1 GiB below the mmap area.
    pub const BRK_MAX: u64 = MMAP_BASE - (1 << 30);

    /// The range `[addr, addr + len)` lies wholly below [`STACK_TOP`], where
    /// system calls take pointers (Linux's `access_ok` against
    /// `TASK_SIZE_MAX`): no kernel pointer, no wrap-around, nothing
    /// straddling the top of the user half.
    pub const fn access_ok(addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(end) => end <= STACK_TOP,
            None => false,
        }
    }

    // The layout's order, checked when the contract is compiled.
    const _: () = {
        assert!(MMAP_MIN_ADDR < BRK_MAX && BRK_MAX < MMAP_BASE && MMAP_BASE < MMAP_END);
        assert!(MMAP_END == VVAR_USER && super::VDSO_USER + super::VDSO_MAX_PAGES * PAGE_SIZE <= STACK_GUARD);
        assert!(STACK_GUARD + PAGE_SIZE == STACK_TOP - STACK_PAGES * PAGE_SIZE);
        assert!(super::USER_END - STACK_TOP == PAGE_SIZE);
    };

    /// Most argument strings a program may be given (init's, and spawn's).
    pub const MAX_ARG_STRINGS: usize = 256;
    /// Most bytes of argument strings, counting each one's NUL (Linux's
    /// `E2BIG` limit is larger; one page keeps the kernel's copy simple).
    pub const MAX_ARG_BYTES: usize = 4096;
}

#[cfg(test)]
mod tests {
    use super::user::*;
    use super::*;

    #[test]
    fn each_cpu_has_its_own_tables_and_stacks() {
        extern crate std;
        use std::vec::Vec;
        // CPU 0 keeps the single-CPU layout.
        assert_eq!((phys::gdt(0), phys::tss(0)), (phys::GDT, phys::TSS));
        assert_eq!((phys::kernel_stack_top(0), phys::ist1_top(0)), (0x8_0000, 0x9_0000));
        assert_eq!((phys::gdt(1), phys::tss(1)), (0x1040, 0x3080));
        assert_eq!((phys::kernel_stack_top(1), phys::ist1_top(1)), (0x9_8000, 0x9_c000));
        assert_eq!((phys::kernel_stack_top(2), phys::ist1_top(2)), (0xa_4000, 0xa_8000));
        // No two CPUs' stacks overlap, and none reaches the kernel image.
        let mut spans: Vec<(u64, u64)> = (0..MAX_CPUS)
            .flat_map(|c| {
                let k = phys::kernel_stack_top(c);
                let i = phys::ist1_top(c);
                let (ks, is) = if c == 0 {
                    (phys::KERNEL_STACK_SIZE, 0x1_0000)
                } else {
                    (phys::AP_STACK_SIZE, phys::AP_IST_SIZE)
                };
                [(k - ks, k), (i - is, i)]
            })
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{w:x?}");
        }
        assert!(spans.last().unwrap().1 <= KERNEL_PHYS_LOAD);
    }

    #[test]
    fn access_ok_takes_user_ranges_only() {
        assert!(access_ok(0x40_0000, 4096));
        assert!(access_ok(STACK_TOP - 8, 8));
        assert!(access_ok(0, 0));
        assert!(!access_ok(STACK_TOP - 8, 9), "straddles the top");
        assert!(!access_ok(KERNEL_BASE, 1), "a kernel pointer");
        assert!(!access_ok(DIRECT_MAP_BASE + 0x1000, 8));
        assert!(!access_ok(0x1000, u64::MAX), "wraps around");
        assert!(!access_ok(USER_END, 0), "the last page takes no pointers");
    }

    #[test]
    fn access_ok_at_the_edges() {
        // Empty ranges: anywhere up to the top of the stack, not beyond.
        assert!(access_ok(STACK_TOP, 0));
        assert!(!access_ok(STACK_TOP + 1, 0));
        assert!(!access_ok(u64::MAX, 0));
        assert!(!access_ok(u64::MAX, 1));
        // The whole user range at once, and one byte more.
        assert!(access_ok(0, STACK_TOP));
        assert!(!access_ok(0, STACK_TOP + 1));
    }

    #[test]
    fn the_gdt_order_is_the_one_syscall_and_sysret_need() {
        use super::selector::*;
        // syscall: CS = STAR[47:32], SS = CS + 8.
        assert_eq!(KERNEL_DS, KERNEL_CS + 8);
        // 64-bit sysret: SS = STAR[63:48] + 8, CS = STAR[63:48] + 16, RPL 3,
        // with STAR[63:48] = the kernel data selector (as Linux's __USER32_CS - 16 + 16).
        assert_eq!(USER_DS, (KERNEL_DS + 8) | 3);
        assert_eq!(USER_CS, (KERNEL_DS + 16) | 3);
        assert_eq!(
            usize::from(TSS / 8) + 2,
            GDT_ENTRIES,
            "the TSS takes the last two slots"
        );
    }

    #[test]
    fn physical_addresses_map_at_the_direct_map() {
        assert_eq!(phys_to_virt(0), DIRECT_MAP_BASE);
        assert_eq!(phys_to_virt(phys::GDT), 0xffff_8880_0000_1000);
    }
}
